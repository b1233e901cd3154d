//! The CI integrations, exercised as CI runs them: the script the GitHub Action (action.yml)
//! runs, in a git repository with a change on top of a base; the action's wiring of its inputs
//! to that script; and the pre-commit hook's entry, run with file names as pre-commit passes
//! them. No database needed.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn ci_plan(repo: &Path, base: &str, sarif: Option<&Path>) -> Output {
    let mut cmd = Command::new(root().join("scripts/ci-plan.sh"));
    cmd.current_dir(repo)
        .env("MIGRATE", env!("CARGO_BIN_EXE_migrate"))
        .env("MIGRATIONS", "migrations")
        .env("BASE", base)
        .env("PG_VERSION", "15")
        .env("NO_COLOR", "1");
    match sarif {
        Some(p) => cmd.env("SARIF", p),
        None => cmd.env_remove("SARIF"),
    };
    cmd.output().unwrap()
}

/// A repository whose base already has an unsafe migration (never reported again) and whose
/// change adds another.
fn repo_with_a_change(tag: &str) -> (TempDir, String) {
    let repo = TempDir::new(&format!("migrate-ci-{tag}"));
    git(&repo, &["init", "-q"]);
    write(
        &repo,
        "migrations/0001_users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
    );
    write(
        &repo,
        "migrations/0002_old.sql",
        "ALTER TABLE users ADD COLUMN y int NOT NULL;\n",
    );
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "base"]);
    let base = git(&repo, &["rev-parse", "HEAD"]);
    write(
        &repo,
        "migrations/0003_new.sql",
        "ALTER TABLE users ADD COLUMN x int NOT NULL;\n",
    );
    write(&repo, "README.md", "not a migration\n");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "change"]);
    (repo, base)
}

#[test]
fn the_action_lints_only_the_changed_migrations_with_annotations_and_sarif() {
    let (repo, base) = repo_with_a_change("annotations");
    let sarif = repo.join("migrate.sarif");
    let out = ci_plan(&repo, &base, Some(&sarif));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    assert_eq!(errors.len(), 1, "{stdout}");
    assert!(
        errors[0].starts_with("::error file=migrations/0003_new.sql,line=1,")
            && errors[0].contains("adding-required-field"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let uris: Vec<&str> = report["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        !uris.is_empty() && uris.iter().all(|u| *u == "migrations/0003_new.sql"),
        "{uris:?}"
    );
}

#[test]
fn the_action_passes_when_no_migration_changed() {
    let (repo, _) = repo_with_a_change("unchanged");
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let out = ci_plan(&repo, &head, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no migration file changed under migrations")
    );
}

#[test]
fn the_action_gives_the_script_every_input_it_declares() {
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let script = std::fs::read_to_string(root().join("scripts/ci-plan.sh")).unwrap();
    assert!(
        action.contains("/scripts/ci-plan.sh"),
        "the action runs the script"
    );
    for (input, var) in [
        ("migrations", "MIGRATIONS"),
        ("base", "BASE"),
        ("pg-version", "PG_VERSION"),
        ("sarif", "SARIF"),
    ] {
        assert!(
            action.contains(&format!("\n  {input}:\n")),
            "input {input} declared"
        );
        assert!(
            action.contains(&format!("{var}: ${{{{ inputs.{input} }}}}")),
            "input {input} passed as {var}"
        );
        assert!(
            script.contains(&format!("${{{var}")),
            "the script reads {var}"
        );
    }
}

#[test]
fn the_pre_commit_hook_lints_the_files_it_is_given() {
    let hooks = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).unwrap();
    let entry = hooks
        .lines()
        .find_map(|l| l.trim().strip_prefix("entry: "))
        .expect("an entry");
    let mut words = entry.split_whitespace();
    assert_eq!(words.next(), Some("migrate"));
    let args: Vec<&str> = words.collect();
    let (repo, _) = repo_with_a_change("precommit");
    // pre-commit passes the staged files that match `files`, relative to the repository.
    let run = |files: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(&args)
            .args(files)
            .current_dir(&*repo)
            .output()
            .unwrap()
    };
    let bad = run(&["migrations/0003_new.sql"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("0003_new.sql"));
    let good = run(&["migrations/0001_users.sql"]);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
}
