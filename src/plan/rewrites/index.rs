//! Indexes built and dropped `CONCURRENTLY`, outside any transaction.

use super::*;

/// Inserts `CONCURRENTLY` after the statement's `keyword` (`INDEX` or `REINDEX … INDEX|TABLE`).
pub(super) fn add_concurrently(sql: &str, keyword: &str, reindex: bool) -> String {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<(usize, &str)> = word_spans(&lower);
    // Already concurrent (a concurrent build moved to another phase): as it is.
    if words.iter().any(|(_, w)| *w == "concurrently") {
        return sql.to_string();
    }
    let target = if reindex {
        // REINDEX [ ( options ) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } name
        words
            .iter()
            .find(|(_, w)| matches!(*w, "index" | "table" | "schema" | "database" | "system"))
    } else {
        words
            .iter()
            .find(|(_, w)| *w == keyword.to_ascii_lowercase())
    };
    match target {
        Some((pos, w)) => format!(
            "{} CONCURRENTLY{}",
            &sql[..pos + w.len()],
            &sql[pos + w.len()..]
        ),
        None => sql.to_string(),
    }
}

/// The statement without its `CONCURRENTLY` word (for a partitioned table, which has no
/// concurrent form).
pub(super) fn without_concurrently(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    match word_spans(&lower)
        .into_iter()
        .find(|(_, w)| *w == "concurrently")
    {
        Some((pos, w)) => format!("{}{}", &sql[..pos].trim_end(), &sql[pos + w.len()..]),
        None => sql.to_string(),
    }
}

/// `CREATE INDEX … ON ONLY parent …`: the index of a partitioned table alone, INVALID until
/// every partition's index is attached to it.
pub(super) fn on_only(sql: &str) -> String {
    let sql = without_concurrently(sql);
    let lower = sql.to_ascii_lowercase();
    let words = word_spans(&lower);
    match words.iter().position(|(_, w)| *w == "on") {
        Some(i) if words.get(i + 1).is_some_and(|(_, w)| *w == "only") => sql,
        Some(i) => {
            let (pos, w) = words[i];
            format!("{} ONLY{}", &sql[..pos + w.len()], &sql[pos + w.len()..])
        }
        None => sql,
    }
}

pub(super) fn word_spans(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        let word = c.is_alphanumeric() || c == '_';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                out.push((st, &s[st..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

pub(super) fn concurrent_index(ctx: &PlanCtx, op: &Operation, phase: Phase) -> Rewrite {
    let Operation::CreateIndex(ix) = op else {
        unreachable!("concurrent_index takes CreateIndex")
    };
    let mut r = new_rewrite(describe(op));
    // A concurrent build needs a name, so a failed build's INVALID leftover can be found and dropped.
    let name = ix
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&ix.table.name, &[&ix.columns.join("_"), "idx"]));
    let mut sql = add_concurrently(&ix.sql, "INDEX", false);
    if ix.name.is_none() {
        let on = word_spans(&sql.to_ascii_lowercase())
            .into_iter()
            .find(|(_, w)| *w == "on")
            .map(|(p, _)| p);
        if let Some(p) = on {
            sql = format!("{}{} {}", &sql[..p], quote_ident(&name), &sql[p..]);
        }
    }
    let qualified = QualifiedName::new(ix.table.schema.as_deref(), &name);
    let parent_only = on_only(&sql);
    r.steps.push(step(
        phase,
        "build the index without blocking writes (an INVALID leftover is dropped and rebuilt)",
        sql,
        StepKind::Concurrent {
            index: Some(qualified.clone()),
            partitioned: Some(parent_only),
        },
        scan(&ix.table, LockLevel::ShareUpdateExclusive),
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the index",
        format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
        StepKind::Concurrent {
            index: None,
            partitioned: Some(format!("DROP INDEX IF EXISTS {qualified}")),
        },
        Vec::new(),
    ));
    if ctx.catalog.is_partitioned(&ix.table) {
        r.notes.push(format!("{} is partitioned, and PostgreSQL builds no index of it concurrently: the engine creates it ON ONLY {}, builds each partition's index concurrently and attaches it, one partition at a time", ix.table, ix.table));
    }
    if ctx.pg().major == 14 && ctx.pg().minor < 4 {
        r.notes.push("PostgreSQL 14.0–14.3 can corrupt indexes built concurrently: upgrade to 14.4 or later first".into());
    }
    r
}

pub(super) fn concurrent_drop_index(op: &Operation, phase: Phase) -> Rewrite {
    let Operation::DropIndex { names, cascade, .. } = op else {
        unreachable!("concurrent_drop_index takes DropIndex")
    };
    let mut r = new_rewrite(describe(op));
    for n in names {
        // DROP INDEX CONCURRENTLY takes one index per statement, and no CASCADE.
        r.steps.push(step(
            phase,
            "drop the index without blocking reads or writes",
            format!("DROP INDEX CONCURRENTLY IF EXISTS {n}"),
            StepKind::Concurrent {
                index: None,
                partitioned: Some(format!("DROP INDEX IF EXISTS {n}")),
            },
            Vec::new(),
        ));
    }
    if *cascade {
        r.notes.push(
            "CASCADE cannot be combined with CONCURRENTLY: drop the dependent objects first".into(),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn the_forms_for_a_partitioned_table() {
        use super::{on_only, without_concurrently};
        assert_eq!(
            on_only("CREATE INDEX CONCURRENTLY i ON events (at)"),
            "CREATE INDEX i ON ONLY events (at)"
        );
        assert_eq!(
            on_only("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON public.events USING btree (id, at)"),
            "CREATE UNIQUE INDEX IF NOT EXISTS i ON ONLY public.events USING btree (id, at)"
        );
        assert_eq!(
            without_concurrently("DROP INDEX CONCURRENTLY IF EXISTS i"),
            "DROP INDEX IF EXISTS i"
        );
    }

    #[test]
    fn built_and_dropped_concurrently() {
        insta::assert_snapshot!(plan(
            "CREATE INDEX users_email_idx ON users (email);\nDROP INDEX users_age_idx;",
            true
        ));
    }
}
