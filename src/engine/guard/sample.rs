//! The signals, sampled on the guard's own connection: one query for what `pg_stat_activity`,
//! `pg_stat_database` and `pg_stat_replication` tell, one for requested checkpoints (their
//! view moved in PostgreSQL 17), one for `pg_stat_statements` where it is installed and
//! loaded, and the operator's health URL over plain HTTP.

use crate::config::{GuardSettings, Signal};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Cumulative counters at one moment; rates are the difference of two.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: Instant,
    rollbacks: f64,
    own_rollbacks: i64,
    deadlocks: f64,
    wal_bytes: Option<f64>,
    checkpoints: Option<f64>,
    /// Total time (ms) and calls of the busiest statements.
    statements: Option<(f64, f64)>,
}

/// Sessions waiting behind our statements, as last sampled: shown when the guard stops.
#[derive(Debug, Clone, Default)]
pub struct Waiters {
    /// `pid (application): query` of the longest waiters.
    pub who: Vec<String>,
}

pub struct Sampler {
    /// The one query of pg_stat_activity, pg_stat_database and pg_stat_replication, with the
    /// start of a wait as this server version knows it.
    activity: String,
    last: Option<Counters>,
    /// Requested checkpoints counted over the last minute: one in a second is no rate of 60.
    checkpoint_window: std::collections::VecDeque<(Instant, f64)>,
    /// Where `pg_stat_statements` lives, and the statements watched (the busiest at the start).
    statements: Option<(String, Vec<i64>)>,
    /// The requested checkpoints so far, and per minute since the statistics' reset.
    checkpoints_sql: (&'static str, &'static str),
    health: Option<Health>,
    pub waiters: Waiters,
}

/// What sampling saw once.
pub struct Sampled {
    pub values: BTreeMap<Signal, f64>,
    /// The queries (each its own transaction) it took.
    pub queries: i64,
}

const ACTIVITY: &str = "
SELECT d.xact_rollback::float8, d.deadlocks::float8,
       extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8,
       current_setting('max_connections')::float8,
       (SELECT count(*) FROM pg_stat_activity
         WHERE state LIKE 'idle in transaction%' AND NOT pid = ANY ($1))::float8,
       w.n::float8, coalesce(w.oldest, 0)::float8, coalesce(w.who, '{}'),
       (SELECT extract(epoch FROM max(coalesce(replay_lag, flush_lag, write_lag)))
          FROM pg_stat_replication)::float8,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 END
FROM pg_stat_database d,
LATERAL (
    SELECT count(*) AS n,
           extract(epoch FROM max(now() - WAIT_START)) AS oldest,
           (array_agg(format('pid %s (%s): %s', a.pid, coalesce(nullif(a.application_name, ''), '?'),
                             left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80))
                      ORDER BY a.query_start))[1:3] AS who
    FROM pg_stat_activity a
    WHERE a.wait_event_type = 'Lock' AND NOT a.pid = ANY ($1)
      AND pg_blocking_pids(a.pid) && $1
) w
WHERE d.datname = current_database()";

