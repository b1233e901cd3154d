use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `ALTER DOMAIN … ADD CONSTRAINT` without `NOT VALID`.
    ///
    /// ## What it catches
    /// A constraint added to an existing domain, validated at once.
    ///
    /// ## Why it hurts
    /// PostgreSQL checks every column of every table that uses the domain, under locks that
    /// block writes to those tables, for as long as the scans take.
    ///
    /// ## Example
    /// ```sql
    /// ALTER DOMAIN email ADD CONSTRAINT email_at CHECK (VALUE LIKE '%@%');
    /// ```
    ///
    /// ## Instead
    /// `ALTER DOMAIN email ADD CONSTRAINT email_at CHECK (VALUE LIKE '%@%') NOT VALID;` then
    /// `ALTER DOMAIN email VALIDATE CONSTRAINT email_at;` in a later transaction.
    pub struct DomainConstraint => "domain-constraint", Warning;
}

impl Rule for DomainConstraint {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::AlterDomainAddConstraint {
                ty,
                not_valid: false,
            } = op
            {
                out.push(ctx.finding(
                    &Self::META,
                    format!("adding a constraint to domain {ty} checks every column that uses it, blocking writes to their tables"),
                    "add it NOT VALID, then VALIDATE CONSTRAINT in a later transaction",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_not_valid() {
        fires(
            "domain-constraint",
            &[],
            "ALTER DOMAIN email ADD CONSTRAINT at CHECK (VALUE LIKE '%@%');",
        );
    }

    #[test]
    fn silent_with_not_valid() {
        silent(
            "domain-constraint",
            &[],
            "ALTER DOMAIN email ADD CONSTRAINT at CHECK (VALUE LIKE '%@%') NOT VALID;",
        );
    }
}
