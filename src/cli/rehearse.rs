//! `migrate rehearse [NAME] [--scratch-url URL]`: the pending migrations forward, back and
//! forward on a scratch copy (given, or made on the target's server), and what it found.

use super::db::{block_on, exec_settings, DbArgs};
use super::{EXIT_FINDINGS, EXIT_OK};
use crate::error::Error;
use crate::rehearse::scratch::Sample;
use crate::rehearse::{Rehearsal, RehearseOptions};
use std::io::Write;

/// How the rehearsal reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RehearseFormat {
    Human,
    /// One JSON object on stdout; the step lines on stderr.
    Json,
    /// Markdown for a GitHub job summary.
    Github,
}

#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// Rehearse the pending migrations up to and including this one (default: all).
    pub name: Option<String>,
    /// The scratch database to rehearse on — a branch, a restored backup, a clone of the
    /// target — which the rehearsal changes (the password is never printed). Without it, the
    /// rehearsal makes a copy on the target's server (schemas and a sample of the rows), reads
    /// the target only, and drops the copy at the end.
    #[arg(
        long,
        env = "MIGRATE_SCRATCH_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub scratch_url: Option<String>,
    /// The share of each large table's rows the made copy takes (default 0.05).
    #[arg(long, value_name = "FRACTION")]
    pub sample: Option<f64>,
    /// At most this many rows of one table in the made copy (default 100000).
    #[arg(long, value_name = "ROWS")]
    pub sample_max_rows: Option<i64>,
    /// A table with fewer rows than this is copied whole (default 10000).
    #[arg(long, value_name = "ROWS")]
    pub whole_below: Option<i64>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format: `github` writes the report as Markdown, to the job summary when
    /// GITHUB_STEP_SUMMARY is set, else to stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub format: RehearseFormat,
}

pub fn run(args: RehearseArgs) -> Result<u8, Error> {
    for (flag, v) in [
        ("--sample", args.sample),
        ("--sample-max-rows", args.sample_max_rows.map(|v| v as f64)),
        ("--whole-below", args.whole_below.map(|v| v as f64)),
    ] {
        if v.is_some() && args.scratch_url.is_some() {
            return Err(Error::Usage(format!(
                "{flag} sizes the copy rehearse makes, and --scratch-url gives one already: leave out one of them"
            )));
        }
    }
    if args.sample.is_some_and(|f| !(f > 0.0 && f <= 1.0)) {
        return Err(Error::Usage(
            "--sample is a share of each large table's rows: above 0, at most 1 (0.05 is 5%)"
                .into(),
        ));
    }
    let settings = args.db.settings()?;
    let json = args.format != RehearseFormat::Human;
    let mut steps: Box<dyn Write> = if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let exec = exec_settings(&settings);
    let report = block_on(async {
        // With --fleet, the target is the canary: the database the rollout tries first. A
        // given scratch database needs none (without one, nothing is projected).
        let target = match args.db.fleet().await? {
            Some(f) => {
                let i = f.canary.first().copied().unwrap_or(0);
                let t = f.targets.get(i);
                Some(
                    t.map(|t| t.url().to_string())
                        .ok_or_else(|| Error::Usage("the fleet has no targets".into()))?,
                )
            }
            None => args.db.database_url.clone(),
        };
        match args.scratch_url.clone() {
            Some(scratch) if Some(&scratch) == target.as_ref() => Err(Error::Usage(
                "--scratch-url is the target itself: the rehearsal changes the scratch database, so give it a copy".into(),
            )),
            Some(scratch) => {
                let opts = RehearseOptions {
                    exec,
                    settings,
                    scratch_url: scratch,
                    upto: args.name.clone(),
                };
                let mut report = crate::rehearse::run(&opts, &mut steps).await?;
                // Projected onto the target's sizes, when it can be read (never written).
                if let Some(target) = &target {
                    let managed = &opts.settings.managed_schemas;
                    let sizes = crate::rehearse::target_sizes(target, managed).await?;
                    report.project(&sizes, managed);
                }
                Ok(report)
            }
            None => {
                let target = target.ok_or_else(|| {
                    Error::Usage(
                        "no database: pass --database-url (or set DATABASE_URL) for the target to copy, or --scratch-url for a copy of your own".into(),
                    )
                })?;
                let d = Sample::default();
                let sample = Sample {
                    fraction: args.sample.unwrap_or(d.fraction),
                    max_rows: args.sample_max_rows.unwrap_or(d.max_rows),
                    whole_below: args.whole_below.unwrap_or(d.whole_below),
                };
                let opts = RehearseOptions {
                    exec,
                    settings,
                    scratch_url: String::new(),
                    upto: args.name.clone(),
                };
                crate::rehearse::run_on_copy(&target, &sample, opts, &mut steps).await
            }
        }
    })?;
    drop(steps);
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    match args.format {
        RehearseFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(|e| io(std::io::Error::other(e)))?;
            writeln!(out).map_err(io)?;
        }
        RehearseFormat::Human => print(&mut out, &report).map_err(io)?,
        RehearseFormat::Github => {
            let md = markdown(&report);
            match std::env::var_os("GITHUB_STEP_SUMMARY") {
                Some(path) => {
                    let path = std::path::PathBuf::from(path);
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(&path)
                        .map_err(|e| Error::io(&path, e))?;
                    f.write_all(md.as_bytes())
                        .map_err(|e| Error::io(&path, e))?;
                }
                None => out.write_all(md.as_bytes()).map_err(io)?,
            }
        }
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_FINDINGS })
}

