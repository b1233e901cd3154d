//! `RENAME TABLE`.
//!
//! With views, the table is renamed at expand, so the new version reads it under its new name
//! from its first query; the old version was given its view under the old name just before
//! (a view names its table by object id, so it follows the rename), and contract only drops
//! that view with the old version's schema. Without views, the table is renamed in expand and
//! an updatable view in the table's own schema keeps the old name until contract.

use super::*;

pub(super) fn rename_table(
    ctx: &PlanCtx,
    table: &QualifiedName,
    to: &str,
    what: &str,
    changed_before: bool,
) -> Rewrite {
    let mut r = new_rewrite(what);
    if ctx.views {
        r.view.push(ViewChange::RenameTable {
            table: table.clone(),
            to: to.to_string(),
        });
        if changed_before {
            // Later phases of an earlier statement name the table as it is: the rename comes
            // after them, at contract, and the new version's view has the new name until then.
            r.steps.push(exclusive(
                Phase::Contract,
                "rename the table: metadata only, after this migration's other steps on it",
                format!("ALTER TABLE {table} RENAME TO {}", quote_ident(to)),
                table,
            ));
            r.notes.push(format!(
                "an earlier statement of this migration, or a migration still in flight, changes {table}, and its later steps name it as it is: the table is renamed at contract, and until then the new version reads it through a view; a rename in a migration of its own is done at expand, and the new version reads the table itself"
            ));
            return r;
        }
        let renamed = QualifiedName::new(table.schema.as_deref(), to);
        r.steps.push(exclusive(
            Phase::Expand,
            "rename the table: metadata only; the old version reads it under its old name through its view",
            format!("ALTER TABLE {table} RENAME TO {}", quote_ident(to)),
            table,
        ));
        r.abort.push(exclusive(
            Phase::Expand,
            "rename the table back",
            format!(
                "ALTER TABLE {renamed} RENAME TO {}",
                quote_ident(&table.name)
            ),
            &renamed,
        ));
        return r;
    }
    let new_name = QualifiedName::new(table.schema.as_deref(), to);
    r.steps.push(exclusive(
        Phase::Expand,
        "rename, and keep the old name as an updatable view (one transaction)",
        format!(
            "ALTER TABLE {table} RENAME TO {};\nCREATE VIEW {table} AS SELECT * FROM {new_name}",
            quote_ident(to)
        ),
        table,
    ));
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the view under the old name",
        format!("DROP VIEW IF EXISTS {table}"),
        table,
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the view and rename back",
        format!(
            "DROP VIEW IF EXISTS {table};\nALTER TABLE {new_name} RENAME TO {}",
            quote_ident(&table.name)
        ),
        StepKind::Ddl,
        brief(&new_name, LockLevel::AccessExclusive),
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn through_views() {
        insta::assert_snapshot!(plan("ALTER TABLE users RENAME TO people;", true));
    }

    #[test]
    fn after_an_earlier_change_of_the_table_at_contract() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users RENAME TO people;",
            true
        ));
    }

    #[test]
    fn with_a_view_under_the_old_name_without_views() {
        insta::assert_snapshot!(plan("ALTER TABLE users RENAME TO people;", false));
    }
}
