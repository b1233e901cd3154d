//! The step executor against a real PostgreSQL: lock timeouts, retries, blockers named,
//! INVALID indexes rebuilt, and every example migration's plan run end to end.

mod common;

use common::TestDb;
use migrate::analyze::analyze_targets;
use migrate::config::Settings;
use migrate::engine::exec::{run_step, ExecSettings};
use migrate::error::Error;
use migrate::model::catalog::Catalog;
use migrate::model::locks::{LockHold, LockLevel, TableLock};
use migrate::model::QualifiedName;
use migrate::plan::{Phase, Step, StepKind};
use sqlx::{Connection, PgConnection, Row};
use std::path::Path;
use std::time::{Duration, Instant};

fn ddl(sql: &str, table: &str) -> Step {
    Step {
        phase: Phase::Expand,
        action: "test step".into(),
        sql: sql.into(),
        kind: StepKind::Ddl,
        locks: vec![TableLock {
            table: QualifiedName::new(None, table),
            level: LockLevel::AccessExclusive,
            hold: LockHold::Brief,
        }],
    }
}

fn fast() -> ExecSettings {
    ExecSettings {
        lock_timeout: Duration::from_millis(200),
        lock_timeout_max: Duration::from_millis(200),
        retries: 2,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        statement_timeout: None,
        backfill: Default::default(),
        rollout: None,
        guard: None,
        json_events: false,
        observer: None,
    }
}

async fn column_exists(c: &mut PgConnection, table: &str, column: &str) -> bool {
    sqlx::query("SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2")
        .bind(table)
        .bind(column)
        .fetch_one(c)
        .await
        .unwrap()
        .get::<i64, _>(0)
        == 1
}

#[test]
fn a_held_lock_bounds_each_wait_then_fails_naming_the_blocker_and_changes_nothing() {
    let db = TestDb::new();
    db.exec("CREATE TABLE accounts (id bigint PRIMARY KEY, name text)");
    db.rt.block_on(async {
        // A transaction left open after a read: it holds ACCESS SHARE until it ends.
        let mut holder = PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql("BEGIN; SELECT * FROM accounts")
            .execute(&mut holder)
            .await
            .unwrap();
        let holder_pid: i32 = sqlx::query("SELECT pg_backend_pid()")
            .fetch_one(&mut holder)
            .await
            .unwrap()
            .get(0);

        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let settings = fast();
        let started = Instant::now();
        let err = run_step(
            &mut conn,
            &ddl("ALTER TABLE accounts ADD COLUMN email text", "accounts"),
            &settings,
            None,
        )
        .await
        .unwrap_err();
        let took = started.elapsed();
        let Error::LockTimeout(msg) = &err else {
            panic!("expected a lock timeout, got {err:?}")
        };
        assert!(
            msg.contains(&format!("pid {holder_pid}")) && msg.contains("idle in transaction"),
            "{msg}"
        );
        assert!(msg.contains("3 tries"), "{msg}");
        // Three tries of 200 ms plus two pauses of at most 150 ms, and some slack; never an
        // unbounded last try.
        assert!(took >= Duration::from_millis(600), "{took:?}");
        assert!(took < Duration::from_millis(600 + 300 + 900), "{took:?}");
        assert!(
            !column_exists(&mut conn, "accounts", "email").await,
            "a failed step changes nothing"
        );
        // The connection's own settings are untouched: the timeout was SET LOCAL.
        let lt: String = sqlx::query("SHOW lock_timeout")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(lt, "0");
    });
}

#[test]
fn a_step_goes_through_once_the_blocker_ends() {
    let db = TestDb::new();
    db.exec("CREATE TABLE accounts (id bigint PRIMARY KEY, name text)");
    let url = db.url.clone();
    db.rt.block_on(async {
        let mut holder = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN; SELECT * FROM accounts")
            .execute(&mut holder)
            .await
            .unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        });
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let settings = ExecSettings {
            retries: 10,
            ..fast()
        };
        let report = run_step(
            &mut conn,
            &ddl("ALTER TABLE accounts ADD COLUMN email text", "accounts"),
            &settings,
            None,
        )
        .await
        .unwrap();
        assert!(report.lock_timeouts >= 1, "{report:?}");
        assert!(column_exists(&mut conn, "accounts", "email").await);
        release.await.unwrap();
    });
}

