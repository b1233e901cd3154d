//! `--format json`: an object with a `findings` array (positions from 1), the plans, and totals.

use super::{display_path, Totals};
use crate::analyze::FileReport;
use serde_json::json;
use std::io::{self, Write};

pub fn write(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    let findings: Vec<_> = reports
        .iter()
        .flat_map(|r| &r.findings)
        .map(|f| {
            json!({
                "file": display_path(&f.file),
                "line": f.line,
                "column": f.column,
                "end_line": f.end_line,
                "end_column": f.end_column,
                "rule": f.rule,
                "level": f.level,
                "message": f.message,
                "help": f.help,
            })
        })
        .collect();
    let plans: Vec<_> = reports.iter().map(|r| &r.plan).collect();
    let doc = json!({
        "findings": findings,
        "plans": plans,
        "summary": Totals::of(reports),
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}
