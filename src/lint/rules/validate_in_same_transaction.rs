use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `VALIDATE CONSTRAINT` in the same transaction as the `ADD CONSTRAINT … NOT VALID`.
    ///
    /// ## What it catches
    /// A constraint added `NOT VALID` and validated before the transaction commits.
    ///
    /// ## Why it hurts
    /// The ADD's lock (ACCESS EXCLUSIVE, or SHARE ROW EXCLUSIVE for a foreign key) is held until
    /// commit, so the validating scan runs under it: the very blocking `NOT VALID` was meant to
    /// avoid.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0) NOT VALID;
    /// ALTER TABLE users VALIDATE CONSTRAINT age_pos;
    /// ```
    ///
    /// ## Instead
    /// Validate in a later transaction: the next migration, or the contract phase. The plan
    /// moves the VALIDATE to contract.
    pub struct ValidateInSameTransaction => "validate-in-same-transaction", Warning;
}

impl Rule for ValidateInSameTransaction {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::ValidateConstraint { table, name } = op else {
                continue;
            };
            // Added earlier in the transaction, or by an earlier action of this very statement
            // (`ADD CONSTRAINT c … NOT VALID, VALIDATE CONSTRAINT c`: the scan runs under the
            // ADD's ACCESS EXCLUSIVE).
            let same = ctx
                .tx
                .added_constraints
                .iter()
                .any(|(t, n)| t.same(table) && n == name)
                || ctx.ops.iter().any(|o| {
                    matches!(o, Operation::AddConstraint { table: t, constraint, .. }
                        if t.same(table) && constraint.name.as_deref() == Some(name.as_str()))
                });
            if same && ctx.is_live_table(table) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{name} is validated in the transaction that added it: the scan runs under the ADD's lock"),
                    "validate it in a separate transaction (a later migration, or contract: the plan does)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_in_same_transaction() {
        fires("validate-in-same-transaction", &[USERS], "ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT c;");
    }

    #[test]
    fn silent_across_transactions() {
        silent("validate-in-same-transaction", &[USERS], "-- migrate:no-transaction\nALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT c;");
        silent(
            "validate-in-same-transaction",
            &[
                USERS,
                "ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID;",
            ],
            "ALTER TABLE users VALIDATE CONSTRAINT c;",
        );
    }
}
