//! The guard on a real server: each signal injected while a real backfill or step runs — a
//! burst of failing app transactions, sessions queued behind a step's lock, the operator's
//! health URL turning 503 — and the pause or stop it makes, with the signal named, nothing
//! half-done, no row wrong, and the run going on (or resuming) once the signal recovers.

mod common;

use common::{migrate_in, project, text, TestDb};
use sqlx::{Connection, PgConnection};
use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spawn(db: &TestDb, dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .args(["--database-url", &db.url, "--dir", dir.to_str().unwrap()])
        .args(["--config", dir.join("migrate.toml").to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env_remove("MIGRATE_FAILPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn scalar(db: &TestDb, sql: &str) -> i64 {
    let sql = sql.to_string();
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

/// The guard's events, oldest first: (command, action, signal).
fn events(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as("SELECT command, action, signal FROM migrate.guard_events ORDER BY at")
            .fetch_all(&mut c)
            .await
            .unwrap()
    })
}

/// Rows the backfill has done so far (its saved cursor's count).
fn rows_done(db: &TestDb) -> i64 {
    scalar(
        db,
        "SELECT coalesce(sum(rows_done), 0)::bigint FROM migrate.backfills",
    )
}

/// Waits until the backfill has made progress (and so is running), or fails.
fn wait_for_batches(db: &TestDb, child: &mut Child) {
    let start = Instant::now();
    while rows_done(db) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("migrate ended ({status}) before its backfill started");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no batch in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the backfill stands still now (no batch over 1.5 s), and has not finished.
fn assert_paused(db: &TestDb, total: i64) {
    let a = rows_done(db);
    std::thread::sleep(Duration::from_millis(1500));
    let b = rows_done(db);
    assert_eq!(a, b, "batches went on while the guard should pause them");
    assert!(
        a < total,
        "the backfill ended before the signal was injected"
    );
}

/// A table of 200 000 rows and a type change whose backfill runs some ten seconds.
fn retype_project(tag: &str, toml: &str) -> common::TempDir {
    project(
        "guard",
        tag,
        &[
            (
                "0001_accounts.sql",
                "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);
                 INSERT INTO accounts SELECT g, g % 1000 FROM generate_series(1, 200000) g;\n",
            ),
            (
                "0002_wider.sql",
                "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n",
            ),
            (
                "migrate.toml",
                &format!("[backfill]\nbatch_rows = 500\npause = \"20ms\"\n{toml}"),
            ),
        ],
    )
}

fn finish(child: Child) -> (Output, String) {
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    (out, said)
}

/// Every row's new column holds its old value: no batch lost or wrong across the pause.
fn assert_rows_right(db: &TestDb) {
    let shadow: String = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.accounts'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'id' AND attname <> 'balance'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    let wrong = scalar(
        db,
        &format!(
            "SELECT count(*) FROM accounts WHERE \"{shadow}\" IS DISTINCT FROM balance::bigint"
        ),
    );
    assert_eq!(wrong, 0, "rows whose new column is not their old value");
}

#[test]
fn a_burst_of_failing_app_transactions_pauses_the_backfill_until_it_is_over() {
    let db = TestDb::new();
    let dir = retype_project("rollbacks", "");
    common::ok(&migrate_in(
        &db.url,
        &dir,
        &["expand", "0001_accounts"],
        None,
    ));
    let mut child = spawn(&db, &dir, &["expand"]);
    wait_for_batches(&db, &mut child);
    // A bad release: every request of the app fails, hundreds a second, for six seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let failing = {
        let stop = stop.clone();
        common::on_thread(&db.url, move |mut c| async move {
            let mut failed = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if sqlx::raw_sql("SELECT 1 / 0").execute(&mut c).await.is_err() {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failed
        })
    };
    std::thread::sleep(Duration::from_millis(3000));
    assert_paused(&db, 200_000);
    stop.store(true, Ordering::SeqCst);
    let failed = failing.join().unwrap();
    assert!(failed > 500, "the burst failed only {failed} transactions");
    let (out, said) = finish(child);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("guard: pausing: rollbacks"), "{said}");
    assert!(said.contains("guard: resuming after"), "{said}");
    assert!(said.contains("paused by the guard"), "{said}");
    let ev = events(&db);
    let pause = ev
        .iter()
        .position(|e| e.1 == "pause" && e.2.as_deref() == Some("rollbacks"))
        .unwrap_or_else(|| panic!("no pause on rollbacks recorded: {ev:?}"));
    assert!(
        ev[pause..].iter().any(|e| e.1 == "resume"),
        "no resume after the pause: {ev:?}"
    );
    assert!(ev.iter().all(|e| e.0 == "expand"), "{ev:?}");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM migrate.migrations WHERE name = '0002_wider' AND phase = 'backfilled'"),
        1
    );
    assert_rows_right(&db);
}

