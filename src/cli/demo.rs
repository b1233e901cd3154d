//! `migrate demo`: expand → backfill → contract on a throwaway database under two app
//! versions' traffic, then a table of what the traffic saw and a check of every row.

use super::db::{block_on, exec_settings};
use super::{EXIT_FINDINGS, EXIT_OK};
use crate::config::Settings;
use crate::demo::{DemoOptions, DemoReport};
use crate::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Users to load (orders: a quarter of that).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1000..))]
    pub rows: i64,
    /// Requests per second of each app version.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Seconds of traffic before the expand, during the deploy and after the contract.
    #[arg(long, default_value_t = 3)]
    pub phase_seconds: u64,
    /// A server to create the throwaway database on (default: a temporary cluster of our own).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The migrations to run (default: migrations-example, here or in migrate's source tree).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run with `views = false`: no version schemas; the apps name their columns and cast
    /// across the type change.
    #[arg(long)]
    pub no_views: bool,
    /// Roll the migrations out over this many databases on one server, each under its own
    /// traffic, as `--fleet` does: the canary first, then two at once. The rows and the rate
    /// are shared out among them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=64))]
    pub fleet: Option<u32>,
    /// Mid-backfill, a bad release fails 30% of the app's requests for 6 s: the guard pauses
    /// the backfill by itself and resumes it after; the report says how soon it noticed.
    #[arg(long, conflicts_with = "fleet")]
    pub incident: bool,
    /// Run without the guard (`[guard] enabled = false`), to compare.
    #[arg(long, conflicts_with = "incident")]
    pub no_guard: bool,
}

pub fn run(args: DemoArgs) -> Result<u8, Error> {
    let settings = Settings::default();
    let opts = DemoOptions {
        rows: args.rows,
        rate: args.rate,
        phase_time: Duration::from_secs(args.phase_seconds),
        database_url: args.database_url.clone(),
        migrations: args.dir.clone().unwrap_or_else(|| {
            let here = PathBuf::from("migrations-example");
            let source = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-example"));
            if !here.is_dir() && source.is_dir() {
                source
            } else {
                here
            }
        }),
        exec: exec_settings(&settings),
        views: !args.no_views,
        json: args.json,
        incident: args.incident,
        guard: !args.no_guard,
    };
    if args.incident && args.rows < 200_000 {
        return Err(Error::Usage(format!(
            "--incident happens during the backfill, which must last some seconds: use --rows 200000 or more (not {})",
            args.rows
        )));
    }
    if let Some(n) = args.fleet {
        let mut progress: Box<dyn Write> = if args.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        let reports = block_on(crate::demo::run_fleet(&opts, n as usize, &mut progress))?;
        drop(progress);
        let mut out = std::io::stdout().lock();
        let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
        if args.json {
            let all: Vec<serde_json::Value> = reports
                .iter()
                .map(|(name, r)| serde_json::json!({ "database": name, "report": r }))
                .collect();
            serde_json::to_writer_pretty(&mut out, &all)
                .map_err(|e| io(std::io::Error::other(e)))?;
            writeln!(out).map_err(io)?;
        } else {
            print_fleet_table(&mut out, &reports).map_err(io)?;
        }
        return Ok(if reports.iter().all(|(_, r)| r.ok()) {
            EXIT_OK
        } else {
            EXIT_FINDINGS
        });
    }
    let mut progress: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let report = block_on(crate::demo::run(&opts, &mut progress))?;
    drop(progress);
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(|e| io(std::io::Error::other(e)))?;
        writeln!(out).map_err(io)?;
    } else {
        print_table(&mut out, &report).map_err(io)?;
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_FINDINGS })
}

