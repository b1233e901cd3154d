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

pub use load::{DemoReport, Incident, PhaseRow, LOCK_WAIT_BOUND_MS};

/// `--incident`: the share of requests the bad release fails, and for how long.
const INCIDENT_SHARE: usize = 30;
const INCIDENT_TIME: Duration = Duration::from_secs(6);

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
    /// The report goes to stdout as JSON: everything else to stderr.
    pub json: bool,
    /// Mid-backfill, a bad release fails a share of the app's requests for a while.
    pub incident: bool,
    /// Runs watched by the guard (`--no-guard`: unwatched, for comparison).
    pub guard: bool,
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
    let first = first_migration(opts)?;

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

/// The fleet demo: the same migrations over `n` databases on one throwaway server, each under
/// its own two versions' traffic, rolled out as `--fleet` does — the canary first and alone,
/// then two at once. Returns each database's report.
pub async fn run_fleet(
    opts: &DemoOptions,
    n: usize,
    out: &mut dyn Write,
) -> Result<Vec<(String, DemoReport)>, Error> {
    let first = first_migration(opts)?;
    heading(
        out,
        &format!("starting a throwaway server with {n} databases"),
    );
    let mut server = server::Server::start(opts.database_url.as_deref()).await?;
    let _ = writeln!(out, "    {}", server.what);
    let mut targets = Vec::new();
    let mut made = Ok(());
    for i in 1..=n {
        let name = format!("migrate_demo_{}_tenant_{i}", std::process::id());
        match server.extra(&name).await {
            Ok(url) => targets.push(crate::fleet::Target::new(&format!("tenant_{i}"), &url)),
            Err(e) => {
                made = Err(e);
                break;
            }
        }
    }
    let result = match made {
        Ok(()) => tokio::select! {
            r = fleet_scenario(opts, targets, &first, out) => r,
            _ = tokio::signal::ctrl_c() => Err(Error::Usage("interrupted".into())),
        },
        Err(e) => Err(e),
    };
    heading(out, "removing the throwaway databases");
    server.stop().await;
    result
}

