use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `ALTER TABLE` forms that rewrite a live table: `SET LOGGED|UNLOGGED`, `SET TABLESPACE`, `SET ACCESS METHOD`, `SET EXPRESSION`.
    ///
    /// ## What it catches
    /// Those actions on a table that was not created in the same migration; `ALTER COLUMN …
    /// SET EXPRESSION` (PostgreSQL 17) writes a stored generated column's new value into every
    /// row.
    ///
    /// ## Why it hurts
    /// Each copies the whole table (and for a tablespace, its indexes) under ACCESS EXCLUSIVE.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events SET TABLESPACE fast_ssd;
    /// ```
    ///
    /// ## Instead
    /// Build a new table in the target form, sync it with triggers, backfill, and swap; or use
    /// `pg_repack --tablespace` for moves.
    pub struct TableRewrite => "table-rewrite", Error;
}

impl Rule for TableRewrite {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RewriteTable { table, what } = op {
                if ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("{what} rewrites {table} under ACCESS EXCLUSIVE"),
                        "build the new form beside it and swap, or use pg_repack for tablespace moves",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_live_table() {
        fires(
            "table-rewrite",
            &[USERS],
            "ALTER TABLE users SET TABLESPACE fast;",
        );
        fires("table-rewrite", &[USERS], "ALTER TABLE users SET UNLOGGED;");
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "table-rewrite",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t SET UNLOGGED;",
        );
    }
}
