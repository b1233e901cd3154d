//! The catalogue of safe rewrites: one operation's intent → its phased steps, one file per
//! rewrite. This file dispatches a statement to its rewrite and holds the helpers they share.
//!
//! Tables created earlier in the same migration are new and empty, so their operations run as
//! written. Identifiers are quoted through `quote_ident`; generated object names are kept to
//! PostgreSQL's 63-byte limit.

mod add_constraint;
mod as_written;
mod batched_update;
mod change_type;
mod drop;
mod index;
mod rename_column;
mod rename_table;
mod set_not_null;
mod shadow;
mod volatile_default;

use add_constraint::*;
use as_written::*;
use batched_update::*;
use change_type::*;
use drop::*;
use index::*;
use rename_column::*;
use rename_table::*;
use set_not_null::*;
use shadow::*;
use volatile_default::*;

use super::{
    FkAction, Key, KeyAction, LateForeignKey, Phase, PlanCtx, Reshape, Rewrite, Step, StepKind,
    ViewChange,
};
use crate::model::locks::{locks_of, LockHold, LockLevel, TableLock};
use crate::model::types::{type_change, TypeChange};
use crate::model::{quote_ident, ConstraintKind, Operation, QualifiedName, TxControl, Volatility};

/// The constraint of `ALTER TABLE t ADD CONSTRAINT name <definition> NOT VALID` (as the
/// deparser writes it): the definition alone.
fn constraint_definition(add_not_valid: &str) -> Option<String> {
    let rest = &add_not_valid[add_not_valid.find(" ADD CONSTRAINT ")? + " ADD CONSTRAINT ".len()..];
    // Past the name: a quoted identifier, or a word.
    let after_name = if let Some(quoted) = rest.strip_prefix('"') {
        let mut i = 0;
        let b = quoted.as_bytes();
        loop {
            match b.get(i) {
                Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                Some(b'"') => break &quoted[i + 1..],
                Some(_) => i += 1,
                None => return None,
            }
        }
    } else {
        &rest[rest.find(' ')?..]
    };
    let definition = after_name.trim().strip_suffix("NOT VALID")?.trim_end();
    Some(definition.to_string())
}

/// Plans one statement: a rewrite for each of its operations that produces steps.
pub fn plan_statement(ctx: &PlanCtx, op_sql: &[String], earlier: &[&Operation]) -> Vec<Rewrite> {
    ctx.ops
        .iter()
        .zip(op_sql)
        .filter_map(|(op, sql)| {
            let mut r = match ctx.section {
                Some(phase) => explicit(ctx, op, sql, phase),
                None => intent(ctx, op, sql, earlier),
            }
            .map(|r| with_default_undo(ctx, op, r))?;
            r.statement = ctx.index;
            r.line = ctx.line;
            r.touches = touches(ctx, op);
            if r.steps_in(Phase::Expand).next().is_some() {
                r.reshapes = reshapes(op, ctx.section.is_some());
            }
            Some(r)
        })
        .collect()
}

/// The tables whose shape an operation's expand steps change: a column added (or its shadow,
/// for a type change), renamed, retyped in place, or dropped as written in an expand section.
/// An intent's `DROP COLUMN` only lifts NOT NULL at expand.
fn reshapes(op: &Operation, explicit: bool) -> Reshape {
    use Operation as O;
    match op {
        O::AddColumn { table, .. }
        | O::AlterColumnType { table, .. }
        | O::RenameColumn { table, .. }
        | O::RenameTable {
            table,
            kind: crate::model::ObjectKind::Table,
            ..
        } => Reshape::Tables(vec![table.clone()]),
        O::DropColumn { table, .. } if explicit => Reshape::Tables(vec![table.clone()]),
        O::Opaque { .. } => Reshape::Unknown,
        _ => Reshape::Nothing,
    }
}

