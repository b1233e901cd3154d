//! `migrate expand [NAME]`: the expand phase of every pending migration, in order, then their
//! backfills; resumes a killed run.

use super::db::exec_settings;
use super::db::{block_on, DbArgs, RunOutput};
use super::EXIT_OK;
use crate::engine::run::Runner;
use crate::error::Error;
use crate::fleet::rollout::Op;

#[derive(Debug, clap::Args)]
pub struct ExpandArgs {
    /// Expand migrations up to and including this one (default: all pending).
    pub name: Option<String>,
    /// Stop after the expand steps; run the backfills later with `migrate backfill`.
    #[arg(long)]
    pub skip_backfill: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub out: RunOutput,
}

pub fn run(args: ExpandArgs) -> Result<u8, Error> {
    if args.db.fleet.is_some() {
        let op = Op::Expand {
            upto: args.name.clone(),
            backfill: !args.skip_backfill,
        };
        return super::fleet::run(&args.db, op);
    }
    let settings = args.db.settings()?;
    let url = args.db.url()?.to_string();
    let mut exec = exec_settings(&settings);
    exec.json_events = args.out.json();
    let mut steps = args.out.steps();
    let n = block_on(async {
        let mut runner = Runner::open_watched(&url, exec, settings.clone(), "expand").await?;
        let result = runner
            .expand(args.name.as_deref(), !args.skip_backfill, &mut steps)
            .await;
        let latest = match &result {
            Ok(_) if runner.settings().views => runner.latest().await,
            _ => Ok(None),
        };
        runner.close().await;
        result.and_then(|n| latest.map(|l| (n, l)))
    });
    let managed = settings.managed_schemas.clone();
    args.out.result("expand", &n, |(n, latest)| {
        serde_json::json!({
            "migrations": n,
            "search_path": latest.as_ref().map(|(s, _)| crate::engine::versions::search_path(s, &managed)),
        })
    });
    let (n, latest) = n?;
    if args.out.json() {
        return Ok(EXIT_OK);
    }
    if args.skip_backfill {
        println!("expanded {n} migration(s); run `migrate backfill` next");
    } else {
        println!("expanded {n} migration(s); deploy the new version, then run `migrate contract`");
    }
    if let Some((schema, _)) = latest {
        let path = crate::engine::versions::search_path(&schema, &settings.managed_schemas);
        println!(
            "the new version connects with search_path = {path}   (`migrate latest` prints it)"
        );
    }
    Ok(EXIT_OK)
}
