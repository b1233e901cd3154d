use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A concurrent index build on PostgreSQL 14.0 to 14.3.
    ///
    /// ## What it catches
    /// `CREATE INDEX CONCURRENTLY` or `REINDEX … CONCURRENTLY` when the target version is
    /// 14.0, 14.1, 14.2 or 14.3 (`--pg-version` or `pg_version` in migrate.toml).
    ///
    /// ## Why it hurts
    /// Those releases can build a concurrently built index that silently misses rows updated
    /// during the build (fixed in 14.4). Queries then return wrong results.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// Upgrade to 14.4 or later before building indexes concurrently, then check existing
    /// indexes with `amcheck` and reindex the corrupt ones.
    pub struct Pg14ConcurrentIndexBug => "pg14-concurrent-index-bug", Error;
}

impl Rule for Pg14ConcurrentIndexBug {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let v = ctx.pg();
        if v.major != 14 || v.minor >= 4 {
            return;
        }
        for op in ctx.ops {
            let concurrent = match op {
                Operation::CreateIndex(ix) => ix.concurrently || ctx.is_live_table(&ix.table),
                Operation::Reindex { concurrently, .. } => *concurrently,
                _ => false,
            };
            if concurrent {
                out.push(ctx.finding(
                    &Self::META,
                    format!("PostgreSQL {v} can corrupt indexes built concurrently"),
                    "upgrade to 14.4 or later first, then verify existing indexes with amcheck",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_14_3() {
        fires_on(
            "14.3",
            "pg14-concurrent-index-bug",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
        );
    }

    #[test]
    fn silent_on_fixed_versions() {
        silent_on(
            "14.4",
            "pg14-concurrent-index-bug",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
        );
        silent_on(
            "15",
            "pg14-concurrent-index-bug",
            &[USERS],
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (name);",
        );
    }
}
