use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// Adding an exclusion constraint to an existing table.
    ///
    /// ## What it catches
    /// `ALTER TABLE … ADD CONSTRAINT … EXCLUDE USING …` on a table that may hold rows.
    ///
    /// ## Why it hurts
    /// The constraint's index is built and every row checked under ACCESS EXCLUSIVE, and unlike
    /// UNIQUE there is no way to build it concurrently and attach it afterwards.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);
    /// ```
    ///
    /// ## Instead
    /// Create the table with the constraint, or enforce the rule with a trigger on new writes
    /// and add the constraint in a maintenance window.
    pub struct AddingExclusionConstraint => "adding-exclusion-constraint", Error;
}

impl Rule for AddingExclusionConstraint {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::AddConstraint {
                table, constraint, ..
            } = op
            {
                if constraint.kind == ConstraintKind::Exclusion && ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("an exclusion constraint on {table} is built under ACCESS EXCLUSIVE and cannot be built concurrently"),
                        "create it with the table, or enforce it by trigger and add it in a maintenance window",
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
            "adding-exclusion-constraint",
            &["CREATE TABLE b (room int, during tstzrange);"],
            "ALTER TABLE b ADD CONSTRAINT x EXCLUDE USING gist (room WITH =, during WITH &&);",
        );
    }

    #[test]
    fn silent_on_new_table() {
        silent("adding-exclusion-constraint", &[], "CREATE TABLE b (room int, during tstzrange);\nALTER TABLE b ADD CONSTRAINT x EXCLUDE USING gist (room WITH =, during WITH &&);");
    }
}
