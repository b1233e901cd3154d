//! `migrate status`: each migration, its phase, backfill progress and timestamps.

use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::engine::state::{checksum, Metadata, MigrationPhase, MigrationRecord};
use crate::engine::versions;
use crate::error::Error;
use crate::files;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;
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

/// One line of the status: a migration file, a recorded migration, or both.
#[derive(Debug, Serialize)]
pub struct StatusLine {
    pub name: String,
    pub phase: MigrationPhase,
    pub step: i32,
    pub rows_done: i64,
    pub rows_estimate: Option<i64>,
    pub updated_at: Option<String>,
    pub completed_at: Option<String>,
    pub baselined: bool,
    /// The file's checksum differs from the recorded one (both shown in `note`).
    pub changed: bool,
    pub file_missing: bool,
    pub note: Option<String>,
    /// The schema of views this version's app reads through, while it exists.
    pub version_schema: Option<String>,
}

impl StatusLine {
    fn recorded(
        r: &MigrationRecord,
        changed: bool,
        file_missing: bool,
        note: Option<String>,
    ) -> StatusLine {
        StatusLine {
            name: r.name.clone(),
            phase: r.phase,
            step: r.step,
            rows_done: r.rows_done,
            rows_estimate: r.rows_estimate,
            updated_at: Some(r.updated_at.clone()),
            completed_at: r.completed_at.clone(),
            baselined: r.baselined,
            changed,
            file_missing,
            note,
            version_schema: None,
        }
    }
}

/// Joins the migration files with the recorded state.
pub async fn lines(args: &DbArgs) -> Result<Vec<StatusLine>, Error> {
    let settings = args.settings()?;
    let entries = files::list_dir(&settings.migrations_dir)?;
    let mut conn = crate::engine::connect(args.url()?).await?;
    // Read-only: the metadata schema is not created by looking at it.
    let records = Metadata::new(&settings.metadata_schema)
        .records(&mut conn)
        .await?;
    let mut out = Vec::new();
    for e in &entries {
        let bytes = std::fs::read(&e.path).map_err(|err| Error::io(&e.path, err))?;
        let sum = checksum(&bytes);
        let line = match records.iter().find(|r| r.name == e.name) {
            Some(r) => {
                let changed = r.checksum != sum;
                let note = if changed {
                    Some(format!(
                        "file changed since it was applied: recorded {} now {}",
                        &r.checksum[..12],
                        &sum[..12]
                    ))
                } else {
                    r.last_error.clone()
                };
                StatusLine::recorded(r, changed, false, note)
            }
            None => StatusLine {
                name: e.name.clone(),
                phase: MigrationPhase::Pending,
                step: 0,
                rows_done: 0,
                rows_estimate: None,
                updated_at: None,
                completed_at: None,
                baselined: false,
                changed: false,
                file_missing: false,
                note: None,
                version_schema: None,
            },
        };
        out.push(line);
    }
    for r in records
        .iter()
        .filter(|r| !entries.iter().any(|e| e.name == r.name))
    {
        let note = format!("no file for it in {}", settings.migrations_dir.display());
        out.push(StatusLine::recorded(r, false, true, Some(note)));
    }
    out.sort_by(|a, b| files::natural_cmp(&a.name, &b.name));
    let names: Vec<String> = out
        .iter()
        .map(|l| versions::schema_name(&settings.metadata_schema, &l.name))
        .collect();
    let present = versions::existing(&mut conn, &names).await?;
    for (line, name) in out.iter_mut().zip(names) {
        if present.contains(&name) {
            line.version_schema = Some(name);
        }
    }
    Ok(out)
}

fn backfill_cell(l: &StatusLine) -> String {
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
    let lines = block_on(lines(&args.db))?;
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
                let schema = match (&l.version_schema, Some(i) == latest) {
                    (Some(s), true) => format!("{s} (latest)"),
                    (Some(s), false) => s.clone(),
                    (None, _) => "—".into(),
                };
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
                    l.note.clone().unwrap_or_default(),
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
