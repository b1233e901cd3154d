//! A throwaway database for the demo: a new database on the server of `DATABASE_URL`, or a
//! temporary cluster made with `initdb` (run as an unprivileged user when we are root), removed
//! afterwards either way.

use crate::engine::redact_url;
use crate::error::Error;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::Command;

pub enum Throwaway {
    /// A database created on an existing server; dropped at the end.
    Database { admin_url: String, name: String },
    /// A cluster of our own; stopped and deleted at the end.
    Cluster { bin: PathBuf, dir: PathBuf },
}

pub struct Server {
    pub url: String,
    pub what: String,
    throwaway: Throwaway,
    /// More databases made on the same server (the fleet demo's), dropped at the end.
    extras: Vec<String>,
}

/// The directory of the newest installed PostgreSQL server binaries.
fn server_bin() -> Result<PathBuf, Error> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        Error::Usage(
            "no PostgreSQL server binaries found (initdb): install PostgreSQL, or point DATABASE_URL at a server the demo may create a database on".into(),
        )
    })
}

/// Runs a server program, as `user` when given (we are root).
fn run_as(user: Option<&str>, program: &Path, args: &[&str]) -> Result<(), Error> {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| Error::Usage(format!("cannot run {}: {e}", program.display())))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// An unprivileged account to own the cluster when we are root (PostgreSQL refuses root).
fn server_user() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { geteuid() } == 0;
    if !root {
        return None;
    }
    ["postgres", "nobody"].into_iter().find(|u| {
        Command::new("id")
            .arg(u)
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

extern "C" {
    fn geteuid() -> u32;
}

fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Usage(format!("no free port for the demo's server: {e}")))
}

impl Server {
    /// A new database on the server of `url`, or a temporary cluster when there is none.
    pub async fn start(url: Option<&str>) -> Result<Server, Error> {
        match url {
            Some(url) => Self::database(url).await,
            None => Self::cluster().await,
        }
    }

    async fn database(admin_url: &str) -> Result<Server, Error> {
        let name = format!("migrate_demo_{}", std::process::id());
        let mut c = PgConnection::connect(admin_url).await.map_err(|e| {
            Error::Database(format!(
                "cannot connect to {}: {}",
                redact_url(admin_url),
                crate::engine::scrub(&e.to_string(), admin_url)
            ))
        })?;
        c.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
            .await
            .and(
                c.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await,
            )
            .map_err(|e| {
                Error::Database(format!(
                    "cannot create the demo database {name} on {}: {e}; the demo needs CREATEDB there",
                    redact_url(admin_url)
                ))
            })?;
        let _ = c.close().await;
        let url = crate::fleet::with_database(admin_url, &name).map_err(Error::Usage)?;
        Ok(Server {
            what: format!("database {name} on {}", redact_url(admin_url)),
            url,
            throwaway: Throwaway::Database {
                admin_url: admin_url.to_string(),
                name,
            },
            extras: Vec::new(),
        })
    }

    async fn cluster() -> Result<Server, Error> {
        let bin = server_bin()?;
        let user = server_user();
        let dir = std::env::temp_dir().join(format!("migrate-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if let Some(u) = user {
            run_as(
                None,
                Path::new("chown"),
                &[u, dir.to_str().unwrap_or_default()],
            )?;
        }
        let data = dir.join("data");
        let port = free_port()?;
        let data_s = data.to_string_lossy().into_owned();
        let server = Server {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            what: format!(
                "a temporary PostgreSQL cluster in {} (port {port})",
                dir.display()
            ),
            throwaway: Throwaway::Cluster {
                bin: bin.clone(),
                dir: dir.clone(),
            },
            extras: Vec::new(),
        };
        run_as(
            user,
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c shared_buffers=256MB -c max_wal_size=2GB",
            dir.display()
        );
        let log = dir.join("server.log").to_string_lossy().into_owned();
        run_as(
            user,
            &bin.join("pg_ctl"),
            &[
                "-D", &data_s, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )?;
        Ok(server)
    }

    /// One more throwaway database on the same server; its URL.
    pub async fn extra(&mut self, name: &str) -> Result<String, Error> {
        let mut c = PgConnection::connect(&self.url)
            .await
            .map_err(|e| Error::Database(format!("connecting to the demo's server: {e}")))?;
        let q = crate::model::quote_ident(name);
        let made = c
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {q}")))
            .await
            .and(
                c.execute(AssertSqlSafe(format!("CREATE DATABASE {q}")))
                    .await,
            );
        let _ = c.close().await;
        made.map_err(|e| Error::Database(format!("creating the demo database {name}: {e}")))?;
        self.extras.push(name.to_string());
        crate::fleet::with_database(&self.url, name).map_err(Error::Usage)
    }

    /// Removes what `start` and `extra` made.
    pub async fn stop(self) {
        if !self.extras.is_empty() {
            if let Ok(mut c) = PgConnection::connect(&self.url).await {
                for name in &self.extras {
                    let q = crate::model::quote_ident(name);
                    let _ = c
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {q} WITH (FORCE)"
                        )))
                        .await;
                }
                let _ = c.close().await;
            }
        }
        match self.throwaway {
            Throwaway::Database { admin_url, name } => {
                if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                    let _ = c
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    let _ = c.close().await;
                }
            }
            Throwaway::Cluster { bin, dir } => {
                let data = dir.join("data").to_string_lossy().into_owned();
                let _ = run_as(
                    server_user(),
                    &bin.join("pg_ctl"),
                    &["-D", &data, "-m", "immediate", "-w", "stop"],
                );
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}
