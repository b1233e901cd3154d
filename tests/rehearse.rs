//! `migrate rehearse` on a real scratch database: a clean migration goes forward, back and
//! forward with the abort restoring every table and the end state what the files mean; an
//! abort that cannot restore — an explicit-phase file whose undo misses a step, a backfill
//! that overwrites values the old version reads — fails the rehearsal naming the table and the
//! difference.

mod common;

use common::{migrate_in, ok, project, text, TestDb};
use sqlx::{Connection, PgConnection};

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, age int);
INSERT INTO users SELECT g, 'user ' || g, g % 90 FROM generate_series(1, 5000) g;\n";

/// Runs `migrate rehearse --scratch-url` on `scratch` with `dir`'s migrations (the target
/// another database); the JSON report.
fn rehearse(scratch: &TestDb, dir: &std::path::Path) -> (Option<i32>, serde_json::Value, String) {
    let target = TestDb::new();
    let out = migrate_in(
        &target.url,
        dir,
        &[
            "rehearse",
            "--format",
            "json",
            "--scratch-url",
            &scratch.url,
        ],
        None,
    );
    let said = text(&out);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {said}"));
    (out.status.code(), report, said)
}

fn phase_of(db: &TestDb, name: &str) -> Option<String> {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT phase FROM migrate.migrations WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut c)
            .await
            .unwrap()
    })
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_clean_migration_goes_forward_back_and_forward_and_ends_as_the_files_mean() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "clean",
        &[
            ("0001_users.sql", USERS),
            (
                "0002_changes.sql",
                "-- migrate:no-transaction
                 ALTER TABLE users ADD COLUMN email text;
                 ALTER TABLE users ALTER COLUMN age TYPE bigint;
                 CREATE INDEX CONCURRENTLY users_name ON users (name);
                 ALTER TABLE users ADD CONSTRAINT users_age_positive CHECK (age >= 0);\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    let rollbacks = || -> i64 {
        db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(
                "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
            )
            .fetch_one(&mut c)
            .await
            .unwrap()
        })
    };
    let before = rollbacks();
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(strings(&r["migrations"]), ["0002_changes"]);
    // The probes' writes are undone to a savepoint in transactions that commit: rolled back,
    // every request counted as the app failing, and the guard paused the rehearsal for it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let requests: u64 = r["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert!(requests > 20, "{r:#}");
    assert!(
        rollbacks() - before < 10,
        "{} rollbacks for {requests} probe requests",
        rollbacks() - before
    );
    assert!(r["failed"].is_null(), "{r:#}");
    assert!(strings(&r["abort_differences"]).is_empty(), "{r:#}");
    assert!(strings(&r["end_differences"]).is_empty(), "{r:#}");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "as written (rolled back)",
            "expand + backfill",
            "abort",
            "expand + backfill again",
            "contract"
        ]
    );
    // The scratch database ends contracted.
    assert_eq!(phase_of(&db, "0002_changes").as_deref(), Some("complete"));
    // Every step is listed with the phase it ran in: forward, back and forward.
    let phases: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["migration"] == "0002_changes")
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    for p in ["expand", "backfill", "abort", "contract"] {
        assert!(phases.contains(&p), "no {p} step in {phases:?}");
    }
    assert_eq!(
        phases.iter().filter(|p| **p == "expand").count() % 2,
        0,
        "expand runs twice: {phases:?}"
    );
    // Both versions probed it and neither failed.
    let probes = r["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2, "{r:#}");
    assert!(
        probes
            .iter()
            .all(|p| p["failed"] == 0 && p["requests"].as_u64().unwrap() > 0),
        "{r:#}"
    );
}

#[test]
fn an_undo_that_misses_a_step_fails_naming_the_table_and_the_difference() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "undo",
        &[
            ("0001_users.sql", USERS),
            // A statistics target set in the expand section: nothing undoes it at abort.
            (
                "0002_default.sql",
                "-- migrate:expand
                 ALTER TABLE users ADD COLUMN email text;
                 ALTER TABLE users ALTER COLUMN age SET STATISTICS 500;\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(1), "{said}");
    // The abort refuses before it changes anything, naming what it cannot undo; the rehearsal
    // stops there and says so.
    let failed = r["failed"].as_str().unwrap_or_else(|| panic!("{r:#}"));
    assert!(
        failed.starts_with("abort of 0002_default:")
            && failed.contains("no undo for alter table users set statistics"),
        "{failed}"
    );
    assert_eq!(phase_of(&db, "0002_default").as_deref(), Some("backfilled"));
}

#[test]
fn a_default_set_at_expand_is_restored_by_the_abort() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "default",
        &[
            ("0001_users.sql", USERS),
            // A default on a column that had one, and on one added in the same statement.
            (
                "0002_defaults.sql",
                "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'nobody';
                 ALTER TABLE users ADD COLUMN currency text, ALTER COLUMN currency SET DEFAULT 'EUR';\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    db.exec("ALTER TABLE users ALTER COLUMN name SET DEFAULT 'anonymous'");
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(strings(&r["abort_differences"]).is_empty(), "{r:#}");
    assert!(strings(&r["end_differences"]).is_empty(), "{r:#}");
}

#[test]
fn a_backfill_that_overwrites_what_the_old_version_reads_fails_on_the_rows() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "overwrite",
        &[
            ("0001_users.sql", USERS),
            (
                "0002_upper.sql",
                "-- migrate:backfill
                 UPDATE users SET name = upper(name);\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(1), "{said}");
    let diffs = strings(&r["abort_differences"]);
    assert_eq!(diffs.len(), 1, "{r:#}");
    assert!(
        diffs[0].starts_with("public.users: the rows' values differ (same count, 5000"),
        "{diffs:?}"
    );
}

#[test]
fn the_scratch_must_not_be_the_target_nor_sized_when_given() {
    let db = TestDb::new();
    let dir = project("rehearse", "args", &[("0001_users.sql", USERS)]);
    let other = TestDb::new();
    let out = migrate_in(
        &db.url,
        &dir,
        &["rehearse", "--scratch-url", &other.url, "--sample", "0.5"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("--sample sizes the copy"),
        "{}",
        text(&out)
    );
    let out = migrate_in(&db.url, &dir, &["rehearse", "--sample", "2"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("at most 1"), "{}", text(&out));
    let out = migrate_in(&db.url, &dir, &["rehearse", "--scratch-url", &db.url], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is the target itself"),
        "{}",
        text(&out)
    );
}

/// Both app versions probe throughout (prepared `SELECT *` by key, and an `UPDATE` of a column
/// their version knows): a migration whose expand breaks the old version's writes — here a
/// trigger that refuses them — fails the rehearsal naming the version, the phase and the table.
#[test]
fn a_change_that_breaks_the_old_versions_writes_fails_on_its_probe() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "probe",
        &[
            ("0001_users.sql", USERS),
            (
                "0002_trigger.sql",
                "CREATE FUNCTION users_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'users are read-only now'; END $$;
                 CREATE TRIGGER users_frozen BEFORE UPDATE ON users
                     FOR EACH ROW EXECUTE FUNCTION users_frozen();\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(1), "{said}");
    let old = r["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["version"] == "old")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(old["failed"].as_u64().unwrap() > 0, "{r:#}");
    let first = old["errors"][0].as_str().unwrap();
    assert!(
        first.contains("users: ") && first.contains("users are read-only now"),
        "{first}"
    );
}

/// A schema with what a made copy must carry: an enum, a generated column, an identity, an
/// `updated_at` trigger, a chain of foreign keys whose children are sampled, a partitioned
/// table and a view.
const SHOP: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TABLE orgs (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO orgs (name) SELECT 'org ' || g FROM generate_series(1, 3000) g;
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id int NOT NULL REFERENCES orgs (id),
  name text NOT NULL, m mood DEFAULT 'ok', lower_name text GENERATED ALWAYS AS (lower(name)) STORED, updated_at timestamptz);
INSERT INTO users (org_id, name) SELECT 1 + g % 3000, 'User ' || g FROM generate_series(1, 20000) g;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint REFERENCES users (id), total numeric(10,2) CHECK (total >= 0));
INSERT INTO orders (user_id, total) SELECT 1 + (g * 7) % 20000, g % 1000 FROM generate_series(1, 30000) g;
CREATE TABLE events (at timestamptz NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_at ON events (at);
INSERT INTO events SELECT '2026-01-01'::timestamptz + g * interval '1 minute', 'k' FROM generate_series(1, 500) g;
CREATE VIEW recent_events AS SELECT at, kind FROM events WHERE at > '2026-06-01';\n";

/// Everything a rehearsal could write on the target: the rows of every table (metadata
/// included) and the shape of every column, constraint and index, as one text.
fn everything(db: &TestDb) -> String {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let mut out = String::new();
        for t in tables {
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
            )))
            .fetch_one(&mut c)
            .await
            .unwrap();
            out.push_str(&format!("{t}: {rows}\n"));
        }
        let shape: String = sqlx::query_scalar(
            "SELECT string_agg(x, E'\n' ORDER BY x) FROM (
               SELECT format('%s.%s %s %s', a.attrelid::regclass, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull) x
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
               UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
               UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
               WHERE c.relnamespace = 'public'::regnamespace) s",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        out + &shape
    })
}

/// The databases on the server whose name starts with `prefix`.
fn databases_like(db: &TestDb, prefix: &str) -> Vec<String> {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, $1)",
        )
        .bind(prefix)
        .fetch_all(&mut c)
        .await
        .unwrap()
    })
}

