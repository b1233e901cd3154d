use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// `DROP CONSTRAINT` of a unique or primary key constraint the running version may rely on.
    ///
    /// ## What it catches
    /// Dropping a constraint of an existing table when the catalog says it is a unique or
    /// primary key (or does not know it).
    ///
    /// ## Why it hurts
    /// `INSERT … ON CONFLICT (cols)` of the running version fails once no unique index matches,
    /// and duplicates can slip in. Dropping a primary key also breaks logical replication of
    /// updates and deletes.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users DROP CONSTRAINT users_email_key;
    /// ```
    ///
    /// ## Instead
    /// Drop it in the contract phase, after no deployed version relies on it (the plan does).
    pub struct DroppingConstraint => "dropping-constraint", Warning;
}

impl Rule for DroppingConstraint {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::DropConstraint { table, name, .. } = op else {
                continue;
            };
            if !ctx.is_live_table(table) {
                continue;
            }
            let kind = ctx
                .catalog
                .table(table)
                .and_then(|t| t.constraints.iter().find(|c| &c.name == name))
                .map(|c| &c.kind);
            let keyish = match kind {
                Some(ConstraintKind::Unique { .. } | ConstraintKind::PrimaryKey { .. }) | None => {
                    true
                }
                Some(_) => false,
            };
            if keyish {
                out.push(ctx.finding(
                    &Self::META,
                    format!("dropping {name} on {table}: the running version's ON CONFLICT and uniqueness may rely on it"),
                    "drop it in contract, once no deployed version relies on it (the plan does)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_unique() {
        fires(
            "dropping-constraint",
            &[
                USERS,
                "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
            ],
            "ALTER TABLE users DROP CONSTRAINT users_email_key;",
        );
    }

    #[test]
    fn silent_on_check() {
        silent(
            "dropping-constraint",
            &[
                USERS,
                "ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0);",
            ],
            "ALTER TABLE users DROP CONSTRAINT age_pos;",
        );
    }
}