async fn fleet_scenario(
    opts: &DemoOptions,
    targets: Vec<crate::fleet::Target>,
    first: &str,
    out: &mut dyn Write,
) -> Result<Vec<(String, DemoReport)>, Error> {
    use crate::fleet::rollout::{self, Op};
    let settings = Settings {
        migrations_dir: opts.migrations.clone(),
        views: opts.views,
        ..Settings::default()
    };
    let n = targets.len();
    let rows = (opts.rows / n as i64).max(1000);
    let rate = opts.rate.div_ceil(n as u32).max(1);
    let fleet = crate::fleet::Fleet {
        targets: targets.clone(),
        canary: vec![0],
        stages: vec![1, n],
        watch: Duration::ZERO,
        parallel: 2,
        backfills: 1,
        source: PathBuf::from("the demo's fleet"),
    };
    let roll = |op: Op| {
        let (fleet, settings) = (&fleet, &settings);
        async move {
            let report = rollout::run(fleet, settings, &opts.exec, &op, opts.json).await?;
            if report.failed() {
                return Err(Error::Rollout(report.summary()));
            }
            Ok(report.summary())
        }
    };
    heading(
        out,
        &format!("creating the tables ({first}) and loading {rows} users into each database"),
    );
    let _ = out.flush();
    roll(Op::Expand {
        upto: Some(first.to_string()),
        backfill: true,
    })
    .await?;
    let mut conns = Vec::new();
    for t in &targets {
        let mut conn = PgConnection::connect(t.url())
            .await
            .map_err(|e| Error::Database(format!("connecting to {}: {e}", t.name)))?;
        load(&mut conn, rows).await?;
        conns.push(conn);
    }
    let mut workloads = Vec::new();
    for t in &targets {
        let w = Workload::start(t.url(), rows, rate, opts.views).await?;
        if opts.views {
            let schema = crate::engine::versions::schema_name(&settings.metadata_schema, first);
            let path = crate::engine::versions::search_path(&schema, &settings.managed_schemas);
            w.set_search_path(Version::Old, path);
        }
        w.set_phase(Phase::Before);
        w.run_version(Version::Old);
        workloads.push(w);
    }
    heading(
        out,
        &format!("old version serving {rate} requests/s on each of the {n} databases"),
    );
    tokio::time::sleep(opts.phase_time).await;
    let every = |p: Phase| workloads.iter().for_each(|w| w.set_phase(p));
    let steps = async {
        heading(
            out,
            "expand over the fleet: the canary first and alone, then two at once",
        );
        let _ = out.flush();
        every(Phase::Expand);
        let said = roll(Op::Expand {
            upto: None,
            backfill: false,
        })
        .await?;
        let _ = writeln!(out, "    {said}");
        if opts.views {
            for (t, w) in targets.iter().zip(&workloads) {
                let mut r = Runner::open(t.url(), opts.exec.clone(), settings.clone()).await?;
                let latest = r.latest().await;
                r.close().await;
                if let Some((schema, _)) = latest? {
                    let path =
                        crate::engine::versions::search_path(&schema, &settings.managed_schemas);
                    w.set_search_path(Version::New, path);
                }
            }
        }
        heading(
            out,
            "backfill over the fleet: one database backfilling at a time",
        );
        let _ = out.flush();
        every(Phase::Backfill);
        let bf_started = Instant::now();
        let said = roll(Op::Backfill { upto: None }).await?;
        let bf_time = bf_started.elapsed();
        let _ = writeln!(out, "    {said}");
        heading(
            out,
            "deploy: the new version starts beside the old one everywhere",
        );
        every(Phase::Deploy);
        workloads.iter().for_each(|w| w.run_version(Version::New));
        tokio::time::sleep(opts.phase_time).await;
        heading(out, "the old version stops");
        for w in &workloads {
            w.stop_version(Version::Old).await;
        }
        heading(out, "contract over the fleet (old version gone everywhere)");
        let _ = out.flush();
        every(Phase::Contract);
        let said = roll(Op::Contract { upto: None }).await?;
        let _ = writeln!(out, "    {said}");
        heading(out, "new version alone");
        every(Phase::After);
        tokio::time::sleep(opts.phase_time).await;
        Ok::<Duration, Error>(bf_time)
    }
    .await;
    let mut stopped = Vec::new();
    for w in workloads {
        stopped.push(w.stop().await);
    }
    let bf_time = steps?;
    heading(out, "checking every row of every database");
    let mut reports = Vec::new();
    for ((t, mut conn), (mut report, expected, inserted)) in targets.iter().zip(conns).zip(stopped)
    {
        report.backfill_rows = backfilled_rows(&mut conn).await?;
        // The fleet's backfills ran one database at a time: the rollout's time is theirs.
        report.backfill_time = bf_time;
        load::check(&mut conn, rows, expected, inserted, &mut report).await?;
        let _ = conn.close().await;
        reports.push((t.name.clone(), report));
    }
    Ok(reports)
}

/// The rows every backfill of the database walked, from the metadata.
async fn backfilled_rows(conn: &mut PgConnection) -> Result<i64, Error> {
    sqlx::query_scalar("SELECT coalesce(sum(rows_done), 0)::bigint FROM migrate.backfills")
        .fetch_one(conn)
        .await
        .map_err(|e| Error::Database(format!("reading backfill totals: {e}")))
}

