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

mod key;
mod progress;
mod sizing;
mod throttle;

pub use sizing::Sizer;

use key::{key_list, key_params, table_estimate, walk_key, KeyColumn};
use progress::{Progress, LOG_EVERY};
use throttle::{replica_lag, Busy, Change, Latency};

use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata, RangeCursor};
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::cell::{Cell, RefCell};
use std::future::Future;
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
    /// Where the extra workers connect (`[backfill] workers`); never printed.
    pub url: Option<&'a str>,
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
    /// Times the batches backed off because commits slowed down (`commit_slowdown`), and the
    /// slowest commit the probe saw.
    pub slowdowns: i64,
    pub slowest_commit: Duration,
    /// The lowest commit time the probe saw (zero without a probe).
    pub lowest_commit: Duration,
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
    let as_text: Vec<String> = keys
        .iter()
        .map(|k| format!("{}::text", quote_ident(&k.name)))
        .collect();
    let sets: Vec<String> = b
        .set
        .iter()
        .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
        .collect();
    let mut q = Batches {
        b,
        table: table.clone(),
        keys: &keys,
        plain: key_list(&keys, ""),
        as_text: as_text.join(", "),
        sets: sets.join(", "),
        filter: b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default(),
        lock: format!(
            "SET LOCAL lock_timeout = '{}ms'{}",
            settings.lock_timeout.as_millis().max(1),
            if settings.synchronous_commit {
                ""
            } else {
                "; SET LOCAL synchronous_commit = off"
            }
        ),
        span: None,
    };
    let desc: Vec<String> = keys
        .iter()
        .map(|k| format!("{} DESC", quote_ident(&k.name)))
        .collect();

    let (mut cursor, walked, estimate) =
        match meta.backfill_cursor(conn, b.migration, b.ordinal).await? {
            Some((saved, done)) => {
                let estimate = table_estimate(conn, b.table).await?;
                (saved, done, estimate)
            }
            None => {
                // The bound: the last key that exists now.
                let r = sqlx::query(AssertSqlSafe(format!(
                    "SELECT ARRAY[{}] FROM {table} ORDER BY {} LIMIT 1",
                    q.as_text,
                    desc.join(", ")
                )))
                .fetch_optional(&mut *conn)
                .await
                .map_err(q.db("reading the last key"))?;
                let upper = r.map(|r| r.get::<Vec<String>, _>(0));
                let estimate = table_estimate(conn, b.table).await?;
                let ranges = match (&upper, settings.workers) {
                    (Some(upper), w) if w > 1 => split(conn, &q, upper, estimate, w).await?,
                    _ => Vec::new(),
                };
                let cursor = BackfillCursor {
                    last: None,
                    upper,
                    size: None,
                    ranges,
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
    if let Some(upper) = &cursor.upper {
        q.span = span_start(conn, &q, upper, estimate).await?;
    }
    let workers = if cursor.ranges.is_empty() {
        1
    } else {
        cursor.ranges.iter().filter(|r| !r.done).count() as u32
    };
    let mut latency = settings.commit_slowdown.map(|f| Latency::new(f, workers));
    if let (Some(l), Some(_)) = (&mut latency, &cursor.upper) {
        // The lowest of three before any batch: the commit latency without the backfill.
        for _ in 0..3 {
            if let Ok(t) = Latency::probe(conn).await {
                l.observe(t, true);
            }
        }
    }
    // Before this backfill opens connections of its own.
    let active = Busy::others_active(conn).await;
    let shared = Shared {
        busy: Cell::new(active),
        walked: Cell::new(walked),
        own: Cell::new(0),
        latency: latency.map(RefCell::new),
        finished: RefCell::new(vec![false; workers as usize]),
        progress: RefCell::new(Progress::new(
            format!("backfill {table}"),
            walked,
            estimate,
            exec.rollout
                .as_ref()
                .map(|h| (h.target.clone(), h.progress.clone())),
        )),
    };
    // A table empty when the backfill started has no bound: nothing to walk.
    let outcome = match cursor.upper.clone() {
        None => Ok(BackfillReport::default()),
        Some(upper) if cursor.ranges.is_empty() => {
            let mut range = Range {
                last: cursor.last.take(),
                upper,
                size: cursor.size,
            };
            let r = walk(conn, meta, exec, &q, &mut range, (Save::Whole, 0), &shared).await;
            cursor.last = range.last;
            cursor.size = range.size;
            r
        }
        Some(_) => in_parallel(conn, meta, exec, &q, &mut cursor, &shared).await,
    };
    shared.progress.borrow_mut().finish();
    let mut report = outcome?;
    if let Some(l) = &shared.latency {
        report.lowest_commit = l.borrow().baseline().unwrap_or_default();
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
        shared.walked.get(),
        None,
        true,
    )
    .await?;
    Ok(report)
}

/// Cuts the key into `workers` ranges of about the same number of rows, at the keys found
/// that many rows apart in the key index.
async fn split(
    conn: &mut PgConnection,
    q: &Batches<'_>,
    upper: &[String],
    estimate: i64,
    workers: u32,
) -> Result<Vec<RangeCursor>, Error> {
    let rows = if estimate > 0 {
        estimate
    } else {
        // Never analyzed: count, once.
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", q.table)))
            .fetch_one(&mut *conn)
            .await
            .map_err(q.db("counting the rows"))?
    };
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for k in 1..i64::from(workers) {
        let at = rows * k / i64::from(workers);
        if at < 1 {
            continue;
        }
        let mut s = sqlx::query(AssertSqlSafe(q.end_sql(false, at))).persistent(false);
        for v in upper {
            s = s.bind(v.clone());
        }
        let found: Option<Vec<String>> = s
            .fetch_optional(&mut *conn)
            .await
            .map_err(q.db("splitting the key into ranges"))?
            .map(|r| r.get(0));
        match found {
            Some(key) if key.as_slice() != upper && bounds.last() != Some(&key) => bounds.push(key),
            _ => {}
        }
    }
    let mut ranges = Vec::new();
    let mut last = None;
    for key in bounds.into_iter().chain(std::iter::once(upper.to_vec())) {
        ranges.push(RangeCursor {
            last: last.replace(key.clone()),
            upper: key,
            size: None,
            done: false,
        });
    }
    Ok(ranges)
}

/// The smallest key, when batches can be spans of the key's values instead of counts of rows:
/// a key of one integer column, no filter (every row of a span is updated, so the rows the
/// UPDATE reports are the rows walked), and at least half the values between the smallest and
/// the largest key in use. Then a batch is `key > last AND key <= last + span`, and no query
/// has to find its end in the key index first. The batch size is a span of values, never more
/// than `max_rows` of them, so no batch holds more rows than that however the keys cluster;
/// gaps only make some batches smaller.
async fn span_start(
    conn: &mut PgConnection,
    q: &Batches<'_>,
    upper: &[String],
    estimate: i64,
) -> Result<Option<i128>, Error> {
    let integer = matches!(
        q.keys,
        [KeyColumn { ty, .. }] if matches!(ty.as_str(), "smallint" | "integer" | "bigint")
    );
    if !integer || q.b.filter.is_some() {
        return Ok(None);
    }
    let Some(Ok(upper)) = upper.first().map(|u| u.parse::<i128>()) else {
        return Ok(None);
    };
    let min: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT min({})::text FROM {}",
        quote_ident(&q.keys[0].name),
        q.table
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(q.db("reading the first key"))?;
    let Some(Ok(min)) = min.map(|m| m.parse::<i128>()) else {
        return Ok(None);
    };
    let values = upper - min + 1;
    Ok((values > 0 && i128::from(estimate) * 2 >= values).then_some(min))
}

/// Runs a worker per range not yet done, each on a connection of its own (the first on
/// `conn`), and waits for all: a failed worker stops only itself, and its range resumes from
/// its saved cursor on the next run.
async fn in_parallel(
    conn: &mut PgConnection,
    meta: &Metadata,
    exec: &ExecSettings,
    q: &Batches<'_>,
    cursor: &mut BackfillCursor,
    shared: &Shared,
) -> Result<BackfillReport, Error> {
    let todo: Vec<usize> = (0..cursor.ranges.len())
        .filter(|i| !cursor.ranges[*i].done)
        .collect();
    let mut others = Vec::new();
    for _ in 1..todo.len() {
        let url = q.b.url.ok_or_else(|| {
            Error::Usage("backfill workers need the database URL to open their connections".into())
        })?;
        others.push(crate::engine::connect(url).await?);
    }
    let mut ranges: Vec<Range> = todo
        .iter()
        .map(|i| {
            let r = &cursor.ranges[*i];
            Range {
                last: r.last.clone(),
                upper: r.upper.clone(),
                size: r.size,
            }
        })
        .collect();
    let conns = std::iter::once(conn).chain(others.iter_mut());
    let mut futures: Vec<_> = conns
        .zip(ranges.iter_mut())
        .zip(&todo)
        .enumerate()
        .map(|(rank, ((c, range), i))| {
            Box::pin(walk(
                c,
                meta,
                exec,
                q,
                range,
                (Save::Range(*i), rank),
                shared,
            ))
        })
        .collect();
    // All at once on this task: each waits on its own connection.
    let mut results: Vec<Option<Result<BackfillReport, Error>>> =
        futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, r) in futures.iter_mut().zip(results.iter_mut()) {
            if r.is_none() {
                if let std::task::Poll::Ready(out) = f.as_mut().poll(cx) {
                    *r = Some(out);
                }
            }
        }
        if results.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    drop(futures);
    let mut total = BackfillReport {
        smallest: i64::MAX,
        ..Default::default()
    };
    let mut first_error = None;
    for (r, i) in results.into_iter().flatten().zip(&todo) {
        match r {
            Ok(r) => {
                cursor.ranges[*i].done = true;
                total.rows += r.rows;
                total.walked += r.walked;
                total.batches += r.batches;
                total.smallest = total.smallest.min(r.smallest);
                total.largest = total.largest.max(r.largest);
                total.lock_timeouts += r.lock_timeouts;
                total.replica_wait += r.replica_wait;
                total.busy_batches += r.busy_batches;
                total.slowdowns += r.slowdowns;
                total.slowest_commit = total.slowest_commit.max(r.slowest_commit);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    for (range, i) in ranges.into_iter().zip(&todo) {
        cursor.ranges[*i].last = range.last;
        cursor.ranges[*i].size = range.size;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// One worker's key range: after `last` (from the start when None) up to `upper`.
struct Range {
    last: Option<Vec<String>>,
    upper: Vec<String>,
    size: Option<i64>,
}

/// Where a worker's cursor is saved: the backfill's only cursor, or its range of several.
#[derive(Clone, Copy)]
enum Save {
    Whole,
    Range(usize),
}

/// What the workers of one backfill share: the rows walked so far, the progress shown, and
/// the count of their own transactions, which the busy throttle leaves out of the others'.
struct Shared {
    walked: Cell<i64>,
    own: Cell<i64>,
    progress: RefCell<Progress>,
    /// Whether other sessions use the database: another one was active as the backfill
    /// started ([`Busy::others_active`]), then the latest sample of their commits.
    busy: Cell<bool>,
    /// The commit-latency probe and how many workers it lets run (`commit_slowdown`).
    latency: Option<RefCell<Latency>>,
    /// Which workers (by rank) have walked their whole range.
    finished: RefCell<Vec<bool>>,
}

/// Marks a worker finished when its walk ends, by any path.
struct Finished<'a>(&'a Shared, usize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished.borrow_mut()[self.1] = true;
    }
}

impl Shared {
    /// Whether the worker of `rank` waits: the probe lets `allowed` workers run, and those
    /// are the first of the ones not finished, so a finished worker's turn passes on.
    fn parked(&self, rank: usize) -> bool {
        let Some(l) = &self.latency else {
            return false;
        };
        let ahead = self.finished.borrow()[..rank]
            .iter()
            .filter(|f| !**f)
            .count();
        ahead >= l.borrow().allowed as usize
    }
}

/// The SQL of a backfill's batches, built once from its key and assignments.
struct Batches<'a> {
    b: &'a Backfill<'a>,
    table: String,
    keys: &'a [KeyColumn],
    plain: String,
    as_text: String,
    sets: String,
    filter: String,
    /// Per batch: how long to wait for a row lock, and whether the commit waits for the
    /// batch's WAL (see `BackfillSettings::synchronous_commit`; left as the server has it
    /// when on).
    lock: String,
    /// The smallest key, when batches are spans of the key's values (see [`span_start`]).
    span: Option<i128>,
}

impl Batches<'_> {
    fn db(&self, what: &'static str) -> impl Fn(sqlx::Error) -> Error + '_ {
        move |e| Error::Database(format!("backfilling {}: {what}: {e}", self.table))
    }

    fn lower(&self, after: bool) -> String {
        if after {
            format!("{} > {} AND ", self.plain, key_params(self.keys, 1))
        } else {
            String::new()
        }
    }

    fn at(&self, after: bool) -> usize {
        if after {
            self.keys.len() + 1
        } else {
            1
        }
    }

    /// The key `size` rows on from the cursor: the batch's end (none when fewer are left).
    /// The size is a number we chose, written into the statement, and statements are not
    /// kept prepared, so every batch is planned with its real bounds.
    fn end_sql(&self, after: bool, size: i64) -> String {
        format!(
            "SELECT ARRAY[{}] FROM {} WHERE {}{} <= {} ORDER BY {} OFFSET {} LIMIT 1",
            self.as_text,
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after)),
            self.plain,
            size - 1
        )
    }

    /// The batch's UPDATE. With a `verify` condition, the statement checks every row as
    /// written (after any trigger) through RETURNING and gives back the rows changed and how
    /// many are still wrong: the check costs one boolean per row and no second read of the
    /// rows (`wrong_sql` finds one to name only when some are). The rows of the range it
    /// leaves alone do not match the filter, and the condition includes it.
    fn update_sql(&self, after: bool) -> String {
        let update = format!(
            "UPDATE {} SET {} WHERE {}{} <= {}{}",
            self.table,
            self.sets,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after)),
            self.filter
        );
        match self.b.verify {
            Some(wrong) => format!(
                "WITH u AS ({update} RETURNING ({wrong}) AS wrong) \
                 SELECT count(*), count(*) FILTER (WHERE wrong) FROM u"
            ),
            None => update,
        }
    }

    /// The key of a row of the batch that is still wrong, read in the batch's transaction
    /// (which sees the rows as the batch wrote them) before it is rolled back.
    fn wrong_sql(&self, after: bool, wrong: &str) -> String {
        format!(
            "SELECT ARRAY[{}] FROM {} WHERE {}{} <= {} AND ({wrong}) ORDER BY {} LIMIT 1",
            self.as_text,
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after)),
            self.plain
        )
    }

    fn count_sql(&self, after: bool) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {}{} <= {}",
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after))
        )
    }
}

