//! `migrate rehearse`: the pending migrations tried on a scratch copy — forward, back and
//! forward — before production. A stage of its own above the engine: it drives the same
//! runner `expand`, `abort` and `contract` do.
//!
//! On the scratch database: the files' SQL as written is applied in a transaction that is
//! rolled back, for the end state they mean; then expand with its backfills, abort (later
//! migrations first), expand and backfill again, contract. After the abort every table must be
//! as it was before (columns, constraints and their validity, indexes and their validity,
//! triggers, rows); after the contract, as the files as written make it.

pub mod fingerprint;
mod locks;
mod probe;
pub mod scratch;

pub use locks::{strength as lock_strength, StepLock, StepTime};
pub use probe::ProbeReport;

use crate::config::Settings;
use crate::engine::connect;
use crate::engine::exec::ExecSettings;
use crate::engine::run::Runner;
use crate::engine::state::MigrationPhase;
use crate::error::Error;
use crate::files::MigrationEntry;
use fingerprint::Fingerprint;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

/// What a rehearsal runs with.
pub struct RehearseOptions {
    pub settings: Settings,
    /// The scratch database: a branch, a restored backup, a clone. It is changed.
    pub scratch_url: String,
    /// Rehearse the pending migrations up to and including this one.
    pub upto: Option<String>,
    pub exec: ExecSettings,
}

/// One phase of the rehearsal and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub seconds: f64,
}

/// What the rehearsal found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rehearsal {
    /// The migrations rehearsed, in order.
    pub migrations: Vec<String>,
    pub phases: Vec<PhaseTime>,
    /// What the abort did not put back as it was before expand.
    pub abort_differences: Vec<String>,
    /// Where the end state differs from what the files as written make.
    pub end_differences: Vec<String>,
    /// The phase that failed, and why.
    pub failed: Option<String>,
    /// What each app version's probe saw: the old one from before the first expand until just
    /// before contract, the new one while each expand stands and through contract.
    pub probes: Vec<ProbeReport>,
    /// Every step run, with its time and the locks it was seen holding, strongest first.
    pub steps: Vec<StepTime>,
    /// The scratch database the rehearsal made on the target's server, when it was given none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<scratch::ScratchReport>,
    /// The managed tables' sizes on the scratch database before the rehearsal.
    #[serde(skip)]
    pub scratch_sizes: BTreeMap<String, TableSize>,
    /// The production run's figures, projected from the target's table sizes and the rates
    /// the rehearsal measured, when the target could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
}

/// A table's size: the planner's row estimate and its bytes with indexes and TOAST (a
/// partitioned table's: its partitions').
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TableSize {
    pub rows: i64,
    pub bytes: i64,
}

/// What the production run is projected to take: each step that scans, rewrites or changes
/// the rows of a table, its time (less what a catalog-only step takes, which does not grow)
/// and size change multiplied by that table's size on the target over its size on the
/// scratch database. A projection, not a measurement: rates on a
/// copy of other size, cache and load differ.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Projection {
    /// The backfills' time, in seconds.
    pub backfill_seconds: f64,
    /// The other steps that scan or rewrite a table (index builds, validations), in seconds.
    pub scan_seconds: f64,
    /// The disk the run is projected to take: the growth of every step that grows a table.
    pub disk_bytes: i64,
    /// Per table: the scratch database's size against the target's.
    pub tables: Vec<ProjectedTable>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectedTable {
    pub table: String,
    pub scratch_bytes: i64,
    pub target_bytes: i64,
    pub target_rows: i64,
}

/// The sizes of the tables in `schemas`, keyed `schema.table`.
pub async fn table_sizes(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<BTreeMap<String, TableSize>, Error> {
    let rows: Vec<(String, String, f64, i64)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text,
                CASE WHEN c.relkind = 'p' THEN (SELECT sum(greatest(l.reltuples, 0)) FROM pg_partition_tree(c.oid) t
                                                 JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf)
                     ELSE greatest(c.reltuples, 0) END::float8,
                CASE WHEN c.relkind = 'p' THEN (SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
                     ELSE pg_total_relation_size(c.oid) END::int8
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading the tables' sizes: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|(schema, table, rows, bytes)| {
            (
                format!("{schema}.{table}"),
                TableSize {
                    rows: rows as i64,
                    bytes,
                },
            )
        })
        .collect())
}

