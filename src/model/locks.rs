//! What each operation locks, and for how long.

use super::{ObjectKind, Operation, QualifiedName};
use serde::Serialize;
use std::fmt;

/// PostgreSQL's table lock levels, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockLevel {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockLevel {
    pub fn name(self) -> &'static str {
        match self {
            LockLevel::AccessShare => "ACCESS SHARE",
            LockLevel::RowShare => "ROW SHARE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::Share => "SHARE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::Exclusive => "EXCLUSIVE",
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Whether the lock makes ordinary writes (INSERT/UPDATE/DELETE) wait.
    pub fn blocks_writes(self) -> bool {
        self >= LockLevel::Share
    }

    /// Whether the lock makes plain reads wait.
    pub fn blocks_reads(self) -> bool {
        self == LockLevel::AccessExclusive
    }

    pub fn from_pg(mode: i32) -> LockLevel {
        match mode {
            1 => LockLevel::AccessShare,
            2 => LockLevel::RowShare,
            3 => LockLevel::RowExclusive,
            4 => LockLevel::ShareUpdateExclusive,
            5 => LockLevel::Share,
            6 => LockLevel::ShareRowExclusive,
            7 => LockLevel::Exclusive,
            _ => LockLevel::AccessExclusive,
        }
    }
}

impl fmt::Display for LockLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long a lock is held, relative to the size of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockHold {
    /// A catalog change only: milliseconds, once the lock is granted.
    Brief,
    /// For a scan of the whole table (validation, index build).
    Scan,
    /// For a rewrite of the whole table and its indexes.
    Rewrite,
    /// On the rows changed, for as long as the transaction runs.
    Rows,
}

impl LockHold {
    pub fn describe(self) -> &'static str {
        match self {
            LockHold::Brief => "metadata only, brief",
            LockHold::Scan => "for a full scan of the table",
            LockHold::Rewrite => "for a full rewrite of the table",
            LockHold::Rows => "row locks until commit",
        }
    }
}

/// One lock an operation takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableLock {
    pub table: QualifiedName,
    pub level: LockLevel,
    pub hold: LockHold,
}

fn lock(table: &QualifiedName, level: LockLevel, hold: LockHold) -> TableLock {
    TableLock {
        table: table.clone(),
        level,
        hold,
    }
}

