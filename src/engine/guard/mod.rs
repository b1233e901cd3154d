//! The guard: while expand, backfill, contract or abort runs, it samples the live database on
//! a connection of its own about once a second ([`sample`]) and turns each sample into a
//! verdict ([`decide`]): go, throttle, pause or stop. The step executor and the backfill only
//! ask it ([`GuardHandle::gate`] before each try and each batch); on a confirmed stop it
//! cancels our statement itself, so a step that makes the app queue does not keep its lock
//! until its next try. Every change of verdict is said on stderr and recorded in the metadata
//! schema's `guard_events`, which `status` shows.

pub mod decide;
mod pace;
mod sample;

pub use decide::{Action, Verdict};
pub use pace::{Pace, PaceSettings};

use crate::config::GuardSettings;
use crate::error::Error;
use crate::model::quote_ident;
use decide::Judge;
use sample::Sampler;
use sqlx::{AssertSqlSafe, PgConnection};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What the run shares with the guard: its verdicts, the backends running our statements,
/// our own rollbacks (left out of the app's) and the migration being run (for the record).
#[derive(Clone)]
pub struct GuardHandle {
    verdict: watch::Receiver<Verdict>,
    shared: Arc<Shared>,
}

struct Shared {
    /// The signals of the last sample, compact, for a progress line.
    line: Mutex<String>,
    /// The backfill running now, whose pace the guard watches.
    pacing: Mutex<Option<Arc<Pace>>>,
    /// Wakes the guard between samples (a backfill starts).
    wake: Notify,
    pids: Mutex<Vec<i32>>,
    own_rollbacks: AtomicI64,
    migration: Mutex<Option<String>>,
    command: String,
}

impl std::fmt::Debug for GuardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardHandle")
            .field("verdict", &*self.verdict.borrow())
            .finish()
    }
}

impl GuardHandle {
    /// Waits while the guard says pause, and says how long; an error when it says stop.
    /// `before` names what was about to run, for the message.
    pub async fn gate(&self, before: impl FnOnce() -> String) -> Result<Duration, Error> {
        let mut rx = self.verdict.clone();
        let started = Instant::now();
        loop {
            let v = rx.borrow_and_update().clone();
            match v.action {
                Action::Go | Action::Throttle => return Ok(started.elapsed()),
                Action::Stop => return Err(stopped(&v, &self.shared.command, Some(&before()))),
                Action::Pause => {
                    // The guard gone (the run is ending): nothing left to wait for.
                    if rx.changed().await.is_err() {
                        return Ok(started.elapsed());
                    }
                }
            }
        }
    }

