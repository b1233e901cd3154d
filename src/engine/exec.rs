//! Running one plan step against a live database without stalling it.
//!
//! Every statement runs with a short `lock_timeout` set on that very connection: a DDL that
//! waits for its lock makes every query queued behind it wait too, so a try gives up after
//! about 100 ms and the step tries again after a pause that lets the queue drain, the pauses
//! growing with jitter toward a bound, a bounded number of times — never a last try without a
//! timeout. A user-facing stall is bounded by one try.
//!
//! Before every try the sessions holding locks on the step's tables are looked at: an ordinary
//! autovacuum is cancelled (PostgreSQL would cancel it itself, but only after
//! `deadlock_timeout`, 1 s by default, which a short try never reaches), one that prevents
//! wraparound is waited out, and a transaction that has held its lock for a while is named at
//! once rather than after the last try. Transactional steps run in one transaction each. `CONCURRENTLY`
//! steps run alone, outside any transaction, with `statement_timeout` lifted; an INVALID index
//! left by a failed concurrent build is dropped and built again.

use super::partitions;
use super::state::{Metadata, MigrationPhase};
use crate::error::Error;
use crate::model::QualifiedName;
use crate::plan::{Key, KeyAction, Step, StepKind};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::time::{Duration, Instant};

/// How steps are run.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// The longest a statement waits for a lock on its first try.
    pub lock_timeout: Duration,
    /// Tries after the first double their lock_timeout up to this (default: no growth).
    pub lock_timeout_max: Duration,
    /// Tries after the first when a lock is not granted in time.
    pub retries: u32,
    /// The first pause between tries; it doubles up to `max_backoff`, with jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The limit for transactional steps (concurrent builds have none).
    pub statement_timeout: Option<Duration>,
    pub backfill: crate::config::BackfillSettings,
    /// Set when this database is one target of a rollout over many (`--fleet`).
    pub rollout: Option<RolloutHooks>,
    /// The guard watching this run, when one is (`[guard]`).
    pub guard: Option<super::guard::GuardHandle>,
    /// The guard's events go to stdout as JSON lines (`--format json`).
    pub json_events: bool,
    /// Told when each step starts and ends (a rehearsal times them and their locks).
    pub observer: Option<StepObserver>,
}

/// A step starting or ending: the migration, the phase's label, the step's place and action.
#[derive(Debug, Clone)]
pub struct StepEvent {
    pub migration: String,
    pub label: String,
    pub step: usize,
    pub action: String,
    /// The table whose size the step's time follows (it scans, rewrites or changes its rows),
    /// as `schema.table` or the bare name the plan gave; None for a catalog change only.
    pub sized_by: Option<String>,
    pub start: bool,
}

/// What is told of each step as it starts and ends.
#[derive(Clone)]
pub struct StepObserver(pub std::sync::Arc<dyn Fn(StepEvent) + Send + Sync>);

impl std::fmt::Debug for StepObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepObserver")
    }
}

/// What a rollout over many databases shares with the run on each of them: the flag that
/// stops it at the next step or batch (another target failed), the budget of backfills that
/// may run at once across the fleet, and where the backfill's progress goes instead of a bar
/// of its own.
#[derive(Debug, Clone)]
pub struct RolloutHooks {
    pub target: String,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub backfills: std::sync::Arc<tokio::sync::Semaphore>,
    /// Rows walked and the estimate of the backfill running on this target, if any.
    pub progress: std::sync::Arc<std::sync::Mutex<Option<(i64, i64)>>>,
}

impl ExecSettings {
    /// A message to the person running the command, on stderr; in a rollout, after the
    /// target's name.
    pub fn say(&self, message: &str) {
        match &self.rollout {
            Some(h) => eprintln!("{}{message}", h.target),
            None => eprintln!("{message}"),
        }
    }
}

impl RolloutHooks {
    /// The error that ends this target's run early, when the rollout is stopping; `before`
    /// says where (built only then: it is checked before every backfill batch).
    pub fn check(&self, before: impl FnOnce() -> String) -> Result<(), Error> {
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Stopped(format!(
                "{}: stopped before {}, because the rollout is stopping; run the command again to resume here",
                self.target,
                before()
            )));
        }
        Ok(())
    }
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            lock_timeout: Duration::from_millis(100),
            lock_timeout_max: Duration::from_millis(100),
            retries: 30,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
            statement_timeout: None,
            backfill: Default::default(),
            rollout: None,
            guard: None,
            json_events: false,
            observer: None,
        }
    }
}

