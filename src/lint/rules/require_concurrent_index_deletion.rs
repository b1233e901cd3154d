use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `DROP INDEX` without `CONCURRENTLY`.
    ///
    /// ## What it catches
    /// A plain `DROP INDEX` of an index on an existing table.
    ///
    /// ## Why it hurts
    /// It takes ACCESS EXCLUSIVE on the index's table: every read and write queues behind it,
    /// and behind whatever long transaction it waits for.
    ///
    /// ## Example
    /// ```sql
    /// DROP INDEX users_email_idx;
    /// ```
    ///
    /// ## Instead
    /// `DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;` (one index per statement, outside a
    /// transaction), in the contract phase. The plan does this.
    pub struct RequireConcurrentIndexDeletion => "require-concurrent-index-deletion", Warning;
}

impl Rule for RequireConcurrentIndexDeletion {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::DropIndex {
                names,
                concurrently: false,
                ..
            } = op
            else {
                continue;
            };
            let live = names.iter().any(|n| {
                ctx.catalog
                    .index(n)
                    .is_none_or(|i| i.origin == crate::model::catalog::Origin::Existing)
            });
            if live {
                out.push(ctx.finding(
                    &Self::META,
                    "DROP INDEX takes ACCESS EXCLUSIVE on its table: reads and writes queue behind it",
                    "use DROP INDEX CONCURRENTLY IF EXISTS, one index per statement (the plan does)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_plain_drop() {
        fires(
            "require-concurrent-index-deletion",
            &[USERS, "CREATE INDEX i ON users (name);"],
            "DROP INDEX i;",
        );
    }

    #[test]
    fn silent_when_concurrent_or_index_is_new() {
        silent(
            "require-concurrent-index-deletion",
            &[USERS],
            "DROP INDEX CONCURRENTLY i;",
        );
        silent(
            "require-concurrent-index-deletion",
            &[],
            "CREATE TABLE t (a int);\nCREATE INDEX i ON t (a);\nDROP INDEX i;",
        );
    }
}
