//! `ADD COLUMN … DEFAULT volatile()`: added without the default, the default set for new rows,
//! existing rows filled in batches.

use super::*;

pub(super) fn volatile_default(
    ctx: &PlanCtx,
    op: &Operation,
    table: &QualifiedName,
    column: &crate::model::ColumnSpec,
    default: &crate::model::Expr,
) -> Rewrite {
    let mut r = new_rewrite(describe(op));
    let c = quote_ident(&column.name);
    r.steps.push(exclusive(
        Phase::Expand,
        "add the column without a default: metadata only",
        format!("ALTER TABLE {table} ADD COLUMN {c} {}", column.ty.sql),
        table,
    ));
    r.steps.push(exclusive(
        Phase::Expand,
        "new rows get the default",
        format!(
            "ALTER TABLE {table} ALTER COLUMN {c} SET DEFAULT {}",
            default.sql
        ),
        table,
    ));
    r.steps.push(step(
        Phase::Backfill,
        "fill existing rows in batches",
        format!("UPDATE {table} SET {c} = {} WHERE {c} IS NULL", default.sql),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(column.name.clone(), default.sql.clone())],
            filter: Some(format!("{c} IS NULL")),
            verify: Some(format!("{c} IS NULL")),
        },
        row_locks(table),
    ));
    if column.not_null {
        tighten_not_null(ctx, &mut r, table, &column.name, None);
    }
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the column",
        format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {c}"),
        table,
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn added_then_filled() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            true
        ));
    }
}
