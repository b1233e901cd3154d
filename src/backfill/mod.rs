//! Batched backfills: keyset batches over the primary key — any type (integer, bigint, uuid,
//! text, …) and composite keys — or, in a table without one, over its unique index of NOT
//! NULL columns; each batch its own short transaction under a short
//! lock_timeout, its cursor saved in the same transaction. The last key is fixed when the
//! backfill starts; rows written later are kept right by the expand triggers, so it always
//! ends. Each batch walks the key index from the cursor, so its cost stays flat from the first
//! batch to the last. A `kill -9` loses at most the batch in flight.
//!
//! The batch size moves toward a target duration ([`Sizer`]); batches pause when asked to,
//! when a commit stalls, and while a replica lags; progress is a bar on a terminal and a log
//! line every few seconds elsewhere.

use crate::config::BackfillSettings;
use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata};
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::time::{Duration, Instant};

/// One backfill of a migration's plan.
pub struct Backfill<'a> {
    pub migration: &'a str,
    /// Its place among the migration's backfills.
    pub ordinal: i32,
    pub table: &'a QualifiedName,
    pub set: &'a [(String, String)],
    pub filter: Option<&'a str>,
    /// True of a row still wrong: every row a batch updates is checked as written, in the
    /// batch's own statement.
    pub verify: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Rows changed.
    pub rows: i64,
    /// Rows walked (changed or already right).
    pub walked: i64,
    pub batches: i64,
    /// Batches that met a row lock held longer than the batch lock_timeout, and were retried
    /// smaller.
    pub lock_timeouts: i64,
    pub smallest: i64,
    pub largest: i64,
    /// Time spent waiting for replicas to catch up.
    pub replica_wait: Duration,
    /// Whether every row updated was checked as written (see `verify` of the step).
    pub verified: bool,
    /// Batches run while other sessions were busy (with `busy_pause`).
    pub busy_batches: i64,
}

/// Whether other sessions are using the database: their commits per second, from
/// `pg_stat_database`, sampled every two seconds, less the transactions we made ourselves.
struct Busy {
    at: Instant,
    commits: Option<i64>,
    /// Our own transactions since the last sample.
    own: i64,
    tps: f64,
    busy: bool,
}

const BUSY_SAMPLE: Duration = Duration::from_secs(2);

impl Busy {
    async fn commits(conn: &mut PgConnection) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(conn)
        .await
        .ok()
    }

    async fn new(conn: &mut PgConnection) -> Busy {
        Busy {
            at: Instant::now(),
            commits: Self::commits(conn).await,
            own: 1,
            tps: 0.0,
            busy: false,
        }
    }

    fn due(&self) -> bool {
        self.at.elapsed() >= BUSY_SAMPLE
    }

    async fn sample(&mut self, conn: &mut PgConnection, threshold: u32) {
        let now = Self::commits(conn).await;
        let secs = self.at.elapsed().as_secs_f64();
        if let (Some(before), Some(after)) = (self.commits, now) {
            // Statistics reach pg_stat_database up to a second late, ours too: the estimate
            // is rough, which a threshold well above our own batch rate absorbs.
            self.tps = ((after - before - self.own) as f64 / secs).max(0.0);
            self.busy = self.tps > f64::from(threshold);
        }
        self.commits = now;
        self.at = Instant::now();
        self.own = 1;
    }
}

/// Moves the batch size toward the target duration: grows at most a fifth per batch, and only
/// after a full batch that was quicker than the target; shrinks at once to the size that would
/// have met the target (at most to a quarter per batch) after a slow one, and to a quarter
/// after a lock timeout. Always within the bounds.
#[derive(Debug, Clone)]
pub struct Sizer {
    rows: f64,
    min: f64,
    max: f64,
    target: Duration,
}

impl Sizer {
    pub fn new(s: &BackfillSettings, resume_at: Option<i64>) -> Sizer {
        let mut sizer = Sizer {
            rows: resume_at.unwrap_or(s.initial_rows) as f64,
            min: s.min_rows as f64,
            max: s.max_rows as f64,
            target: s.target,
        };
        sizer.clamp();
        sizer
    }

    pub fn rows(&self) -> i64 {
        self.rows.round() as i64
    }

    fn clamp(&mut self) {
        self.rows = self.rows.clamp(self.min, self.max);
    }

    /// After a batch that took `took` for `walked` rows.
    pub fn observe(&mut self, walked: i64, took: Duration) {
        let ratio = self.target.as_secs_f64() / took.as_secs_f64().max(1e-6);
        if ratio < 1.0 {
            let fitting = walked.max(1) as f64 * ratio;
            self.rows = fitting.clamp(self.rows / 4.0, self.rows);
        } else if walked >= self.rows() {
            self.rows *= ratio.min(1.2);
        }
        self.clamp();
    }

