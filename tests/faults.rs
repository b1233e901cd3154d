//! The database going away under a running backfill: the run stops with a clear error, and the
//! next run, once the server is back, finishes from the saved cursor with every row right.

mod common;

use common::cluster::Cluster;
use sqlx::{Connection, PgConnection};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn project(tag: &str, files: &[(&str, &str)]) -> common::TempDir {
    common::project("migrate-faults", tag, files)
}

fn command(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.args(args)
        .args(["--database-url", url, "--dir", dir.to_str().unwrap()])
        .args(["--config", dir.join("migrate.toml").to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env_remove("MIGRATE_FAILPOINT");
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scalar(url: &str, sql: &'static str) -> i64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        })
}

#[test]
fn the_server_restarting_mid_backfill_loses_nothing() {
    let cluster = Cluster::start(None);
    let url = cluster.url(None);
    let dir = project(
        "restart",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
                 INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 100000) g;\n",
            ),
            (
                "0002_rename.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
            ),
            // Small batches with pauses: the backfill lasts a few seconds.
            (
                "migrate.toml",
                "views = false\n[backfill]\nbatch_rows = 1000\npause = \"20ms\"\n",
            ),
        ],
    );
    let ok = |o: Output| assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    ok(command(&url, &dir, &["expand", "0001_users"])
        .output()
        .unwrap());

    let mut restarts = 0;
    for _ in 0..3 {
        let child = command(&url, &dir, &["expand"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let done = scalar(
            &url,
            "SELECT count(*) FROM users WHERE full_name IS NOT NULL",
        );
        cluster.pg_ctl("restart");
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            break;
        }
        restarts += 1;
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("database"), "a clear error: {said}");
        assert!(
            done > 0 && done < 100_000,
            "{done} rows done before the restart"
        );
    }
    assert!(restarts >= 1, "the backfill finished before any restart");
    ok(command(&url, &dir, &["expand"]).output().unwrap());
    assert_eq!(
        scalar(
            &url,
            "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM name"
        ),
        0
    );
    ok(command(&url, &dir, &["contract"]).output().unwrap());
    assert_eq!(
        scalar(
            &url,
            "SELECT count(*) FROM users WHERE full_name = 'user ' || id"
        ),
        100_000
    );
    eprintln!("{restarts} restarts mid-backfill, every row right");
}

/// A replica that stops replaying: the guard pauses the backfill while its replay lag is over
/// `max_replica_lag` (the guard's replica_lag level), saying so, and it goes on once the
/// replica catches up.
#[test]
fn the_backfill_waits_for_a_lagging_replica() {
    let primary = Cluster::start(None);
    let replica = primary.replica();
    let url = primary.url(None);
    let dir = project(
        "replica",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
                 INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 200000) g;\n",
            ),
            (
                "0002_rename.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
            ),
            (
                "migrate.toml",
                "views = false\n[backfill]\nbatch_rows = 500\npause = \"20ms\"\nmax_replica_lag = \"1s\"\n",
            ),
        ],
    );
    let ok = |o: &Output| assert_eq!(o.status.code(), Some(0), "{}", text(o));
    ok(&command(&url, &dir, &["expand", "0001_users"])
        .output()
        .unwrap());
    ok(&command(&url, &dir, &["expand", "--skip-backfill"])
        .output()
        .unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_replica = |sql: &'static str| {
        rt.block_on(async {
            let mut c = PgConnection::connect(&replica.url(None)).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        })
    };
    on_replica("SELECT pg_wal_replay_pause()");
    let child = command(&url, &dir, &["backfill"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the lag passes 1 s the batches stop: rows done holds still.
    std::thread::sleep(Duration::from_millis(2500));
    let a = scalar(
        &url,
        "SELECT count(*) FROM users WHERE full_name IS NOT NULL",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let b = scalar(
        &url,
        "SELECT count(*) FROM users WHERE full_name IS NOT NULL",
    );
    assert_eq!(a, b, "batches went on while the replica lagged");
    assert!(a < 200_000, "the backfill ended before the replica lagged");
    on_replica("SELECT pg_wal_replay_resume()");
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let said = text(&out);
    assert!(said.contains("guard: pausing: replica_lag"), "{said}");
    assert!(said.contains("s paused by the guard"), "{said}");
    assert_eq!(
        scalar(
            &url,
            "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM name"
        ),
        0
    );
}