/// One row per database: what its traffic saw over the whole rollout, and its rows' check.
fn print_fleet_table(out: &mut dyn Write, reports: &[(String, DemoReport)]) -> std::io::Result<()> {
    let mut t = super::condensed_table([
        "database",
        "requests",
        "failed",
        "worst p99 ms",
        "max ms",
        "longest lock wait ms",
        "rows checked",
        "rows wrong",
    ]);
    for (name, r) in reports {
        let worst =
            |f: fn(&crate::demo::PhaseRow) -> f64| r.phases.iter().map(f).fold(0.0f64, f64::max);
        t.add_row([
            name.clone(),
            r.phases
                .iter()
                .map(|p| p.requests)
                .sum::<usize>()
                .to_string(),
            r.failed_requests.to_string(),
            match r.phases.iter().max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms)) {
                Some(p) => format!("{:.1} ({} {})", p.p99_ms, p.phase, p.version),
                None => "—".into(),
            },
            format!("{:.1}", worst(|p| p.max_ms)),
            format!("{:.0}", worst(|p| p.longest_lock_wait_ms)),
            r.rows_checked.to_string(),
            r.rows_wrong.to_string(),
        ]);
    }
    right_align(&mut t, 1..8);
    writeln!(out, "{t}")?;
    for (name, r) in reports {
        for e in &r.errors {
            writeln!(out, "  {name} failure: {e}")?;
        }
        for p in &r.problems {
            writeln!(out, "  {name} wrong: {p}")?;
        }
        for w in &r.long_lock_waits {
            writeln!(
                out,
                "  {name} lock wait: during {}, a request waited {:.0} ms behind: {}",
                w.phase, w.ms, w.behind
            )?;
        }
    }
    if reports.iter().all(|(_, r)| r.ok()) {
        writeln!(
            out,
            "zero downtime on all {} databases: no request failed or waited on a lock past the bound, and every row is right",
            reports.len()
        )?;
    } else {
        writeln!(out, "NOT zero downtime: see the failures above")?;
    }
    Ok(())
}

fn print_table(out: &mut dyn Write, r: &DemoReport) -> std::io::Result<()> {
    let mut t = super::condensed_table([
        "phase",
        "version",
        "requests",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "longest lock wait ms",
    ]);
    for p in &r.phases {
        t.add_row([
            p.phase.to_string(),
            p.version.to_string(),
            p.requests.to_string(),
            p.failed.to_string(),
            format!("{:.1}", p.p50_ms),
            format!("{:.1}", p.p99_ms),
            format!("{:.1}", p.max_ms),
            format!("{:.0}", p.longest_lock_wait_ms),
        ]);
    }
    right_align(&mut t, 1..8);
    writeln!(out, "{t}")?;
    let secs = r.backfill_time.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "backfill: {} rows in {:.1} s ({:.0} rows/s)",
        r.backfill_rows,
        secs,
        r.backfill_rows as f64 / secs
    )?;
    writeln!(
        out,
        "requests failed: {}   rows checked: {}   rows wrong: {}",
        r.failed_requests, r.rows_checked, r.rows_wrong
    )?;
    for e in &r.errors {
        writeln!(out, "  failure: {e}")?;
    }
    for p in &r.problems {
        writeln!(out, "  wrong: {p}")?;
    }
    for w in r
        .waits
        .iter()
        .filter(|w| w.phase == "backfill" || w.phase == "contract")
    {
        let top: Vec<String> = w
            .events
            .iter()
            .take(4)
            .map(|(e, share)| format!("{e} {:.0}%", share * 100.0))
            .collect();
        writeln!(
            out,
            "{}: requests in flight were seen {} ({} samples)",
            w.phase,
            top.join(", "),
            w.samples
        )?;
    }
    if let Some(i) = &r.incident {
        writeln!(
            out,
            "incident: a bad release failed {}% of the app's requests for {:.1} s ({} requests, not counted above)",
            i.share, i.seconds, i.failed_requests
        )?;
        match (i.noticed_after_s, i.resumed_after_end_s) {
            (Some(n), Some(r)) => writeln!(
                out,
                "  the guard paused the backfill {n:.1} s after the first failure ({}), and resumed it {r:.1} s after the last",
                i.signal.as_deref().unwrap_or("?")
            )?,
            (Some(n), None) => writeln!(
                out,
                "  the guard paused the backfill {n:.1} s after the first failure, and never resumed it"
            )?,
            _ => writeln!(out, "  the guard did NOT pause the backfill during the incident")?,
        }
    }
    let bound = crate::demo::LOCK_WAIT_BOUND_MS;
    if r.long_lock_waits.is_empty() {
        writeln!(
            out,
            "lock waits: no request waited longer than {bound:.0} ms (sampled every 10 ms)"
        )?;
    }
    for w in &r.long_lock_waits {
        writeln!(
            out,
            "  lock wait: during {}, a request waited {:.0} ms (over {bound:.0}) behind: {}",
            w.phase, w.ms, w.behind
        )?;
    }
    if r.ok() {
        writeln!(
            out,
            "zero downtime: no request failed or waited on a lock past the bound, and every row is right{}",
            if r.incident.is_some() {
                "; the guard held the backfill through the incident"
            } else {
                ""
            }
        )?;
    } else {
        writeln!(out, "NOT zero downtime: see the failures above")?;
    }
    Ok(())
}

/// Numbers line up on the right.
fn right_align(t: &mut comfy_table::Table, columns: std::ops::Range<usize>) {
    for i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
}
