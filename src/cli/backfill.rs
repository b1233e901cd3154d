//! `migrate backfill [NAME]`: the backfills of expanded migrations, in order; resumes one that
//! a killed run left half done.

use super::db::exec_settings;
use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// Backfill migrations up to and including this one (default: all expanded).
    pub name: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn run(args: BackfillArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        let op = crate::fleet::rollout::Op::Backfill {
            upto: args.name.clone(),
        };
        return super::fleet::run(&args.db, op);
    }
    let settings = args.db.settings()?;
    let url = args.db.url()?.to_string();
    let n = block_on(async {
        let mut runner =
            Runner::open_watched(&url, exec_settings(&settings), settings, "backfill").await?;
        let result = runner
            .backfill(args.name.as_deref(), &mut std::io::stdout())
            .await;
        runner.close().await;
        result
    })?;
    println!("backfilled {n} migration(s); deploy the new version, then run `migrate contract`");
    Ok(EXIT_OK)
}
