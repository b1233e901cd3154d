//! `migrate expand`, `contract` and `abort` through the binary, against a real PostgreSQL:
//! both app shapes between expand and contract, refusals that change nothing, abort, and a
//! failure injected at every checkpoint in turn giving the same end state as a clean run.

mod common;

use common::{ok, TestDb};
use sqlx::{Connection, PgConnection, Row};
use std::path::Path;
use std::process::Output;

fn project(tag: &str, files: &[(&str, &str)]) -> common::TempDir {
    common::project("migrate-run", tag, files)
}

fn example_project(tag: &str) -> common::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations-example");
    let mut files: Vec<(String, String)> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    // Rows to move: a seed migration right after the tables are created.
    files.insert(
        1,
        (
            "0001_seed.sql".into(),
            "INSERT INTO users (name, email, age) SELECT 'user ' || g, 'u' || g || '@x', g FROM generate_series(1, 25000) g;\n\
             INSERT INTO users (name, age) VALUES ('no email', 1);\n\
             INSERT INTO orders (user_id, total) SELECT id, id FROM users ORDER BY id LIMIT 100;\n\
             INSERT INTO events (id) SELECT g FROM generate_series(1, 10) g;\n"
                .into(),
        ),
    );
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    project(tag, &refs)
}

fn run(db: &TestDb, dir: &Path, args: &[&str], failpoint: Option<&str>) -> Output {
    common::migrate_in(&db.url, dir, args, failpoint)
}

fn phases(db: &TestDb, dir: &Path) -> Vec<(String, String)> {
    let o = run(db, dir, &["status", "--format", "json"], None);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["phase"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Everything about the public schema that a migration can change.
fn schema_signature(db: &TestDb) -> String {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query(
            "SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
               FROM information_schema.columns WHERE table_schema = 'public'
             UNION ALL SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace
             UNION ALL SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
             UNION ALL SELECT 'trg ' || tgname FROM pg_trigger WHERE NOT tgisinternal
             UNION ALL SELECT 'view ' || viewname FROM pg_views WHERE schemaname = 'public'
             UNION ALL SELECT 'rows ' || count(*) FROM users
             UNION ALL SELECT 'filled ' || count(*) FROM users WHERE full_name IS NOT NULL AND public_id IS NOT NULL
             ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n")
    })
}

#[test]
fn expand_keeps_both_shapes_working_and_contract_finishes() {
    let db = TestDb::new();
    let dir = project(
        "rename",
        &[
            ("0001_users.sql", "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);\n"),
            ("0002_seed.sql", "INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 30000) g;\n"),
            ("0003_rename.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;\n"),
            // The two physical columns of an app that cannot set search_path.
            ("migrate.toml", "views = false\n"),
        ],
    );
    ok(&run(&db, &dir, &["expand"], None));
    assert!(phases(&db, &dir).iter().all(|(_, p)| p == "backfilled"));
    db.exec("INSERT INTO users (name) VALUES ('old app'); INSERT INTO users (full_name) VALUES ('new app');");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let differ: i64 =
            sqlx::query("SELECT count(*) FROM users WHERE name IS DISTINCT FROM full_name")
                .fetch_one(&mut c)
                .await
                .unwrap()
                .get(0);
        assert_eq!(differ, 0, "every row, old and new, has both columns equal");
    });
    ok(&run(&db, &dir, &["contract"], None));
    assert!(phases(&db, &dir).iter().all(|(_, p)| p == "complete"));
    db.exec("INSERT INTO users (full_name) VALUES ('after contract')");
    let sig = schema_signature_of(&db, "users");
    assert!(
        sig.contains("full_name") && !sig.contains(".name "),
        "{sig}"
    );
}

fn schema_signature_of(db: &TestDb, table: &str) -> String {
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query("SELECT table_name || '.' || column_name || ' ' FROM information_schema.columns WHERE table_name = $1")
            .bind(table)
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    })
}

