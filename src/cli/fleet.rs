//! `--fleet`: the commands over every database of a fleet, and one status for all of them.

use super::db::{block_on, exec_settings, DbArgs};
use super::status::{backfill_cell, StatusFormat};
use super::EXIT_OK;
use crate::engine::state::MigrationPhase;
use crate::engine::status::{lines, StatusLine};
use crate::error::Error;
use crate::fleet::rollout::{self, Op};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;
use std::io::Write;

/// Runs `op` over the fleet of `--fleet`; the closing summary names every target not done.
pub fn run(db: &DbArgs, op: Op) -> Result<u8, Error> {
    let settings = db.settings()?;
    let report = block_on(async {
        let fleet = db.fleet().await?.expect("--fleet was given");
        rollout::run(&fleet, &settings, &exec_settings(&settings), &op, false).await
    })?;
    if report.failed() {
        return Err(Error::Rollout(report.summary()));
    }
    println!("{}", report.summary());
    Ok(EXIT_OK)
}

/// One target's status: its migrations, or why it could not be read.
#[derive(Debug, Serialize)]
struct TargetStatus {
    target: String,
    migrations: Vec<StatusLine>,
    error: Option<String>,
}

/// `migrate status --fleet`: one table, a row per target and a column per migration.
pub fn status(db: &DbArgs, format: StatusFormat) -> Result<u8, Error> {
    let settings = db.settings()?;
    let all = block_on(async {
        let fleet = db.fleet().await?.expect("--fleet was given");
        // Read-only and quick: a few at a time.
        let read = rollout::each(&fleet, fleet.parallel.max(4), |t| {
            let settings = settings.clone();
            async move { lines(&settings, t.url()).await }
        })
        .await;
        let all: Vec<TargetStatus> = fleet
            .targets
            .iter()
            .zip(read)
            .map(|(t, r)| match r {
                Ok(migrations) => TargetStatus {
                    target: t.name.clone(),
                    migrations,
                    error: None,
                },
                Err(e) => TargetStatus {
                    target: t.name.clone(),
                    migrations: Vec::new(),
                    error: Some(e.to_string()),
                },
            })
            .collect();
        Ok(all)
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    match format {
        StatusFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &all)
                .map_err(|e| io(std::io::Error::other(e)))?;
            writeln!(out).map_err(io)?;
        }
        StatusFormat::Table => {
            let mut names: Vec<&str> = Vec::new();
            for t in &all {
                for m in &t.migrations {
                    if !names.contains(&m.name.as_str()) {
                        names.push(&m.name);
                    }
                }
            }
            names.sort_by(|a, b| crate::files::natural_cmp(a, b));
            let mut table = Table::new();
            table.load_preset(UTF8_BORDERS_ONLY);
            let mut header = vec!["target".to_string()];
            header.extend(names.iter().map(|n| n.to_string()));
            header.push("last error".into());
            table.set_header(header);
            for t in &all {
                let mut row = vec![t.target.clone()];
                for n in &names {
                    row.push(match t.migrations.iter().find(|m| m.name == *n) {
                        Some(m) => cell(m),
                        None if t.error.is_some() => "?".into(),
                        None => "—".into(),
                    });
                }
                let note = t.error.clone().or_else(|| {
                    t.migrations
                        .iter()
                        .rev()
                        .find(|m| m.phase != MigrationPhase::Complete && m.note.is_some())
                        .map(|m| format!("{}: {}", m.name, m.note.clone().unwrap_or_default()))
                });
                row.push(note.map(|n| short(&n, 100)).unwrap_or_default());
                table.add_row(row);
            }
            let unreadable = all.iter().filter(|t| t.error.is_some()).count();
            writeln!(
                out,
                "{table}\n{} targets, {} migrations{}",
                all.len(),
                names.len(),
                if unreadable > 0 {
                    format!(", {unreadable} could not be read")
                } else {
                    String::new()
                }
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(EXIT_OK)
}

/// A migration's phase, with its backfill's progress while it has one.
fn cell(m: &StatusLine) -> String {
    let mut s = m.phase.to_string();
    if matches!(
        m.phase,
        MigrationPhase::Backfilling | MigrationPhase::Expanded
    ) && m.rows_done > 0
    {
        s.push_str(&format!(" {}", backfill_cell(m)));
    }
    if m.changed {
        s.push_str(" (file changed)");
    }
    s
}

fn short(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= n {
        return line.to_string();
    }
    let cut: String = line.chars().take(n).collect();
    format!("{cut}…")
}
