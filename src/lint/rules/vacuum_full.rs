use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `VACUUM FULL` in a migration.
    ///
    /// ## What it catches
    /// `VACUUM FULL` of any table (or of the whole database).
    ///
    /// ## Why it hurts
    /// It rewrites the table into a new file under ACCESS EXCLUSIVE: no reads or writes until it
    /// is done, and it needs room for a second copy. It cannot run in a transaction either.
    ///
    /// ## Example
    /// ```sql
    /// VACUUM FULL events;
    /// ```
    ///
    /// ## Instead
    /// Plain `VACUUM` (no exclusive lock), or `pg_repack` / `pg_squeeze` to reclaim space online.
    pub struct VacuumFull => "vacuum-full", Error;
}

impl Rule for VacuumFull {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Vacuum { full: true, .. } = op {
                out.push(ctx.finding(
                    &Self::META,
                    "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE: no reads or writes until it ends",
                    "use plain VACUUM, or pg_repack / pg_squeeze to reclaim space online",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_full() {
        fires("vacuum-full", &[], "VACUUM FULL events;");
        fires("vacuum-full", &[], "VACUUM (FULL, ANALYZE) events;");
    }

    #[test]
    fn silent_on_plain_vacuum() {
        silent("vacuum-full", &[], "VACUUM ANALYZE events;");
    }
}
