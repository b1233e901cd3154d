//! `--format sarif`: SARIF 2.1.0, for code-scanning dashboards.
//!
//! Written from typed records, not a tree of JSON values built for each finding (that took as
//! long as the whole lint on a large project). The fields are declared in the order the
//! document has always had: each object's keys sorted.

use super::display_path;
use crate::analyze::FileReport;
use crate::lint::{rules::RULES, Level};
use serde::Serialize;
use std::borrow::Cow;
use std::io::{self, Write};

fn sarif_level(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info => "note",
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    runs: [Run<'a>; 1],
    version: &'static str,
}

#[derive(Serialize)]
struct Run<'a> {
    results: Vec<SarifResult<'a>>,
    tool: Tool,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
struct Driver {
    name: &'static str,
    rules: Vec<SarifRule>,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    default_configuration: Configuration,
    full_description: Text,
    help: Help,
    id: &'static str,
    short_description: Text,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Help {
    markdown: String,
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    level: &'static str,
    locations: [Location<'a>; 1],
    message: Text,
    rule_id: &'a str,
    rule_index: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    physical_location: PhysicalLocation<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation<'a> {
    artifact_location: Artifact<'a>,
    region: Region,
}

#[derive(Serialize)]
struct Artifact<'a> {
    uri: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    end_column: usize,
    end_line: usize,
    start_column: usize,
    start_line: usize,
}

pub fn write(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    let rules = RULES
        .iter()
        .map(|r| {
            let m = r.meta();
            SarifRule {
                default_configuration: Configuration {
                    level: sarif_level(m.level),
                },
                full_description: Text { text: m.summary() },
                help: Help {
                    markdown: m.doc_markdown(),
                    text: m.doc_markdown(),
                },
                id: m.id,
                short_description: Text { text: m.summary() },
            }
        })
        .collect();
    // Every finding of a file names it: its path is written out once per file.
    let names: Vec<String> = reports.iter().map(|r| display_path(&r.path)).collect();
    let results = reports
        .iter()
        .zip(&names)
        .flat_map(|(r, name)| r.findings.iter().map(move |f| (r, name, f)))
        .map(|(r, name, f)| SarifResult {
            level: sarif_level(f.level),
            locations: [Location {
                physical_location: PhysicalLocation {
                    artifact_location: Artifact {
                        uri: if f.file.as_os_str() == r.path.as_os_str() {
                            Cow::Borrowed(name.as_str())
                        } else {
                            Cow::Owned(display_path(&f.file))
                        },
                    },
                    region: Region {
                        end_column: f
                            .end_column
                            .max(f.column + usize::from(f.end_line == f.line)),
                        end_line: f.end_line,
                        start_column: f.column,
                        start_line: f.line,
                    },
                },
            }],
            message: Text {
                text: format!("{} (help: {})", f.message, f.help),
            },
            rule_id: f.rule,
            rule_index: RULES.iter().position(|r| r.id() == f.rule),
        })
        .collect();
    let doc = Document {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        runs: [Run {
            results,
            tool: Tool {
                driver: Driver {
                    name: "migrate",
                    rules,
                    version: env!("CARGO_PKG_VERSION"),
                },
            },
        }],
        version: "2.1.0",
    };
    // Into memory first: serde writes token by token, each a call through `out`.
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
}
