//! A backfill's pace, watched by the guard: whether other sessions use the database (their
//! commits a second, every transaction of ours left out) and how many of the backfill's
//! workers the commit probe lets walk. The guard samples and decides; the backfill only reads
//! [`Pace`].
//!
//! The probe: while other sessions are busy, four times a second a one-row transaction commits
//! with `synchronous_commit = on`, so it waits for the WAL flush every application commit waits
//! for — behind the WAL the batches wrote. Against the lowest time seen (three probes before any
//! batch), a probe over `factor` times that (and at least [`SLOW_FLOOR`] over it) takes a
//! worker out, down to one, and then makes the last one pause as long as each batch took;
//! [`RECOVER`] fast probes in a row (3 s) give one back, and a quiet database gives all back.

use sqlx::PgConnection;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the backfill asks the guard to watch for it.
#[derive(Debug, Clone, Copy)]
pub struct PaceSettings {
    /// Others' commits a second from which the database counts as busy.
    pub busy_tps: u32,
    /// How many times its lowest a commit may take (`None`: no probe).
    pub commit_slowdown: Option<f64>,
    /// The workers the probe may take out one by one (those that walk while busy).
    pub workers: u32,
}

/// What the guard tells the backfill, read by its workers before every batch.
pub struct Pace {
    pub(super) settings: PaceSettings,
    /// Transactions the backfill made (every worker's), left out of the others' commits.
    own: AtomicI64,
    busy: AtomicBool,
    tps_milli: AtomicU64,
    allowed: AtomicU32,
    pausing: AtomicBool,
    slowdowns: AtomicI64,
    slowest_us: AtomicU64,
    lowest_us: AtomicU64,
    /// Changes to tell the person running it, said by the backfill (its progress line).
    told: Mutex<Vec<String>>,
    /// Set once the guard has calibrated the probe and looked at the other sessions.
    pub(super) ready: tokio::sync::Notify,
    pub(super) is_ready: AtomicBool,
}

impl Pace {
    pub(crate) fn new(settings: PaceSettings) -> Pace {
        Pace {
            settings,
            own: AtomicI64::new(0),
            busy: AtomicBool::new(false),
            tps_milli: AtomicU64::new(0),
            allowed: AtomicU32::new(settings.workers.max(1)),
            pausing: AtomicBool::new(false),
            slowdowns: AtomicI64::new(0),
            slowest_us: AtomicU64::new(0),
            lowest_us: AtomicU64::new(0),
            told: Mutex::new(Vec::new()),
            ready: tokio::sync::Notify::new(),
            is_ready: AtomicBool::new(false),
        }
    }