#[test]
fn refusals_change_nothing() {
    let db = TestDb::new();
    let dir = project(
        "refuse",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
            ),
            ("0002_bad.sql", "VACUUM FULL users;\n"),
        ],
    );
    let o = run(&db, &dir, &["expand"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0002_bad cannot run safely") && err.contains("vacuum-full"),
        "{err}"
    );
    let p = phases(&db, &dir);
    assert_eq!(p[1].1, "pending", "{p:?}");

    // Contract before the migration is expanded is refused, naming it.
    std::fs::write(
        dir.join("0002_bad.sql"),
        "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    )
    .unwrap();
    let o = run(&db, &dir, &["contract"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0002_bad is pending"));

    // A file changed after expand is refused with both checksums.
    ok(&run(&db, &dir, &["expand"], None));
    std::fs::write(
        dir.join("0002_bad.sql"),
        "ALTER TABLE users RENAME COLUMN name TO display_name;\n",
    )
    .unwrap();
    let o = run(&db, &dir, &["contract"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("changed after it was backfilled") && err.contains("recorded checksum"),
        "{err}"
    );
}

#[test]
fn abort_brings_the_old_shape_back_and_leaves_nothing_of_the_expand() {
    let db = TestDb::new();
    let dir = project(
        "abort",
        &[
            ("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, name text, age int);\n"),
            ("0002_change.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users ADD COLUMN note text;\nCREATE INDEX users_age_idx ON users (age);\n"),
        ],
    );
    db.exec("CREATE TABLE IF NOT EXISTS dummy (a int)");
    ok(&run(&db, &dir, &["expand"], None));
    let before_abort = schema_signature_of(&db, "users");
    assert!(
        before_abort.contains("full_name") && before_abort.contains("age_new"),
        "{before_abort}"
    );
    ok(&run(&db, &dir, &["abort", "0002_change"], None));
    let after = schema_signature_of(&db, "users");
    assert!(
        !after.contains("full_name") && !after.contains("age_new") && !after.contains("note"),
        "{after}"
    );
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let leftovers: i64 = sqlx::query("SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) + (SELECT count(*) FROM pg_indexes WHERE indexname = 'users_age_idx')")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
        assert_eq!(leftovers, 0);
    });
    db.exec("INSERT INTO users (id, name, age) VALUES (1, 'old app', 3)");
    assert_eq!(phases(&db, &dir)[1].1, "aborted");
}

/// Stops the process after every checkpoint in turn (expand, backfill, contract steps of
/// every example migration), reruns, and compares the end state with an uninterrupted run.
#[test]
fn a_run_killed_after_any_checkpoint_resumes_to_the_same_end_state() {
    let clean = TestDb::new();
    let dir = example_project("kill");
    ok(&run(&clean, &dir, &["expand"], None));
    ok(&run(&clean, &dir, &["contract"], None));
    let expected = schema_signature(&clean);
    assert!(expected.contains("filled 25"), "{expected}");

    let db = TestDb::new();
    let mut injected = 0;
    for (command, label) in [
        ("expand", "expand"),
        ("expand", "backfill"),
        ("contract", "contract"),
    ] {
        for step in 1..=8 {
            // Each run stops at the next migration that reaches this step; rerun until none does.
            loop {
                let o = run(&db, &dir, &[command], Some(&format!("{label}:{step}")));
                match o.status.code() {
                    Some(86) => injected += 1,
                    Some(0) => break,
                    _ => panic!(
                        "{command} {label}:{step}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ),
                }
            }
        }
    }
    ok(&run(&db, &dir, &["expand"], None));
    ok(&run(&db, &dir, &["contract"], None));
    assert!(injected >= 20, "only {injected} failures were injected");
    assert_eq!(schema_signature(&db), expected);
    eprintln!("{injected} injected failures, end state identical");
}

/// Backfills walk composite, uuid and text primary keys in batches, and a run killed after a
/// batch resumes from the saved cursor: every row right, no batch done twice.
#[test]
fn backfills_walk_any_key_and_resume_after_a_kill_mid_backfill() {
    let db = TestDb::new();
    let dir = project(
        "keys",
        &[
            (
                "0001_tables.sql",
                "CREATE TABLE tenant_items (tenant int, item text, name text, PRIMARY KEY (tenant, item));
                 INSERT INTO tenant_items SELECT g % 7, 'item ' || g, 'name ' || g FROM generate_series(1, 25000) g;
                 CREATE TABLE docs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text);
                 INSERT INTO docs (title) SELECT 'doc ' || g FROM generate_series(1, 25000) g;
                 CREATE TABLE tags (code text PRIMARY KEY, label text);
                 INSERT INTO tags SELECT 'c' || g, 'label ' || g FROM generate_series(1, 25000) g;\n",
            ),
            (
                "0002_renames.sql",
                "ALTER TABLE tenant_items RENAME COLUMN name TO full_name;
                 ALTER TABLE docs RENAME COLUMN title TO heading;
                 ALTER TABLE tags RENAME COLUMN label TO caption;\n",
            ),
            ("migrate.toml", "views = false\n[backfill]\nbatch_rows = 10000\n"),
        ],
    );
    // 25,000 rows are three batches per table: stop after every second batch until done.
    let mut kills = 0;
    loop {
        let o = run(&db, &dir, &["expand"], Some("batch:2"));
        match o.status.code() {
            Some(86) => kills += 1,
            Some(0) => break,
            _ => panic!("{}", String::from_utf8_lossy(&o.stderr)),
        }
        assert!(kills < 20, "no progress");
    }
    assert!(kills >= 3, "only {kills} kills");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        for (t, a, b) in [
            ("tenant_items", "name", "full_name"),
            ("docs", "title", "heading"),
            ("tags", "label", "caption"),
        ] {
            let wrong: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {t} WHERE {a} IS DISTINCT FROM {b}"
            )))
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
            assert_eq!(wrong, 0, "{t}");
        }
    });
    let o = run(&db, &dir, &["status", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["phase"], "backfilled");
    assert_eq!(
        v[1]["rows_done"], 75000,
        "each row copied once, no batch repeated"
    );
    ok(&run(&db, &dir, &["contract"], None));
}