/// The locks an operation takes on a schema as it stands, with how long each is held: whether
/// it rewrites the table, scans it, or only changes the catalog, as PostgreSQL decides it
/// (each case settled on a live server by tests/forms.rs).
pub fn locks_in(
    op: &Operation,
    catalog: &super::catalog::Catalog,
    pg: crate::vocab::PgVersion,
) -> Vec<TableLock> {
    use super::types::{type_change, TypeChange};
    use super::{ConstraintKind as K, Volatility};
    use LockHold::*;
    let with_hold = |mut locks: Vec<TableLock>, table: &QualifiedName, hold: LockHold| {
        for l in locks.iter_mut().filter(|l| &l.table == table) {
            l.hold = l.hold.max(hold);
        }
        locks
    };
    match op {
        Operation::AddColumn { table, column, .. } => {
            let default = column
                .default
                .as_ref()
                .filter(|d| !d.sql.eq_ignore_ascii_case("null"));
            let rewrite = column.identity
                || column.ty.is_serial()
                || column.generated_stored == Some(true)
                || default.is_some_and(|d| d.volatility == Volatility::Volatile)
                || (default.is_some() && !pg.at_least(11));
            // An inline CHECK, UNIQUE or PRIMARY KEY is verified by reading every row, even
            // though the new column is all NULL (or all the default); a REFERENCES only when a
            // default gives the column values to look up.
            let scan = column.constraints.iter().any(|c| match &c.kind {
                K::Check { .. } | K::Unique { .. } | K::PrimaryKey { .. } | K::Exclusion => true,
                K::ForeignKey { .. } => default.is_some(),
                K::NotNull { .. } => false,
            });
            let hold = if rewrite {
                Rewrite
            } else if scan {
                Scan
            } else {
                Brief
            };
            with_hold(locks_of(op, false), table, hold)
        }
        Operation::AlterColumnType {
            table,
            column,
            ty,
            using,
            ..
        } => {
            let current = catalog
                .table(table)
                .and_then(|t| t.column(column))
                .map(|c| &c.ty);
            let rewrites = !matches!(
                type_change(current, ty, using.is_some()),
                TypeChange::NoRewrite
            );
            locks_of(op, rewrites)
        }
        Operation::SetNotNull { table, column } => {
            let proven = pg.at_least(12)
                && catalog
                    .table(table)
                    .is_some_and(|t| t.has_valid_not_null_check(column));
            locks_of(op, !proven)
        }
        // REINDEX reads the table under SHARE (writes wait), or SHARE UPDATE EXCLUSIVE
        // concurrently; REINDEX INDEX locks the index's table the same way.
        Operation::Reindex {
            relation: Some(r),
            table_level,
            concurrently,
            ..
        } => {
            let table = if *table_level {
                Some(r.clone())
            } else {
                catalog.index(r).map(|ix| ix.table.clone())
            };
            let level = if *concurrently {
                LockLevel::ShareUpdateExclusive
            } else {
                LockLevel::Share
            };
            table.map(|t| lock(&t, level, Scan)).into_iter().collect()
        }
        // A domain's new constraint is checked on every column of that type, each table under
        // SHARE (writes wait) for the scan; NOT VALID checks nothing.
        Operation::AlterDomainAddConstraint { ty, not_valid } => catalog
            .tables()
            .filter(|t| {
                !*not_valid
                    && t.columns
                        .iter()
                        .any(|c| c.ty.base == ty.name && !c.ty.array)
            })
            .map(|t| lock(&t.name, LockLevel::Share, Scan))
            .collect(),
        // DROP INDEX locks the index's table too, when the catalog knows which it is.
        Operation::DropIndex {
            names,
            concurrently,
            ..
        } => names
            .iter()
            .filter_map(|n| catalog.index(n))
            .map(|ix| {
                let level = if *concurrently {
                    LockLevel::ShareUpdateExclusive
                } else {
                    LockLevel::AccessExclusive
                };
                lock(&ix.table, level, Brief)
            })
            .collect(),
        // PRIMARY KEY USING INDEX sets NOT NULL on its columns: a scan for each not known so.
        Operation::AddConstraint {
            table, constraint, ..
        } => match &constraint.kind {
            K::PrimaryKey {
                using_index: Some(ix),
                ..
            } => {
                let t = catalog.table(table);
                let ix = catalog.index(&QualifiedName::new(table.schema.as_deref(), ix));
                let nullable = ix.is_none_or(|ix| {
                    ix.columns
                        .iter()
                        .any(|c| !t.and_then(|t| t.column(c)).is_some_and(|c| c.not_null))
                });
                with_hold(
                    locks_of(op, false),
                    table,
                    if nullable { Scan } else { Brief },
                )
            }
            _ => locks_of(op, false),
        },
        // CASCADE drops every table of the schema, each under ACCESS EXCLUSIVE (without it
        // the drop fails unless the schema is empty).
        Operation::Drop {
            kind: ObjectKind::Schema,
            names,
            cascade: true,
            ..
        } => catalog
            .tables()
            .filter(|t| {
                names
                    .iter()
                    .any(|s| t.name.schema.as_deref() == Some(s.name.as_str()))
            })
            .map(|t| lock(&t.name, LockLevel::AccessExclusive, Brief))
            .collect(),
        _ => locks_of(op, matches!(op, Operation::AlterColumnType { .. })),
    }
}

