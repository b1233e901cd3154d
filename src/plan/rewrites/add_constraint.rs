//! `ADD UNIQUE` / `ADD PRIMARY KEY` through a concurrently built index.

use super::*;

pub(super) fn unique_via_index(
    ctx: &PlanCtx,
    table: &QualifiedName,
    name: &str,
    columns: &[String],
    primary: bool,
    what: &str,
) -> Rewrite {
    let key = Key {
        table: table.clone(),
        name: name.to_string(),
        index: name.to_string(),
        columns: columns.to_vec(),
        primary,
    };
    key_rewrite(ctx, key, Vec::new(), what)
}

/// `ADD CONSTRAINT name … USING INDEX index` on a partitioned table, which PostgreSQL refuses
/// ("ADD CONSTRAINT USING INDEX is not supported on partitioned tables"): the key is built the
/// way the engine builds any key of a partitioned table, over the index's columns. An index
/// built earlier in the same migration is not built at all (its leaves, attached to it, could
/// not become the parent constraint's); one that exists already is dropped in the contract
/// transaction that adds the constraint, as `USING INDEX` would have taken it over.
pub(super) fn unique_using_index_of_partitioned(
    ctx: &PlanCtx,
    table: &QualifiedName,
    name: &str,
    index: &str,
    primary: bool,
    what: &str,
) -> Rewrite {
    let qualified = QualifiedName::new(table.schema.as_deref(), index);
    let kind = if primary { "PRIMARY KEY" } else { "UNIQUE" };
    let Some(ix) = ctx
        .catalog
        .index(&qualified)
        .filter(|i| i.unique && i.table.same(table))
    else {
        return reject(what, format!("{table} is partitioned, and PostgreSQL takes no constraint USING INDEX on it; the unique index {qualified} of it is not known here, so its columns are not: write ADD CONSTRAINT {} {kind} (columns) instead, and the engine builds the key partition by partition", quote_ident(name)));
    };
    let fresh = ix.origin == crate::model::catalog::Origin::New;
    let key = Key {
        table: table.clone(),
        name: name.to_string(),
        index: if fresh {
            index.to_string()
        } else {
            generated_name(name, &["new"])
        },
        columns: ix.columns.clone(),
        primary,
    };
    let before = if fresh {
        Vec::new()
    } else {
        vec![format!("DROP INDEX {qualified}")]
    };
    let mut r = key_rewrite(ctx, key, before, what);
    if fresh {
        r.adopts = Some(qualified);
    }
    r
}

/// The steps of a key built through a concurrent unique index: the build, NOT NULL for a
/// primary key's columns, and the contract transaction that runs `before` and attaches it.
fn key_rewrite(ctx: &PlanCtx, key: Key, before: Vec<String>, what: &str) -> Rewrite {
    let mut r = new_rewrite(what);
    let (table, columns, primary) = (&key.table, &key.columns, key.primary);
    r.steps.push(build_key(&key));
    if primary {
        let t = ctx.catalog.table(table);
        for c in columns {
            let nn = t.and_then(|t| t.column(c)).is_some_and(|col| col.not_null);
            if !nn {
                // ADD PRIMARY KEY sets NOT NULL, which scans the table unless a check proves it.
                tighten_not_null(ctx, &mut r, table, c, None);
            }
        }
    }
    r.steps.push(attach_keys(
        "attach the index as the constraint: metadata only",
        table,
        before,
        vec![key.clone()],
        Vec::new(),
    ));
    r.abort.push(drop_key(&key, "drop the index"));
    if ctx.catalog.is_partitioned(table) {
        r.notes.push(partitioned_key_note(table));
    }
    r.notes
        .push("the index build fails if duplicates exist: clean them up first".into());
    r
}

/// The concurrent build of a key's unique index.
pub(super) fn build_key(key: &Key) -> Step {
    let cols: Vec<String> = key.columns.iter().map(|c| quote_ident(c)).collect();
    step(
        Phase::Expand,
        if key.index == key.name {
            "build the unique index without blocking writes".to_string()
        } else {
            format!(
                "build the unique index of {} {} on ({}) without blocking writes",
                key.kind(),
                quote_ident(&key.name),
                cols.join(", ")
            )
        },
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})",
            quote_ident(&key.index),
            key.table,
            cols.join(", ")
        ),
        StepKind::Keys {
            keys: vec![key.clone()],
            action: KeyAction::Build,
        },
        scan(&key.table, LockLevel::ShareUpdateExclusive),
    )
}

/// The contract step that runs `before` (statements of one transaction), makes each key's
/// index of `table` its constraint, and adds the `after` foreign keys NOT VALID, in the same
/// transaction.
pub(super) fn attach_keys(
    action: &str,
    table: &QualifiedName,
    before: Vec<String>,
    keys: Vec<Key>,
    after: Vec<LateForeignKey>,
) -> Step {
    let sql: Vec<String> = before
        .iter()
        .cloned()
        .chain(keys.iter().map(Key::attach_sql))
        .chain(after.iter().map(LateForeignKey::add_sql))
        .collect();
    let mut locks = brief(table, LockLevel::AccessExclusive);
    for fk in &after {
        locks.extend(brief(&fk.table, LockLevel::ShareRowExclusive));
    }
    step(
        Phase::Contract,
        action,
        sql.join(";\n"),
        StepKind::Keys {
            keys,
            action: KeyAction::Attach {
                before: before.join(";\n"),
                after,
            },
        },
        locks,
    )
}

