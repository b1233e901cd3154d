use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::locks::{locks_of, LockHold, LockLevel};
use crate::model::Operation;

crate::declare_rule! {
    /// A slow statement, or a lock on another table, while an earlier statement's ACCESS EXCLUSIVE lock is still held.
    ///
    /// ## What it catches
    /// In one transaction, after a statement took ACCESS EXCLUSIVE on a live table: a statement
    /// that scans or rewrites a table (an index build, a validation, a type change), or that
    /// must wait for a lock on another live table.
    ///
    /// ## Why it hurts
    /// The ACCESS EXCLUSIVE lock is held until commit. Everything after it in the transaction
    /// extends the time no one can read or write the first table, and waiting on a second
    /// table's lock chains both lock queues together.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN team_id bigint;
    /// CREATE INDEX users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// Put each ACCESS EXCLUSIVE statement in its own short transaction, last in it; run slow
    /// work in other transactions. The engine runs each step on its own with a short
    /// `lock_timeout`.
    pub struct StatementAfterAccessExclusive => "statement-after-access-exclusive", Warning;
}

impl Rule for StatementAfterAccessExclusive {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let Some(held) = ctx
            .tx
            .held
            .iter()
            .find(|h| h.level == LockLevel::AccessExclusive)
        else {
            return;
        };
        for op in ctx.ops {
            // DML is backfill-in-ddl-transaction's; transaction control and settings take no lock.
            if op.is_dml()
                || matches!(
                    op,
                    Operation::Transaction(_) | Operation::SetVariable { .. }
                )
            {
                continue;
            }
            let rewrites = matches!(op, Operation::AlterColumnType { .. });
            let locks = locks_of(op, rewrites);
            let slow = locks.iter().any(|l| {
                matches!(l.hold, LockHold::Scan | LockHold::Rewrite) && ctx.is_live_table(&l.table)
            });
            let other = locks.iter().find(|l| {
                !l.table.same(&held.table)
                    && ctx.is_live_table(&l.table)
                    && ctx.tx.held_on(&l.table).is_none_or(|h| h.level < l.level)
            });
            if slow || other.is_some() {
                let why = match (slow, other) {
                    (true, _) => "runs a full scan or rewrite".to_string(),
                    (false, Some(l)) => format!("waits for {} on {}", l.level, l.table),
                    _ => unreachable!(),
                };
                out.push(ctx.finding(
                    &Self::META,
                    format!("this {why} while ACCESS EXCLUSIVE on {} (line {}) is held: no one can read or write it meanwhile", held.table, held.line),
                    "end the transaction after the ACCESS EXCLUSIVE statement and run this in its own (the plan splits them)",
                ));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_scan_or_other_table_after_access_exclusive() {
        fires(
            "statement-after-access-exclusive",
            &[USERS],
            "ALTER TABLE users ADD COLUMN x int;\nCREATE INDEX i ON users (email);",
        );
        fires(
            "statement-after-access-exclusive",
            &[USERS],
            "ALTER TABLE users ADD COLUMN x int;\nALTER TABLE orgs ADD COLUMN y int;",
        );
    }

    #[test]
    fn silent_outside_transactions_or_on_same_table_metadata() {
        silent("statement-after-access-exclusive", &[USERS], "-- migrate:no-transaction\nALTER TABLE users ADD COLUMN x int;\nALTER TABLE orgs ADD COLUMN y int;");
        silent(
            "statement-after-access-exclusive",
            &[USERS],
            "ALTER TABLE users ADD COLUMN x int;\nALTER TABLE users ADD COLUMN y int;",
        );
    }
}
