//! The catalogue of safe rewrites: one operation's intent → its phased steps.
//!
//! Tables created earlier in the same migration are new and empty, so their operations run as
//! written. Identifiers are quoted through `quote_ident`; generated object names are kept to
//! PostgreSQL's 63-byte limit.

use super::{Phase, Rewrite, Step, StepKind};
use crate::lint::StmtCtx;
use crate::model::locks::{locks_of, LockHold, LockLevel, TableLock};
use crate::model::types::{type_change, TypeChange};
use crate::model::{quote_ident, ConstraintKind, Operation, QualifiedName, TxControl, Volatility};

/// Plans one statement: a rewrite for each of its operations that produces steps.
pub fn plan_statement(ctx: &StmtCtx, op_sql: &[String], earlier: &[&Operation]) -> Vec<Rewrite> {
    let (line, _) = ctx.file.source.position(ctx.stmt.start);
    ctx.ops
        .iter()
        .zip(op_sql)
        .filter_map(|(op, sql)| {
            let mut r = match ctx.section {
                Some(phase) => explicit(ctx, op, sql, phase),
                None => intent(ctx, op, sql, earlier),
            }?;
            r.statement = ctx.index;
            r.line = line;
            Some(r)
        })
        .collect()
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

/// The abort of a shadow-column rewrite: drop its triggers, then the column it added.
fn abort_shadow(r: &mut Rewrite, table: &QualifiedName, drop_triggers: String, column: &str) {
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the sync triggers",
        drop_triggers,
        table,
    ));
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the new column",
        format!(
            "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
            quote_ident(column)
        ),
        table,
    ));
}

fn brief(table: &QualifiedName, level: LockLevel) -> Vec<TableLock> {
    vec![TableLock {
        table: table.clone(),
        level,
        hold: LockHold::Brief,
    }]
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

/// Runs the statement as written in `phase`.
fn as_written(op: &Operation, sql: &str, phase: Phase, intent: &str) -> Rewrite {
    let kind = match op {
        Operation::CreateIndex(ix) if ix.concurrently => StepKind::Concurrent {
            index: ix
                .name
                .as_ref()
                .map(|n| QualifiedName::new(ix.table.schema.as_deref(), n)),
        },
        Operation::DropIndex {
            concurrently: true, ..
        }
        | Operation::Reindex {
            concurrently: true, ..
        } => StepKind::Concurrent { index: None },
        Operation::DetachPartition {
            concurrently: true, ..
        } => StepKind::Concurrent { index: None },
        Operation::Opaque { .. }
        | Operation::Update { .. }
        | Operation::Delete { .. }
        | Operation::Insert { .. } => StepKind::AsWritten,
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
fn undo(op: &Operation) -> Option<Step> {
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
                StepKind::Concurrent { index: None },
                Vec::new(),
            ));
        }
        _ => return None,
    };
    Some(exclusive(Phase::Expand, action, sql, table))
}

fn reject(intent: &str, why: impl Into<String>) -> Rewrite {
    let mut r = new_rewrite(intent);
    r.rejected = Some(why.into());
    r
}

