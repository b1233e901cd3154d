//! The demo's two app versions: steady request streams on connections of their own, on a
//! thread of their own, each request timed from when it was due (a stalled database shows as
//! latency of every request queued behind it, not as fewer requests).

use crate::error::Error;
use crate::load::{app_session, Timings};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    Expand,
    Backfill,
    Deploy,
    Contract,
    After,
}

const PHASES: [&str; 6] = [
    "before", "expand", "backfill", "deploy", "contract", "after",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Old,
    New,
}

const VERSIONS: [&str; 2] = ["old", "new"];
/// Connections (workers) per version.
const WORKERS: usize = 2;

#[derive(Default)]
struct Shared {
    phase: AtomicUsize,
    running: [AtomicBool; 2],
    /// Workers of each version that have stopped.
    stopped: [AtomicUsize; 2],
    stop_all: AtomicBool,
    cells: Mutex<HashMap<(usize, usize), Timings>>,
    /// Users written by a worker: id → (name, age). Each worker updates only ids of its own
    /// residue mod 4, so every id has one writer and its last write is known.
    expected: Mutex<HashMap<i64, (String, i64)>>,
    inserted_users: AtomicUsize,
    errors: Mutex<Vec<String>>,
    lock_wait_ms: Mutex<[f64; 6]>,
    /// What the longest lock wait of each phase waited behind (the blocking statement).
    lock_wait_behind: Mutex<[String; 6]>,
    /// Per phase, how often a request in flight was seen in each wait event (every 10 ms).
    wait_samples: Mutex<[HashMap<String, u64>; 6]>,
    /// Each version's `search_path` (its version schema), set before it starts.
    search_path: Mutex<[Option<String>; 2]>,
    /// The versions read through views: `SELECT *` and no casts.
    views: bool,
    /// A bad release (`--incident`): this share (percent) of the requests fail in the app,
    /// their transaction rolled back, and are counted apart from the migration's failures.
    incident_share: AtomicUsize,
    incident_failed: AtomicUsize,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRow {
    pub phase: &'static str,
    pub version: &'static str,
    pub requests: usize,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The longest a request of either version was seen waiting for a lock in this phase.
    pub longest_lock_wait_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoReport {
    pub phases: Vec<PhaseRow>,
    pub failed_requests: u64,
    /// The first failures, as the database reported them.
    pub errors: Vec<String>,
    pub backfill_rows: i64,
    #[serde(serialize_with = "secs")]
    pub backfill_time: Duration,
    pub rows_checked: i64,
    pub rows_wrong: i64,
    /// What the final check found wrong.
    pub problems: Vec<String>,
    /// Phases in which a request waited on a lock longer than `LOCK_WAIT_BOUND_MS`, with the
    /// statement it waited behind.
    pub long_lock_waits: Vec<LockWait>,
    /// What the requests in flight were doing, per phase: the share of 10 ms samples in each
    /// wait event (`running` when on the CPU), most frequent first.
    pub waits: Vec<PhaseWaits>,
    /// `--incident`: the bad release injected during the backfill, and what the guard did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
}

/// A bad release during the backfill (`migrate demo --incident`) and the guard's answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Incident {
    /// The share of requests that failed (percent) and for how long.
    pub share: usize,
    pub seconds: f64,
    /// Requests the bad release failed (not counted in `failed_requests`).
    pub failed_requests: usize,
    /// From the first failure to the guard's pause of the backfill (none: it never paused).
    pub noticed_after_s: Option<f64>,
    /// From the end of the incident to the guard's resume (none: it never resumed).
    pub resumed_after_end_s: Option<f64>,
    /// The signal the guard named.
    pub signal: Option<String>,
}

impl Incident {
    /// The guard paused during the incident and resumed after it.
    pub fn handled(&self) -> bool {
        self.noticed_after_s.is_some() && self.resumed_after_end_s.is_some()
    }
}

/// The wait events of one phase's requests in flight, as shares of the samples.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseWaits {
    pub phase: &'static str,
    pub samples: u64,
    pub events: Vec<(String, f64)>,
}

/// The longest an app request may wait on a lock: about one try of a step (100 ms), with room
/// for the sampling.
pub const LOCK_WAIT_BOUND_MS: f64 = 150.0;

