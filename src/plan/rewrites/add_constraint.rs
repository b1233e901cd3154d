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
    let index = QualifiedName::new(table.schema.as_deref(), name);
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    r.steps.push(step(
        Phase::Expand,
        "build the unique index without blocking writes",
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
            quote_ident(name),
            cols.join(", ")
        ),
        StepKind::Concurrent {
            index: Some(index.clone()),
            partitioned: None,
        },
        scan(table, LockLevel::ShareUpdateExclusive),
    ));
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
    r.steps.push(exclusive(
        Phase::Contract,
        "attach the index as the constraint: metadata only",
        format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {} USING INDEX {}",
            quote_ident(name),
            if primary { "PRIMARY KEY" } else { "UNIQUE" },
            quote_ident(name)
        ),
        table,
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the index",
        format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        StepKind::Concurrent {
            index: None,
            partitioned: None,
        },
        Vec::new(),
    ));
    r.notes
        .push("the index build fails if duplicates exist: clean them up first".into());
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn unique_through_an_index_and_a_foreign_key_not_valid() {
        insta::assert_snapshot!(plan("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\nALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);", true));
    }
}
