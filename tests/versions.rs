//! Version schemas against a real PostgreSQL: `baseline` makes one and `migrate latest` prints
//! it, and the views give a role no more than the tables do: table grants, column grants and
//! row-level security (the views are `security_invoker` from PostgreSQL 15).

mod common;

use common::{on_path, TestDb};
use sqlx::{Column, Connection, PgConnection, Row};

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

async fn server_major(url: &str) -> u32 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let n: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(&mut c)
        .await
        .unwrap();
    n.parse::<u32>().unwrap() / 10_000
}

/// Baseline makes an empty version schema (the version reads the tables themselves); the views
/// made for it before a later migration changes its tables give a role no more than the tables.
#[test]
fn baseline_makes_an_empty_version_whose_views_made_later_grant_no_more_than_the_tables() {
    let db = TestDb::new();
    // Roles are the cluster's: one of this test's own, dropped at the end.
    let roles = common::Roles {
        url: db.url.clone(),
        names: vec![format!("reader_{}", db.name)],
    };
    let role = &roles.names[0];
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
        &[
            (
                "0001_schema.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text);\nCREATE TABLE payments (id bigint PRIMARY KEY, amount int);\nCREATE TABLE notes (id bigint PRIMARY KEY, owner text, body text);\nCREATE TABLE secrets (id bigint PRIMARY KEY, public_part text, hidden text);\n",
            ),
            (
                "0002_more.sql",
                "ALTER TABLE users ADD COLUMN a text;\nALTER TABLE payments ADD COLUMN a text;\nALTER TABLE notes ADD COLUMN a text;\nALTER TABLE secrets ADD COLUMN a text;\n",
            ),
        ],
    );
    ok(&migrate(&db, &dir, &["baseline", "0001_schema"]));
    let path = ok(&migrate(&db, &dir, &["latest"]));
    assert_eq!(path.trim(), "migrate_0001_schema,public");
    let count_views = |schema: &str| -> i64 {
        db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM pg_views WHERE schemaname = $1")
                .bind(schema)
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    assert_eq!(
        count_views("migrate_0001_schema"),
        0,
        "the version reads the tables"
    );
    if db.rt.block_on(server_major(&db.url)) < 15 {
        // A view runs as its owner before 15 and would bypass the notes' row security: the
        // expand that would need one is refused before anything changes.
        let o = migrate(&db, &dir, &["expand"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("notes has row-level security"), "{err}");
        let added: i64 = db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.columns WHERE column_name = 'a'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap()
        });
        assert_eq!(added, 0, "nothing was changed");
        return;
    }
    ok(&migrate(&db, &dir, &["expand"]));
    let status: serde_json::Value =
        serde_json::from_str(&ok(&migrate(&db, &dir, &["status", "--format", "json"]))).unwrap();
    assert_eq!(status[0]["version_schema"], "migrate_0001_schema");
    assert_eq!(
        status[0]["views"],
        serde_json::json!(["notes", "payments", "secrets", "users"])
    );
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
    });
    // The new version reads the tables themselves.
    assert_eq!(count_views("migrate_0001_schema"), 4);
    assert_eq!(count_views("migrate_0002_more"), 0);
}

