use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `CLUSTER` in a migration.
    ///
    /// ## What it catches
    /// `CLUSTER` of a table (or of every clustered table).
    ///
    /// ## Why it hurts
    /// It rewrites the table in index order under ACCESS EXCLUSIVE: no reads or writes until it
    /// is done.
    ///
    /// ## Example
    /// ```sql
    /// CLUSTER events USING events_created_at_idx;
    /// ```
    ///
    /// ## Instead
    /// `pg_repack --order-by`, which reorders online.
    pub struct Cluster => "cluster", Error;
}

impl Rule for Cluster {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Cluster { table } = op {
                let what = table
                    .as_ref()
                    .map_or("every clustered table".to_string(), |t| t.sql());
                out.push(ctx.finding(
                    &Self::META,
                    format!("CLUSTER rewrites {what} under ACCESS EXCLUSIVE: no reads or writes until it ends"),
                    "use pg_repack --order-by to reorder online",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_it() {
        fires("cluster", &[], "CLUSTER events USING events_idx;");
    }

    #[test]
    fn silent_on_other_statements() {
        silent("cluster", &[], "ANALYZE events;");
    }
}
