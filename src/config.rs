//! `migrate.toml` and the command-line overrides, turned into settings that make sense.
//!
//! Raw settings are read as written (every field optional); `Settings` is what the rest of the
//! program sees, with defaults filled in and every value checked.

use crate::error::Error;
use crate::files::TransactionMode;
use crate::vocab::Level;
pub use crate::vocab::PgVersion;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod guard;
pub use guard::{GuardSettings, Level as GuardLevel, Levels as GuardLevels, RawGuard, Signal};

/// A rule's configured level, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSetting {
    Off,
    Info,
    Warning,
    Error,
}

/// `migrate.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub migrations: Option<PathBuf>,
    pub pg_version: Option<toml::Value>,
    pub transaction: Option<TransactionMode>,
    /// The schema holding migrate's own state.
    pub metadata_schema: Option<String>,
    /// The longest a statement waits for a lock per try (`"2s"`, `"500ms"`).
    pub lock_timeout: Option<String>,
    /// Tries after the first when a lock is not granted in time.
    pub lock_retries: Option<u32>,
    /// Tries after the first double their lock_timeout up to this (default: lock_timeout).
    pub lock_timeout_max: Option<String>,
    /// The pause after the first timed-out try; it doubles, with jitter, up to the max.
    pub lock_retry_pause: Option<String>,
    pub lock_retry_max_pause: Option<String>,
    /// Whether each app version reads the tables through a schema of views of its own.
    pub views: Option<bool>,
    /// The schemas whose tables the version schemas show (`["public"]`).
    pub schemas: Option<Vec<String>>,
    /// How the new version sees a column dropped at contract until then: `hidden` by a view of
    /// the table, or `shown`, reading the table itself.
    pub dropped_columns: Option<DroppedColumns>,
    /// Who applies the files: `migrate` (the default) or `other` (Flyway, sqlx, diesel, …).
    pub applied_by: Option<AppliedBy>,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSetting>,
    #[serde(default)]
    pub backfill: RawBackfill,
    /// What is watched while a migration runs, and what each signal makes it do.
    #[serde(default)]
    pub guard: RawGuard,
    /// The targets of a rollout over many databases (read by `--fleet` with no file).
    pub fleet: Option<toml::Value>,
}

/// `[backfill]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackfill {
    /// The duration a batch aims at (`"50ms"`).
    pub target: Option<String>,
    pub min_rows: Option<i64>,
    pub max_rows: Option<i64>,
    pub initial_rows: Option<i64>,
    /// A fixed batch size instead of an adaptive one.
    pub batch_rows: Option<i64>,
    /// A pause after each batch: a time (`"20ms"`) or a share of the batch's time (`"50%"`).
    pub pause: Option<String>,
    /// The longest a batch waits for a row lock per try.
    pub lock_timeout: Option<String>,
    /// Wait while a replica's replay lag is over this (`"10s"`), or `"off"`.
    pub max_replica_lag: Option<String>,
    /// The backfill session's `backend_flush_after` (`"256kB"`), or `"off"`.
    pub flush_after: Option<String>,
    /// Whether each batch's commit waits for its WAL to reach the disk.
    pub synchronous_commit: Option<bool>,
    /// The backfill session's `wal_compression` (`"lz4"`), or `"off"`.
    pub wal_compression: Option<String>,
    /// The pause while other sessions are busy: a time or a share of the batch's time.
    pub busy_pause: Option<String>,
    /// Commits per second by other sessions from which the database counts as busy.
    pub busy_tps: Option<u32>,
    /// Connections walking disjoint key ranges at once (1 to 16).
    pub workers: Option<u32>,
    pub busy_workers: Option<u32>,
    /// How many times its lowest a commit may take before the batches back off (`4`), or 0.
    pub commit_slowdown: Option<f64>,
}

/// A pause between batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pause {
    Fixed(std::time::Duration),
    /// A share of the batch's own time (0.5 = half as long again).
    Share(f64),
}

impl Pause {
    pub fn after(&self, batch: std::time::Duration) -> std::time::Duration {
        match *self {
            Pause::Fixed(d) => d,
            Pause::Share(f) => batch.mul_f64(f),
        }
    }
}

