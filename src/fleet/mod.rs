//! Many databases of one schema: shards, a database per tenant, a main and a CI database. The
//! fleet file (or `[fleet]` in migrate.toml) names the targets — URLs from environment
//! variables, never written in the file, or the databases a query finds on a server — and how
//! a rollout over them goes: in stages, the canaries first and alone, then wider stages a
//! few targets at once, with a watch window after each in which the guard watches the
//! targets already done; a bad signal stops the rollout before it widens.
//!
//! ```toml
//! parallel = 4          # targets at once after the canary (default 4)
//! backfills = 2         # targets backfilling at once (default: parallel)
//! canary = ["main"]     # run first, alone (default: the first target)
//! stages = [1, "5%", "25%", "100%"]   # targets done by the end of each stage (default:
//!                                     # the canaries, then the rest)
//! watch = "60s"         # the guard watches the targets done this long after each stage
//!                       # but the last (default 0; `canary_wait` is the old name)
//!
//! [[target]]
//! name = "main"
//! url_env = "MAIN_DATABASE_URL"
//!
//! [[discover]]          # every database on a server whose name is LIKE the pattern
//! url_env = "TENANTS_SERVER_URL"
//! like = "tenant_%"
//! ```

pub mod rollout;

use crate::error::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    parallel: Option<usize>,
    backfills: Option<usize>,
    canary: Option<Vec<String>>,
    stages: Option<Vec<toml::Value>>,
    watch: Option<String>,
    /// The old name of `watch`.
    canary_wait: Option<String>,
    #[serde(default)]
    target: Vec<RawTarget>,
    #[serde(default)]
    discover: Vec<RawDiscover>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    url_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscover {
    url_env: String,
    like: String,
}

/// One database of the fleet: a name for output, and its URL (never printed).
#[derive(Clone)]
pub struct Target {
    pub name: String,
    url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.name,
            crate::engine::redact_url(&self.url)
        )
    }
}

impl Target {
    pub fn new(name: &str, url: &str) -> Target {
        Target {
            name: name.to_string(),
            url: url.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The targets of a rollout and its pacing.
#[derive(Debug)]
pub struct Fleet {
    pub targets: Vec<Target>,
    /// Indices into `targets` of the canaries, in order.
    pub canary: Vec<usize>,
    /// How many targets are done by the end of each stage (rising, the last all of them); the
    /// first stage is the canaries', run one after the other.
    pub stages: Vec<usize>,
    /// How long the guard watches the targets done after each stage but the last.
    pub watch: Duration,
    pub parallel: usize,
    pub backfills: usize,
    /// Where the fleet was read from, for messages.
    pub source: PathBuf,
}

impl Fleet {
    /// Reads a fleet file: the whole file is the fleet.
    pub async fn from_file(path: &Path) -> Result<Fleet, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: RawFleet = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Fleet::resolve(raw, path).await
    }

    /// The `[fleet]` table of migrate.toml.
    pub async fn from_settings(value: &toml::Value, path: &Path) -> Result<Fleet, Error> {
        let raw: RawFleet = value.clone().try_into().map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("[fleet]: {e}"),
        })?;
        Fleet::resolve(raw, path).await
    }

