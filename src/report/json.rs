//! `--format json`: one compact object with a `findings` array (positions from 1), each file's
//! step counts, totals, and with `--explain` the full plans (every step's SQL and locks).

use super::{display_path, Totals};
use crate::analyze::FileReport;
use crate::lint::Level;
use crate::plan::{MigrationPlan, Phase};
use serde::Serialize;
use std::borrow::Cow;
use std::io::{self, Write};

#[derive(Serialize)]
struct JsonFinding<'a> {
    file: Cow<'a, str>,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    rule: &'a str,
    level: Level,
    message: &'a str,
    help: &'a str,
}

#[derive(Serialize)]
struct JsonFile<'a> {
    migration: &'a str,
    file: String,
    transaction: crate::files::TransactionMode,
    explicit_phases: bool,
    expand: usize,
    backfill: usize,
    contract: usize,
    rejected: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    findings: Vec<JsonFinding<'a>>,
    files: Vec<JsonFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plans: Option<Vec<&'a MigrationPlan>>,
    summary: Totals,
}

pub fn write(reports: &[FileReport], explain: bool, out: &mut dyn Write) -> io::Result<()> {
    // A file's findings name it alike: its path is written out once.
    let names: Vec<String> = reports.iter().map(|r| display_path(&r.path)).collect();
    let findings = reports
        .iter()
        .zip(&names)
        .flat_map(|(r, name)| {
            r.findings.iter().map(move |f| JsonFinding {
                file: if f.file.as_os_str() == r.path.as_os_str() {
                    Cow::Borrowed(name.as_str())
                } else {
                    Cow::Owned(display_path(&f.file))
                },
                line: f.line,
                column: f.column,
                end_line: f.end_line,
                end_column: f.end_column,
                rule: f.rule,
                level: f.level,
                message: &f.message,
                help: &f.help,
            })
        })
        .collect();
    let files = reports
        .iter()
        .map(|r| JsonFile {
            migration: &r.name,
            file: display_path(&r.path),
            transaction: r.plan.transaction,
            explicit_phases: r.plan.explicit_phases,
            expand: r.plan.steps_in(Phase::Expand).count(),
            backfill: r.plan.steps_in(Phase::Backfill).count(),
            contract: r.plan.steps_in(Phase::Contract).count(),
            rejected: r.plan.rejected().count(),
        })
        .collect();
    let doc = Document {
        findings,
        files,
        plans: explain.then(|| reports.iter().map(|r| &r.plan).collect()),
        summary: Totals::of(reports),
    };
    // Compact: a machine format, and several times cheaper to write than pretty JSON.
    // Into memory first: serde writes token by token, each a call through `out`.
    let mut bytes = serde_json::to_vec(&doc).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
}
