use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ObjectKind, Operation};

crate::declare_rule! {
    /// `DROP TABLE` (or view, materialized view) that may still be in use.
    ///
    /// ## What it catches
    /// Dropping a table, view or materialized view that was not created in the same migration.
    ///
    /// ## Why it hurts
    /// The running version's queries on it fail, and a table's data is gone for good. With
    /// CASCADE, dependent views and foreign keys go too.
    ///
    /// ## Example
    /// ```sql
    /// DROP TABLE legacy_sessions;
    /// ```
    ///
    /// ## Instead
    /// Stop using it in the code first, deploy, then drop it in the contract phase (the plan
    /// defers it). Consider renaming it aside for a while before dropping.
    pub struct DroppingTable => "dropping-table", Warning;
}

impl Rule for DroppingTable {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::Drop {
                kind: ObjectKind::Table | ObjectKind::View | ObjectKind::MaterializedView,
                names,
                cascade,
                ..
            } = op
            else {
                continue;
            };
            for n in names.iter().filter(|n| ctx.is_live_table(n)) {
                out.push(ctx.finding(
                    &Self::META,
                    format!(
                        "dropping {n}{} breaks the running version if it still uses it",
                        if *cascade {
                            " with CASCADE (and its dependents)"
                        } else {
                            ""
                        }
                    ),
                    "make sure no deployed version uses it; the plan runs the drop in contract",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_existing_table() {
        fires("dropping-table", &[USERS], "DROP TABLE users;");
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "dropping-table",
            &[],
            "CREATE TABLE t (a int);\nDROP TABLE t;",
        );
    }
}