/// A lock wait of an app request longer than the bound.
#[derive(Debug, Clone, Serialize)]
pub struct LockWait {
    pub phase: &'static str,
    pub ms: f64,
    /// The statement the request waited behind, as `pg_blocking_pids` saw it.
    pub behind: String,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl DemoReport {
    pub fn ok(&self) -> bool {
        self.failed_requests == 0
            && self.rows_wrong == 0
            && self.problems.is_empty()
            && self.long_lock_waits.is_empty()
            && self.incident.as_ref().is_none_or(Incident::handled)
    }
}

pub struct Workload {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A small xorshift generator for the request mix.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

impl Workload {
    /// Connects both versions' workers (idle until `run_version`) and a lock-wait sampler.
    pub async fn start(url: &str, rows: i64, rate: u32, views: bool) -> Result<Workload, Error> {
        let shared = Arc::new(Shared {
            views,
            ..Shared::default()
        });
        let mut conns = Vec::new();
        for (v, version) in VERSIONS.iter().enumerate() {
            for w in 0..WORKERS {
                let mut c = PgConnection::connect(url).await.map_err(|e| {
                    Error::Database(format!("connecting the demo's app versions: {e}"))
                })?;
                app_session(&mut c, Some(&format!("migrate-demo-{version}-{w}")), None)
                    .await
                    .map_err(|e| Error::Database(format!("naming the demo's sessions: {e}")))?;
                conns.push((v, w, c));
            }
        }
        let sampler = PgConnection::connect(url)
            .await
            .map_err(|e| Error::Database(format!("connecting the lock-wait sampler: {e}")))?;
        let s = shared.clone();
        let interval = Duration::from_secs_f64(WORKERS as f64 / f64::from(rate.max(1)));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the demo's load");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (v, w, c) in conns {
                    tasks.push(tokio::spawn(worker(s.clone(), c, v, w, rows, interval)));
                }
                let sample = sample_locks(s.clone(), sampler);
                let all = async {
                    for t in tasks {
                        let _ = t.await;
                    }
                };
                tokio::join!(all, sample);
            });
        });
        Ok(Workload {
            shared,
            thread: Some(thread),
        })
    }

    pub fn set_phase(&self, phase: Phase) {
        self.shared.phase.store(phase as usize, Ordering::SeqCst);
    }

    /// The `search_path` a version's connections use from their first request on.
    pub fn set_search_path(&self, v: Version, path: String) {
        self.shared.search_path.lock().unwrap()[v as usize] = Some(path);
    }

    /// Makes this share (percent, 0 to end it) of every request fail in the app.
    pub fn set_incident(&self, share: usize) {
        self.shared.incident_share.store(share, Ordering::SeqCst);
    }

    /// The requests the incident failed so far.
    pub fn incident_failed(&self) -> usize {
        self.shared.incident_failed.load(Ordering::SeqCst)
    }

    pub fn run_version(&self, v: Version) {
        self.shared.running[v as usize].store(true, Ordering::SeqCst);
    }

    /// Stops a version and waits until its requests in flight are done.
    pub async fn stop_version(&self, v: Version) {
        self.shared.running[v as usize].store(false, Ordering::SeqCst);
        while self.shared.stopped[v as usize].load(Ordering::SeqCst) < WORKERS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops everything; the report's request rows, and what the workers wrote (users by id,
    /// and how many they added).
    pub async fn stop(mut self) -> (DemoReport, HashMap<i64, (String, i64)>, usize) {
        self.shared.running[0].store(false, Ordering::SeqCst);
        self.shared.running[1].store(false, Ordering::SeqCst);
        self.shared.stop_all.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let cells = self.shared.cells.lock().unwrap();
        let waits = *self.shared.lock_wait_ms.lock().unwrap();
        let behind = self.shared.lock_wait_behind.lock().unwrap().clone();
        let mut report = DemoReport::default();
        for (p, phase) in PHASES.iter().enumerate() {
            for (v, version) in VERSIONS.iter().enumerate() {
                let Some(cell) = cells.get(&(v, p)) else {
                    continue;
                };
                report.failed_requests += cell.failed;
                report.phases.push(PhaseRow {
                    phase,
                    version,
                    requests: cell.requests(),
                    failed: cell.failed,
                    p50_ms: cell.percentile(0.5),
                    p99_ms: cell.percentile(0.99),
                    max_ms: cell.max(),
                    longest_lock_wait_ms: waits[p],
                });
            }
        }
        let samples = self.shared.wait_samples.lock().unwrap().clone();
        for (p, phase) in PHASES.iter().enumerate() {
            let total: u64 = samples[p].values().sum();
            if total > 0 {
                let mut events: Vec<(String, f64)> = samples[p]
                    .iter()
                    .map(|(e, n)| (e.clone(), *n as f64 / total as f64))
                    .collect();
                events.sort_by(|a, b| b.1.total_cmp(&a.1));
                report.waits.push(PhaseWaits {
                    phase,
                    samples: total,
                    events,
                });
            }
        }
        for (p, phase) in PHASES.iter().enumerate() {
            if waits[p] > LOCK_WAIT_BOUND_MS {
                report.long_lock_waits.push(LockWait {
                    phase,
                    ms: waits[p],
                    behind: behind[p].clone(),
                });
            }
        }
        report.errors = self.shared.errors.lock().unwrap().clone();
        let expected = self.shared.expected.lock().unwrap().clone();
        let inserted = self.shared.inserted_users.load(Ordering::SeqCst);
        (report, expected, inserted)
    }
}

