//! Rollouts over a fleet of databases on one server: the canary first and alone, then at most
//! `parallel` at once; the first failure stops the rollout naming its target, with every other
//! target done, stopped at a checkpoint or untouched, and a rerun finishes; a kill mid-rollout
//! and a rerun end the same everywhere; a changed file on one target, or a contract while one
//! target is behind, is refused before any target is touched.

mod common;

use common::{ok, text};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Databases `migrate_fleet_<pid>_<tag>_NN` on the test server, dropped at the end, and a
/// fleet file that discovers them.
struct Fleet {
    names: Vec<String>,
    server_var: String,
    rt: tokio::runtime::Runtime,
    dir: common::TempDir,
}

const ITEMS: &str = "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text);
     INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, 4000) g;\n";
const TOTAL: &str = "ALTER TABLE items ADD COLUMN total bigint;
     -- migrate:backfill
     UPDATE items SET total = qty * 2;\n";
const DROP_NOTE: &str = "ALTER TABLE items DROP COLUMN note;\n";

impl Fleet {
    fn new(tag: &str, n: usize, fleet_toml: &str, config: &str) -> Fleet {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let prefix = format!("migrate_fleet_{}_{tag}", std::process::id());
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}_{i:02}")).collect();
        let admin = common::admin_url();
        rt.block_on(async {
            let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin} ({e}); run scripts/test.sh, which installs and starts it")
            });
            for name in &names {
                c.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\"")))
                    .await
                    .unwrap();
                c.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .await
                    .unwrap();
            }
        });
        let server_var = format!("MIGRATE_FLEET_SERVER_{}", tag.to_uppercase());
        let dir = common::project(
            "migrate-fleet",
            tag,
            &[
                ("0001_items.sql", ITEMS),
                ("migrate.toml", config),
                (
                    "fleet.toml",
                    &format!(
                        "{fleet_toml}\n[[discover]]\nurl_env = \"{server_var}\"\nlike = '{prefix}\\_%'\n"
                    ),
                ),
            ],
        );
        Fleet {
            names,
            server_var,
            rt,
            dir,
        }
    }

    fn add(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).unwrap();
    }

    fn url(&self, i: usize) -> String {
        migrate::fleet::with_database(&common::admin_url(), &self.names[i]).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_with("fleet.toml", args)
    }

    /// The command over the fleet file `file` of the project.
    fn command_with(&self, file: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
        cmd.args(args)
            .args(["--fleet", self.dir.join(file).to_str().unwrap()])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--config", self.dir.join("migrate.toml").to_str().unwrap()])
            .env(&self.server_var, common::admin_url())
            .env("NO_COLOR", "1")
            .env_remove("DATABASE_URL")
            .env_remove("MIGRATE_FAILPOINT");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// One query's rows on target `i`, each as text columns.
    fn query(&self, i: usize, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.url(i);
        self.rt.block_on(async {
            let mut c = PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"));
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|k| r.get::<Option<String>, _>(k))
                        .collect()
                })
                .collect()
        })
    }

    /// The phase of each recorded migration on target `i` (none: migrate never ran there).
    fn phases(&self, i: usize) -> Vec<(String, String)> {
        let present =
            self.query(i, "SELECT to_regclass('migrate.migrations')::text")[0][0].is_some();
        if !present {
            return Vec::new();
        }
        self.query(
            i,
            "SELECT name, phase FROM migrate.migrations ORDER BY name",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
    }

    fn phase_of(&self, i: usize, migration: &str) -> Option<String> {
        self.phases(i)
            .into_iter()
            .find(|(n, _)| n == migration)
            .map(|(_, p)| p)
    }

    /// Rows of items on target `i` whose total is not qty * 2.
    fn wrong_totals(&self, i: usize) -> i64 {
        self.query(
            i,
            "SELECT count(*)::text FROM items WHERE total IS DISTINCT FROM qty * 2",
        )[0][0]
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Every target has backfilled 0002_total, and every row's total is right.
    fn assert_all_backfilled(&self) {
        for i in 0..self.names.len() {
            assert_eq!(
                self.phase_of(i, "0002_total").as_deref(),
                Some("backfilled"),
                "target {i}"
            );
            assert_eq!(self.wrong_totals(i), 0, "target {i}");
        }
    }

    fn has_column(&self, i: usize, column: &str) -> bool {
        !self
            .query(
                i,
                &format!(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.items'::regclass AND attname = '{column}' AND NOT attisdropped"
                ),
            )
            .is_empty()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let admin = common::admin_url();
        let names = self.names.clone();
        self.rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect(&admin).await {
                for name in names {
                    let _ = c
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await;
                }
            }
        });
    }
}

