//! The pipeline for `migrate plan`: files → statements → operations → findings and plan.
//!
//! Each file is walked statement by statement. Before a statement the rules see the catalog as
//! it stood and the transaction around it; after it, its operations are applied to the catalog
//! and its locks recorded against the transaction.

use crate::config::Settings;
use crate::error::Error;
use crate::files::{self, LintTarget, MigrationFile, Presence, TransactionMode};
use crate::lint::rules::{
    self, allow_directive::AllowDirective, syntax_error::SyntaxErrorRule,
    unreadable_file::UnreadableFile,
};
use crate::lint::{make_finding, FileCtx, Finding, HeldLock, Rule, StmtCtx, StmtSummary, TxState};
use crate::model::catalog::{Catalog, Origin};
use crate::model::convert;
use crate::model::locks::{locks_in, TableLock};
use crate::model::{Operation, QualifiedName, TxControl};
use crate::plan::rewrites::plan_statement;
use crate::plan::{MigrationPlan, Phase};
use crate::sql::directives::{self, Directive};
use crate::sql::SqlSource;
use std::path::PathBuf;

mod pipeline;
use pipeline::{spare_cores, Pipeline};
pub use pipeline::{wake_cores, PARSE_STACK};

/// Everything `migrate plan` learned about one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub name: String,
    /// The file's text and line index, for showing source lines (the parse trees are dropped).
    pub text: String,
    pub lines: crate::sql::LineIndex,
    pub findings: Vec<Finding>,
    pub plan: MigrationPlan,
}

/// A migration read, parsed and turned into operations: the work that needs no catalog.
pub struct Prepared {
    pub file: MigrationFile,
    /// Each statement's operations (none for a statement that did not parse)…
    pub ops: Vec<Vec<Operation>>,
    /// …and the SQL that performs each alone.
    pub sqls: Vec<Vec<String>>,
}

impl Prepared {
    /// Converts every statement and drops its parse tree: the trees are large, and freeing them
    /// on the thread that built them is cheap where freeing them on another is not.
    pub fn new(mut file: MigrationFile) -> Prepared {
        let (ops, sqls) = file
            .source
            .statements
            .iter_mut()
            .map(|stmt| match stmt.tree.take() {
                Some(tree) => convert::operations(&tree, &stmt.text).into_iter().unzip(),
                None => (Vec::new(), Vec::new()),
            })
            .unzip();
        Prepared { file, ops, sqls }
    }
}

/// Lints and plans every target. `base` is the catalog to start from (empty, or read from a
/// live database). A file that cannot be read is a finding of its own; the run goes on.
pub fn analyze_targets(
    targets: &[LintTarget],
    settings: &Settings,
    base: &Catalog,
) -> Result<Vec<FileReport>, Error> {
    let files: usize = targets.iter().map(|t| t.entries.len()).sum();
    let workers = spare_cores().min(files.saturating_sub(1));
    analyze_with(
        Pipeline::start(workers),
        || Ok(targets.to_vec()),
        settings,
        base,
    )
}

/// [`analyze_targets`] over the targets `find` lists, which it runs while the parsing threads
/// start (see `pipeline`).
pub fn analyze_found(
    find: impl FnOnce() -> Result<Vec<LintTarget>, Error>,
    settings: &Settings,
    base: &Catalog,
) -> Result<Vec<FileReport>, Error> {
    analyze_with(Pipeline::start(spare_cores()), find, settings, base)
}

type Parsing = Pipeline<(usize, files::TargetEntry), Result<Prepared, Error>>;

