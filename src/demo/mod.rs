//! `migrate demo`: the proof on the user's own machine. A throwaway database gets a table of
//! realistic size; two simulated app versions send requests at a steady rate, the old one in
//! the old shape, the new one in the new; the example migrations run through expand →
//! backfill → contract while they do, the old version stopping before contract as it would
//! after a deploy. Every request is counted, every failure kept, and at the end every row is
//! checked.

mod load;
mod server;

use crate::config::Settings;
use crate::engine::exec::ExecSettings;
use crate::engine::run::Runner;
use crate::error::Error;
use load::{Phase, Version, Workload};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use load::{DemoReport, LOCK_WAIT_BOUND_MS};

/// What the demo runs with.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub rows: i64,
    /// Requests per second of each app version.
    pub rate: u32,
    /// How long the quiet phases (before, during the deploy, after) last.
    pub phase_time: Duration,
    pub database_url: Option<String>,
    pub migrations: PathBuf,
    pub exec: ExecSettings,
    /// Each version reads through its version schema (`views` in migrate.toml).
    pub views: bool,
}

/// The rows the demo loads, in the shape of `0001_create_tables.sql`.
async fn load(conn: &mut PgConnection, rows: i64) -> Result<(), Error> {
    let db = |e: sqlx::Error| Error::Database(format!("loading the demo data: {e}"));
    let orders = (rows / 4).max(1);
    for sql in [
        format!(
            "INSERT INTO users (name, email, age, org_id, created_at) OVERRIDING SYSTEM VALUE
             SELECT 'user ' || g, CASE WHEN g = 1 THEN NULL ELSE 'u' || g || '@example.com' END, g % 100, g % 100 + 1,
                    now() - g * interval '1 second'
             FROM generate_series(1, {rows}) g"
        ),
        format!(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), {rows})"
        ),
        format!(
            "INSERT INTO orders (user_id, total) SELECT 1 + (g * 7919) % {rows}, (g % 1000) + 0.5 FROM generate_series(1, {orders}) g"
        ),
        "INSERT INTO organizations_src (name) SELECT 'org ' || g FROM generate_series(1, 100) g".to_string(),
        "INSERT INTO events (id, payload) SELECT g, '{}' FROM generate_series(1, 1000) g".to_string(),
        "INSERT INTO legacy_sessions (token) SELECT md5(g::text) FROM generate_series(1, 100) g".to_string(),
        "VACUUM ANALYZE".to_string(),
    ] {
        conn.execute(AssertSqlSafe(sql)).await.map_err(db)?;
    }
    Ok(())
}

/// Lines the runner prints, indented under the phase's heading.
struct Indented<W: Write> {
    inner: W,
    at_start: bool,
}

fn indented<W: Write>(inner: W) -> Indented<W> {
    Indented {
        inner,
        at_start: true,
    }
}

impl<W: Write> Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if self.at_start {
                self.inner.write_all(b"    ")?;
            }
            self.inner.write_all(line)?;
            self.at_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn heading(out: &mut dyn Write, text: &str) {
    let _ = writeln!(out, "▸ {text}");
    let _ = out.flush();
}

/// Runs the demo; returns its report (the caller prints the table and sets the exit code).
pub async fn run(opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, Error> {
    let entries = std::fs::read_dir(&opts.migrations).map_err(|e| {
        Error::Usage(format!(
            "{}: {e}; run the demo from the repository root, or pass --dir with the example migrations",
            opts.migrations.display()
        ))
    })?;
    let first = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .min()
        .ok_or_else(|| Error::Usage(format!("{}: no migrations", opts.migrations.display())))?;
    let first = first.trim_end_matches(".sql").to_string();

    heading(out, "starting a throwaway database");
    let server = server::Server::start(opts.database_url.as_deref()).await?;
    let _ = writeln!(out, "    {}", server.what);
    // Ctrl-C still removes the throwaway database.
    let result = tokio::select! {
        r = scenario(opts, &server.url, &first, out) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Usage("interrupted".into())),
    };
    heading(out, "removing the throwaway database");
    server.stop().await;
    result
}

