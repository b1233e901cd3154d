use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `RENAME COLUMN` on an existing table.
    ///
    /// ## What it catches
    /// `ALTER TABLE … RENAME COLUMN a TO b` on a table that may hold rows and traffic.
    ///
    /// ## Why it hurts
    /// The rename is instant, but from that moment every query of the running version that
    /// names the old column fails, until the new version is deployed everywhere.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users RENAME COLUMN name TO full_name;
    /// ```
    ///
    /// ## Instead
    /// Give the running version a view of the table in its own version schema that still shows
    /// `name`, then rename the column at expand — metadata only, no copy of the table: the new
    /// version reads the table itself, and contract only drops the old version's view. Each
    /// version connects with the `search_path` that `migrate latest` printed for it. The plan
    /// does exactly this. With `views =
    /// false`: add `full_name`, keep both columns equal with triggers, backfill, and drop `name`
    /// in contract.
    pub struct RenamingColumn => "renaming-column", Warning;
}

impl Rule for RenamingColumn {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RenameColumn { table, from, to } = op {
                if ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("renaming {table}.{from} to {to} breaks every query of the running version that names {from}"),
                        if ctx.settings.views {
                            "the running version gets a view that keeps the old name, then the column is renamed at expand and the new version reads the table (the plan does); each version connects with `migrate latest`"
                        } else {
                            "add the new column kept equal by triggers, backfill, and drop the old one in contract (the plan does)"
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
            "renaming-column",
            &[USERS],
            "ALTER TABLE users RENAME COLUMN name TO full_name;",
        );
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "renaming-column",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;",
        );
    }
}
