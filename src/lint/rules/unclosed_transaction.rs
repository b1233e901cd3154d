use crate::lint::{FileCtx, Finding, Rule};

crate::declare_rule! {
    /// A `BEGIN` that is never committed.
    ///
    /// ## What it catches
    /// A file whose explicit transaction is still open after its last statement.
    ///
    /// ## Why it hurts
    /// Depending on the runner, the work is rolled back when the connection closes, or the
    /// connection stays idle in transaction holding every lock it took, blocking the table for
    /// everyone.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN a int;
    /// ```
    ///
    /// ## Instead
    /// End it with `COMMIT;`, or remove the `BEGIN` and let the runner manage the transaction.
    pub struct UnclosedTransaction => "unclosed-transaction", Error;
}

impl Rule for UnclosedTransaction {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check_file(&self, ctx: &FileCtx, out: &mut Vec<Finding>) {
        if ctx.end_tx.explicit > 0 {
            out.push(ctx.finding_at_end(
                &Self::META,
                format!(
                    "the BEGIN on line {} is never committed",
                    ctx.end_tx.begin_line.unwrap_or(0)
                ),
                "end the file with COMMIT, or remove the BEGIN",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_commit() {
        fires(
            "unclosed-transaction",
            &[],
            "-- migrate:no-transaction\nBEGIN;\nCREATE TABLE t (a int);",
        );
    }

    #[test]
    fn silent_with_commit() {
        silent(
            "unclosed-transaction",
            &[],
            "-- migrate:no-transaction\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;",
        );
    }
}
