//! Bad input and hostile conditions through `migrate expand`: each a clear error that changes
//! nothing (or leaves a recorded state the next run resumes from).

mod common;

use common::TestDb;
use sqlx::{Connection, PgConnection, Row};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn project(tag: &str, files: &[(&str, &str)]) -> common::TempDir {
    common::project("migrate-failures", tag, files)
}

fn run(url: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .args(["--database-url", url, "--dir", dir.to_str().unwrap()])
        .env_remove("MIGRATE_FAILPOINT")
        .output()
        .unwrap()
}

fn phases(db: &TestDb, dir: &Path) -> Vec<String> {
    let o = run(&db.url, dir, &["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["phase"].as_str().unwrap().to_string())
        .collect()
}

fn columns(db: &TestDb, table: &str) -> Vec<String> {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position")
            .bind(table)
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    })
}

#[test]
fn a_held_lock_makes_expand_wait_bounded_then_give_up_naming_the_blocker_changing_nothing() {
    let db = TestDb::new();
    let dir = project(
        "lock",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
            ),
            (
                "migrate.toml",
                // The default tries of 100 ms; two retries keep the test short.
                "views = false\nlock_retries = 2\n",
            ),
        ],
    );
    let config = dir.join("migrate.toml");
    let mut args = vec!["expand", "--config", config.to_str().unwrap()];
    assert_eq!(run(&db.url, &dir, &args).status.code(), Some(0));
    std::fs::write(
        dir.join("0002_rename.sql"),
        "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    )
    .unwrap();
    let before = columns(&db, "users");
    db.rt.block_on(async {
        let mut holder = PgConnection::connect(&db.url).await.unwrap();
        let pid: i32 = sqlx::query("SELECT pg_backend_pid()")
            .fetch_one(&mut holder)
            .await
            .unwrap()
            .get(0);
        sqlx::raw_sql("BEGIN; SELECT * FROM users")
            .execute(&mut holder)
            .await
            .unwrap();
        // A transaction that has held its lock for a while is named before the step waits.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // A reader arriving while expand waits for its lock queues behind that request: it must
        // wait no longer than one lock_timeout, not as long as the holder holds.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (stop, url) = (stop.clone(), db.url.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = PgConnection::connect(&url).await.unwrap();
                    let (mut longest, mut reads) = (Duration::ZERO, 0);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let t = Instant::now();
                        sqlx::query("SELECT count(*) FROM users")
                            .execute(&mut c)
                            .await
                            .unwrap();
                        longest = longest.max(t.elapsed());
                        reads += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    (longest, reads)
                })
            })
        };
        let started = Instant::now();
        let o = run(&db.url, &dir, &args);
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (longest, reads) = reader.join().unwrap();
        assert!(reads > 20, "{reads} reads");
        assert!(
            longest < Duration::from_millis(100 + 200),
            "a reader waited {longest:?} behind the migration's lock request"
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("pid {pid}"))
                && err.contains("idle in transaction")
                && err.contains("SELECT * FROM users"),
            "{err}"
        );
        assert!(
            err.contains(&format!("waiting: pid {pid}")),
            "the holder is named while the step waits: {err}"
        );
        // Three tries of 100 ms each, plus the pauses: bounded, never an endless wait.
        assert!(took < Duration::from_secs(4), "{took:?}");
        drop(holder);
    });
    assert_eq!(
        columns(&db, "users"),
        before,
        "the table is as before the attempt"
    );
    assert_eq!(
        phases(&db, &dir),
        vec!["backfilled", "pending"],
        "the metadata is as before the attempt"
    );
    args.truncate(3);
    assert_eq!(
        run(&db.url, &dir, &args).status.code(),
        Some(0),
        "once the blocker is gone it goes through"
    );
}

#[test]
fn an_unknown_table_or_column_is_refused_before_anything_changes() {
    let db = TestDb::new();
    let dir = project(
        "unknown",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
            ),
            (
                "0002_typo.sql",
                "ALTER TABLE users RENAME COLUMN nmae TO full_name;\n",
            ),
        ],
    );
    let o = run(&db.url, &dir, &["expand"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("column users.nmae does not exist") || err.contains("unknown-table-or-column"),
        "{err}"
    );
    assert_eq!(columns(&db, "users"), vec!["id", "name"]);
    assert_eq!(phases(&db, &dir), vec!["backfilled", "pending"]);
}

#[test]
fn a_table_without_a_usable_key_cannot_be_backfilled_and_says_how_to_fix_it() {
    let db = TestDb::new();
    let dir = project(
        "nokey",
        &[
            ("0001_logs.sql", "CREATE TABLE logs (line text, level text);\nINSERT INTO logs SELECT 'l' || g, NULL FROM generate_series(1, 100) g;\n"),
            ("0002_fill.sql", "UPDATE logs SET level = 'info' WHERE level IS NULL;\n"),
        ],
    );
    let o = run(&db.url, &dir, &["expand"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("logs has no primary key and no unique index over NOT NULL columns")
            && err.contains("add a primary key"),
        "{err}"
    );
    // Recorded where it stopped: the next run (after the fix) resumes there.
    assert_eq!(phases(&db, &dir), vec!["backfilled", "backfilling"]);
    db.exec("ALTER TABLE logs ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY");
    assert_eq!(run(&db.url, &dir, &["expand"]).status.code(), Some(0));
    assert_eq!(phases(&db, &dir), vec!["backfilled", "backfilled"]);
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = project(
        "unreachable",
        &[("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")],
    );
    let o = run(
        "postgres://app:s3cret-pw@127.0.0.1:1/app",
        &dir,
        &["expand"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot connect to postgres://app:***@127.0.0.1:1/app"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_printed() {
    let cluster = common::cluster::Cluster::start(Some("right-password"));
    let dir = project(
        "password",
        &[("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")],
    );
    let wrong = format!(
        "postgres://postgres:Wr0ng-Secret@127.0.0.1:{}/postgres",
        cluster.port
    );
    let o = run(&wrong, &dir, &["expand"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("Wr0ng-Secret"), "the password leaked: {err}");
    assert!(err.contains("postgres:***@"), "{err}");
    let right = format!(
        "postgres://postgres:right-password@127.0.0.1:{}/postgres",
        cluster.port
    );
    let o = run(&right, &dir, &["expand"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
