use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `RENAME TO` on an existing table or view.
    ///
    /// ## What it catches
    /// `ALTER TABLE|VIEW|MATERIALIZED VIEW … RENAME TO …` on a relation that may have traffic.
    ///
    /// ## Why it hurts
    /// Every query of the running version that names the old table fails from the moment of the
    /// rename.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users RENAME TO accounts;
    /// ```
    ///
    /// ## Instead
    /// Give the running version a view named `users` in its own version schema, then rename the
    /// table at expand: the new version reads `accounts` itself, and contract only drops the old
    /// version's view. Each version connects with the `search_path` that `migrate latest`
    /// printed for it. The plan does this for tables. With `views = false`: rename, and in the same transaction create an updatable view
    /// under the old name (`CREATE VIEW users AS SELECT * FROM accounts`); drop it in contract.
    pub struct RenamingTable => "renaming-table", Warning;
}

impl Rule for RenamingTable {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RenameTable { table, to, .. } = op {
                if ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("renaming {table} to {to} breaks every query of the running version that names {table}"),
                        if ctx.settings.views {
                            "the running version gets a view under the old name, then the table is renamed at expand and the new version reads it (the plan does); each version connects with `migrate latest`"
                        } else {
                            "rename and keep an updatable view under the old name until contract (the plan does)"
                        },
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
            "renaming-table",
            &[USERS],
            "ALTER TABLE users RENAME TO accounts;",
        );
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "renaming-table",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t RENAME TO u;",
        );
    }
}