#[test]
fn sessions_queued_behind_a_step_stop_it_and_a_rerun_resumes_from_its_checkpoint() {
    let db = TestDb::new();
    let dir = project(
        "guard",
        "queue",
        &[
            (
                "0001_tables.sql",
                "CREATE TABLE orders (id bigint PRIMARY KEY, total int);
                 CREATE TABLE reports (id bigint PRIMARY KEY, body text);
                 INSERT INTO reports VALUES (1, 'q1');\n",
            ),
            (
                "0002_columns.sql",
                "ALTER TABLE orders ADD COLUMN note text;
                 ALTER TABLE reports ADD COLUMN author text;\n",
            ),
            // A lock_timeout long enough that the ALTER waits, and every read queues behind it
            // (the pg_dump incident); the guard is what bounds the queue.
            (
                "migrate.toml",
                "lock_timeout = \"60s\"\n[guard.lock_wait]\npause = \"off\"\nstop = \"2s\"\n",
            ),
        ],
    );
    common::ok(&migrate_in(&db.url, &dir, &["expand", "0001_tables"], None));
    let (url, rt) = (db.url.clone(), &db.rt);
    // A long report holds ACCESS SHARE on reports in an open transaction.
    let mut holder = rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN; SELECT count(*) FROM reports")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let started = Instant::now();
    let child = spawn(&db, &dir, &["expand"]);
    // An app read of reports, queued behind the ALTER that waits behind the report.
    let reader = common::on_thread(&url, |mut c| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t = Instant::now();
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reports")
            .fetch_one(&mut c)
            .await
            .unwrap();
        t.elapsed()
    });
    let (out, said) = finish(child);
    let waited = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped, resumable: {said}");
    assert!(
        said.contains("stopped by the guard") && said.contains("lock_wait"),
        "{said}"
    );
    assert!(
        said.contains("SELECT count(*) FROM reports"),
        "names the waiter: {said}"
    );
    // Cancelled at once, not after the 60 s lock_timeout: the reader went on within seconds.
    assert!(
        started.elapsed() < Duration::from_secs(20) && waited < Duration::from_secs(10),
        "the queue lasted {waited:?}"
    );
    // Nothing half-done: the first statement's step stands, checkpointed; the second is not
    // applied.
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"),
        1
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'reports' AND column_name = 'author'"),
        0
    );
    assert_eq!(
        scalar(&db, "SELECT step::bigint FROM migrate.migrations WHERE name = '0002_columns' AND phase = 'expanding'"),
        1
    );
    let ev = events(&db);
    assert_eq!(
        ev.last().map(|e| (e.1.as_str(), e.2.as_deref())),
        Some(("stop", Some("lock_wait"))),
        "{ev:?}"
    );
    let status = migrate_in(&db.url, &dir, &["status"], None);
    assert!(
        text(&status).contains("stopped by the guard"),
        "{}",
        text(&status)
    );
    // The report ends: a rerun resumes at the second step and completes.
    rt.block_on(async {
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    });
    common::ok(&migrate_in(&db.url, &dir, &["expand"], None));
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'reports' AND column_name = 'author'"),
        1
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM migrate.migrations WHERE phase = 'backfilled'"
        ),
        2
    );
}

/// A health endpoint whose status the test sets: it answers every GET with it.
struct Health {
    port: u16,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicU16>,
}

impl Health {
    fn start() -> Health {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(AtomicU16::new(0));
        let (s, n) = (status.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                n.fetch_add(1, Ordering::SeqCst);
                let code = s.load(Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Health {
            port,
            status,
            requests,
        }
    }
}

#[test]
fn an_unhealthy_app_pauses_the_backfill_and_a_healthy_one_resumes_it() {
    let db = TestDb::new();
    let health = Health::start();
    let dir = retype_project(
        "health",
        &format!(
            "[guard]\nhealth_url = \"http://127.0.0.1:{}/healthz\"\n",
            health.port
        ),
    );
    common::ok(&migrate_in(
        &db.url,
        &dir,
        &["expand", "0001_accounts"],
        None,
    ));
    // For a tool: the guard's events as JSON lines on stdout, as they happen.
    let mut child = spawn(&db, &dir, &["expand", "--format", "json"]);
    wait_for_batches(&db, &mut child);
    health.status.store(503, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2000));
    assert_paused(&db, 200_000);
    health.status.store(200, Ordering::SeqCst);
    let (out, said) = finish(child);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("event"), s("action") + &s("signal"))
        })
        .collect();
    let at = |k: (&str, &str)| kinds.iter().position(|x| (x.0.as_str(), x.1.as_str()) == k);
    let pause = at(("guard", "pausehealth")).unwrap_or_else(|| panic!("{kinds:?}"));
    let resume = at(("guard", "resume")).unwrap_or_else(|| panic!("{kinds:?}"));
    assert!(pause < resume, "{kinds:?}");
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["event"], &last["ok"]),
        (&"result".into(), &true.into()),
        "{last}"
    );
    assert_eq!(last["done"]["migrations"], 1, "{last}");
    assert!(lines[pause]["detail"]
        .as_str()
        .unwrap()
        .contains("health unhealthy"));
    assert!(health.requests.load(Ordering::SeqCst) >= 5);
    let ev = events(&db);
    let pause = ev
        .iter()
        .position(|e| e.1 == "pause" && e.2.as_deref() == Some("health"))
        .unwrap_or_else(|| panic!("no pause on health recorded: {ev:?}"));
    assert!(ev[pause..].iter().any(|e| e.1 == "resume"), "{ev:?}");
    assert_rows_right(&db);
}

#[test]
fn a_misspelt_signal_is_refused_before_anything_runs() {
    let db = TestDb::new();
    let dir = project(
        "guard",
        "noconn",
        &[
            ("0001_t.sql", "CREATE TABLE t (id int PRIMARY KEY);\n"),
            ("migrate.toml", "[guard.rollback]\npause = 3\n"),
        ],
    );
    // A misspelt signal is a configuration error naming it, before anything runs.
    let out = migrate_in(&db.url, &dir, &["expand"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no setting or signal `rollback`"),
        "{}",
        text(&out)
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        0
    );
}