/// The target's table sizes, read in a read-only session.
pub async fn target_sizes(
    url: &str,
    schemas: &[String],
) -> Result<BTreeMap<String, TableSize>, Error> {
    let mut c = connect(url).await?;
    sqlx::raw_sql("SET default_transaction_read_only = on")
        .execute(&mut c)
        .await
        .map_err(|e| Error::Database(e.to_string()))?;
    let sizes = table_sizes(&mut c, schemas).await;
    let _ = c.close().await;
    sizes
}

impl Rehearsal {
    /// Projects the steps of the last forward pass (expand, backfill and contract after the
    /// abort: the run production will see) onto the target's table sizes.
    pub fn project(&mut self, target: &BTreeMap<String, TableSize>, managed: &[String]) {
        let find =
            |sizes: &BTreeMap<String, TableSize>, name: &str| -> Option<(String, TableSize)> {
                let key = if name.contains('.') {
                    name.replace('"', "")
                } else {
                    format!(
                        "{}.{name}",
                        managed.first().map_or("public", String::as_str)
                    )
                };
                sizes.get(&key).map(|s| (key, *s))
            };
        let from = self
            .steps
            .iter()
            .rposition(|s| s.phase == "abort")
            .map_or(0, |i| i + 1);
        // What every step costs whatever the table's size (lock, round trips, checkpoint): the
        // median time of the steps that only change the catalog. Only the rest scales.
        let mut brief: Vec<f64> = self
            .steps
            .iter()
            .filter(|s| s.sized_by.is_none())
            .map(|s| s.ms)
            .collect();
        brief.sort_by(f64::total_cmp);
        let fixed = brief.get(brief.len() / 2).copied().unwrap_or(0.0);
        let mut p = Projection::default();
        for step in &mut self.steps[from..] {
            let Some(name) = &step.sized_by else { continue };
            let (Some((key, here)), Some((_, there))) =
                (find(&self.scratch_sizes, name), find(target, name))
            else {
                continue;
            };
            if here.bytes <= 0 {
                continue;
            }
            let factor = there.bytes as f64 / here.bytes as f64;
            let overhead = fixed.min(step.ms);
            let ms = overhead + (step.ms - overhead) * factor;
            let grows = (step.size_change as f64 * factor) as i64;
            step.projected_ms = Some(ms);
            step.projected_size_change = Some(grows);
            if step.phase == "backfill" {
                p.backfill_seconds += ms / 1e3;
            } else {
                p.scan_seconds += ms / 1e3;
            }
            p.disk_bytes += grows.max(0);
            if !p.tables.iter().any(|t| t.table == key) {
                p.tables.push(ProjectedTable {
                    table: key,
                    scratch_bytes: here.bytes,
                    target_bytes: there.bytes,
                    target_rows: there.rows,
                });
            }
        }
        self.projection = Some(p);
    }
}

impl Rehearsal {
    pub fn ok(&self) -> bool {
        self.failed.is_none()
            && self.abort_differences.is_empty()
            && self.end_differences.is_empty()
            && self.probes.iter().all(|p| p.failed == 0)
    }
}

