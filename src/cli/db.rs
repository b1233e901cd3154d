//! Options shared by the commands that connect, and the runtime they run on.

use crate::config::Settings;
use crate::error::Error;
use std::path::PathBuf;

/// Connection and project options, flattened into each command that connects.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// PostgreSQL connection string (the password is never printed).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Settings file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Migrations directory (default: `migrations` from migrate.toml, else ./migrations).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run over every database of a fleet file (or of `[fleet]` in migrate.toml, with no
    /// FILE) instead of one: canary first, then a few at once; the URLs come from the
    /// environment variables the file names.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub fleet: Option<Option<PathBuf>>,
}

impl DbArgs {
    pub fn settings(&self) -> Result<Settings, Error> {
        let (mut s, _) = Settings::load(self.config.as_deref(), crate::lint::rules::exists)?;
        if let Some(d) = &self.dir {
            s.migrations_dir = d.clone();
        }
        Ok(s)
    }

    /// The fleet, when `--fleet` was given.
    pub async fn fleet(&self) -> Result<Option<crate::fleet::Fleet>, Error> {
        match &self.fleet {
            None => Ok(None),
            Some(Some(file)) => crate::fleet::Fleet::from_file(file).await.map(Some),
            Some(None) => {
                let (_, raw) = Settings::load(self.config.as_deref(), crate::lint::rules::exists)?;
                let path = self
                    .config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("migrate.toml"));
                let Some(value) = raw.fleet else {
                    return Err(Error::Usage(format!(
                        "--fleet without a file reads [fleet] from {}, which has none: pass --fleet FILE, or add a [fleet] table",
                        path.display()
                    )));
                };
                crate::fleet::Fleet::from_settings(&value, &path)
                    .await
                    .map(Some)
            }
        }
    }

    pub fn url(&self) -> Result<&str, Error> {
        self.database_url.as_deref().ok_or_else(|| {
            Error::Usage("no database: pass --database-url or set DATABASE_URL".into())
        })
    }
}

/// How a command that changes the database reports: for people, or for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFormat {
    Human,
    /// stdout carries one JSON object per line — each of the guard's throttle, pause, resume
    /// and stop events as it happens, then the command's result — and the step lines go to
    /// stderr.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunOutput {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: RunFormat,
}

impl RunOutput {
    pub fn json(&self) -> bool {
        self.format == RunFormat::Json
    }

    /// Where the step lines go: stdout for people, stderr when stdout is for a tool.
    pub fn steps(&self) -> Box<dyn std::io::Write> {
        match self.format {
            RunFormat::Human => Box::new(std::io::stdout()),
            RunFormat::Json => Box::new(std::io::stderr()),
        }
    }

    /// With `--format json`, the closing line: what the command did, or why it did not.
    pub fn result<T>(
        &self,
        command: &str,
        r: &Result<T, Error>,
        done: impl FnOnce(&T) -> serde_json::Value,
    ) {
        if !self.json() {
            return;
        }
        let line = match r {
            Ok(v) => {
                serde_json::json!({"event": "result", "command": command, "ok": true, "done": done(v)})
            }
            Err(e) => serde_json::json!({
                "event": "result",
                "command": command,
                "ok": false,
                "stopped": matches!(e, Error::Stopped(_)),
                "error": e.to_string(),
            }),
        };
        println!("{line}");
    }
}

/// How steps run, from the settings.
pub fn exec_settings(settings: &Settings) -> crate::engine::exec::ExecSettings {
    crate::engine::exec::ExecSettings {
        lock_timeout: settings.lock_timeout,
        lock_timeout_max: settings.lock_timeout_max,
        retries: settings.lock_retries,
        backoff: settings.lock_retry_pause,
        max_backoff: settings.lock_retry_max_pause,
        backfill: settings.backfill.clone(),
        ..Default::default()
    }
}

/// Runs a future on a single-threaded runtime: the commands do one thing at a time.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}
