//! `migrate demo`, smaller: the example migrations through expand → backfill → contract under
//! two app versions' traffic, with no failed request and every row right, and nothing left
//! behind.

mod common;

use sqlx::{Connection, PgConnection};
use std::process::{Command, Stdio};

fn demo(args: &[&str], url: Option<&str>) -> (u32, std::process::Output) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.arg("demo")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match url {
        Some(u) => cmd.env("DATABASE_URL", u),
        None => cmd.env_remove("DATABASE_URL"),
    };
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

/// How many databases on the server have a name LIKE `pattern`.
fn databases_like(admin: &str, pattern: &str) -> i64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = PgConnection::connect(admin).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1")
                .bind(pattern)
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
}

fn report(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_zero_downtime(r: &serde_json::Value, rows: i64) {
    assert_eq!(r["failed_requests"], 0, "{r:#}");
    assert_eq!(r["rows_wrong"], 0, "{r:#}");
    assert!(r["problems"].as_array().unwrap().is_empty(), "{r:#}");
    // Users loaded plus a quarter as many orders, plus what the versions added.
    assert!(
        r["rows_checked"].as_i64().unwrap() >= rows + rows / 4,
        "{r:#}"
    );
    // Backfills walk every user more than once: the volatile default, the NOT NULL fill and
    // the type change (and, without views, the rename).
    assert!(r["backfill_rows"].as_i64().unwrap() >= 3 * rows, "{r:#}");
    let phases = r["phases"].as_array().unwrap();
    let served = |phase: &str, version: &str| {
        phases
            .iter()
            .find(|p| p["phase"] == phase && p["version"] == version)
            .map_or(0, |p| p["requests"].as_u64().unwrap())
    };
    for (phase, version) in [
        ("before", "old"),
        ("expand", "old"),
        ("backfill", "old"),
        ("deploy", "old"),
        ("deploy", "new"),
        ("after", "new"),
    ] {
        assert!(
            served(phase, version) > 0,
            "no {version} requests during {phase}: {r:#}"
        );
    }
    assert_eq!(
        served("contract", "old"),
        0,
        "the old version stopped: {r:#}"
    );
}

#[test]
fn the_demo_on_a_given_server_has_no_failed_request_and_leaves_nothing() {
    let admin = common::admin_url();
    let rows = 20_000;
    let (pid, out) = demo(
        &[
            "--rows",
            &rows.to_string(),
            "--rate",
            "100",
            "--phase-seconds",
            "1",
            "--json",
        ],
        Some(&admin),
    );
    let r = report(&out);
    assert_zero_downtime(&r, rows);
    let left = databases_like(&admin, &format!("migrate\\_demo\\_{pid}"));
    assert_eq!(left, 0, "the demo database was dropped");
}

#[test]
fn the_demo_makes_and_removes_a_cluster_of_its_own() {
    let rows = 5_000;
    let (pid, out) = demo(
        &[
            "--rows",
            &rows.to_string(),
            "--rate",
            "50",
            "--phase-seconds",
            "1",
            "--json",
        ],
        None,
    );
    let r = report(&out);
    assert_zero_downtime(&r, rows);
    let dir = std::env::temp_dir().join(format!("migrate-demo-{pid}"));
    assert!(!dir.exists(), "{} was removed", dir.display());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("temporary PostgreSQL cluster"), "{said}");
}

#[test]
fn the_demo_with_views_off_has_no_failed_request_either() {
    // `views = false`: no version schemas; the demo's apps name their columns and cast.
    let rows = 10_000;
    let (_, out) = demo(
        &[
            "--rows",
            &rows.to_string(),
            "--rate",
            "100",
            "--phase-seconds",
            "1",
            "--no-views",
            "--json",
        ],
        Some(&common::admin_url()),
    );
    assert_zero_downtime(&report(&out), rows);
}

/// `--fleet 2`: the same scenario over two databases on one server, rolled out as `--fleet`
/// does; each database's traffic and rows hold as in the single demo, and both databases are
/// dropped.
#[test]
fn the_fleet_demo_has_no_failed_request_on_any_database_and_leaves_nothing() {
    let admin = common::admin_url();
    let rows = 20_000;
    let (pid, out) = demo(
        &[
            "--rows",
            &rows.to_string(),
            "--rate",
            "100",
            "--phase-seconds",
            "1",
            "--fleet",
            "2",
            "--json",
        ],
        Some(&admin),
    );
    let all = report(&out);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    for db in all {
        // The rows are shared out: each database holds half.
        assert_zero_downtime(&db["report"], rows / 2);
    }
    let left = databases_like(&admin, &format!("migrate\\_demo\\_{pid}%"));
    assert_eq!(left, 0, "the demo databases were dropped");
}

/// `--incident`: mid-backfill a bad release fails 30% of the app's requests for 6 s. The
/// guard pauses the backfill by itself within a few seconds of the first failure and resumes
/// it after the last; the incident's failures are its own (the migration failed none), and
/// every row is right.
#[test]
fn the_incident_demo_pauses_the_backfill_while_the_app_fails_and_resumes_after() {
    let admin = common::admin_url();
    let rows = 200_000;
    let (_, out) = demo(
        &[
            "--rows",
            &rows.to_string(),
            "--rate",
            "100",
            "--phase-seconds",
            "1",
            "--incident",
            "--json",
        ],
        Some(&admin),
    );
    let r = report(&out);
    assert_zero_downtime(&r, rows);
    let i = &r["incident"];
    assert!(i["failed_requests"].as_u64().unwrap() > 50, "{i:#}");
    assert_eq!(i["signal"], "rollbacks", "{i:#}");
    let noticed = i["noticed_after_s"].as_f64().expect("the guard paused");
    assert!((0.0..4.0).contains(&noticed), "noticed after {noticed} s");
    let resumed = i["resumed_after_end_s"]
        .as_f64()
        .expect("the guard resumed");
    assert!(
        (0.0..10.0).contains(&resumed),
        "resumed {resumed} s after the end"
    );
}

#[test]
fn the_incident_demo_needs_a_backfill_that_lasts() {
    let (_, out) = demo(&["--rows", "5000", "--incident"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rows 200000 or more"));
}
