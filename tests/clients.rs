//! Real app clients, none written by this project, each on the `search_path` that `migrate
//! latest` printed for its version, through a migration's expand and contract: ActiveRecord
//! (Debian's ruby-activerecord and ruby-pg; models without a declared primary key, prepared
//! statements on), psycopg 3 and asyncpg from PyPI (prepared `SELECT *`, `COPY … FROM`,
//! `TRUNCATE`), and JDBC (Debian's libpostgresql-jdbc-java, server-prepared from the first
//! execution). `scripts/setup.sh --clients` installs them (scripts/test.sh does).
//!
//! Each client is a long-running process, as an app is: it connects once, and every `round`
//! runs each of its operations once and reports each result. The old version starts before
//! expand and stops before contract; the new version starts after expand and goes on past
//! contract; a second new-version process starts after contract.

mod common;

use common::{ok, TestDb};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    ActiveRecord,
    Psycopg,
    Asyncpg,
    Jdbc,
}

/// A running app process of one version.
struct App {
    what: String,
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl App {
    fn start(client: Client, db: &TestDb, version: &str, path: &str) -> App {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut cmd = match client {
            Client::ActiveRecord => {
                let mut c = Command::new("ruby");
                c.arg("tests/clients/activerecord_app.rb");
                c
            }
            Client::Psycopg | Client::Asyncpg => {
                let mut c = Command::new(python());
                c.arg("tests/clients/python_app.py").env(
                    "DRIVER",
                    if client == Client::Psycopg {
                        "psycopg"
                    } else {
                        "asyncpg"
                    },
                );
                c
            }
            Client::Jdbc => {
                let mut c = Command::new("java");
                c.args([
                    "-cp",
                    "/usr/share/java/postgresql.jar",
                    "tests/clients/JdbcApp.java",
                ])
                .env("JDBC_URL", jdbc_url(&db.url));
                c
            }
        };
        let what = format!("{client:?} {version} version");
        let mut child = cmd
            .current_dir(root)
            .env("DATABASE_URL", &db.url)
            .env("SEARCH_PATH", path)
            .env("APP_VERSION", version)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{what}: cannot start the client ({e}); `scripts/setup.sh --clients` installs it (scripts/test.sh runs it)")
            });
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        App {
            what,
            child,
            stdin,
            out,
        }
    }

    /// Runs each operation once: the result of each, `ok` or the error the app saw.
    fn round(&mut self) -> BTreeMap<String, String> {
        writeln!(self.stdin, "round").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            let _ = self.child.kill();
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("{}: the client stopped\n{err}", self.what);
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}: {line}", self.what))
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn python() -> String {
    let venv = std::env::var("MIGRATE_CLIENTS_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/migrate-clients/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    assert!(
        std::path::Path::new(&venv).exists(),
        "{venv} is missing: `scripts/setup.sh --clients` installs psycopg and asyncpg (scripts/test.sh runs it)"
    );
    venv
}

/// `postgres://user[:password]@host:port/db` as a JDBC URL with user and password parameters.
fn jdbc_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, hostdb) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let hostdb = hostdb.split('?').next().unwrap();
    let mut u = format!("jdbc:postgresql://{hostdb}?user={user}");
    if !password.is_empty() {
        u.push_str(&format!("&password={password}"));
    }
    u
}

fn latest(db: &TestDb, dir: &std::path::Path) -> String {
    let o = common::migrate_in(&db.url, dir, &["latest"], None);
    ok(&o);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The operations that failed, with their errors.
fn failed(r: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    r.iter()
        .filter(|(_, v)| *v != "ok")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Asserts that exactly the operations `may_fail` failed, each with an error containing its
/// expected words; every other operation must have succeeded.
#[track_caller]
fn only(r: &BTreeMap<String, String>, when: &str, may_fail: &[(&str, &str)]) {
    let failed = failed(r);
    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
    let expected: Vec<&str> = may_fail.iter().map(|(op, _)| *op).collect();
    assert_eq!(names, expected, "{when}: {failed:#?}");
    for (op, words) in may_fail {
        assert!(failed[*op].contains(words), "{when}: {op}: {}", failed[*op]);
    }
}

const SCHEMA: &str = "CREATE TABLE users (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, age integer, legacy text);
CREATE TABLE orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id bigint, total integer);
CREATE TABLE jobs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, payload text);
INSERT INTO users (name, age) SELECT 'u' || g, g FROM generate_series(1, 10) g;
INSERT INTO orders (user_id, total) SELECT g, g FROM generate_series(1, 10) g;\n";