/// How backfills batch and throttle.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSettings {
    /// The duration each batch aims at. A batch holds its rows' locks for as long as it runs,
    /// so this bounds how long an application write can wait on it.
    pub target: std::time::Duration,
    pub min_rows: i64,
    pub max_rows: i64,
    pub initial_rows: i64,
    pub pause: Pause,
    pub lock_timeout: std::time::Duration,
    pub max_replica_lag: Option<std::time::Duration>,
    /// `backend_flush_after` for the backfill's session while other sessions are busy (see
    /// `busy_tps`): the pages it writes go to disk as it goes instead of piling up in the page
    /// cache until the kernel writes a gigabyte at once and every commit on the server waits
    /// behind it. On a quiet database it is off, which is some 10% faster.
    pub flush_after: Option<String>,
    /// Whether a batch's commit waits for its WAL to be flushed (`synchronous_commit`). Off by
    /// default: the next batch starts while the WAL writer flushes the last one's WAL, which
    /// measured 3–4% faster. A crash can lose the last batches' commits, but each batch saves
    /// its cursor in its own transaction, so those batches are lost together with their cursor
    /// and are done again by the next run.
    pub synchronous_commit: bool,
    /// The backfill session's `wal_compression`: the full-page image a batch writes to the WAL
    /// for each page it is first to change after a checkpoint (a third of its WAL) is
    /// compressed, which measured 22% less WAL, less for the replicas to replay and for every
    /// other session's commit to flush, and no slower (lz4; pglz is never chosen: it measured
    /// 28% slower). The server must know the method (lz4 since PostgreSQL 15, where it was built
    /// with it) and the role may set it (a superuser, or `GRANT SET ON PARAMETER
    /// wal_compression`); otherwise the session keeps the server's setting.
    pub wal_compression: Option<String>,
    /// The pause used instead of `pause` while other sessions of the database commit more than
    /// `busy_tps` transactions a second: full speed when the database is quiet, manners when
    /// an application is using it.
    /// `None`: `pause` applies whether the database is busy or not.
    pub busy_pause: Option<Pause>,
    pub busy_tps: u32,
    /// Connections that walk disjoint ranges of the key at once, each batch still its own
    /// short transaction; each range keeps its own cursor, so a kill resumes every one.
    pub workers: u32,
    /// How many of the workers walk while other sessions commit more than `busy_tps` a second
    /// (the others wait, and walk again when the database is quiet): each worker adds WAL
    /// that the application's commits wait to flush behind, so more of them under load raise
    /// the application's latency more than they speed the backfill.
    pub busy_workers: u32,
    /// How many times its lowest (measured before the first batch) the application's commit
    /// latency may grow before the batches back off: while other sessions use the database,
    /// four times a second a one-row transaction commits the way an application's does,
    /// waiting for the WAL flush behind the batches' WAL; when it takes longer than this many
    /// times the lowest seen (and at least 2 ms more), one worker stops, then the last one
    /// pauses as long as each batch took; quick ones for 3 s in a row undo one step, and a
    /// quiet database undoes all. `None`: no probe.
    pub commit_slowdown: Option<f64>,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            target: std::time::Duration::from_millis(50),
            min_rows: 100,
            max_rows: 50_000,
            initial_rows: 1_000,
            pause: Pause::Fixed(std::time::Duration::ZERO),
            lock_timeout: std::time::Duration::from_millis(100),
            max_replica_lag: Some(std::time::Duration::from_secs(10)),
            flush_after: Some("256kB".to_string()),
            synchronous_commit: false,
            wal_compression: Some("lz4".to_string()),
            // Off: on the machine measured (bench/backfill.sh), pausing bought little p99 for
            // the rate it cost, and a slower backfill lives through more of the disk's
            // writeback stalls.
            busy_pause: None,
            busy_tps: 20,
            workers: 1,
            busy_workers: 1,
            commit_slowdown: Some(4.0),
        }
    }
}