/// The locks an operation takes, with how long each is held. `rewrites` says whether a type
/// change rewrites the table (decided by the caller, who knows the current type).
pub fn locks_of(op: &Operation, rewrites: bool) -> Vec<TableLock> {
    use LockHold::*;
    use LockLevel::*;
    use Operation as O;
    match op {
        O::AddColumn { table, column, .. } => {
            let mut v = vec![lock(table, AccessExclusive, Brief)];
            for c in &column.constraints {
                if let super::ConstraintKind::ForeignKey { references, .. } = &c.kind {
                    v.push(lock(references, ShareRowExclusive, Brief));
                }
            }
            v
        }
        O::DropColumn { table, .. }
        | O::DropNotNull { table, .. }
        | O::SetDefault { table, .. }
        | O::DropConstraint { table, .. }
        | O::RenameColumn { table, .. }
        | O::RenameTable { table, .. }
        | O::RenameConstraint { table, .. }
        | O::AlterGenerated { table, .. } => vec![lock(table, AccessExclusive, Brief)],
        O::AlterColumnType { table, .. } => {
            vec![lock(
                table,
                AccessExclusive,
                if rewrites { Rewrite } else { Brief },
            )]
        }
        O::SetNotNull { table, .. } => vec![lock(
            table,
            AccessExclusive,
            if rewrites { Scan } else { Brief },
        )],
        O::AddIdentity { table, .. } => vec![lock(table, AccessExclusive, Brief)],
        O::AddConstraint {
            table, constraint, ..
        } => {
            use super::ConstraintKind as K;
            match &constraint.kind {
                K::ForeignKey { references, .. } => {
                    let hold = if constraint.not_valid { Brief } else { Scan };
                    vec![
                        lock(table, ShareRowExclusive, hold),
                        lock(references, ShareRowExclusive, hold),
                    ]
                }
                K::Check { .. } | K::NotNull { .. } => vec![lock(
                    table,
                    AccessExclusive,
                    if constraint.not_valid { Brief } else { Scan },
                )],
                K::Unique {
                    using_index: Some(_),
                    ..
                }
                | K::PrimaryKey {
                    using_index: Some(_),
                    ..
                } => {
                    vec![lock(table, AccessExclusive, Brief)]
                }
                K::Unique { .. } | K::PrimaryKey { .. } | K::Exclusion => {
                    vec![lock(table, AccessExclusive, Scan)]
                }
            }
        }
        O::ValidateConstraint { table, .. } => vec![lock(table, ShareUpdateExclusive, Scan)],
        O::CreateIndex(ix) => {
            if ix.concurrently {
                vec![lock(&ix.table, ShareUpdateExclusive, Scan)]
            } else {
                vec![lock(&ix.table, Share, Scan)]
            }
        }
        O::AttachPartition { table, partition } => vec![
            lock(table, ShareUpdateExclusive, Brief),
            lock(partition, AccessExclusive, Scan),
        ],
        O::DetachPartition {
            table,
            partition,
            concurrently,
            ..
        } => {
            if *concurrently {
                vec![
                    lock(table, ShareUpdateExclusive, Brief),
                    lock(partition, ShareUpdateExclusive, Brief),
                ]
            } else {
                vec![
                    lock(table, AccessExclusive, Brief),
                    lock(partition, AccessExclusive, Brief),
                ]
            }
        }
        O::RewriteTable { table, .. } => vec![lock(table, AccessExclusive, Rewrite)],
        // Enabling or disabling triggers takes SHARE ROW EXCLUSIVE (writes wait, reads go on).
        O::AlterTableOther { table, what }
            if what.starts_with("EnableTrig")
                || what.starts_with("DisableTrig")
                || what == "EnableAlwaysTrig"
                || what == "EnableReplicaTrig" =>
        {
            vec![lock(table, ShareRowExclusive, Brief)]
        }
        O::AlterTableOther { table, .. } => vec![lock(table, AccessExclusive, Brief)],
        O::CreateTrigger { table, .. } => vec![lock(table, ShareRowExclusive, Brief)],
        O::Drop {
            kind:
                ObjectKind::Table
                | ObjectKind::View
                | ObjectKind::MaterializedView
                | ObjectKind::Sequence,
            names,
            ..
        } => names
            .iter()
            .map(|n| lock(n, AccessExclusive, Brief))
            .collect(),
        O::Truncate { tables, .. } => tables
            .iter()
            .map(|t| lock(t, AccessExclusive, Brief))
            .collect(),
        O::Vacuum { tables, full } => tables
            .iter()
            .map(|t| {
                if *full {
                    lock(t, AccessExclusive, Rewrite)
                } else {
                    lock(t, ShareUpdateExclusive, Scan)
                }
            })
            .collect(),
        O::Cluster { table: Some(t) } => vec![lock(t, AccessExclusive, Rewrite)],
        O::LockTable { tables, mode } => tables.iter().map(|t| lock(t, *mode, Brief)).collect(),
        // A plain refresh fills new storage and swaps it in; CONCURRENTLY diffs the new
        // result against the view and applies the difference in place.
        O::RefreshMaterializedView { view, concurrently } => vec![if *concurrently {
            lock(view, Exclusive, Scan)
        } else {
            lock(view, AccessExclusive, Rewrite)
        }],
        O::Update { table, .. }
        | O::Delete { table, .. }
        | O::Insert { table, .. }
        | O::Merge { table } => vec![lock(table, RowExclusive, Rows)],
        _ => Vec::new(),
    }
}