/// One client through a migration that renames a column and adds one: the table takes the new
/// version's shape at expand, and the old version reads it through a view until contract.
fn through_a_rename(client: Client) {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-clients",
        &format!("{client:?}-{}", db.name),
        &[
            ("0001_schema.sql", SCHEMA),
            (
                "0002_rename.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users ADD COLUMN email text;\n",
            ),
        ],
    );
    let run = |args: &[&str]| ok(&common::migrate_in(&db.url, &dir, args, None));
    run(&["expand", "0001_schema"]);
    let mut old = App::start(client, &db, "old", &latest(&db, &dir));
    only(&old.round(), "old version before expand", &[]);
    run(&["expand"]);
    // The old version reads users through its view now: all but COPY works on a view.
    let window = [("users.copy", "cannot copy to view")];
    only(&old.round(), "old version in the window", &window);
    let mut new = App::start(client, &db, "new", &latest(&db, &dir));
    only(&new.round(), "new version in the window", &[]);
    only(&old.round(), "old version beside the new", &window);
    old.quit();
    run(&["contract"]);
    only(&new.round(), "new version after contract", &[]);
    let mut fresh = App::start(client, &db, "new", &latest(&db, &dir));
    only(&fresh.round(), "new version started after contract", &[]);
    new.quit();
    fresh.quit();
}

#[test]
fn activerecord_through_a_rename() {
    through_a_rename(Client::ActiveRecord);
}

#[test]
fn psycopg_through_a_rename() {
    through_a_rename(Client::Psycopg);
}

#[test]
fn asyncpg_through_a_rename() {
    through_a_rename(Client::Asyncpg);
}

#[test]
fn jdbc_through_a_rename() {
    through_a_rename(Client::Jdbc);
}

/// One client through a migration that retypes a column and drops one: until contract the
/// table keeps the old column and the new type's shadow, so both versions read it through a
/// view in the window. Every other table is the table itself at every moment, and a process
/// started after contract sees tables only. What a catalog-reading ORM started in the window
/// makes of the view (no primary key, kept for the life of the process) is the known cost of
/// this choice; README lists it.
fn through_a_type_change_and_a_drop(client: Client) {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-clients-retype",
        &format!("{client:?}-{}", db.name),
        &[
            ("0001_schema.sql", SCHEMA),
            (
                "0002_retype.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users DROP COLUMN legacy;\n",
            ),
        ],
    );
    let run = |args: &[&str]| ok(&common::migrate_in(&db.url, &dir, args, None));
    let copy = ("users.copy", "cannot copy to view");
    // ActiveRecord reads a model's primary key from pg_index once per process: one started on
    // the view finds none, and keeps none.
    let no_key: &[(&str, &str)] = if client == Client::ActiveRecord {
        &[
            ("users.create", "created without an id"),
            ("users.find", "UnknownPrimaryKey"),
        ]
    } else {
        &[]
    };
    run(&["expand", "0001_schema"]);
    let mut old = App::start(client, &db, "old", &latest(&db, &dir));
    only(&old.round(), "old version before expand", &[]);
    run(&["expand"]);
    let mut new = App::start(client, &db, "new", &latest(&db, &dir));
    only(&old.round(), "old version in the window", &[copy]);
    let mut window = vec![copy];
    window.extend_from_slice(no_key);
    window.sort();
    only(&new.round(), "new version started in the window", &window);
    old.quit();
    run(&["contract"]);
    only(
        &new.round(),
        "new version started in the window, after contract",
        no_key,
    );
    let mut fresh = App::start(client, &db, "new", &latest(&db, &dir));
    only(&fresh.round(), "new version started after contract", &[]);
    new.quit();
    fresh.quit();
}

#[test]
fn activerecord_through_a_type_change_and_a_drop() {
    through_a_type_change_and_a_drop(Client::ActiveRecord);
}

#[test]
fn psycopg_through_a_type_change_and_a_drop() {
    through_a_type_change_and_a_drop(Client::Psycopg);
}

#[test]
fn asyncpg_through_a_type_change_and_a_drop() {
    through_a_type_change_and_a_drop(Client::Asyncpg);
}

#[test]
fn jdbc_through_a_type_change_and_a_drop() {
    through_a_type_change_and_a_drop(Client::Jdbc);
}