    /// After a batch that gave up waiting for a row lock.
    pub fn lock_timeout(&mut self) {
        self.rows /= 4.0;
        self.clamp();
    }

    pub fn at_min(&self) -> bool {
        self.rows <= self.min
    }
}

/// The largest replay lag of any replica, when there is one.
async fn replica_lag(conn: &mut PgConnection) -> Result<Option<Duration>, Error> {
    let lag: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(coalesce(replay_lag, flush_lag, write_lag)))::float8 FROM pg_stat_replication",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading replica lag from pg_stat_replication: {e}")))?;
    Ok(lag.map(Duration::from_secs_f64))
}

/// Rows done, rows/s and time left: a bar on a terminal, a line every few seconds elsewhere.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    started: Instant,
    last_line: Instant,
    start_walked: i64,
    total: i64,
}

/// How often the progress line is written when the output is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    fn new(label: String, done: i64, total: i64) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total.max(done) as u64),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {human_pos}/~{human_len} rows  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar.set_position(done as u64);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            label,
            started: Instant::now(),
            last_line: Instant::now(),
            start_walked: done,
            total,
        }
    }

    fn update(&mut self, walked: i64, size: i64) {
        if walked > self.total {
            self.total = walked;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.total as u64);
                bar.set_position(walked as u64);
                bar.set_message(format!("batch {size}"));
            }
            None if self.last_line.elapsed() >= LOG_EVERY => {
                self.last_line = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                let rate = (walked - self.start_walked) as f64 / secs;
                let left = (self.total - walked).max(0) as f64;
                eprintln!(
                    "{}: {walked} / ~{} rows ({:.0}%), {:.0} rows/s, ~{:.0} s left, batch {size} rows",
                    self.label,
                    self.total,
                    100.0 * walked as f64 / self.total.max(1) as f64,
                    rate,
                    if rate > 0.0 { left / rate } else { 0.0 }
                );
            }
            None => {}
        }
    }

    fn say(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("{}: {message}", self.label),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A column of the key a backfill walks: its name and type.
struct KeyColumn {
    name: String,
    ty: String,
}

/// The key a backfill walks the table by: the primary key, or else the unique index over NOT
/// NULL columns with the fewest columns (valid, not partial, no expressions), which orders and
/// identifies every row just as well. None of either is a clear error naming the fix.
async fn walk_key(conn: &mut PgConnection, table: &QualifiedName) -> Result<Vec<KeyColumn>, Error> {
    let rows = sqlx::query(
        "WITH candidates AS (
             SELECT i.indexrelid, i.indisprimary, i.indnkeyatts,
                    pg_relation_size(i.indexrelid) AS size
             FROM pg_index i
             WHERE i.indrelid = to_regclass($1)
               AND (i.indisprimary OR (i.indisunique AND i.indisvalid AND i.indpred IS NULL
                    AND i.indexprs IS NULL
                    AND NOT EXISTS (
                        SELECT FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        WHERE NOT a.attnotnull)))
             ORDER BY i.indisprimary DESC, i.indnkeyatts, size, i.indexrelid
             LIMIT 1)
         SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM candidates c
         JOIN pg_index i ON i.indexrelid = c.indexrelid
         CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         ORDER BY k.ord",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading the key of {table}: {e}")))?;
    if rows.is_empty() {
        return Err(Error::Usage(format!(
            "{table} has no primary key and no unique index over NOT NULL columns, so it cannot be backfilled in batches: add a primary key (for example a bigint identity column), or CREATE UNIQUE INDEX CONCURRENTLY over columns that are NOT NULL, first"
        )));
    }
    Ok(rows
        .iter()
        .map(|r| KeyColumn {
            name: r.get(0),
            ty: r.get(1),
        })
        .collect())
}

/// `(a, b)` over the key columns, each prefixed.
fn key_list(keys: &[KeyColumn], prefix: &str) -> String {
    let cols: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}{}", quote_ident(&k.name)))
        .collect();
    format!("({})", cols.join(", "))
}

/// `($n::text::type, …)`: key values bound as text and cast back to the column types.
fn key_params(keys: &[KeyColumn], first: usize) -> String {
    let params: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("${}::text::{}", first + i, k.ty))
        .collect();
    format!("({})", params.join(", "))
}

