//! `--format json`: one compact object with a `findings` array (positions from 1), each file's
//! step counts, totals, and with `--explain` the full plans (every step's SQL and locks).

use super::{display_path, Totals};
use crate::analyze::FileReport;
use crate::files::TransactionMode;
use crate::lint::Level;
use crate::plan::{MigrationPlan, Phase};
use std::borrow::Cow;
use std::io::{self, Write};

pub fn write(reports: &[FileReport], explain: bool, out: &mut dyn Write) -> io::Result<()> {
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
    bytes.extend_from_slice(b"],\"files\":[");
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        file_json(&mut bytes, r);
    }
    bytes.push(b']');
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
/// most of the document and the last thing the run does: a report of over a thousand findings
/// is written in one part per core, this thread writing the last. Below that a thread costs
/// more than it saves (starting one on an idle core of this machine's VMs takes up to a
/// millisecond, as long as writing 500 findings).
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
    let (last, others) = chunks.split_last().expect("one chunk at least");
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter()
            .map(|c| scope.spawn(move || findings_part(c)))
            .collect();
        let last = findings_part(last);
        let mut parts: Vec<Vec<u8>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        parts.push(last);
        parts
    }))
}

/// One part of the findings array. Written by hand, not through serde: the findings are a
/// fixed shape of short strings, and serde's escaping looks at every byte on its own (the
/// JSON is byte for byte what serde_json wrote).
fn findings_part(reports: &[FileReport]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reports.iter().map(|r| r.findings.len()).sum::<usize>() * 320);
    for r in reports {
        // A file's findings name it alike: its path is written out once.
        let name = display_path(&r.path);
        for f in &r.findings {
            if !out.is_empty() {
                out.push(b',');
            }
            let file = if f.file.as_os_str() == r.path.as_os_str() {
                Cow::Borrowed(name.as_str())
            } else {
                Cow::Owned(display_path(&f.file))
            };
            out.extend_from_slice(b"{\"file\":");
            json_str(&mut out, &file);
            for (key, n) in [
                (&b",\"line\":"[..], f.line),
                (b",\"column\":", f.column),
                (b",\"end_line\":", f.end_line),
                (b",\"end_column\":", f.end_column),
            ] {
                out.extend_from_slice(key);
                json_uint(&mut out, n);
            }
            out.extend_from_slice(b",\"rule\":");
            json_str(&mut out, f.rule);
            out.extend_from_slice(b",\"level\":");
            json_str(&mut out, level_name(f.level));
            out.extend_from_slice(b",\"message\":");
            json_str(&mut out, &f.message);
            out.extend_from_slice(b",\"help\":");
            json_str(&mut out, &f.help);
            out.push(b'}');
        }
    }
    out
}

/// One element of the files array: the migration, its file, and its plan's step counts.
fn file_json(out: &mut Vec<u8>, r: &FileReport) {
    out.extend_from_slice(b"{\"migration\":");
    json_str(out, &r.name);
    out.extend_from_slice(b",\"file\":");
    json_str(out, &display_path(&r.path));
    out.extend_from_slice(match r.plan.transaction {
        TransactionMode::PerFile => b",\"transaction\":\"per-file\"",
        TransactionMode::None => b",\"transaction\":\"none\"",
    });
    out.extend_from_slice(if r.plan.explicit_phases {
        b",\"explicit_phases\":true"
    } else {
        b",\"explicit_phases\":false"
    });
    for (key, n) in [
        (&b",\"expand\":"[..], r.plan.steps_in(Phase::Expand).count()),
        (b",\"backfill\":", r.plan.steps_in(Phase::Backfill).count()),
        (b",\"contract\":", r.plan.steps_in(Phase::Contract).count()),
        (b",\"rejected\":", r.plan.rejected().count()),
    ] {
        out.extend_from_slice(key);
        json_uint(out, n);
    }
    out.push(b'}');
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Warning => "warning",
        Level::Error => "error",
    }
}

fn json_uint(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as `\n`,
/// `\t`… or `\u00XX`, everything else as it is. Eight bytes at a time are tested at once
/// for anything to escape, and copied whole when there is none.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut clean = 0; // bytes[..clean] are written
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
            if !control
                && !has_zero(x ^ (ONES * u64::from(b'"')))
                && !has_zero(x ^ (ONES * u64::from(b'\\')))
            {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[clean..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        i += 1;
        clean = i;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze_sources;
    use crate::config::Settings;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        cases.extend(
            [
                "",
                "plain ascii text longer than eight bytes",
                "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}",
                "é ü ß — “quotes” 🦀 and \"escaped\" \\ \u{0}",
                "12345678\"",
                "1234567\\",
                "\n\n\n\n\n\n\n\n\n",
            ]
            .map(String::from),
        );
        // Every position of a character to escape in and around an eight-byte chunk.
        for at in 0..20 {
            for c in ['"', '\\', '\n', '\u{1b}', 'é'] {
                let mut s = "x".repeat(20);
                s.insert(at, c);
                cases.push(s);
            }
        }
        for case in &cases {
            let mut ours = Vec::new();
            json_str(&mut ours, case);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(case).unwrap(),
                "{case:?}"
            );
        }
        let mut n = Vec::new();
        for v in [0, 7, 10, 99, 12345, usize::MAX] {
            n.clear();
            json_uint(&mut n, v);
            assert_eq!(n, v.to_string().as_bytes());
        }
    }

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
