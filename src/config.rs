//! `migrate.toml` and the command-line overrides, turned into settings that make sense.
//!
//! Raw settings are read as written (every field optional); `Settings` is what the rest of the
//! program sees, with defaults filled in and every value checked.

use crate::error::Error;
use crate::files::TransactionMode;
use crate::lint::Level;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A PostgreSQL server version, major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PgVersion {
    pub major: u32,
    pub minor: u32,
}

impl PgVersion {
    pub const DEFAULT: PgVersion = PgVersion {
        major: 15,
        minor: 0,
    };

    pub fn at_least(&self, major: u32) -> bool {
        self.major >= major
    }
}

impl std::str::FromStr for PgVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a PostgreSQL version; write it as 15 or 14.3");
        let mut parts = s.trim().split('.');
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor: u32 = match parts.next() {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 0,
        };
        // 9.6 style versions: the first two parts are the major version.
        let (major, minor) = if major == 9 {
            (9, minor)
        } else {
            (major, minor)
        };
        if !(9..=99).contains(&major) || parts.next().is_some() {
            return Err(bad());
        }
        Ok(PgVersion { major, minor })
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

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
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSetting>,
}

/// Validated settings for linting and planning.
#[derive(Debug, Clone)]
pub struct Settings {
    pub migrations_dir: PathBuf,
    pub pg_version: PgVersion,
    pub transaction: TransactionMode,
    pub metadata_schema: String,
    pub lock_timeout: std::time::Duration,
    pub lock_retries: u32,
    /// Per-rule level overrides; `None` turns a rule off.
    pub rule_levels: BTreeMap<&'static str, Option<Level>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            migrations_dir: PathBuf::from("migrations"),
            pg_version: PgVersion::DEFAULT,
            transaction: TransactionMode::PerFile,
            metadata_schema: "migrate".to_string(),
            lock_timeout: std::time::Duration::from_secs(2),
            lock_retries: 5,
            rule_levels: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Reads `migrate.toml` from `path` (an explicit `--config` must exist; the default one may not).
    pub fn load(path: Option<&Path>) -> Result<(Settings, RawConfig), Error> {
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
        let settings =
            Settings::from_raw(&raw).map_err(|message| Error::Config { path, message })?;
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
        for (id, setting) in &raw.rules {
            let Some(rule) = crate::lint::rules::find(id) else {
                return Err(format!(
                    "[rules]: there is no rule `{id}`; `migrate rules` lists them"
                ));
            };
            let level = match setting {
                RuleSetting::Off => None,
                RuleSetting::Info => Some(Level::Info),
                RuleSetting::Warning => Some(Level::Warning),
                RuleSetting::Error => Some(Level::Error),
            };
            s.rule_levels.insert(rule.id(), level);
        }
        Ok(s)
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
    fn unknown_rule_is_an_error() {
        let raw: RawConfig = toml::from_str("[rules]\nno-such-rule = \"off\"").unwrap();
        let err = Settings::from_raw(&raw).unwrap_err();
        assert!(err.contains("no-such-rule"), "{err}");
    }
}