    /// The last sample's signals and the verdict, on one short line (`guard ok: lock queue 0,
    /// rollbacks 0.2/s, connections 8%`).
    pub fn line(&self) -> String {
        self.shared
            .line
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// A backfill starts: from now until [`GuardHandle::pace_done`] the guard also counts the
    /// other sessions' commits and, while they are busy, probes the commit latency, and says
    /// through the returned [`Pace`] how many of `settings.workers` may walk. Returns once the
    /// probe is calibrated, before the first batch.
    pub async fn pace(&self, settings: PaceSettings) -> Arc<Pace> {
        let pace = Arc::new(Pace::new(settings));
        {
            let ready = pace.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Ok(mut p) = self.shared.pacing.lock() {
                *p = Some(pace.clone());
            }
            self.shared.wake.notify_one();
            if !pace.is_ready.load(Ordering::SeqCst) {
                // A guard that cannot sample leaves the backfill at full speed, not waiting.
                let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
            }
        }
        pace
    }

    /// The backfill is over.
    pub fn pace_done(&self) {
        if let Ok(mut p) = self.shared.pacing.lock() {
            *p = None;
        }
    }

    /// The verdict now.
    pub fn verdict(&self) -> Verdict {
        self.verdict.borrow().clone()
    }

    /// Whether the backfill should slow down.
    pub fn throttled(&self) -> bool {
        self.verdict.borrow().action == Action::Throttle
    }

    /// An error of a run the guard stopped, said as the stop: its statement was cancelled.
    pub fn explain(&self, e: Error) -> Error {
        let v = self.verdict.borrow().clone();
        if v.action != Action::Stop || matches!(e, Error::Stopped(_)) {
            return e;
        }
        stopped(&v, &self.shared.command, None)
    }

    /// Counts one transaction of ours that rolled back (a try that timed out on its lock).
    pub fn own_rollback(&self) {
        self.shared.own_rollbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The backend of `conn` runs our statements from now on; its pid.
    pub async fn register(&self, conn: &mut PgConnection) -> Option<i32> {
        let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .ok()?;
        self.shared.pids.lock().map(|mut p| p.push(pid)).ok();
        Some(pid)
    }

    /// The backend `pid` no longer runs ours (its connection is closing).
    pub fn unregister(&self, pid: i32) {
        if let Ok(mut p) = self.shared.pids.lock() {
            p.retain(|x| *x != pid);
        }
    }

    /// The migration whose steps run now.
    pub fn running(&self, migration: &str) {
        if let Ok(mut m) = self.shared.migration.lock() {
            *m = Some(migration.to_string());
        }
    }
}

fn stopped(v: &Verdict, command: &str, before: Option<&str>) -> Error {
    let what = match before {
        Some(b) => format!("before {b}"),
        None => "its statement was cancelled and rolled back".to_string(),
    };
    Error::Stopped(format!(
        "stopped by the guard ({what}): {}; the run ended at its last checkpoint — run `migrate {command}` again to resume once the signal has recovered",
        v.reason
    ))
}

/// A running guard; [`Guard::finish`] ends it.
pub struct Guard {
    pub handle: GuardHandle,
    done: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the guard says what it decided.
pub struct Voice {
    /// Put before every line (a rollout's target).
    pub prefix: String,
    pub metadata_schema: String,
    /// Each event as a JSON line on stdout, for tools, instead of a sentence on stderr.
    pub json: bool,
}

impl Guard {
    /// Connects, takes the baselines and starts sampling. `command`: what runs (`expand`, …).
    pub async fn start(
        url: &str,
        settings: &GuardSettings,
        command: &str,
        voice: Voice,
    ) -> Result<Guard, Error> {
        let mut conn = crate::engine::connect(url).await?;
        let _ = sqlx::raw_sql("SET application_name = 'migrate guard'")
            .execute(&mut conn)
            .await;
        let mut sampler = Sampler::new(&mut conn, settings).await;
        let baselines = sampler.baselines(&mut conn).await;
        let mut watched =
            vec![format!(
                "lock queue, rollbacks (baseline {}), connections, replicas",
                baselines.get(&crate::config::Signal::Rollbacks).map_or(
                    "unknown".to_string(),
                    |b| decide::show(crate::config::Signal::Rollbacks, *b)
                )
            )];
        watched.push(if sampler.has_latency() {
            "statement latency (pg_stat_statements)".to_string()
        } else {
            "no statement latency (pg_stat_statements is not installed here)".to_string()
        });
        if let Some(u) = &settings.health_url {
            watched.push(format!("health {u}"));
        }
        // Once per run; a rollout's targets, many at once, would repeat it for each.
        if voice.prefix.is_empty() {
            eprintln!("guard: watching {}", watched.join(", "));
        }
        let judge = Judge::new(settings.clone(), baselines);
        let (tx, rx) = watch::channel(Verdict::go());
        let shared = Arc::new(Shared {
            line: Mutex::new(String::new()),
            pacing: Mutex::new(None),
            wake: Notify::new(),
            pids: Mutex::new(Vec::new()),
            own_rollbacks: AtomicI64::new(0),
            migration: Mutex::new(None),
            command: command.to_string(),
        });
        let done = Arc::new(Notify::new());
        let watch = Watch {
            conn,
            sampler,
            judge,
            tx,
            shared: shared.clone(),
            interval: settings.interval,
            voice,
            txns: 0,
        };
        let task = tokio::spawn(watch.run(done.clone()));
        Ok(Guard {
            handle: GuardHandle {
                verdict: rx,
                shared,
            },
            done,
            task,
        })
    }

    /// Stops sampling and closes the guard's connection.
    pub async fn finish(self) {
        self.done.notify_one();
        let _ = self.task.await;
    }
}

struct Watch {
    conn: PgConnection,
    sampler: Sampler,
    judge: Judge,
    tx: watch::Sender<Verdict>,
    shared: Arc<Shared>,
    interval: Duration,
    voice: Voice,
    /// Transactions the guard made on its connection (left out of the others' commits).
    txns: i64,
}

impl Watch {
    async fn run(mut self, done: Arc<Notify>) {
        let mut blind_said = false;
        let (mut samples, mut sampling) = (0u32, Duration::ZERO);
        let mut last_sample: Option<Instant> = None;
        let mut pacing: Option<pace::Pacing> = None;
        loop {
            let pids = self
                .shared
                .pids
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            // A backfill started or ended.
            let registered = self.shared.pacing.lock().ok().and_then(|p| p.clone());
            match registered {
                Some(p) if pacing.as_ref().is_none_or(|c| !Arc::ptr_eq(&c.pace, &p)) => {
                    let mut fresh = pace::Pacing::new(p);
                    fresh.start(&mut self.conn, &pids, &mut self.txns).await;
                    pacing = Some(fresh);
                }
                None => pacing = None,
                _ => {}
            }
            if last_sample.is_none_or(|t| t.elapsed() >= self.interval) {
                last_sample = Some(Instant::now());
                let own = self.shared.own_rollbacks.load(Ordering::Relaxed);
                let t = Instant::now();
                let sampled = self.sampler.sample(&mut self.conn, &pids, own).await;
                self.txns += sampled.as_ref().map_or(1, |s| s.queries);
                samples += 1;
                sampling += t.elapsed();
                match sampled {
                    Ok(s) => {
                        blind_said = false;
                        let now = Instant::now();
                        if let Some(v) = self.judge.judge(&s.values, now) {
                            self.changed(v, &pids).await;
                        }
                        let line = self.line(&s.values);
                        if let Ok(mut l) = self.shared.line.lock() {
                            *l = line;
                        }
                    }
                    Err(e) if !blind_said => {
                        blind_said = true;
                        eprintln!(
                            "{}guard: cannot sample the database ({e}); the run goes on unwatched until it can",
                            self.voice.prefix
                        );
                    }
                    Err(_) => {}
                }
            }
            if let Some(p) = &mut pacing {
                p.look(&mut self.conn, &mut self.txns).await;
            }
            let to_sample = self
                .interval
                .saturating_sub(last_sample.map_or(Duration::ZERO, |t| t.elapsed()));
            let wait = match &pacing {
                Some(p) => to_sample.min(p.next_probe().unwrap_or(Duration::from_millis(500))),
                None => to_sample,
            };
            tokio::select! {
                _ = done.notified() => break,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // What watching cost: the time of a sample against the interval between them.
        if self.voice.prefix.is_empty() && samples > 1 {
            eprintln!(
                "guard: {samples} samples, {:.2} ms each",
                sampling.as_secs_f64() * 1e3 / f64::from(samples)
            );
        }
        let _ = sqlx::Connection::close(self.conn).await;
    }

    /// The signals that matter most, compact, after the verdict.
    fn line(&self, values: &std::collections::BTreeMap<crate::config::Signal, f64>) -> String {
        use crate::config::Signal;
        let v = self.tx.borrow();
        let head = match v.action {
            Action::Go => "guard ok".to_string(),
            a => format!("guard {}: {}", a.name(), v.signal.map_or("", |s| s.key())),
        };
        let shown: Vec<String> = [
            (Signal::LockWaiters, "queued"),
            (Signal::Rollbacks, "rollbacks"),
            (Signal::Latency, "latency"),
            (Signal::Connections, "connections"),
            (Signal::ReplicaLag, "lag"),
        ]
        .into_iter()
        .filter_map(|(s, name)| {
            let x = values.get(&s)?;
            let text = match s {
                Signal::Connections => format!("{:.0}%", x * 100.0),
                _ => decide::show(s, *x),
            };
            Some(format!("{name} {text}"))
        })
        .collect();
        format!("{head} ({})", shown.join(", "))
    }

    /// Says, records and publishes a new verdict; on a stop, cancels our statements first.
    async fn changed(&mut self, v: Verdict, pids: &[i32]) {
        let previous = self.tx.borrow().action;
        let mut detail = v.reason.clone();
        if v.signal == Some(crate::config::Signal::LockWait) && !self.sampler.waiters.who.is_empty()
        {
            detail = format!("{detail}; waiting: {}", self.sampler.waiters.who.join("; "));
        }
        let verb = match (v.action, previous) {
            (Action::Go | Action::Throttle, Action::Pause) => format!(
                "resuming after {:.1} s paused{}",
                self.judge.resumed_after.as_secs_f64(),
                if v.action == Action::Throttle {
                    format!(", slowed down: {detail}")
                } else {
                    String::new()
                }
            ),
            (Action::Go, _) => "back to full speed".to_string(),
            (Action::Throttle, _) => format!("slowing down: {detail}"),
            (Action::Pause, _) => format!("pausing: {detail}"),
            (Action::Stop, _) => format!("stopping: {detail}"),
        };
        self.txns += 2;
        if v.action == Action::Stop && !pids.is_empty() {
            // At once: the statement that makes sessions queue gives its lock up now.
            let _ = sqlx::query("SELECT pg_cancel_backend(p) FROM unnest($1::int[]) AS p")
                .bind(pids)
                .execute(&mut self.conn)
                .await;
        }
        if v.action == Action::Go {
            detail = verb.clone();
        }
        let action = match (v.action, previous) {
            (Action::Go, _) | (Action::Throttle, Action::Pause) => "resume",
            (a, _) => a.name(),
        };
        let migration = self.shared.migration.lock().ok().and_then(|m| m.clone());
        if self.voice.json {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            println!(
                "{}",
                serde_json::json!({
                    "event": "guard",
                    "at": at,
                    "command": self.shared.command,
                    "migration": migration,
                    "action": action,
                    "signal": v.signal.map(|s| s.key()),
                    "detail": detail,
                })
            );
        } else {
            eprintln!("{}guard: {verb}", self.voice.prefix);
        }
        let insert = format!(
            "INSERT INTO {}.guard_events (migration, command, action, signal, detail) VALUES ($1, $2, $3, $4, $5)",
            quote_ident(&self.voice.metadata_schema)
        );
        let _ = sqlx::query(AssertSqlSafe(insert))
            .bind(migration)
            .bind(&self.shared.command)
            .bind(action)
            .bind(v.signal.map(|s| s.key()))
            .bind(&detail)
            .execute(&mut self.conn)
            .await;
        let _ = self.tx.send(Verdict {
            reason: detail,
            ..v
        });
    }
}