/// Makes a scratch copy of `target` on its server, rehearses there and drops the copy, however
/// the rehearsal ends (Ctrl-C included; a copy left by a killed run goes at the next one).
pub async fn run_on_copy(
    target: &str,
    sample: &scratch::Sample,
    opts: RehearseOptions,
    out: &mut dyn Write,
) -> Result<Rehearsal, Error> {
    let managed = opts.settings.managed_schemas.clone();
    let hints = scratch::fk_hints(&opts.settings)?;
    let (copy, made) = scratch::Scratch::make(
        target,
        &managed,
        &opts.settings.metadata_schema,
        sample,
        &hints,
        out,
    )
    .await?;
    let _ = writeln!(
        out,
        "copied {} tables ({} rows) in {:.1} s",
        made.tables.len(),
        made.tables.iter().map(|t| t.rows).sum::<i64>(),
        made.seconds
    );
    let opts = RehearseOptions {
        scratch_url: copy.url.clone(),
        ..opts
    };
    let result = tokio::select! {
        r = run(&opts, out) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Stopped(
            "interrupted: the scratch database is dropped and the target was not touched".into(),
        )),
    };
    let removed = copy.remove().await;
    let mut report = result?;
    removed?;
    let sizes = target_sizes(target, &managed).await?;
    report.project(&sizes, &managed);
    report.scratch = Some(made);
    Ok(report)
}