/// The phase an operation belongs in when it is run as written.
fn natural_phase(op: &Operation) -> Phase {
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
        O::Update { .. } | O::Delete { .. } | O::Insert { .. } => Phase::Backfill,
        _ => Phase::Expand,
    }
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
fn explicit(ctx: &StmtCtx, op: &Operation, sql: &str, phase: Phase) -> Option<Rewrite> {
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

/// Plain SQL: each intent becomes its safe phased form.
fn intent(ctx: &StmtCtx, op: &Operation, sql: &str, earlier: &[&Operation]) -> Option<Rewrite> {
    use Operation as O;
    let what = describe(op);
    let live = |t: &QualifiedName| ctx.is_live_table(t);
    let pg = ctx.pg();
    Some(match op {
        O::Transaction(TxControl::Begin | TxControl::Commit) | O::SetVariable { .. } => return None,
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
        O::RenameColumn { table, from, to } if live(table) => rename_column(ctx, table, from, to, &what),
        O::AlterColumnType {
            table, column, ty, using, ..
        } if live(table) => {
            let current = ctx.catalog.table(table).and_then(|t| t.column(column)).map(|c| &c.ty);
            match type_change(current, ty, using.is_some()) {
                TypeChange::NoRewrite => as_written(op, sql, Phase::Expand, &what),
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
                ConstraintKind::Check { .. } | ConstraintKind::ForeignKey { .. } if !constraint.not_valid => {
                    let mut r = new_rewrite(&what);
                    let mut locks = locks_of(op, false);
                    locks.iter_mut().for_each(|l| l.hold = LockHold::Brief);
                    r.steps.push(step(Phase::Expand, "add the constraint NOT VALID: checks new writes only", not_valid_sql.sql(), StepKind::Ddl, locks.clone()));
                    let validate = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote_ident(&name));
                    r.steps.push(step(Phase::Contract, "validate existing rows without blocking writes", validate, StepKind::Ddl, scan(table, LockLevel::ShareUpdateExclusive)));
                    r.abort.push(exclusive(Phase::Expand, "drop the constraint", format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}", quote_ident(&name)), table));
                    r
                }
                ConstraintKind::Unique { columns, using_index: None } | ConstraintKind::PrimaryKey { columns, using_index: None } => {
                    unique_via_index(ctx, table, &name, columns, matches!(constraint.kind, ConstraintKind::PrimaryKey { .. }), &what)
                }
                ConstraintKind::Exclusion => reject(&what, "an exclusion constraint builds its index under ACCESS EXCLUSIVE and cannot be built concurrently"),
                _ => as_written(op, sql, Phase::Expand, &what),
            }
        }
        O::RenameTable {
            table,
            to,
            kind: crate::model::ObjectKind::Table,
        } if live(table) => rename_table(table, to, &what),
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
            r.steps.push(step(Phase::Expand, "rebuild concurrently", concurrent, StepKind::Concurrent { index: None }, Vec::new()));
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
            r.steps.push(step(Phase::Contract, "detach without blocking the parent", detach, StepKind::Concurrent { index: None }, locks));
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

/// Inserts `CONCURRENTLY` after the statement's `keyword` (`INDEX` or `REINDEX … INDEX|TABLE`).
fn add_concurrently(sql: &str, keyword: &str, reindex: bool) -> String {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<(usize, &str)> = word_spans(&lower);
    let target = if reindex {
        // REINDEX [ ( options ) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } name
        words
            .iter()
            .find(|(_, w)| matches!(*w, "index" | "table" | "schema" | "database" | "system"))
    } else {
        words
            .iter()
            .find(|(_, w)| *w == keyword.to_ascii_lowercase())
    };
    match target {
        Some((pos, w)) => format!(
            "{} CONCURRENTLY{}",
            &sql[..pos + w.len()],
            &sql[pos + w.len()..]
        ),
        None => sql.to_string(),
    }
}

fn word_spans(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        let word = c.is_alphanumeric() || c == '_';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                out.push((st, &s[st..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

fn concurrent_index(ctx: &StmtCtx, op: &Operation, phase: Phase) -> Rewrite {
    let Operation::CreateIndex(ix) = op else {
        unreachable!("concurrent_index takes CreateIndex")
    };
    let mut r = new_rewrite(describe(op));
    // A concurrent build needs a name, so a failed build's INVALID leftover can be found and dropped.
    let name = ix
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&ix.table.name, &[&ix.columns.join("_"), "idx"]));
    let mut sql = add_concurrently(&ix.sql, "INDEX", false);
    if ix.name.is_none() {
        let on = word_spans(&sql.to_ascii_lowercase())
            .into_iter()
            .find(|(_, w)| *w == "on")
            .map(|(p, _)| p);
        if let Some(p) = on {
            sql = format!("{}{} {}", &sql[..p], quote_ident(&name), &sql[p..]);
        }
    }
    let qualified = QualifiedName::new(ix.table.schema.as_deref(), &name);
    r.steps.push(step(
        phase,
        "build the index without blocking writes (an INVALID leftover is dropped and rebuilt)",
        sql,
        StepKind::Concurrent {
            index: Some(qualified.clone()),
        },
        scan(&ix.table, LockLevel::ShareUpdateExclusive),
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the index",
        format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
        StepKind::Concurrent { index: None },
        Vec::new(),
    ));
    if ctx.pg().major == 14 && ctx.pg().minor < 4 {
        r.notes.push("PostgreSQL 14.0–14.3 can corrupt indexes built concurrently: upgrade to 14.4 or later first".into());
    }
    r
}

fn concurrent_drop_index(op: &Operation, phase: Phase) -> Rewrite {
    let Operation::DropIndex { names, cascade, .. } = op else {
        unreachable!("concurrent_drop_index takes DropIndex")
    };
    let mut r = new_rewrite(describe(op));
    for n in names {
        // DROP INDEX CONCURRENTLY takes one index per statement, and no CASCADE.
        r.steps.push(step(
            phase,
            "drop the index without blocking reads or writes",
            format!("DROP INDEX CONCURRENTLY IF EXISTS {n}"),
            StepKind::Concurrent { index: None },
            Vec::new(),
        ));
    }
    if *cascade {
        r.notes.push(
            "CASCADE cannot be combined with CONCURRENTLY: drop the dependent objects first".into(),
        );
    }
    r
}

fn batched_update(op: &Operation, sql: &str) -> Rewrite {
    let Operation::Update {
        table,
        sets,
        filter,
        has_from,
        repeatable,
    } = op
    else {
        unreachable!("batched_update takes Update")
    };
    if *has_from {
        let mut r = as_written(op, sql, Phase::Backfill, &describe(op));
        r.notes.push(
            "UPDATE … FROM / WITH cannot be batched by key range: it runs as one statement".into(),
        );
        return r;
    }
    let mut r = new_rewrite(describe(op));
    r.steps.push(step(
        Phase::Backfill,
        "batched by primary key, one short transaction per batch",
        sql,
        StepKind::Backfill {
            table: table.clone(),
            set: sets.clone(),
            filter: filter.clone(),
            verify: repeatable.then(|| {
                let wrong: Vec<String> = sets
                    .iter()
                    .map(|(c, e)| format!("{} IS DISTINCT FROM ({e})", quote_ident(c)))
                    .collect();
                match filter {
                    Some(f) => format!("({f}) AND ({})", wrong.join(" OR ")),
                    None => wrong.join(" OR "),
                }
            }),
        },
        row_locks(table),
    ));
    r
}

/// CHECK NOT VALID → VALIDATE → SET NOT NULL (PG12+ skips the scan) → drop the check.
fn tighten_not_null(ctx: &StmtCtx, r: &mut Rewrite, table: &QualifiedName, column: &str) {
    let check = generated_name(&table.name, &[column, "not_null"]);
    let c = quote_ident(column);
    let ck = quote_ident(&check);
    r.steps.push(exclusive(
        Phase::Contract,
        "add a NOT NULL check that skips existing rows",
        format!("ALTER TABLE {table} ADD CONSTRAINT {ck} CHECK ({c} IS NOT NULL) NOT VALID"),
        table,
    ));
    r.steps.push(step(
        Phase::Contract,
        "validate it without blocking writes",
        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"),
        StepKind::Ddl,
        scan(table, LockLevel::ShareUpdateExclusive),
    ));
    if ctx.pg().at_least(12) {
        r.steps.push(exclusive(
            Phase::Contract,
            "set NOT NULL: the validated check proves it, no scan",
            format!("ALTER TABLE {table} ALTER COLUMN {c} SET NOT NULL"),
            table,
        ));
        r.steps.push(exclusive(
            Phase::Contract,
            "drop the now redundant check",
            format!("ALTER TABLE {table} DROP CONSTRAINT {ck}"),
            table,
        ));
    } else {
        r.notes.push(format!(
            "before PostgreSQL 12, SET NOT NULL always scans the table: the validated check {ck} is kept instead"
        ));
    }
}

fn fill_trigger(table: &QualifiedName, column: &str, expr: &str) -> (String, String, String) {
    let func = generated_name("migrate_fill", &[&table.name, column]);
    let fq = QualifiedName::new(table.schema.as_deref(), &func);
    let c = quote_ident(column);
    let create = format!(
        "CREATE FUNCTION {fq}() RETURNS trigger LANGUAGE plpgsql AS $migrate$\nBEGIN\n  IF NEW.{c} IS NULL THEN\n    SELECT {expr} INTO NEW.{c} FROM (SELECT NEW.*) AS t;\n  END IF;\n  RETURN NEW;\nEND\n$migrate$;\nCREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW WHEN (NEW.{c} IS NULL) EXECUTE FUNCTION {fq}()",
        quote_ident(&func)
    );
    let drop = format!(
        "DROP TRIGGER IF EXISTS {} ON {table};\nDROP FUNCTION IF EXISTS {fq}()",
        quote_ident(&func)
    );
    (func, create, drop)
}

fn set_not_null(
    ctx: &StmtCtx,
    table: &QualifiedName,
    column: &str,
    earlier: &[&Operation],
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    // The fill expression comes from a backfill UPDATE of this column earlier in the file.
    let fill = earlier.iter().rev().find_map(|op| match op {
        Operation::Update {
            table: t,
            sets,
            has_from: false,
            ..
        } if t.same(table) => sets
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, e)| e.clone()),
        _ => None,
    });
    match fill {
        Some(expr) => {
            let (_, create, drop) = fill_trigger(table, column, &expr);
            r.steps.push(step(
                Phase::Expand,
                "fill NULLs the old version still writes",
                create,
                StepKind::Ddl,
                brief(table, LockLevel::ShareRowExclusive),
            ));
            tighten_not_null(ctx, &mut r, table, column);
            r.steps.push(exclusive(
                Phase::Contract,
                "drop the fill trigger",
                drop.clone(),
                table,
            ));
            r.abort.push(exclusive(
                Phase::Expand,
                "drop the fill trigger",
                drop,
                table,
            ));
        }
        None => {
            r.notes.push(format!(
                "no backfill fills NULLs in {table}.{c} before this: the contract's VALIDATE fails if NULLs remain; write `UPDATE {table} SET {c} = … WHERE {c} IS NULL;` before it",
                c = quote_ident(column)
            ));
            tighten_not_null(ctx, &mut r, table, column);
        }
    }
    r
}

fn volatile_default(
    ctx: &StmtCtx,
    op: &Operation,
    table: &QualifiedName,
    column: &crate::model::ColumnSpec,
    default: &crate::model::Expr,
) -> Rewrite {
    let mut r = new_rewrite(describe(op));
    let c = quote_ident(&column.name);
    r.steps.push(exclusive(
        Phase::Expand,
        "add the column without a default: metadata only",
        format!("ALTER TABLE {table} ADD COLUMN {c} {}", column.ty.sql),
        table,
    ));
    r.steps.push(exclusive(
        Phase::Expand,
        "new rows get the default",
        format!(
            "ALTER TABLE {table} ALTER COLUMN {c} SET DEFAULT {}",
            default.sql
        ),
        table,
    ));
    r.steps.push(step(
        Phase::Backfill,
        "fill existing rows in batches",
        format!("UPDATE {table} SET {c} = {} WHERE {c} IS NULL", default.sql),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(column.name.clone(), default.sql.clone())],
            filter: Some(format!("{c} IS NULL")),
            verify: Some(format!("{c} IS NULL")),
        },
        row_locks(table),
    ));
    if column.not_null {
        tighten_not_null(ctx, &mut r, table, &column.name);
    }
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the column",
        format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {c}"),
        table,
    ));
    r
}

