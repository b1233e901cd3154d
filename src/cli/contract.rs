//! `migrate contract [NAME]`: the contract phase of every backfilled migration, in order.

use super::db::exec_settings;
use super::db::{block_on, DbArgs, RunOutput};
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
    #[command(flatten)]
    pub out: RunOutput,
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
    let mut exec = exec_settings(&settings);
    exec.json_events = args.out.json();
    let mut steps = args.out.steps();
    let n = block_on(async {
        let mut runner = Runner::open_watched(&url, exec, settings, "contract").await?;
        let result = runner.contract(args.name.as_deref(), &mut steps).await;
        runner.close().await;
        result
    });
    args.out
        .result("contract", &n, |n| serde_json::json!({ "migrations": n }));
    let n = n?;
    if !args.out.json() {
        println!("contracted {n} migration(s)");
    }
    Ok(EXIT_OK)
}
