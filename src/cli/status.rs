//! `migrate status`: each migration, its phase, backfill progress and timestamps.

use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::engine::state::MigrationPhase;
pub use crate::engine::status::{lines, StatusLine};
use crate::error::Error;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

pub fn backfill_cell(l: &StatusLine) -> String {
    match (l.rows_done, l.rows_estimate) {
        (0, None) => "—".to_string(),
        (done, Some(est)) if est > 0 => format!(
            "{done} / ~{est} rows ({:.0}%)",
            100.0 * done as f64 / est as f64
        ),
        (done, _) => format!("{done} rows"),
    }
}

pub fn run(args: StatusArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        return super::fleet::status(&args.db, args.format);
    }
    let settings = args.db.settings()?;
    let lines = block_on(lines(&settings, args.db.url()?))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    match args.format {
        StatusFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &lines)
                .map_err(|e| io(std::io::Error::other(e)))?;
            writeln!(out).map_err(io)?;
        }
        StatusFormat::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_BORDERS_ONLY);
            table.set_header(vec![
                "migration",
                "phase",
                "backfill",
                "version schema",
                "updated",
                "note",
            ]);
            let latest = lines.iter().rposition(|l| l.version_schema.is_some());
            for (i, l) in lines.iter().enumerate() {
                let mut schema = match (&l.version_schema, Some(i) == latest) {
                    (Some(s), true) => format!("{s} (latest)"),
                    (Some(s), false) => s.clone(),
                    (None, _) => "—".into(),
                };
                if l.version_schema.is_some() {
                    // Which tables the version reads through a view; the rest, itself.
                    schema.push_str(&match l.views.len() {
                        0 => "\nreads the tables".to_string(),
                        _ => format!("\nviews: {}", l.views.join(", ")),
                    });
                }
                let mut note = l.note.clone().unwrap_or_default();
                for f in &l.not_made_by_migrate {
                    if !note.is_empty() {
                        note.push('\n');
                    }
                    // The fix is in expand's warning and in --format json.
                    note.push_str(&format!(
                        "not made by migrate, contract stops on it: {} (owner {})",
                        f.what, f.owner
                    ));
                }
                if let Some(g) = &l.guard {
                    if !note.is_empty() {
                        note.push('\n');
                    }
                    let how = match (g.action.as_str(), l.guard_resumed) {
                        ("stop", _) => "stopped by the guard",
                        ("pause", true) => "paused by the guard, resumed",
                        ("pause", false) => "paused by the guard",
                        (_, true) => "slowed by the guard, resumed",
                        _ => "slowed by the guard",
                    };
                    note.push_str(&format!("{how} at {} ({}): {}", g.at, g.command, g.detail));
                }
                let phase = if l.baselined {
                    format!("{} (baseline)", l.phase)
                } else {
                    l.phase.to_string()
                };
                table.add_row(vec![
                    l.name.clone(),
                    phase,
                    backfill_cell(l),
                    schema,
                    l.updated_at.clone().unwrap_or_else(|| "—".into()),
                    note,
                ]);
            }
            let pending = lines
                .iter()
                .filter(|l| l.phase == MigrationPhase::Pending)
                .count();
            writeln!(
                out,
                "{table}\n{} migrations, {pending} pending",
                lines.len()
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(EXIT_OK)
}
