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

pub fn write(reports: &[FileReport], explain: bool, out: &mut dyn Write) -> io::Result<()> {
    let files: Vec<JsonFile> = reports
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
    // Compact: a machine format, and several times cheaper to write than pretty JSON. Built in
    // memory (serde writes token by token, each a call through `out`), in the order of the
    // keys: findings, files, plans with `--explain`, summary.
    let parts = findings_json(reports)?;
    let mut bytes = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 256);
    bytes.extend_from_slice(b"{\"findings\":[");
    for (i, part) in parts.iter().filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(part);
    }
    bytes.extend_from_slice(b"],\"files\":");
    serde_json::to_writer(&mut bytes, &files).map_err(io::Error::other)?;
    if explain {
        let plans: Vec<&MigrationPlan> = reports.iter().map(|r| &r.plan).collect();
        bytes.extend_from_slice(b",\"plans\":");
        serde_json::to_writer(&mut bytes, &plans).map_err(io::Error::other)?;
    }
    bytes.extend_from_slice(b",\"summary\":");
    serde_json::to_writer(&mut bytes, &Totals::of(reports)).map_err(io::Error::other)?;
    bytes.extend_from_slice(b"}\n");
    out.write_all(&bytes)
}

/// The findings array's elements, comma-separated, in parts to be joined in order. They are
/// most of the document and the last thing the run does, alone: a large report is written in
/// one part per core.
fn findings_json(reports: &[FileReport]) -> io::Result<Vec<Vec<u8>>> {
    let total: usize = reports.iter().map(|r| r.findings.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if total < 1024 { 1 } else { cores.min(4) };
    // Consecutive runs of files with about as many findings each.
    let mut chunks: Vec<&[FileReport]> = Vec::with_capacity(parts);
    let (mut from, mut seen) = (0, 0);
    for (i, r) in reports.iter().enumerate() {
        seen += r.findings.len();
        if chunks.len() + 1 < parts && seen * parts >= total * (chunks.len() + 1) {
            chunks.push(&reports[from..=i]);
            from = i + 1;
        }
    }
    chunks.push(&reports[from..]);
    if chunks.len() == 1 {
        return Ok(vec![findings_part(chunks[0])?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| scope.spawn(move || findings_part(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn findings_part(reports: &[FileReport]) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for r in reports {
        // A file's findings name it alike: its path is written out once.
        let name = display_path(&r.path);
        for f in &r.findings {
            if !bytes.is_empty() {
                bytes.push(b',');
            }
            let finding = JsonFinding {
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
            };
            serde_json::to_writer(&mut bytes, &finding).map_err(io::Error::other)?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze_sources;
    use crate::config::Settings;

    #[test]
    fn a_large_report_written_in_parts_is_one_document_in_order() {
        // Files of uneven size, enough findings for several parts, and one file with none.
        let live = "CREATE TABLE t (id bigint PRIMARY KEY, c int);";
        let mut reports = Vec::new();
        for (n, indexes) in [(1, 900), (2, 0), (3, 40), (4, 700)] {
            let sql: String = (0..indexes)
                .map(|i| format!("CREATE INDEX i{n}_{i} ON t (c);\n"))
                .collect();
            let mut r = analyze_sources(&[live], &sql, &Settings::default()).remove(0);
            r.path = format!("m/{n:04}_indexes.sql").into();
            for f in &mut r.findings {
                f.file = r.path.clone();
            }
            reports.push(r);
        }
        let total: usize = reports.iter().map(|r| r.findings.len()).sum();
        assert!(total >= 1640, "{total}");
        let mut out = Vec::new();
        write(&reports, true, &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let findings = doc["findings"].as_array().unwrap();
        assert_eq!(findings.len(), total);
        let expected: Vec<(String, usize)> = reports
            .iter()
            .flat_map(|r| r.findings.iter().map(|f| (display_path(&f.file), f.line)))
            .collect();
        let written: Vec<(String, usize)> = findings
            .iter()
            .map(|f| {
                (
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(written, expected);
        assert_eq!(doc["files"].as_array().unwrap().len(), 4);
        assert_eq!(doc["plans"].as_array().unwrap().len(), 4);
        assert_eq!(doc["summary"]["files"], 4);
        assert_eq!(out.last(), Some(&b'\n'));
    }
}