fn print(out: &mut dyn Write, r: &Rehearsal) -> std::io::Result<()> {
    if r.migrations.is_empty() {
        return writeln!(
            out,
            "nothing to rehearse: no pending migration on the scratch database"
        );
    }
    writeln!(out, "rehearsed {}", r.migrations.join(", "))?;
    if let Some(c) = &r.scratch {
        let mut t = super::condensed_table([
            "table",
            "target rows (est.)",
            "target size",
            "copied rows",
            "how",
        ]);
        for c in &c.tables {
            let mut how = if c.whole { "whole" } else { "sample" }.to_string();
            if c.parents_added > 0 {
                how.push_str(&format!(", {} rows others reference", c.parents_added));
            }
            if c.orphans_left_out > 0 {
                how.push_str(&format!(
                    ", {} rows without a parent left out",
                    c.orphans_left_out
                ));
            }
            t.add_row([
                c.table.clone(),
                c.target_rows.to_string(),
                human_bytes(c.target_bytes),
                c.rows.to_string(),
                how,
            ]);
        }
        writeln!(
            out,
            "on {}, a copy made on the target's server in {:.1} s (dropped at the end):\n{t}",
            c.database, c.seconds
        )?;
        for w in &c.warnings {
            writeln!(out, "  not copied: {w}")?;
        }
    }
    let mut t = super::condensed_table(["phase", "seconds"]);
    for p in &r.phases {
        t.add_row([p.phase.to_string(), format!("{:.2}", p.seconds)]);
    }
    writeln!(out, "{t}")?;
    // The steps that held a lock blocking writes (SHARE or stronger), as the server showed.
    let blocking: Vec<_> = r
        .steps
        .iter()
        .filter_map(|s| {
            s.locks
                .first()
                .filter(|l| crate::rehearse::lock_strength(&l.mode) >= 4)
                .map(|l| (s, l))
        })
        .collect();
    if !blocking.is_empty() {
        let mut t =
            super::condensed_table(["step", "ms", "strongest lock (from the server)", "held ms"]);
        for (s, l) in &blocking {
            t.add_row([
                format!("{} {} {}: {}", s.migration, s.phase, s.step, s.action),
                format!("{:.0}", s.ms),
                format!("{} on {}", l.mode, l.relation),
                format!("{:.0}", l.held_ms),
            ]);
        }
        writeln!(
            out,
            "steps that held a lock blocking writes ({} of {} steps; sampled every 5 ms):\n{t}",
            blocking.len(),
            r.steps.len()
        )?;
    }
    // With a projection, the last forward pass (the run production will see); JSON has all.
    let projected = r.steps.iter().any(|s| s.projected_ms.is_some());
    let scaled: Vec<_> = r
        .steps
        .iter()
        .filter(|s| s.sized_by.is_some() && (!projected || s.projected_ms.is_some()))
        .collect();
    if !scaled.is_empty() {
        let mut t = super::condensed_table([
            "step that scans, rewrites or changes rows",
            "ms",
            "WAL",
            "size change",
            "on the target (projected)",
        ]);
        for s in &scaled {
            let projected = match (s.projected_ms, s.projected_size_change) {
                (Some(ms), Some(b)) => format!("{}, {}", human_ms(ms), signed_bytes(b)),
                _ => String::new(),
            };
            t.add_row([
                format!("{} {} {}: {}", s.migration, s.phase, s.step, s.action),
                format!("{:.0}", s.ms),
                human_bytes(s.wal_bytes),
                signed_bytes(s.size_change),
                projected,
            ]);
        }
        writeln!(out, "{t}")?;
    }
    if let Some(p) = r.projection.as_ref().filter(|p| !p.tables.is_empty()) {
        writeln!(
            out,
            "projected on the target (from its table sizes and the rates measured here; not a measurement): backfill {}, index builds and validations {}, disk {}",
            human_ms(p.backfill_seconds * 1e3),
            human_ms(p.scan_seconds * 1e3),
            human_bytes(p.disk_bytes)
        )?;
    }
    for p in &r.probes {
        writeln!(
            out,
            "{} version's probe ({}): {} requests, {} failed, p99 {:.1} ms, max {:.1} ms",
            p.version, p.search_path, p.requests, p.failed, p.p99_ms, p.max_ms
        )?;
        for e in &p.errors {
            writeln!(out, "  failure: {e}")?;
        }
    }
    if let Some(f) = &r.failed {
        writeln!(out, "FAILED: {f}")?;
    }
    if !r.abort_differences.is_empty() {
        writeln!(
            out,
            "the abort did not restore what was there before expand:"
        )?;
        for d in &r.abort_differences {
            writeln!(out, "  {d}")?;
        }
    }
    if !r.end_differences.is_empty() {
        writeln!(
            out,
            "the end state differs from what the files as written make:"
        )?;
        for d in &r.end_differences {
            writeln!(out, "  {d}")?;
        }
    }
    if r.ok() {
        writeln!(
            out,
            "ok: forward, back and forward again with both versions' probes answered; the abort restored every table and the end state is what the files mean"
        )?;
    }
    Ok(())
}

