use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{Operation, TxControl};

crate::declare_rule! {
    /// `BEGIN` inside a transaction, or `COMMIT` of the runner's own transaction.
    ///
    /// ## What it catches
    /// An explicit `BEGIN` in a file the runner already wraps in a transaction (or a second
    /// `BEGIN` before `COMMIT`), and a `COMMIT`/`ROLLBACK` in such a file with no `BEGIN` of
    /// its own.
    ///
    /// ## Why it hurts
    /// PostgreSQL ignores the inner BEGIN with a warning, so its COMMIT ends the runner's
    /// transaction early: the statements after it run outside any transaction, and a failure
    /// leaves the migration half applied.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN a int;
    /// COMMIT;
    /// ```
    ///
    /// ## Instead
    /// Leave transactions to the runner; if the file must control them, opt out with
    /// `-- migrate:no-transaction`.
    pub struct TransactionNesting => "transaction-nesting", Warning;
}

impl Rule for TransactionNesting {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            match op {
                Operation::Transaction(TxControl::Begin) if ctx.tx.in_transaction() => {
                    let why = if ctx.tx.explicit > 0 {
                        format!(
                            "the BEGIN on line {} is still open",
                            ctx.tx.begin_line.unwrap_or(0)
                        )
                    } else {
                        "the file already runs in one transaction".to_string()
                    };
                    out.push(ctx.finding(
                        &Self::META,
                        format!("BEGIN inside a transaction: {why}"),
                        "remove it, or opt the file out with `-- migrate:no-transaction`",
                    ));
                }
                Operation::Transaction(TxControl::Commit | TxControl::Rollback)
                    if ctx.tx.implicit && ctx.tx.explicit == 0 =>
                {
                    out.push(ctx.finding(
                        &Self::META,
                        "this ends the runner's transaction early: later statements run outside any transaction",
                        "remove it, or opt the file out with `-- migrate:no-transaction`",
                    ));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_begin_in_transactional_file() {
        fires(
            "transaction-nesting",
            &[USERS],
            "BEGIN;\nALTER TABLE users ADD COLUMN a int;\nCOMMIT;",
        );
        fires(
            "transaction-nesting",
            &[USERS],
            "-- migrate:no-transaction\nBEGIN;\nBEGIN;\nCOMMIT;",
        );
    }

    #[test]
    fn silent_when_file_controls_its_transactions() {
        silent(
            "transaction-nesting",
            &[USERS],
            "-- migrate:no-transaction\nBEGIN;\nALTER TABLE users ADD COLUMN a int;\nCOMMIT;",
        );
    }
}