/// How a sync trigger computes one column from the row.
enum Conversion {
    /// An expression over `NEW` (`NEW.name`, `NEW.age::bigint`): a plain assignment.
    Direct(String),
    /// An expression over the table's column names (a `USING` clause): evaluated against the
    /// row as `t`, which costs a query per write.
    OverRow(String),
}

impl Conversion {
    fn assign(&self, target: &str) -> String {
        match self {
            Conversion::Direct(e) => format!("NEW.{target} := {e};"),
            Conversion::OverRow(e) => {
                format!("SELECT {e} INTO NEW.{target} FROM (SELECT NEW.*) AS t;")
            }
        }
    }
}

/// Triggers that keep `a` and `b` equal whichever version writes, without recursion: a BEFORE
/// trigger changes NEW in place.
fn sync_trigger(
    table: &QualifiedName,
    a: &str,
    b: &str,
    to_b: Conversion,
    to_a: Conversion,
) -> (String, String) {
    let func = generated_name("migrate_sync", &[&table.name, a, b]);
    let fq = QualifiedName::new(table.schema.as_deref(), &func);
    let (qa, qb) = (quote_ident(a), quote_ident(b));
    let (set_b, set_a) = (to_b.assign(&qb), to_a.assign(&qa));
    // A row whose two columns already agree needs nothing: the WHEN clause is evaluated without
    // calling the function, which keeps the backfill (it writes both columns equal) and writes
    // that touch neither column almost as fast as without the trigger.
    let when = match &to_b {
        Conversion::Direct(e) => format!(" WHEN (NEW.{qb} IS DISTINCT FROM {e})"),
        Conversion::OverRow(_) => String::new(),
    };
    // A write that changes neither column, to a row the backfill has not reached yet, fills it
    // there and then: the new column's constraints (NOT NULL) hold for every new row version.
    let not_reached = match &to_b {
        Conversion::Direct(_) => "ELSE".to_string(),
        Conversion::OverRow(_) => format!("ELSIF NEW.{qb} IS NULL THEN"),
    };
    let create = format!(
        "CREATE FUNCTION {fq}() RETURNS trigger LANGUAGE plpgsql AS $migrate$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.{qb} IS NULL THEN
      {set_b}
    ELSIF NEW.{qa} IS NULL THEN
      {set_a}
    END IF;
  ELSIF NEW.{qa} IS DISTINCT FROM OLD.{qa} THEN
    {set_b}
  ELSIF NEW.{qb} IS DISTINCT FROM OLD.{qb} THEN
    {set_a}
  {not_reached}
    {set_b}
  END IF;
  RETURN NEW;
END
$migrate$;
CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW{when} EXECUTE FUNCTION {fq}()",
        quote_ident(&func)
    );
    let drop = format!(
        "DROP TRIGGER IF EXISTS {} ON {table};\nDROP FUNCTION IF EXISTS {fq}()",
        quote_ident(&func)
    );
    (create, drop)
}

