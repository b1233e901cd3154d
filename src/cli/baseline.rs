//! `migrate baseline [NAME]`: record existing migration files as already applied, without
//! running them (for a database whose schema predates migrate).

use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::config::Settings;
use crate::engine::state::{checksum, Metadata};
use crate::engine::{connect, lock};
use crate::error::Error;
use crate::files;

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Record migrations up to and including this one (default: all of them).
    pub name: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Records the migrations up to `upto` in the database at `url`; returns (newly recorded,
/// already recorded).
pub async fn baseline(
    settings: &Settings,
    url: &str,
    upto: Option<&str>,
    out: &mut dyn std::io::Write,
) -> Result<(usize, usize), Error> {
    let mut entries = files::list_dir(&settings.migrations_dir)?;
    if let Some(last) = upto {
        let Some(i) = entries.iter().position(|e| e.name == last) else {
            return Err(Error::Usage(format!(
                "no migration `{last}` in {}; `migrate status` lists them",
                settings.migrations_dir.display()
            )));
        };
        entries.truncate(i + 1);
    }
    // Read every file first: an unreadable one stops the run before anything is recorded.
    let sums = entries
        .iter()
        .map(|e| {
            std::fs::read(&e.path)
                .map(|b| (e.name.clone(), checksum(&b)))
                .map_err(|err| Error::io(&e.path, err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut conn = connect(url).await?;
    lock::acquire(&mut conn, &settings.metadata_schema).await?;
    let meta = Metadata::new(&settings.metadata_schema);
    meta.ensure(&mut conn).await?;
    let mut added = 0;
    for (name, sum) in &sums {
        match meta.baseline(&mut conn, name, sum).await {
            Ok(true) => added += 1,
            Ok(false) => {}
            Err(e) => {
                lock::release(&mut conn, &settings.metadata_schema).await;
                return Err(e);
            }
        }
    }
    // Released synchronously, so the next run can take the lock at once.
    lock::release(&mut conn, &settings.metadata_schema).await;
    let _ = sqlx::Connection::close(conn).await;
    if settings.views {
        // The schema this version reads through, as after an expand.
        let mut runner = crate::engine::run::Runner::open(
            url,
            super::db::exec_settings(settings),
            settings.clone(),
        )
        .await?;
        let made = runner.make_baseline_version(out).await;
        runner.close().await;
        made?;
    }
    Ok((added, sums.len() - added))
}

pub fn run(args: BaselineArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        let op = crate::fleet::rollout::Op::Baseline {
            upto: args.name.clone(),
        };
        return super::fleet::run(&args.db, op);
    }
    let settings = args.db.settings()?;
    let url = args.db.url()?;
    let upto = args.name.as_deref();
    let (added, existing) = block_on(baseline(&settings, url, upto, &mut std::io::stdout()))?;
    println!("recorded {added} migration(s) as applied; {existing} already recorded");
    Ok(EXIT_OK)
}