/// Abort's drop of a key's index, before its constraint exists.
pub(super) fn drop_key(key: &Key, action: &str) -> Step {
    step(
        Phase::Expand,
        action,
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            QualifiedName::new(key.table.schema.as_deref(), &key.index)
        ),
        StepKind::Keys {
            keys: vec![key.clone()],
            action: KeyAction::Drop,
        },
        Vec::new(),
    )
}

pub(super) fn partitioned_key_note(table: &QualifiedName) -> String {
    format!("{table} is partitioned, and PostgreSQL builds no index of it concurrently nor takes a constraint USING INDEX on it: the engine builds each partition's unique index concurrently, then in contract makes each the partition's constraint and adds the parent's, which takes them over without building an index")
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    /// `USING INDEX` on a partitioned table: the key built leaf by leaf over the index's
    /// columns; an index of the same migration is not built at all, one of an earlier
    /// migration is dropped where the key is attached, and an index not known is refused.
    #[test]
    fn a_key_using_an_index_of_a_partitioned_table() {
        use crate::plan::{KeyAction, StepKind};
        let earlier =
            "CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE UNIQUE INDEX ev_old_key ON ev (at, id);";
        let sql = "CREATE UNIQUE INDEX ev_id_at ON ev (id, at);
ALTER TABLE ev ADD CONSTRAINT ev_pkey PRIMARY KEY USING INDEX ev_id_at;
ALTER TABLE ev ADD CONSTRAINT ev_at_id_key UNIQUE USING INDEX ev_old_key;
ALTER TABLE ev ADD CONSTRAINT ev_x UNIQUE USING INDEX nowhere;";
        let settings = crate::config::Settings::default();
        let reports = crate::analyze::analyze_sources(&[earlier], sql, &settings);
        let rws = &reports[0].plan.rewrites;
        assert_eq!(rws.len(), 4, "{rws:#?}");
        assert!(
            rws[0].steps.is_empty() && rws[0].abort.is_empty(),
            "{:#?}",
            rws[0]
        );
        let keys = |i: usize| -> Vec<(String, String, Vec<String>, bool, String)> {
            rws[i]
                .steps
                .iter()
                .filter_map(|s| match &s.kind {
                    StepKind::Keys { keys, action } => Some((
                        keys[0].name.clone(),
                        keys[0].index.clone(),
                        keys[0].columns.clone(),
                        keys[0].primary,
                        match action {
                            KeyAction::Build => "build".to_string(),
                            KeyAction::Attach { before, .. } => format!("attach after [{before}]"),
                            KeyAction::Drop => "drop".to_string(),
                        },
                    )),
                    _ => None,
                })
                .collect()
        };
        let cols = vec!["id".to_string(), "at".to_string()];
        let k = |n: &str, i: &str, c: &[String], p: bool, a: &str| {
            (n.to_string(), i.to_string(), c.to_vec(), p, a.to_string())
        };
        assert_eq!(
            keys(1),
            vec![
                k("ev_pkey", "ev_id_at", &cols, true, "build"),
                k("ev_pkey", "ev_id_at", &cols, true, "attach after []")
            ]
        );
        let rev = vec!["at".to_string(), "id".to_string()];
        assert_eq!(
            keys(2),
            vec![
                k("ev_at_id_key", "ev_at_id_key_new", &rev, false, "build"),
                k(
                    "ev_at_id_key",
                    "ev_at_id_key_new",
                    &rev,
                    false,
                    "attach after [DROP INDEX ev_old_key]"
                )
            ]
        );
        assert!(
            rws[3]
                .rejected
                .as_ref()
                .is_some_and(|w| w.contains("nowhere")),
            "{:?}",
            rws[3]
        );
    }

    /// PostgreSQL 18's `ADD CONSTRAINT … NOT NULL c` scans as SET NOT NULL does: added NOT
    /// VALID in expand, validated in contract.
    #[test]
    fn a_not_null_constraint_is_added_not_valid_and_validated() {
        let settings = crate::config::Settings {
            pg_version: "18".parse().unwrap(),
            ..Default::default()
        };
        let reports = crate::analyze::analyze_sources(
            &["CREATE TABLE t (id int PRIMARY KEY, a int);"],
            "ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a;",
            &settings,
        );
        let steps: Vec<(crate::plan::Phase, String)> = reports[0].plan.rewrites[0]
            .steps
            .iter()
            .map(|s| (s.phase, s.sql.clone()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (
                    crate::plan::Phase::Expand,
                    "ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a NOT VALID".to_string()
                ),
                (
                    crate::plan::Phase::Contract,
                    "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn".to_string()
                ),
            ]
        );
    }

    #[test]
    fn unique_through_an_index_and_a_foreign_key_not_valid() {
        insta::assert_snapshot!(plan("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\nALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);", true));
    }
}