/// Runs or resumes a backfill.
pub async fn run(
    conn: &mut PgConnection,
    meta: &Metadata,
    b: &Backfill<'_>,
    exec: &ExecSettings,
) -> Result<BackfillReport, Error> {
    let settings = &exec.backfill;
    let keys = walk_key(conn, b.table).await?;
    let table = b.table.sql();
    let name = table.clone();
    let db = move |what: &'static str| {
        let name = name.clone();
        move |e: sqlx::Error| Error::Database(format!("backfilling {name}: {what}: {e}"))
    };
    let n = keys.len();
    let plain = key_list(&keys, "");
    let as_text: Vec<String> = keys
        .iter()
        .map(|k| format!("{}::text", quote_ident(&k.name)))
        .collect();
    let desc: Vec<String> = keys
        .iter()
        .map(|k| format!("{} DESC", quote_ident(&k.name)))
        .collect();

    let (mut cursor, mut walked, estimate) =
        match meta.backfill_cursor(conn, b.migration, b.ordinal).await? {
            Some((saved, done)) => {
                let estimate = table_estimate(conn, b.table).await?;
                (saved, done, estimate)
            }
            None => {
                // The bound: the last key that exists now.
                let r = sqlx::query(AssertSqlSafe(format!(
                    "SELECT ARRAY[{}] FROM {table} ORDER BY {} LIMIT 1",
                    as_text.join(", "),
                    desc.join(", ")
                )))
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading the last key"))?;
                let upper = r.map(|r| r.get::<Vec<String>, _>(0));
                let estimate = table_estimate(conn, b.table).await?;
                let cursor = BackfillCursor {
                    last: None,
                    upper,
                    size: None,
                };
                meta.save_backfill(
                    &mut *conn,
                    b.migration,
                    b.ordinal,
                    &b.table.name,
                    &cursor,
                    0,
                    Some(estimate),
                    false,
                )
                .await?;
                (cursor, 0, estimate)
            }
        };
    let mut sizer = Sizer::new(settings, cursor.size);
    let mut report = BackfillReport {
        smallest: i64::MAX,
        ..Default::default()
    };
    // A table empty when the backfill started has no bound: nothing to walk.
    if let Some(upper) = cursor.upper.clone() {
        // Two statements per batch, both index range scans over the key: find the key `size`
        // rows on from the cursor (the batch's end; the bound when fewer are left), then update
        // the rows between. The size is a number we chose, written into the statement, and
        // statements are not kept prepared, so every batch is planned with its real bounds.
        let sets: Vec<String> = b
            .set
            .iter()
            .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
            .collect();
        let sets = sets.join(", ");
        let filter = b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let lower = |after: bool| {
            if after {
                format!("{plain} > {} AND ", key_params(&keys, 1))
            } else {
                String::new()
            }
        };
        let at = |after: bool| if after { n + 1 } else { 1 };
        let end_sql = |after: bool, size: i64| {
            format!(
                "SELECT ARRAY[{}] FROM {table} WHERE {}{plain} <= {} ORDER BY {plain} OFFSET {} LIMIT 1",
                as_text.join(", "),
                lower(after),
                key_params(&keys, at(after)),
                size - 1
            )
        };
        // With a `verify` condition, the statement checks every row as written (after any
        // trigger) through RETURNING and gives back the rows changed and the key of the first
        // row still wrong: the check costs no second read of the rows. The rows of the range
        // it leaves alone do not match the filter, and the condition includes the filter.
        let update = |after: bool| {
            format!(
                "UPDATE {table} SET {sets} WHERE {}{plain} <= {}{filter}",
                lower(after),
                key_params(&keys, at(after))
            )
        };
        let update_sql = |after: bool| match b.verify {
            Some(wrong) => format!(
                "WITH u AS ({} RETURNING ARRAY[{}] AS k, ({wrong}) AS wrong) \
                 SELECT (SELECT count(*) FROM u), (SELECT k FROM u WHERE wrong LIMIT 1)",
                update(after),
                as_text.join(", ")
            ),
            None => update(after),
        };
        let count_sql = |after: bool| {
            format!(
                "SELECT count(*) FROM {table} WHERE {}{plain} <= {}",
                lower(after),
                key_params(&keys, at(after))
            )
        };
        // Per batch: how long to wait for a row lock, and whether the commit waits for the
        // batch's WAL (see `BackfillSettings::synchronous_commit`; left as the server has it
        // when on).
        let lock = format!(
            "SET LOCAL lock_timeout = '{}ms'{}",
            settings.lock_timeout.as_millis().max(1),
            if settings.synchronous_commit {
                ""
            } else {
                "; SET LOCAL synchronous_commit = off"
            }
        );
        // Pages this session writes go to disk as it goes (see `BackfillSettings::flush_after`);
        // a server that refuses the setting only loses that.
        if let Some(f) = &settings.flush_after {
            let _ = sqlx::query("SELECT set_config('backend_flush_after', $1, false)")
                .bind(f)
                .execute(&mut *conn)
                .await;
        }
        let mut progress = Progress::new(format!("backfill {table}"), walked, estimate);
        let mut timeouts = 0u32;
        let mut lag_checked: Option<Instant> = None;
        // Other sessions' commits, from pg_stat_database, minus our own transactions.
        let mut busy = Busy::new(conn).await;
        loop {
            // Replicas first: a batch adds WAL they must replay.
            if let Some(bound) = settings.max_replica_lag {
                if lag_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    lag_checked = Some(Instant::now());
                    busy.own += 1;
                    let mut said: Option<Instant> = None;
                    while let Some(lag) = replica_lag(conn).await?.filter(|l| *l > bound) {
                        if said.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            said = Some(Instant::now());
                            progress.say(&format!(
                                "waiting: a replica is {:.1} s behind (max_replica_lag {:.1} s)",
                                lag.as_secs_f64(),
                                bound.as_secs_f64()
                            ));
                        }
                        let wait = Instant::now();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        report.replica_wait += wait.elapsed();
                    }
                }
            }
            let size = sizer.rows();
            let batch_started = Instant::now();
            let mut tx = conn.begin().await.map_err(db("starting a batch"))?;
            sqlx::raw_sql(AssertSqlSafe(lock.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db("setting lock_timeout"))?;
            let after = cursor.last.is_some();
            let batch = async {
                let mut q = sqlx::query(AssertSqlSafe(end_sql(after, size))).persistent(false);
                for v in cursor.last.iter().flatten().chain(upper.iter()) {
                    q = q.bind(v.clone());
                }
                let end: Option<Vec<String>> = q.fetch_optional(&mut *tx).await?.map(|r| r.get(0));
                let last_batch = end.is_none();
                let end = end.unwrap_or_else(|| upper.clone());
                let mut u = sqlx::query(AssertSqlSafe(update_sql(after))).persistent(false);
                for v in cursor.last.iter().flatten().chain(end.iter()) {
                    u = u.bind(v.clone());
                }
                let changed = if b.verify.is_some() {
                    let r = u.fetch_one(&mut *tx).await?;
                    if let Some(row) = r.get::<Option<Vec<String>>, _>(1) {
                        return Ok(Err(row));
                    }
                    r.get::<i64, _>(0)
                } else {
                    u.execute(&mut *tx).await?.rows_affected() as i64
                };
                let taken = if last_batch {
                    let mut c =
                        sqlx::query_scalar(AssertSqlSafe(count_sql(after))).persistent(false);
                    for v in cursor.last.iter().flatten().chain(end.iter()) {
                        c = c.bind(v.clone());
                    }
                    c.fetch_one(&mut *tx).await?
                } else {
                    size
                };
                Ok::<_, sqlx::Error>(Ok((taken, changed, end, last_batch)))
            }
            .await;
            match batch {
                Ok(Err(row)) => {
                    drop(tx);
                    progress.finish();
                    return Err(wrong_rows(&table, b.verify.unwrap_or_default(), &row));
                }
                Ok(Ok((taken, changed, last, last_batch))) => {
                    walked += taken;
                    cursor.last = Some(last);
                    cursor.size = Some(size);
                    meta.save_backfill(
                        &mut *tx,
                        b.migration,
                        b.ordinal,
                        &b.table.name,
                        &cursor,
                        walked,
                        None,
                        false,
                    )
                    .await?;
                    let committing = Instant::now();
                    tx.commit().await.map_err(db("committing a batch"))?;
                    let commit = committing.elapsed();
                    let took = batch_started.elapsed();
                    report.rows += changed;
                    report.walked += taken;
                    report.batches += 1;
                    report.smallest = report.smallest.min(taken.max(1));
                    report.largest = report.largest.max(taken);
                    timeouts = 0;
                    crate::engine::run::failpoint("batch", report.batches as usize);
                    sizer.observe(taken, took);
                    progress.update(walked, sizer.rows());
                    // A commit slower than a whole batch should be (with synchronous_commit) is
                    // the disk falling behind: give it that long again to catch up before adding
                    // more writes.
                    busy.own += 1;
                    if settings.busy_pause.is_some() && busy.due() {
                        let was = busy.busy;
                        busy.sample(conn, settings.busy_tps).await;
                        if busy.busy != was {
                            progress.say(&if busy.busy {
                                format!(
                                    "other sessions are busy ({:.0} commits/s): slowing down",
                                    busy.tps
                                )
                            } else {
                                "the database is quiet again: full speed".to_string()
                            });
                        }
                    }
                    report.busy_batches += i64::from(busy.busy);
                    let mut pause = match settings.busy_pause {
                        Some(p) if busy.busy => p.after(took),
                        _ => settings.pause.after(took),
                    };
                    if commit > settings.target {
                        pause += commit.min(Duration::from_secs(2));
                    }
                    if last_batch {
                        break;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") =>
                {
                    drop(tx);
                    report.lock_timeouts += 1;
                    // Smaller batches first; only once at the smallest do tries count down.
                    if sizer.at_min() {
                        timeouts += 1;
                    }
                    sizer.lock_timeout();
                    if timeouts > exec.retries {
                        progress.finish();
                        return Err(Error::LockTimeout(format!(
                            "backfilling {table}: the next {} rows stayed locked by another session through {} tries of {} ms{}; run again to resume from the saved cursor",
                            sizer.rows(),
                            timeouts,
                            settings.lock_timeout.as_millis(),
                            crate::engine::exec::blockers(conn, &[b.table.sql()]).await
                        )));
                    }
                    progress.say(&format!(
                        "a row lock held elsewhere; retrying with {} rows",
                        sizer.rows()
                    ));
                    tokio::time::sleep(crate::engine::exec::backoff(exec, timeouts.max(1))).await;
                }
                Err(e) => {
                    progress.finish();
                    return Err(db("a batch failed")(e));
                }
            }
        }
        progress.finish();
        if settings.flush_after.is_some() {
            let _ = sqlx::query("RESET backend_flush_after")
                .execute(&mut *conn)
                .await;
        }
    }
    // Every row the batches updated was checked as written (rows after the bound are the
    // triggers' job).
    report.verified = b.verify.is_some();
    if report.smallest == i64::MAX {
        report.smallest = 0;
    }
    meta.save_backfill(
        &mut *conn,
        b.migration,
        b.ordinal,
        &b.table.name,
        &cursor,
        walked,
        None,
        true,
    )
    .await?;
    Ok(report)
}

