use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A `CONCURRENTLY` statement inside a transaction.
    ///
    /// ## What it catches
    /// `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY` and
    /// `DETACH PARTITION … CONCURRENTLY` in a file that runs in one transaction, or after an
    /// explicit `BEGIN`.
    ///
    /// ## Why it hurts
    /// PostgreSQL refuses them inside a transaction block (SQLSTATE 25001): the migration fails
    /// at that statement.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
    /// COMMIT;
    /// ```
    ///
    /// ## Instead
    /// Put concurrent statements in a file that runs outside a transaction
    /// (`-- migrate:no-transaction` on the first line, or your runner's own opt-out), one per
    /// statement.
    pub struct ConcurrentlyInTransaction => "concurrently-in-transaction", Error;
}

impl Rule for ConcurrentlyInTransaction {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        if !ctx.tx.in_transaction() {
            return;
        }
        for op in ctx.ops {
            let concurrent = match op {
                Operation::CreateIndex(ix) => ix.concurrently,
                Operation::DropIndex { concurrently, .. }
                | Operation::Reindex { concurrently, .. }
                | Operation::DetachPartition { concurrently, .. } => *concurrently,
                _ => false,
            };
            if concurrent {
                let why = if ctx.tx.explicit > 0 {
                    format!("after the BEGIN on line {}", ctx.tx.begin_line.unwrap_or(0))
                } else {
                    "in a file that runs in one transaction".to_string()
                };
                out.push(ctx.finding(
                    &Self::META,
                    format!("CONCURRENTLY cannot run inside a transaction block ({why}): the migration fails here"),
                    "add `-- migrate:no-transaction` as the file's first line (or your runner's opt-out) and drop the BEGIN/COMMIT",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_in_a_transactional_file_or_explicit_block() {
        fires(
            "concurrently-in-transaction",
            &[USERS],
            "CREATE INDEX CONCURRENTLY i ON users (name);",
        );
        fires(
            "concurrently-in-transaction",
            &[USERS],
            "-- migrate:no-transaction\nBEGIN;\nDROP INDEX CONCURRENTLY i;\nCOMMIT;",
        );
    }

    #[test]
    fn silent_outside_transactions() {
        silent(
            "concurrently-in-transaction",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
        );
    }
}