async fn scenario(
    opts: &DemoOptions,
    url: &str,
    first: &str,
    out: &mut dyn Write,
) -> Result<DemoReport, Error> {
    let settings = Settings {
        migrations_dir: opts.migrations.clone(),
        views: opts.views,
        ..Settings::default()
    };
    let runner = |s: Settings| Runner::open(url, opts.exec.clone(), s);

    heading(out, &format!("creating the tables ({first})"));
    let mut r = runner(settings.clone()).await?;
    let created = r.expand(Some(first), true, &mut indented(&mut *out)).await;
    r.close().await;
    created?;

    heading(
        out,
        &format!(
            "loading {} users and {} orders",
            opts.rows,
            (opts.rows / 4).max(1)
        ),
    );
    let started = Instant::now();
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| Error::Database(format!("connecting to the demo database: {e}")))?;
    load(&mut conn, opts.rows).await?;
    let _ = writeln!(out, "    {:.1} s", started.elapsed().as_secs_f64());

    let workload = Workload::start(url, opts.rows, opts.rate, opts.views).await?;
    if opts.views {
        // The old version reads the tables as the first migration made them.
        let schema = crate::engine::versions::schema_name(&settings.metadata_schema, first);
        let path = crate::engine::versions::search_path(&schema, &settings.managed_schemas);
        let _ = writeln!(out, "    old version: search_path = {path}");
        workload.set_search_path(Version::Old, path);
    }
    heading(
        out,
        &format!(
            "old version serving {} requests/s in the old shape",
            opts.rate
        ),
    );
    workload.set_phase(Phase::Before);
    workload.run_version(Version::Old);
    tokio::time::sleep(opts.phase_time).await;

    let steps = async {
        heading(
            out,
            "expand: additive changes, triggers, NOT VALID constraints, concurrent indexes",
        );
        workload.set_phase(Phase::Expand);
        let mut r = runner(settings.clone()).await?;
        let expanded = r.expand(None, false, &mut indented(&mut *out)).await;
        let latest = match (&expanded, opts.views) {
            (Ok(_), true) => r.latest().await,
            _ => Ok(None),
        };
        r.close().await;
        expanded?;
        if let Some((schema, _)) = latest? {
            let path = crate::engine::versions::search_path(&schema, &settings.managed_schemas);
            let _ = writeln!(
                out,
                "    new version: search_path = {path}  (`migrate latest`)"
            );
            workload.set_search_path(Version::New, path);
        }

        heading(out, "backfill: batched, while the old version writes");
        workload.set_phase(Phase::Backfill);
        let bf_started = Instant::now();
        let mut r = runner(settings.clone()).await?;
        let backfilled = r.backfill(None, &mut indented(&mut *out)).await;
        r.close().await;
        backfilled?;
        let bf_time = bf_started.elapsed();

        heading(
            out,
            &format!(
                "deploy: the new version starts ({} requests/s, new shape) beside the old one",
                opts.rate
            ),
        );
        workload.set_phase(Phase::Deploy);
        workload.run_version(Version::New);
        tokio::time::sleep(opts.phase_time).await;
        heading(out, "the old version stops");
        workload.stop_version(Version::Old).await;

        heading(
            out,
            "contract: drops, validations, swaps (old version gone)",
        );
        workload.set_phase(Phase::Contract);
        let mut r = runner(settings.clone()).await?;
        let contracted = r.contract(None, &mut indented(&mut *out)).await;
        r.close().await;
        contracted?;

        heading(out, "new version alone");
        workload.set_phase(Phase::After);
        tokio::time::sleep(opts.phase_time).await;
        Ok::<Duration, Error>(bf_time)
    }
    .await;
    let (mut report, expected, inserted) = workload.stop().await;
    let bf_time = steps?;

    heading(out, "checking every row");
    let rows_moved: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(rows_done), 0)::bigint FROM migrate.backfills")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| Error::Database(format!("reading backfill totals: {e}")))?;
    report.backfill_rows = rows_moved;
    report.backfill_time = bf_time;
    load::check(&mut conn, opts.rows, expected, inserted, &mut report).await?;
    let _ = conn.close().await;
    Ok(report)
}
