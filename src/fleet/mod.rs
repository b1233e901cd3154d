//! Many databases of one schema: shards, a database per tenant, a main and a CI database. The
//! fleet file (or `[fleet]` in migrate.toml) names the targets — URLs from environment
//! variables, never written in the file, or the databases a query finds on a server — and how
//! a rollout over them goes: a canary first, alone; then the rest, a few at once.
//!
//! ```toml
//! parallel = 4          # targets at once after the canary (default 4)
//! backfills = 2         # targets backfilling at once (default: parallel)
//! canary = ["main"]     # run first, alone (default: the first target)
//! canary_wait = "30s"   # watch the canary this long before widening (default 0)
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
    pub canary_wait: Duration,
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
        let canary_wait = match &raw.canary_wait {
            Some(w) => {
                crate::config::parse_duration(w).map_err(|e| bad(format!("canary_wait: {e}")))?
            }
            None => Duration::ZERO,
        };
        Ok(Fleet {
            targets,
            canary,
            canary_wait,
            parallel,
            backfills,
            source: path.to_path_buf(),
        })
    }
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
    use super::with_database;

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
