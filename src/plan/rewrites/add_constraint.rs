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
    let mut r = new_rewrite(what);
    let key = Key {
        table: table.clone(),
        name: name.to_string(),
        index: name.to_string(),
        columns: columns.to_vec(),
        primary,
    };
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
        Vec::new(),
        vec![key.clone()],
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

/// The contract step that runs `before` (statements of one transaction) and then makes each
/// key's index its constraint, in the same transaction.
pub(super) fn attach_keys(action: &str, before: Vec<String>, keys: Vec<Key>) -> Step {
    let table = keys[0].table.clone();
    let sql: Vec<String> = before
        .iter()
        .cloned()
        .chain(keys.iter().map(Key::attach_sql))
        .collect();
    step(
        Phase::Contract,
        action,
        sql.join(";\n"),
        StepKind::Keys {
            keys,
            action: KeyAction::Attach {
                before: before.join(";\n"),
            },
        },
        brief(&table, LockLevel::AccessExclusive),
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

    #[test]
    fn unique_through_an_index_and_a_foreign_key_not_valid() {
        insta::assert_snapshot!(plan("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\nALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);", true));
    }
}
