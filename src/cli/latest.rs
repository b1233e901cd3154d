//! `migrate latest`: the `search_path` of the newest version, on one line, for the app to
//! connect with (`-c search_path=…` in its connection options, or a role setting).

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
    println!(
        "{}",
        versions::search_path(&schema, &settings.managed_schemas)
    );
    Ok(EXIT_OK)
}