/// Runs the rehearsal on the scratch database; the step lines go to `out`.
pub async fn run(opts: &RehearseOptions, out: &mut dyn Write) -> Result<Rehearsal, Error> {
    let s = &opts.settings;
    let url = opts.scratch_url.as_str();
    let lines = crate::engine::status::lines(s, url).await?;
    let mut pending: Vec<String> = Vec::new();
    for l in &lines {
        if matches!(l.phase, MigrationPhase::Pending | MigrationPhase::Aborted) && !l.file_missing {
            pending.push(l.name.clone());
        } else if !pending.is_empty() && l.phase != MigrationPhase::Pending {
            return Err(Error::Refused(format!(
                "{} is {} on the scratch database, after the pending {}: rehearse on a copy of a database whose applied migrations come first",
                l.name, l.phase, pending[0]
            )));
        }
        if opts.upto.as_deref() == Some(l.name.as_str()) {
            break;
        }
    }
    if let Some(u) = &opts.upto {
        if !lines.iter().any(|l| &l.name == u) {
            return Err(Error::Usage(format!(
                "no migration `{u}` in {}",
                s.migrations_dir.display()
            )));
        }
    }
    let mut report = Rehearsal {
        migrations: pending.clone(),
        ..Default::default()
    };
    if pending.is_empty() {
        return Ok(report);
    }
    let upto = pending.last().cloned();
    let files: Vec<MigrationEntry> = crate::files::list_dir(&s.migrations_dir)?
        .into_iter()
        .filter(|e| pending.contains(&e.name))
        .collect();
    let mut conn = connect(url).await?;
    let before = fingerprint::read(&mut conn, &s.managed_schemas, true).await?;
    report.scratch_sizes = table_sizes(&mut conn, &s.managed_schemas).await?;

    let started = Instant::now();
    let written = match as_written(&mut conn, &files, &s.managed_schemas).await {
        Ok(fp) => fp,
        Err(e) => {
            report.failed = Some(format!("applying the files as written: {e}"));
            return Ok(report);
        }
    };
    report.phases.push(PhaseTime {
        phase: "as written (rolled back)",
        seconds: started.elapsed().as_secs_f64(),
    });
    let _ = conn.close().await;

    // Forward, back, forward, while the app's versions probe: the old one from the start until
    // contract, the new one while each expand stands (it cannot outlive an abort) and on.
    // Each version uses the tables it knows: the old one those there before, the new one those
    // the files leave (not one they drop at contract).
    let known = |fp: &Fingerprint| -> Vec<String> {
        fp.tables
            .keys()
            .filter_map(|t| t.split_once('.').map(|(_, n)| n.to_string()))
            .collect()
    };
    let (old_tables, new_tables) = (known(&before), known(&written));
    let old_path = version_path(opts).await?;
    let (watch, observer) = locks::LockWatch::start(url).await?;
    let watched = RehearseOptions {
        settings: opts.settings.clone(),
        scratch_url: opts.scratch_url.clone(),
        upto: opts.upto.clone(),
        exec: ExecSettings {
            observer: Some(observer),
            ..opts.exec.clone()
        },
    };
    let opts = &watched;
    let mut old = Some(probe::Probe::start(url, "old", &old_path, &old_tables, "expand").await?);
    let mut new: Option<probe::Probe> = None;
    let mut new_reports = Vec::new();
    let outcome = async {
        let step = |phase: &'static str| (phase, Instant::now());
        let (phase, t) = step("expand + backfill");
        let _ = writeln!(out, "▸ {phase}");
        expand(opts, upto.as_deref(), out)
            .await
            .map_err(|e| format!("{phase}: {e}"))?;
        new = Some(new_version(opts, &new_tables, "expand").await?);
        report.phases.push(done(phase, t));
        let (phase, t) = step("abort");
        let _ = writeln!(out, "▸ {phase}");
        // The new version is rolled back first, as a deploy would be.
        if let Some(p) = new.take() {
            new_reports.push(p.stop().await);
        }
        old.as_ref().inspect(|p| p.phase("abort"));
        for name in pending.iter().rev() {
            on_scratch(opts, "abort", async |r: &mut Runner| {
                r.abort(name, out).await
            })
            .await
            .map_err(|e| format!("abort of {name}: {e}"))?;
        }
        report.phases.push(done(phase, t));
        let mut conn = connect(url).await.map_err(|e| e.to_string())?;
        let after_abort = fingerprint::read(&mut conn, &s.managed_schemas, true)
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        report.abort_differences = fingerprint::diff(&before, &after_abort);

        let (phase, t) = step("expand + backfill again");
        let _ = writeln!(out, "▸ {phase}");
        old.as_ref().inspect(|p| p.phase("expand again"));
        expand(opts, upto.as_deref(), out)
            .await
            .map_err(|e| format!("{phase}: {e}"))?;
        new = Some(new_version(opts, &new_tables, "expand again").await?);
        report.phases.push(done(phase, t));
        // The old version is gone before contract, as after a deploy.
        if let Some(p) = old.take() {
            report.probes.push(p.stop().await);
        }
        let (phase, t) = step("contract");
        let _ = writeln!(out, "▸ {phase}");
        new.as_ref().inspect(|p| p.phase("contract"));
        on_scratch(opts, "contract", async |r: &mut Runner| {
            r.contract(upto.as_deref(), out).await
        })
        .await
        .map_err(|e| format!("{phase}: {e}"))?;
        report.phases.push(done(phase, t));
        Ok::<(), String>(())
    }
    .await;
    if let Some(p) = old.take() {
        report.probes.push(p.stop().await);
    }
    if let Some(p) = new.take() {
        new_reports.push(p.stop().await);
    }
    report.steps = watch.finish().await;
    // The new version's two runs, as one.
    if let Some(mut n) = new_reports.first().cloned() {
        for r in &new_reports[1..] {
            n.requests += r.requests;
            n.failed += r.failed;
            n.p99_ms = n.p99_ms.max(r.p99_ms);
            n.max_ms = n.max_ms.max(r.max_ms);
            n.errors.extend(r.errors.iter().cloned());
            n.search_path = r.search_path.clone();
        }
        report.probes.push(n);
    }
    if let Err(e) = outcome {
        report.failed = Some(e);
        return Ok(report);
    }
    let mut conn = connect(url).await?;
    let end = fingerprint::read(&mut conn, &s.managed_schemas, false).await?;
    let _ = conn.close().await;
    report.end_differences = fingerprint::diff(&written, &end);
    Ok(report)
}

fn done(phase: &'static str, t: Instant) -> PhaseTime {
    PhaseTime {
        phase,
        seconds: t.elapsed().as_secs_f64(),
    }
}

/// The new version's probe, on the path of the version the expand just made.
async fn new_version(
    opts: &RehearseOptions,
    tables: &[String],
    phase: &'static str,
) -> Result<probe::Probe, String> {
    let path = version_path(opts).await.map_err(|e| e.to_string())?;
    probe::Probe::start(&opts.scratch_url, "new", &path, tables, phase)
        .await
        .map_err(|e| e.to_string())
}

