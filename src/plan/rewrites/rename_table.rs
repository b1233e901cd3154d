//! `RENAME TABLE`.

use super::*;

pub(super) fn rename_table(table: &QualifiedName, to: &str, what: &str) -> Rewrite {
    let mut r = new_rewrite(what);
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