/// The prefix of the scratch databases a rehearsal of `db` makes (`migrate_rehearsal_` and
/// the first 30 characters of its name).
fn scratch_prefix(db: &TestDb) -> String {
    let base: String = db.name.chars().take(30).collect();
    format!("migrate_rehearsal_{base}_")
}

#[test]
fn without_a_scratch_url_a_copy_is_made_beside_the_target_which_is_never_written() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "made",
        &[
            ("0001_shop.sql", SHOP),
            (
                "0002_changes.sql",
                "-- migrate:no-transaction
                 ALTER TABLE orders ADD COLUMN note text;
                 ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);
                 CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_shop"], None));
    ok(&migrate_in(&db.url, &dir, &["contract", "0001_shop"], None));
    db.exec("ANALYZE");
    let before = everything(&db);
    let out = migrate_in(
        &db.url,
        &dir,
        &[
            "rehearse",
            "--format",
            "json",
            "--whole-below",
            "5000",
            "--sample",
            "0.1",
        ],
        None,
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["failed"].is_null() && r["abort_differences"] == serde_json::json!([]),
        "{r:#}"
    );
    assert_eq!(strings(&r["migrations"]), ["0002_changes"]);
    let copied = |t: &str| -> &serde_json::Value {
        r["scratch"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["table"] == t)
            .unwrap_or_else(|| panic!("{t} not copied: {r:#}"))
    };
    // Small tables whole; large ones sampled, with the rows their sample references fetched
    // so that every foreign key held (the copy adds the keys after the rows).
    assert_eq!(copied("public.orgs")["whole"], true);
    assert_eq!(copied("public.orgs")["rows"], 3000);
    assert_eq!(copied("public.events_2026")["rows"], 500);
    let orders = copied("public.orders");
    assert_eq!(orders["whole"], false, "{r:#}");
    let n = orders["rows"].as_i64().unwrap();
    assert!((300..30000).contains(&n), "orders sampled to {n}");
    assert_eq!(orders["orphans_left_out"], 0, "{r:#}");
    assert!(
        copied("public.users")["parents_added"].as_i64().unwrap() > 0,
        "{r:#}"
    );
    assert_eq!(copied("migrate.migrations")["whole"], true);
    // Both versions' probes ran through the updated_at trigger without changing a row.
    assert!(
        r["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["failed"] == 0),
        "{r:#}"
    );
    // Every step that scans or changes the rows of orders is measured (WAL, growth) and
    // projected onto the target's size of it, which is the target's own.
    let target_bytes: i64 = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT pg_total_relation_size('orders')")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    let p = &r["projection"];
    let t = p["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.orders")
        .unwrap_or_else(|| panic!("{p:#}"));
    assert_eq!(t["target_bytes"], target_bytes, "{p:#}");
    assert!(
        t["scratch_bytes"].as_i64().unwrap() < target_bytes / 2,
        "{p:#}"
    );
    let steps = r["steps"].as_array().unwrap();
    let backfill = steps
        .iter()
        .rfind(|s| s["phase"] == "backfill" && s["sized_by"] == "orders")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(backfill["wal_bytes"].as_i64().unwrap() > 0, "{backfill:#}");
    assert!(
        backfill["size_change"].as_i64().unwrap() > 0,
        "{backfill:#}"
    );
    assert!(
        backfill["projected_ms"].as_f64().unwrap() > backfill["ms"].as_f64().unwrap(),
        "{backfill:#}"
    );
    assert!(p["backfill_seconds"].as_f64().unwrap() > 0.0, "{p:#}");
    assert!(p["disk_bytes"].as_i64().unwrap() > 0, "{p:#}");
    // The copy is gone, and the target is as it was, rows and shape, metadata included: the
    // pending migration is still pending there.
    let name = r["scratch"]["database"].as_str().unwrap();
    assert!(name.starts_with(&scratch_prefix(&db)), "{name}");
    assert!(databases_like(&db, name).is_empty(), "{name} left behind");
    assert_eq!(everything(&db), before, "the target changed");
    assert_eq!(phase_of(&db, "0002_changes"), None);
}

#[test]
fn a_made_copy_is_refused_while_a_migration_is_in_flight_on_the_target() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "inflight",
        &[
            ("0001_users.sql", USERS),
            (
                "0002_email.sql",
                "ALTER TABLE users ADD COLUMN email text;\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_users"], None));
    let out = migrate_in(&db.url, &dir, &["rehearse"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("0001_users (backfilled) in flight on the target"),
        "{}",
        text(&out)
    );
    assert!(databases_like(&db, &scratch_prefix(&db)).is_empty());
}

