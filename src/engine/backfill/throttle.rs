//! Throttles: other sessions' commit rate, and how far replicas are behind.

use crate::error::Error;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// Whether other sessions are using the database: their commits per second, from
/// `pg_stat_database`, sampled every two seconds (by one worker for all), less the
/// transactions we made ourselves — all of the backfill's workers, whose count they share.
pub(super) struct Busy {
    pub(super) at: Instant,
    pub(super) commits: Option<i64>,
    /// The count of our own transactions (every worker's) at the last sample.
    own_at: i64,
    pub(super) tps: f64,
    pub(super) busy: bool,
}

pub(super) const BUSY_SAMPLE: Duration = Duration::from_secs(2);

impl Busy {
    pub(super) async fn commits(conn: &mut PgConnection) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(conn)
        .await
        .ok()
    }

    /// Whether another session of this database is in a statement or transaction now, or
    /// finished one within the last second: the commit counts need two samples seconds apart,
    /// this needs none. A session whose state this role may not see counts as active.
    pub(super) async fn others_active(conn: &mut PgConnection) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
             AND (state IS NULL OR state <> 'idle' OR state_change > now() - interval '1 second'))",
        )
        .fetch_one(conn)
        .await
        .unwrap_or(true)
    }

    /// From a first count of `commits` (the query that read it is one of `own`, every
    /// transaction the backfill's workers made); `busy`: what the database is taken to be
    /// until the next sample.
    pub(super) fn new(commits: Option<i64>, own: &std::cell::Cell<i64>, busy: bool) -> Busy {
        own.set(own.get() + 1);
        Busy {
            at: Instant::now(),
            commits,
            own_at: own.get() - 1,
            tps: 0.0,
            busy,
        }
    }

    pub(super) fn due(&self) -> bool {
        self.at.elapsed() >= BUSY_SAMPLE
    }

    /// Takes in the count of commits `now`, just read by one more query of ours.
    pub(super) fn sample(&mut self, now: Option<i64>, threshold: u32, own: &std::cell::Cell<i64>) {
        own.set(own.get() + 1);
        let secs = self.at.elapsed().as_secs_f64();
        if let (Some(before), Some(after)) = (self.commits, now) {
            // Statistics reach pg_stat_database up to a second late, ours too: the estimate
            // is rough, which a threshold well above our own batch rate absorbs.
            let ours = own.get() - self.own_at;
            self.tps = ((after - before - ours) as f64 / secs).max(0.0);
            self.busy = self.tps > f64::from(threshold);
        }
        self.commits = now;
        self.at = Instant::now();
        self.own_at = own.get() - 1;
    }
}

/// The largest replay lag of any replica, when there is one.
pub(super) async fn replica_lag(conn: &mut PgConnection) -> Result<Option<Duration>, Error> {
    let lag: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(coalesce(replay_lag, flush_lag, write_lag)))::float8 FROM pg_stat_replication",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading replica lag from pg_stat_replication: {e}")))?;
    Ok(lag.map(Duration::from_secs_f64))
}

/// The application's commit latency, as a probe sees it: a one-row transaction that commits
/// with `synchronous_commit = on`, so it waits for the WAL flush every application commit
/// waits for — behind the WAL the batches wrote. Timed four times a second (a stall of the
/// disk lasts a tenth of a second or so, and a probe caught in it waits it out); against the
/// lowest time seen (first before any batch), a probe over `factor` times that (and at least
/// [`SLOW_FLOOR`] over it) takes a worker out, down to one, and then makes the last one pause
/// as long as each batch took; [`RECOVER`] fast probes in a row (3 s) give one back.
pub(super) struct Latency {
    pub(super) factor: f64,
    baseline: Option<Duration>,
    pub(super) last: Option<Duration>,
    at: Option<Instant>,
    fast: u32,
    /// Workers allowed to run (from 1 to all), and whether the one left pauses.
    pub(super) allowed: u32,
    pub(super) pausing: bool,
    workers: u32,
}

pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Below this over the baseline a commit is never slow: a fast disk's probe moves by more
/// than a multiple of its 0.1 ms from one second to the next.
pub(super) const SLOW_FLOOR: Duration = Duration::from_millis(2);
const RECOVER: u32 = 12;

/// What a probe changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    None,
    Slower,
    Faster,
}

impl Latency {
    pub(super) fn new(factor: f64, workers: u32) -> Latency {
        Latency {
            factor,
            baseline: None,
            last: None,
            at: None,
            fast: 0,
            allowed: workers.max(1),
            pausing: false,
            workers: workers.max(1),
        }
    }