/// What running a step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Tries that timed out waiting for a lock before the one that succeeded.
    pub lock_timeouts: u32,
    /// An INVALID index from an earlier failed build was dropped first.
    pub rebuilt_invalid_index: bool,
    /// The step's index already existed and was valid: nothing to do.
    pub already_done: bool,
    /// Tables whose ordinary autovacuum was cancelled so the step could have its lock.
    pub cancelled_autovacuum: Vec<String>,
    /// Sessions named as holding the step's tables for a while (pids).
    pub named_holders: Vec<i32>,
}

/// The metadata update that records a step as done: committed in the step's own transaction
/// (or, for a concurrent step, right after it; those steps are idempotent).
pub struct Checkpoint<'a> {
    pub meta: &'a Metadata,
    pub migration: &'a str,
    pub phase: MigrationPhase,
    /// Steps of the phase done once this one is.
    pub step: i32,
}

/// Why one try of a step failed.
enum TryError {
    Sql(sqlx::Error),
    Other(Error),
}

impl From<sqlx::Error> for TryError {
    fn from(e: sqlx::Error) -> Self {
        TryError::Sql(e)
    }
}

const LOCK_NOT_AVAILABLE: &str = "55P03";

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// `SET LOCAL lock_timeout = '…'`: the statement every transactional step starts with.
fn set_local_lock_timeout(timeout: Duration) -> String {
    format!("SET LOCAL lock_timeout = '{}'", pg_duration(timeout))
}

/// The lock_timeout of try `n` (from 0): the first try's, doubling up to `lock_timeout_max`.
fn try_timeout(settings: &ExecSettings, n: u32) -> Duration {
    settings
        .lock_timeout
        .saturating_mul(1u32 << n.min(16))
        .min(settings.lock_timeout_max.max(settings.lock_timeout))
}

fn pg_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A pause before try `n` (from 1): exponential, capped, with up to 50% jitter so that several
/// runners (or retries after a shared blocker ends) do not stampede together.
pub(crate) fn backoff(settings: &ExecSettings, n: u32) -> Duration {
    let base = settings
        .backoff
        .saturating_mul(1u32 << n.min(16).saturating_sub(1));
    let capped = base.min(settings.max_backoff);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let jitter = capped.as_nanos() as u64 / 2 * (nanos % 1000) / 1000;
    capped + Duration::from_nanos(jitter)
}

/// Runs one step, retrying lock timeouts; on giving up, fails naming the sessions that hold
/// locks on the step's table. A failed step leaves the database as it was (transactional
/// steps roll back; a failed concurrent build's leftover is handled by the next try or run).
pub async fn run_step(
    conn: &mut PgConnection,
    step: &Step,
    settings: &ExecSettings,
    checkpoint: Option<&Checkpoint<'_>>,
) -> Result<StepReport, Error> {
    let mut report = StepReport {
        lock_timeouts: 0,
        rebuilt_invalid_index: false,
        already_done: false,
        cancelled_autovacuum: Vec::new(),
        named_holders: Vec::new(),
    };
    let started = Instant::now();
    let tables: Vec<String> = step.locks.iter().map(|l| l.table.sql()).collect();
    loop {
        if let Some(g) = &settings.guard {
            g.gate(|| step.action.clone()).await?;
        }
        let timeout = try_timeout(settings, report.lock_timeouts);
        if !tables.is_empty() {
            // A failure to look is no reason not to try: the try's own timeout still holds.
            let _ = clear_known_holders(conn, &tables, settings, &mut report).await;
        }
        let outcome = match &step.kind {
            StepKind::Concurrent { index, partitioned } => {
                let split = match (index, partitioned.as_deref()) {
                    (Some(_), Some(parent_only)) => Split::OnOnly(parent_only),
                    (None, Some(plain)) => Split::PlainDrop(plain),
                    _ => Split::No,
                };
                let run = run_concurrent(conn, step, index.as_ref(), split, timeout, &mut report);
                let done = run.await;
                checkpoint_after(conn, done, checkpoint).await
            }
            StepKind::Keys { keys, action } => {
                run_keys(
                    conn,
                    step,
                    (keys, action),
                    timeout,
                    settings,
                    checkpoint,
                    &mut report,
                )
                .await
            }
            StepKind::ForeignKey {
                table,
                name,
                definition,
                action,
            } => {
                let fk = partitions::ForeignKey {
                    table: &table.sql(),
                    name,
                    definition,
                };
                match partitions::split_foreign_key(conn, &fk).await {
                    Ok(false) => {
                        run_transactional(conn, step, timeout, settings, checkpoint, None).await
                    }
                    Ok(true) => {
                        let lock = set_local_lock_timeout(timeout);
                        let done = partitions::foreign_key(conn, &fk, *action, &lock).await;
                        checkpoint_after(conn, done, checkpoint).await
                    }
                    Err(e) => Err(TryError::Sql(e)),
                }
            }
            _ => run_transactional(conn, step, timeout, settings, checkpoint, None).await,
        };
        match outcome {
            Ok(()) => return Ok(report),
            Err(TryError::Other(e)) => return Err(e),
            Err(TryError::Sql(e)) if sqlstate(&e).as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                report.lock_timeouts += 1;
                if let Some(g) = &settings.guard {
                    g.own_rollback();
                }
                if report.lock_timeouts > settings.retries {
                    let blockers = blockers(conn, &tables).await;
                    return Err(Error::LockTimeout(format!(
                        "{}: no lock after {} tries of {}{} ({:.1} s in all){blockers}; the step was not applied — run again when the blocker is gone",
                        step.action,
                        report.lock_timeouts,
                        pg_duration(settings.lock_timeout),
                        if settings.lock_timeout_max > settings.lock_timeout {
                            format!(" to {}", pg_duration(settings.lock_timeout_max))
                        } else {
                            " each".to_string()
                        },
                        started.elapsed().as_secs_f64()
                    )));
                }
                tokio::time::sleep(backoff(settings, report.lock_timeouts)).await;
            }
            Err(TryError::Sql(e)) => {
                return Err(Error::Database(format!(
                    "{}: {e}\n{}",
                    step.action, step.sql
                )))
            }
        }
    }
}