async fn worker(
    s: Arc<Shared>,
    mut c: PgConnection,
    v: usize,
    w: usize,
    rows: i64,
    interval: Duration,
) {
    let slot = (v * WORKERS + w) as i64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((slot as u64 + 1) * 0x85EB_CA6B));
    let mut due: Option<Instant> = None;
    let mut n: u64 = 0;
    loop {
        if s.stop_all.load(Ordering::SeqCst) {
            break;
        }
        if !s.running[v].load(Ordering::SeqCst) {
            if due.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        if due.is_none() {
            // The version starts: it connects to its own version schema, as an app would.
            let path = s.search_path.lock().unwrap()[v].clone();
            if let Some(path) = path {
                let set = app_session(&mut c, None, Some(&path)).await;
                if let Err(e) = set {
                    s.errors.lock().unwrap().push(format!(
                        "{} version, setting its search_path: {e}",
                        VERSIONS[v]
                    ));
                }
            }
        }
        let at = due.map_or_else(Instant::now, |d| d + interval);
        due = Some(at);
        tokio::time::sleep_until(at.into()).await;
        if !s.running[v].load(Ordering::SeqCst) {
            break;
        }
        let phase = s.phase.load(Ordering::SeqCst);
        n += 1;
        let share = s.incident_share.load(Ordering::SeqCst);
        if share > 0 && rng.below(100) < share as u64 {
            // The bad release fails this request: an error inside its transaction.
            let _ = sqlx::raw_sql("BEGIN; SELECT 1 / 0").execute(&mut c).await;
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
            s.incident_failed.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let result = request(&mut c, &s, v, slot, rows, n, &mut rng).await;
        let ms = at.elapsed().as_secs_f64() * 1000.0;
        let mut cells = s.cells.lock().unwrap();
        let cell = cells.entry((v, phase)).or_default();
        match result {
            Ok(()) => cell.ok(ms),
            Err(e) => {
                cell.fail();
                let mut errors = s.errors.lock().unwrap();
                if errors.len() < 10 {
                    errors.push(format!("{} version, {}: {e}", VERSIONS[v], PHASES[phase]));
                }
            }
        }
    }
    s.stopped[v].fetch_add(1, Ordering::SeqCst);
    let _ = c.close().await;
}

/// id, name, email, age.
type UserRow = (i64, Option<String>, Option<String>, Option<i64>);

/// One request of the version's mix: reads, updates of its own users, new users, new orders.
async fn request(
    c: &mut PgConnection,
    s: &Shared,
    v: usize,
    slot: i64,
    rows: i64,
    n: u64,
    rng: &mut Rng,
) -> Result<(), sqlx::Error> {
    let old = v == 0;
    let any_user = 1 + rng.below(rows as u64) as i64;
    if s.views {
        return request_through_views(c, s, old, slot, rows, n, rng, any_user).await;
    }
    match rng.below(100) {
        0..=49 => {
            let sql = if old {
                "SELECT id, name, email, age::bigint FROM users WHERE id = $1"
            } else {
                "SELECT id, full_name, email, age::bigint FROM users WHERE id = $1"
            };
            let _: Option<UserRow> = sqlx::query_as(sql).bind(any_user).fetch_optional(c).await?;
        }
        50..=74 => {
            // Only ids of this worker's residue: one writer per row.
            let id = 4 * rng.below((rows / 4).max(1) as u64) as i64 + slot + 1;
            if id > rows {
                return Ok(());
            }
            let name = format!("{} {slot} {n}", VERSIONS[v]);
            let age = (n % 1000) as i64;
            let sql = if old {
                "UPDATE users SET name = $2, age = $3::int WHERE id = $1"
            } else {
                "UPDATE users SET full_name = $2, age = $3::bigint WHERE id = $1"
            };
            let done = sqlx::query(sql)
                .bind(id)
                .bind(&name)
                .bind(age)
                .execute(c)
                .await?;
            if done.rows_affected() == 1 {
                s.expected.lock().unwrap().insert(id, (name, age));
            }
        }
        75..=89 => {
            let name = format!("{} {slot} {n} new", VERSIONS[v]);
            let email = format!("{}-{slot}-{n}@demo.example", VERSIONS[v]);
            let age = (n % 90) as i64;
            let sql = if old {
                "INSERT INTO users (name, email, age) VALUES ($1, $2, $3::int) RETURNING id"
            } else {
                "INSERT INTO users (full_name, email, age) VALUES ($1, $2, $3::bigint) RETURNING id"
            };
            let id: i64 = sqlx::query_scalar(sql)
                .bind(&name)
                .bind(&email)
                .bind(age)
                .fetch_one(c)
                .await?;
            s.expected.lock().unwrap().insert(id, (name, age));
            s.inserted_users.fetch_add(1, Ordering::SeqCst);
        }
        _ => new_order(c, old, any_user, n).await?,
    }
    Ok(())
}

/// A new order; each version inserts only the columns it knows (the old one has no currency).
async fn new_order(c: &mut PgConnection, old: bool, user: i64, n: u64) -> Result<(), sqlx::Error> {
    let sql = if old {
        "INSERT INTO orders (user_id, total) VALUES ($1, $2::int)"
    } else {
        "INSERT INTO orders (user_id, total, currency) VALUES ($1, $2::int, 'EUR')"
    };
    sqlx::query(sql)
        .bind(user)
        .bind((n % 500) as i32 + 1)
        .execute(c)
        .await?;
    Ok(())
}

/// The same mix through the version's views: `SELECT *`, each version's own column names and
/// types (the old version's `age` is integer, the new one's bigint), prepared as sqlx does.
#[allow(clippy::too_many_arguments)]
async fn request_through_views(
    c: &mut PgConnection,
    s: &Shared,
    old: bool,
    slot: i64,
    rows: i64,
    n: u64,
    rng: &mut Rng,
    any_user: i64,
) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let v = usize::from(!old);
    let name_col = if old { "name" } else { "full_name" };
    match rng.below(100) {
        0..=49 => {
            let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                .bind(any_user)
                .fetch_optional(c)
                .await?;
            if let Some(row) = row {
                // Decoding by each version's names and types proves the shape it reads.
                let _: Option<String> = row.try_get(name_col)?;
                if old {
                    let _: Option<i32> = row.try_get("age")?;
                } else {
                    let _: Option<i64> = row.try_get("age")?;
                }
            }
        }
        50..=74 => {
            let id = 4 * rng.below((rows / 4).max(1) as u64) as i64 + slot + 1;
            if id > rows {
                return Ok(());
            }
            let name = format!("{} {slot} {n}", VERSIONS[v]);
            let age = (n % 1000) as i64;
            let done = if old {
                sqlx::query("UPDATE users SET name = $2, age = $3 WHERE id = $1")
                    .bind(id)
                    .bind(&name)
                    .bind(age as i32)
                    .execute(c)
                    .await?
            } else {
                sqlx::query("UPDATE users SET full_name = $2, age = $3 WHERE id = $1")
                    .bind(id)
                    .bind(&name)
                    .bind(age)
                    .execute(c)
                    .await?
            };
            if done.rows_affected() == 1 {
                s.expected.lock().unwrap().insert(id, (name, age));
            }
        }
        75..=89 => {
            let name = format!("{} {slot} {n} new", VERSIONS[v]);
            let email = format!("{}-{slot}-{n}@demo.example", VERSIONS[v]);
            let age = (n % 90) as i64;
            // RETURNING * through the view: the version's whole row, in its shape.
            let row = if old {
                sqlx::query("INSERT INTO users (name, email, age) VALUES ($1, $2, $3) RETURNING *")
                    .bind(&name)
                    .bind(&email)
                    .bind(age as i32)
                    .fetch_one(c)
                    .await?
            } else {
                sqlx::query(
                    "INSERT INTO users (full_name, email, age) VALUES ($1, $2, $3) RETURNING *",
                )
                .bind(&name)
                .bind(&email)
                .bind(age)
                .fetch_one(c)
                .await?
            };
            let id: i64 = row.try_get("id")?;
            s.expected.lock().unwrap().insert(id, (name, age));
            s.inserted_users.fetch_add(1, Ordering::SeqCst);
        }
        _ => new_order(c, old, any_user, n).await?,
    }
    Ok(())
}

