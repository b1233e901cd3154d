//! Reporters: human, json, github and sarif. Each writes to any `io::Write`, so every format is
//! tested by writing to a `Vec<u8>`.

pub mod github;
pub mod human;
pub mod json;
pub mod sarif;

use crate::analyze::FileReport;
use crate::lint::Level;
use std::io;

/// Output formats of `migrate plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
    Sarif,
}

/// How reports render.
#[derive(Debug, Clone, Copy, Default)]
pub struct HumanOptions {
    /// Colour (human format only).
    pub color: bool,
    /// Every step's SQL: printed by the human format, the full plans in json.
    pub explain: bool,
}

/// Counts of findings by level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub errors: usize,
    pub warnings: usize,
    pub info: usize,
    pub files: usize,
}

impl Totals {
    pub fn of(reports: &[FileReport]) -> Totals {
        let mut t = Totals {
            files: reports.len(),
            ..Totals::default()
        };
        for f in reports.iter().flat_map(|r| &r.findings) {
            match f.level {
                Level::Error => t.errors += 1,
                Level::Warning => t.warnings += 1,
                Level::Info => t.info += 1,
            }
        }
        t
    }
}

/// Writes `reports` in `format`.
pub fn write(
    format: Format,
    reports: &[FileReport],
    human: HumanOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    match format {
        Format::Human => human::write(reports, human, out),
        Format::Json => json::write(reports, human.explain, out),
        Format::Github => github::write(reports, out),
        Format::Sarif => sarif::write(reports, out),
    }
}

/// A path as reports show it: relative, with forward slashes.
pub fn display_path(p: &std::path::Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}