impl Sampler {
    /// Finds what this server can tell (the checkpoint view of its version, whether
    /// `pg_stat_statements` answers) and the statements to watch.
    pub async fn new(conn: &mut PgConnection, settings: &GuardSettings) -> Sampler {
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(150000);
        let checkpoints_sql = if version >= 170000 {
            (
                "SELECT num_requested::float8 FROM pg_stat_checkpointer",
                "SELECT num_requested::float8 / greatest(extract(epoch FROM now() - stats_reset) / 60, 1)::float8 FROM pg_stat_checkpointer",
            )
        } else {
            (
                "SELECT checkpoints_req::float8 FROM pg_stat_bgwriter",
                "SELECT checkpoints_req::float8 / greatest(extract(epoch FROM now() - stats_reset) / 60, 1)::float8 FROM pg_stat_bgwriter",
            )
        };
        let schema: Option<String> = sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'",
        )
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
        let mut statements = None;
        if let Some(schema) = schema {
            let view = format!("{}.pg_stat_statements", crate::model::quote_ident(&schema));
            // The twenty statements of this database run most often: the app's hot path.
            let top = format!(
                "SELECT queryid FROM {view} WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL ORDER BY calls DESC LIMIT 20"
            );
            // Not loaded (shared_preload_libraries) or not readable: no latency signal.
            if let Ok(ids) = sqlx::query_scalar::<_, i64>(AssertSqlSafe(top))
                .fetch_all(&mut *conn)
                .await
            {
                if !ids.is_empty() {
                    statements = Some((view, ids));
                }
            }
        }
        // From 14, when each wait began (`pg_locks.waitstart`); before, the waiting statement's
        // start, which is the same for a statement that waited from its first moment.
        let wait_start = if version >= 140000 {
            "coalesce((SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), a.query_start)"
        } else {
            "a.query_start"
        };
        Sampler {
            activity: ACTIVITY.replace("WAIT_START", wait_start),
            last: None,
            checkpoint_window: std::collections::VecDeque::new(),
            statements,
            checkpoints_sql,
            health: settings.health_url.as_deref().map(|u| Health {
                url: u.to_string(),
                timeout: settings.health_timeout,
            }),
            waiters: Waiters::default(),
        }
    }

    pub fn has_latency(&self) -> bool {
        self.statements.is_some()
    }

    /// The baselines, from what the server has counted since its statistics were last reset
    /// (no waiting before the run): rollbacks, deadlocks and requested checkpoints per their
    /// unit over that time, and the busiest statements' mean time over theirs.
    pub async fn baselines(&mut self, conn: &mut PgConnection) -> BTreeMap<Signal, f64> {
        let mut b = BTreeMap::new();
        let row = sqlx::query(
            "SELECT xact_rollback::float8, deadlocks::float8,
                    greatest(extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time())), 1)::float8
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await;
        if let Ok(r) = row {
            let (rb, dl, age): (f64, f64, f64) = (r.get(0), r.get(1), r.get(2));
            b.insert(Signal::Rollbacks, rb / age);
            b.insert(Signal::Deadlocks, dl / age);
        }
        if let Ok(Some(v)) = sqlx::query_scalar::<_, Option<f64>>(self.checkpoints_sql.1)
            .fetch_one(&mut *conn)
            .await
        {
            b.insert(Signal::Checkpoints, v);
        }
        if let Some((time, calls)) = self.statement_totals(conn).await {
            if calls > 0.0 {
                b.insert(Signal::Latency, time / calls);
            }
        }
        b
    }

    async fn statement_totals(&self, conn: &mut PgConnection) -> Option<(f64, f64)> {
        let (view, ids) = self.statements.as_ref()?;
        let q = format!(
            "SELECT sum(total_exec_time)::float8, sum(calls)::float8 FROM {view} WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid = ANY ($1)"
        );
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(ids)
            .fetch_one(&mut *conn)
            .await
            .ok()?;
        Some((row.get::<Option<f64>, _>(0)?, row.get::<Option<f64>, _>(1)?))
    }

    /// One sample of every signal it can read; `ours`: the backends running our statements,
    /// `own_rollbacks`: the transactions of ours that rolled back so far.
    pub async fn sample(
        &mut self,
        conn: &mut PgConnection,
        ours: &[i32],
        own_rollbacks: i64,
    ) -> Result<Sampled, sqlx::Error> {
        let mut values = BTreeMap::new();
        let r = sqlx::query(AssertSqlSafe(self.activity.clone()))
            .bind(ours)
            .fetch_one(&mut *conn)
            .await?;
        let now = Instant::now();
        let (conns, max): (f64, f64) = (r.get(3), r.get(4));
        values.insert(Signal::Connections, conns / max.max(1.0));
        values.insert(Signal::IdleInTransaction, r.get(5));
        let (n, oldest, who): (f64, f64, Vec<String>) = (r.get(6), r.get(7), r.get(8));
        values.insert(Signal::LockWaiters, n);
        values.insert(Signal::LockWait, oldest);
        self.waiters = Waiters { who };
        if let Some(lag) = r.get::<Option<f64>, _>(9) {
            values.insert(Signal::ReplicaLag, lag);
        }
        let checkpoints = sqlx::query_scalar::<_, f64>(self.checkpoints_sql.0)
            .fetch_one(&mut *conn)
            .await
            .ok();
        let counters = Counters {
            at: now,
            rollbacks: r.get(0),
            own_rollbacks,
            deadlocks: r.get(1),
            wal_bytes: r.get(10),
            checkpoints,
            statements: self.statement_totals(conn).await,
        };
        if let Some(last) = self.last.replace(counters) {
            let secs = counters.at.duration_since(last.at).as_secs_f64().max(0.05);
            let ours = (counters.own_rollbacks - last.own_rollbacks) as f64;
            let rollbacks = (counters.rollbacks - last.rollbacks - ours).max(0.0);
            values.insert(Signal::Rollbacks, rollbacks / secs);
            values.insert(
                Signal::Deadlocks,
                (counters.deadlocks - last.deadlocks).max(0.0) / secs,
            );
            if let (Some(a), Some(b)) = (last.wal_bytes, counters.wal_bytes) {
                values.insert(Signal::WalRate, (b - a).max(0.0) / secs / 1e6);
            }
            if let Some(c) = counters.checkpoints {
                self.checkpoint_window.push_back((now, c));
                while self
                    .checkpoint_window
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
                {
                    self.checkpoint_window.pop_front();
                }
                // Per minute over the window, once it spans half a minute at least.
                if let Some((t0, c0)) = self.checkpoint_window.front() {
                    let span = now.duration_since(*t0).as_secs_f64();
                    if span >= 30.0 {
                        values.insert(Signal::Checkpoints, (c - c0).max(0.0) / span * 60.0);
                    }
                }
            }
            if let (Some((t0, c0)), Some((t1, c1))) = (last.statements, counters.statements) {
                if c1 > c0 {
                    values.insert(Signal::Latency, (t1 - t0) / (c1 - c0));
                }
            }
        }
        if let Some(h) = &self.health {
            values.insert(Signal::Health, if h.check().await { 1.0 } else { 0.0 });
        }
        let queries = 2 + i64::from(self.statements.is_some());
        Ok(Sampled { values, queries })
    }
}

/// The operator's health check: a GET over plain HTTP/1.1; healthy is a 2xx within the
/// timeout.
struct Health {
    url: String,
    timeout: Duration,
}

impl Health {
    async fn check(&self) -> bool {
        tokio::time::timeout(self.timeout, get_status(&self.url))
            .await
            .ok()
            .flatten()
            .is_some_and(|s| (200..300).contains(&s))
    }
}

/// The status code a GET of `url` (`http://host[:port][/path]`) answers.
async fn get_status(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: migrate-guard\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 64];
    let mut n = 0;
    // The status line is all we need: "HTTP/1.1 200 OK".
    while n < head.len() {
        let got = stream.read(&mut head[n..]).await.ok()?;
        if got == 0 {
            break;
        }
        n += got;
        if head[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let line = std::str::from_utf8(&head[..n]).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}
