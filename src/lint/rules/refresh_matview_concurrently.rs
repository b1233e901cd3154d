use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.
    ///
    /// ## What it catches
    /// A plain refresh of a materialized view.
    ///
    /// ## Why it hurts
    /// It holds ACCESS EXCLUSIVE on the view for the whole query: every read of it waits.
    ///
    /// ## Example
    /// ```sql
    /// REFRESH MATERIALIZED VIEW daily_totals;
    /// ```
    ///
    /// ## Instead
    /// `REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;` (needs a unique index on the view),
    /// outside a transaction.
    pub struct RefreshMatviewConcurrently => "refresh-matview-concurrently", Warning;
}

impl Rule for RefreshMatviewConcurrently {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RefreshMaterializedView {
                view,
                concurrently: false,
            } = op
            {
                if ctx.is_live_table(view) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("refreshing {view} blocks every read of it until the query ends"),
                        "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view)",
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
    fn fires_on_plain_refresh() {
        fires(
            "refresh-matview-concurrently",
            &[],
            "REFRESH MATERIALIZED VIEW totals;",
        );
    }

    #[test]
    fn silent_when_concurrent() {
        silent(
            "refresh-matview-concurrently",
            &[],
            "REFRESH MATERIALIZED VIEW CONCURRENTLY totals;",
        );
    }
}