#[test]
fn the_copy_of_a_killed_rehearsal_is_dropped_by_the_next_one() {
    let db = TestDb::new();
    let dir = project(
        "rehearse",
        "killed",
        &[
            ("0001_shop.sql", SHOP),
            (
                "0002_note.sql",
                "ALTER TABLE orders ADD COLUMN note text;\n",
            ),
        ],
    );
    ok(&migrate_in(&db.url, &dir, &["expand", "0001_shop"], None));
    ok(&migrate_in(&db.url, &dir, &["contract", "0001_shop"], None));
    let prefix = scratch_prefix(&db);
    // Killed (SIGKILL: nothing of it runs) as soon as its copy exists.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args([
            "rehearse",
            "--whole-below",
            "1000000",
            "--database-url",
            &db.url,
            "--dir",
        ])
        .arg(dir.to_str().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let leftover = loop {
        if let Some(n) = databases_like(&db, &prefix).pop() {
            break n;
        }
        assert!(t.elapsed().as_secs() < 60, "no scratch database appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rehearsal ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // Its sessions end as the server sees the connections close.
    let gone = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        for _ in 0..500 {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&leftover)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            if n == 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    });
    assert!(gone, "the killed rehearsal's sessions did not end");
    assert_eq!(
        databases_like(&db, &leftover),
        std::slice::from_ref(&leftover),
        "the kill left no copy to find"
    );
    let out = migrate_in(&db.url, &dir, &["rehearse", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The leftover is gone by name (this run dropped it, or another rehearsal on the server
    // did first), and so is this run's own copy.
    assert!(
        databases_like(&db, &prefix).is_empty(),
        "{:?}",
        databases_like(&db, &prefix)
    );
}

#[test]
fn with_a_fleet_the_copy_is_of_the_canary_and_github_gets_a_summary() {
    let (canary, other) = (TestDb::new(), TestDb::new());
    let dir = project(
        "rehearse",
        "fleet",
        &[
            ("0001_users.sql", USERS),
            (
                "0002_email.sql",
                "ALTER TABLE users ADD COLUMN email text;\n",
            ),
        ],
    );
    // Only the canary has 0001 applied: a copy of the other would rehearse both files.
    ok(&migrate_in(
        &canary.url,
        &dir,
        &["expand", "0001_users"],
        None,
    ));
    ok(&migrate_in(
        &canary.url,
        &dir,
        &["contract", "0001_users"],
        None,
    ));
    std::fs::write(
        dir.join("fleet.toml"),
        "canary = [\"c\"]\n[[target]]\nname = \"o\"\nurl_env = \"MIGRATE_REHEARSE_OTHER\"\n[[target]]\nname = \"c\"\nurl_env = \"MIGRATE_REHEARSE_CANARY\"\n",
    )
    .unwrap();
    let summary = dir.join("summary.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["rehearse", "--format", "github", "--fleet"])
        .arg(dir.join("fleet.toml"))
        .arg("--dir")
        .arg(&*dir)
        .env("MIGRATE_REHEARSE_OTHER", &other.url)
        .env("MIGRATE_REHEARSE_CANARY", &canary.url)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("## migrate rehearse: passed\n\n`0002_email`\n"),
        "{md}"
    );
    assert!(md.contains("| old | "), "{md}");
    assert!(md.contains("| 0002_email expand 1: "), "{md}");
    // The copy was the canary's (the other target's would have rehearsed 0001 as well, as
    // the summary's list shows), and it is gone.
    assert!(databases_like(&canary, &scratch_prefix(&canary)).is_empty());
    assert!(databases_like(&other, &scratch_prefix(&other)).is_empty());
}