impl BackfillSettings {
    fn from_raw(raw: &RawBackfill) -> Result<BackfillSettings, String> {
        let mut b = BackfillSettings::default();
        let rows = |key: &str, v: i64| {
            if (1..=10_000_000).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "[backfill] {key}: {v} is out of range (1 to 10000000 rows)"
                ))
            }
        };
        if let Some(t) = &raw.target {
            b.target = parse_duration(t).map_err(|e| format!("[backfill] target: {e}"))?;
        }
        if let Some(v) = raw.min_rows {
            b.min_rows = rows("min_rows", v)?;
        }
        if let Some(v) = raw.max_rows {
            b.max_rows = rows("max_rows", v)?;
        }
        if let Some(v) = raw.initial_rows {
            b.initial_rows = rows("initial_rows", v)?;
        }
        if b.min_rows > b.max_rows {
            return Err(format!(
                "[backfill] min_rows ({}) is above max_rows ({})",
                b.min_rows, b.max_rows
            ));
        }
        if let Some(v) = raw.batch_rows {
            let v = rows("batch_rows", v)?;
            (b.min_rows, b.max_rows, b.initial_rows) = (v, v, v);
        }
        b.initial_rows = b.initial_rows.clamp(b.min_rows, b.max_rows);
        if let Some(p) = &raw.pause {
            b.pause = parse_pause(p).map_err(|e| format!("[backfill] pause: {e}"))?;
        }
        if let Some(p) = &raw.busy_pause {
            b.busy_pause = match p.trim() {
                "off" => None,
                p => Some(parse_pause(p).map_err(|e| format!("[backfill] busy_pause: {e}"))?),
            };
        }
        if let Some(t) = raw.busy_tps {
            b.busy_tps = t;
        }
        if let Some(w) = raw.workers {
            if !(1..=16).contains(&w) {
                return Err(format!("[backfill] workers: {w} is not between 1 and 16"));
            }
            b.workers = w;
        }
        if let Some(w) = raw.busy_workers {
            if !(1..=16).contains(&w) {
                return Err(format!(
                    "[backfill] busy_workers: {w} is not between 1 and 16"
                ));
            }
            b.busy_workers = w;
        }
        if let Some(t) = &raw.lock_timeout {
            b.lock_timeout =
                parse_duration(t).map_err(|e| format!("[backfill] lock_timeout: {e}"))?;
        }
        if let Some(t) = &raw.max_replica_lag {
            b.max_replica_lag = match t.trim() {
                "off" => None,
                t => Some(
                    parse_duration(t).map_err(|e| format!("[backfill] max_replica_lag: {e}"))?,
                ),
            };
        }
        if let Some(v) = raw.synchronous_commit {
            b.synchronous_commit = v;
        }
        if let Some(f) = raw.commit_slowdown {
            b.commit_slowdown = match f {
                0.0 => None,
                f if (1.5..=1000.0).contains(&f) => Some(f),
                _ => {
                    return Err(format!(
                        "[backfill] commit_slowdown: {f} is out of range (1.5 to 1000, or 0 for no probe)"
                    ))
                }
            };
        }
        if let Some(w) = &raw.wal_compression {
            b.wal_compression = match w.trim() {
                "off" => None,
                m @ ("lz4" | "zstd" | "pglz" | "on") => Some(m.to_string()),
                other => {
                    return Err(format!(
                        "[backfill] wal_compression: `{other}` is not a method; write lz4, zstd, pglz or off"
                    ))
                }
            };
        }
        if let Some(f) = &raw.flush_after {
            let f = f.trim();
            b.flush_after = match f {
                "off" | "0" => None,
                _ => {
                    let digits = f.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                    let unit = &f[digits.len()..];
                    let n: u32 = digits.trim().parse().map_err(|_| {
                        format!("[backfill] flush_after: `{f}` is not a size; write it as 256kB (up to 2MB) or off")
                    })?;
                    let kb = match unit {
                        "kB" | "" => n,
                        "MB" => n.saturating_mul(1024),
                        _ => return Err(format!("[backfill] flush_after: `{f}`: use kB or MB")),
                    };
                    if !(8..=2048).contains(&kb) {
                        return Err(format!(
                            "[backfill] flush_after: `{f}` is out of range (8kB to 2MB)"
                        ));
                    }
                    Some(format!("{kb}kB"))
                }
            };
        }
        Ok(b)
    }
}

/// How the new version sees, between expand and contract, a column its migration drops at
/// contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DroppedColumns {
    /// A view of the table without the column, for the window: the new version's `SELECT *`
    /// never changes shape, but a catalog-reading ORM started in the window finds no primary
    /// key on that table.
    Hidden,
    /// The table itself, column included until contract drops it: the table is a table for the
    /// new version from its first query, and its prepared `SELECT *` meets the drop once.
    Shown,
}

/// Who applies the migration files, which decides what `migrate plan` must check itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliedBy {
    /// `migrate expand` / `contract`: the engine sets short lock timeouts, retries, and
    /// checkpoints every step so a failed run resumes.
    Migrate,
    /// Another runner applies the files as written: timeouts must be in the file, and a file
    /// outside a transaction must survive being run again after a failure.
    Other,
}