/// The columns an operation changes or builds on, as far as it says: the columns it names, and
/// for an expression (a CHECK, an UPDATE) the table's columns that appear in it as words.
fn touches(ctx: &PlanCtx, op: &Operation) -> Vec<(QualifiedName, String)> {
    use Operation as O;
    let named = |table: &QualifiedName, cols: &[String]| -> Vec<(QualifiedName, String)> {
        cols.iter().map(|c| (table.clone(), c.clone())).collect()
    };
    let in_text = |table: &QualifiedName, text: &str| -> Vec<(QualifiedName, String)> {
        let words: std::collections::BTreeSet<String> = word_spans(&text.to_lowercase())
            .into_iter()
            .map(|(_, w)| w.to_string())
            .collect();
        ctx.catalog
            .table(table)
            .map(|t| {
                t.columns
                    .iter()
                    .filter(|c| {
                        words.contains(&c.name.to_lowercase())
                            || text.contains(&quote_ident(&c.name))
                    })
                    .map(|c| (table.clone(), c.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some((table, column)) = op.column_target() {
        return vec![(table.clone(), column.to_string())];
    }
    match op {
        O::AddConstraint {
            table, constraint, ..
        } => match &constraint.kind {
            ConstraintKind::Check { expr, .. } => in_text(table, expr),
            ConstraintKind::ForeignKey { columns, .. }
            | ConstraintKind::Unique { columns, .. }
            | ConstraintKind::PrimaryKey { columns, .. } => named(table, columns),
            ConstraintKind::NotNull { column } => named(table, std::slice::from_ref(column)),
            ConstraintKind::Exclusion => vec![(table.clone(), "*".into())],
        },
        O::CreateIndex(ix) => {
            let mut t = named(&ix.table, &ix.columns);
            if ix.partial || ix.include {
                t.extend(in_text(&ix.table, &ix.sql));
            }
            t
        }
        O::Update {
            table,
            sets,
            filter,
            ..
        } => {
            let mut t: Vec<_> = sets
                .iter()
                .map(|(c, _)| (table.clone(), c.clone()))
                .collect();
            for (_, e) in sets {
                t.extend(in_text(table, e));
            }
            if let Some(f) = filter {
                t.extend(in_text(table, f));
            }
            t
        }
        O::RenameTable { table, .. } | O::Delete { table, .. } | O::Merge { table } => {
            vec![(table.clone(), "*".into())]
        }
        O::Drop {
            kind: crate::model::ObjectKind::Table,
            names,
            ..
        } => names.iter().map(|t| (t.clone(), "*".to_string())).collect(),
        _ => Vec::new(),
    }
}

fn new_rewrite(intent: impl Into<String>) -> Rewrite {
    Rewrite {
        statement: 0,
        line: 0,
        intent: intent.into(),
        steps: Vec::new(),
        abort: Vec::new(),
        notes: Vec::new(),
        rejected: None,
        rewritten: true,
        view: Vec::new(),
        reshapes: Reshape::Nothing,
        touches: Vec::new(),
        adopts: None,
    }
}

fn step(
    phase: Phase,
    action: impl Into<String>,
    sql: impl Into<String>,
    kind: StepKind,
    locks: Vec<TableLock>,
) -> Step {
    Step {
        phase,
        action: action.into(),
        sql: sql.into(),
        kind,
        locks,
    }
}

/// A DDL step under a brief ACCESS EXCLUSIVE lock (a catalog change).
fn exclusive(
    phase: Phase,
    action: impl Into<String>,
    sql: impl Into<String>,
    table: &QualifiedName,
) -> Step {
    step(
        phase,
        action,
        sql,
        StepKind::Ddl,
        brief(table, LockLevel::AccessExclusive),
    )
}

/// Row locks on the rows a batch changes, for as long as the batch's transaction.
fn row_locks(table: &QualifiedName) -> Vec<TableLock> {
    vec![TableLock {
        table: table.clone(),
        level: LockLevel::RowExclusive,
        hold: LockHold::Rows,
    }]
}

fn brief(table: &QualifiedName, level: LockLevel) -> Vec<TableLock> {
    vec![TableLock {
        table: table.clone(),
        level,
        hold: LockHold::Brief,
    }]
}

/// A foreign key added NOT VALID: SHARE ROW EXCLUSIVE on both its tables, briefly.
fn foreign_key_locks(from: &QualifiedName, to: &QualifiedName) -> Vec<TableLock> {
    let mut locks = brief(from, LockLevel::ShareRowExclusive);
    locks.extend(brief(to, LockLevel::ShareRowExclusive));
    locks
}

fn scan(table: &QualifiedName, level: LockLevel) -> Vec<TableLock> {
    vec![TableLock {
        table: table.clone(),
        level,
        hold: LockHold::Scan,
    }]
}

/// A name for a generated object, at most 63 bytes (PostgreSQL truncates longer ones silently,
/// which could make two generated names collide).
pub fn generated_name(prefix: &str, parts: &[&str]) -> String {
    let full = format!("{prefix}_{}", parts.join("_"));
    if full.len() <= 63 {
        return full;
    }
    let hash = fnv(&full);
    let mut cut = 63 - 9;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &full[..cut], hash as u32)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn partition_key_refusal(table: &QualifiedName, column: &str) -> String {
    format!(
        "{} is in the partition key of {table} or of one of its partitions: PostgreSQL can neither change its type nor drop it. Create a new partitioned table keyed as you want, and move the rows into it in batches",
        quote_ident(column)
    )
}

fn reject(intent: &str, why: impl Into<String>) -> Rewrite {
    let mut r = new_rewrite(intent);
    r.rejected = Some(why.into());
    r
}

/// Describes an operation in a few words.
pub fn describe(op: &Operation) -> String {
    use Operation as O;
    match op {
        O::CreateTable { table, .. } => format!("create table {table}"),
        O::CreateTableAs { table, .. } => format!("create {table} from a query"),
        O::AddColumn { table, column, .. } => {
            format!("add column {table}.{}", quote_ident(&column.name))
        }
        O::DropColumn { table, column, .. } => {
            format!("drop column {table}.{}", quote_ident(column))
        }
        O::AlterColumnType {
            table, column, ty, ..
        } => {
            format!(
                "change type of {table}.{} to {}",
                quote_ident(column),
                ty.sql
            )
        }
        O::SetNotNull { table, column } => format!("set {table}.{} NOT NULL", quote_ident(column)),
        O::DropNotNull { table, column } => {
            format!("drop NOT NULL on {table}.{}", quote_ident(column))
        }
        O::SetDefault {
            table,
            column,
            default: Some(_),
        } => format!("set default of {table}.{}", quote_ident(column)),
        O::SetDefault {
            table,
            column,
            default: None,
        } => format!("drop default of {table}.{}", quote_ident(column)),
        O::AddConstraint {
            table, constraint, ..
        } => {
            let kind = match &constraint.kind {
                ConstraintKind::Check { .. } => "CHECK",
                ConstraintKind::ForeignKey { .. } => "FOREIGN KEY",
                ConstraintKind::Unique { .. } => "UNIQUE",
                ConstraintKind::PrimaryKey { .. } => "PRIMARY KEY",
                ConstraintKind::Exclusion => "EXCLUDE",
                ConstraintKind::NotNull { .. } => "NOT NULL",
            };
            format!("add {kind} constraint to {table}")
        }
        O::ValidateConstraint { table, name } => {
            format!("validate {} on {table}", quote_ident(name))
        }
        O::DropConstraint { table, name, .. } => {
            format!("drop constraint {} on {table}", quote_ident(name))
        }
        O::RenameColumn { table, from, to } => {
            format!(
                "rename column {table}.{} to {}",
                quote_ident(from),
                quote_ident(to)
            )
        }
        O::RenameTable { table, to, .. } => format!("rename {table} to {}", quote_ident(to)),
        O::CreateIndex(ix) => format!(
            "create {}index {}on {}",
            if ix.unique { "unique " } else { "" },
            ix.name
                .as_ref()
                .map(|n| format!("{} ", quote_ident(n)))
                .unwrap_or_default(),
            ix.table
        ),
        O::DropIndex { names, .. } => format!(
            "drop index {}",
            names
                .iter()
                .map(QualifiedName::sql)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        O::Update { table, .. } => format!("update rows of {table}"),
        O::Delete { table, .. } => format!("delete rows of {table}"),
        O::Merge { table } => format!("merge rows into {table}"),
        O::Insert { table, .. } => format!("insert rows into {table}"),
        O::Drop { kind, names, .. } => format!(
            "drop {:?} {}",
            kind,
            names
                .iter()
                .map(QualifiedName::sql)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .to_lowercase(),
        O::Opaque { what } | O::Other { what } => what.to_lowercase(),
        // The subcommand's name from the parser (`SetStatistics` → `set statistics`).
        O::AlterTableOther { table, what } => format!("alter table {table} {}", split_camel(what)),
        other => {
            let dbg = format!("{other:?}");
            let name = dbg.split([' ', '(', '{']).next().unwrap_or("").to_string();
            match other.table() {
                Some(t) => format!("{} on {t}", split_camel(&name)),
                None => split_camel(&name),
            }
        }
    }
}

fn split_camel(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A file with `-- migrate:<phase>` markers: statements run as written in their section, with
/// only the mechanical safety changes (indexes built concurrently, backfills batched).
fn explicit(ctx: &PlanCtx, op: &Operation, sql: &str, phase: Phase) -> Option<Rewrite> {
    match op {
        Operation::Transaction(_) | Operation::SetVariable { .. } => None,
        Operation::CreateIndex(ix) if !ix.concurrently && ctx.is_live_table(&ix.table) => {
            Some(concurrent_index(ctx, op, phase))
        }
        Operation::DropIndex {
            concurrently: false,
            ..
        } => Some(concurrent_drop_index(op, phase)),
        Operation::Update { .. } if phase == Phase::Backfill => Some(batched_update(op, sql)),
        _ => Some(as_written(op, sql, phase, &describe(op))),
    }
}

/// Whether an earlier statement of the migration, or a migration still in flight, changes
/// `table`: their backfill and contract steps name the table and its columns as they were, so
/// a rename of either must wait until contract, after them.
fn changed_before(ctx: &PlanCtx, earlier: &[&Operation], table: &QualifiedName) -> bool {
    earlier
        .iter()
        .any(|op| op.table().is_some_and(|t| t.same(table)))
        || ctx.pending_tables.iter().any(|t| t.same(table))
}

/// A default set at expand is undone by abort: the column's default before it, or none.
fn with_default_undo(ctx: &PlanCtx, op: &Operation, mut r: Rewrite) -> Rewrite {
    if let Operation::SetDefault {
        table,
        column,
        default: Some(_),
    } = op
    {
        if r.steps_in(Phase::Expand).next().is_some() && r.abort.is_empty() {
            let before = ctx
                .catalog
                .table(table)
                .and_then(|t| t.column(column))
                .and_then(|c| c.default.clone());
            let q = quote_ident(column);
            let sql = match before {
                Some(d) => format!("ALTER TABLE {table} ALTER COLUMN {q} SET DEFAULT {d}"),
                None => format!("ALTER TABLE {table} ALTER COLUMN {q} DROP DEFAULT"),
            };
            r.abort.push(exclusive(
                Phase::Expand,
                "restore the column's default",
                sql,
                table,
            ));
        }
    }
    r
}

/// The columns of `table` whose type an earlier statement of this migration changes. A type
/// change swaps in a new column at contract and drops the old one, and with it whatever this
/// migration built on the old one in expand: a constraint or index on such a column is made
/// at contract, after the swap, on the column as it then is.
fn retyped_before<'a>(earlier: &[&'a Operation], table: &QualifiedName) -> Vec<&'a str> {
    earlier
        .iter()
        .filter_map(|op| match op {
            Operation::AlterColumnType {
                table: t, column, ..
            } if t.same(table) => Some(column.as_str()),
            _ => None,
        })
        .collect()
}

/// Plain SQL: each intent becomes its safe phased form.
fn intent(ctx: &PlanCtx, op: &Operation, sql: &str, earlier: &[&Operation]) -> Option<Rewrite> {
    use Operation as O;
    let what = describe(op);
    let live = |t: &QualifiedName| ctx.is_live_table(t);
    let in_key =
        |t: &QualifiedName, c: &str| ctx.catalog.table(t).is_some_and(|t| t.in_partition_key(c));
    let pg = ctx.pg();
    // Whether this builds on a column an earlier statement retypes (an expression index or a
    // check may read any column: then any retyped column of the table counts).
    let after_swap = |t: &QualifiedName, columns: &[String]| {
        let retyped = retyped_before(earlier, t);
        !retyped.is_empty()
            && (columns.is_empty() || columns.iter().any(|c| retyped.contains(&c.as_str())))
    };
    Some(match op {
        O::Transaction(TxControl::Begin | TxControl::Commit) | O::SetVariable { .. } => return None,
        O::CreateIndex(ix) if live(&ix.table) && after_swap(&ix.table, &ix.columns) => {
            let mut r = concurrent_index(ctx, op, Phase::Contract);
            r.notes.push(format!("an earlier statement changes the type of a column of {} this index may read: it is built at contract, after the swap, so it indexes the new column (built at expand, it would go with the old one)", ix.table));
            r
        }
        O::CreateIndex(ix) if !ix.concurrently && live(&ix.table) => concurrent_index(ctx, op, Phase::Expand),
        O::DropIndex { concurrently: false, .. } => concurrent_drop_index(op, Phase::Contract),
        O::AddColumn { table, column, .. } if live(table) => {
            let generated = column.generated_stored == Some(true);
            if column.identity || column.ty.is_serial() || generated {
                reject(&what, "an identity, serial or stored generated column rewrites the whole table under ACCESS EXCLUSIVE")
            } else if column.not_null && column.default.is_none() {
                reject(&what, "a NOT NULL column without a default fails on existing rows and breaks the old version's inserts")
            } else if let Some(d) = column.default.as_ref().filter(|d| d.volatility == Volatility::Volatile || !pg.at_least(11)) {
                volatile_default(ctx, op, table, column, d)
            } else {
                as_written(op, sql, Phase::Expand, &what)
            }
        }
        O::SetNotNull { table, column } if live(table) => {
            let checked = ctx.catalog.table(table).is_some_and(|t| t.has_valid_not_null_check(column));
            if checked && pg.at_least(12) {
                as_written(op, sql, Phase::Contract, &what)
            } else {
                set_not_null(ctx, table, column, earlier, &what)
            }
        }
        // PostgreSQL changes no type of a partition key's column and drops none (a rename is
        // metadata only; without views it would drop the column too).
        O::AlterColumnType { table, column, .. } | O::DropColumn { table, column, .. } if live(table) && in_key(table, column) => {
            reject(&what, partition_key_refusal(table, column))
        }
        O::RenameColumn { table, from, .. } if live(table) && !ctx.views && in_key(table, from) => reject(&what, partition_key_refusal(table, from)),
        O::RenameColumn { table, from, to } if live(table) => rename_column(ctx, table, from, to, &what, changed_before(ctx, earlier, table)),
        O::AlterColumnType {
            table, column, ty, using, ..
        } if live(table) => {
            let current = ctx.catalog.table(table).and_then(|t| t.column(column)).map(|c| &c.ty);
            match type_change(current, ty, using.is_some()) {
                TypeChange::NoRewrite if !ctx.views => as_written(op, sql, Phase::Expand, &what),
                TypeChange::NoRewrite => {
                    // In place, the running version's prepared statements reading the column would
                    // fail on the new type (a new type modifier is enough), and PostgreSQL refuses
                    // the change while the view that would keep its type reads the column.
                    let mut r = change_type(ctx, table, column, &ty.sql, using.as_deref(), &what);
                    r.notes.push(format!(
                        "this change does not rewrite the table, but the running version reads {} with its old type: the shadow column keeps each version's type (with views = false it runs in place)",
                        quote_ident(column)
                    ));
                    r
                }
                change => {
                    let mut r = change_type(ctx, table, column, &ty.sql, using.as_deref(), &what);
                    if change == TypeChange::Unknown {
                        r.notes.push(format!(
                            "the current type of {table}.{} is not known (no earlier migration creates it; pass --database-url); assuming the change rewrites the table",
                            quote_ident(column)
                        ));
                    }
                    r
                }
            }
        }
        O::AddConstraint {
            table,
            constraint,
            not_valid_sql,
        } if live(table) => {
            let name = constraint.name.clone().unwrap_or_default();
            match &constraint.kind {
                // A NOT NULL constraint takes NOT VALID from PostgreSQL 18, the release that
                // reads `ADD CONSTRAINT … NOT NULL` at all.
                ConstraintKind::Check { .. } | ConstraintKind::ForeignKey { .. } | ConstraintKind::NotNull { .. }
                    if !constraint.not_valid && (pg.at_least(18) || !matches!(constraint.kind, ConstraintKind::NotNull { .. })) =>
                {
                    let mut r = new_rewrite(&what);
                    let mut locks = locks_of(op, false);
                    locks.iter_mut().for_each(|l| l.hold = LockHold::Brief);
                    let add = not_valid_sql.sql();
                    // A foreign key has a form for partitioned tables (see StepKind::ForeignKey).
                    let fk = |action| match (&constraint.kind, constraint_definition(&add)) {
                        (ConstraintKind::ForeignKey { .. }, Some(definition)) => StepKind::ForeignKey {
                            table: table.clone(),
                            name: name.clone(),
                            definition,
                            action,
                        },
                        _ => StepKind::Ddl,
                    };
                    let fk_columns: &[String] = match &constraint.kind {
                        ConstraintKind::ForeignKey { columns, .. } => columns,
                        _ => &[],
                    };
                    // On a column an earlier statement retypes: after the swap, at contract.
                    let add_in = if after_swap(table, fk_columns) {
                        r.notes.push(format!("an earlier statement changes the type of a column of {table} this constraint may read: it is added at contract, after the swap, on the new column (added at expand, the swap would drop it with the old one); until then new writes are not checked by it"));
                        Phase::Contract
                    } else {
                        Phase::Expand
                    };
                    r.steps.push(step(add_in, "add the constraint NOT VALID: checks new writes only", add.clone(), fk(FkAction::AddNotValid), locks.clone()));
                    let validate = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote_ident(&name));
                    r.steps.push(step(Phase::Contract, "validate existing rows without blocking writes", validate, fk(FkAction::Validate), scan(table, LockLevel::ShareUpdateExclusive)));
                    let mut drop = exclusive(Phase::Expand, "drop the constraint", format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}", quote_ident(&name)), table);
                    drop.kind = fk(FkAction::Drop);
                    r.abort.push(drop);
                    if matches!(constraint.kind, ConstraintKind::ForeignKey { .. })
                        && ctx.catalog.is_partitioned(table)
                        && !ctx.pg().at_least(18)
                    {
                        r.notes.push(format!("{table} is partitioned, and before PostgreSQL 18 it takes no NOT VALID foreign key: the engine adds it NOT VALID to each partition, validates each in contract, then adds the parent's, which attaches them without a scan"));
                    }
                    r
                }
                ConstraintKind::Unique { columns, using_index: None } | ConstraintKind::PrimaryKey { columns, using_index: None } => {
                    unique_via_index(ctx, table, &name, columns, matches!(constraint.kind, ConstraintKind::PrimaryKey { .. }), &what)
                }
                ConstraintKind::Unique { using_index: Some(index), .. } | ConstraintKind::PrimaryKey { using_index: Some(index), .. } if ctx.catalog.is_partitioned(table) => {
                    unique_using_index_of_partitioned(ctx, table, &name, index, matches!(constraint.kind, ConstraintKind::PrimaryKey { .. }), &what)
                }
                ConstraintKind::Exclusion => reject(&what, "an exclusion constraint builds its index under ACCESS EXCLUSIVE and cannot be built concurrently"),
                _ => as_written(op, sql, Phase::Expand, &what),
            }
        }
        O::RenameTable {
            table,
            to,
            kind: crate::model::ObjectKind::Table,
        } if live(table) => rename_table(ctx, table, to, &what, changed_before(ctx, earlier, table)),
        O::DropColumn { table, column, .. } if live(table) => drop_column(ctx, op, sql, table, column, &what),
        O::Drop { kind: crate::model::ObjectKind::Table, names, .. } if names.iter().any(live) => drop_table(op, sql, names, &what),
        O::Truncate { tables, .. } if tables.iter().any(live) => reject(&what, "TRUNCATE takes ACCESS EXCLUSIVE and deletes every row the running version reads"),
        O::Vacuum { full: true, .. } => reject(&what, "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE; use pg_repack or pg_squeeze"),
        O::Cluster { .. } => reject(&what, "CLUSTER rewrites the table under ACCESS EXCLUSIVE; use pg_repack"),
        O::LockTable { tables, .. } if tables.iter().any(live) => reject(&what, "an explicit LOCK holds its lock until commit while every query on the table queues behind it"),
        O::RenameSchema { .. } => reject(&what, "every query that names the schema breaks for the running version"),
        O::RenameEnumValue { .. } => reject(&what, "the running version keeps writing and comparing the old value"),
        O::Update { .. } => batched_update(op, sql),
        O::Reindex { concurrently: false, .. } if pg.at_least(12) => {
            let mut r = new_rewrite(&what);
            let concurrent = add_concurrently(sql, "REINDEX", true);
            r.steps.push(step(Phase::Expand, "rebuild concurrently", concurrent, StepKind::Concurrent { index: None, partitioned: None }, Vec::new()));
            r
        }
        O::DetachPartition {
            table,
            partition,
            concurrently: false,
            finalize: false,
        } if pg.at_least(14) => {
            let mut r = new_rewrite(&what);
            let detach = format!("ALTER TABLE {table} DETACH PARTITION {partition} CONCURRENTLY");
            let mut locks = brief(table, LockLevel::ShareUpdateExclusive);
            locks.extend(brief(partition, LockLevel::ShareUpdateExclusive));
            r.steps.push(step(Phase::Contract, "detach without blocking the parent", detach, StepKind::Concurrent { index: None, partitioned: None }, locks));
            r
        }
        O::Opaque { .. } => {
            let mut r = as_written(op, sql, Phase::Expand, &what);
            r.notes.push("opaque: the tool cannot see what it does; it runs as written, once".into());
            r
        }
        other => as_written(other, sql, natural_phase(other), &what),
    })
}

/// The plans of single statements rendered as text, for the rewrites' snapshot tests: no
/// database, the tables come from earlier migrations replayed into the in-memory catalog.
#[cfg(test)]
pub(crate) mod testing {
    use crate::plan::Step;

    /// The tables the snapshots change: NOT NULL and defaulted columns, an identity key, an
    /// index, a CHECK and a foreign key, so that every copy a rewrite makes shows.
    pub const TABLES: &str = "CREATE TABLE orgs (id bigint PRIMARY KEY);
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    age integer DEFAULT 0 CHECK (age >= 0),
    email varchar(100),
    org_id bigint REFERENCES orgs (id),
    nickname text
);
CREATE INDEX users_age_idx ON users (age);
CREATE TABLE legacy (id bigint PRIMARY KEY);";

    fn step(out: &mut String, s: &Step) {
        let locks: Vec<String> = s
            .locks
            .iter()
            .map(|l| format!("{} {} {}", l.level, l.hold.describe(), l.table))
            .collect();
        out.push_str(&format!(
            "  {:<9} {}  [{}]\n",
            s.phase.name(),
            s.action,
            locks.join("; ")
        ));
        for line in s.sql.lines() {
            out.push_str(&format!("              {line}\n"));
        }
    }

    /// Every rewrite of `sql` (planned after `TABLES`): its steps with their locks and SQL, its
    /// abort, the new version's view, its notes.
    pub fn plan(sql: &str, views: bool) -> String {
        let settings = crate::config::Settings {
            views,
            ..Default::default()
        };
        let reports = crate::analyze::analyze_sources(&[TABLES], sql, &settings);
        let mut out = String::new();
        for rw in &reports[0].plan.rewrites {
            out.push_str(&format!("{}\n", rw.intent));
            if let Some(why) = &rw.rejected {
                out.push_str(&format!("  rejected: {why}\n"));
            }
            for s in &rw.steps {
                step(&mut out, s);
            }
            for s in &rw.abort {
                out.push_str("  abort:\n");
                step(&mut out, s);
            }
            for v in &rw.view {
                out.push_str(&format!("  views:    {}\n", v.describe()));
            }
            for n in &rw.notes {
                out.push_str(&format!("  note:     {n}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_key_column_keeps_its_type_at_every_level() {
        let earlier = "CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL, n int) PARTITION BY RANGE (at);
CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY HASH (id);";
        for views in [true, false] {
            let settings = crate::config::Settings {
                views,
                ..Default::default()
            };
            for (sql, refused) in [
                ("ALTER TABLE ev ALTER COLUMN at TYPE timestamptz;", true),
                // The key of a partition, partitioned in turn.
                ("ALTER TABLE ev ALTER COLUMN id TYPE numeric;", true),
                ("ALTER TABLE ev DROP COLUMN at;", true),
                ("ALTER TABLE ev ALTER COLUMN n TYPE bigint;", false),
                // Metadata only with views; without, a second column and a drop of this one.
                ("ALTER TABLE ev RENAME COLUMN at TO day;", !views),
            ] {
                let reports = crate::analyze::analyze_sources(&[earlier], sql, &settings);
                let rw = &reports[0].plan.rewrites[0];
                let said = rw
                    .rejected
                    .as_ref()
                    .is_some_and(|w| w.contains("in the partition key of ev"));
                assert_eq!(said, refused, "{sql} (views {views}): {:?}", rw.rejected);
            }
        }
    }

    #[test]
    fn the_definition_of_a_constraint_added_not_valid() {
        assert_eq!(
            constraint_definition("ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE NOT VALID").as_deref(),
            Some("FOREIGN KEY (org_id) REFERENCES orgs (id) ON DELETE CASCADE")
        );
        assert_eq!(
            constraint_definition("ALTER TABLE public.t ADD CONSTRAINT \"Odd \"\" name\" FOREIGN KEY (a) REFERENCES u (id) NOT VALID").as_deref(),
            Some("FOREIGN KEY (a) REFERENCES u (id)")
        );
    }

    #[test]
    fn generated_names_fit_in_63_bytes() {
        let long = "x".repeat(80);
        let n = generated_name("migrate_sync", &[&long, "a", "b"]);
        assert!(n.len() <= 63, "{n}");
        assert_ne!(n, generated_name("migrate_sync", &[&long, "a", "c"]));
        assert_eq!(generated_name("p", &["a"]), "p_a");
    }

    #[test]
    fn concurrently_goes_after_index() {
        assert_eq!(
            add_concurrently("create unique index foo on t (a)", "INDEX", false),
            "create unique index CONCURRENTLY foo on t (a)"
        );
        assert_eq!(
            add_concurrently("REINDEX (VERBOSE) TABLE t", "REINDEX", true),
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t"
        );
        // A concurrent build moved to contract (its column is retyped first) keeps one word:
        // the rehearsal found `CREATE INDEX CONCURRENTLY CONCURRENTLY` failing contract.
        assert_eq!(
            add_concurrently("CREATE INDEX CONCURRENTLY i ON t (a)", "INDEX", false),
            "CREATE INDEX CONCURRENTLY i ON t (a)"
        );
    }
}