/// The bad release: once the backfill has begun, a share of the app's requests fail for a
/// while. Its start and end on the server's clock.
async fn incident(workload: &load::Workload, url: &str) -> Result<(f64, f64), Error> {
    let db = |e: sqlx::Error| Error::Database(format!("the demo's incident: {e}"));
    let mut c = PgConnection::connect(url).await.map_err(db)?;
    let begun = Instant::now();
    while backfilled_rows(&mut c).await? == 0 {
        if begun.elapsed() > Duration::from_secs(60) {
            return Err(Error::Usage(
                "the demo's incident: no backfill began within 60 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = "SELECT extract(epoch FROM clock_timestamp())::float8";
    let start: f64 = sqlx::query_scalar(now)
        .fetch_one(&mut c)
        .await
        .map_err(db)?;
    workload.set_incident(INCIDENT_SHARE);
    tokio::time::sleep(INCIDENT_TIME).await;
    workload.set_incident(0);
    let end: f64 = sqlx::query_scalar(now)
        .fetch_one(&mut c)
        .await
        .map_err(db)?;
    let _ = c.close().await;
    Ok((start, end))
}

/// What the guard did about the incident, from its events in the metadata.
async fn guard_answer(
    url: &str,
    (start, end): (f64, f64),
    failed_requests: usize,
) -> Result<Incident, Error> {
    let db = |e: sqlx::Error| Error::Database(format!("reading the guard's events: {e}"));
    let mut c = PgConnection::connect(url).await.map_err(db)?;
    let events: Vec<(f64, String, Option<String>)> = sqlx::query_as(
        "SELECT extract(epoch FROM at)::float8, action, signal FROM migrate.guard_events
         WHERE command = 'backfill' AND at >= to_timestamp($1) ORDER BY at",
    )
    .bind(start)
    .fetch_all(&mut c)
    .await
    .map_err(db)?;
    let _ = c.close().await;
    let pause = events.iter().position(|e| e.1 == "pause");
    let resume = pause.and_then(|p| events[p..].iter().find(|e| e.1 == "resume"));
    Ok(Incident {
        share: INCIDENT_SHARE,
        seconds: end - start,
        failed_requests,
        noticed_after_s: pause.map(|p| events[p].0 - start),
        resumed_after_end_s: resume.map(|r| r.0 - end),
        signal: pause.and_then(|p| events[p].2.clone()),
    })
}

/// The first migration of the example: the one that creates the tables.
fn first_migration(opts: &DemoOptions) -> Result<String, Error> {
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
    Ok(first.trim_end_matches(".sql").to_string())
}

async fn scenario(
    opts: &DemoOptions,
    url: &str,
    first: &str,
    out: &mut dyn Write,
) -> Result<DemoReport, Error> {
    let mut settings = Settings {
        migrations_dir: opts.migrations.clone(),
        views: opts.views,
        ..Settings::default()
    };
    settings.guard.enabled = opts.guard;
    let runner = |s: Settings, command: &'static str| {
        Runner::open_watched(url, opts.exec.clone(), s, command)
    };

    heading(out, &format!("creating the tables ({first})"));
    let mut r = runner(settings.clone(), "expand").await?;
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
        let mut r = runner(settings.clone(), "expand").await?;
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
        let mut r = runner(settings.clone(), "backfill").await?;
        let incident = async {
            match opts.incident {
                true => Some(incident(&workload, url).await),
                false => None,
            }
        };
        let (backfilled, times) = {
            let mut lines = indented(&mut *out);
            tokio::join!(r.backfill(None, &mut lines), incident)
        };
        r.close().await;
        backfilled?;
        let bf_time = bf_started.elapsed();
        let incident = match times {
            Some(t) => Some(guard_answer(url, t?, workload.incident_failed()).await?),
            None => None,
        };

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
        let mut r = runner(settings.clone(), "contract").await?;
        let contracted = r.contract(None, &mut indented(&mut *out)).await;
        r.close().await;
        contracted?;

        heading(out, "new version alone");
        workload.set_phase(Phase::After);
        tokio::time::sleep(opts.phase_time).await;
        Ok::<_, Error>((bf_time, incident))
    }
    .await;
    let (mut report, expected, inserted) = workload.stop().await;
    let (bf_time, incident) = steps?;
    report.incident = incident;

    heading(out, "checking every row");
    report.backfill_rows = backfilled_rows(&mut conn).await?;
    report.backfill_time = bf_time;
    load::check(&mut conn, opts.rows, expected, inserted, &mut report).await?;
    let _ = conn.close().await;
    Ok(report)
}