/// Validated settings for linting and planning.
#[derive(Debug, Clone)]
pub struct Settings {
    pub migrations_dir: PathBuf,
    pub pg_version: PgVersion,
    pub transaction: TransactionMode,
    pub metadata_schema: String,
    pub lock_timeout: std::time::Duration,
    pub lock_timeout_max: std::time::Duration,
    pub lock_retries: u32,
    pub lock_retry_pause: std::time::Duration,
    pub lock_retry_max_pause: std::time::Duration,
    pub backfill: BackfillSettings,
    /// Each app version reads the tables through a version schema of views (the default); off,
    /// every version uses the tables themselves and renames keep two physical columns.
    pub views: bool,
    /// The schemas whose tables the version schemas show.
    pub managed_schemas: Vec<String>,
    /// How the new version sees a column dropped at contract until then.
    pub dropped_columns: DroppedColumns,
    /// Set by the engine when it plans a migration, never by a file: the tables that the
    /// migrations in flight before it still change in later phases.
    pub pending_tables: Vec<crate::model::QualifiedName>,
    /// Per-rule level overrides; `None` turns a rule off.
    pub rule_levels: BTreeMap<String, Option<Level>>,
    pub applied_by: AppliedBy,
    pub guard: GuardSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            migrations_dir: PathBuf::from("migrations"),
            pg_version: PgVersion::DEFAULT,
            transaction: TransactionMode::PerFile,
            metadata_schema: "migrate".to_string(),
            // A waiting lock request holds up every query queued behind it: one try is about
            // the longest stall an app may see.
            lock_timeout: std::time::Duration::from_millis(100),
            lock_timeout_max: std::time::Duration::from_millis(100),
            lock_retries: 30,
            lock_retry_pause: std::time::Duration::from_millis(100),
            lock_retry_max_pause: std::time::Duration::from_secs(3),
            backfill: BackfillSettings::default(),
            views: true,
            applied_by: AppliedBy::Migrate,
            managed_schemas: vec!["public".to_string()],
            dropped_columns: DroppedColumns::Hidden,
            pending_tables: Vec::new(),
            rule_levels: BTreeMap::new(),
            guard: GuardSettings::default(),
        }
    }
}

