use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A non-idempotent statement in a file that runs outside a transaction.
    ///
    /// ## What it catches
    /// In files without a wrapping transaction: `CREATE TABLE` / `CREATE INDEX` without
    /// `IF NOT EXISTS`, `ADD COLUMN` without `IF NOT EXISTS`, `DROP …` without `IF EXISTS`.
    ///
    /// ## Why it hurts
    /// If the file fails halfway, the statements before the failure stay applied; running it
    /// again then fails on the first of them ("already exists"), and someone must fix it by
    /// hand.
    ///
    /// ## Example
    /// ```sql
    /// -- migrate:no-transaction
    /// CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// `CREATE INDEX CONCURRENTLY IF NOT EXISTS …`, `DROP INDEX CONCURRENTLY IF EXISTS …`. (The
    /// engine checkpoints each step and resumes, but other runners do not.)
    pub struct PreferRobustStatements => "prefer-robust-statements", Info;
}

impl Rule for PreferRobustStatements {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        if ctx.tx.in_transaction() {
            return;
        }
        for op in ctx.ops {
            let fragile = match op {
                Operation::CreateTable { if_not_exists, .. } => !if_not_exists,
                Operation::CreateIndex(ix) => !ix.if_not_exists,
                Operation::AddColumn { if_not_exists, .. } => !if_not_exists,
                Operation::DropIndex { if_exists, .. } | Operation::Drop { if_exists, .. } => {
                    !if_exists
                }
                _ => false,
            };
            if fragile {
                out.push(ctx.finding(
                    &Self::META,
                    "outside a transaction, a rerun after a partial failure fails on this statement",
                    "add IF NOT EXISTS / IF EXISTS",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_outside_transaction() {
        fires(
            "prefer-robust-statements",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
        );
    }

    #[test]
    fn silent_when_idempotent_or_transactional() {
        silent(
            "prefer-robust-statements",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (name);",
        );
        silent(
            "prefer-robust-statements",
            &[USERS],
            "CREATE TABLE t (a int);",
        );
    }
}