fn wrong_rows(table: &str, wrong: &str, key: &[String]) -> Error {
    Error::Database(format!(
        "backfilling {table}: the row with key ({}) still matches `{wrong}` as its batch wrote it (a trigger on the table changes it, or the UPDATE does not make it right); the batch was rolled back and the batches before it are kept. Fix the cause and run `migrate backfill` again to resume",
        key.join(", ")
    ))
}

/// The planner's row estimate for a table (0 when it has never been analyzed).
async fn table_estimate(conn: &mut PgConnection, table: &QualifiedName) -> Result<i64, Error> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(table.sql())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("estimating the rows of {table}: {e}")))?;
    Ok(n.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BackfillSettings {
        BackfillSettings {
            target: Duration::from_millis(100),
            min_rows: 100,
            max_rows: 50_000,
            initial_rows: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn grows_slowly_toward_the_target() {
        let mut s = Sizer::new(&settings(), None);
        // 10 ms for 1,000 rows: ten times faster than the target, but it grows by a fifth.
        s.observe(1_000, Duration::from_millis(10));
        assert_eq!(s.rows(), 1_200);
        for _ in 0..100 {
            let rows = s.rows();
            s.observe(rows, Duration::from_micros(rows as u64 * 10));
        }
        // 10 µs a row: 10,000 rows meet 100 ms.
        assert!((9_000..=11_000).contains(&s.rows()), "{}", s.rows());
    }

    #[test]
    fn a_partial_batch_does_not_grow_it() {
        let mut s = Sizer::new(&settings(), None);
        s.observe(10, Duration::from_millis(1));
        assert_eq!(s.rows(), 1_000);
    }

    #[test]
    fn shrinks_fast_and_stays_in_bounds() {
        let mut s = Sizer::new(&settings(), Some(40_000));
        // Twice the target: straight to half.
        s.observe(40_000, Duration::from_millis(200));
        assert_eq!(s.rows(), 20_000);
        // A stall of 10 s: at most a quarter per batch.
        s.observe(20_000, Duration::from_secs(10));
        assert_eq!(s.rows(), 5_000);
        for _ in 0..10 {
            s.lock_timeout();
        }
        assert_eq!(s.rows(), 100);
        assert!(s.at_min());
        let mut s = Sizer::new(&settings(), Some(1_000_000));
        assert_eq!(s.rows(), 50_000, "a resumed size is bounded too");
        s.observe(50_000, Duration::from_millis(1));
        assert_eq!(s.rows(), 50_000);
    }
}