    /// Counts transactions of the backfill's (a batch, a count, a bound).
    pub fn own(&self, n: i64) {
        self.own.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether other sessions use the database now.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Others' commits a second at the last sample.
    pub fn tps(&self) -> f64 {
        self.tps_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Workers the probe lets walk (all without a probe).
    pub fn allowed(&self) -> u32 {
        if self.settings.commit_slowdown.is_none() {
            return u32::MAX;
        }
        self.allowed.load(Ordering::Relaxed)
    }

    /// Whether the last worker pauses as long as each batch.
    pub fn pausing(&self) -> bool {
        self.pausing.load(Ordering::Relaxed)
    }

    /// What changed since last asked, to say.
    pub fn told(&self) -> Vec<String> {
        self.told
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Times the probe made the backfill back off, the slowest and the lowest commit it saw.
    pub fn figures(&self) -> (i64, Duration, Duration) {
        (
            self.slowdowns.load(Ordering::Relaxed),
            Duration::from_micros(self.slowest_us.load(Ordering::Relaxed)),
            Duration::from_micros(self.lowest_us.load(Ordering::Relaxed)),
        )
    }

    /// Sets what the guard would: for the backfill's own tests.
    #[cfg(test)]
    pub(crate) fn force(&self, busy: bool, allowed: u32) {
        self.busy.store(busy, Ordering::Relaxed);
        self.allowed.store(allowed, Ordering::Relaxed);
    }

    fn tell(&self, text: String) {
        if let Ok(mut t) = self.told.lock() {
            t.push(text);
        }
    }
}

/// How often the others' commits are counted.
const BUSY_SAMPLE: Duration = Duration::from_secs(2);
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Below this over the baseline a commit is never slow: a fast disk's probe moves by more
/// than a multiple of its 0.1 ms from one second to the next.
const SLOW_FLOOR: Duration = Duration::from_millis(2);
const RECOVER: u32 = 12;

/// The guard's side of one backfill's pace: the counts it samples and the probe's state.
pub(super) struct Pacing {
    pub pace: std::sync::Arc<Pace>,
    commits: Option<i64>,
    commits_at: Instant,
    /// Our transactions (the backfill's and the guard's) at the last count.
    ours_at: i64,
    latency: Option<Latency>,
}

impl Pacing {
    pub fn new(pace: std::sync::Arc<Pace>) -> Pacing {
        let latency = pace
            .settings
            .commit_slowdown
            .map(|f| Latency::new(f, pace.settings.workers));
        Pacing {
            pace,
            commits: None,
            commits_at: Instant::now(),
            ours_at: 0,
            latency,
        }
    }

    /// Before any batch: the probe's baseline (the lowest of three) and whether another
    /// session is active now; `ours` are the backends of this run, `guard_txns` the guard's
    /// own transactions so far.
    pub async fn start(&mut self, conn: &mut PgConnection, ours: &[i32], guard_txns: &mut i64) {
        if let Some(l) = &mut self.latency {
            for _ in 0..3 {
                if let Ok(t) = probe(conn).await {
                    l.observe(t, true);
                }
                *guard_txns += 1;
            }
            if let Some(b) = l.baseline {
                self.pace
                    .lowest_us
                    .store(b.as_micros() as u64, Ordering::Relaxed);
            }
        }
        let active: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND NOT pid = ANY ($1) AND backend_type = 'client backend' \
             AND (state IS NULL OR state <> 'idle' OR state_change > now() - interval '1 second'))",
        )
        .bind(ours)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(true);
        *guard_txns += 1;
        self.pace.busy.store(active, Ordering::Relaxed);
        self.commits = commits(conn).await;
        *guard_txns += 1;
        self.commits_at = Instant::now();
        self.ours_at = self.pace.own.load(Ordering::Relaxed) + *guard_txns;
        self.pace.is_ready.store(true, Ordering::SeqCst);
        self.pace.ready.notify_waiters();
    }

    /// One look: the others' commits when due, and a probe when due while they are busy.
    pub async fn look(&mut self, conn: &mut PgConnection, guard_txns: &mut i64) {
        if self.commits_at.elapsed() >= BUSY_SAMPLE {
            let now = commits(conn).await;
            *guard_txns += 1;
            let secs = self.commits_at.elapsed().as_secs_f64();
            let ours = self.pace.own.load(Ordering::Relaxed) + *guard_txns;
            if let (Some(before), Some(after)) = (self.commits, now) {
                // Statistics reach pg_stat_database up to a second late, ours too: the
                // estimate is rough, which a threshold well above our own rate absorbs.
                let tps = ((after - before - (ours - self.ours_at)) as f64 / secs).max(0.0);
                self.pace
                    .tps_milli
                    .store((tps * 1000.0) as u64, Ordering::Relaxed);
                self.pace.busy.store(
                    tps > f64::from(self.pace.settings.busy_tps),
                    Ordering::Relaxed,
                );
            }
            self.commits = now;
            self.commits_at = Instant::now();
            self.ours_at = ours;
        }
        let Some(l) = &mut self.latency else { return };
        if !self.pace.busy() {
            if l.release() {
                self.pace
                    .tell(format!("the database is quiet: {}", l.running()));
                self.publish();
            }
            return;
        }
        if !l.due() {
            return;
        }
        l.started();
        let Ok(took) = probe(conn).await else { return };
        *guard_txns += 1;
        let slowest = self.pace.slowest_us.load(Ordering::Relaxed);
        self.pace
            .slowest_us
            .store(slowest.max(took.as_micros() as u64), Ordering::Relaxed);
        let change = l.observe(took, false);
        let base = l.baseline.unwrap_or_default();
        let told = match change {
            Change::None => None,
            Change::Slower => {
                self.pace.slowdowns.fetch_add(1, Ordering::Relaxed);
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
        if let Some(t) = told {
            self.pace.tell(t);
            self.publish();
        }
    }

    fn publish(&self) {
        if let Some(l) = &self.latency {
            self.pace.allowed.store(l.allowed, Ordering::Relaxed);
            self.pace.pausing.store(l.pausing, Ordering::Relaxed);
        }
    }

    /// When the next probe is due, while one may be.
    pub fn next_probe(&self) -> Option<Duration> {
        let l = self.latency.as_ref()?;
        self.pace
            .busy()
            .then(|| PROBE_EVERY.saturating_sub(l.at.map_or(PROBE_EVERY, |t| t.elapsed())))
    }
}

/// Commits and rollbacks of this database so far.
async fn commits(conn: &mut PgConnection) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(conn)
    .await
    .ok()
}

/// Times one probe on `conn` (outside any transaction).
async fn probe(conn: &mut PgConnection) -> Result<Duration, sqlx::Error> {
    let t = Instant::now();
    sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT")
        .execute(conn)
        .await?;
    Ok(t.elapsed())
}

/// What a probe changed.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    Slower,
    Faster,
}

/// The commit probe's state: the baseline, and how many workers it lets run.
struct Latency {
    factor: f64,
    baseline: Option<Duration>,
    at: Option<Instant>,
    fast: u32,
    /// Workers allowed to run (from 1 to all), and whether the one left pauses.
    allowed: u32,
    pausing: bool,
    workers: u32,
}

impl Latency {
    fn new(factor: f64, workers: u32) -> Latency {
        Latency {
            factor,
            baseline: None,
            at: None,
            fast: 0,
            allowed: workers.max(1),
            pausing: false,
            workers: workers.max(1),
        }
    }

