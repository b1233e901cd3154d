//! `migrate abort NAME`: undo an expanded, not yet contracted migration.

use super::db::exec_settings;
use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::error::Error;
use crate::fleet::rollout::Op;

#[derive(Debug, clap::Args)]
pub struct AbortArgs {
    /// The migration to undo.
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn run(args: AbortArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        let op = Op::Abort {
            name: args.name.clone(),
        };
        return super::fleet::run(&args.db, op);
    }
    let settings = args.db.settings()?;
    let url = args.db.url()?.to_string();
    block_on(async {
        let mut runner =
            Runner::open_watched(&url, exec_settings(&settings), settings, "abort").await?;
        let result = runner.abort(&args.name, &mut std::io::stdout()).await;
        runner.close().await;
        result
    })?;
    println!("aborted {}: the old version's schema is back", args.name);
    Ok(EXIT_OK)
}