/// Copies of the indexes on `from`, built concurrently on `to`.
/// Copies of the indexes on `from`, built concurrently on `to`. Returns the statements that
/// give the copies their originals' names, for contract, once dropping `from` has dropped the
/// originals.
fn copy_indexes(
    ctx: &StmtCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    from: &str,
    to: &str,
) -> Vec<String> {
    let mut renames = Vec::new();
    let indexes: Vec<_> = ctx
        .catalog
        .indexes_of(table)
        .filter(|i| i.columns.iter().any(|c| c == from))
        .cloned()
        .collect();
    for ix in indexes {
        let cols: Vec<String> = ix
            .columns
            .iter()
            .map(|c| quote_ident(if c == from { to } else { c }))
            .collect();
        let name = generated_name(&ix.name.name, &[to]);
        let qn = QualifiedName::new(table.schema.as_deref(), &name);
        r.steps.push(step(
            Phase::Expand,
            format!(
                "copy index {} onto {}",
                quote_ident(&ix.name.name),
                quote_ident(to)
            ),
            format!(
                "CREATE {}INDEX CONCURRENTLY {} ON {table} ({})",
                if ix.unique { "UNIQUE " } else { "" },
                quote_ident(&name),
                cols.join(", ")
            ),
            StepKind::Concurrent {
                index: Some(qn.clone()),
            },
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        r.abort.push(step(
            Phase::Expand,
            "drop the copied index",
            format!("DROP INDEX CONCURRENTLY IF EXISTS {qn}"),
            StepKind::Concurrent { index: None },
            Vec::new(),
        ));
        renames.push(format!(
            "ALTER INDEX {qn} RENAME TO {}",
            quote_ident(&ix.name.name)
        ));
    }
    if !ctx.catalog.live && ctx.catalog.table(table).is_none() {
        r.notes.push(format!(
            "{table} is not in the migrations read: its indexes and constraints on {} are copied from the live catalog when expand runs",
            quote_ident(from)
        ));
    }
    renames
}

/// Copies of the CHECK and FOREIGN KEY constraints on `from`, added NOT VALID on `to` in
/// expand and validated in contract. Needs their definitions from a live catalog. Returns the
/// contract's validations and the renames that give the copies their originals' names once
/// dropping `from` has dropped the originals.
fn copy_constraints(
    ctx: &StmtCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    from: &str,
    to: &str,
) -> (Vec<Step>, Vec<String>) {
    let (mut validate, mut renames) = (Vec::new(), Vec::new());
    let Some(t) = ctx.catalog.table(table) else {
        return (validate, renames);
    };
    for c in &t.constraints {
        let Some(def) = &c.definition else { continue };
        let def = def.strip_suffix(" NOT VALID").unwrap_or(def);
        let copied = match &c.kind {
            // A NOT NULL check is copied by the rename itself.
            ConstraintKind::Check {
                not_null_of: Some(_),
                ..
            } => continue,
            ConstraintKind::Check { .. } => crate::sql::rename_identifier(def, from, to),
            // Only the referencing side is this table's: the referenced columns keep their names.
            ConstraintKind::ForeignKey { columns, .. } if columns.iter().any(|c| c == from) => {
                let split = def.find(" REFERENCES ").unwrap_or(def.len());
                crate::sql::rename_identifier(&def[..split], from, to)
                    .map(|left| format!("{left}{}", &def[split..]))
            }
            _ => continue,
        };
        let Some(copied) = copied else { continue };
        let name = generated_name(&c.name, &[to]);
        let q = quote_ident(&name);
        let mut locks = brief(table, LockLevel::AccessExclusive);
        if let ConstraintKind::ForeignKey { references, .. } = &c.kind {
            locks = brief(table, LockLevel::ShareRowExclusive);
            locks.extend(brief(references, LockLevel::ShareRowExclusive));
        }
        r.steps.push(step(
            Phase::Expand,
            format!(
                "copy constraint {} onto {} (NOT VALID: new writes only)",
                quote_ident(&c.name),
                quote_ident(to)
            ),
            format!("ALTER TABLE {table} ADD CONSTRAINT {q} {copied} NOT VALID"),
            StepKind::Ddl,
            locks,
        ));
        r.abort.push(exclusive(
            Phase::Expand,
            "drop the copied constraint",
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {q}"),
            table,
        ));
        validate.push(step(
            Phase::Contract,
            format!("validate the copy of {}", quote_ident(&c.name)),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {q}"),
            StepKind::Ddl,
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        renames.push(format!(
            "ALTER TABLE {table} RENAME CONSTRAINT {q} TO {}",
            quote_ident(&c.name)
        ));
    }
    (validate, renames)
}

fn rename_column(
    ctx: &StmtCtx,
    table: &QualifiedName,
    from: &str,
    to: &str,
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    let col = ctx.catalog.table(table).and_then(|t| t.column(from));
    let ty = col.map_or_else(
        || format!("/* type of {} */", quote_ident(from)),
        |c| c.ty.sql.clone(),
    );
    let (qf, qt) = (quote_ident(from), quote_ident(to));
    let mut add = format!("ALTER TABLE {table} ADD COLUMN {qt} {ty}");
    if let Some(d) = col.and_then(|c| c.default.as_ref()) {
        add.push_str(&format!(" DEFAULT {d}"));
    }
    let (create, drop) = sync_trigger(
        table,
        from,
        to,
        Conversion::Direct(format!("NEW.{qf}")),
        Conversion::Direct(format!("NEW.{qt}")),
    );
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the new column (same type and default), kept equal to the old one by triggers whichever version writes",
        format!("{add};\n{create}"),
        table,
    ));
    let mut renames = copy_indexes(ctx, &mut r, table, from, to);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, from, to);
    renames.extend(constraint_renames);
    if col.is_some_and(|c| c.not_null) {
        r.steps.push(exclusive(
            Phase::Expand,
            "NOT NULL on the new column, for new writes",
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({qt} IS NOT NULL) NOT VALID",
                quote_ident(&generated_name(&table.name, &[to, "not_null"]))
            ),
            table,
        ));
    }
    r.steps.push(step(
        Phase::Backfill,
        "copy existing rows in batches",
        format!("UPDATE {table} SET {qt} = {qf} WHERE {qt} IS DISTINCT FROM {qf}"),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(to.to_string(), qf.clone())],
            filter: Some(format!("{qt} IS DISTINCT FROM {qf}")),
            verify: Some(format!("{qt} IS DISTINCT FROM {qf}")),
        },
        row_locks(table),
    ));
    if col.is_some_and(|c| c.not_null) {
        let ck = quote_ident(&generated_name(&table.name, &[to, "not_null"]));
        r.steps.push(step(
            Phase::Contract,
            "validate NOT NULL on the new column",
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"),
            StepKind::Ddl,
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        r.steps.push(exclusive(Phase::Contract, "set NOT NULL (no scan)", format!("ALTER TABLE {table} ALTER COLUMN {qt} SET NOT NULL;\nALTER TABLE {table} DROP CONSTRAINT {ck}"), table));
    }
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the sync triggers",
        drop.clone(),
        table,
    ));
    r.steps.extend(validations);
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the old column",
        // Dropping it drops its indexes; the copies take their names.
        std::iter::once(format!("ALTER TABLE {table} DROP COLUMN {qf}"))
            .chain(renames)
            .collect::<Vec<_>>()
            .join(";\n"),
        table,
    ));
    abort_shadow(&mut r, table, drop, to);
    r.notes.push("prepared statements that SELECT * see the new column: no running version's result shape changes until contract drops the old one".into());
    r
}

