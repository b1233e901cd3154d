//! Talking to PostgreSQL: connecting (passwords never printed), reading the live catalog, the
//! metadata schema and the runner lock. Next: running plan steps with short lock timeouts,
//! retries and checkpoints.

pub mod backfill;
pub mod exec;
pub mod guard;
pub mod introspect;
pub mod lock;
pub mod partitions;
pub mod run;
pub mod state;
pub mod status;
pub mod versions;

use crate::error::Error;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

/// A connection string with its password replaced by `***`, safe to print.
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db — the password sits between the first ':' after the
    // scheme and the last '@' before the host.
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_keyword(url);
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &creds[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// `password=secret` in a key/value connection string.
fn redact_keyword(s: &str) -> String {
    s.split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes every occurrence of the URL's password from a message.
pub fn scrub(message: &str, url: &str) -> String {
    match PgConnectOptions::from_str(url)
        .ok()
        .and_then(|o| password_of(url, &o))
    {
        Some(pw) if !pw.is_empty() => message.replace(&pw, "***"),
        _ => message.to_string(),
    }
}

fn password_of(url: &str, _opts: &PgConnectOptions) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let at = rest.rfind('@')?;
    let creds = &rest[..at];
    creds.find(':').map(|c| creds[c + 1..].to_string())
}

/// Connects, with an error that names the server but never the password.
pub async fn connect(url: &str) -> Result<PgConnection, Error> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| {
            Error::Database(format!(
                "{}: not a valid connection string: {}",
                redact_url(url),
                scrub(&e.to_string(), url)
            ))
        })?
        .application_name("migrate")
        .disable_statement_logging();
    PgConnection::connect_with(&opts).await.map_err(|e| {
        Error::Database(format!(
            "cannot connect to {}: {}",
            redact_url(url),
            scrub(&e.to_string(), url)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact_url("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            scrub("auth failed for s3cret", "postgres://app:s3cret@db/x"),
            "auth failed for ***"
        );
    }
}
