use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// An explicit `LOCK TABLE` on a live table.
    ///
    /// ## What it catches
    /// `LOCK TABLE` of a table that was not created in the same migration, at a level that
    /// blocks writes (SHARE or stronger).
    ///
    /// ## Why it hurts
    /// The lock is held until the transaction ends; every query that conflicts queues behind
    /// it, and behind it everything that queues behind them.
    ///
    /// ## Example
    /// ```sql
    /// LOCK TABLE users IN ACCESS EXCLUSIVE MODE;
    /// ```
    ///
    /// ## Instead
    /// Let each statement take the lock it needs, briefly, with a short `lock_timeout` and
    /// retries (the engine does this).
    pub struct LockTable => "lock-table", Error;
}

impl Rule for LockTable {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::LockTable { tables, mode } = op {
                if mode.blocks_writes() && tables.iter().any(|t| ctx.is_live_table(t)) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("LOCK TABLE in {mode} mode blocks other sessions until the transaction ends"),
                        "let each statement take its own brief lock under a short lock_timeout (the engine does)",
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
    fn fires_on_strong_lock() {
        fires(
            "lock-table",
            &[USERS],
            "LOCK TABLE users IN ACCESS EXCLUSIVE MODE;",
        );
        fires("lock-table", &[USERS], "LOCK users;");
    }

    #[test]
    fn silent_on_weak_lock_or_new_table() {
        silent(
            "lock-table",
            &[USERS],
            "LOCK TABLE users IN ROW EXCLUSIVE MODE;",
        );
        silent("lock-table", &[], "CREATE TABLE t (a int);\nLOCK TABLE t;");
    }
}