/// Samples, every 10 ms, how long the app's requests have been waiting for a lock, and what
/// the longest-waiting one waits behind.
async fn sample_locks(s: Arc<Shared>, mut c: PgConnection) {
    while !s.stop_all.load(Ordering::SeqCst) {
        let wait: Result<Option<(f64, String)>, _> = sqlx::query_as(
            "SELECT (extract(epoch FROM clock_timestamp() - a.query_start) * 1000)::float8,
                    coalesce((SELECT left(regexp_replace(b.query, '\\s+', ' ', 'g'), 120)
                              FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]), '?')
             FROM pg_stat_activity a
             WHERE a.wait_event_type = 'Lock' AND a.application_name LIKE 'migrate-demo-%'
             ORDER BY 1 DESC LIMIT 1",
        )
        .fetch_optional(&mut c)
        .await;
        let seen: Result<Vec<(String, i64)>, _> = sqlx::query_as(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running'), count(*)
             FROM pg_stat_activity
             WHERE application_name LIKE 'migrate-demo-%' AND state = 'active'
             GROUP BY 1",
        )
        .fetch_all(&mut c)
        .await;
        if let Ok(seen) = seen {
            let p = s.phase.load(Ordering::SeqCst);
            let mut samples = s.wait_samples.lock().unwrap();
            for (event, n) in seen {
                *samples[p].entry(event).or_default() += n as u64;
            }
        }
        if let Ok(Some((ms, behind))) = wait {
            let p = s.phase.load(Ordering::SeqCst);
            let mut waits = s.lock_wait_ms.lock().unwrap();
            if ms > waits[p] {
                waits[p] = ms;
                s.lock_wait_behind.lock().unwrap()[p] = behind;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = c.close().await;
}

/// Every row after the run: users the workers wrote hold their last write; every other
/// loaded user holds what was loaded (in the new shape); nothing is NULL that the migrations
/// made NOT NULL; every order has a user and a currency.
pub async fn check(
    conn: &mut PgConnection,
    rows: i64,
    workload_expected: HashMap<i64, (String, i64)>,
    inserted: usize,
    report: &mut DemoReport,
) -> Result<(), Error> {
    let db = |e: sqlx::Error| Error::Database(format!("checking the rows: {e}"));
    let ids: Vec<i64> = workload_expected.keys().copied().collect();
    let actual: Vec<(i64, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT id, full_name, age FROM users WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    let actual: HashMap<i64, (Option<String>, Option<i64>)> =
        actual.into_iter().map(|(id, n, a)| (id, (n, a))).collect();
    let mut wrong = 0i64;
    for (id, (name, age)) in &workload_expected {
        match actual.get(id) {
            Some((Some(n), Some(a))) if n == name && a == age => {}
            other => {
                wrong += 1;
                if report.problems.len() < 10 {
                    report.problems.push(format!(
                        "user {id}: expected ({name:?}, {age}), found {other:?}"
                    ));
                }
            }
        }
    }
    let checks: [(&str, String); 5] = [
        (
            "loaded users changed by no one differ from what was loaded",
            format!(
                "SELECT count(*) FROM users WHERE id <= {rows} AND NOT (id = ANY($1)) AND (
                   full_name IS DISTINCT FROM 'user ' || id OR age IS DISTINCT FROM (id % 100)::bigint
                   OR email IS DISTINCT FROM CASE WHEN id = 1 THEN 'unknown@example.com' ELSE 'u' || id || '@example.com' END)"
            ),
        ),
        (
            "users with a NULL full_name, email or public_id",
            "SELECT count(*) FROM users WHERE full_name IS NULL OR email IS NULL OR public_id IS NULL OR $1::bigint[] IS NULL".into(),
        ),
        (
            "orders without a user or a currency",
            "SELECT count(*) FROM orders o WHERE o.currency IS NULL OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id) OR $1::bigint[] IS NULL".into(),
        ),
        (
            "users in all, against those loaded and inserted",
            format!(
                "SELECT abs(count(*) - {}) FROM users WHERE $1::bigint[] IS NOT NULL",
                rows + inserted as i64
            ),
        ),
        (
            "age not bigint, or the old columns still there",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'
               AND ((column_name = 'age' AND data_type <> 'bigint') OR column_name IN ('name', 'nickname'))
               AND $1::bigint[] IS NOT NULL".into(),
        ),
    ];
    for (what, sql) in checks {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&ids)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        if n != 0 {
            wrong += n;
            report.problems.push(format!("{what}: {n}"));
        }
    }
    let checked: i64 =
        sqlx::query_scalar("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders)")
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
    report.rows_checked = checked;
    report.rows_wrong = wrong;
    Ok(())
}