/// A pgbench client in prepared mode (`-M prepared`) on a version's `search_path`, running
/// `script` for `seconds`: started, not waited for.
fn pgbench(
    db: &TestDb,
    dir: &std::path::Path,
    tag: &str,
    script: &str,
    path: &str,
    seconds: u32,
) -> std::process::Child {
    let file = dir.join(format!("{tag}.pgbench"));
    std::fs::write(&file, script).unwrap();
    std::process::Command::new("pgbench")
        .args(["-M", "prepared", "-n", "-c", "2", "-T", &seconds.to_string(), "-f"])
        .arg(&file)
        .arg(&db.url)
        .env("PGOPTIONS", format!("-c search_path={path}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("pgbench is needed for this test (scripts/setup.sh installs PostgreSQL's client): {e}"))
}

/// Waits for a pgbench run; it must have run transactions and none may have failed (a client
/// that hits an error is aborted, and pgbench exits non-zero).
fn finished(who: &str, child: std::process::Child) {
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{who}: pgbench failed\n{out}\n{err}"
    );
    let processed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{who}: no transaction count\n{out}"));
    assert!(processed > 0, "{who}: no transaction ran\n{out}");
    assert!(!err.contains("ERROR"), "{who}: {err}");
}

#[test]
fn pgbench_prepared_clients_of_each_version_run_through_expand_and_contract() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-versions-pgbench",
        &db.name,
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, age integer);\nINSERT INTO users (name, age) SELECT 'u' || g, g % 90 FROM generate_series(1, 5000) g;\n",
            ),
            ("0002_rename.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;\n"),
            ("0003_age.sql", "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n"),
            ("0004_note.sql", "ALTER TABLE users ADD COLUMN note text;\n"),
        ],
    );
    ok(&migrate(&db, &dir, &["expand", "0001_users"]));
    let old_path = ok(&migrate(&db, &dir, &["latest"]));
    // The old version: `SELECT *` and writes in its own shape, prepared once per client and
    // executed again and again while every later migration expands.
    let old = pgbench(
        &db,
        &dir,
        "old",
        "\\set id random(1, 5000)\nSELECT * FROM users WHERE id = :id;\nUPDATE users SET name = 'old ' || :id, age = :id % 90 WHERE id = :id;\nINSERT INTO users (name, age) VALUES ('old', 7) RETURNING *;\n",
        old_path.trim(),
        6,
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    ok(&migrate(&db, &dir, &["expand"]));
    let new_path = ok(&migrate(&db, &dir, &["latest"]));
    assert_eq!(new_path.trim(), "migrate_0004_note,public");
    finished("old version through expand", old);
    // The new version, alone now: its statements prepared before contract, run through it.
    let new = pgbench(
        &db,
        &dir,
        "new",
        "\\set id random(1, 5000)\nSELECT * FROM users WHERE id = :id;\nUPDATE users SET full_name = 'new ' || :id, age = :id::bigint * 1000, note = 'n' WHERE id = :id;\nINSERT INTO users (full_name, age) VALUES ('new', 1) RETURNING *;\n",
        new_path.trim(),
        6,
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    ok(&migrate(&db, &dir, &["contract"]));
    finished("new version through contract", new);
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        // Every row has its name under the new column, and the ages the new version wrote.
        let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE full_name IS NULL")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(wrong, 0);
        let big: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE age >= 1000")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert!(big > 0, "the new version's ages are stored");
    });
}

/// Runs prepared statements (sqlx caches them on the connection), binding `n` where used.
async fn run_prepared(c: &mut PgConnection, who: &str, statements: &[&str], n: i64) {
    for s in statements {
        let q = sqlx::query(sqlx::AssertSqlSafe(s.to_string()));
        let q = if s.contains("$1") { q.bind(n) } else { q };
        q.fetch_all(&mut *c)
            .await
            .unwrap_or_else(|e| panic!("{who}, round {n}: {e}\n{s}"));
    }
}

#[test]
fn a_partitioned_table_is_read_through_its_parent_view_by_the_old_version_across_a_rename() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-versions-partitioned",
        &db.name,
        &[
            (
                "0001_events.sql",
                "CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events SELECT g, date '2026-01-01' + g % 300, 'k' || g FROM generate_series(1, 2000) g;\n",
            ),
            ("0002_rename.sql", "ALTER TABLE events RENAME COLUMN kind TO category;\n"),
            ("0003_note.sql", "ALTER TABLE events ADD COLUMN note text;\n"),
        ],
    );
    ok(&migrate(&db, &dir, &["expand", "0001_events"]));
    let old_path = ok(&migrate(&db, &dir, &["latest"]));
    let old_sql: &[&str] = &[
        "SELECT * FROM events WHERE id = $1",
        "INSERT INTO events (id, at, kind) VALUES (10000 + $1, date '2026-06-01', 'old') RETURNING *",
        "UPDATE events SET kind = 'old upd' WHERE id = $1",
    ];
    let new_sql: &[&str] = &[
        "SELECT * FROM events WHERE id = $1",
        "INSERT INTO events (id, at, category, note) VALUES (20000 + $1, date '2026-07-01', 'new', 'n') RETURNING *",
        "UPDATE events SET category = 'new upd', note = 'u' WHERE id = $1 + 100",
    ];
    db.rt.block_on(async {
        let mut old = on_path(&db, old_path.trim()).await;
        run_prepared(&mut old, "old before expand", old_sql, 1).await;
        ok(&migrate(&db, &dir, &["expand"]));
        let new_path = ok(&migrate(&db, &dir, &["latest"]));
        let mut new = on_path(&db, new_path.trim()).await;
        for n in 2..20 {
            run_prepared(&mut old, "old after expand", old_sql, n).await;
            run_prepared(&mut new, "new beside it", new_sql, n).await;
        }
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let views = |schema: &'static str| {
            sqlx::query_scalar::<_, String>(
                "SELECT viewname::text FROM pg_views WHERE schemaname = $1 ORDER BY 1",
            )
            .bind(schema)
        };
        // The old version: one view, of the parent (the partition has none). The new version
        // reads the table, renamed and with its new column at expand.
        let old_views = views("migrate_0001_events").fetch_all(&mut c).await.unwrap();
        assert_eq!(old_views, ["events"]);
        let new_views = views("migrate_0003_note").fetch_all(&mut c).await.unwrap();
        assert_eq!(new_views, Vec::<String>::new());
        drop(old);
        ok(&migrate(&db, &dir, &["contract"]));
        for n in 20..30 {
            run_prepared(&mut new, "new after contract", new_sql, n).await;
        }
        let new_views = views("migrate_0003_note").fetch_all(&mut c).await.unwrap();
        assert_eq!(new_views, Vec::<String>::new());
        let renamed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'events_2026' AND column_name = 'category'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(renamed, 1);
        // The old version's writes and the new one's both landed under the one column.
        let written: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE category IN ('old', 'old upd', 'new', 'new upd')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(written >= 19 + 28, "{written}");
    });
}