impl Settings {
    /// Reads `migrate.toml` from `path` (an explicit `--config` must exist; the default one may
    /// not). `rule_exists` checks the ids under `[rules]` against the rule registry, which this
    /// module does not import.
    pub fn load(
        path: Option<&Path>,
        rule_exists: fn(&str) -> bool,
    ) -> Result<(Settings, RawConfig), Error> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("migrate.toml"), false),
        };
        let raw = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<RawConfig>(&text).map_err(|e| Error::Config {
                path: path.clone(),
                message: e.to_string().trim_end().to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => RawConfig::default(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let settings = Settings::from_raw(&raw)
            .and_then(|s| match s.rule_levels.keys().find(|id| !rule_exists(id)) {
                Some(id) => Err(format!(
                    "[rules]: there is no rule `{id}`; `migrate rules` lists them"
                )),
                None => Ok(s),
            })
            .map_err(|message| Error::Config { path, message })?;
        Ok((settings, raw))
    }

    pub fn from_raw(raw: &RawConfig) -> Result<Settings, String> {
        let mut s = Settings::default();
        if let Some(m) = &raw.migrations {
            s.migrations_dir = m.clone();
        }
        if let Some(v) = &raw.pg_version {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => format!("{other:?}"),
            };
            s.pg_version = text.parse().map_err(|e| format!("pg_version: {e}"))?;
        }
        if let Some(t) = raw.transaction {
            s.transaction = t;
        }
        if let Some(m) = &raw.metadata_schema {
            if m.is_empty() || m.len() > 63 {
                return Err(format!(
                    "metadata_schema: `{m}` is not a schema name (1 to 63 bytes)"
                ));
            }
            s.metadata_schema = m.clone();
        }
        if let Some(t) = &raw.lock_timeout {
            s.lock_timeout = parse_duration(t).map_err(|e| format!("lock_timeout: {e}"))?;
        }
        if let Some(r) = raw.lock_retries {
            s.lock_retries = r;
        }
        s.lock_timeout_max = match &raw.lock_timeout_max {
            Some(t) => parse_duration(t).map_err(|e| format!("lock_timeout_max: {e}"))?,
            None => s.lock_timeout,
        };
        if s.lock_timeout_max < s.lock_timeout {
            return Err(
                "lock_timeout_max: shorter than lock_timeout; make it at least as long".into(),
            );
        }
        if let Some(t) = &raw.lock_retry_pause {
            s.lock_retry_pause = parse_duration(t).map_err(|e| format!("lock_retry_pause: {e}"))?;
        }
        if let Some(t) = &raw.lock_retry_max_pause {
            s.lock_retry_max_pause =
                parse_duration(t).map_err(|e| format!("lock_retry_max_pause: {e}"))?;
        }
        if s.lock_retry_max_pause < s.lock_retry_pause {
            return Err(
                "lock_retry_max_pause: shorter than lock_retry_pause; make it at least as long"
                    .into(),
            );
        }
        if let Some(a) = raw.applied_by {
            s.applied_by = a;
        }
        if let Some(v) = raw.views {
            s.views = v;
        }
        if let Some(d) = raw.dropped_columns {
            s.dropped_columns = d;
        }
        if let Some(list) = &raw.schemas {
            if list.is_empty() {
                return Err("schemas: name at least one schema (default [\"public\"])".into());
            }
            if let Some(bad) = list.iter().find(|n| n.is_empty() || n.len() > 63) {
                return Err(format!(
                    "schemas: `{bad}` is not a schema name (1 to 63 bytes)"
                ));
            }
            if list.contains(&s.metadata_schema) {
                return Err(format!(
                    "schemas: `{}` is migrate's own metadata schema, not one of the app's",
                    s.metadata_schema
                ));
            }
            s.managed_schemas = list.clone();
        }
        s.backfill = BackfillSettings::from_raw(&raw.backfill)?;
        s.guard = GuardSettings::from_raw(&raw.guard)?;
        // The backfill's bound on replica lag is the guard's pause level for it, unless the
        // guard's own table sets one.
        if !raw.guard.signals.contains_key(Signal::ReplicaLag.key()) {
            s.guard.signals.entry(Signal::ReplicaLag).or_default().pause = s
                .backfill
                .max_replica_lag
                .map(|d| GuardLevel::Absolute(d.as_secs_f64()));
        }
        // Whether each id names a rule is checked against the registry by `lint`, which
        // config does not import (`lint::rules::check_configured`).
        for (id, setting) in &raw.rules {
            let level = match setting {
                RuleSetting::Off => None,
                RuleSetting::Info => Some(Level::Info),
                RuleSetting::Warning => Some(Level::Warning),
                RuleSetting::Error => Some(Level::Error),
            };
            s.rule_levels.insert(id.clone(), level);
        }
        Ok(s)
    }
}

/// `20ms` or `50%` (of the batch's own time); `0` for none.
fn parse_pause(p: &str) -> Result<Pause, String> {
    match p.trim().strip_suffix('%') {
        Some(share) => {
            let v: f64 = share
                .trim()
                .parse()
                .ok()
                .filter(|v| (0.0..=1000.0).contains(v))
                .ok_or_else(|| format!("`{p}` is not a share; write it as 50% (0 to 1000)"))?;
            Ok(Pause::Share(v / 100.0))
        }
        None if p.trim() == "0" => Ok(Pause::Fixed(std::time::Duration::ZERO)),
        None => Ok(Pause::Fixed(parse_duration(p)?)),
    }
}

