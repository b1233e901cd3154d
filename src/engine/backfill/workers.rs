//! Workers: the key cut into ranges walked at once, each on a connection of its own, what
//! they share, and the commit probe that parks all but some of them.

use super::batches::Batches;
use super::progress::Progress;
use super::walk::walk;
use super::BackfillReport;
use crate::engine::exec::ExecSettings;
use crate::engine::guard::Pace;
use crate::engine::state::{BackfillCursor, Metadata, RangeCursor};
use crate::error::Error;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
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
/// the pace the guard sets.
pub(super) struct Shared {
    pub(super) walked: Cell<i64>,
    pub(super) progress: RefCell<Progress>,
    /// Whether other sessions use the database and how many workers the commit probe lets
    /// walk, as the guard sees it (none without a guard: full speed).
    pub(super) pace: Option<Arc<Pace>>,
    /// How many workers walk while the database is busy (`busy_workers`).
    pub(super) busy_workers: u32,
    /// Which workers (by rank) have walked their whole range.
    pub(super) finished: RefCell<Vec<bool>>,
    /// Whether the database was busy when that was last said.
    pub(super) said_busy: Cell<bool>,
}

/// Marks a worker finished when its walk ends, by any path.
pub(super) struct Finished<'a>(pub(super) &'a Shared, pub(super) usize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished.borrow_mut()[self.1] = true;
    }
}

impl Shared {
    /// Whether other sessions use the database, as the guard last saw.
    pub(super) fn busy(&self) -> bool {
        self.pace.as_ref().is_some_and(|p| p.busy())
    }

    /// Counts `n` transactions of ours, which the guard leaves out of the others' commits.
    pub(super) fn own(&self, n: i64) {
        if let Some(p) = &self.pace {
            p.own(n);
        }
    }

    /// Whether the worker of `rank` says what changed for all: the first one not finished.
    pub(super) fn samples(&self, rank: usize) -> bool {
        self.finished.borrow()[..rank].iter().all(|f| *f)
    }

    /// How many workers may walk: all while the database is quiet; while it is busy,
    /// `busy_workers`, and no more than the probe allows.
    pub(super) fn allowed(&self) -> u32 {
        if !self.busy() {
            return u32::MAX;
        }
        let probe = self.pace.as_ref().map_or(u32::MAX, |p| p.allowed());
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

/// Parks this worker while fewer are allowed to walk (see [`Shared::allowed`]), saying what
/// the guard's probe changed; whether the batches pause (the probe's last step back).
pub(super) async fn pace(rank: usize, shared: &Shared) -> bool {
    loop {
        if let Some(p) = &shared.pace {
            for t in p.told() {
                shared.progress.borrow_mut().say(&t);
            }
        }
        if !shared.parked(rank) {
            return shared.busy() && shared.pace.as_ref().is_some_and(|p| p.pausing());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::guard::PaceSettings;

    fn shared(pace: Option<Arc<Pace>>, busy_workers: u32) -> Shared {
        Shared {
            walked: Cell::new(0),
            progress: RefCell::new(Progress::new("t".into(), 0, 0, None)),
            pace,
            busy_workers,
            finished: RefCell::new(vec![false; 3]),
            said_busy: Cell::new(false),
        }
    }

    #[test]
    fn without_a_guard_every_worker_walks() {
        let s = shared(None, 1);
        assert!((0..3).all(|r| !s.parked(r)));
        assert_eq!(s.walking(), "all 3 workers");
        // The first worker still walking says what changed for all.
        assert!(s.samples(0) && !s.samples(1));
        s.finished.borrow_mut()[0] = true;
        assert!(s.samples(1) && !s.samples(2));
    }

    #[test]
    fn a_quiet_database_lets_every_worker_walk_whatever_busy_workers_says() {
        let pace = Arc::new(Pace::new(PaceSettings {
            busy_tps: 20,
            commit_slowdown: Some(4.0),
            workers: 1,
        }));
        let s = shared(Some(pace.clone()), 1);
        // Not busy (the guard has not seen others commit): all walk.
        assert!((0..3).all(|r| !s.parked(r)));
        // Busy: `busy_workers` (one) walks, the first not finished; its turn passes on.
        pace.force(true, 3);
        let parked = |s: &Shared| (0..3).map(|r| s.parked(r)).collect::<Vec<_>>();
        assert_eq!(parked(&s), [false, true, true]);
        assert_eq!(s.walking(), "1 of 3 workers");
        s.finished.borrow_mut()[0] = true;
        assert_eq!(parked(&s), [false, false, true]);
    }

    #[test]
    fn while_busy_the_probe_and_busy_workers_each_bound_the_workers() {
        let pace = Arc::new(Pace::new(PaceSettings {
            busy_tps: 20,
            commit_slowdown: Some(4.0),
            workers: 3,
        }));
        let s = shared(Some(pace.clone()), 2);
        let parked = |s: &Shared| (0..3).map(|r| s.parked(r)).collect::<Vec<_>>();
        // The probe allows three, busy_workers two: the fewer wins.
        pace.force(true, 3);
        assert_eq!(parked(&s), [false, false, true]);
        // The probe took two out: one walks.
        pace.force(true, 1);
        assert_eq!(parked(&s), [false, true, true]);
        // Quiet again: all walk.
        pace.force(false, 1);
        assert_eq!(parked(&s), [false, false, false]);
    }
}
