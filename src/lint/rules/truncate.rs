use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `TRUNCATE` of a live table.
    ///
    /// ## What it catches
    /// `TRUNCATE` of a table that was not created in the same migration; `CASCADE` is called out.
    ///
    /// ## Why it hurts
    /// It takes ACCESS EXCLUSIVE and removes every row the running version reads; with CASCADE
    /// it empties every table that references it too.
    ///
    /// ## Example
    /// ```sql
    /// TRUNCATE sessions CASCADE;
    /// ```
    ///
    /// ## Instead
    /// Delete in batches (`DELETE … WHERE id IN (SELECT id … LIMIT 10000)`), or swap in a new
    /// empty table behind a rename with a view.
    pub struct Truncate => "truncate", Error;
}

impl Rule for Truncate {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Truncate { tables, cascade } = op {
                let live: Vec<String> = tables
                    .iter()
                    .filter(|t| ctx.is_live_table(t))
                    .map(|t| t.sql())
                    .collect();
                if !live.is_empty() {
                    out.push(ctx.finding(
                        &Self::META,
                        format!(
                            "TRUNCATE {} takes ACCESS EXCLUSIVE and deletes every row{}",
                            live.join(", "),
                            if *cascade {
                                "; CASCADE empties every referencing table too"
                            } else {
                                ""
                            }
                        ),
                        "delete in batches instead, or swap in a new table",
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
        fires("truncate", &[USERS], "TRUNCATE users CASCADE;");
    }

    #[test]
    fn silent_on_new_table() {
        silent("truncate", &[], "CREATE TABLE t (a int);\nTRUNCATE t;");
    }
}