#[test]
fn an_invalid_index_from_a_failed_concurrent_build_is_dropped_and_rebuilt() {
    let db = TestDb::new();
    db.exec("CREATE TABLE accounts (id bigint PRIMARY KEY, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a')");
    db.rt.block_on(async {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let index = QualifiedName::new(None, "accounts_email_key");
        let step = Step {
            phase: Phase::Expand,
            action: "build the unique index".into(),
            sql: "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email)".into(),
            kind: StepKind::Concurrent {
                index: Some(index.clone()),
                partitioned: None,
            },
            locks: Vec::new(),
        };
        // Duplicates make the build fail and leave an INVALID index behind.
        assert!(run_step(&mut conn, &step, &fast(), None).await.is_err());
        let valid: bool = sqlx::query(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
        assert!(!valid);
        sqlx::raw_sql("UPDATE accounts SET email = 'b' WHERE id = 2")
            .execute(&mut conn)
            .await
            .unwrap();
        let report = run_step(&mut conn, &step, &fast(), None).await.unwrap();
        assert!(report.rebuilt_invalid_index, "{report:?}");
        let valid: bool = sqlx::query(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
        assert!(valid);
        // Idempotent: a valid index is left alone.
        assert!(
            run_step(&mut conn, &step, &fast(), None)
                .await
                .unwrap()
                .already_done
        );
    });
}

/// Plans migrations-example/ and runs every file's steps in order — expand, backfill (as one
/// statement each until the batching engine lands), contract — on a real server with rows in
/// the tables, checking both app shapes work while a rename and a type change are expanded.
#[test]
fn every_example_plan_runs_end_to_end_on_a_real_server() {
    let db = TestDb::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations-example");
    let targets = migrate::files::resolve(&[dir]).unwrap();
    // The plans of `views = false`: this runs the steps alone, without the engine's version
    // schemas, so the rename's two physical columns are what both versions use.
    let settings = Settings {
        views: false,
        ..Settings::default()
    };
    let reports = analyze_targets(&targets, &settings, &Catalog::default()).unwrap();
    assert_eq!(reports.len(), 18);
    db.rt.block_on(async {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let settings = ExecSettings::default();
        for r in &reports {
            assert!(r.plan.rejected().next().is_none(), "{} has rejected steps", r.name);

            for phase in Phase::ALL {
                for step in r.plan.steps_in(phase) {
                    run_step(&mut conn, step, &settings, None)
                        .await
                        .unwrap_or_else(|e| panic!("{} {phase} `{}`: {e}", r.name, step.action));
                }
                if phase == Phase::Expand && r.name == "0001_create_tables" {
                    sqlx::raw_sql(
                        "INSERT INTO users (name, email, age) SELECT 'user ' || g, 'u' || g || '@x', g FROM generate_series(1, 50) g;
                         INSERT INTO users (name, age) VALUES ('no email', 7);
                         INSERT INTO orders (user_id, total) SELECT g, g * 1.5 FROM generate_series(1, 50) g;
                         INSERT INTO events (id) SELECT g FROM generate_series(1, 20) g;
                         INSERT INTO organizations_src (name) VALUES ('acme');",
                    )
                    .execute(&mut conn)
                    .await
                    .unwrap();
                }
                if phase == Phase::Expand && r.name == "0006_rename_column" {
                    // Old and new versions both write; the triggers keep both columns equal.
                    sqlx::raw_sql(
                        "INSERT INTO users (name, email) VALUES ('old app', 'old@x');
                         INSERT INTO users (full_name, email) VALUES ('new app', 'new@x');
                         UPDATE users SET full_name = 'renamed by new' WHERE email = 'u1@x';",
                    )
                    .execute(&mut conn)
                    .await
                    .unwrap();
                    let rows: Vec<(Option<String>, Option<String>)> =
                        sqlx::query_as("SELECT name, full_name FROM users WHERE email IN ('old@x', 'new@x', 'u1@x') ORDER BY email")
                            .fetch_all(&mut conn)
                            .await
                            .unwrap();
                    for (name, full) in &rows {
                        assert_eq!(name, full, "{rows:?}");
                    }
                }
                if phase == Phase::Expand && r.name == "0008_change_column_type" {
                    // 5e9 does not fit the old int column: the reverse conversion refuses it.
                    sqlx::raw_sql("INSERT INTO users (email, age_new) VALUES ('too-big@x', 5000000000)")
                        .execute(&mut conn)
                        .await
                        .unwrap_err();
                    sqlx::raw_sql("INSERT INTO users (email, age) VALUES ('old-age@x', 41); INSERT INTO users (email, age_new) VALUES ('new-age@x', 42);")
                        .execute(&mut conn)
                        .await
                        .unwrap();
                    let rows: Vec<(Option<i32>, Option<i64>)> = sqlx::query_as("SELECT age, age_new FROM users WHERE email IN ('old-age@x', 'new-age@x')")
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                    assert!(rows.iter().all(|(a, b)| a.map(i64::from) == *b), "{rows:?}");
                }
            }
        }
        // The end state is what the migrations meant.
        assert!(column_exists(&mut conn, "users", "full_name").await && !column_exists(&mut conn, "users", "name").await);
        let age: String = sqlx::query("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'age'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(age, "bigint");
        let unvalidated: i64 = sqlx::query("SELECT count(*) FROM pg_constraint WHERE NOT convalidated AND connamespace = 'public'::regnamespace")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(unvalidated, 0, "every constraint validated by contract");
        let email_nullable: bool = sqlx::query("SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert!(!email_nullable);
        let nulls: i64 = sqlx::query("SELECT count(*) FROM users WHERE public_id IS NULL").fetch_one(&mut conn).await.unwrap().get(0);
        assert_eq!(nulls, 0, "the volatile default's backfill filled every row");
        let views: i64 = sqlx::query("SELECT count(*) FROM pg_views WHERE schemaname = 'public'").fetch_one(&mut conn).await.unwrap().get(0);
        assert_eq!(views, 0, "contract dropped the rename's view");
        let leftovers: i64 = sqlx::query("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetch_one(&mut conn).await.unwrap().get(0);
        assert_eq!(leftovers, 0, "contract dropped every sync and fill trigger");
    });
}

/// An autovacuum at work on the table (PostgreSQL cancels one that blocks a lock request only
/// after deadlock_timeout, 1 s, which a 100 ms try never reaches) is cancelled before the
/// step asks for its lock: the step gets it on its first try.
#[test]
fn an_autovacuum_on_the_table_is_cancelled_and_the_step_gets_its_lock_on_the_first_try() {
    // A cluster of the test's own: autovacuum has to wake every second, which is no setting
    // for the shared server.
    let cluster = common::cluster::Cluster::start(None);
    let url = cluster.url(None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        for sql in [
            "ALTER SYSTEM SET autovacuum_naptime = '1s'",
            "SELECT pg_reload_conf()",
            // Many dead rows, and an autovacuum slowed to a crawl: it is still running when
            // the step comes.
            "CREATE TABLE dead (id int PRIMARY KEY, pad text) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)",
            "INSERT INTO dead SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g",
            "DELETE FROM dead",
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
        let started = Instant::now();
        loop {
            let working: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%dead%'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            if working > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no autovacuum of the table started within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = run_step(
            &mut c,
            &ddl("ALTER TABLE dead ADD COLUMN note text", "dead"),
            &ExecSettings::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(report.lock_timeouts, 0, "{report:?}");
        assert_eq!(report.cancelled_autovacuum, ["dead"], "{report:?}");
        let added: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'dead' AND column_name = 'note'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(added, 1);
    });
}
