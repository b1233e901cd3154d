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

use common::{latest, ok, TestDb};
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
    fn start(client: Client, db: &TestDb, version: &str, path: &str, env: &[(&str, &str)]) -> App {
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
            .envs(env.iter().copied())
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

/// The operations that failed, with their errors.
fn failed(r: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    r.iter()
        .filter(|(_, v)| *v != "ok")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Asserts that of one round's operations exactly `may_fail` failed.
#[track_caller]
fn only(r: &BTreeMap<String, String>, when: &str, may_fail: &[(&str, &str)]) {
    exactly(&failed(r), when, may_fail);
}

const SCHEMA: &str = "CREATE TABLE users (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, age integer, legacy text);
CREATE TABLE orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id bigint, total integer);
CREATE TABLE jobs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, payload text);
INSERT INTO users (name, age) SELECT 'u' || g, g FROM generate_series(1, 10) g;
INSERT INTO orders (user_id, total) SELECT g, g FROM generate_series(1, 10) g;\n";

/// What failed in each phase of one client's run through a migration.
#[derive(Debug, Default)]
struct Phases {
    /// The old version in the window, after expand.
    old_window: BTreeMap<String, String>,
    /// The new version, started in the window.
    new_window: BTreeMap<String, String>,
    /// The same process after contract.
    new_after_contract: BTreeMap<String, String>,
    /// Its next round.
    new_after_contract_again: BTreeMap<String, String>,
}

/// Runs one client through `migration` (after [`SCHEMA`]) with `config` as migrate.toml and
/// `env` for the client. The old version must work fully before expand, and a new-version
/// process started after contract must work fully: the tables are tables then.
fn through(client: Client, migration: &str, config: &str, env: &[(&str, &str)]) -> Phases {
    through_all(
        client,
        SCHEMA,
        &[("0002_change.sql", migration)],
        config,
        env,
        &["orders.", "jobs."],
    )
}

/// Runs one client through `migrations` after `schema`, all expanded at once and then
/// contracted. The operations on the tables whose names start one of `untouched` must never
/// fail.
fn through_all(
    client: Client,
    schema: &str,
    migrations: &[(&str, &str)],
    config: &str,
    env: &[(&str, &str)],
    untouched: &[&str],
) -> Phases {
    let db = TestDb::new();
    let mut files = vec![("0001_schema.sql", schema), ("migrate.toml", config)];
    files.extend_from_slice(migrations);
    let dir = common::project(
        "migrate-clients",
        &format!("{client:?}-{}", db.name),
        &files,
    );
    let run = |args: &[&str]| ok(&common::migrate_in(&db.url, &dir, args, None));
    let start = |version: &str| App::start(client, &db, version, &latest(&db, &dir), env);
    run(&["expand", "0001_schema"]);
    let mut old = start("old");
    only(&old.round(), "old version before expand", &[]);
    run(&["expand"]);
    let mut new = start("new");
    let mut phases = Phases {
        old_window: failed(&old.round()),
        new_window: failed(&new.round()),
        ..Phases::default()
    };
    // Side by side again: the same as each alone.
    assert_eq!(
        failed(&old.round()),
        phases.old_window,
        "old beside the new"
    );
    old.quit();
    run(&["contract"]);
    phases.new_after_contract = failed(&new.round());
    phases.new_after_contract_again = failed(&new.round());
    let mut fresh = start("new");
    only(&fresh.round(), "new version started after contract", &[]);
    // Every other table is the table itself at every moment.
    for (phase, f) in [
        ("old, window", &phases.old_window),
        ("new, window", &phases.new_window),
        ("new, after contract", &phases.new_after_contract),
        (
            "new, after contract again",
            &phases.new_after_contract_again,
        ),
    ] {
        for op in f.keys() {
            assert!(
                !untouched.iter().any(|t| op.starts_with(t)),
                "{client:?} {phase}: {op}: {}",
                f[op]
            );
        }
    }
    new.quit();
    fresh.quit();
    phases
}

/// Asserts that exactly the operations `may_fail` failed, each with an error containing its
/// expected words.
#[track_caller]
fn exactly(failed: &BTreeMap<String, String>, when: &str, may_fail: &[(&str, &str)]) {
    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = may_fail.iter().map(|(op, _)| *op).collect();
    expected.sort();
    assert_eq!(names, expected, "{when}: {failed:#?}");
    for (op, words) in may_fail {
        assert!(failed[*op].contains(words), "{when}: {op}: {}", failed[*op]);
    }
}

const COPY_TO_VIEW: (&str, &str) = ("users.copy", "cannot copy to view");
/// ActiveRecord reads a model's primary key from pg_index once per process: one started on a
/// view finds none, and keeps none for its life.
const NO_KEY: [(&str, &str); 2] = [
    ("users.create", "created without an id"),
    ("users.find", "UnknownPrimaryKey"),
];