/// `500ms`, `2s`, `1.5s`, `1m`: a duration between 1 ms and 1 hour.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write it as 500ms or 2s"))?;
    let ms = match unit {
        "ms" => value,
        "s" | "" => value * 1000.0,
        "m" | "min" => value * 60_000.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use ms, s or m")),
    };
    if !(1.0..=3_600_000.0).contains(&ms) {
        return Err(format!("`{s}` is out of range (1ms to 1h)"));
    }
    Ok(std::time::Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1500);
        assert!(parse_duration("0ms").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(
            "14.3".parse::<PgVersion>().unwrap(),
            PgVersion {
                major: 14,
                minor: 3
            }
        );
        assert_eq!(
            "16".parse::<PgVersion>().unwrap(),
            PgVersion {
                major: 16,
                minor: 0
            }
        );
        assert!("sixteen".parse::<PgVersion>().is_err());
        assert!("1.2.3".parse::<PgVersion>().is_err());
    }

    #[test]
    fn dropped_columns_are_hidden_unless_shown() {
        let default = Settings::from_raw(&toml::from_str("").unwrap()).unwrap();
        assert_eq!(default.dropped_columns, DroppedColumns::Hidden);
        let raw: RawConfig = toml::from_str("dropped_columns = \"shown\"").unwrap();
        assert_eq!(
            Settings::from_raw(&raw).unwrap().dropped_columns,
            DroppedColumns::Shown
        );
        assert!(toml::from_str::<RawConfig>("dropped_columns = \"gone\"").is_err());
    }

    #[test]
    fn backfill_settings() {
        let raw: RawConfig = toml::from_str(
            "[backfill]\ntarget = \"200ms\"\npause = \"50%\"\nmax_replica_lag = \"off\"\nmin_rows = 10",
        )
        .unwrap();
        let b = Settings::from_raw(&raw).unwrap().backfill;
        assert_eq!(b.target.as_millis(), 200);
        assert_eq!(b.pause, Pause::Share(0.5));
        assert_eq!(b.max_replica_lag, None);
        assert_eq!(b.min_rows, 10);
        // With no busy_pause the pause holds whether the database is busy or not.
        assert_eq!(b.busy_pause, None);
        assert!(!b.synchronous_commit);
        let raw: RawConfig = toml::from_str("[backfill]\nsynchronous_commit = true").unwrap();
        assert!(
            Settings::from_raw(&raw)
                .unwrap()
                .backfill
                .synchronous_commit
        );
        for (v, want) in [
            ("\"off\"", None),
            (
                "\"20ms\"",
                Some(Pause::Fixed(std::time::Duration::from_millis(20))),
            ),
        ] {
            let raw: RawConfig = toml::from_str(&format!("[backfill]\nbusy_pause = {v}")).unwrap();
            assert_eq!(Settings::from_raw(&raw).unwrap().backfill.busy_pause, want);
        }
        let raw: RawConfig = toml::from_str("[backfill]\nbatch_rows = 5000").unwrap();
        let b = Settings::from_raw(&raw).unwrap().backfill;
        assert_eq!((b.min_rows, b.initial_rows, b.max_rows), (5000, 5000, 5000));
        assert_eq!(b.wal_compression.as_deref(), Some("lz4"));
        assert_eq!(b.commit_slowdown, Some(4.0));
        assert_eq!((b.workers, b.busy_workers), (1, 1));
        let raw: RawConfig = toml::from_str("[backfill]\nworkers = 4\nbusy_workers = 2").unwrap();
        let b = Settings::from_raw(&raw).unwrap().backfill;
        assert_eq!((b.workers, b.busy_workers), (4, 2));
        let raw: RawConfig = toml::from_str("[backfill]\nbusy_workers = 0").unwrap();
        let e = Settings::from_raw(&raw).unwrap_err();
        assert!(e.contains("busy_workers: 0"), "{e}");
        let raw: RawConfig = toml::from_str("[backfill]\ncommit_slowdown = 0").unwrap();
        assert_eq!(
            Settings::from_raw(&raw).unwrap().backfill.commit_slowdown,
            None
        );
        for (v, want) in [("off", None), ("zstd", Some("zstd"))] {
            let raw: RawConfig =
                toml::from_str(&format!("[backfill]\nwal_compression = \"{v}\"")).unwrap();
            let b = Settings::from_raw(&raw).unwrap().backfill;
            assert_eq!(b.wal_compression.as_deref(), want);
        }
        for bad in [
            "min_rows = 500\nmax_rows = 100",
            "pause = \"lots\"",
            "batch_rows = 0",
            "wal_compression = \"gzip\"",
            "commit_slowdown = 1.0",
        ] {
            let raw: RawConfig = toml::from_str(&format!("[backfill]\n{bad}")).unwrap();
            let err = Settings::from_raw(&raw).unwrap_err();
            assert!(err.starts_with("[backfill]"), "{err}");
        }
    }

    #[test]
    fn unknown_rule_is_an_error() {
        let path = std::env::temp_dir().join(format!("migrate-rules-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[rules]\nno-such-rule = \"off\"\ntruncate = \"error\"\n",
        )
        .unwrap();
        let outcome = Settings::load(Some(&path), |id| id == "truncate");
        std::fs::remove_file(&path).unwrap();
        match outcome {
            Err(Error::Config { message, .. }) => {
                assert!(message.contains("no-such-rule"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
