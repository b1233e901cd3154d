//! `migrate contract [NAME]`: the contract phase of every backfilled migration, in order.

use super::db::exec_settings;
use super::db::{block_on, DbArgs};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::error::Error;
use crate::fleet::rollout::Op;

#[derive(Debug, clap::Args)]
pub struct ContractArgs {
    /// Contract migrations up to and including this one (default: all that are ready).
    pub name: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn run(args: ContractArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        let op = Op::Contract {
            upto: args.name.clone(),
        };
        return super::fleet::run(&args.db, op);
    }
    let settings = args.db.settings()?;
    let url = args.db.url()?.to_string();
    let n = block_on(async {
        let mut runner =
            Runner::open_watched(&url, exec_settings(&settings), settings, "contract").await?;
        let result = runner
            .contract(args.name.as_deref(), &mut std::io::stdout())
            .await;
        runner.close().await;
        result
    })?;
    println!("contracted {n} migration(s)");
    Ok(EXIT_OK)
}
