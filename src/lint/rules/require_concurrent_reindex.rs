use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `REINDEX` without `CONCURRENTLY`.
    ///
    /// ## What it catches
    /// `REINDEX INDEX|TABLE|SCHEMA|DATABASE` without the `CONCURRENTLY` option.
    ///
    /// ## Why it hurts
    /// A plain REINDEX blocks writes to the table (and reads that would use the index) for the
    /// whole rebuild.
    ///
    /// ## Example
    /// ```sql
    /// REINDEX INDEX users_email_idx;
    /// ```
    ///
    /// ## Instead
    /// `REINDEX INDEX CONCURRENTLY users_email_idx;` (PostgreSQL 12 and later), outside a
    /// transaction. Before 12, build a new index concurrently and drop the old one.
    pub struct RequireConcurrentReindex => "require-concurrent-reindex", Warning;
}

impl Rule for RequireConcurrentReindex {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Reindex {
                target,
                concurrently: false,
                ..
            } = op
            {
                let help = if ctx.pg().at_least(12) {
                    "use REINDEX … CONCURRENTLY, outside a transaction (the plan does)"
                } else {
                    "before PostgreSQL 12: CREATE INDEX CONCURRENTLY a copy, then DROP INDEX CONCURRENTLY the old one"
                };
                out.push(ctx.finding(
                    &Self::META,
                    format!("REINDEX of {target} blocks writes for the whole rebuild"),
                    help,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_plain_reindex() {
        fires("require-concurrent-reindex", &[], "REINDEX TABLE users;");
    }

    #[test]
    fn silent_when_concurrent() {
        silent(
            "require-concurrent-reindex",
            &[],
            "-- migrate:no-transaction\nREINDEX TABLE CONCURRENTLY users;",
        );
    }
}