/// A column renamed and one added: the table takes the new version's shape at expand, and the
/// old version reads it through a view until contract. Only COPY into that view fails.
fn through_a_rename(client: Client) {
    let p = through(
        client,
        "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users ADD COLUMN email text;\n",
        "",
        &[],
    );
    exactly(&p.old_window, "old version in the window", &[COPY_TO_VIEW]);
    exactly(&p.new_window, "new version in the window", &[]);
    exactly(&p.new_after_contract, "new version after contract", &[]);
    exactly(
        &p.new_after_contract_again,
        "new version after contract",
        &[],
    );
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

const RETYPE_AND_DROP: &str = "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users DROP COLUMN legacy;\n";

/// A type change and a drop: until contract the table keeps the old column and the new type's
/// shadow, so both versions read it through a view in the window.
fn through_a_type_change_and_a_drop(client: Client) {
    let p = through(client, RETYPE_AND_DROP, "", &[]);
    exactly(&p.old_window, "old version in the window", &[COPY_TO_VIEW]);
    let mut window = vec![COPY_TO_VIEW];
    if client == Client::ActiveRecord {
        window.extend(NO_KEY);
    }
    exactly(&p.new_window, "new version started in the window", &window);
    let after: &[(&str, &str)] = if client == Client::ActiveRecord {
        &NO_KEY
    } else {
        &[]
    };
    exactly(
        &p.new_after_contract,
        "new version started in the window, after contract",
        after,
    );
    exactly(&p.new_after_contract_again, "and its next round", after);
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

/// Models that name their primary key (`self.primary_key = "id"`) do not look in pg_index, so
/// ActiveRecord works through a view like every other client.
#[test]
fn activerecord_with_declared_keys_through_a_type_change_and_a_drop() {
    let p = through(
        Client::ActiveRecord,
        RETYPE_AND_DROP,
        "",
        &[("DECLARED_KEY", "1")],
    );
    exactly(&p.old_window, "old version in the window", &[COPY_TO_VIEW]);
    exactly(&p.new_window, "new version in the window", &[COPY_TO_VIEW]);
    exactly(&p.new_after_contract, "new version after contract", &[]);
    exactly(&p.new_after_contract_again, "and its next round", &[]);
}

/// A column dropped (with a rename, so the old version reads the table through a view in the
/// window too), with the new version seeing the dropped column one way or the other.
fn through_a_drop(client: Client, shown: bool) -> Phases {
    through(
        client,
        "ALTER TABLE users RENAME COLUMN name TO full_name;\nALTER TABLE users DROP COLUMN legacy;\n",
        if shown {
            "dropped_columns = \"shown\"\n"
        } else {
            ""
        },
        &[],
    )
}

const CLIENTS: [Client; 4] = [
    Client::ActiveRecord,
    Client::Psycopg,
    Client::Asyncpg,
    Client::Jdbc,
];

/// `dropped_columns = "hidden"` (the default): the new version's view hides the column for the
/// window. Its `SELECT *` never changes shape, but an ORM that reads the catalog, started in
/// the window, finds no primary key on the table for the life of its process.
#[test]
fn a_dropped_column_hidden_from_the_new_version_by_a_view() {
    for client in CLIENTS {
        let p = through_a_drop(client, false);
        let ar: &[(&str, &str)] = if client == Client::ActiveRecord {
            &NO_KEY
        } else {
            &[]
        };
        exactly(&p.old_window, &format!("{client:?} old"), &[COPY_TO_VIEW]);
        let mut window = vec![COPY_TO_VIEW];
        window.extend_from_slice(ar);
        exactly(&p.new_window, &format!("{client:?} new"), &window);
        exactly(&p.new_after_contract, &format!("{client:?} after"), ar);
        exactly(
            &p.new_after_contract_again,
            &format!("{client:?} again"),
            ar,
        );
    }
}

/// `dropped_columns = "shown"`: the new version reads the table, the column included, until
/// contract drops it. Every client finds the primary key and can COPY in the window; at
/// contract the new version's prepared `SELECT *` changes shape: ActiveRecord, asyncpg and
/// JDBC prepare it again by themselves, psycopg keeps failing it until it reconnects.
#[test]
fn a_dropped_column_shown_to_the_new_version_until_contract() {
    for client in CLIENTS {
        let p = through_a_drop(client, true);
        let stale: &[(&str, &str)] = if client == Client::Psycopg {
            &[
                ("users.create", "cached plan must not change result type"),
                ("users.find", "cached plan must not change result type"),
            ]
        } else {
            &[]
        };
        exactly(&p.old_window, &format!("{client:?} old"), &[COPY_TO_VIEW]);
        exactly(&p.new_window, &format!("{client:?} new"), &[]);
        exactly(&p.new_after_contract, &format!("{client:?} after"), stale);
        exactly(
            &p.new_after_contract_again,
            &format!("{client:?} again"),
            stale,
        );
    }
}

/// The schema of [`SCHEMA`] and tables only the catalogue's other entries change.
const CATALOGUE_SCHEMA: &str = "CREATE TABLE users (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, age integer, legacy text);
CREATE TABLE orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id bigint, total integer);
CREATE TABLE jobs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, payload text);
CREATE TABLE events (id bigint NOT NULL, kind text);
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TABLE old_stuff (id bigint PRIMARY KEY);
INSERT INTO users (name, age) SELECT 'u' || g, g FROM generate_series(1, 10) g;
INSERT INTO orders (user_id, total) SELECT g, g FROM generate_series(1, 10) g;
INSERT INTO events SELECT g, 'k' FROM generate_series(1, 10) g;
INSERT INTO notes SELECT g, 'b' FROM generate_series(1, 10) g;\n";

