//! What each step of a rehearsal locked, measured from the server: every 5 ms the relation
//! locks granted to migrate's own sessions (`application_name = 'migrate'`: the runner and its
//! backfill workers) are read from `pg_locks`, and each sample falls to the step running then
//! (the engine tells when each starts and ends). A lock held for less than a sample's interval
//! may not show.

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
}

/// The steps' intervals and the lock samples, filled as the rehearsal runs.
#[derive(Default)]
struct Record {
    steps: Vec<(StepEvent, Instant, Option<Instant>)>,
    samples: Vec<(Instant, Vec<(String, String)>)>,
}

/// A running lock watch; [`LockWatch::finish`] ends it and returns every step with its locks.
pub struct LockWatch {
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
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (record.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let held: Vec<(String, String)> = sqlx::query_as(
                    "SELECT l.relation::regclass::text, l.mode FROM pg_locks l
                     JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE a.application_name = 'migrate' AND a.datname = current_database()
                       AND l.granted AND l.locktype = 'relation'
                       AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace)",
                )
                .fetch_all(&mut c)
                .await
                .unwrap_or_default();
                if let Ok(mut rec) = r.lock() {
                    rec.samples.push((Instant::now(), held));
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
        Ok((LockWatch { record, stop, task }, observer))
    }

    pub async fn finish(self) -> Vec<StepTime> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let Ok(rec) = self.record.lock() else {
            return Vec::new();
        };
        rec.steps
            .iter()
            .map(|(e, from, to)| {
                let to = to.unwrap_or(*from);
                let mut locks: Vec<StepLock> = Vec::new();
                // Each sample stands for the time since the one before (a sample's query
                // takes time too).
                let mut prev = *from;
                for (at, held) in rec
                    .samples
                    .iter()
                    .filter(|(at, _)| *at >= *from && *at <= to)
                {
                    let dt = at.duration_since(prev).as_secs_f64() * 1e3;
                    prev = *at;
                    for (relation, mode) in held {
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
                StepTime {
                    migration: e.migration.clone(),
                    phase: e.label.clone(),
                    step: e.step,
                    action: e.action.clone(),
                    ms: to.duration_since(*from).as_secs_f64() * 1e3,
                    locks,
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
