use crate::config::AppliedBy;
use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::locks::{locks_in, LockHold};

crate::declare_rule! {
    /// A statement that waits for a lock that blocks the app, with no `lock_timeout` set (when
    /// another runner applies the files).
    ///
    /// ## What it catches
    /// With `applied_by = "other"` (or `migrate plan --applied-by other`): a statement that
    /// takes a lock blocking writes or reads on a table that may hold rows, with no `SET
    /// lock_timeout` earlier in the file (or `SET LOCAL` in its transaction); and one that then
    /// scans or rewrites the table under that lock with no `statement_timeout`. `migrate expand`
    /// and `contract` set both themselves and retry, so files they apply are not flagged.
    ///
    /// ## Why it hurts
    /// A lock request queues behind any long query on the table, and every query after it
    /// queues behind the request: one slow report stalls all traffic to the table for as long
    /// as it runs. Without a statement_timeout, a scan under such a lock runs as long as the
    /// table is big.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    ///
    /// ## Instead
    /// Start the file with `SET lock_timeout = '100ms';` (and `SET statement_timeout` for
    /// statements that scan), and have the runner retry on `lock_not_available`.
    pub struct MissingTimeouts => "missing-timeouts", Warning;
}

impl Rule for MissingTimeouts {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        if ctx.settings.applied_by != AppliedBy::Other {
            return;
        }
        let set = ctx.tx.timeouts();
        let locks: Vec<_> = ctx
            .ops
            .iter()
            .flat_map(|op| locks_in(op, ctx.catalog, ctx.pg()))
            .filter(|l| l.level.blocks_writes() && ctx.is_live_table(&l.table))
            .collect();
        let Some(strongest) = locks.iter().max_by_key(|l| l.level) else {
            return;
        };
        if !set.lock {
            out.push(ctx.finding(
                &Self::META,
                format!(
                    "waits for {} on {} with no lock_timeout: behind any long query it queues, and every query on {} queues behind it",
                    strongest.level, strongest.table, strongest.table
                ),
                "SET lock_timeout = '100ms' at the top of the file, and retry the file when it times out",
            ));
        }
        let long = locks
            .iter()
            .find(|l| matches!(l.hold, LockHold::Scan | LockHold::Rewrite));
        if let (Some(l), false) = (long, set.statement) {
            out.push(ctx.finding(
                &Self::META,
                format!(
                    "holds {} on {} {} with no statement_timeout",
                    l.level,
                    l.table,
                    l.hold.describe()
                ),
                "SET statement_timeout for the statement, or make it one that does not scan under this lock",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AppliedBy, Settings};
    use crate::lint::testing::*;

    fn other() -> Settings {
        Settings {
            applied_by: AppliedBy::Other,
            ..Settings::default()
        }
    }

    fn count(sql: &str, settings: &Settings) -> usize {
        rules_fired(&[USERS], sql, settings)
            .iter()
            .filter(|r| **r == "missing-timeouts")
            .count()
    }

    #[test]
    fn fires_for_other_runners_without_timeouts() {
        assert_eq!(count("ALTER TABLE users ADD COLUMN x int;", &other()), 1);
        // A scan under the lock also wants a statement_timeout.
        assert_eq!(count("ALTER TABLE users ALTER COLUMN age SET NOT NULL;", &other()), 2);
        assert_eq!(
            count("SET lock_timeout = '1s';\nALTER TABLE users ALTER COLUMN age SET NOT NULL;", &other()),
            1
        );
    }

    #[test]
    fn silent_with_timeouts_for_migrate_and_on_new_tables() {
        let set = "SET lock_timeout = '100ms';\nSET statement_timeout = '1min';\n";
        assert_eq!(count(&format!("{set}ALTER TABLE users ALTER COLUMN age SET NOT NULL;"), &other()), 0);
        assert_eq!(count("SET LOCAL lock_timeout = '100ms';\nALTER TABLE users ADD COLUMN x int;", &other()), 0);
        assert_eq!(count("ALTER TABLE users ADD COLUMN x int;", &Settings::default()), 0);
        assert_eq!(count("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN x int;", &other()), 0);
        // Reads and writes go on under SHARE UPDATE EXCLUSIVE: nothing queues behind it.
        assert_eq!(count("CREATE INDEX CONCURRENTLY i ON users (age);", &other()), 0);
    }

    #[test]
    fn a_timeout_set_to_zero_or_reset_is_off() {
        let add = "ALTER TABLE users ADD COLUMN x int;";
        for off in [
            "SET lock_timeout = 0;",
            "SET lock_timeout = '0';",
            "SET lock_timeout TO '0ms';",
            "SET lock_timeout = '100ms';\nRESET lock_timeout;",
            "SET lock_timeout = '100ms';\nSET lock_timeout TO DEFAULT;",
            "SET lock_timeout = '100ms';\nRESET ALL;",
            // SET LOCAL overrides the session's value for the transaction.
            "SET lock_timeout = '100ms';\nBEGIN;\nSET LOCAL lock_timeout = 0;",
            // A plain SET in the transaction replaces its SET LOCAL.
            "BEGIN;\nSET LOCAL lock_timeout = '1s';\nSET lock_timeout = 0;",
        ] {
            assert_eq!(count(&format!("{off}\n{add}"), &other()), 1, "{off}");
        }
        for on in [
            "SET lock_timeout = 100;",
            "SET lock_timeout = '1.5s';",
            "SET lock_timeout = 0;\nBEGIN;\nSET LOCAL lock_timeout = '1s';",
            // The SET LOCAL ended with its transaction; the session's value is back.
            "SET lock_timeout = '1s';\nBEGIN;\nSET LOCAL lock_timeout = 0;\nCOMMIT;",
        ] {
            assert_eq!(count(&format!("{on}\n{add}"), &other()), 0, "{on}");
        }
    }
}