fn change_type(
    ctx: &StmtCtx,
    table: &QualifiedName,
    column: &str,
    new_type: &str,
    using: Option<&str>,
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    let shadow = generated_name(column, &["new"]);
    let old = generated_name(column, &["old"]);
    let (qc, qs, qo) = (quote_ident(column), quote_ident(&shadow), quote_ident(&old));
    let old_type = ctx
        .catalog
        .table(table)
        .and_then(|t| t.column(column))
        .map(|c| c.ty.sql.clone());
    let to_new = using.map_or_else(
        || Conversion::Direct(format!("NEW.{qc}::{new_type}")),
        |u| Conversion::OverRow(format!("({u})")),
    );
    let to_old = Conversion::Direct(old_type.as_ref().map_or_else(
        || format!("NEW.{qs}::text /* cast to the column's current type */"),
        |t| format!("NEW.{qs}::{t}"),
    ));
    let (create, drop) = sync_trigger(table, column, &shadow, to_new, to_old);
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the column of the new type, with triggers converting every write into it and back",
        format!("ALTER TABLE {table} ADD COLUMN {qs} {new_type};\n{create}"),
        table,
    ));
    let mut renames = copy_indexes(ctx, &mut r, table, column, &shadow);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, column, &shadow);
    renames.extend(constraint_renames);
    let expr = using.map_or_else(|| format!("{qc}::{new_type}"), str::to_string);
    r.steps.push(step(
        Phase::Backfill,
        "convert existing rows in batches",
        format!("UPDATE {table} SET {qs} = {expr}"),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(shadow.clone(), expr.clone())],
            filter: None,
            // A USING expression may be anything; a plain cast gives the same value again.
            verify: using
                .is_none()
                .then(|| format!("{qs} IS DISTINCT FROM ({expr})")),
        },
        row_locks(table),
    ));
    r.steps.extend(validations);
    let swap = format!("{drop};\nALTER TABLE {table} RENAME COLUMN {qc} TO {qo};\nALTER TABLE {table} RENAME COLUMN {qs} TO {qc};\nALTER TABLE {table} DROP COLUMN {qo}");
    // Dropping the old column drops its indexes; the copies take their names.
    let swap = std::iter::once(swap)
        .chain(renames)
        .collect::<Vec<_>>()
        .join(";\n");
    r.steps.push(exclusive(
        Phase::Contract,
        "swap the columns in one short transaction",
        swap,
        table,
    ));
    abort_shadow(&mut r, table, drop, &shadow);
    r.notes.push(format!(
        "the swap changes the type a prepared `SELECT {qc}` returns (\"cached plan must not change result type\"): run it once no version prepares statements on the old type, or read through per-version views"
    ));
    r
}