fn analyze_with(
    pipeline: Parsing,
    find: impl FnOnce() -> Result<Vec<LintTarget>, Error>,
    settings: &Settings,
    base: &Catalog,
) -> Result<Vec<FileReport>, Error> {
    let mut reports = Vec::new();
    let mut missing = None;
    // Every target's migrations in one walk; each target starts from `base` again.
    let entries = || -> Result<Vec<(usize, files::TargetEntry)>, Error> {
        Ok(find()?
            .into_iter()
            .enumerate()
            .flat_map(|(n, t)| t.entries.into_iter().map(move |e| (n, e)))
            .collect())
    };
    let transaction = settings.transaction;
    let load = move |(_, t): &(usize, files::TargetEntry)| {
        files::load(&t.entry, transaction).map(Prepared::new)
    };
    let mut catalog = base.clone();
    let mut target = 0;
    pipeline.run(entries, load, |(n, t), prepared| {
        if *n != target {
            catalog = base.clone();
            target = *n;
        }
        match prepared {
            Ok(p) if t.report => {
                reports.push(analyze_file(p, &mut catalog, settings));
                catalog.settle();
            }
            Ok(p) => replay(&p, &mut catalog),
            // A directory taken for a diesel migration that holds no up.sql is none.
            Err(e) if e.is_not_found() && t.presence == Presence::Assumed => {}
            Err(e) if e.is_not_found() && t.presence == Presence::Named => {
                missing.get_or_insert(e);
            }
            Err(e) if t.report => reports.push(unreadable(&t.entry, &e)),
            // An unreadable earlier migration only weakens the context; it is not this
            // run's subject.
            Err(_) => {}
        }
    })?;
    // A file named on the command line that is not there fails the run, as it always did.
    match missing {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// The report of a migration that could not be read: one finding, at its first line.
fn unreadable(entry: &files::MigrationEntry, e: &Error) -> FileReport {
    let text = String::new();
    let finding = Finding {
        rule: UnreadableFile::META.id,
        level: UnreadableFile::META.level,
        file: entry.path.clone(),
        line: 1,
        column: 1,
        end_line: 1,
        end_column: 1,
        message: format!("cannot read the migration: {e}"),
        help: "fix the file (it must be readable UTF-8 text); the other files were still checked"
            .into(),
        statement: None,
        start: 0,
        end: 0,
    };
    FileReport {
        path: entry.path.clone(),
        name: entry.name.clone(),
        lines: crate::sql::LineIndex::new(&text),
        text,
        findings: vec![finding],
        plan: MigrationPlan {
            migration: entry.name.clone(),
            transaction: TransactionMode::PerFile,
            explicit_phases: false,
            rewrites: Vec::new(),
        },
    }
}

/// Applies a migration's operations to the catalog without reporting on it.
pub fn replay(prepared: &Prepared, catalog: &mut Catalog) {
    for (_, ops) in live_statements(&prepared.file).zip(&prepared.ops) {
        for op in ops {
            catalog.apply(op, Origin::Existing);
        }
    }
    catalog.settle();
}

/// The statements that run: all of them, or for dbmate files those before `-- migrate:down`.
fn live_statements(file: &MigrationFile) -> impl Iterator<Item = &crate::sql::Statement> {
    let down = file
        .source
        .comments
        .iter()
        .find(|c| directives::parse(&c.body) == Some(Directive::Down))
        .map_or(usize::MAX, |c| c.start);
    file.source
        .statements
        .iter()
        .filter(move |s| s.start < down)
}

/// The phase markers of a file, by position.
fn markers(file: &MigrationFile) -> Vec<(usize, Phase)> {
    file.source
        .comments
        .iter()
        .filter_map(|c| match directives::parse(&c.body)? {
            Directive::Phase(phase) => Some((c.start, phase)),
            _ => None,
        })
        .collect()
}

/// Lints and plans one file, advancing `catalog` past it.
pub fn analyze_file(prepared: Prepared, catalog: &mut Catalog, settings: &Settings) -> FileReport {
    let (findings, plan) = lint_and_plan(&prepared, catalog, settings);
    let file = prepared.file;
    FileReport {
        path: file.path,
        name: file.name,
        // Moved, not copied; the parse trees are freed here rather than kept to the end.
        text: file.source.text,
        lines: file.source.lines,
        findings,
        plan,
    }
}

fn lint_and_plan(
    prepared: &Prepared,
    catalog: &mut Catalog,
    settings: &Settings,
) -> (Vec<Finding>, MigrationPlan) {
    let file = &prepared.file;
    let enabled: Vec<&dyn Rule> = rules::RULES
        .iter()
        .copied()
        .filter(|r| settings.rule_levels.get(r.id()).is_none_or(Option::is_some))
        .collect();
    let markers = markers(file);
    let mut tx = TxState {
        implicit: file.transaction == TransactionMode::PerFile,
        ..TxState::default()
    };
    let mut findings = Vec::new();
    let mut rewrites = Vec::new();
    let mut summaries = Vec::new();
    let mut earlier: Vec<&Operation> = Vec::new();
    let mut prev_section = None;

    let statements = live_statements(file).zip(prepared.ops.iter().zip(&prepared.sqls));
    for (index, (stmt, (ops, sqls))) in statements.enumerate() {
        if let Some(e) = &stmt.error {
            let at = stmt.start + e.offset;
            findings.push(make_finding(
                file,
                &SyntaxErrorRule::META,
                at,
                at,
                Some(index),
                format!("syntax error: {}", e.message),
                "fix the statement; the rest of the file was still checked",
            ));
            continue;
        }
        let section = markers
            .iter()
            .rev()
            .find(|(at, _)| *at < stmt.start)
            .map(|(_, p)| *p);
        let section = if markers.is_empty() {
            None
        } else {
            Some(section.unwrap_or(Phase::Expand))
        };
        if section != prev_section {
            // Each phase runs at its own time, in its own transaction: nothing is held across.
            tx.held.clear();
            tx.added_constraints.clear();
            prev_section = section;
        }
        let ctx = StmtCtx {
            file,
            index,
            stmt,
            ops,
            catalog,
            tx: &tx,
            settings,
            section,
            earlier: &earlier,
        };
        for rule in &enabled {
            rule.check(&ctx, &mut findings);
        }
        let (line, _) = file.source.position(stmt.start);
        let plan_ctx = crate::plan::PlanCtx {
            index,
            line,
            ops,
            catalog,
            section,
            pg: settings.pg_version,
            views: settings.views,
            pending_tables: &settings.pending_tables,
        };
        for r in plan_statement(&plan_ctx, sqls, &earlier) {
            if let Some(index) = &r.adopts {
                drop_build_of(&mut rewrites, index, line);
            }
            rewrites.push(r);
        }
        summaries.push(StmtSummary {
            index,
            section,
            start: stmt.start,
            end: stmt.end,
            line,
            in_transaction: tx.in_transaction(),
            new_tables: ops
                .iter()
                .filter_map(Operation::table)
                .filter(|t| catalog.is_new_table(t))
                .cloned()
                .collect(),
            ops,
        });
        advance(&mut tx, ops, (index, line), catalog, settings.pg_version);
        for op in ops {
            catalog.apply(op, Origin::New);
        }
        earlier.extend(ops);
    }

    let file_ctx = FileCtx {
        file,
        statements: &summaries,
        end_tx: &tx,
        catalog,
        settings,
    };
    for rule in &enabled {
        rule.check_file(&file_ctx, &mut findings);
    }

    let mut findings = apply_allows(file, findings, settings);
    for f in &mut findings {
        if let Some(Some(level)) = settings.rule_levels.get(f.rule) {
            f.level = *level;
        }
    }
    findings.retain(|f| settings.rule_levels.get(f.rule).is_none_or(Option::is_some));
    findings.sort_by_key(|f| (f.start, std::cmp::Reverse(f.level), f.rule));

    let plan = MigrationPlan {
        migration: file.name.clone(),
        transaction: file.transaction,
        explicit_phases: !markers.is_empty(),
        rewrites,
    };
    (findings, plan)
}

/// Takes the build of `index` out of the rewrites planned so far: a later statement of the
/// migration (at `line`) builds it as a key instead.
fn drop_build_of(rewrites: &mut [crate::plan::Rewrite], index: &QualifiedName, line: usize) {
    use crate::plan::StepKind;
    let builds = |s: &crate::plan::Step| matches!(&s.kind, StepKind::Concurrent { index: Some(i), .. } if i.same(index));
    for r in rewrites.iter_mut().filter(|r| r.steps.iter().any(builds)) {
        r.steps.clear();
        r.abort.clear();
        r.notes = vec![format!(
            "not built as written: the constraint of line {line} takes it over, and its table is partitioned, so the key's own indexes are built instead"
        )];
    }
}

/// Moves the transaction state past a statement.
fn advance(
    tx: &mut TxState,
    ops: &[Operation],
    (index, line): (usize, usize),
    catalog: &Catalog,
    pg: crate::vocab::PgVersion,
) {
    for op in ops {
        match op {
            Operation::Transaction(TxControl::Begin) => {
                if tx.explicit == 0 {
                    tx.begin_line = Some(line);
                }
                tx.explicit += 1;
            }
            Operation::Transaction(
                TxControl::Commit | TxControl::Rollback | TxControl::Prepare,
            ) => {
                tx.explicit = 0;
                tx.begin_line = None;
                tx.held.clear();
                tx.added_constraints.clear();
                tx.local_timeouts = Default::default();
            }
            Operation::SetVariable {
                name,
                local,
                nonzero,
            } => {
                let (lock, statement) = match name.as_str() {
                    "lock_timeout" => (true, false),
                    "statement_timeout" => (false, true),
                    "" => (true, true),
                    _ => (false, false),
                };
                let overrides = &mut tx.local_timeouts;
                if *local {
                    if lock {
                        overrides.lock = Some(*nonzero);
                    }
                    if statement {
                        overrides.statement = Some(*nonzero);
                    }
                } else {
                    // A plain SET in a transaction replaces its SET LOCAL too.
                    if lock {
                        tx.session_timeouts.lock = *nonzero;
                        overrides.lock = None;
                    }
                    if statement {
                        tx.session_timeouts.statement = *nonzero;
                        overrides.statement = None;
                    }
                }
            }
            _ => {
                for l in locks_in(op, catalog, pg) {
                    if catalog.is_new_table(&l.table) {
                        continue;
                    }
                    tx.held.push(HeldLock {
                        table: l.table,
                        level: l.level,
                        statement: index,
                        line,
                    });
                }
                if let Operation::AddConstraint {
                    table, constraint, ..
                } = op
                {
                    if let Some(name) = &constraint.name {
                        tx.added_constraints.push((table.clone(), name.clone()));
                    }
                }
            }
        }
    }
    if !tx.in_transaction() {
        tx.held.clear();
        tx.added_constraints.clear();
        tx.local_timeouts = Default::default();
    }
}

/// Applies `-- migrate:allow <rule> <reason>` directives: each suppresses that rule's findings
/// on the next statement; a directive with no reason, an unknown rule, or nothing to suppress
/// is itself a finding.
fn apply_allows(
    file: &MigrationFile,
    findings: Vec<Finding>,
    _settings: &Settings,
) -> Vec<Finding> {
    let statements = &file.source.statements;
    let mut out = Vec::new();
    let mut used = Vec::new();
    let allows: Vec<_> = file
        .source
        .comments
        .iter()
        .filter_map(|c| {
            let Directive::Allow { rule, reason } = directives::parse(&c.body)? else {
                return None;
            };
            let target = statements.iter().position(|s| s.start >= c.end);
            Some((c, rule, reason, target))
        })
        .collect();
    for f in findings {
        let suppressed = allows.iter().position(|(_, rule, _, target)| {
            *rule == f.rule && target.is_some() && *target == f.statement
        });
        match suppressed {
            Some(i) if f.rule != AllowDirective::META.id => used.push(i),
            _ => out.push(f),
        }
    }
    for (i, (c, rule, reason, target)) in allows.iter().enumerate() {
        let message = if rule.is_empty() {
            Some("`migrate:allow` names no rule".to_string())
        } else if rules::find(rule).is_none() {
            Some(format!("`migrate:allow {rule}`: there is no such rule"))
        } else if reason.is_empty() {
            Some(format!("`migrate:allow {rule}` gives no reason"))
        } else if target.is_none() || !used.contains(&i) {
            Some(format!(
                "`migrate:allow {rule}` suppresses nothing on the next statement"
            ))
        } else {
            None
        };
        if let Some(message) = message {
            out.push(make_finding(
                file,
                &AllowDirective::META,
                c.start,
                c.end,
                None,
                message,
                "write `-- migrate:allow <rule-id> <why it is safe here>` on the line before the statement it excuses, or remove it",
            ));
        }
    }
    // A misspelt directive would otherwise be an ordinary comment, silently.
    for c in &file.source.comments {
        if let Some(Directive::Unknown(what)) = directives::parse(&c.body) {
            out.push(make_finding(
                file,
                &AllowDirective::META,
                c.start,
                c.end,
                None,
                format!("`-- migrate:{what}` is not a directive: the comment has no effect"),
                "the directives are migrate:expand, migrate:backfill, migrate:contract, migrate:no-transaction, migrate:allow <rule> <reason>, and dbmate's migrate:up / migrate:down",
            ));
        }
    }
    out
}

/// Migration number `i` of a test's SQL, as if read from `000i_migration.sql`.
fn source_file(i: usize, text: &str, settings: &Settings) -> MigrationFile {
    MigrationFile {
        path: PathBuf::from(format!("{i:04}_migration.sql")),
        name: format!("{i:04}_migration"),
        transaction: settings.transaction,
        opt_out: None,
        source: SqlSource::parse(text.to_string()),
    }
}

/// What the linter claims each statement of `sql` locks, and for how long, on the schema the
/// `context` migrations leave (for the tests that hold these claims against a live server).
pub fn claimed_locks(context: &[&str], sql: &str, settings: &Settings) -> Vec<Vec<TableLock>> {
    let mut catalog = Catalog::default();
    for (i, c) in context.iter().enumerate() {
        replay(
            &Prepared::new(source_file(i + 1, c, settings)),
            &mut catalog,
        );
    }
    let prepared = Prepared::new(source_file(context.len() + 1, sql, settings));
    let mut out = Vec::new();
    for ops in &prepared.ops {
        out.push(
            ops.iter()
                .flat_map(|op| locks_in(op, &catalog, settings.pg_version))
                .filter(|l| !catalog.is_new_table(&l.table))
                .collect(),
        );
        for op in ops {
            catalog.apply(op, Origin::New);
        }
    }
    out
}

/// Lints `sql` as a migration that follows the `context` migrations (for tests and fuzzing).
pub fn analyze_sources(context: &[&str], sql: &str, settings: &Settings) -> Vec<FileReport> {
    let mut catalog = Catalog::default();
    for (i, c) in context.iter().enumerate() {
        replay(
            &Prepared::new(source_file(i + 1, c, settings)),
            &mut catalog,
        );
    }
    let mut file = source_file(context.len() + 1, sql, settings);
    if file.source.comments.first().is_some_and(|c| {
        c.start == 0 && directives::parse(&c.body) == Some(Directive::NoTransaction)
    }) {
        file.transaction = TransactionMode::None;
    }
    vec![analyze_file(Prepared::new(file), &mut catalog, settings)]
}
