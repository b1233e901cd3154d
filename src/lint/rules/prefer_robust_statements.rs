use crate::config::AppliedBy;
use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A statement that cannot be run again after a failure, in a file that runs outside a
    /// transaction (when another runner applies the files).
    ///
    /// ## What it catches
    /// With `applied_by = "other"`, in files without a wrapping transaction: `CREATE TABLE`,
    /// `CREATE INDEX` and `ADD COLUMN` without `IF NOT EXISTS`, `DROP …` without `IF EXISTS`,
    /// and `CREATE INDEX CONCURRENTLY IF NOT EXISTS` with no `DROP INDEX CONCURRENTLY IF
    /// EXISTS` of the same index before it. `migrate expand` checkpoints every step and drops an
    /// INVALID index before it rebuilds, so files it applies are not flagged.
    ///
    /// ## Why it hurts
    /// If the file fails halfway, the statements before the failure stay applied; running it
    /// again then fails on the first of them ("already exists"), and someone must fix it by
    /// hand. A concurrent index build that failed leaves an INVALID index behind, which
    /// `IF NOT EXISTS` then skips: the rerun succeeds and the index is never usable.
    ///
    /// ## Example
    /// ```sql
    /// -- migrate:no-transaction
    /// CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// `DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;` then `CREATE INDEX CONCURRENTLY
    /// users_email_idx …`; `IF NOT EXISTS` / `IF EXISTS` on the rest.
    pub struct PreferRobustStatements => "prefer-robust-statements", Warning;
}

impl Rule for PreferRobustStatements {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        if ctx.settings.applied_by != AppliedBy::Other || ctx.tx.in_transaction() {
            return;
        }
        for op in ctx.ops {
            let problem = match op {
                Operation::CreateIndex(ix) if ix.concurrently => {
                    let dropped_first = ix.name.as_ref().is_some_and(|name| {
                        ctx.earlier.iter().any(|o| matches!(o,
                            Operation::DropIndex { names, if_exists: true, .. }
                                if names.iter().any(|n| &n.name == name)))
                    });
                    match (dropped_first, ix.if_not_exists) {
                        (true, _) => None,
                        (false, false) => Some("outside a transaction, a rerun after a failed build fails on this statement: the failed build left an INVALID index of this name"),
                        (false, true) => Some("a failed concurrent build leaves an INVALID index, which IF NOT EXISTS skips on the rerun: the migration then succeeds without a usable index"),
                    }
                }
                Operation::CreateTable { if_not_exists, .. }
                | Operation::AddColumn { if_not_exists, .. }
                    if !if_not_exists =>
                {
                    Some("outside a transaction, a rerun after a partial failure fails on this statement")
                }
                Operation::CreateIndex(ix) if !ix.if_not_exists => {
                    Some("outside a transaction, a rerun after a partial failure fails on this statement")
                }
                Operation::DropIndex { if_exists, .. } | Operation::Drop { if_exists, .. }
                    if !if_exists =>
                {
                    Some("outside a transaction, a rerun after a partial failure fails on this statement")
                }
                _ => None,
            };
            if let Some(message) = problem {
                let help = match op {
                    Operation::CreateIndex(ix) if ix.concurrently => {
                        "DROP INDEX CONCURRENTLY IF EXISTS the index first, then build it"
                    }
                    _ => "add IF NOT EXISTS / IF EXISTS",
                };
                out.push(ctx.finding(&Self::META, message, help));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AppliedBy, Settings};
    use crate::lint::testing::*;

    fn fired(sql: &str, applied_by: AppliedBy) -> bool {
        let settings = Settings {
            applied_by,
            ..Settings::default()
        };
        rules_fired(&[USERS], sql, &settings).contains(&"prefer-robust-statements")
    }

    #[test]
    fn fires_outside_transaction_for_other_runners() {
        for sql in [
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (name);",
            "-- migrate:no-transaction\nALTER TABLE users ADD COLUMN x int;",
            "-- migrate:no-transaction\nDROP TABLE orgs;",
        ] {
            assert!(fired(sql, AppliedBy::Other), "{sql}");
            assert!(!fired(sql, AppliedBy::Migrate), "the engine resumes: {sql}");
        }
    }

    #[test]
    fn silent_when_rerunnable_or_transactional() {
        for sql in [
            "-- migrate:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS i;\nCREATE INDEX CONCURRENTLY i ON users (name);",
            "-- migrate:no-transaction\nALTER TABLE users ADD COLUMN IF NOT EXISTS x int;",
            "CREATE TABLE t (a int);",
        ] {
            assert!(!fired(sql, AppliedBy::Other), "{sql}");
        }
    }
}
