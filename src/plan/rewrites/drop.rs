//! `DROP COLUMN` and `DROP TABLE` on a live table: dropped in contract, once the old version,
//! which reads them, is gone. With views the new version's view hides them from expand on.
//!
//! The new version's inserts leave a dropped column out, so a NOT NULL column without a default
//! would fail them from the deploy until contract: expand lifts that NOT NULL (metadata only),
//! and abort puts it back through a validated check.

use super::*;

pub(super) fn drop_column(
    ctx: &PlanCtx,
    op: &Operation,
    sql: &str,
    table: &QualifiedName,
    column: &str,
    what: &str,
) -> Rewrite {
    let mut r = as_written(op, sql, Phase::Contract, what);
    r.rewritten = true;
    r.view.push(ViewChange::HideColumn {
        table: table.clone(),
        column: column.to_string(),
    });
    let col = ctx.catalog.table(table).and_then(|t| t.column(column));
    if col.is_some_and(|c| c.not_null && c.default.is_none() && !c.generated) {
        let c = quote_ident(column);
        r.steps.insert(
            0,
            exclusive(
                Phase::Expand,
                "lift NOT NULL, so the new version's inserts may leave the column out",
                format!("ALTER TABLE {table} ALTER COLUMN {c} DROP NOT NULL"),
                table,
            ),
        );
        // Abort: the old version wrote the column all along, so the check validates unless
        // the new version already inserted rows without it.
        let mut tighten = new_rewrite(what);
        tighten_not_null(ctx, &mut tighten, table, column, None);
        r.abort.extend(tighten.steps.into_iter().map(|mut s| {
            s.phase = Phase::Expand;
            s
        }));
        r.notes.extend(tighten.notes);
    }
    r
}

pub(super) fn drop_table(
    op: &Operation,
    sql: &str,
    tables: &[QualifiedName],
    what: &str,
) -> Rewrite {
    let mut r = as_written(op, sql, Phase::Contract, what);
    r.rewritten = true;
    r.view.extend(
        tables
            .iter()
            .map(|t| ViewChange::HideTable { table: t.clone() }),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn a_not_null_column_is_lifted_and_hidden() {
        insta::assert_snapshot!(plan("ALTER TABLE users DROP COLUMN name;", true));
    }

    #[test]
    fn a_table_is_hidden_then_dropped() {
        insta::assert_snapshot!(plan("DROP TABLE legacy;", true));
    }
}