/// Every entry of the catalogue, one migration each, on the tables the clients use where it
/// can be (and on tables of their own where the clients' statements could not follow), all
/// expanded at once while the old version runs, then contracted while the new one does.
const CATALOGUE: [(&str, &str); 17] = [
    ("0002_index.sql", "CREATE INDEX orders_user_id_idx ON orders (user_id);\n"),
    ("0003_add_column.sql", "ALTER TABLE users ADD COLUMN nickname text, ADD COLUMN active boolean NOT NULL DEFAULT true;\n"),
    ("0004_volatile_default.sql", "ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid();\n"),
    ("0005_set_not_null.sql", "UPDATE users SET age = 0 WHERE age IS NULL;\nALTER TABLE users ALTER COLUMN age SET NOT NULL;\n"),
    ("0006_rename_column.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;\n"),
    ("0007_retype_orders.sql", "ALTER TABLE orders ALTER COLUMN total TYPE bigint;\n"),
    ("0008_retype_users.sql", "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n"),
    ("0009_foreign_key.sql", "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n"),
    ("0010_check.sql", "ALTER TABLE orders ADD CONSTRAINT orders_user_positive CHECK (user_id > 0);\n"),
    ("0011_unique.sql", "ALTER TABLE users ADD CONSTRAINT users_public_id_key UNIQUE (public_id);\n"),
    ("0012_primary_key.sql", "ALTER TABLE events ADD PRIMARY KEY (id);\n"),
    ("0013_rename_table.sql", "ALTER TABLE events RENAME TO happenings;\n"),
    ("0014_drop_index.sql", "DROP INDEX orders_user_id_idx;\n"),
    ("0015_drop_column.sql", "ALTER TABLE users DROP COLUMN legacy;\n"),
    ("0016_drop_table.sql", "DROP TABLE old_stuff;\n"),
    ("0017_explicit_phases.sql", "-- migrate:expand\nALTER TABLE notes ADD COLUMN tag text;\n-- migrate:backfill\nUPDATE notes SET tag = 'x' WHERE tag IS NULL;\n"),
    ("0018_do_block.sql", "DO $$ BEGIN PERFORM count(*) FROM users; END $$;\n"),
];

/// Every catalogue entry at once: `users` and `orders` both change (a type change each, and a
/// dropped column), so both versions read them through views in the window; `jobs` is never
/// touched. Only what cannot work through a view fails.
#[test]
fn every_client_through_the_whole_catalogue() {
    let views = [
        ("orders.copy", "cannot copy to view"),
        ("users.copy", "cannot copy to view"),
    ];
    for client in CLIENTS {
        let p = through_all(client, CATALOGUE_SCHEMA, &CATALOGUE, "", &[], &["jobs."]);
        let no_key: Vec<(&str, &str)> = if client == Client::ActiveRecord {
            vec![
                ("orders.create", "created without an id"),
                ("orders.find", "UnknownPrimaryKey"),
                ("users.create", "created without an id"),
                ("users.find", "UnknownPrimaryKey"),
            ]
        } else {
            Vec::new()
        };
        exactly(&p.old_window, &format!("{client:?} old"), &views);
        let mut window = views.to_vec();
        window.extend_from_slice(&no_key);
        exactly(&p.new_window, &format!("{client:?} new"), &window);
        exactly(&p.new_after_contract, &format!("{client:?} after"), &no_key);
        exactly(
            &p.new_after_contract_again,
            &format!("{client:?} again"),
            &no_key,
        );
    }
}