    fn due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= PROBE_EVERY)
    }

    /// Lets every worker run at full speed again; whether that changed anything.
    fn release(&mut self) -> bool {
        let changed = self.pausing || self.allowed < self.workers;
        self.allowed = self.workers;
        self.pausing = false;
        self.fast = 0;
        changed
    }

    fn started(&mut self) {
        self.at = Some(Instant::now());
    }

    /// What the probe lets run, for the log.
    fn running(&self) -> String {
        match (self.allowed, self.pausing) {
            (_, true) => "one worker, pausing as long as each batch".to_string(),
            (_, false) if self.workers == 1 => "full speed".to_string(),
            (n, false) if n == self.workers => format!("all {n} workers"),
            (1, false) => format!("1 of {} workers", self.workers),
            (n, false) => format!("{n} of {} workers", self.workers),
        }
    }

    /// The time above which a commit counts as slow.
    fn threshold(&self) -> Option<Duration> {
        self.baseline
            .map(|b| b.mul_f64(self.factor).max(b + SLOW_FLOOR))
    }

    /// Takes in one probe's time; `calibrating` probes (before any batch) only set the baseline.
    fn observe(&mut self, took: Duration, calibrating: bool) -> Change {
        self.at = Some(Instant::now());
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

    #[test]
    fn without_a_probe_every_worker_is_allowed() {
        let p = Pace::new(PaceSettings {
            busy_tps: 20,
            commit_slowdown: None,
            workers: 3,
        });
        assert_eq!(p.allowed(), u32::MAX);
        let p = Pace::new(PaceSettings {
            commit_slowdown: Some(4.0),
            ..p.settings
        });
        assert_eq!(p.allowed(), 3);
    }
}
