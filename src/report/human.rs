//! The report a person reads: each finding with its source line and a caret, the safe plan
//! under it, the phased plan of each file, and a summary table.

use super::{display_path, HumanOptions, Totals};
use crate::analyze::FileReport;
use crate::lint::{Finding, Level};
use crate::model::locks::{LockHold, TableLock};
use crate::plan::{Phase, Rewrite, Step};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use std::io::{self, Write};

struct Paint {
    on: bool,
}

impl Paint {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn level(&self, l: Level) -> String {
        match l {
            Level::Error => self.paint("1;31", "error"),
            Level::Warning => self.paint("1;33", "warning"),
            Level::Info => self.paint("1;36", "info"),
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn blue(&self, s: &str) -> String {
        self.paint("1;34", s)
    }
}

pub fn write(reports: &[FileReport], opts: HumanOptions, out: &mut dyn Write) -> io::Result<()> {
    let p = Paint { on: opts.color };
    for r in reports {
        write_file(r, opts, &p, out)?;
    }
    write_summary(reports, &p, out)
}

fn write_file(
    r: &FileReport,
    opts: HumanOptions,
    p: &Paint,
    out: &mut dyn Write,
) -> io::Result<()> {
    let path = display_path(&r.path);
    for (k, f) in r.findings.iter().enumerate() {
        write_finding(r, f, &path, p, out)?;
        // The safe plan of the statement, once, under its last finding.
        let last_of_statement = r
            .findings
            .get(k + 1)
            .is_none_or(|next| next.statement != f.statement);
        if let (Some(i), true) = (f.statement, last_of_statement) {
            let pad = " ".repeat(f.line.to_string().len());
            for rw in r
                .plan
                .rewrites
                .iter()
                .filter(|rw| rw.statement == i && (rw.rewritten || rw.rejected.is_some()))
            {
                write_rewrite(rw, &pad, opts, p, out)?;
            }
        }
        writeln!(out)?;
    }
    write_phases(r, opts, p, out)
}

fn write_finding(
    r: &FileReport,
    f: &Finding,
    path: &str,
    p: &Paint,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        out,
        "{}{} {}",
        p.level(f.level),
        p.bold(&format!("[{}]:", f.rule)),
        p.bold(&f.message)
    )?;
    let gutter = f.line.to_string().len();
    let pad = " ".repeat(gutter);
    writeln!(out, "{pad}{} {path}:{}:{}", p.blue("-->"), f.line, f.column)?;
    let text = r.lines.line_text(&r.text, f.line);
    if !text.is_empty() {
        writeln!(out, "{pad} {}", p.blue("|"))?;
        writeln!(
            out,
            "{} {} {}",
            p.blue(&f.line.to_string()),
            p.blue("|"),
            text
        )?;
        let width = text.chars().count();
        let start = f.column.saturating_sub(1).min(width);
        let end = if f.end_line == f.line {
            f.end_column.saturating_sub(1).min(width)
        } else {
            width
        };
        let carets = "^".repeat(end.saturating_sub(start).max(1));
        let color = match f.level {
            Level::Error => "1;31",
            Level::Warning => "1;33",
            Level::Info => "1;36",
        };
        writeln!(
            out,
            "{pad} {} {}{}",
            p.blue("|"),
            " ".repeat(start),
            p.paint(color, &carets)
        )?;
    }
    if !f.help.is_empty() {
        writeln!(out, "{pad} {} {} {}", p.blue("="), p.bold("help:"), f.help)?;
    }
    Ok(())
}

fn lock_text(locks: &[TableLock]) -> String {
    if locks.is_empty() {
        return "no table lock".to_string();
    }
    let strongest = locks
        .iter()
        .max_by_key(|l| (l.level, l.hold))
        .expect("not empty");
    let hold = match strongest.hold {
        LockHold::Brief => "brief",
        LockHold::Scan => "during a scan",
        LockHold::Rewrite => "during a rewrite",
        LockHold::Rows => "per batch",
    };
    format!("{} {hold}", strongest.level)
}

fn write_step(
    s: &Step,
    opts: HumanOptions,
    p: &Paint,
    indent: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    let concurrent = s.kind.concurrent();
    let mut lock = lock_text(&s.locks);
    if concurrent {
        lock.push_str(", outside a transaction");
    }
    writeln!(
        out,
        "{indent}{:<9} {}  {}",
        s.phase.name(),
        s.action,
        p.dim(&format!("[{lock}]"))
    )?;
    if opts.explain {
        for line in s.sql.lines() {
            writeln!(out, "{indent}            {}", p.dim(line))?;
        }
    }
    Ok(())
}

fn write_rewrite(
    rw: &Rewrite,
    pad: &str,
    opts: HumanOptions,
    p: &Paint,
    out: &mut dyn Write,
) -> io::Result<()> {
    if let Some(why) = &rw.rejected {
        writeln!(
            out,
            "{pad} {} {} rejected: {why}",
            p.blue("="),
            p.bold("plan:")
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{pad} {} {} {}",
        p.blue("="),
        p.bold("plan:"),
        rw.intent
    )?;
    let indent = format!("{pad}     ");
    for s in &rw.steps {
        write_step(s, opts, p, &indent, out)?;
    }
    for v in &rw.view {
        writeln!(out, "{indent}{} {}", p.dim("views   "), v.describe())?;
    }
    for n in &rw.notes {
        writeln!(out, "{indent}{} {n}", p.dim("note:"))?;
    }
    Ok(())
}

fn write_phases(
    r: &FileReport,
    opts: HumanOptions,
    p: &Paint,
    out: &mut dyn Write,
) -> io::Result<()> {
    let plan = &r.plan;
    let counts: Vec<usize> = Phase::ALL
        .iter()
        .map(|ph| plan.steps_in(*ph).count())
        .collect();
    let rejected = plan.rejected().count();
    let how = if plan.explicit_phases {
        "phases as marked"
    } else {
        "phases planned"
    };
    writeln!(
        out,
        "{} {} ({how}): {} expand, {} backfill, {} contract step{}{}",
        p.bold("plan"),
        p.bold(&r.name),
        counts[0],
        counts[1],
        counts[2],
        if counts[2] == 1 { "" } else { "s" },
        if rejected > 0 {
            format!(", {rejected} rejected")
        } else {
            String::new()
        }
    )?;
    if opts.explain {
        for phase in Phase::ALL {
            for s in plan.steps_in(phase) {
                write_step(s, opts, p, "  ", out)?;
            }
        }
    }
    writeln!(out)
}

fn write_summary(reports: &[FileReport], p: &Paint, out: &mut dyn Write) -> io::Result<()> {
    let totals = Totals::of(reports);
    if reports.len() > 1 {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        table.set_header(vec![
            "migration",
            "errors",
            "warnings",
            "info",
            "expand",
            "backfill",
            "contract",
        ]);
        for r in reports {
            let count = |l: Level| {
                r.findings
                    .iter()
                    .filter(|f| f.level == l)
                    .count()
                    .to_string()
            };
            let steps = |ph: Phase| r.plan.steps_in(ph).count().to_string();
            table.add_row(vec![
                Cell::new(&r.name),
                Cell::new(count(Level::Error)).set_alignment(CellAlignment::Right),
                Cell::new(count(Level::Warning)).set_alignment(CellAlignment::Right),
                Cell::new(count(Level::Info)).set_alignment(CellAlignment::Right),
                Cell::new(steps(Phase::Expand)).set_alignment(CellAlignment::Right),
                Cell::new(steps(Phase::Backfill)).set_alignment(CellAlignment::Right),
                Cell::new(steps(Phase::Contract)).set_alignment(CellAlignment::Right),
            ]);
        }
        writeln!(out, "{table}")?;
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let line = format!(
        "{}, {}, {} in {}",
        plural(totals.errors, "error"),
        plural(totals.warnings, "warning"),
        totals.info.to_string() + " info",
        plural(totals.files, "file")
    );
    let line = if totals.errors > 0 {
        p.paint("1;31", &line)
    } else {
        p.bold(&line)
    };
    writeln!(out, "{line}")
}