#[test]
fn a_managed_schema_that_does_not_exist_is_refused_before_anything_changes() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-versions-schemas",
        &db.name,
        &[
            ("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n"),
            ("migrate.toml", "schemas = [\"public\", \"app\"]\n"),
        ],
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args([
            "expand",
            "--database-url",
            &db.url,
            "--dir",
            dir.to_str().unwrap(),
        ])
        .arg("--config")
        .arg(dir.join("migrate.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("schema app (in `schemas` of migrate.toml) does not exist"),
        "{err}"
    );
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let state: (Option<String>, i64) = sqlx::query_as(
            "SELECT to_regclass('public.t')::text, (SELECT count(*) FROM migrate.migrations)",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(state, (None, 0), "no table made, no migration recorded");
    });
}

/// Item 7 through a prepared `SELECT *`: its columns, in order.
async fn read_item(app: &mut PgConnection) -> Vec<String> {
    let row = sqlx::query("SELECT * FROM items WHERE id = $1")
        .bind(7i64)
        .fetch_one(app)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("id"), 7);
    assert_eq!(row.get::<String, _>("name"), "item 7");
    row.columns().iter().map(|c| c.name().to_string()).collect()
}

/// A type change swaps a new column into the table, which PostgreSQL puts last. The new version
/// sees the column there from expand on, through a view for the window, so contract's swap
/// changes nothing it reads: the view then equals the table and goes, and a statement it
/// prepared in the window goes on through the table.
#[test]
fn a_type_change_shows_the_new_version_the_column_where_contract_puts_it() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-versions-order",
        &db.name,
        &[
            (
                "0001_items.sql",
                "CREATE TABLE items (id integer PRIMARY KEY, name text, price int);
INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 100) g;\n",
            ),
            (
                "0002_bigint.sql",
                "ALTER TABLE items ALTER COLUMN id TYPE bigint;\n",
            ),
            ("0003_note.sql", "ALTER TABLE items ADD COLUMN note text;\n"),
        ],
    );
    ok(&migrate(&db, &dir, &["expand", "0002_bigint"]));
    let path = ok(&migrate(&db, &dir, &["latest"]));
    db.rt.block_on(async {
        let mut app = on_path(&db, path.trim()).await;
        assert_eq!(read_item(&mut app).await, ["name", "price", "id"]);
        ok(&migrate(&db, &dir, &["contract", "0002_bigint"]));
        assert_eq!(read_item(&mut app).await, ["name", "price", "id"]);
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let table: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.items'::regclass
              AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(table, ["name", "price", "id"], "the table itself");
        let views: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_views WHERE schemaname = 'migrate_0002_bigint'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(views, 0, "after contract the version reads the table");
    });
    ok(&migrate(&db, &dir, &["expand"]));
    let path = ok(&migrate(&db, &dir, &["latest"]));
    db.rt.block_on(async {
        let mut app = on_path(&db, path.trim()).await;
        let row = sqlx::query("SELECT * FROM items WHERE id = $1")
            .bind(7i64)
            .fetch_one(&mut app)
            .await
            .unwrap();
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["name", "price", "id", "note"]);
    });
}