/// The interval each target worked on a migration, from its own metadata: the record created
/// to its last update (inside the run's real interval on that target).
fn intervals(f: &Fleet, migration: &str) -> Vec<(f64, f64)> {
    (0..f.names.len())
        .map(|i| {
            let r = &f.query(
                i,
                &format!("SELECT extract(epoch FROM created_at)::text, extract(epoch FROM updated_at)::text FROM migrate.migrations WHERE name = '{migration}'"),
            )[0];
            (
                r[0].as_ref().unwrap().parse().unwrap(),
                r[1].as_ref().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_rollout_runs_the_canary_alone_then_a_few_at_once_and_contracts_only_when_all_are_ready() {
    let f = Fleet::new("full", 24, "parallel = 4\n", "");
    ok(&f.run(&["expand"]));
    f.add("0002_total.sql", TOTAL);
    let out = f.run(&["expand"]);
    ok(&out);
    f.assert_all_backfilled();
    // The canary (the first target) was done before any other began, and never more than
    // four targets were worked on at once.
    let spans = intervals(&f, "0002_total");
    for (i, s) in spans.iter().enumerate().skip(1) {
        assert!(
            spans[0].1 <= s.0,
            "target {i} began before the canary was done: {spans:?}"
        );
    }
    let most = spans
        .iter()
        .map(|(a, _)| spans.iter().filter(|(b, e)| b <= a && a <= e).count())
        .max()
        .unwrap();
    assert!(most <= 4, "{most} targets at once: {spans:?}");

    // A contract while one target has not backfilled 0003 is refused, and no target is touched.
    f.add("0003_drop_note.sql", DROP_NOTE);
    // Only the first 23 targets expand 0003: the last one is left behind by a fleet of its own.
    std::fs::write(
        f.dir.join("partial.toml"),
        (0..23)
            .map(|i| format!("[[target]]\nname = \"t{i}\"\nurl_env = \"MIGRATE_FLEET_T{i}\"\n"))
            .collect::<String>(),
    )
    .unwrap();
    let mut behind = f.command_with("partial.toml", &["expand"]);
    for i in 0..23 {
        behind.env(format!("MIGRATE_FLEET_T{i}"), f.url(i));
    }
    ok(&behind.output().unwrap());
    let out = f.run(&["contract"]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("{}: 0003_drop_note is pending", f.names[23])),
        "{said}"
    );
    for i in 0..24 {
        assert!(f.has_column(i, "note"), "target {i} was contracted: {said}");
        assert_ne!(
            f.phase_of(i, "0001_items").as_deref(),
            Some("complete"),
            "target {i}"
        );
    }

    ok(&f.run(&["expand"]));
    ok(&f.run(&["contract"]));
    for i in 0..24 {
        assert!(!f.has_column(i, "note"), "target {i}");
        for (name, phase) in f.phases(i) {
            assert_eq!(phase, "complete", "target {i} {name}");
        }
    }
    // One status for the fleet: a row per target, its phase per migration.
    let out = f.run(&["status", "--format", "json"]);
    ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = status.as_array().unwrap();
    assert_eq!(targets.len(), 24);
    for (t, name) in targets.iter().zip(&f.names) {
        assert_eq!(t["target"], name.as_str());
        let phases: Vec<&str> = t["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["phase"].as_str().unwrap())
            .collect();
        assert_eq!(phases, ["complete", "complete", "complete"], "{t}");
    }
}

/// A target whose table is locked fails its expand; the rollout stops there: no new target
/// starts, running ones stop at a checkpoint, and the summary names the target. Once the lock
/// is gone, the same command finishes every target.
#[test]
fn a_held_lock_stops_the_rollout_naming_the_target_and_a_rerun_finishes() {
    let config = "lock_timeout = \"50ms\"\nlock_retries = 1\nlock_retry_pause = \"20ms\"\n";
    let f = Fleet::new("lock", 24, "parallel = 4\n", config);
    ok(&f.run(&["expand"]));
    f.add("0002_total.sql", TOTAL);
    let blocked = 9;
    let url = f.url(blocked);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = PgConnection::connect(&url).await.unwrap();
            c.execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE; SELECT count(*) FROM items")
                .await
                .unwrap();
            held_tx.send(()).unwrap();
            let _ = rx.recv();
            c.execute("ROLLBACK").await.unwrap();
        });
    });
    held_rx.recv().unwrap();
    let out = f.run(&["expand"]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("failed       {}: lock timeout", f.names[blocked])),
        "{said}"
    );
    let mut untouched = 0;
    for i in (0..24).filter(|i| *i != blocked) {
        match f.phase_of(i, "0002_total").as_deref() {
            Some("backfilled") => assert_eq!(f.wrong_totals(i), 0, "target {i}"),
            None => untouched += 1,
            Some(p) => {
                // Stopped at a checkpoint: no error recorded, resumable.
                let err = &f.query(
                    i,
                    "SELECT last_error FROM migrate.migrations WHERE name = '0002_total'",
                )[0][0];
                assert!(err.is_none(), "target {i} is {p} with an error: {err:?}");
            }
        }
    }
    // The failure stopped new targets from starting: the last ones were never touched.
    assert!(untouched > 0, "every target was started\n{said}");
    assert_eq!(f.phase_of(23, "0002_total"), None, "{said}");
    tx.send(()).unwrap();
    holder.join().unwrap();
    ok(&f.run(&["expand"]));
    f.assert_all_backfilled();
}