/// The `search_path` the newest version connects with (`migrate latest`), or the managed
/// schemas where there is no version schema.
async fn version_path(opts: &RehearseOptions) -> Result<String, Error> {
    let mut r = Runner::open(&opts.scratch_url, opts.exec.clone(), opts.settings.clone()).await?;
    let latest = r.latest().await;
    r.close().await;
    let managed = &opts.settings.managed_schemas;
    Ok(match latest? {
        Some((schema, _)) => crate::engine::versions::search_path(&schema, managed),
        None => managed.join(","),
    })
}

/// One command on the scratch database as the command line runs it: a watched runner,
/// opened for it and closed after.
async fn on_scratch<T>(
    opts: &RehearseOptions,
    command: &str,
    run: impl AsyncFnOnce(&mut Runner) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut r = Runner::open_watched(
        &opts.scratch_url,
        opts.exec.clone(),
        opts.settings.clone(),
        command,
    )
    .await?;
    let done = run(&mut r).await;
    r.close().await;
    done
}

async fn expand(
    opts: &RehearseOptions,
    upto: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    on_scratch(opts, "expand", async |r: &mut Runner| {
        r.expand(upto, true, out).await
    })
    .await
    .map(|_| ())
}

/// The end state the files mean: their SQL as written, statement by statement, in one
/// transaction that is then rolled back. A statement that cannot run in a transaction block
/// runs without `CONCURRENTLY` (the same catalog result), or, if it still cannot (`VACUUM`),
/// is left out: it changes no table's shape.
async fn as_written(
    conn: &mut PgConnection,
    files: &[MigrationEntry],
    schemas: &[String],
) -> Result<Fingerprint, Error> {
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| Error::Database(e.to_string()))?;
    for f in files {
        let text = std::fs::read_to_string(&f.path).map_err(|e| Error::io(&f.path, e))?;
        for span in crate::sql::split::split(&text).statements {
            let stmt = &text[span.start..span.end];
            let line = text[..span.start].lines().count().max(1);
            let mut tries = vec![stmt.to_string()];
            if let Some(plain) = without_concurrently(stmt) {
                tries.push(plain);
            }
            let mut last = None;
            for sql in tries {
                sqlx::raw_sql("SAVEPOINT migrate_rehearse")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::Database(e.to_string()))?;
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        sqlx::raw_sql("ROLLBACK TO SAVEPOINT migrate_rehearse")
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| Error::Database(e.to_string()))?;
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last {
                let in_block = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "25001");
                if !in_block {
                    return Err(Error::Database(format!("{}:{line}: {e}", f.path.display())));
                }
            }
        }
    }
    let fp = fingerprint::read(&mut tx, schemas, false).await;
    let _ = tx.rollback().await;
    fp
}

/// `stmt` without the word CONCURRENTLY, if it has it.
fn without_concurrently(stmt: &str) -> Option<String> {
    let lower = stmt.to_ascii_lowercase();
    let word = "concurrently";
    let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::new();
    let mut at = 0;
    let mut found = false;
    while let Some(i) = lower[at..].find(word).map(|i| i + at) {
        let before = stmt[..i].chars().next_back();
        let after = stmt[i + word.len()..].chars().next();
        if !is_ident(before) && !is_ident(after) {
            out.push_str(&stmt[at..i]);
            found = true;
        } else {
            out.push_str(&stmt[at..i + word.len()]);
        }
        at = i + word.len();
    }
    out.push_str(&stmt[at..]);
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::without_concurrently;

    #[test]
    fn concurrently_comes_out_as_a_word_only() {
        assert_eq!(
            without_concurrently("CREATE INDEX CONCURRENTLY ix ON t (a)").as_deref(),
            Some("CREATE INDEX  ix ON t (a)")
        );
        assert_eq!(
            without_concurrently("SELECT concurrently_done FROM t"),
            None
        );
        assert_eq!(without_concurrently("VACUUM t"), None);
    }
}