    async fn resolve(raw: RawFleet, path: &Path) -> Result<Fleet, Error> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let env = |var: &str, whose: &str| {
            std::env::var(var).map_err(|_| {
                bad(format!(
                    "{whose}: the environment variable {var} is not set (it holds the connection URL, which the fleet file never does)"
                ))
            })
        };
        let mut targets: Vec<Target> = Vec::new();
        for t in &raw.target {
            if t.name.trim().is_empty() {
                return Err(bad("a [[target]] has an empty name".into()));
            }
            let url = env(&t.url_env, &format!("target `{}`", t.name))?;
            targets.push(Target::new(&t.name, &url));
        }
        for d in &raw.discover {
            let server = env(&d.url_env, "[[discover]]")?;
            let mut conn = crate::engine::connect(&server).await?;
            let mut names: Vec<String> = sqlx::query_scalar(
                "SELECT datname::text FROM pg_database
                 WHERE datname LIKE $1 AND datallowconn AND NOT datistemplate",
            )
            .bind(&d.like)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| {
                Error::Database(format!(
                    "listing the databases LIKE '{}' on {}: {e}",
                    d.like,
                    crate::engine::redact_url(&server)
                ))
            })?;
            let _ = sqlx::Connection::close(conn).await;
            names.sort_by(|a, b| crate::files::natural_cmp(a, b));
            if names.is_empty() {
                return Err(bad(format!(
                    "[[discover]] like = '{}' matches no database on {}",
                    d.like,
                    crate::engine::redact_url(&server)
                )));
            }
            for n in names {
                let url = with_database(&server, &n).map_err(bad)?;
                targets.push(Target::new(&n, &url));
            }
        }
        if targets.is_empty() {
            return Err(bad(
                "the fleet has no targets: add [[target]] entries (name, url_env) or a [[discover]] (url_env, like)".into(),
            ));
        }
        for (i, t) in targets.iter().enumerate() {
            if targets[..i].iter().any(|o| o.name == t.name) {
                return Err(bad(format!(
                    "two targets are named `{}`: names must be unique",
                    t.name
                )));
            }
        }
        let canary = match &raw.canary {
            None => vec![0],
            Some(names) => names
                .iter()
                .map(|n| {
                    targets.iter().position(|t| &t.name == n).ok_or_else(|| {
                        bad(format!("canary `{n}` is not one of the fleet's targets"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let parallel = raw.parallel.unwrap_or(4);
        if parallel == 0 {
            return Err(bad("parallel must be at least 1".into()));
        }
        let backfills = raw.backfills.unwrap_or(parallel);
        if backfills == 0 {
            return Err(bad("backfills must be at least 1".into()));
        }
        let watch = match (&raw.watch, &raw.canary_wait) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "watch and canary_wait are the same setting (canary_wait is its old name): keep watch".into(),
                ))
            }
            (Some(w), None) | (None, Some(w)) => {
                crate::config::parse_duration(w).map_err(|e| bad(format!("watch: {e}")))?
            }
            (None, None) => Duration::ZERO,
        };
        let stages = match &raw.stages {
            None => vec![canary.len().min(targets.len()), targets.len()],
            Some(v) => stage_bounds(v, targets.len()).map_err(|e| bad(format!("stages: {e}")))?,
        };
        let mut stages = stages;
        stages.dedup();
        stages.retain(|n| *n > 0);
        Ok(Fleet {
            targets,
            canary,
            stages,
            watch,
            parallel,
            backfills,
            source: path.to_path_buf(),
        })
    }
}

/// How many of `n` targets are done by the end of each stage: a count (`1`) or a share
/// (`"25%"`, rounded up); rising, and ending with all of them (`"100%"` is added when the
/// last stage leaves some out).
fn stage_bounds(stages: &[toml::Value], n: usize) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    for v in stages {
        let upto = match v {
            toml::Value::Integer(i) if *i >= 1 => (*i as usize).min(n),
            toml::Value::String(s) => {
                let p: f64 = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse().ok())
                    .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        format!("`{s}` is not a share of the targets (write \"25%\")")
                    })?;
                ((n as f64 * p / 100.0).ceil() as usize).clamp(1, n)
            }
            other => {
                return Err(format!(
                    "`{other:?}` is neither a count of targets nor a share"
                ))
            }
        };
        if out.last().is_some_and(|last| upto < *last) {
            return Err(format!(
                "each stage must reach at least as many targets as the one before ({upto} after {})",
                out.last().copied().unwrap_or_default()
            ));
        }
        out.push(upto);
    }
    if out.last() != Some(&n) {
        out.push(n);
    }
    Ok(out)
}

/// The server's URL with another database in its path (query parameters kept).
pub fn with_database(url: &str, db: &str) -> Result<String, String> {
    let Some(scheme_end) = url.find("://") else {
        return Err(
            "[[discover]] needs a URL (postgres://user@host:port/db), not a key=value string"
                .into(),
        );
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (head, tail) = url.split_at(scheme_end + 3 + authority_end);
    let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
    let mut encoded = String::new();
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{head}/{encoded}{query}"))
}

#[cfg(test)]
mod tests {
    use super::{stage_bounds, with_database};

    #[test]
    fn stages_are_counts_or_shares_rising_to_all() {
        let v = |t: &str| -> Vec<toml::Value> {
            let doc: toml::Table = toml::from_str(&format!("s = {t}")).unwrap();
            doc["s"].as_array().unwrap().clone()
        };
        assert_eq!(
            stage_bounds(&v(r#"[1, "5%", "25%", "100%"]"#), 40).unwrap(),
            [1, 2, 10, 40]
        );
        // The rest is added; a share is at least one target.
        assert_eq!(stage_bounds(&v(r#"[1, "10%"]"#), 3).unwrap(), [1, 1, 3]);
        assert!(stage_bounds(&v(r#"[5, 2]"#), 10)
            .unwrap_err()
            .contains("at least as many"));
        assert!(stage_bounds(&v(r#"["half"]"#), 10)
            .unwrap_err()
            .contains("share"));
    }

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "tenant_1").unwrap(),
            "postgres://u:p@h:5432/tenant_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "a b").unwrap(),
            "postgres://h/a%20b"
        );
        assert_eq!(
            with_database("postgresql://h:1?x=1", "d").unwrap(),
            "postgresql://h:1/d?x=1"
        );
        assert!(with_database("host=h dbname=x", "d").is_err());
    }
}
