//! The metadata schema, the runner lock, `migrate status` and `migrate baseline`, against a
//! real PostgreSQL (each test its own database).

mod common;

use common::{migrate, TestDb};
use sqlx::{Connection, PgConnection, Row};
use std::path::Path;

/// A copy of migrations-example/ that a test may change.
fn example_copy(tag: &str) -> common::TempDir {
    let dir = common::TempDir::new(&format!("migrate-state-{tag}"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations-example");
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

fn status(db: &TestDb, dir: &Path) -> serde_json::Value {
    let o = migrate(&[
        "status",
        "--format",
        "json",
        "--database-url",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn schema_exists(db: &TestDb, schema: &str) -> bool {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get::<i64, _>(0)
            == 1
    })
}

#[test]
fn status_of_a_fresh_database_lists_every_file_as_pending_and_creates_nothing() {
    let db = TestDb::new();
    let dir = example_copy("fresh");
    let v = status(&db, &dir);
    let lines = v.as_array().unwrap();
    assert_eq!(lines.len(), 18);
    assert!(lines.iter().all(|l| l["phase"] == "pending"));
    assert!(
        !schema_exists(&db, "migrate"),
        "status must not create the metadata schema"
    );
}

#[test]
fn baseline_records_files_as_applied_once() {
    let db = TestDb::new();
    let dir = example_copy("baseline");
    let d = dir.to_str().unwrap();
    let o = migrate(&[
        "baseline",
        "0005_set_not_null",
        "--database-url",
        &db.url,
        "--dir",
        d,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("recorded 5 migration(s)"));
    let v = status(&db, &dir);
    let phases: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["phase"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(phases.iter().filter(|p| *p == "complete").count(), 5);
    assert_eq!(phases[5], "pending");
    assert!(v[0]["baselined"].as_bool().unwrap());
    // Again, over everything: only the rest is new.
    let o = migrate(&["baseline", "--database-url", &db.url, "--dir", d]);
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains("recorded 13 migration(s) as applied; 5 already recorded"));
}

#[test]
fn a_file_changed_after_it_was_applied_shows_both_checksums() {
    let db = TestDb::new();
    let dir = example_copy("changed");
    let d = dir.to_str().unwrap();
    assert_eq!(
        migrate(&["baseline", "--database-url", &db.url, "--dir", d])
            .status
            .code(),
        Some(0)
    );
    std::fs::write(
        dir.join("0003_add_column.sql"),
        "ALTER TABLE users ADD COLUMN nickname varchar(10);\n",
    )
    .unwrap();
    std::fs::remove_file(dir.join("0016_drop_table.sql")).unwrap();
    let v = status(&db, &dir);
    let changed = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "0003_add_column")
        .unwrap();
    assert_eq!(changed["changed"], true);
    let note = changed["note"].as_str().unwrap();
    assert!(note.contains("recorded") && note.contains("now"), "{note}");
    let gone = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "0016_drop_table")
        .unwrap();
    assert_eq!(gone["file_missing"], true);
}

#[test]
fn a_second_runner_fails_at_once_naming_the_holder_and_changes_nothing() {
    let db = TestDb::new();
    let dir = example_copy("lock");
    let key = migrate::engine::lock::lock_key("migrate");
    let mut holder = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let pid: i32 = db.rt.block_on(async {
        sqlx::query("SELECT pg_backend_pid()")
            .fetch_one(&mut holder)
            .await
            .unwrap()
            .get(0)
    });
    let started = std::time::Instant::now();
    let o = migrate(&[
        "baseline",
        "--database-url",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another migrate run holds the lock") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it must not wait for the lock"
    );
    assert!(
        !schema_exists(&db, "migrate"),
        "nothing may be recorded while another runner holds the lock"
    );
    drop(holder);
    assert_eq!(
        migrate(&[
            "baseline",
            "--database-url",
            &db.url,
            "--dir",
            dir.to_str().unwrap()
        ])
        .status
        .code(),
        Some(0)
    );
}

#[test]
fn a_newer_metadata_layout_is_refused() {
    let db = TestDb::new();
    let dir = example_copy("newer");
    let d = dir.to_str().unwrap();
    assert_eq!(
        migrate(&[
            "baseline",
            "0001_create_tables",
            "--database-url",
            &db.url,
            "--dir",
            d
        ])
        .status
        .code(),
        Some(0)
    );
    db.exec("INSERT INTO migrate.schema_version (version, tool_version) VALUES (99, 'future')");
    let o = migrate(&["baseline", "--database-url", &db.url, "--dir", d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("layout version 99") && err.contains("upgrade migrate"),
        "{err}"
    );
}

/// A database whose metadata schema has the first layout (from before the guard) is upgraded
/// in place by the next run: its records kept, the guard's events table added, layout 2.
#[test]
fn a_first_layout_metadata_schema_is_upgraded_in_place() {
    let db = TestDb::new();
    let dir = example_copy("upgrade");
    let d = dir.to_str().unwrap();
    let base = |upto: Option<&str>| {
        let mut args = vec!["baseline"];
        args.extend(upto);
        args.extend(["--database-url", &db.url, "--dir", d]);
        migrate(&args)
    };
    assert_eq!(base(Some("0001_create_tables")).status.code(), Some(0));
    // Back to layout 1, as the release before made it.
    db.exec(
        "DROP TABLE migrate.guard_events;
         DELETE FROM migrate.schema_version;
         INSERT INTO migrate.schema_version (version, tool_version) VALUES (1, '0.1.0');",
    );
    assert_eq!(base(None).status.code(), Some(0));
    let (layout, events, records): (i32, bool, i64) = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(
            "SELECT (SELECT max(version) FROM migrate.schema_version),
                    to_regclass('migrate.guard_events') IS NOT NULL,
                    (SELECT count(*) FROM migrate.migrations)",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(layout, 2);
    assert!(events, "the guard's events table was added");
    assert!(
        records > 1,
        "the records are kept and the rest baselined: {records}"
    );
}

#[test]
fn the_metadata_schema_name_is_configurable_and_quoted() {
    let db = TestDb::new();
    let dir = example_copy("schema");
    let config = dir.join("migrate.toml");
    std::fs::write(&config, "metadata_schema = \"Deploy State\"\n").unwrap();
    let (c, d) = (config.to_str().unwrap(), dir.to_str().unwrap());
    let o = migrate(&[
        "baseline",
        "0002_create_index",
        "--config",
        c,
        "--database-url",
        &db.url,
        "--dir",
        d,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(schema_exists(&db, "Deploy State"));
    let o = migrate(&[
        "status",
        "--format",
        "json",
        "--config",
        c,
        "--database-url",
        &db.url,
        "--dir",
        d,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["phase"], "complete");
}

#[test]
fn bad_input_is_a_clear_error_that_records_nothing() {
    let db = TestDb::new();
    let dir = example_copy("bad");
    let d = dir.to_str().unwrap();
    let o = migrate(&[
        "baseline",
        "0099_nope",
        "--database-url",
        &db.url,
        "--dir",
        d,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no migration `0099_nope`"));
    assert!(!schema_exists(&db, "migrate"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["status", "--dir", d])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --database-url or set DATABASE_URL"));
}

#[test]
fn a_lock_whose_session_is_ending_is_waited_out_not_reported() {
    // The race a killed run leaves: its session still holds the lock for a moment.
    let db = TestDb::new();
    let dir = example_copy("ending");
    let key = migrate::engine::lock::lock_key("migrate");
    let url = db.url.clone();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = PgConnection::connect(&url).await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut c)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            c.close().await.unwrap();
        });
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let o = migrate(&[
        "baseline",
        "--database-url",
        &db.url,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    holder.join().unwrap();
}
