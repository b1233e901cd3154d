//! Command-line types (one file per command) and dispatch. `main.rs` only maps the outcome to
//! an exit code.

pub mod abort;
pub mod backfill;
pub mod baseline;
pub mod contract;
pub mod db;
pub mod demo;
pub mod expand;
pub mod fleet;
pub mod latest;
pub mod plan;
pub mod rehearse;
pub mod rules;
pub mod status;

use clap::{Parser, Subcommand};

/// Exit codes: 0 ok, 1 findings at error level, 2 usage, I/O or connection error, 3 stopped
/// at a checkpoint (by the guard): run the command again to resume.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_STOPPED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "migrate",
    version,
    about = "Zero-downtime PostgreSQL schema changes by expand and contract",
    long_about = "Zero-downtime PostgreSQL schema changes by expand and contract.\n\nExit codes: 0 ok, 1 findings at error level, 2 usage, I/O or connection error, 3 stopped by the guard at a checkpoint (run it again to resume)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prove it: expand → backfill → contract on a throwaway database under live traffic.
    Demo(demo::DemoArgs),
    /// Lint migration files and print the phased plan (no database needed).
    Plan(plan::PlanArgs),
    /// List the rules, or print one rule's documentation.
    Rules(rules::RulesArgs),
    /// Apply the expand phase of pending migrations, then run their backfills.
    Expand(expand::ExpandArgs),
    /// Run (or resume) the backfills of expanded migrations.
    Backfill(backfill::BackfillArgs),
    /// Apply the contract phase of backfilled migrations (after the old version is gone).
    Contract(contract::ContractArgs),
    /// Undo an expanded, not yet contracted migration.
    Abort(abort::AbortArgs),
    /// Show each migration's phase, backfill progress and timestamps.
    Status(status::StatusArgs),
    /// Record existing migration files as applied, without running them.
    Baseline(baseline::BaselineArgs),
    /// Print the search_path of the newest version's schema, for the app to connect with.
    Latest(latest::LatestArgs),
    /// Try the pending migrations on a scratch copy: expand, abort, expand, contract; check
    /// that the abort restores every table and that the end state is what the files mean.
    Rehearse(rehearse::RehearseArgs),
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Colour on a terminal only, and never when NO_COLOR is set.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
            }
        }
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8, crate::error::Error> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Expand(args) => expand::run(args),
        Command::Backfill(args) => backfill::run(args),
        Command::Contract(args) => contract::run(args),
        Command::Abort(args) => abort::run(args),
        Command::Status(args) => status::run(args),
        Command::Baseline(args) => baseline::run(args),
        Command::Latest(args) => latest::run(args),
        Command::Rehearse(args) => rehearse::run(args),
    }
}

/// A table with a header, in the condensed style of the run reports (demo, rehearse).
pub(crate) fn condensed_table<const N: usize>(header: [&str; N]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}
