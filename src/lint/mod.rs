//! Rules over operations: each rule is one file under `rules/`, its doc comment its
//! documentation. Rules see one statement at a time (with the catalog as it stood before it
//! and the transaction around it), or the whole file at the end; they never touch a database.

pub mod rules;

pub use crate::vocab::Level;

use crate::config::Settings;
use crate::files::{MigrationFile, TransactionMode};
use crate::model::catalog::Catalog;
use crate::model::locks::LockLevel;
use crate::model::{Operation, QualifiedName};
use crate::sql::Statement;
use crate::vocab::PgVersion;
use crate::vocab::Phase;
use serde::Serialize;
use std::path::PathBuf;

/// What a rule is, from its declaration.
#[derive(Debug)]
pub struct RuleMeta {
    pub id: &'static str,
    pub level: Level,
    /// The doc comment, each line with the one leading space of `///` still on it.
    pub doc: &'static str,
}

impl RuleMeta {
    /// The documentation as Markdown.
    pub fn doc_markdown(&self) -> String {
        let mut out = String::new();
        for line in self.doc.lines() {
            out.push_str(line.strip_prefix(' ').unwrap_or(line));
            out.push('\n');
        }
        out.trim_end().to_string()
    }

    /// The first line of the documentation.
    pub fn summary(&self) -> String {
        self.doc_markdown().lines().next().unwrap_or("").to_string()
    }
}

/// Declares a rule's struct with its documentation, id and default level. The doc comment is
/// the single source of the rule's documentation (`migrate rules ID`, docs/rules.md).
#[macro_export]
macro_rules! declare_rule {
    ($(#[doc = $doc:literal])* $vis:vis struct $name:ident => $id:literal, $level:ident;) => {
        $(#[doc = $doc])*
        $vis struct $name;
        impl $name {
            pub const META: $crate::lint::RuleMeta = $crate::lint::RuleMeta {
                id: $id,
                level: $crate::lint::Level::$level,
                doc: concat!($($doc, "\n"),*),
            };
        }
    };
}

/// A lint rule.
pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;

    fn id(&self) -> &'static str {
        self.meta().id
    }

    /// Checks one statement.
    fn check(&self, _ctx: &StmtCtx, _out: &mut Vec<Finding>) {}

    /// Checks the whole file, after every statement was seen.
    fn check_file(&self, _ctx: &FileCtx, _out: &mut Vec<Finding>) {}
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub level: Level,
    pub file: PathBuf,
    /// 1-based position of the start of the span.
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    pub help: String,
    /// Index of the statement in its file.
    #[serde(skip)]
    pub statement: Option<usize>,
    #[serde(skip)]
    pub start: usize,
    #[serde(skip)]
    pub end: usize,
}

/// A lock held since an earlier statement of the current transaction.
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub table: QualifiedName,
    pub level: LockLevel,
    pub statement: usize,
    pub line: usize,
}

/// The transaction a statement runs in.
#[derive(Debug, Clone, Default)]
pub struct TxState {
    /// The runner wraps the whole file in a transaction.
    pub implicit: bool,
    /// Explicit `BEGIN`s open.
    pub explicit: usize,
    /// Line of the `BEGIN` that opened the current explicit transaction.
    pub begin_line: Option<usize>,
    /// Locks taken by earlier statements of the current transaction.
    pub held: Vec<HeldLock>,
    /// Constraints added by earlier statements of the current transaction.
    pub added_constraints: Vec<(QualifiedName, String)>,
    /// Timeouts set by an earlier `SET` of the file (for the rest of the session)…
    pub session_timeouts: Timeouts,
    /// …or by a `SET LOCAL` of the current transaction, which overrides the session's until
    /// the transaction ends (`SET LOCAL lock_timeout = 0` turns it off).
    pub local_timeouts: LocalTimeouts,
}

/// What `SET LOCAL` made of each timeout in the current transaction: on, off, or untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTimeouts {
    pub lock: Option<bool>,
    pub statement: Option<bool>,
}

/// Which of the timeouts that bound a lock wait and a statement are set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    pub lock: bool,
    pub statement: bool,
}

