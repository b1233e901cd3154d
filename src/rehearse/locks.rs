//! What each step of a rehearsal locked, measured from the server: every 5 ms the relation
//! locks granted to migrate's own sessions (`application_name = 'migrate'`: the runner and its
//! backfill workers) are read from `pg_locks`, and each sample falls to the step running then
//! (the engine tells when each starts and ends). A lock held for less than a sample's interval
//! may not show.
//!
//! Each sample also reads the server's WAL position, and every fourth the scratch database's
//! size: a step's WAL is the position's advance from the sample before it starts to the one
//! after it ends (server-wide: on a busy server, less the rate measured before the first step),
//! its size change likewise.

use crate::engine::exec::{StepEvent, StepObserver};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the locks are read.
const EVERY: Duration = Duration::from_millis(5);

/// The strongest lock a step held on one relation, and for how long it was seen held.
#[derive(Debug, Clone, Serialize)]
pub struct StepLock {
    pub relation: String,
    pub mode: String,
    pub held_ms: f64,
}

/// One step as the rehearsal ran it.
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub migration: String,
    pub phase: String,
    pub step: usize,
    pub action: String,
    pub ms: f64,
    pub locks: Vec<StepLock>,
    /// The table whose size the step's time follows, if it scans, rewrites or changes rows.
    pub sized_by: Option<String>,
    /// WAL written while the step ran, in bytes.
    pub wal_bytes: i64,
    /// How much the scratch database grew (or shrank) while the step ran, in bytes.
    pub size_change: i64,
    /// The step's time on the target, scaled by its table's size there (a projection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_ms: Option<f64>,
    /// The step's size change on the target, scaled likewise (a projection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_size_change: Option<i64>,
}

/// The steps' intervals and the lock samples, filled as the rehearsal runs.
#[derive(Default)]
struct Record {
    steps: Vec<(StepEvent, Instant, Option<Instant>)>,
    samples: Vec<Sample>,
}

/// One reading: the locks migrate's sessions held, the WAL position and the database's size.
struct Sample {
    at: Instant,
    held: Vec<(String, String)>,
    lsn: i64,
    size: i64,
}

/// A running lock watch; [`LockWatch::finish`] ends it and returns every step with its locks.
pub struct LockWatch {
    /// Bytes of WAL a second the server wrote before the rehearsal began.
    background: f64,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LockWatch {
    /// Starts sampling on a connection of its own; the observer to give the engine.
    pub async fn start(url: &str) -> Result<(LockWatch, StepObserver), crate::error::Error> {
        let mut c = PgConnection::connect(url)
            .await
            .map_err(|e| crate::error::Error::Database(format!("the lock watch: {e}")))?;
        let _ = sqlx::raw_sql("SET application_name = 'migrate rehearsal locks'")
            .execute(&mut c)
            .await;
        // The server's own WAL rate before anything runs: what others write meanwhile, taken
        // off each step's WAL (the scratch copy may share a busy server).
        let lsn = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8";
        let first: i64 = sqlx::query_scalar(lsn).fetch_one(&mut c).await.unwrap_or(0);
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second: i64 = sqlx::query_scalar(lsn)
            .fetch_one(&mut c)
            .await
            .unwrap_or(first);
        let background = (second - first).max(0) as f64 / t.elapsed().as_secs_f64();
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (record.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut size = 0i64;
            while !s.load(Ordering::SeqCst) {
                // One round trip: the WAL position with the locks.
                let (lsn, relations, modes): (i64, Vec<String>, Vec<String>) = sqlx::query_as(
                    "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8,
                            coalesce(array_agg(l.relation::regclass::text), '{}'),
                            coalesce(array_agg(l.mode), '{}')
                     FROM pg_locks l
                     JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE a.application_name = 'migrate' AND a.datname = current_database()
                       AND l.granted AND l.locktype = 'relation'
                       AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace)",
                )
                .fetch_one(&mut c)
                .await
                .unwrap_or((0, Vec::new(), Vec::new()));
                let held: Vec<(String, String)> = relations.into_iter().zip(modes).collect();
                if n.is_multiple_of(4) {
                    size = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or(size);
                }
                n += 1;
                if let Ok(mut rec) = r.lock() {
                    rec.samples.push(Sample {
                        at: Instant::now(),
                        held,
                        lsn,
                        size,
                    });
                }
                tokio::time::sleep(EVERY).await;
            }
            let _ = c.close().await;
        });
        let rec = record.clone();
        let observer = StepObserver(Arc::new(move |e: StepEvent| {
            if let Ok(mut r) = rec.lock() {
                let now = Instant::now();
                if e.start {
                    r.steps.push((e, now, None));
                } else if let Some(open) = r.steps.iter_mut().rev().find(|s| s.2.is_none()) {
                    open.2 = Some(now);
                }
            }
        }));
        Ok((
            LockWatch {
                record,
                stop,
                task,
                background,
            },
            observer,
        ))
    }

    pub async fn finish(self) -> Vec<StepTime> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let Ok(rec) = self.record.lock() else {
            return Vec::new();
        };
        let background = self.background;
        rec.steps
            .iter()
            .map(|(e, from, to)| {
                let to = to.unwrap_or(*from);
                let mut locks: Vec<StepLock> = Vec::new();
                // Each sample stands for the time since the one before (a sample's query
                // takes time too).
                let mut prev = *from;
                for s in rec.samples.iter().filter(|s| s.at >= *from && s.at <= to) {
                    let dt = s.at.duration_since(prev).as_secs_f64() * 1e3;
                    prev = s.at;
                    for (relation, mode) in &s.held {
                        match locks.iter_mut().find(|l| &l.relation == relation) {
                            Some(l) if strength(mode) > strength(&l.mode) => {
                                l.mode = mode.clone();
                                l.held_ms = dt;
                            }
                            Some(l) if *mode == l.mode => l.held_ms += dt,
                            Some(_) => {}
                            None => locks.push(StepLock {
                                relation: relation.clone(),
                                mode: mode.clone(),
                                held_ms: dt,
                            }),
                        }
                    }
                }
                // The strongest first: what the step made others wait for.
                locks.sort_by_key(|l| std::cmp::Reverse(strength(&l.mode)));
                // The readings around the step: the last before it began, the first after it
                // ended.
                let start = rec.samples.iter().rev().find(|s| s.at <= *from);
                let end = rec.samples.iter().find(|s| s.at >= to);
                let (wal_bytes, size_change) = match (start, end) {
                    (Some(a), Some(b)) => {
                        let others = background * b.at.duration_since(a.at).as_secs_f64();
                        (
                            ((b.lsn - a.lsn) as f64 - others).max(0.0) as i64,
                            b.size - a.size,
                        )
                    }
                    _ => (0, 0),
                };
                StepTime {
                    migration: e.migration.clone(),
                    phase: e.label.clone(),
                    step: e.step,
                    action: e.action.clone(),
                    ms: to.duration_since(*from).as_secs_f64() * 1e3,
                    locks,
                    sized_by: e.sized_by.clone(),
                    wal_bytes,
                    size_change,
                    projected_ms: None,
                    projected_size_change: None,
                }
            })
            .collect()
    }
}

/// The table-lock modes, weakest first.
pub fn strength(mode: &str) -> usize {
    [
        "AccessShareLock",
        "RowShareLock",
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ]
    .iter()
    .position(|m| *m == mode)
    .unwrap_or(0)
}