/// `kill -9` of the rollout while targets are mid-backfill; the rerun ends every target just
/// as a rollout that was never killed.
#[test]
fn a_rollout_killed_mid_way_ends_the_same_after_a_rerun() {
    let config = "[backfill]\nbatch_rows = 200\npause = \"10ms\"\n";
    let f = Fleet::new("kill", 24, "parallel = 4\n", config);
    ok(&f.run(&["expand"]));
    f.add("0002_total.sql", TOTAL);
    let mut child = f
        .command(&["expand"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let done = (0..24)
            .filter(|i| f.phase_of(*i, "0002_total").as_deref() == Some("backfilled"))
            .count();
        if done >= 6 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rollout ended before the kill"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let unfinished = (0..24)
        .filter(|i| f.phase_of(*i, "0002_total").as_deref() != Some("backfilled"))
        .count();
    assert!(unfinished > 0, "every target was done before the kill");
    ok(&f.run(&["expand"]));
    f.assert_all_backfilled();
    for i in 0..24 {
        let cols: i64 = f.query(
            i,
            "SELECT count(*)::text FROM pg_attribute WHERE attrelid = 'public.items'::regclass AND attname = 'total' AND NOT attisdropped",
        )[0][0]
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cols, 1, "target {i}");
    }
}

/// One target's record of an applied file differs from the file: the rollout is refused with
/// that target named, and no target runs the new migration.
#[test]
fn a_changed_file_on_one_target_refuses_the_rollout_before_any_target_is_touched() {
    let f = Fleet::new("sum", 24, "", "");
    ok(&f.run(&["expand"]));
    let changed = 7;
    f.query(
        changed,
        "UPDATE migrate.migrations SET checksum = 'edited' WHERE name = '0001_items' RETURNING name",
    );
    f.add("0002_total.sql", TOTAL);
    let out = f.run(&["expand"]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("{}: 0001_items file changed", f.names[changed])),
        "{said}"
    );
    for i in 0..24 {
        assert_eq!(f.phase_of(i, "0002_total"), None, "target {i}");
        assert!(!f.has_column(i, "total"), "target {i}");
    }
}