/// Records the checkpoint of a step that ran outside one transaction, once it is done.
async fn checkpoint_after(
    conn: &mut PgConnection,
    done: Result<(), sqlx::Error>,
    checkpoint: Option<&Checkpoint<'_>>,
) -> Result<(), TryError> {
    done.map_err(TryError::Sql)?;
    match checkpoint {
        Some(cp) => cp
            .meta
            .checkpoint(&mut *conn, cp.migration, cp.phase, cp.step)
            .await
            .map_err(TryError::Other),
        None => Ok(()),
    }
}

/// A [`StepKind::Keys`] step: the step's SQL on a plain table; on a partitioned one, each
/// leaf partition's index, then (attach) each leaf's constraint and the parent's.
async fn run_keys(
    conn: &mut PgConnection,
    step: &Step,
    (keys, action): (&[Key], &KeyAction),
    timeout: Duration,
    settings: &ExecSettings,
    checkpoint: Option<&Checkpoint<'_>>,
    report: &mut StepReport,
) -> Result<(), TryError> {
    if let KeyAction::Attach { before, after } = action {
        let partitioned = match keys.first() {
            Some(k) => partitions::is_partitioned(conn, &k.table.sql()).await?,
            None => false,
        };
        if partitioned {
            // A partition attached since expand has no index yet: build it first, outside
            // the transaction (nothing to do on the others).
            for key in keys {
                let split = Split::BuildKey(key);
                run_concurrent(conn, step, None, split, timeout, report).await?;
            }
        }
        let attach = Attach {
            before,
            keys,
            partitioned,
            after,
        };
        return run_transactional(conn, step, timeout, settings, checkpoint, Some(attach)).await;
    }
    let Some(first) = keys.first() else {
        return run_transactional(conn, step, timeout, settings, checkpoint, None).await;
    };
    let partitioned = partitions::is_partitioned(conn, &first.table.sql()).await?;
    let index = QualifiedName::new(first.table.schema.as_deref(), &first.index);
    let split = match (partitioned, action) {
        (false, _) => Split::No,
        (true, KeyAction::Build) => Split::BuildKey(first),
        (true, _) => Split::DropKey(first),
    };
    let index = matches!(action, KeyAction::Build).then_some(&index);
    let done = run_concurrent(conn, step, index, split, timeout, report).await;
    checkpoint_after(conn, done, checkpoint).await
}

/// A key step's attach transaction: `before`, each key made its constraint (the partitioned
/// form when `partitioned`), then the foreign keys `after`.
struct Attach<'a> {
    before: &'a str,
    keys: &'a [Key],
    partitioned: bool,
    after: &'a [crate::plan::LateForeignKey],
}

