use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `DROP COLUMN` on an existing table.
    ///
    /// ## What it catches
    /// Dropping a column of a table that may have traffic.
    ///
    /// ## Why it hurts
    /// Queries of the running version that name the column fail, and so do prepared
    /// `SELECT *` statements ("cached plan must not change result type"). The data is gone.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users DROP COLUMN legacy_name;
    /// ```
    ///
    /// ## Instead
    /// Stop using the column in the code first, deploy, then drop it in the contract phase. The
    /// plan defers the drop to contract.
    pub struct DroppingColumn => "dropping-column", Warning;
}

impl Rule for DroppingColumn {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::DropColumn { table, column, .. } = op {
                if ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("dropping {table}.{column} breaks the running version if it still reads or writes it"),
                        "the new version's view hides it and the drop runs in contract, once no deployed version uses it (the plan does)",
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
    fn fires_on_existing_table() {
        fires(
            "dropping-column",
            &[USERS],
            "ALTER TABLE users DROP COLUMN age;",
        );
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "dropping-column",
            &[],
            "CREATE TABLE t (a int, b int);\nALTER TABLE t DROP COLUMN b;",
        );
    }
}
