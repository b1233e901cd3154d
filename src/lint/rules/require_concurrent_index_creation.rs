use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `CREATE INDEX` without `CONCURRENTLY` on a table that already exists.
    ///
    /// ## What it catches
    /// A plain `CREATE INDEX` (or `CREATE UNIQUE INDEX`) on a table that was not created in the
    /// same migration.
    ///
    /// ## Why it hurts
    /// A plain index build holds a SHARE lock for the whole build: every INSERT, UPDATE and
    /// DELETE on the table waits, for minutes on a large table.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// `CREATE INDEX CONCURRENTLY users_email_idx ON users (email);` outside a transaction. The
    /// plan does this for you, and drops and rebuilds an INVALID leftover of a failed build.
    pub struct RequireConcurrentIndexCreation => "require-concurrent-index-creation", Warning;
}

impl Rule for RequireConcurrentIndexCreation {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::CreateIndex(ix) = op {
                if !ix.concurrently && ctx.is_live_table(&ix.table) {
                    let help = if ctx.catalog.is_partitioned(&ix.table) {
                        "a partitioned table has no concurrent build: create it ON ONLY the parent, build each partition's index CONCURRENTLY and ATTACH it (the plan does)"
                    } else {
                        "build it with CREATE INDEX CONCURRENTLY, outside a transaction (the plan does)"
                    };
                    out.push(ctx.finding(
                        &Self::META,
                        format!("CREATE INDEX on {} blocks writes to it for the whole build (SHARE lock)", ix.table),
                        help,
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
    fn fires_on_existing_table() {
        fires(
            "require-concurrent-index-creation",
            &[USERS],
            "CREATE INDEX users_name_idx ON users (name);",
        );
        fires(
            "require-concurrent-index-creation",
            &[],
            "CREATE UNIQUE INDEX ON unknown_table (a);",
        );
    }

    #[test]
    fn silent_when_concurrent_or_table_is_new() {
        silent(
            "require-concurrent-index-creation",
            &[USERS],
            "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);",
        );
        silent(
            "require-concurrent-index-creation",
            &[],
            "CREATE TABLE t (a int);\nCREATE INDEX t_a_idx ON t (a);",
        );
    }
}