    pub(super) fn due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= PROBE_EVERY)
    }

    /// Lets every worker run at full speed again; whether that changed anything.
    pub(super) fn release(&mut self) -> bool {
        let changed = self.pausing || self.allowed < self.workers;
        self.allowed = self.workers;
        self.pausing = false;
        self.fast = 0;
        changed
    }

    /// Marks a probe as begun, so the other workers do not start one too.
    pub(super) fn started(&mut self) {
        self.at = Some(Instant::now());
    }

    /// What the probe lets run, for the log.
    pub(super) fn running(&self) -> String {
        match (self.allowed, self.pausing) {
            (_, true) => "one worker, pausing as long as each batch".to_string(),
            (_, false) if self.workers == 1 => "full speed".to_string(),
            (n, false) if n == self.workers => format!("all {n} workers"),
            (1, false) => format!("1 of {} workers", self.workers),
            (n, false) => format!("{n} of {} workers", self.workers),
        }
    }

    pub(super) fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    /// The time above which a commit counts as slow.
    pub(super) fn threshold(&self) -> Option<Duration> {
        self.baseline
            .map(|b| b.mul_f64(self.factor).max(b + SLOW_FLOOR))
    }

    /// Takes in one probe's time; `calibrating` probes (before any batch) only set the baseline.
    pub(super) fn observe(&mut self, took: Duration, calibrating: bool) -> Change {
        self.at = Some(Instant::now());
        self.last = Some(took);
        let threshold = self.threshold();
        self.baseline = Some(self.baseline.map_or(took, |b| b.min(took)));
        let Some(threshold) = threshold.filter(|_| !calibrating) else {
            return Change::None;
        };
        if took > threshold {
            self.fast = 0;
            if self.allowed > 1 {
                self.allowed -= 1;
                return Change::Slower;
            }
            if !self.pausing {
                self.pausing = true;
                return Change::Slower;
            }
            return Change::None;
        }
        self.fast += 1;
        if self.fast < RECOVER || (!self.pausing && self.allowed == self.workers) {
            return Change::None;
        }
        self.fast = 0;
        if self.pausing {
            self.pausing = false;
        } else {
            self.allowed += 1;
        }
        Change::Faster
    }

    /// Times one probe on `conn` (outside any transaction).
    pub(super) async fn probe(conn: &mut PgConnection) -> Result<Duration, sqlx::Error> {
        let t = Instant::now();
        sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT")
            .execute(conn)
            .await?;
        Ok(t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slow_commits_take_workers_out_then_pause_and_fast_ones_give_them_back() {
        let mut l = Latency::new(4.0, 3);
        assert_eq!(l.observe(ms(2), true), Change::None);
        assert_eq!(l.observe(ms(1), true), Change::None);
        assert_eq!(l.threshold(), Some(ms(4)));
        // Under four times the lowest: nothing changes.
        assert_eq!(l.observe(ms(3), false), Change::None);
        assert_eq!((l.allowed, l.pausing), (3, false));
        // Slow: one worker out per probe, then the last pauses.
        assert_eq!(l.observe(ms(30), false), Change::Slower);
        assert_eq!(l.observe(ms(30), false), Change::Slower);
        assert_eq!((l.allowed, l.pausing), (1, false));
        assert_eq!(l.observe(ms(30), false), Change::Slower);
        assert!(l.pausing);
        assert_eq!(l.observe(ms(30), false), Change::None);
        // RECOVER fast probes in a row for each step back; a slow one starts the count again.
        for _ in 0..RECOVER - 1 {
            assert_eq!(l.observe(ms(1), false), Change::None);
        }
        assert_eq!(l.observe(ms(9), false), Change::None);
        assert!(l.pausing);
        for _ in 0..RECOVER - 1 {
            assert_eq!(l.observe(ms(1), false), Change::None);
        }
        assert_eq!(l.observe(ms(1), false), Change::Faster);
        assert_eq!((l.allowed, l.pausing), (1, false));
        for _ in 0..2 * RECOVER {
            l.observe(ms(1), false);
        }
        assert_eq!((l.allowed, l.pausing), (3, false));
        // All back: more fast probes change nothing.
        for _ in 0..2 * RECOVER {
            assert_eq!(l.observe(ms(1), false), Change::None);
        }
    }

    #[test]
    fn a_fast_disk_is_not_slow_for_a_fraction_of_a_millisecond() {
        let mut l = Latency::new(4.0, 2);
        l.observe(Duration::from_micros(100), true);
        // 0.1 ms baseline: four times is 0.4 ms, but the floor is 2 ms over it.
        assert_eq!(l.threshold(), Some(Duration::from_micros(2100)));
        assert_eq!(l.observe(Duration::from_micros(900), false), Change::None);
        assert_eq!(l.observe(ms(3), false), Change::Slower);
        assert_eq!(l.allowed, 1);
    }
}
