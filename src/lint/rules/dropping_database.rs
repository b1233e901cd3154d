use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ObjectKind, Operation};

crate::declare_rule! {
    /// `DROP DATABASE` in a migration.
    ///
    /// ## What it catches
    /// Any `DROP DATABASE`.
    ///
    /// ## Why it hurts
    /// It destroys a whole database; it also cannot run inside a transaction, and fails while
    /// anyone is connected.
    ///
    /// ## Example
    /// ```sql
    /// DROP DATABASE analytics;
    /// ```
    ///
    /// ## Instead
    /// Do it by hand, deliberately, outside the migration history.
    pub struct DroppingDatabase => "dropping-database", Error;
}

impl Rule for DroppingDatabase {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Drop {
                kind: ObjectKind::Database,
                names,
                ..
            } = op
            {
                let n = names.first().map(|n| n.name.clone()).unwrap_or_default();
                out.push(ctx.finding(
                    &Self::META,
                    format!("dropping database {n} destroys all of it"),
                    "do it by hand, outside the migration history",
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
        fires("dropping-database", &[], "DROP DATABASE analytics;");
    }

    #[test]
    fn silent_on_table() {
        silent(
            "dropping-database",
            &[],
            "CREATE TABLE t (a int);\nDROP TABLE t;",
        );
    }
}
