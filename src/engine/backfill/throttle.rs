//! Throttles: other sessions' commit rate, and how far replicas are behind.

use crate::error::Error;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// Whether other sessions are using the database: their commits per second, from
/// `pg_stat_database`, sampled every two seconds, less the transactions we made ourselves —
/// all of the backfill's workers, whose count they share.
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

    /// `own` counts every transaction the backfill's workers made; the query here is one.
    pub(super) async fn new(conn: &mut PgConnection, own: &std::cell::Cell<i64>) -> Busy {
        let commits = Self::commits(conn).await;
        own.set(own.get() + 1);
        Busy {
            at: Instant::now(),
            commits,
            own_at: own.get() - 1,
            tps: 0.0,
            busy: false,
        }
    }

    pub(super) fn due(&self) -> bool {
        self.at.elapsed() >= BUSY_SAMPLE
    }

    pub(super) async fn sample(
        &mut self,
        conn: &mut PgConnection,
        threshold: u32,
        own: &std::cell::Cell<i64>,
    ) {
        let now = Self::commits(conn).await;
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
