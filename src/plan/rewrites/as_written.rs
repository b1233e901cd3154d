//! Statements run as written in their natural phase, and the undo of additive ones for abort.

use super::*;

/// Runs the statement as written in `phase`.
pub(super) fn as_written(op: &Operation, sql: &str, phase: Phase, intent: &str) -> Rewrite {
    let kind = match op {
        Operation::CreateIndex(ix) if ix.concurrently => StepKind::Concurrent {
            index: ix
                .name
                .as_ref()
                .map(|n| QualifiedName::new(ix.table.schema.as_deref(), n)),
            partitioned: ix.name.as_ref().map(|_| on_only(sql)),
        },
        Operation::DropIndex {
            concurrently: true, ..
        } => StepKind::Concurrent {
            index: None,
            partitioned: Some(without_concurrently(sql)),
        },
        Operation::Reindex {
            concurrently: true, ..
        } => StepKind::Concurrent {
            index: None,
            partitioned: None,
        },
        Operation::DetachPartition {
            concurrently: true, ..
        } => StepKind::Concurrent {
            index: None,
            partitioned: None,
        },
        Operation::Opaque { .. }
        | Operation::Update { .. }
        | Operation::Delete { .. }
        | Operation::Insert { .. }
        | Operation::Merge { .. } => StepKind::AsWritten,
        _ => StepKind::Ddl,
    };
    let rewrites = matches!(op, Operation::AlterColumnType { .. });
    let mut r = new_rewrite(intent);
    r.rewritten = false;
    r.steps
        .push(step(phase, "as written", sql, kind, locks_of(op, rewrites)));
    if phase == Phase::Expand {
        r.abort.extend(undo(op));
    }
    r
}

/// The undo of an additive operation run as written, for `migrate abort`.
pub(super) fn undo(op: &Operation) -> Option<Step> {
    let (action, sql, table) = match op {
        Operation::AddColumn { table, column, .. } => (
            "drop the added column",
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                quote_ident(&column.name)
            ),
            table,
        ),
        Operation::CreateTable { table, .. }
        | Operation::CreateTableAs {
            table,
            materialized_view: false,
        } => (
            "drop the created table",
            format!("DROP TABLE IF EXISTS {table}"),
            table,
        ),
        Operation::CreateView { view } => (
            "drop the created view",
            format!("DROP VIEW IF EXISTS {view}"),
            view,
        ),
        Operation::CreateIndex(ix) => {
            let name = QualifiedName::new(ix.table.schema.as_deref(), ix.name.as_deref()?);
            return Some(step(
                Phase::Expand,
                "drop the created index",
                format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"),
                StepKind::Concurrent {
                    index: None,
                    partitioned: None,
                },
                Vec::new(),
            ));
        }
        _ => return None,
    };
    Some(exclusive(Phase::Expand, action, sql, table))
}

/// The phase an operation belongs in when it is run as written.
pub(super) fn natural_phase(op: &Operation) -> Phase {
    use Operation as O;
    match op {
        O::DropColumn { .. }
        | O::Drop { .. }
        | O::DropIndex { .. }
        | O::DropConstraint { .. }
        | O::ValidateConstraint { .. }
        | O::SetNotNull { .. }
        | O::DetachPartition { .. }
        | O::SetDefault { default: None, .. } => Phase::Contract,
        O::Update { .. } | O::Delete { .. } | O::Insert { .. } | O::Merge { .. } => Phase::Backfill,
        _ => Phase::Expand,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn additive_and_undone_by_abort() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ADD COLUMN bio text;\nCREATE TABLE tags (id bigint PRIMARY KEY);",
            true
        ));
    }
}
