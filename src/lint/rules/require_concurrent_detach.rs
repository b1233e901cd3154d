use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `DETACH PARTITION` without `CONCURRENTLY`.
    ///
    /// ## What it catches
    /// `ALTER TABLE parent DETACH PARTITION child` without `CONCURRENTLY`.
    ///
    /// ## Why it hurts
    /// A plain detach takes ACCESS EXCLUSIVE on the parent: every query on every partition
    /// queues behind it.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events DETACH PARTITION events_2023;
    /// ```
    ///
    /// ## Instead
    /// `ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;` (PostgreSQL 14 and later,
    /// outside a transaction, not for a partition with a default partition sibling). The plan
    /// does this in the contract phase.
    pub struct RequireConcurrentDetach => "require-concurrent-detach", Warning;
}

impl Rule for RequireConcurrentDetach {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::DetachPartition {
                table,
                concurrently: false,
                finalize: false,
                ..
            } = op
            {
                let help = if ctx.pg().at_least(14) {
                    "use DETACH PARTITION … CONCURRENTLY, outside a transaction (the plan does)"
                } else {
                    "DETACH … CONCURRENTLY needs PostgreSQL 14; before it, detach at a quiet time"
                };
                out.push(ctx.finding(
                    &Self::META,
                    format!("DETACH PARTITION takes ACCESS EXCLUSIVE on {table}"),
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
    fn fires_on_plain_detach() {
        fires(
            "require-concurrent-detach",
            &[],
            "ALTER TABLE events DETACH PARTITION events_2023;",
        );
    }

    #[test]
    fn silent_when_concurrent() {
        silent("require-concurrent-detach", &[], "-- migrate:no-transaction\nALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;");
    }
}
