//! `migrate rehearse [NAME] --scratch-url URL`: the pending migrations forward, back and
//! forward on a scratch copy, and what it found.

use super::db::{block_on, exec_settings, DbArgs, RunFormat};
use super::{EXIT_FINDINGS, EXIT_OK};
use crate::error::Error;
use crate::rehearse::{Rehearsal, RehearseOptions};
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// Rehearse the pending migrations up to and including this one (default: all).
    pub name: Option<String>,
    /// The scratch database to rehearse on — a branch, a restored backup, a clone of the
    /// target — which the rehearsal changes (the password is never printed).
    #[arg(
        long,
        env = "MIGRATE_SCRATCH_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub scratch_url: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: RunFormat,
}

pub fn run(args: RehearseArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        return Err(Error::Usage(
            "rehearse --fleet is not built yet: rehearse on a copy of the canary with --scratch-url".into(),
        ));
    }
    let Some(scratch) = args.scratch_url.clone() else {
        return Err(Error::Usage(
            "rehearse needs --scratch-url: a database to try the migrations on (a branch, a restored backup or a clone of the target); making one on the target's server is not built yet".into(),
        ));
    };
    if args.db.database_url.as_deref() == Some(scratch.as_str()) {
        return Err(Error::Usage(
            "--scratch-url is the target itself: the rehearsal changes the scratch database, so give it a copy".into(),
        ));
    }
    let settings = args.db.settings()?;
    let json = args.format == RunFormat::Json;
    let opts = RehearseOptions {
        exec: exec_settings(&settings),
        settings,
        scratch_url: scratch,
        upto: args.name.clone(),
    };
    let mut steps: Box<dyn Write> = if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let report = block_on(crate::rehearse::run(&opts, &mut steps))?;
    drop(steps);
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    if json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(|e| io(std::io::Error::other(e)))?;
        writeln!(out).map_err(io)?;
    } else {
        print(&mut out, &report).map_err(io)?;
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
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["phase", "seconds"]);
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
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(["step", "ms", "strongest lock (from the server)", "held ms"]);
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
