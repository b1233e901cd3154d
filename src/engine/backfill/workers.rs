//! Workers: the key cut into ranges walked at once, each on a connection of its own, what
//! they share, and the commit probe that parks all but some of them.

use super::batches::Batches;
use super::progress::Progress;
use super::throttle::{Busy, Change, Latency};
use super::walk::walk;
use super::BackfillReport;
use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata, RangeCursor};
use crate::error::Error;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

/// Cuts the key into `workers` ranges of about the same number of rows, at the keys found
/// that many rows apart in the key index.
pub(super) async fn split(
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
        let mut s = sqlx::query(AssertSqlSafe(q.end_sql(false))).persistent(false);
        for v in upper {
            s = s.bind(v.clone());
        }
        s = s.bind(at - 1);
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

/// Runs a worker per range not yet done, each on a connection of its own (the first on
/// `conn`), and waits for all: a failed worker stops only itself, and its range resumes from
/// its saved cursor on the next run.
pub(super) async fn in_parallel(
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
    let mut pids = Vec::new();
    for _ in 1..todo.len() {
        let url = q.b.url.ok_or_else(|| {
            Error::Usage("backfill workers need the database URL to open their connections".into())
        })?;
        let mut c = crate::engine::connect(url).await?;
        if let Some(g) = &exec.guard {
            pids.extend(g.register(&mut c).await);
        }
        others.push(c);
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
    if let Some(g) = &exec.guard {
        pids.iter().for_each(|p| g.unregister(*p));
    }
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
                total.guard_wait += r.guard_wait;
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
pub(super) struct Range {
    pub(super) last: Option<Vec<String>>,
    pub(super) upper: Vec<String>,
    pub(super) size: Option<i64>,
}

/// Where a worker's cursor is saved: the backfill's only cursor, or its range of several.
#[derive(Clone, Copy)]
pub(super) enum Save {
    Whole,
    Range(usize),
}

/// What the workers of one backfill share: the rows walked so far, the progress shown, and
/// the count of their own transactions, which the busy throttle leaves out of the others'.
pub(super) struct Shared {
    pub(super) walked: Cell<i64>,
    pub(super) own: Cell<i64>,
    pub(super) progress: RefCell<Progress>,
    /// Whether other sessions use the database: another one was active as the backfill
    /// started ([`Busy::others_active`]), then the latest sample of their commits, taken by
    /// the first worker still walking ([`Shared::samples`]).
    pub(super) busy: RefCell<Busy>,
    /// The commit-latency probe and how many workers it lets run (`commit_slowdown`).
    pub(super) latency: Option<RefCell<Latency>>,
    /// How many workers walk while the database is busy (`busy_workers`).
    pub(super) busy_workers: u32,
    /// Which workers (by rank) have walked their whole range.
    pub(super) finished: RefCell<Vec<bool>>,
}

/// Marks a worker finished when its walk ends, by any path.
pub(super) struct Finished<'a>(pub(super) &'a Shared, pub(super) usize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished.borrow_mut()[self.1] = true;
    }
}

impl Shared {
    /// Whether other sessions use the database, as last seen.
    pub(super) fn busy(&self) -> bool {
        self.busy.borrow().busy
    }

    /// Whether the worker of `rank` samples the others' commits for all: the first one not
    /// finished.
    pub(super) fn samples(&self, rank: usize) -> bool {
        self.finished.borrow()[..rank].iter().all(|f| *f)
    }

    /// How many workers may walk: all while the database is quiet; while it is busy,
    /// `busy_workers`, and no more than the probe allows.
    pub(super) fn allowed(&self) -> u32 {
        if !self.busy() {
            return u32::MAX;
        }
        let probe = self
            .latency
            .as_ref()
            .map_or(u32::MAX, |l| l.borrow().allowed);
        probe.min(self.busy_workers)
    }

    /// Whether the worker of `rank` waits: those allowed to walk are the first of the ones
    /// not finished, so a finished worker's turn passes on.
    pub(super) fn parked(&self, rank: usize) -> bool {
        let ahead = self.finished.borrow()[..rank]
            .iter()
            .filter(|f| !**f)
            .count();
        ahead >= self.allowed() as usize
    }

    /// The workers of this backfill, and how many of them walk, for the log.
    pub(super) fn walking(&self) -> String {
        let all = self.finished.borrow().len() as u32;
        match self.allowed().min(all) {
            n if n == all => format!("all {n} workers"),
            n => format!("{n} of {all} workers"),
        }
    }
}

/// Parks this worker while fewer are allowed to walk (see [`Shared::allowed`]) and, while
/// other sessions use the database, probes the commit latency when it is due (whichever
/// worker gets there first); whether the batches pause. Alone, there is no application whose
/// commits a probe stands for, and each probe would stall the batches for a WAL flush
/// (measured 3% of the rate).
pub(super) async fn pace(
    conn: &mut PgConnection,
    rank: usize,
    shared: &Shared,
    report: &mut BackfillReport,
) -> bool {
    loop {
        if !shared.busy() {
            if let Some(cell) = &shared.latency {
                if cell.borrow_mut().release() {
                    let t = format!("the database is quiet: {}", cell.borrow().running());
                    shared.progress.borrow_mut().say(&t);
                }
            }
            return false;
        }
        if let Some(cell) = shared.latency.as_ref().filter(|c| c.borrow().due()) {
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
            return shared.latency.as_ref().is_some_and(|c| c.borrow().pausing);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
            busy: RefCell::new(Busy::new(None, &Cell::new(0), true)),
            busy_workers: 3,
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
        // The first worker still walking samples the others' commits for all.
        assert!(shared.samples(0) && !shared.samples(1) && !shared.samples(2));
        shared.finished.borrow_mut()[0] = true;
        assert!(shared.samples(1) && !shared.samples(2));
        let free = Shared {
            latency: None,
            finished: RefCell::new(vec![false; 3]),
            ..shared
        };
        assert!((0..3).all(|r| !free.parked(r)));
    }

    #[test]
    fn while_the_database_is_busy_only_busy_workers_walk() {
        let shared = Shared {
            walked: Cell::new(0),
            own: Cell::new(0),
            progress: RefCell::new(Progress::new("t".into(), 0, 0, None)),
            latency: None,
            finished: RefCell::new(vec![false; 3]),
            busy: RefCell::new(Busy::new(None, &Cell::new(0), true)),
            busy_workers: 1,
        };
        let parked = |s: &Shared| (0..3).map(|r| s.parked(r)).collect::<Vec<_>>();
        assert_eq!(parked(&shared), [false, true, true]);
        assert_eq!(shared.walking(), "1 of 3 workers");
        // The first finishes: its turn passes on.
        shared.finished.borrow_mut()[0] = true;
        assert_eq!(parked(&shared), [false, false, true]);
        // Quiet: all walk.
        shared.finished.borrow_mut().fill(false);
        shared.busy.borrow_mut().busy = false;
        assert_eq!(parked(&shared), [false, false, false]);
        assert_eq!(shared.walking(), "all 3 workers");
        // Busy again, with a probe that allows two and `busy_workers = 2`: the fewer wins.
        let mut l = Latency::new(4.0, 3);
        l.observe(Duration::from_millis(1), true);
        l.observe(Duration::from_millis(50), false);
        let probed = Shared {
            latency: Some(RefCell::new(l)),
            busy_workers: 2,
            ..shared
        };
        probed.busy.borrow_mut().busy = true;
        assert_eq!(parked(&probed), [false, false, true]);
        let strict = Shared {
            busy_workers: 1,
            ..probed
        };
        assert_eq!(parked(&strict), [false, true, true]);
    }
}
