//! `migrate plan` and `migrate rules` as a user runs them: the built binary, real files.

mod common;

use common::{migrate, rules_of};
use std::path::PathBuf;
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["plan", "--format", "json"];
    all.extend_from_slice(args);
    let o = migrate(&all);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("json: {e}\n{}\n{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

#[test]
fn the_example_migrations_plan_with_warnings_and_no_error() {
    let o = migrate(&["plan", "migrations-example/", "--color", "never"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    insta::assert_snapshot!("example_human", stdout(&o));
}

#[test]
fn the_example_plan_with_explain_shows_every_steps_sql() {
    let o = migrate(&[
        "plan",
        "migrations-example/0006_rename_column.sql",
        "--explain",
        "--color",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("rename_explain", stdout(&o));
}

#[test]
fn json_findings_have_the_documented_fields() {
    let (code, v) = json(&["migrations-example/"]);
    assert_eq!(code, 0);
    let findings = v["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    for f in findings {
        for key in ["file", "line", "column", "rule", "level", "message", "help"] {
            assert!(!f[key].is_null(), "missing {key} in {f}");
        }
        assert!(f["line"].as_u64().unwrap() >= 1 && f["column"].as_u64().unwrap() >= 1);
    }
    assert_eq!(v["summary"]["files"], 18);
    assert_eq!(v["files"].as_array().unwrap().len(), 18);
    assert!(v.get("plans").is_none(), "full plans only with --explain");
    let rename = &v["files"][5];
    assert_eq!(
        (
            rename["migration"].as_str(),
            rename["expand"].as_u64(),
            rename["backfill"].as_u64(),
            rename["contract"].as_u64()
        ),
        // Through views a rename is one metadata step, at expand (the old version gets its view).
        (Some("0006_rename_column"), Some(1), Some(0), Some(0))
    );
    let (_, v) = json(&["--explain", "migrations-example/"]);
    assert_eq!(v["plans"].as_array().unwrap().len(), 18);
}

#[test]
fn rejected_operations_fail_the_build_with_exit_1() {
    let (code, v) = json(&["tests/fixtures/rejected/"]);
    assert_eq!(code, 1);
    let rules = rules_of(&v);
    for expected in [
        "adding-required-field",
        "vacuum-full",
        "cluster",
        "lock-table",
        "truncate",
        "concurrently-in-transaction",
    ] {
        assert!(
            rules.contains(&expected.to_string()),
            "{expected} not in {rules:?}"
        );
    }
    let o = migrate(&["plan", "tests/fixtures/rejected/", "--color", "never"]);
    insta::assert_snapshot!("rejected_human", stdout(&o));
}

#[test]
fn github_annotations() {
    let o = migrate(&[
        "plan",
        "--format",
        "github",
        "tests/fixtures/rejected/0002_required_field.sql",
    ]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("rejected_github", stdout(&o));
}

#[test]
fn sarif_is_valid_2_1_0_with_rule_metadata() {
    let o = migrate(&["plan", "--format", "sarif", "tests/fixtures/rejected/"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() >= 50);
    for r in run["results"].as_array().unwrap() {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
}

#[test]
fn a_syntax_error_is_a_finding_and_the_rest_is_still_checked() {
    let (code, v) = json(&["tests/fixtures/syntax/"]);
    assert_eq!(code, 1);
    let errors: Vec<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "syntax-error")
        .collect();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(3), Some(41))
    );
    // The unterminated string is reported where it starts.
    assert_eq!(errors[1]["line"].as_u64(), Some(11));
    // BEGIN ATOMIC bodies stay one statement: no error inside them.
    assert!(errors
        .iter()
        .all(|e| !(6..=9).contains(&e["line"].as_u64().unwrap())));
    assert!(rules_of(&v).contains(&"opaque-statement".to_string()));
}

#[test]
fn flyway_layout_orders_numerically_and_skips_undo_files() {
    let (_, v) = json(&["tests/fixtures/layouts/flyway/"]);
    let names: Vec<_> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["migration"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["V1__create", "V2__index", "V10__rename"]);
    let rules = rules_of(&v);
    assert!(
        rules.contains(&"require-concurrent-index-creation".to_string()),
        "{rules:?}"
    );
    assert!(rules.contains(&"renaming-column".to_string()), "{rules:?}");
}

#[test]
fn diesel_layout_honours_run_in_transaction_false() {
    let (code, v) = json(&["tests/fixtures/layouts/diesel/"]);
    assert_eq!(code, 0, "{v}");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files[0]["migration"], "2024-01-01-000000_create");
    assert_eq!(files[1]["transaction"], "none");
    assert!(!rules_of(&v).contains(&"concurrently-in-transaction".to_string()));
}

#[test]
fn up_files_are_read_down_files_skipped_and_sqlx_opt_out_honoured() {
    let (code, v) = json(&["tests/fixtures/layouts/updown/"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["summary"]["files"], 2);
    assert_eq!(v["files"][1]["transaction"], "none");
    // The file's own opt-out wins over --transaction.
    let (code, _) = json(&[
        "--transaction",
        "per-file",
        "tests/fixtures/layouts/updown/0002_index.up.sql",
    ]);
    assert_eq!(code, 0);
    // --transaction none takes a file without an opt-out out of the transaction.
    let f = "tests/fixtures/rejected/0005_concurrently_in_transaction.sql";
    let (_, v) = json(&[f]);
    assert!(rules_of(&v).contains(&"concurrently-in-transaction".to_string()));
    let (_, v) = json(&["--transaction", "none", f]);
    assert!(!rules_of(&v).contains(&"concurrently-in-transaction".to_string()));
}

#[test]
fn a_single_file_is_linted_with_the_earlier_files_as_context() {
    // 0006 alone: users comes from 0001, so the rename is of a live table and its type is known
    // (the second column of `views = false` copies it).
    let dir = common::project(
        "migrate-cli",
        "no-views",
        &[("migrate.toml", "views = false\n")],
    );
    let config = dir.join("migrate.toml");
    let (_, v) = json(&[
        "--explain",
        "--config",
        config.to_str().unwrap(),
        "migrations-example/0006_rename_column.sql",
    ]);
    assert_eq!(v["summary"]["files"], 1);
    let steps = v["plans"][0]["rewrites"][0]["steps"].as_array().unwrap();
    assert!(
        steps[0]["sql"]
            .as_str()
            .unwrap()
            .contains("ADD COLUMN full_name text"),
        "{}",
        steps[0]
    );
}

#[test]
fn files_given_are_checked_in_one_walk_as_in_the_directory_run() {
    // Each file given sees every earlier file of its directory, given or not; files after the
    // last one given are not read at all (0005 does not even parse).
    let dir = common::project(
        "migrate-cli",
        "walk",
        &[
            (
                "0001_users.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY);\n",
            ),
            (
                "0002_orders.sql",
                "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\n",
            ),
            (
                "0003_index.sql",
                "CREATE INDEX orders_user_idx ON orders (user_id);\n",
            ),
            (
                "0004_fk.sql",
                "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id);\n",
            ),
            ("0005_broken.sql", "ALTER TABLE orders ADD COLUMN;\n"),
        ],
    );
    let file = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (f4, f2) = (file("0004_fk.sql"), file("0002_orders.sql"));
    let (_, given) = json(&[&f4, &f2, &f4]);
    let (_, whole) = json(&[dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let of = |v: &serde_json::Value, name: &str| -> Vec<serde_json::Value> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["file"].as_str().unwrap().ends_with(name))
            .cloned()
            .collect()
    };
    // Named twice, reported once, in migration order.
    assert_eq!(given["summary"]["files"], 2, "{given}");
    assert_eq!(given["files"][0]["migration"], "0002_orders");
    for name in ["0002_orders.sql", "0004_fk.sql"] {
        assert_eq!(of(&given, name), of(&whole, name), "{name}");
    }
    let fk = rules_of(&serde_json::json!({ "findings": of(&given, "0004_fk.sql") }));
    // orders is a live table (from 0002, reported), so its foreign key is validated at once.
    assert!(
        fk.contains(&"constraint-missing-not-valid".to_string()),
        "{fk:?}"
    );
    assert!(
        !fk.contains(&"fk-without-index".to_string()),
        "0003's index counts: {fk:?}"
    );
    assert!(of(&given, "0005_broken.sql").is_empty());
}

#[test]
fn files_applied_by_another_runner_need_their_own_timeouts_and_reruns() {
    let dir = common::project(
        "migrate-cli",
        "runner",
        &[
            ("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n"),
            ("0002_index.sql", "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\nALTER TABLE users ADD COLUMN nick text;\n"),
            ("other.toml", "applied_by = \"other\"\n"),
        ],
    );
    let d = dir.to_str().unwrap().to_string();
    let config = dir.join("other.toml").to_str().unwrap().to_string();
    let (_, ours) = json(&[&d]);
    let (_, flag) = json(&["--applied-by", "other", &d]);
    let (_, toml) = json(&["--config", &config, &d]);
    std::fs::remove_dir_all(&dir).unwrap();
    for r in ["missing-timeouts", "prefer-robust-statements"] {
        assert!(
            !rules_of(&ours).contains(&r.to_string()),
            "{r}: migrate handles it"
        );
        assert!(rules_of(&flag).contains(&r.to_string()), "{r}");
        assert_eq!(rules_of(&flag), rules_of(&toml));
    }
}

#[test]
fn pg_version_changes_version_specific_rules() {
    let dir = tempdir("pgversion");
    std::fs::write(
        dir.join("0001_t.sql"),
        "CREATE TABLE t (id bigint PRIMARY KEY, a int);",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_d.sql"),
        "ALTER TABLE t ADD COLUMN b int DEFAULT 0;",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let (_, v) = json(&["--pg-version", "10", d]);
    assert!(rules_of(&v).contains(&"adding-field-with-volatile-default".to_string()));
    let (_, v) = json(&["--pg-version", "11", d]);
    assert!(!rules_of(&v).contains(&"adding-field-with-volatile-default".to_string()));
    let o = migrate(&["plan", "--pg-version", "eleven", d]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn migrate_toml_sets_levels_and_turns_rules_off() {
    let dir = tempdir("config");
    std::fs::write(dir.join("migrate.toml"), "pg_version = 15\n[rules]\nrenaming-column = \"error\"\nrequire-concurrent-index-creation = \"off\"\n").unwrap();
    let config = dir.join("migrate.toml");
    let c = config.to_str().unwrap();
    let (code, v) = json(&["--config", c, "migrations-example/"]);
    assert_eq!(code, 1, "renaming-column raised to error");
    let rules = rules_of(&v);
    assert!(!rules.contains(&"require-concurrent-index-creation".to_string()));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "renaming-column")
        .unwrap();
    assert_eq!(f["level"], "error");

    std::fs::write(&config, "[rules]\nno-such-rule = \"off\"\n").unwrap();
    let o = migrate(&["plan", "--config", c, "migrations-example/"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no-such-rule") && stderr(&o).contains("migrate.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sql_paths_the_listing_lacks_are_still_looked_at() {
    // `.sql` paths are found in their directory's listing without a stat of their own; what
    // the listing lacks must still be a missing file, a file outside the layout, or a
    // directory whose name ends in `.sql`.
    let dir = tempdir("sql-paths");
    std::fs::write(dir.join("0001_a.sql"), "CREATE TABLE a (id bigint);\n").unwrap();
    std::fs::write(dir.join("0001_a.down.sql"), "DROP TABLE a;\n").unwrap();
    std::fs::create_dir_all(dir.join("old.sql")).unwrap();
    std::fs::write(
        dir.join("old.sql/0001_x.sql"),
        "CREATE TABLE x (id bigint);\n",
    )
    .unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();

    let missing = migrate(&["plan", &path("0009_gone.sql")]);
    let (down_code, down) = json(&[&path("0001_a.down.sql")]);
    let (old_code, old) = json(&[&path("old.sql")]);
    std::fs::remove_dir_all(&dir).unwrap();

    a_missing_file_named(&missing, "0009_gone.sql");
    // A down file is not a migration of the listing, but named, it is linted.
    assert!(down_code == 0 || down_code == 1, "{down}");
    assert_eq!(down["summary"]["files"], 1, "{down}");
    assert!(
        down["files"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("0001_a.down.sql"),
        "{down}"
    );
    // A directory named like a file is linted as the directory it is.
    assert!(old_code == 0 || old_code == 1, "{old}");
    assert_eq!(old["summary"]["files"], 1, "{old}");
    assert_eq!(old["files"][0]["migration"], "0001_x", "{old}");
}

#[test]
fn a_missing_path_is_a_usage_error_naming_it() {
    let o = migrate(&["plan", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("no/such/dir"), "{err}");
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "the cause once: {err}"
    );
}

#[test]
fn no_path_and_no_migrations_directory_says_what_to_do() {
    let dir = tempdir("nodir");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("plan")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("no migrations directory `migrations`") && err.contains("migrate.toml"),
        "{err}"
    );
    assert_eq!(err.matches("os error").count(), 0, "{err}");
}

#[test]
fn empty_files_are_fine() {
    let dir = tempdir("empty");
    std::fs::write(dir.join("0001_empty.sql"), "").unwrap();
    std::fs::write(
        dir.join("0002_comments.sql"),
        "-- nothing yet\n/* still nothing */\n",
    )
    .unwrap();
    let (code, v) = json(&[dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(v["summary"]["files"], 2);
    assert!(v["findings"].as_array().unwrap().is_empty());
}

#[test]
fn rules_command_lists_and_explains() {
    let o = migrate(&["rules"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("renaming-column"));
    let o = migrate(&["rules", "setting-not-null"]);
    assert!(stdout(&o).contains("## Why it hurts") && stdout(&o).contains("VALIDATE"));
    let o = migrate(&["rules", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn docs_rule_reference_is_generated_from_the_code() {
    let o = migrate(&["rules", "--format", "markdown"]);
    let generated = stdout(&o);
    let path = root().join("docs/rules.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/rules.md is stale: run `cargo run -- rules --format markdown > docs/rules.md`"
    );
}

#[test]
fn a_directory_without_up_sql_is_no_migration_and_a_missing_one_named_is_an_error() {
    // Sub-directories are taken for diesel migrations without a stat before the work starts;
    // one with no up.sql must still be no migration, and a named up.sql that is not there must
    // still fail the run naming it.
    let dir = tempdir("diesel-dirs");
    for (name, sql) in [
        ("2024-01-01-000000_a", "CREATE TABLE a (id bigint);\n"),
        ("2024-01-02-000000_b", "ALTER TABLE a ADD COLUMN b text;\n"),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
        std::fs::write(dir.join(name).join("down.sql"), "SELECT 1;\n").unwrap();
    }
    std::fs::create_dir_all(dir.join("2024-01-01-500000_only_down")).unwrap();
    std::fs::write(
        dir.join("2024-01-01-500000_only_down/down.sql"),
        "SELECT 1;\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();

    let (code, all) = json(&[&path("")]);
    let (named_code, named) = json(&[&path("2024-01-02-000000_b/up.sql")]);
    let missing = migrate(&["plan", &path("2024-01-01-500000_only_down/up.sql")]);
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(code == 0 || code == 1, "{all}");
    let migrations: Vec<&str> = all["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["migration"].as_str().unwrap())
        .collect();
    assert_eq!(migrations, ["2024-01-01-000000_a", "2024-01-02-000000_b"]);
    assert!(
        !rules_of(&all).contains(&"unreadable-file".to_string()),
        "{all}"
    );
    // Named alone, only b is reported.
    assert!(named_code == 0 || named_code == 1, "{named}");
    assert_eq!(named["summary"]["files"], 1, "{named}");
    assert_eq!(named["files"][0]["migration"], "2024-01-02-000000_b");
    a_missing_file_named(&missing, "only_down/up.sql");
}

#[test]
fn a_missing_path_is_the_error_before_the_live_database_is_tried() {
    // Nothing listens on port 1: were the database tried first, its error would come instead.
    let o = migrate(&[
        "plan",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "no-such-migrations/0001_x.sql",
    ]);
    a_missing_file_named(&o, "no-such-migrations/0001_x.sql");
}

/// The run failed as a usage error (exit 2) that names the missing file.
fn a_missing_file_named(o: &Output, file: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(file) && err.contains("No such file"), "{err}");
}

fn tempdir(name: &str) -> common::TempDir {
    common::TempDir::new(&format!("migrate-cli-{name}"))
}
