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
    let (code, r, said) = rehearse(&db, &dir);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(strings(&r["migrations"]), ["0002_changes"]);
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
fn the_scratch_must_not_be_the_target_and_must_be_given() {
    let db = TestDb::new();
    let dir = project("rehearse", "args", &[("0001_users.sql", USERS)]);
    let out = migrate_in(&db.url, &dir, &["rehearse"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--scratch-url"), "{}", text(&out));
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
