//! Version schemas against a real PostgreSQL: `baseline` makes one and `migrate latest` prints
//! it, and the views give a role no more than the tables do: table grants, column grants and
//! row-level security (the views are `security_invoker` from PostgreSQL 15).

mod common;

use common::TestDb;
use sqlx::{Connection, PgConnection};

fn migrate(db: &TestDb, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .args(["--database-url", &db.url, "--dir", dir.to_str().unwrap()])
        .env_remove("MIGRATE_FAILPOINT")
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Drops the test's role when the test ends, passed or not (roles outlive the database).
struct Role {
    url: String,
    name: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect(&self.url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP OWNED BY \"{0}\"; DROP ROLE \"{0}\"",
                    self.name
                )))
                .execute(&mut c)
                .await;
            }
        });
    }
}

async fn server_major(url: &str) -> u32 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let n: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(&mut c)
        .await
        .unwrap();
    n.parse::<u32>().unwrap() / 10_000
}

#[test]
fn baseline_makes_a_version_whose_views_grant_no_more_than_the_tables() {
    let db = TestDb::new();
    // Roles are the cluster's: one of this test's own, dropped at the end.
    let role = Role {
        url: db.url.clone(),
        name: format!("reader_{}", db.name),
    };
    let role = &role.name;
    db.exec(&format!(
        "CREATE TABLE users (id bigint PRIMARY KEY, name text);
         CREATE TABLE payments (id bigint PRIMARY KEY, amount int);
         INSERT INTO users VALUES (1, 'a');
         INSERT INTO payments VALUES (1, 10);
         CREATE TABLE notes (id bigint PRIMARY KEY, owner text, body text);
         INSERT INTO notes VALUES (1, 'me', 'mine'), (2, 'other', 'theirs');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE TABLE secrets (id bigint PRIMARY KEY, public_part text, hidden text);
         INSERT INTO secrets VALUES (1, 'p', 'h');
         CREATE ROLE \"{role}\" NOLOGIN;
         GRANT SELECT ON users, notes TO \"{role}\";
         CREATE POLICY mine ON notes FOR SELECT TO \"{role}\" USING (owner = 'me');
         GRANT SELECT (id, public_part) ON secrets TO \"{role}\";"
    ));
    let dir = common::project(
        "migrate-versions",
        &db.name,
        &[(
            "0001_schema.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY, name text);\nCREATE TABLE payments (id bigint PRIMARY KEY, amount int);\nCREATE TABLE notes (id bigint PRIMARY KEY, owner text, body text);\nCREATE TABLE secrets (id bigint PRIMARY KEY, public_part text, hidden text);\n",
        )],
    );
    if db.rt.block_on(server_major(&db.url)) < 15 {
        // A view runs as its owner before 15 and would bypass the notes' row security.
        let o = migrate(&db, &dir, &["baseline"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("notes has row-level security"), "{err}");
        return;
    }
    ok(&migrate(&db, &dir, &["baseline"]));
    let path = ok(&migrate(&db, &dir, &["latest"]));
    assert_eq!(path.trim(), "migrate_0001_schema, public");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT set_config('search_path', $1, false)")
            .bind(path.trim())
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE \"{role}\"")))
            .execute(&mut c)
            .await
            .unwrap();
        let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(name, "a");
        // Row security holds through the view: the role's policy shows its own note only.
        let notes: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
            .fetch_all(&mut c)
            .await
            .unwrap();
        assert_eq!(notes, ["mine"]);
        // Nothing the tables do not grant. A role with column grants only is denied the view
        // altogether: PostgreSQL checks every column the view reads.
        for denied in [
            "SELECT amount FROM payments",
            "UPDATE users SET name = 'b'",
            "INSERT INTO users (id) VALUES (2)",
            "DELETE FROM notes",
            "SELECT hidden FROM secrets",
            "SELECT public_part FROM secrets",
        ] {
            let err = sqlx::query(denied).execute(&mut c).await.unwrap_err();
            let code = err
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{denied}: {err}");
        }
        sqlx::raw_sql("RESET ROLE").execute(&mut c).await.unwrap();
        let views: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_views WHERE schemaname = 'migrate_0001_schema'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(views, 4);
    });
}