impl TxState {
    pub fn in_transaction(&self) -> bool {
        self.implicit || self.explicit > 0
    }

    /// Whether `lock_timeout` (and `statement_timeout`) bound the next statement.
    pub fn timeouts(&self) -> Timeouts {
        let local = if self.in_transaction() {
            self.local_timeouts
        } else {
            LocalTimeouts::default()
        };
        Timeouts {
            lock: local.lock.unwrap_or(self.session_timeouts.lock),
            statement: local.statement.unwrap_or(self.session_timeouts.statement),
        }
    }

    /// The strongest lock held on `table` since an earlier statement, if any.
    pub fn held_on(&self, table: &QualifiedName) -> Option<&HeldLock> {
        self.held
            .iter()
            .filter(|h| h.table.same(table))
            .max_by_key(|h| h.level)
    }
}

/// Everything a rule may look at for one statement.
pub struct StmtCtx<'a> {
    pub file: &'a MigrationFile,
    pub index: usize,
    pub stmt: &'a Statement,
    pub ops: &'a [Operation],
    /// The schema before this statement.
    pub catalog: &'a Catalog,
    pub tx: &'a TxState,
    pub settings: &'a Settings,
    /// The `-- migrate:<phase>` section the statement stands in, if the file has markers.
    pub section: Option<Phase>,
    /// The operations of the file's earlier statements, in order.
    pub earlier: &'a [&'a Operation],
}

impl StmtCtx<'_> {
    pub fn pg(&self) -> PgVersion {
        self.settings.pg_version
    }

    /// A finding over the whole statement.
    pub fn finding(
        &self,
        meta: &RuleMeta,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Finding {
        make_finding(
            self.file,
            meta,
            self.stmt.start,
            self.stmt.end,
            Some(self.index),
            message,
            help,
        )
    }

    /// Whether the table may hold rows and traffic: it exists and was not created in this migration.
    /// A table the catalog does not know is assumed to exist (it predates the migrations read).
    pub fn is_live_table(&self, table: &QualifiedName) -> bool {
        !self.catalog.is_new_table(table)
    }
}

/// One statement as the file-level checks see it.
pub struct StmtSummary<'a> {
    pub index: usize,
    pub section: Option<Phase>,
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub ops: &'a [Operation],
    pub in_transaction: bool,
    /// Tables that were new when the statement ran.
    pub new_tables: Vec<QualifiedName>,
}

/// Everything a rule may look at for a whole file.
pub struct FileCtx<'a> {
    pub file: &'a MigrationFile,
    pub statements: &'a [StmtSummary<'a>],
    /// The transaction state after the last statement.
    pub end_tx: &'a TxState,
    /// The schema after the last statement.
    pub catalog: &'a Catalog,
    pub settings: &'a Settings,
}

impl FileCtx<'_> {
    pub fn finding_at(
        &self,
        meta: &RuleMeta,
        s: &StmtSummary,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Finding {
        make_finding(
            self.file,
            meta,
            s.start,
            s.end,
            Some(s.index),
            message,
            help,
        )
    }

    pub fn finding_at_end(
        &self,
        meta: &RuleMeta,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Finding {
        let end = self.file.source.text.trim_end().len();
        make_finding(self.file, meta, end, end, None, message, help)
    }
}

pub(crate) fn make_finding(
    file: &MigrationFile,
    meta: &RuleMeta,
    start: usize,
    end: usize,
    statement: Option<usize>,
    message: impl Into<String>,
    help: impl Into<String>,
) -> Finding {
    let (line, column) = file.source.position(start);
    let (end_line, end_column) = file.source.position(end);
    Finding {
        rule: meta.id,
        level: meta.level,
        file: file.path.clone(),
        line,
        column,
        end_line,
        end_column,
        message: message.into(),
        help: help.into(),
        statement,
        start,
        end,
    }
}

/// Whether the file runs its statements in one transaction unless told otherwise.
pub fn implicit_transaction(file: &MigrationFile) -> bool {
    file.transaction == TransactionMode::PerFile
}

/// A column this statement defines or retypes, for the type-style rules.
pub struct DefinedColumn<'a> {
    pub table: &'a QualifiedName,
    pub name: &'a str,
    pub ty: &'a crate::model::SqlType,
    /// Part of the table's primary key.
    pub primary_key: bool,
}