/// Runs the step in one transaction under the try's lock_timeout, with its checkpoint; with
/// `attach`, runs that instead of the step's SQL.
async fn run_transactional(
    conn: &mut PgConnection,
    step: &Step,
    timeout: Duration,
    settings: &ExecSettings,
    checkpoint: Option<&Checkpoint<'_>>,
    attach: Option<Attach<'_>>,
) -> Result<(), TryError> {
    let mut tx = conn.begin().await?;
    // SET LOCAL: the timeouts end with the transaction, on this very connection.
    let lock = set_local_lock_timeout(timeout);
    sqlx::raw_sql(AssertSqlSafe(lock)).execute(&mut *tx).await?;
    if let Some(st) = settings.statement_timeout {
        let st = format!("SET LOCAL statement_timeout = '{}'", pg_duration(st));
        sqlx::raw_sql(AssertSqlSafe(st)).execute(&mut *tx).await?;
    }
    match attach {
        None => {
            sqlx::raw_sql(AssertSqlSafe(step.sql.clone()))
                .execute(&mut *tx)
                .await?;
        }
        Some(a) => {
            if !a.before.is_empty() {
                sqlx::raw_sql(AssertSqlSafe(a.before.to_string()))
                    .execute(&mut *tx)
                    .await?;
            }
            for key in a.keys {
                if a.partitioned {
                    partitions::attach_key(&mut tx, key).await?;
                } else {
                    sqlx::raw_sql(AssertSqlSafe(key.attach_sql()))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for fk in a.after {
                partitions::add_foreign_key_not_valid(&mut tx, fk).await?;
            }
        }
    }
    if let Some(cp) = checkpoint {
        // In the same transaction: the step and its record commit together or not at all.
        cp.meta
            .checkpoint(&mut *tx, cp.migration, cp.phase, cp.step)
            .await
            .map_err(TryError::Other)?;
    }
    tx.commit().await.map_err(TryError::Sql)
}

/// What a concurrent step does instead on a table partitioned as it runs.
enum Split<'a> {
    /// Nothing different.
    No,
    /// Its index `ON ONLY` the parent, then each partition's built and attached.
    OnOnly(&'a str),
    /// A drop PostgreSQL refuses concurrently on a partitioned index: this plain one.
    PlainDrop(&'a str),
    /// A key's index built on each leaf partition.
    BuildKey(&'a Key),
    /// A key's index dropped from each leaf partition.
    DropKey(&'a Key),
}

/// Runs a `CONCURRENTLY` step outside a transaction under the try's lock_timeout (and no
/// statement_timeout). `index` is the index it builds: kept when valid, dropped and rebuilt
/// when a killed build left it INVALID.
async fn run_concurrent(
    conn: &mut PgConnection,
    step: &Step,
    index: Option<&QualifiedName>,
    split: Split<'_>,
    timeout: Duration,
    report: &mut StepReport,
) -> Result<(), sqlx::Error> {
    let set = format!(
        "SET lock_timeout = '{}'; SET statement_timeout = 0",
        pg_duration(timeout)
    );
    sqlx::raw_sql(AssertSqlSafe(set))
        .execute(&mut *conn)
        .await?;
    let result = async {
        match (&split, index) {
            (Split::BuildKey(key), _) => return partitions::build_key(conn, key, report).await,
            (Split::DropKey(key), _) => return partitions::drop_key(conn, key).await,
            (Split::OnOnly(parent_only), Some(index)) => {
                // The step's table; a partitioned one has no concurrent index build.
                if let Some(table) = step.locks.first().map(|l| l.table.sql()) {
                    if partitions::is_partitioned(conn, &table).await? {
                        return partitions::build_index(conn, &table, index, parent_only, report)
                            .await;
                    }
                }
            }
            _ => {}
        }
        if let Some(index) = index {
            if partitions::valid_or_cleared(conn, &index.sql(), report).await? {
                report.already_done = true;
                return Ok(());
            }
        }
        let ran = sqlx::raw_sql(AssertSqlSafe(step.sql.clone()))
            .execute(&mut *conn)
            .await
            .map(|_| ());
        match (ran, split) {
            // A drop of a partitioned index: PostgreSQL has no concurrent form, so the plain
            // one, under the session's short lock_timeout.
            (Err(e), Split::PlainDrop(plain)) if sqlstate(&e).as_deref() == Some("0A000") => {
                sqlx::raw_sql(AssertSqlSafe(plain.to_string()))
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            }
            (ran, _) => ran,
        }
    }
    .await;
    // Back to the session defaults whatever happened; the step's own error wins.
    let reset = sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout")
        .execute(&mut *conn)
        .await;
    result.and(reset.map(|_| ()))
}

/// How long a session must have held its transaction open to be named before the step waits
/// on it: longer than any request of an app.
const LONG_HOLDER_SECS: f64 = 1.0;

/// A session holding a lock on one of a step's tables.
struct Holder {
    pid: i32,
    backend: String,
    /// Its current or last statement, white space folded, at most 120 characters.
    query: String,
    table: String,
    mode: String,
    /// Seconds since its transaction began.
    held: f64,
    state: String,
    application: String,
    user: String,
}

impl Holder {
    /// `pid 123 (AccessShareLock on users, report, user app, idle in transaction for 12 s: …)`
    fn describe(&self) -> String {
        format!(
            "pid {} ({} on {}, {}, user {}, {} for {:.0} s: {})",
            self.pid,
            self.mode,
            self.table,
            self.application,
            self.user,
            self.state,
            self.held,
            self.query
        )
    }
}

/// The sessions (other than this one) holding granted locks on these tables, one row each.
async fn holders(conn: &mut PgConnection, tables: &[String]) -> Result<Vec<Holder>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (l.pid) l.pid, coalesce(a.backend_type, ''),
                left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120),
                l.relation::regclass::text, l.mode,
                coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8,
                coalesce(a.state, '?'), coalesce(nullif(a.application_name, ''), '?'),
                coalesce(a.usename::text, '?')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.granted AND l.pid <> pg_backend_pid()
           AND l.relation = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
         ORDER BY l.pid",
    )
    .bind(tables)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Holder {
            pid: r.get(0),
            backend: r.get(1),
            query: r.get(2),
            table: r.get(3),
            mode: r.get(4),
            held: r.get(5),
            state: r.get(6),
            application: r.get(7),
            user: r.get(8),
        })
        .collect())
}