/// A fleet file that names an unset variable, or a canary that is not a target, is refused
/// naming the file and the fix; nothing connects.
#[test]
fn a_bad_fleet_file_is_refused_naming_what_to_fix() {
    let dir = common::project(
        "migrate-fleet",
        "bad",
        &[
            ("0001_a.sql", "CREATE TABLE a (id int PRIMARY KEY);\n"),
            (
                "unset.toml",
                "[[target]]\nname = \"main\"\nurl_env = \"MIGRATE_FLEET_SURELY_UNSET\"\n",
            ),
            (
                "canary.toml",
                "canary = [\"nope\"]\n[[target]]\nname = \"main\"\nurl_env = \"MIGRATE_FLEET_SET\"\n",
            ),
        ],
    );
    let run = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(["expand", "--fleet", dir.join(file).to_str().unwrap()])
            .args(["--dir", dir.to_str().unwrap()])
            .env(
                "MIGRATE_FLEET_SET",
                "postgres://nobody:secret@127.0.0.1:1/x",
            )
            .env_remove("MIGRATE_FLEET_SURELY_UNSET")
            .output()
            .unwrap()
    };
    let out = run("unset.toml");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("unset.toml"), "{said}");
    assert!(
        said.contains("MIGRATE_FLEET_SURELY_UNSET is not set"),
        "{said}"
    );
    let out = run("canary.toml");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("canary `nope` is not one of the fleet's targets"),
        "{said}"
    );
    assert!(!said.contains("secret"), "{said}");
}

/// Stages with a watch window: once the canary's stage is done, the guard watches the canary;
/// its app starts failing (a bad release: hundreds of failed transactions a second) during
/// the window, and the rollout stops before it widens, naming the target and the signal, with
/// every later target untouched. Once the app is healthy, a rerun goes through every stage.
#[test]
fn a_target_that_turns_bad_in_its_watch_window_stops_the_rollout_before_it_widens() {
    let f = Fleet::new(
        "stages",
        4,
        "stages = [1, \"50%\", \"100%\"]\nwatch = \"6s\"\n",
        "",
    );
    f.add("0002_total.sql", TOTAL);
    let child = f
        .command(&["expand"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while f.phase_of(0, "0002_total").as_deref() != Some("backfilled") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the canary never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = f.url(0);
    let failed = f.rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        let (mut failed, t) = (0, Instant::now());
        while t.elapsed() < Duration::from_secs(5) {
            if sqlx::raw_sql("SELECT 1 / 0").execute(&mut c).await.is_err() {
                failed += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        failed
    });
    assert!(failed > 500, "only {failed} failed transactions");
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("stopping the rollout before it widens"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "halted       before the next stage, a target done turned bad: {}: rollbacks",
            f.names[0]
        )),
        "{said}"
    );
    for i in 1..4 {
        assert!(f.phases(i).is_empty(), "target {i} was touched: {said}");
    }
    let watched = f.query(
        0,
        "SELECT command, action, signal FROM migrate.guard_events WHERE action = 'pause'",
    );
    assert_eq!(
        watched,
        [[
            Some("watch".to_string()),
            Some("pause".to_string()),
            Some("rollbacks".to_string())
        ]],
        "{said}"
    );
    // Healthy again: the rerun watches the canary, then the wider stages, and is done.
    let out = f.run(&["expand"]);
    ok(&out);
    let said = text(&out);
    assert!(said.contains("stage 1 done (1 of 4 targets)"), "{said}");
    assert!(said.contains("stage 2 done (2 of 4 targets)"), "{said}");
    f.assert_all_backfilled();
}
