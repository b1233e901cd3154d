use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// `ADD CONSTRAINT` CHECK, FOREIGN KEY or NOT NULL without `NOT VALID` on an existing table.
    ///
    /// ## What it catches
    /// A check, foreign key or (PostgreSQL 18) NOT NULL constraint added to a table that may
    /// hold rows, validated at once: `ADD CONSTRAINT` without `NOT VALID` (or `NOT ENFORCED`,
    /// which reads no row), and a `CHECK` written on a new column in `ADD
    /// COLUMN` (PostgreSQL scans every row although the new column is all NULL), or a
    /// `REFERENCES` on a new column with a default. A `REFERENCES` on a new column without a
    /// default is not flagged: every value is NULL and PostgreSQL skips the check.
    ///
    /// ## Why it hurts
    /// Validation scans the whole table while holding the constraint's lock: ACCESS EXCLUSIVE
    /// for a CHECK (no reads or writes), SHARE ROW EXCLUSIVE on both tables for a foreign key
    /// (no writes to either).
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);
    /// ```
    ///
    /// ## Instead
    /// `ADD CONSTRAINT … NOT VALID` (brief lock, checks new writes), then in a later transaction
    /// `VALIDATE CONSTRAINT …`, which only takes SHARE UPDATE EXCLUSIVE. The plan does this.
    pub struct ConstraintMissingNotValid => "constraint-missing-not-valid", Warning;
}

impl Rule for ConstraintMissingNotValid {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            // Written on a new column: no NOT VALID is possible inline, and PostgreSQL reads
            // every row to verify a CHECK though the column is all NULL (or all its default);
            // a REFERENCES only when a default gives the column values.
            if let Operation::AddColumn { table, column, .. } = op {
                if !ctx.is_live_table(table) {
                    continue;
                }
                let has_default = column
                    .default
                    .as_ref()
                    .is_some_and(|d| !d.sql.eq_ignore_ascii_case("null"));
                for c in &column.constraints {
                    let (kind, lock) = match &c.kind {
                        ConstraintKind::Check { .. } => ("CHECK", "ACCESS EXCLUSIVE: no reads or writes"),
                        ConstraintKind::ForeignKey { .. } if has_default => (
                            "REFERENCES",
                            "ACCESS EXCLUSIVE: no reads or writes",
                        ),
                        _ => continue,
                    };
                    out.push(ctx.finding(
                        &Self::META,
                        format!("the {kind} written on new column {table}.{} is verified by scanning all of {table} under {lock}", column.name),
                        "add the column alone, then ADD CONSTRAINT … NOT VALID and VALIDATE CONSTRAINT in a separate transaction",
                    ));
                }
                continue;
            }
            let Operation::AddConstraint {
                table, constraint, ..
            } = op
            else {
                continue;
            };
            if constraint.not_valid || !ctx.is_live_table(table) {
                continue;
            }
            let (kind, lock) = match &constraint.kind {
                ConstraintKind::Check { .. } => ("CHECK", "ACCESS EXCLUSIVE: no reads or writes"),
                // PostgreSQL 18: `ADD CONSTRAINT … NOT NULL c` scans as SET NOT NULL does.
                ConstraintKind::NotNull { .. } => {
                    ("NOT NULL", "ACCESS EXCLUSIVE: no reads or writes")
                }
                ConstraintKind::ForeignKey { .. } => (
                    "FOREIGN KEY",
                    "SHARE ROW EXCLUSIVE on both tables: no writes",
                ),
                _ => continue,
            };
            out.push(ctx.finding(
                &Self::META,
                format!("{kind} constraint on {table} is validated at once, scanning the table under {lock}"),
                "add it NOT VALID, then VALIDATE CONSTRAINT in a separate transaction (the plan does)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    /// PostgreSQL 18 reads `ADD CONSTRAINT … NOT NULL c`, validated at once unless NOT VALID;
    /// an inline NOT NULL on a new column with a default reads no row.
    #[test]
    fn a_not_null_constraint_of_18() {
        let rule = "constraint-missing-not-valid";
        fires_on("18", rule, &[USERS], "ALTER TABLE users ADD CONSTRAINT u_nn NOT NULL email;");
        silent_on("18", rule, &[USERS], "ALTER TABLE users ADD CONSTRAINT u_nn NOT NULL email NOT VALID;");
        silent_on("18", rule, &[USERS], "ALTER TABLE users ADD COLUMN z int NOT NULL DEFAULT 0;");
    }

    #[test]
    fn fires_on_validated_check_and_fk() {
        fires(
            "constraint-missing-not-valid",
            &[USERS],
            "ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0);",
        );
        fires(
            "constraint-missing-not-valid",
            &[USERS],
            "ALTER TABLE users ADD CONSTRAINT org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);",
        );
    }

    #[test]
    fn silent_with_not_valid_or_new_table() {
        silent(
            "constraint-missing-not-valid",
            &[USERS],
            "ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0) NOT VALID;",
        );
        silent(
            "constraint-missing-not-valid",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
        );
    }
}
