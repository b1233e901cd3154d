//! `--format sarif`: SARIF 2.1.0, for code-scanning dashboards.

use super::display_path;
use crate::analyze::FileReport;
use crate::lint::{rules::RULES, Level};
use serde_json::json;
use std::io::{self, Write};

fn sarif_level(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info => "note",
    }
}

pub fn write(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    let rules: Vec<_> = RULES
        .iter()
        .map(|r| {
            let m = r.meta();
            json!({
                "id": m.id,
                "shortDescription": { "text": m.summary() },
                "fullDescription": { "text": m.summary() },
                "help": { "text": m.doc_markdown(), "markdown": m.doc_markdown() },
                "defaultConfiguration": { "level": sarif_level(m.level) },
            })
        })
        .collect();
    let results: Vec<_> = reports
        .iter()
        .flat_map(|r| &r.findings)
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|r| r.id() == f.rule),
                "level": sarif_level(f.level),
                "message": { "text": format!("{} (help: {})", f.message, f.help) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": display_path(&f.file) },
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line,
                            "endColumn": f.end_column.max(f.column + usize::from(f.end_line == f.line)),
                        }
                    }
                }],
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "migrate",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}
