//! A real PostgreSQL for tests: each test gets its own database, dropped when it ends.
//! The server comes from MIGRATE_TEST_DATABASE_URL (default: postgres@127.0.0.1:5432); a test
//! fails loudly when none is reachable (scripts/test.sh installs and starts one).

#![allow(dead_code)]

pub mod cluster;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::process::{Command, Output};

/// The rule ids of a `migrate plan --format json` report, in order.
pub fn rules_of(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("a findings array")
        .iter()
        .map(|f| f["rule"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A folder of a test's own under the temp dir (`{name}-{pid}`), empty when made and removed
/// when dropped — at the end of the test, whether it passed or panicked.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::PathBuf;
    fn deref(&self) -> &std::path::PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A migrations folder of a test's own under the temp dir, holding `files` (name, text).
pub fn project(prefix: &str, tag: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(&format!("{prefix}-{tag}"));
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// What the binary printed, stdout then stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts the binary exited 0, showing what it printed if not.
#[track_caller]
pub fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

/// Whether the binary under test has the failpoint hook (`--features failpoints`).
pub const FAILPOINTS: bool = cfg!(feature = "failpoints");

/// Runs `migrate ARGS` against the database at `url` with the migrations of `dir` (and its
/// migrate.toml, when it has one), stopped at `failpoint` when given.
pub fn migrate_in(
    url: &str,
    dir: &std::path::Path,
    args: &[&str],
    failpoint: Option<&str>,
) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--database-url", url, "--dir", dir.to_str().unwrap()]);
    let config = dir.join("migrate.toml");
    let config = config.to_str().unwrap();
    if std::path::Path::new(config).exists() && !args.contains(&"--config") {
        all.extend(["--config", config]);
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.args(&all).env("NO_COLOR", "1");
    match failpoint {
        Some(fp) => {
            // Loudly, not a silent pass: without the feature the binary ignores the failpoint.
            if !FAILPOINTS {
                panic!("this test stops the binary at a failpoint: run it with `--features failpoints` (scripts/test.sh does)");
            }
            cmd.env("MIGRATE_FAILPOINT", fp)
        }
        None => cmd.env_remove("MIGRATE_FAILPOINT"),
    };
    cmd.output().unwrap()
}

/// Runs the built `migrate` binary from the repository root, without colour.
pub fn migrate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run migrate")
}
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn admin_url() -> String {
    std::env::var("MIGRATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn with_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && url[..i].rfind('/') != Some(i) => {
            let (base, rest) = url.split_at(i);
            let query = rest.find('?').map_or("", |q| &rest[q..]);
            format!("{base}/{db}{query}")
        }
        _ => format!("{url}/{db}"),
    }
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub rt: tokio::runtime::Runtime,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub fn new() -> TestDb {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = format!(
            "migrate_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let admin = admin_url();
        rt.block_on(async {
            let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin} ({e}); run scripts/test.sh, which installs and starts it")
            });
            c.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
        });
        let url = with_db(&admin, &name);
        TestDb { name, url, rt }
    }

    /// Runs SQL (several statements allowed) in the test database.
    pub fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            c.execute(AssertSqlSafe(sql.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        });
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        self.rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect(&admin).await {
                let _ = c
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await;
            }
        });
    }
}

/// The `search_path` that `migrate latest` prints for the newest version of `dir`'s migrations.
pub fn latest(db: &TestDb, dir: &std::path::Path) -> String {
    let o = migrate_in(&db.url, dir, &["latest"], None);
    ok(&o);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A connection to the test database on `path`, as an app of that version connects.
pub async fn on_path(db: &TestDb, path: &str) -> PgConnection {
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(path)
        .execute(&mut c)
        .await
        .unwrap();
    c
}

/// Roles a test makes, dropped with what they own when it ends, passed or not (roles belong to
/// the cluster and outlive the test's database).
pub struct Roles {
    pub url: String,
    pub names: Vec<String>,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect(&self.url).await {
                for r in &self.names {
                    let _ = c
                        .execute(AssertSqlSafe(format!(
                            "DROP OWNED BY \"{r}\"; DROP ROLE \"{r}\""
                        )))
                        .await;
                }
            }
        });
    }
}

/// Runs `job` with a connection to `url` on a thread and runtime of its own — a session that
/// makes load or waits on a lock while the test goes on; join the handle for its result.
pub fn on_thread<T, F, Fut>(url: &str, job: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce(PgConnection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let url = url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let c = PgConnection::connect(&url).await.unwrap();
                job(c).await
            })
    })
}
