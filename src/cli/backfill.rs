//! `migrate backfill [NAME]`: the backfills of expanded migrations, in order; resumes one that
//! a killed run left half done.

use super::db::exec_settings;
use super::db::{block_on, DbArgs, RunOutput};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// Backfill migrations up to and including this one (default: all expanded).
    pub name: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub out: RunOutput,
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
    let mut exec = exec_settings(&settings);
    exec.json_events = args.out.json();
    let mut steps = args.out.steps();
    let n = block_on(async {
        let mut runner = Runner::open_watched(&url, exec, settings, "backfill").await?;
        let result = runner.backfill(args.name.as_deref(), &mut steps).await;
        runner.close().await;
        result
    });
    args.out
        .result("backfill", &n, |n| serde_json::json!({ "migrations": n }));
    let n = n?;
    if !args.out.json() {
        println!(
            "backfilled {n} migration(s); deploy the new version, then run `migrate contract`"
        );
    }
    Ok(EXIT_OK)
}
