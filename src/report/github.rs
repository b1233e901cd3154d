//! `--format github`: workflow commands that annotate the pull request's diff.

use super::{display_path, Totals};
use crate::analyze::FileReport;
use crate::lint::Level;
use std::io::{self, Write};

/// Escapes a message for a workflow command.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value (file, title) for a workflow command.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn write(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    for f in reports.iter().flat_map(|r| &r.findings) {
        let kind = match f.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "notice",
        };
        writeln!(
            out,
            "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            escape_property(&display_path(&f.file)),
            f.line,
            f.column,
            f.end_line,
            f.end_column,
            escape_property(&format!("migrate {}", f.rule)),
            escape_data(&format!("{}\nhelp: {}", f.message, f.help)),
        )?;
    }
    let t = Totals::of(reports);
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    writeln!(
        out,
        "migrate plan: {}, {}, {} info in {}",
        plural(t.errors, "error"),
        plural(t.warnings, "warning"),
        t.info,
        plural(t.files, "file")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("x:y,z"), "x%3Ay%2Cz");
    }
}
