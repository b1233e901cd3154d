//! The pipeline for `migrate plan`: files → statements → operations → findings and plan.
//!
//! Each file is walked statement by statement. Before a statement the rules see the catalog as
//! it stood and the transaction around it; after it, its operations are applied to the catalog
//! and its locks recorded against the transaction.

use crate::config::Settings;
use crate::error::Error;
use crate::files::{self, LintTarget, MigrationFile, TransactionMode};
use crate::lint::rules::{self, allow_directive::AllowDirective, syntax_error::SyntaxErrorRule};
use crate::lint::{make_finding, FileCtx, Finding, HeldLock, Rule, StmtCtx, StmtSummary, TxState};
use crate::model::catalog::{Catalog, Origin};
use crate::model::convert;
use crate::model::locks::locks_of;
use crate::model::{Operation, TxControl};
use crate::plan::rewrite::plan_statement;
use crate::plan::{MigrationPlan, Phase};
use crate::sql::SqlSource;
use std::path::PathBuf;

/// Everything `migrate plan` learned about one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub name: String,
    pub source: SqlSource,
    pub findings: Vec<Finding>,
    pub plan: MigrationPlan,
}

/// Lints and plans every target. `base` is the catalog to start from (empty, or read from a
/// live database).
pub fn analyze_targets(
    targets: &[LintTarget],
    settings: &Settings,
    base: &Catalog,
) -> Result<Vec<FileReport>, Error> {
    let mut reports = Vec::new();
    for target in targets {
        let mut catalog = base.clone();
        for entry in &target.context {
            // An unreadable earlier migration only weakens the context; it is not this run's subject.
            if let Ok(file) = files::load(entry, settings.transaction) {
                replay(&file, &mut catalog);
            }
        }
        for entry in &target.entries {
            let file = files::load(entry, settings.transaction)?;
            reports.push(analyze_file(&file, &mut catalog, settings));
            catalog.settle();
        }
    }
    Ok(reports)
}

/// Applies a migration's operations to the catalog without reporting on it.
pub fn replay(file: &MigrationFile, catalog: &mut Catalog) {
    for stmt in live_statements(file) {
        if let Ok(tree) = &stmt.tree {
            for (op, _) in convert::operations(tree, &stmt.text) {
                catalog.apply(&op, Origin::Existing);
            }
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
        .find(|c| c.body == "migrate:down")
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
        .filter_map(|c| {
            let phase = match c.body.as_str() {
                "migrate:expand" => Phase::Expand,
                "migrate:backfill" => Phase::Backfill,
                "migrate:contract" => Phase::Contract,
                _ => return None,
            };
            Some((c.start, phase))
        })
        .collect()
}

/// Lints and plans one file, advancing `catalog` past it.
pub fn analyze_file(
    file: &MigrationFile,
    catalog: &mut Catalog,
    settings: &Settings,
) -> FileReport {
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
    let mut earlier: Vec<Operation> = Vec::new();
    let mut prev_section = None;

    for (index, stmt) in live_statements(file).enumerate() {
        let tree = match &stmt.tree {
            Ok(tree) => tree,
            Err(e) => {
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
        };
        let pairs = convert::operations(tree, &stmt.text);
        let (ops, sqls): (Vec<Operation>, Vec<String>) = pairs.into_iter().unzip();
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
            ops: &ops,
            catalog,
            tx: &tx,
            settings,
            section,
        };
        for rule in &enabled {
            rule.check(&ctx, &mut findings);
        }
        rewrites.extend(plan_statement(&ctx, &sqls, &earlier));
        let (line, _) = file.source.position(stmt.start);
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
            ops: ops.clone(),
        });
        advance(&mut tx, &ops, index, line, catalog);
        for op in &ops {
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

    FileReport {
        path: file.path.clone(),
        name: file.name.clone(),
        source: file.source.clone(),
        findings,
        plan: MigrationPlan {
            migration: file.name.clone(),
            transaction: file.transaction,
            explicit_phases: !markers.is_empty(),
            rewrites,
        },
    }
}

/// Moves the transaction state past a statement.
fn advance(tx: &mut TxState, ops: &[Operation], index: usize, line: usize, catalog: &Catalog) {
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
            }
            _ => {
                let rewrites = matches!(op, Operation::AlterColumnType { .. });
                for l in locks_of(op, rewrites) {
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
            let rest = c.body.strip_prefix("migrate:allow")?;
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let rule = parts.next().unwrap_or("").to_string();
            let reason = parts.next().unwrap_or("").trim().to_string();
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
    out
}

/// Lints `sql` as a migration that follows the `context` migrations (for tests and fuzzing).
pub fn analyze_sources(context: &[&str], sql: &str, settings: &Settings) -> Vec<FileReport> {
    let mut catalog = Catalog::default();
    let make = |i: usize, text: &str| MigrationFile {
        path: PathBuf::from(format!("{i:04}_migration.sql")),
        name: format!("{i:04}_migration"),
        transaction: settings.transaction,
        opt_out: None,
        source: SqlSource::parse(text.to_string()),
    };
    for (i, c) in context.iter().enumerate() {
        replay(&make(i + 1, c), &mut catalog);
    }
    let mut file = make(context.len() + 1, sql);
    if sql
        .lines()
        .next()
        .is_some_and(|l| l.trim() == "-- migrate:no-transaction")
    {
        file.transaction = TransactionMode::None;
    }
    vec![analyze_file(&file, &mut catalog, settings)]
}