/// A new file that sorts before an applied one, and a file that does not parse: each refused
/// with a clear message, the database and the metadata as they were.
#[test]
fn out_of_order_and_malformed_files_are_refused_changing_nothing() {
    let db = TestDb::new();
    let dir = project(
        "order",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
            ),
            (
                "0003_email.sql",
                "ALTER TABLE users ADD COLUMN email text;\n",
            ),
        ],
    );
    ok(&run(&db, &dir, &["expand"], None));
    let before = (phases(&db, &dir), schema_signature_of(&db, "users"));

    std::fs::write(
        dir.join("0002_age.sql"),
        "ALTER TABLE users ADD COLUMN age int;\n",
    )
    .unwrap();
    let o = run(&db, &dir, &["expand"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0002_age is new but sorts before 0003_email"),
        "{err}"
    );
    std::fs::remove_file(dir.join("0002_age.sql")).unwrap();
    assert_eq!(
        (phases(&db, &dir), schema_signature_of(&db, "users")),
        before
    );

    std::fs::write(
        dir.join("0004_broken.sql"),
        "ALTER TABLE users ADD COLUMN nickname text;\nALTER TABLE users ADD COLUMN;\n",
    )
    .unwrap();
    let o = run(&db, &dir, &["expand"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0004_broken.sql:2") && err.contains("syntax-error"),
        "names the file and line: {err}"
    );
    let now = (phases(&db, &dir), schema_signature_of(&db, "users"));
    assert_eq!(now.1, before.1, "nothing of the broken file ran");
    assert_eq!(now.0.last().unwrap().1, "pending");
}

/// `kill -9` at random moments (not just at checkpoints) through expand, backfill and
/// contract of every example migration: each killed run is followed by another, and the end
/// state equals an uninterrupted run's, every row filled.
#[test]
fn random_kill_9_through_expand_backfill_and_contract_loses_nothing() {
    let clean = TestDb::new();
    let dir = example_project("sigkill");
    std::fs::write(dir.join("migrate.toml"), "[backfill]\nbatch_rows = 2000\n").unwrap();
    ok(&run(&clean, &dir, &["expand"], None));
    ok(&run(&clean, &dir, &["contract"], None));
    let expected = schema_signature(&clean);

    let mut kills = 0;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    // Three databases, each migrated through kills at different moments.
    for _round in 0..3 {
        let db = TestDb::new();
        for command in ["expand", "contract"] {
            let mut attempts = 0;
            loop {
                attempts += 1;
                assert!(attempts < 60, "{command} never finished");
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // The window widens with each attempt, so a run that needs longer than the
                // first windows to reach its next checkpoint (a busy machine) still ends.
                let delay = std::time::Duration::from_millis(20 + seed % (300 + 50 * attempts));
                let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
                    .args([
                        command,
                        "--database-url",
                        &db.url,
                        "--dir",
                        dir.to_str().unwrap(),
                    ])
                    .args(["--config", dir.join("migrate.toml").to_str().unwrap()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                std::thread::sleep(delay);
                match child.try_wait().unwrap() {
                    Some(status) => {
                        let out = child.wait_with_output().unwrap();
                        assert!(
                            status.success(),
                            "{command}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        break;
                    }
                    None => {
                        child.kill().unwrap(); // SIGKILL
                        child.wait().unwrap();
                        kills += 1;
                    }
                }
            }
        }
        assert_eq!(schema_signature(&db), expected);
    }
    assert!(kills >= 10, "only {kills} kills landed");
    eprintln!("{kills} kill -9s, end state identical");
}