/// Looks at the sessions holding locks on the step's tables before a try: cancels an ordinary
/// autovacuum, says when one that prevents wraparound is in the way (PostgreSQL does not let it
/// be cancelled), and names, once, a transaction that has held its lock for a while.
async fn clear_known_holders(
    conn: &mut PgConnection,
    tables: &[String],
    settings: &ExecSettings,
    report: &mut StepReport,
) -> Result<(), sqlx::Error> {
    for h in holders(conn, tables).await? {
        let (pid, table) = (h.pid, &h.table);
        if h.backend == "autovacuum worker" {
            if h.query.contains("to prevent wraparound") {
                if !report.named_holders.contains(&pid) {
                    report.named_holders.push(pid);
                    settings.say(&format!(
                        "  waiting: an autovacuum that prevents wraparound works on {table} (pid {pid}); PostgreSQL does not let it be cancelled, so the step tries again until it ends"
                    ));
                }
                continue;
            }
            match sqlx::query_scalar::<_, bool>("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .fetch_one(&mut *conn)
                .await
            {
                Ok(true) => {
                    settings.say(&format!(
                        "  cancelled the autovacuum of {table} (pid {pid}): PostgreSQL would cancel it for this lock anyway, but only after deadlock_timeout; it runs again later"
                    ));
                    report.cancelled_autovacuum.push(h.table.clone());
                }
                Ok(false) => {}
                Err(e) if !report.named_holders.contains(&pid) => {
                    report.named_holders.push(pid);
                    settings.say(&format!(
                        "  waiting: an autovacuum works on {table} (pid {pid}) and cannot be cancelled by this role ({e}; it needs superuser, or pg_signal_autovacuum_worker from PostgreSQL 18); the step tries again until it ends"
                    ));
                }
                Err(_) => {}
            }
            continue;
        }
        if h.held >= LONG_HOLDER_SECS && !report.named_holders.contains(&pid) {
            report.named_holders.push(pid);
            settings.say(&format!(
                "  waiting: {} holds its lock; the step tries again every few hundred ms, {} times at most",
                h.describe(),
                settings.retries
            ));
        }
    }
    Ok(())
}

/// The sessions holding locks on these tables, for an error message: `; blocked by …`.
pub(crate) async fn blockers(conn: &mut PgConnection, tables: &[String]) -> String {
    if tables.is_empty() {
        return String::new();
    }
    match holders(conn, tables).await {
        Ok(list) if !list.is_empty() => {
            let list: Vec<String> = list.iter().map(Holder::describe).collect();
            format!("; blocked by {}", list.join("; "))
        }
        _ => "; the blocking session has ended since".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_half() {
        let s = ExecSettings {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..ExecSettings::default()
        };
        for n in 1..10 {
            let b = backoff(&s, n);
            let base = Duration::from_millis(100 * (1 << (n - 1))).min(Duration::from_millis(1000));
            assert!(
                b >= base && b <= base + base / 2,
                "try {n}: {b:?} vs {base:?}"
            );
        }
    }
}