impl StmtCtx<'_> {
    /// Columns defined by `CREATE TABLE` or `ADD COLUMN`, and columns given a new type.
    pub fn defined_columns(&self) -> Vec<DefinedColumn<'_>> {
        use crate::model::ConstraintKind;
        let mut out = Vec::new();
        for op in self.ops {
            match op {
                Operation::CreateTable {
                    table,
                    columns,
                    constraints,
                    ..
                } => {
                    let pk: Vec<&String> = constraints
                        .iter()
                        .filter_map(|c| match &c.kind {
                            ConstraintKind::PrimaryKey { columns, .. } => Some(columns),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    for c in columns {
                        let col_pk = c
                            .constraints
                            .iter()
                            .any(|k| matches!(k.kind, ConstraintKind::PrimaryKey { .. }));
                        out.push(DefinedColumn {
                            table,
                            name: &c.name,
                            ty: &c.ty,
                            primary_key: col_pk || pk.contains(&&c.name),
                        });
                    }
                }
                Operation::AddColumn { table, column, .. } => {
                    let pk = column
                        .constraints
                        .iter()
                        .any(|k| matches!(k.kind, ConstraintKind::PrimaryKey { .. }));
                    out.push(DefinedColumn {
                        table,
                        name: &column.name,
                        ty: &column.ty,
                        primary_key: pk,
                    });
                }
                Operation::AlterColumnType {
                    table, column, ty, ..
                } => {
                    out.push(DefinedColumn {
                        table,
                        name: column,
                        ty,
                        primary_key: false,
                    });
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
pub mod testing {
    //! Helpers for rule tests: lint SQL as a migration file, with earlier migrations as context.

    use super::*;
    use crate::analyze::{analyze_sources, FileReport};

    pub fn lint_with(context: &[&str], sql: &str, settings: &Settings) -> FileReport {
        let mut reports = analyze_sources(context, sql, settings);
        reports.pop().expect("one report")
    }

    pub fn rules_fired(context: &[&str], sql: &str, settings: &Settings) -> Vec<&'static str> {
        lint_with(context, sql, settings)
            .findings
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    /// Asserts `rule` fires on `sql` (run after `context` migrations).
    #[track_caller]
    pub fn fires(rule: &str, context: &[&str], sql: &str) {
        let fired = rules_fired(context, sql, &Settings::default());
        assert!(
            fired.contains(&rule),
            "expected `{rule}` on:\n{sql}\nfired: {fired:?}"
        );
    }

    /// Asserts `rule` does not fire on `sql`.
    #[track_caller]
    pub fn silent(rule: &str, context: &[&str], sql: &str) {
        let fired = rules_fired(context, sql, &Settings::default());
        assert!(
            !fired.contains(&rule),
            "did not expect `{rule}` on:\n{sql}\nfired: {fired:?}"
        );
    }

    /// Like `fires`, for a given PostgreSQL version.
    #[track_caller]
    pub fn fires_on(version: &str, rule: &str, context: &[&str], sql: &str) {
        let settings = Settings {
            pg_version: version.parse().unwrap(),
            ..Settings::default()
        };
        let fired = rules_fired(context, sql, &settings);
        assert!(
            fired.contains(&rule),
            "expected `{rule}` on PG {version}:\n{sql}\nfired: {fired:?}"
        );
    }

    #[track_caller]
    pub fn silent_on(version: &str, rule: &str, context: &[&str], sql: &str) {
        let settings = Settings {
            pg_version: version.parse().unwrap(),
            ..Settings::default()
        };
        let fired = rules_fired(context, sql, &settings);
        assert!(
            !fired.contains(&rule),
            "did not expect `{rule}` on PG {version}:\n{sql}\nfired: {fired:?}"
        );
    }

    /// A context migration that creates `users` (with rows, since it is from an earlier migration).
    pub const USERS: &str = "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, email varchar(100) NOT NULL, age int, org_id bigint, created_at timestamptz);
CREATE TABLE orgs (id bigint PRIMARY KEY, name text);";
}
