//! The `migrate` binary: parse arguments, run the command, map the outcome to an exit code.

use clap::Parser;
use migrate::cli::{self, EXIT_STOPPED, EXIT_USAGE};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `migrate plan` parses on every core: keep them awake until its threads start.
    if std::env::args_os().nth(1).is_some_and(|a| a == "plan") {
        migrate::analyze::wake_cores();
    }
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The library's errors already name their cause; anyhow adds the context chain
            // only where the binary attaches some.
            let code = match e {
                migrate::error::Error::Stopped(_) => EXIT_STOPPED,
                _ => EXIT_USAGE,
            };
            let e = anyhow::Error::from(e);
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}
