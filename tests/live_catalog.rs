//! `migrate plan --database-url`: the current schema comes from a live database.

mod common;

use common::{migrate, rules_of, TestDb};
use std::path::PathBuf;
use std::process::Output;

fn rules(o: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    rules_of(&v)
}

/// A folder holding one migration, and the migration's path.
fn migration(name: &str, sql: &str) -> (common::TempDir, PathBuf) {
    let dir = common::TempDir::new(&format!("migrate-live-{name}"));
    let file = dir.join("0001_change.sql");
    std::fs::write(&file, sql).unwrap();
    (dir, file)
}

#[test]
fn live_types_and_validated_checks_silence_safe_changes() {
    let db = TestDb::new();
    db.exec(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email varchar(50), nick text);
         ALTER TABLE accounts ADD CONSTRAINT accounts_nick_nn CHECK (nick IS NOT NULL) NOT VALID;
         ALTER TABLE accounts VALIDATE CONSTRAINT accounts_nick_nn;",
    );
    let (_dir, file) = migration("types", "ALTER TABLE accounts ALTER COLUMN email TYPE varchar(100);\nALTER TABLE accounts ALTER COLUMN nick SET NOT NULL;\n");
    let f = file.to_str().unwrap();

    // Without the database, the current type and the check are unknown: both are flagged.
    let offline = rules(&migrate(&["plan", "--format", "json", f]));
    assert!(
        offline.contains(&"changing-column-type".to_string()),
        "{offline:?}"
    );
    assert!(
        offline.contains(&"setting-not-null".to_string()),
        "{offline:?}"
    );

    // With it, widening varchar does not rewrite and the validated check proves NOT NULL.
    let online = rules(&migrate(&[
        "plan",
        "--format",
        "json",
        "--database-url",
        &db.url,
        f,
    ]));
    assert!(
        !online.contains(&"changing-column-type".to_string()),
        "{online:?}"
    );
    assert!(
        !online.contains(&"setting-not-null".to_string()),
        "{online:?}"
    );
}

#[test]
fn live_indexes_satisfy_foreign_keys_and_unknown_tables_are_live() {
    let db = TestDb::new();
    db.exec(
        "CREATE TABLE teams (id bigint PRIMARY KEY);
         CREATE TABLE members (id bigint PRIMARY KEY, team_id bigint, \"Display Name\" text);
         CREATE INDEX members_team_idx ON members (team_id);",
    );
    let (_dir, file) = migration(
        "fk",
        "ALTER TABLE members ADD CONSTRAINT members_team_fk FOREIGN KEY (team_id) REFERENCES teams (id) NOT VALID;\nALTER TABLE members RENAME COLUMN \"Display Name\" TO display_name;\n",
    );
    // `views = false`: the rename's second column copies the live type.
    let config = file.with_file_name("migrate.toml");
    std::fs::write(&config, "views = false\n").unwrap();
    let o = migrate(&[
        "plan",
        "--format",
        "json",
        "--explain",
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        &db.url,
        file.to_str().unwrap(),
    ]);
    let r = rules(&o);
    assert!(!r.contains(&"fk-without-index".to_string()), "{r:?}");
    assert!(r.contains(&"renaming-column".to_string()), "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sql = v["plans"][0]["rewrites"][1]["steps"][0]["sql"]
        .as_str()
        .unwrap();
    // The new column copies the live type, in the same transaction as its sync triggers (whose
    // function comes first, before the ALTER takes its lock); the quoted name survives into the
    // generated SQL.
    assert!(
        sql.starts_with("CREATE FUNCTION")
            && sql.contains("ALTER TABLE members ADD COLUMN display_name text;\n"),
        "{sql}"
    );
    assert!(sql.contains("NEW.\"Display Name\""), "{sql}");
}

#[test]
fn an_unreachable_server_is_a_clear_error_that_never_shows_the_password() {
    // Nothing listens on port 1: the error must name the server, and mask the password.
    let url = "postgres://someone:hunter2-secret@127.0.0.1:1/whatever";
    let (_dir, file) = migration("pw", "SELECT 1;");
    let o = migrate(&["plan", "--database-url", url, file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
    assert!(err.contains("someone:***@"), "{err}");
}
