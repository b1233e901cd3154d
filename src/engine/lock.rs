//! One migrating process at a time: a session-level advisory lock per metadata schema. A second
//! runner fails at once, told who holds the lock.

use crate::error::Error;
use sqlx::{PgConnection, Row};

/// The advisory lock key of a metadata schema (FNV-1a of `migrate:<schema>`): stable across
/// releases and machines, so every runner of one database agrees on it.
pub fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "migrate:".bytes().chain(schema.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Takes the runner lock on this connection (held until it is released or the connection
/// closes), or fails naming the session that holds it. The session of a run that has just
/// ended (killed, or its release still in flight) needs a moment to go away, so the lock is
/// tried for up to about 1.5 s before giving up; a live runner holds it far longer.
pub async fn acquire(conn: &mut PgConnection, schema: &str) -> Result<(), Error> {
    let key = lock_key(schema);
    let mut last_holder = None;
    for _ in 0..30 {
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::Database(format!("taking the runner lock: {e}")))?
            .get(0);
        if got {
            return Ok(());
        }
        last_holder = holder(conn, key).await?;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(Error::Locked(match last_holder {
        Some(who) => format!(
            "another migrate run holds the lock on metadata schema `{schema}`: {who}; wait for it to finish, or stop it (SELECT pg_terminate_backend(pid))"
        ),
        None => format!("the lock on metadata schema `{schema}` is held by a session that is ending; run again in a moment"),
    }))
}

/// Releases the runner lock, synchronously: the next run can take it at once.
pub async fn release(conn: &mut PgConnection, schema: &str) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key(schema))
        .execute(&mut *conn)
        .await;
}

/// The live session holding the lock, described for a person; None when none does.
async fn holder(conn: &mut PgConnection, key: i64) -> Result<Option<String>, Error> {
    // A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    let (high, low) = (
        ((key as u64) >> 32) as i64,
        ((key as u64) & 0xffff_ffff) as i64,
    );
    let holder = sqlx::query(
        "SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), coalesce(a.client_addr::text, 'local socket'),
                coalesce(a.usename::text, '?'), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid",
    )
    .bind(high)
    .bind(low)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("finding the runner lock's holder: {e}")))?;
    Ok(holder.map(|r| {
        format!(
            "pid {} ({}, user {}, from {}, connected since {})",
            r.get::<i32, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(3),
            r.get::<String, _>(2),
            r.get::<Option<String>, _>(4).unwrap_or_default()
        )
    }))
}
