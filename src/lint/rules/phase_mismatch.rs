use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};
use crate::plan::Phase;

crate::declare_rule! {
    /// An operation in a `-- migrate:<phase>` section where it does not belong.
    ///
    /// ## What it catches
    /// Files split with `-- migrate:expand`, `-- migrate:backfill` and `-- migrate:contract`:
    /// destructive or tightening operations in expand (drops, renames, `SET NOT NULL`,
    /// `VALIDATE`), schema changes in backfill, and additive ones in contract.
    ///
    /// ## Why it hurts
    /// Expand runs while the old version still serves traffic: a drop or rename there breaks it.
    /// Backfill runs in many short batches and must only move data. Contract runs after the
    /// new version is live: an addition there arrives too late for it.
    ///
    /// ## Example
    /// ```sql
    /// -- migrate:expand
    /// ALTER TABLE users DROP COLUMN legacy_name;
    /// ```
    ///
    /// ## Instead
    /// Move the statement to its phase: additions to expand, data changes to backfill, drops and
    /// tightening to contract.
    pub struct PhaseMismatch => "phase-mismatch", Error;
}

fn belongs(op: &Operation) -> Option<Phase> {
    use Operation as O;
    Some(match op {
        O::DropColumn { .. }
        | O::Drop { .. }
        | O::DropIndex { .. }
        | O::DropConstraint { .. }
        | O::RenameColumn { .. }
        | O::RenameTable { .. }
        | O::RenameSchema { .. }
        | O::RenameEnumValue { .. }
        | O::SetNotNull { .. }
        | O::ValidateConstraint { .. }
        | O::DetachPartition { .. }
        | O::Truncate { .. }
        | O::SetDefault { default: None, .. } => Phase::Contract,
        O::AddConstraint { constraint, .. }
            if !constraint.not_valid
                && !matches!(
                    constraint.kind,
                    ConstraintKind::Unique {
                        using_index: Some(_),
                        ..
                    } | ConstraintKind::PrimaryKey {
                        using_index: Some(_),
                        ..
                    }
                ) =>
        {
            Phase::Contract
        }
        O::Update { .. } | O::Delete { .. } | O::Insert { .. } | O::Merge { .. } => Phase::Backfill,
        O::Transaction(_) | O::SetVariable { .. } | O::Other { .. } | O::Opaque { .. } => {
            return None
        }
        _ => Phase::Expand,
    })
}

impl Rule for PhaseMismatch {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let Some(section) = ctx.section else { return };
        for op in ctx.ops {
            let Some(home) = belongs(op) else { continue };
            let bad = match section {
                Phase::Expand => home == Phase::Contract,
                Phase::Backfill => home != Phase::Backfill,
                // Tightening (constraints, indexes) and last data fixes belong in contract; new
                // columns and tables arrive too late there for the version that needs them.
                Phase::Contract => matches!(
                    op,
                    Operation::AddColumn { .. }
                        | Operation::CreateTable { .. }
                        | Operation::CreateView { .. }
                ),
            };
            if bad {
                let what = crate::plan::rewrites::describe(op);
                out.push(ctx.finding(
                    &Self::META,
                    format!("{what} belongs in the {home} phase, not in {section}"),
                    format!("move it under `-- migrate:{home}`"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_drop_in_expand_and_ddl_in_backfill() {
        fires(
            "phase-mismatch",
            &[USERS],
            "-- migrate:expand\nALTER TABLE users DROP COLUMN age;",
        );
        fires(
            "phase-mismatch",
            &[USERS],
            "-- migrate:backfill\nALTER TABLE users ADD COLUMN x int;",
        );
        fires(
            "phase-mismatch",
            &[USERS],
            "-- migrate:contract\nALTER TABLE users ADD COLUMN x int;",
        );
    }

    #[test]
    fn silent_when_each_statement_is_in_its_phase() {
        silent(
            "phase-mismatch",
            &[USERS],
            "-- migrate:expand\nALTER TABLE users ADD COLUMN full_name text;\n-- migrate:backfill\nUPDATE users SET full_name = name;\n-- migrate:contract\nALTER TABLE users DROP COLUMN name;",
        );
    }
}
