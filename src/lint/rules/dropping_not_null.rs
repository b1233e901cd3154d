use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `DROP NOT NULL` on an existing column.
    ///
    /// ## What it catches
    /// `ALTER COLUMN … DROP NOT NULL` on a table that may have traffic.
    ///
    /// ## Why it hurts
    /// The new version may now write NULLs that the running version does not expect: its code
    /// crashes on a NULL it was promised would never come.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
    /// ```
    ///
    /// ## Instead
    /// Deploy code that handles NULL first, then drop the constraint; or keep the column and
    /// add a new nullable one.
    pub struct DroppingNotNull => "dropping-not-null", Warning;
}

impl Rule for DroppingNotNull {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::DropNotNull { table, column } = op {
                if ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("{table}.{column} may now hold NULLs that the running version does not expect"),
                        "deploy code that handles NULL before this change",
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
            "dropping-not-null",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
        );
    }

    #[test]
    fn silent_on_new_table() {
        silent(
            "dropping-not-null",
            &[],
            "CREATE TABLE t (a int NOT NULL);\nALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
        );
    }
}