/// Probes the commit latency when it is due (whichever worker gets there first) and parks
/// this worker while the probe allows fewer; whether the batches pause. Only while other
/// sessions use the database: alone, there is no application whose commits a probe stands
/// for, and each probe would stall the batches for a WAL flush (measured 3% of the rate).
async fn pace(
    conn: &mut PgConnection,
    rank: usize,
    shared: &Shared,
    report: &mut BackfillReport,
) -> bool {
    let Some(cell) = &shared.latency else {
        return false;
    };
    loop {
        if !shared.busy.get() {
            if cell.borrow_mut().release() {
                let t = format!("the database is quiet: {}", cell.borrow().running());
                shared.progress.borrow_mut().say(&t);
            }
            return false;
        }
        if cell.borrow().due() {
            cell.borrow_mut().started();
            if let Ok(took) = Latency::probe(conn).await {
                shared.own.set(shared.own.get() + 1);
                report.slowest_commit = report.slowest_commit.max(took);
                let mut l = cell.borrow_mut();
                let change = l.observe(took, false);
                let base = l.baseline().unwrap_or_default();
                let told = match change {
                    Change::None => None,
                    Change::Slower => {
                        report.slowdowns += 1;
                        Some(format!(
                            "commits take {:.1} ms (lowest {:.1} ms): {}",
                            took.as_secs_f64() * 1e3,
                            base.as_secs_f64() * 1e3,
                            l.running()
                        ))
                    }
                    Change::Faster => Some(format!(
                        "commits back to {:.1} ms: {}",
                        took.as_secs_f64() * 1e3,
                        l.running()
                    )),
                };
                drop(l);
                if let Some(t) = told {
                    shared.progress.borrow_mut().say(&t);
                }
            }
        }
        if !shared.parked(rank) {
            return cell.borrow().pausing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Walks one key range in batches on `conn` until its end. Two statements per batch, both
/// index range scans over the key: find the batch's end, then update the rows up to it.
/// `rank` is the worker's place among the backfill's workers (0 for the only one).
async fn walk(
    conn: &mut PgConnection,
    meta: &Metadata,
    exec: &ExecSettings,
    q: &Batches<'_>,
    range: &mut Range,
    (save, rank): (Save, usize),
    shared: &Shared,
) -> Result<BackfillReport, Error> {
    // However it ends, its turn passes on to a parked worker.
    let _done = Finished(shared, rank);
    let settings = &exec.backfill;
    let mut sizer = Sizer::new(settings, range.size);
    let mut report = BackfillReport {
        smallest: i64::MAX,
        ..Default::default()
    };
    // While other sessions use the database, pages this session writes go to disk as it goes
    // (see `BackfillSettings::flush_after`); alone, the kernel writes them back at its own
    // pace, which measured some 10% faster. It starts on when another session was active
    // as the backfill started, and each sample of the others' commits turns it on or off. A
    // server that refuses the setting only loses that.
    let mut flushing = false;
    if let Some(f) = settings.flush_after.as_ref().filter(|_| shared.busy.get()) {
        flushing = session_setting(conn, "backend_flush_after", f).await;
    }
    // Compressed full-page images (see `BackfillSettings::wal_compression`) when the server
    // does not compress them already, the role may set it and the server knows the method.
    let compressing = match &settings.wal_compression {
        Some(m) => {
            let now: Option<String> =
                sqlx::query_scalar("SELECT current_setting('wal_compression')")
                    .fetch_one(&mut *conn)
                    .await
                    .ok();
            now.as_deref() == Some("off") && session_setting(conn, "wal_compression", m).await
        }
        None => false,
    };
    let mut timeouts = 0u32;
    let mut lag_checked: Option<Instant> = None;
    // Other sessions' commits, from pg_stat_database, minus our own transactions.
    let mut busy = Busy::new(conn, &shared.own, shared.busy.get()).await;
    loop {
        if let Some(h) = &exec.rollout {
            h.check(|| format!("the next batch of backfilling {}", q.table))?;
        }
        // Replicas first: a batch adds WAL they must replay.
        if let Some(bound) = settings.max_replica_lag {
            if lag_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                lag_checked = Some(Instant::now());
                shared.own.set(shared.own.get() + 1);
                let mut said: Option<Instant> = None;
                while let Some(lag) = replica_lag(conn).await?.filter(|l| *l > bound) {
                    if said.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        said = Some(Instant::now());
                        shared.progress.borrow_mut().say(&format!(
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
        let pausing = pace(conn, rank, shared, &mut report).await;
        let size = sizer.rows();
        let batch_started = Instant::now();
        // BEGIN and the batch's settings in one round trip.
        let mut tx = conn
            .begin_with(AssertSqlSafe(format!("BEGIN; {}", q.lock)))
            .await
            .map_err(q.db("starting a batch"))?;
        let after = range.last.is_some();
        let batch = async {
            let end = match span_end(q.span, range, size) {
                Some(end) => end,
                None => {
                    let mut e =
                        sqlx::query(AssertSqlSafe(q.end_sql(after, size))).persistent(false);
                    for v in range.last.iter().flatten().chain(range.upper.iter()) {
                        e = e.bind(v.clone());
                    }
                    e.fetch_optional(&mut *tx).await?.map(|r| r.get(0))
                }
            };
            let last_batch = end.is_none();
            let end = end.unwrap_or_else(|| range.upper.clone());
            let mut u = sqlx::query(AssertSqlSafe(q.update_sql(after))).persistent(false);
            for v in range.last.iter().flatten().chain(end.iter()) {
                u = u.bind(v.clone());
            }
            let changed = if let Some(wrong) = q.b.verify {
                let r = u.fetch_one(&mut *tx).await?;
                if r.get::<i64, _>(1) > 0 {
                    let mut w = sqlx::query_scalar(AssertSqlSafe(q.wrong_sql(after, wrong)))
                        .persistent(false);
                    for v in range.last.iter().flatten().chain(end.iter()) {
                        w = w.bind(v.clone());
                    }
                    let row: Option<Vec<String>> = w.fetch_optional(&mut *tx).await?;
                    return Ok(Err(row.unwrap_or_default()));
                }
                r.get::<i64, _>(0)
            } else {
                u.execute(&mut *tx).await?.rows_affected() as i64
            };
            let taken = if q.span.is_some() {
                // No filter: every row of the span was updated.
                changed
            } else if last_batch {
                let mut c = sqlx::query_scalar(AssertSqlSafe(q.count_sql(after))).persistent(false);
                for v in range.last.iter().flatten().chain(end.iter()) {
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

                return Err(wrong_rows(&q.table, q.b.verify.unwrap_or_default(), &row));
            }
            Ok(Ok((taken, changed, last, last_batch))) => {
                shared.walked.set(shared.walked.get() + taken);
                range.last = Some(last);
                range.size = Some(size);
                // The cursor commits with the batch: its range alone, or the whole.
                match save {
                    Save::Whole => {
                        let cursor = BackfillCursor {
                            last: range.last.clone(),
                            upper: Some(range.upper.clone()),
                            size: range.size,
                            ranges: Vec::new(),
                        };
                        let (m, o, t) = (q.b.migration, q.b.ordinal, &q.b.table.name);
                        let walked = shared.walked.get();
                        meta.save_backfill(&mut *tx, m, o, t, &cursor, walked, None, false)
                            .await?;
                    }
                    Save::Range(i) => {
                        let cursor = RangeCursor {
                            last: range.last.clone(),
                            upper: range.upper.clone(),
                            size: range.size,
                            done: last_batch,
                        };
                        meta.save_backfill_range(
                            &mut *tx,
                            q.b.migration,
                            q.b.ordinal,
                            i,
                            &cursor,
                            taken,
                        )
                        .await?;
                    }
                }
                let committing = Instant::now();
                tx.commit().await.map_err(q.db("committing a batch"))?;
                let commit = committing.elapsed();
                let took = batch_started.elapsed();
                report.rows += changed;
                report.walked += taken;
                report.batches += 1;
                report.smallest = report.smallest.min(taken.max(1));
                report.largest = report.largest.max(taken);
                timeouts = 0;
                crate::engine::run::failpoint("batch", report.batches as usize);
                // A span is a full batch though gaps in the keys left it fewer rows.
                sizer.observe(if q.span.is_some() { size } else { taken }, took);
                shared
                    .progress
                    .borrow_mut()
                    .update(shared.walked.get(), sizer.rows());
                // A commit slower than a whole batch should be (with synchronous_commit) is
                // the disk falling behind: give it that long again to catch up before adding
                // more writes.
                shared.own.set(shared.own.get() + 1);
                let watch = settings.busy_pause.is_some()
                    || settings.flush_after.is_some()
                    || shared.latency.is_some();
                if watch && busy.due() {
                    let was = busy.busy;
                    busy.sample(conn, settings.busy_tps, &shared.own).await;
                    shared.busy.set(busy.busy);
                    if let Some(f) = settings.flush_after.as_deref() {
                        if busy.busy != flushing {
                            flushing = session_setting(
                                conn,
                                "backend_flush_after",
                                if busy.busy { f } else { "0" },
                            )
                            .await
                                && busy.busy;
                        }
                    }
                    if settings.busy_pause.is_some() && busy.busy != was {
                        shared.progress.borrow_mut().say(&if busy.busy {
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
                // Commits slowed down and one worker is left: as long again as the batch.
                if pausing {
                    pause = pause.max(took);
                }
                if last_batch {
                    break;
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
                drop(tx);
                report.lock_timeouts += 1;
                // Smaller batches first; only once at the smallest do tries count down.
                if sizer.at_min() {
                    timeouts += 1;
                }
                sizer.lock_timeout();
                if timeouts > exec.retries {
                    return Err(Error::LockTimeout(format!(
                            "backfilling {}: the next {} rows stayed locked by another session through {} tries of {} ms{}; run again to resume from the saved cursor",
                            q.table,
                            sizer.rows(),
                            timeouts,
                            settings.lock_timeout.as_millis(),
                            crate::engine::exec::blockers(conn, &[q.b.table.sql()]).await
                        )));
                }
                shared.progress.borrow_mut().say(&format!(
                    "a row lock held elsewhere; retrying with {} rows",
                    sizer.rows()
                ));
                tokio::time::sleep(crate::engine::exec::backoff(exec, timeouts.max(1))).await;
            }
            Err(e) => {
                return Err(q.db("a batch failed")(e));
            }
        }
    }
    if settings.flush_after.is_some() {
        let _ = sqlx::query("RESET backend_flush_after")
            .execute(&mut *conn)
            .await;
    }
    if compressing {
        let _ = sqlx::query("RESET wal_compression")
            .execute(&mut *conn)
            .await;
    }
    Ok(report)
}

/// With span batches, the end of the next one: `size` key values on from the cursor (from
/// the smallest key at the start), or `Some(None)` when that reaches the range's end.
fn span_end(start: Option<i128>, range: &Range, size: i64) -> Option<Option<Vec<String>>> {
    let start = start?;
    let after = match &range.last {
        Some(last) => last.first()?.parse::<i128>().ok()?,
        None => start - 1,
    };
    let upper = range.upper.first()?.parse::<i128>().ok()?;
    let end = after + i128::from(size.max(1));
    Some((end < upper).then(|| vec![end.to_string()]))
}

/// Sets one of the session's settings; whether the server took it (a role that may not set
/// it, or a value this server does not know, only loses the setting).
async fn session_setting(conn: &mut PgConnection, name: &str, value: &str) -> bool {
    sqlx::query("SELECT set_config($1, $2, false)")
        .bind(name)
        .bind(value)
        .execute(&mut *conn)
        .await
        .is_ok()
}

fn wrong_rows(table: &str, wrong: &str, key: &[String]) -> Error {
    Error::Database(format!(
        "backfilling {table}: the row with key ({}) still matches `{wrong}` as its batch wrote it (a trigger on the table changes it, or the UPDATE does not make it right); the batch was rolled back and the batches before it are kept. Fix the cause and run `migrate backfill` again to resume",
        key.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_worker_takes_the_turn_of_one_that_finished() {
        let mut l = Latency::new(4.0, 3);
        let ms = Duration::from_millis;
        l.observe(ms(1), true);
        // Two slow probes: one worker of three left.
        l.observe(ms(50), false);
        l.observe(ms(50), false);
        let shared = Shared {
            walked: Cell::new(0),
            own: Cell::new(0),
            progress: RefCell::new(Progress::new("t".into(), 0, 0, None)),
            latency: Some(RefCell::new(l)),
            finished: RefCell::new(vec![false; 3]),
            busy: Cell::new(true),
        };
        assert_eq!(
            (0..3).map(|r| shared.parked(r)).collect::<Vec<_>>(),
            [false, true, true]
        );
        shared.finished.borrow_mut()[0] = true;
        assert!(!shared.parked(1) && shared.parked(2));
        shared.finished.borrow_mut()[1] = true;
        assert!(!shared.parked(2));
        // Released (the database went quiet): every worker runs.
        shared.finished.borrow_mut().fill(false);
        assert!(shared.latency.as_ref().unwrap().borrow_mut().release());
        assert!((0..3).all(|r| !shared.parked(r)));
        let free = Shared {
            latency: None,
            finished: RefCell::new(vec![false; 3]),
            ..shared
        };
        assert!((0..3).all(|r| !free.parked(r)));
    }
}
