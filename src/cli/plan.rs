//! `migrate plan [PATH…]`: lint, plan, report.

use super::{ColorChoice, EXIT_FINDINGS, EXIT_OK};
use crate::analyze::analyze_found;
use crate::config::{AppliedBy, PgVersion, Settings};
use crate::error::Error;
use crate::files::{self, TransactionMode};
use crate::model::catalog::Catalog;
use crate::report::{self, Format, HumanOptions, Totals};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Migration files or directories (default: `migrations` from migrate.toml, else ./migrations).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Print the SQL of every step of the plan (with --format json: include the full plans).
    #[arg(long)]
    pub explain: bool,
    /// Target PostgreSQL version (e.g. 15 or 14.3); version-specific rules follow it.
    #[arg(long, value_name = "VERSION")]
    pub pg_version: Option<PgVersion>,
    /// The transaction each file runs in, unless the file opts out itself.
    #[arg(long, value_enum)]
    pub transaction: Option<TransactionArg>,
    /// Who applies the files: `other` when a runner such as Flyway, sqlx or diesel runs them as
    /// written, so that the timeouts and reruns migrate's engine handles are checked in the files.
    #[arg(long, value_enum, value_name = "RUNNER")]
    pub applied_by: Option<AppliedByArg>,
    /// Settings file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the current schema (and table sizes) from this database instead of replaying the earlier migrations.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// When to colour the human report.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AppliedByArg {
    Migrate,
    Other,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TransactionArg {
    PerFile,
    None,
}

/// Validated settings from the arguments over migrate.toml.
fn settings(args: &PlanArgs) -> Result<Settings, Error> {
    let (mut s, _) = Settings::load(args.config.as_deref(), crate::lint::rules::exists)?;
    if let Some(v) = args.pg_version {
        s.pg_version = v;
    }
    if let Some(a) = args.applied_by {
        s.applied_by = match a {
            AppliedByArg::Migrate => AppliedBy::Migrate,
            AppliedByArg::Other => AppliedBy::Other,
        };
    }
    if let Some(t) = args.transaction {
        s.transaction = match t {
            TransactionArg::PerFile => TransactionMode::PerFile,
            TransactionArg::None => TransactionMode::None,
        };
    }
    Ok(s)
}

fn live_catalog(url: &str) -> Result<Catalog, Error> {
    super::db::block_on(async {
        let mut conn = crate::engine::connect(url).await?;
        crate::engine::introspect::read_catalog(&mut conn).await
    })
}

pub fn run(args: PlanArgs) -> Result<u8, Error> {
    let settings = settings(&args)?;
    let paths = if args.paths.is_empty() {
        let dir = settings.migrations_dir.clone();
        if !dir.exists() {
            return Err(Error::Usage(format!(
                "no migrations directory `{}` here: pass files or directories (`migrate plan DIR`), or set `migrations` in migrate.toml",
                dir.display()
            )));
        }
        vec![dir]
    } else {
        args.paths.clone()
    };
    let reports = match &args.database_url {
        // A path that is not there is the error, before any connection is tried.
        Some(url) => {
            let targets = files::resolve(&paths)?;
            let base = live_catalog(url)?;
            analyze_found(|| Ok(targets), &settings, &base)?
        }
        // The files are listed while the parsing threads start.
        None => analyze_found(|| files::resolve(&paths), &settings, &Catalog::default())?,
    };
    let human = HumanOptions {
        color: args.color.enabled(),
        explain: args.explain,
    };
    // Buffered: stdout alone is line-buffered, a write per line.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    report::write(args.format, &reports, human, &mut out).map_err(io)?;
    std::io::Write::flush(&mut out).map_err(io)?;
    let code = if Totals::of(&reports).errors > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    };
    // The process ends here: freeing every report, statement and operation one by one would
    // cost more than the last file's lint (the operating system takes the memory back whole).
    std::mem::forget(reports);
    Ok(code)
}