/// A size in bytes as people read it.
fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// A size change with its sign.
fn signed_bytes(b: i64) -> String {
    if b < 0 {
        format!("-{}", human_bytes(-b))
    } else {
        format!("+{}", human_bytes(b))
    }
}

/// A time as people read it.
fn human_ms(ms: f64) -> String {
    if ms >= 3_600_000.0 {
        format!("{:.1} h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// The report as Markdown, for a GitHub job summary.
fn markdown(r: &Rehearsal) -> String {
    use std::fmt::Write as _;
    let mut m = String::new();
    let verdict = if r.migrations.is_empty() {
        "nothing to rehearse"
    } else if r.ok() {
        "passed"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        m,
        "## migrate rehearse: {verdict}\n\n{}\n",
        r.migrations
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(f) = &r.failed {
        let _ = writeln!(m, "**Failed:** {}\n", f.replace('\n', " "));
    }
    for (title, diffs) in [
        ("The abort did not restore", &r.abort_differences),
        (
            "The end state differs from the files as written",
            &r.end_differences,
        ),
    ] {
        if !diffs.is_empty() {
            let _ = writeln!(m, "**{title}:**\n");
            for d in diffs.iter() {
                let _ = writeln!(m, "- {d}");
            }
            let _ = writeln!(m);
        }
    }
    let _ = writeln!(m, "| phase | seconds |\n|---|---:|");
    for p in &r.phases {
        let _ = writeln!(m, "| {} | {:.2} |", p.phase, p.seconds);
    }
    let _ = writeln!(
        m,
        "\n| version | requests | failed | p99 ms | max ms |\n|---|---:|---:|---:|---:|"
    );
    for p in &r.probes {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.1} | {:.1} |",
            p.version, p.requests, p.failed, p.p99_ms, p.max_ms
        );
    }
    let _ = writeln!(
        m,
        "\n| step | ms | strongest lock (server) | held ms | WAL | size | on the target (projected) |\n|---|---:|---|---:|---:|---:|---|"
    );
    for s in &r.steps {
        let lock = s
            .locks
            .first()
            .map(|l| {
                (
                    format!("{} on {}", l.mode, l.relation),
                    format!("{:.0}", l.held_ms),
                )
            })
            .unwrap_or_default();
        let projected = match (s.projected_ms, s.projected_size_change) {
            (Some(ms), Some(b)) => format!("{}, {}", human_ms(ms), signed_bytes(b)),
            _ => String::new(),
        };
        let _ = writeln!(
            m,
            "| {} {} {}: {} | {:.0} | {} | {} | {} | {} | {} |",
            s.migration,
            s.phase,
            s.step,
            s.action.replace('|', "\\|"),
            s.ms,
            lock.0,
            lock.1,
            human_bytes(s.wal_bytes),
            signed_bytes(s.size_change),
            projected
        );
    }
    if let Some(p) = r.projection.as_ref().filter(|p| !p.tables.is_empty()) {
        let _ = writeln!(
            m,
            "\n**Projected on the target** (from its table sizes and the rates measured here; not a measurement): backfill {}, index builds and validations {}, disk {}.",
            human_ms(p.backfill_seconds * 1e3),
            human_ms(p.scan_seconds * 1e3),
            human_bytes(p.disk_bytes)
        );
    }
    m
}
