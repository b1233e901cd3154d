//! Each migration of a database: its file joined with its recorded phase, backfill progress,
//! last error and version schema. What `migrate status` shows, for one database or a fleet.

use crate::config::Settings;
use crate::engine::state::{checksum, GuardEvent, Metadata, MigrationPhase, MigrationRecord};
use crate::engine::versions;
use crate::error::Error;
use crate::files;
use serde::Serialize;

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
    /// The schema first on this version's `search_path`, while it exists.
    pub version_schema: Option<String>,
    /// The tables this version reads through a view of its own (its shape of them differs
    /// from the tables'); every other table it reads itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// What is in the version schema, or over its views, that migrate did not make: contract
    /// and abort stop on it until it is moved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_made_by_migrate: Vec<versions::Foreign>,
    /// The guard's last throttle, pause or stop while this migration ran, and whether the run
    /// went on after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardEvent>,
    pub guard_resumed: bool,
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
            views: Vec::new(),
            not_made_by_migrate: Vec::new(),
            guard: None,
            guard_resumed: false,
        }
    }
}

/// Joins the migration files with the recorded state of the database at `url`.
pub async fn lines(settings: &Settings, url: &str) -> Result<Vec<StatusLine>, Error> {
    let entries = files::list_dir(&settings.migrations_dir)?;
    let mut conn = crate::engine::connect(url).await?;
    // Read-only: the metadata schema is not created by looking at it.
    let meta = Metadata::new(&settings.metadata_schema);
    let records = meta.records(&mut conn).await?;
    // A layout from before the guard has no events: none to show.
    let events = meta
        .last_guard_events(&mut conn, 200)
        .await
        .unwrap_or_default();
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
                        short_sum(&r.checksum),
                        short_sum(&sum)
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
                views: Vec::new(),
                not_made_by_migrate: Vec::new(),
                guard: None,
                guard_resumed: false,
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
    for line in &mut out {
        let mine = events
            .iter()
            .filter(|e| e.migration.as_deref() == Some(line.name.as_str()));
        let mut resumed = false;
        for e in mine {
            if e.action == "resume" {
                resumed = true;
            } else {
                line.guard = Some(e.clone());
                line.guard_resumed = resumed;
                break;
            }
        }
    }
    let names: Vec<String> = out
        .iter()
        .map(|l| versions::schema_name(&settings.metadata_schema, &l.name))
        .collect();
    let present = versions::existing(&mut conn, &names).await?;
    let held = versions::held(&mut conn, &present, &settings.managed_schemas).await?;
    for (line, name) in out.iter_mut().zip(names) {
        if present.contains(&name) {
            line.views = held.own_in(&name).map(|v| v.name.clone()).collect();
            line.not_made_by_migrate = held
                .foreign
                .iter()
                .filter(|f| f.schema == name)
                .cloned()
                .collect();
            line.version_schema = Some(name);
        }
    }
    Ok(out)
}

/// The first 12 characters of a checksum, for people: a record edited by hand may hold fewer,
/// or not ASCII.
fn short_sum(sum: &str) -> String {
    sum.chars().take(12).collect()
}