fn unique_via_index(
    ctx: &StmtCtx,
    table: &QualifiedName,
    name: &str,
    columns: &[String],
    primary: bool,
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    let index = QualifiedName::new(table.schema.as_deref(), name);
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    r.steps.push(step(
        Phase::Expand,
        "build the unique index without blocking writes",
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
            quote_ident(name),
            cols.join(", ")
        ),
        StepKind::Concurrent {
            index: Some(index.clone()),
        },
        scan(table, LockLevel::ShareUpdateExclusive),
    ));
    if primary {
        let t = ctx.catalog.table(table);
        for c in columns {
            let nn = t.and_then(|t| t.column(c)).is_some_and(|col| col.not_null);
            if !nn {
                // ADD PRIMARY KEY sets NOT NULL, which scans the table unless a check proves it.
                tighten_not_null(ctx, &mut r, table, c);
            }
        }
    }
    r.steps.push(exclusive(
        Phase::Contract,
        "attach the index as the constraint: metadata only",
        format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {} USING INDEX {}",
            quote_ident(name),
            if primary { "PRIMARY KEY" } else { "UNIQUE" },
            quote_ident(name)
        ),
        table,
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the index",
        format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        StepKind::Concurrent { index: None },
        Vec::new(),
    ));
    r.notes
        .push("the index build fails if duplicates exist: clean them up first".into());
    r
}

fn rename_table(table: &QualifiedName, to: &str, what: &str) -> Rewrite {
    let mut r = new_rewrite(what);
    let new_name = QualifiedName::new(table.schema.as_deref(), to);
    r.steps.push(exclusive(
        Phase::Expand,
        "rename, and keep the old name as an updatable view (one transaction)",
        format!(
            "ALTER TABLE {table} RENAME TO {};\nCREATE VIEW {table} AS SELECT * FROM {new_name}",
            quote_ident(to)
        ),
        table,
    ));
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the view under the old name",
        format!("DROP VIEW IF EXISTS {table}"),
        table,
    ));
    r.abort.push(step(
        Phase::Expand,
        "drop the view and rename back",
        format!(
            "DROP VIEW IF EXISTS {table};\nALTER TABLE {new_name} RENAME TO {}",
            quote_ident(&table.name)
        ),
        StepKind::Ddl,
        brief(&new_name, LockLevel::AccessExclusive),
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
