//! `migrate abort NAME`: undo an expanded, not yet contracted migration.

use super::db::exec_settings;
use super::db::{block_on, DbArgs, RunOutput};
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
    #[command(flatten)]
    pub out: RunOutput,
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
    let mut exec = exec_settings(&settings);
    exec.json_events = args.out.json();
    let mut steps = args.out.steps();
    let r = block_on(async {
        let mut runner = Runner::open_watched(&url, exec, settings, "abort").await?;
        let result = runner.abort(&args.name, &mut steps).await;
        runner.close().await;
        result
    });
    args.out
        .result("abort", &r, |_| serde_json::json!({ "aborted": args.name }));
    r?;
    if !args.out.json() {
        println!("aborted {}: the old version's schema is back", args.name);
    }
    Ok(EXIT_OK)
}
