//! `migrate latest`: the `search_path` of the newest version, on one line, for the app to
//! connect with — as the value, a libpq URL, a role setting or a PgBouncer database entry
//! (`--format`). A password in the database URL is never printed.

use super::db::{block_on, exec_settings, DbArgs};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::engine::state::MigrationPhase;
use crate::engine::versions;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct LatestArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// What to print: the value; a connection URL that sets it (`options=-c search_path=…`,
    /// without the password); `ALTER ROLE … SET search_path` for a role per version (behind a
    /// pooler that drops startup options); a PgBouncer `[databases]` line for a pooler entry
    /// per version.
    #[arg(long, value_enum, default_value = "value")]
    pub format: PathFormat,
    /// The app role of this version, for `--format role`.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// The PgBouncer database name the version's app connects to, for `--format pgbouncer`
    /// (default: the version schema's name).
    #[arg(long, value_name = "NAME")]
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PathFormat {
    Value,
    Url,
    Role,
    Pgbouncer,
}

/// `s` percent-encoded for a URL's query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How a version's app gets `path`, in the form `format` asks for.
pub fn render(
    format: PathFormat,
    path: &str,
    schema: &str,
    url: &str,
    role: Option<&str>,
    alias: Option<&str>,
) -> Result<String, Error> {
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;
    let target = || {
        PgConnectOptions::from_str(url).map_err(|e| {
            Error::Usage(format!(
                "the database URL cannot be read for --format {format:?}: {}",
                crate::engine::scrub(&e.to_string(), url)
            ))
        })
    };
    Ok(match format {
        PathFormat::Value => path.to_string(),
        PathFormat::Url => {
            let o = target()?;
            format!(
                "postgres://{}@{}:{}/{}?options={}",
                encode(o.get_username()),
                o.get_host(),
                o.get_port(),
                encode(o.get_database().unwrap_or(o.get_username())),
                encode(&format!("-c search_path={path}"))
            )
        }
        PathFormat::Role => {
            let Some(role) = role else {
                return Err(Error::Usage(
                    "--format role needs --role ROLE: the role this version's app connects as"
                        .into(),
                ));
            };
            format!(
                "ALTER ROLE {} SET search_path = {path};",
                crate::model::quote_ident(role)
            )
        }
        PathFormat::Pgbouncer => {
            let o = target()?;
            format!(
                "{} = host={} port={} dbname={} connect_query='SET search_path = {}'",
                alias.unwrap_or(schema),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or(o.get_username()),
                path.replace('\'', "''")
            )
        }
    })
}

pub fn run(args: LatestArgs) -> Result<u8, Error> {
    let settings = args.db.settings()?;
    if !settings.views {
        return Err(Error::Usage(
            "views = false in migrate.toml: there are no version schemas, every version uses the tables themselves".into(),
        ));
    }
    if args.db.fleet.is_some() {
        return super::fleet::run(&args.db, crate::fleet::rollout::Op::Latest);
    }
    let url = args.db.url()?.to_string();
    let latest = block_on(async {
        let mut runner = Runner::open(&url, exec_settings(&settings), settings.clone()).await?;
        let latest = runner.latest().await;
        runner.close().await;
        latest
    })?;
    let Some((schema, phase)) = latest else {
        return Err(Error::Refused(
            "no version schema yet: run `migrate expand` (or `migrate baseline` for a schema that predates migrate)".into(),
        ));
    };
    if matches!(
        phase,
        MigrationPhase::Expanding | MigrationPhase::Expanded | MigrationPhase::Backfilling
    ) {
        eprintln!(
            "warning: the newest version's migration is {phase}: its backfill is not done, run `migrate backfill` before the new version reads through it"
        );
    }
    let path = versions::search_path(&schema, &settings.managed_schemas);
    println!(
        "{}",
        render(
            args.format,
            &path,
            &schema,
            &url,
            args.role.as_deref(),
            args.alias.as_deref()
        )?
    );
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_carries_the_path_and_never_the_password() {
        let url = "postgres://app:s3cret@db.internal:6543/shop";
        let path = "migrate_0002_x,public";
        let r = |f, role| render(f, path, "migrate_0002_x", url, role, None).unwrap();
        assert_eq!(r(PathFormat::Value, None), path);
        assert_eq!(
            r(PathFormat::Url, None),
            "postgres://app@db.internal:6543/shop?options=-c%20search_path%3Dmigrate_0002_x,public"
        );
        assert_eq!(
            r(PathFormat::Role, Some("app v2")),
            "ALTER ROLE \"app v2\" SET search_path = migrate_0002_x,public;"
        );
        assert_eq!(
            r(PathFormat::Pgbouncer, None),
            "migrate_0002_x = host=db.internal port=6543 dbname=shop connect_query='SET search_path = migrate_0002_x,public'"
        );
        for f in [PathFormat::Url, PathFormat::Pgbouncer] {
            assert!(!r(f, None).contains("s3cret"));
        }
        assert!(matches!(
            render(PathFormat::Role, path, "s", url, None, None),
            Err(Error::Usage(_))
        ));
    }
}
