//! Batched backfills: keyset batches over the primary key — any type (integer, bigint, uuid,
//! text, …) and composite keys — or, in a table without one, over its unique index of NOT
//! NULL columns; each batch its own short transaction under a short
//! lock_timeout, its cursor saved in the same transaction. The last key is fixed when the
//! backfill starts; rows written later are kept right by the expand triggers, so it always
//! ends. Each batch walks the key index from the cursor, so its cost stays flat from the first
//! batch to the last. A `kill -9` loses at most the batch in flight.
//!
//! The batch size moves toward a target duration ([`Sizer`]); batches pause when asked to,
//! when a commit stalls, and while a replica lags; progress is a bar on a terminal and a log
//! line every few seconds elsewhere.

mod key;
mod progress;
mod sizing;
mod throttle;

pub use sizing::Sizer;

use key::{key_list, key_params, table_estimate, walk_key};
use progress::{Progress, LOG_EVERY};
use throttle::{replica_lag, Busy};

use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata};
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::time::{Duration, Instant};

/// One backfill of a migration's plan.
pub struct Backfill<'a> {
    pub migration: &'a str,
    /// Its place among the migration's backfills.
    pub ordinal: i32,
    pub table: &'a QualifiedName,
    pub set: &'a [(String, String)],
    pub filter: Option<&'a str>,
    /// True of a row still wrong: every row a batch updates is checked as written, in the
    /// batch's own statement.
    pub verify: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Rows changed.
    pub rows: i64,
    /// Rows walked (changed or already right).
    pub walked: i64,
    pub batches: i64,
    /// Batches that met a row lock held longer than the batch lock_timeout, and were retried
    /// smaller.
    pub lock_timeouts: i64,
    pub smallest: i64,
    pub largest: i64,
    /// Time spent waiting for replicas to catch up.
    pub replica_wait: Duration,
    /// Whether every row updated was checked as written (see `verify` of the step).
    pub verified: bool,
    /// Batches run while other sessions were busy (with `busy_pause`).
    pub busy_batches: i64,
}

/// Runs or resumes a backfill.
pub async fn run(
    conn: &mut PgConnection,
    meta: &Metadata,
    b: &Backfill<'_>,
    exec: &ExecSettings,
) -> Result<BackfillReport, Error> {
    let settings = &exec.backfill;
    let keys = walk_key(conn, b.table).await?;
    let table = b.table.sql();
    let name = table.clone();
    let db = move |what: &'static str| {
        let name = name.clone();
        move |e: sqlx::Error| Error::Database(format!("backfilling {name}: {what}: {e}"))
    };
    let n = keys.len();
    let plain = key_list(&keys, "");
    let as_text: Vec<String> = keys
        .iter()
        .map(|k| format!("{}::text", quote_ident(&k.name)))
        .collect();
    let desc: Vec<String> = keys
        .iter()
        .map(|k| format!("{} DESC", quote_ident(&k.name)))
        .collect();

    let (mut cursor, mut walked, estimate) =
        match meta.backfill_cursor(conn, b.migration, b.ordinal).await? {
            Some((saved, done)) => {
                let estimate = table_estimate(conn, b.table).await?;
                (saved, done, estimate)
            }
            None => {
                // The bound: the last key that exists now.
                let r = sqlx::query(AssertSqlSafe(format!(
                    "SELECT ARRAY[{}] FROM {table} ORDER BY {} LIMIT 1",
                    as_text.join(", "),
                    desc.join(", ")
                )))
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading the last key"))?;
                let upper = r.map(|r| r.get::<Vec<String>, _>(0));
                let estimate = table_estimate(conn, b.table).await?;
                let cursor = BackfillCursor {
                    last: None,
                    upper,
                    size: None,
                };
                meta.save_backfill(
                    &mut *conn,
                    b.migration,
                    b.ordinal,
                    &b.table.name,
                    &cursor,
                    0,
                    Some(estimate),
                    false,
                )
                .await?;
                (cursor, 0, estimate)
            }
        };
    let mut sizer = Sizer::new(settings, cursor.size);
    let mut report = BackfillReport {
        smallest: i64::MAX,
        ..Default::default()
    };
    // A table empty when the backfill started has no bound: nothing to walk.
    if let Some(upper) = cursor.upper.clone() {
        // Two statements per batch, both index range scans over the key: find the key `size`
        // rows on from the cursor (the batch's end; the bound when fewer are left), then update
        // the rows between. The size is a number we chose, written into the statement, and
        // statements are not kept prepared, so every batch is planned with its real bounds.
        let sets: Vec<String> = b
            .set
            .iter()
            .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
            .collect();
        let sets = sets.join(", ");
        let filter = b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let lower = |after: bool| {
            if after {
                format!("{plain} > {} AND ", key_params(&keys, 1))
            } else {
                String::new()
            }
        };
        let at = |after: bool| if after { n + 1 } else { 1 };
        let end_sql = |after: bool, size: i64| {
            format!(
                "SELECT ARRAY[{}] FROM {table} WHERE {}{plain} <= {} ORDER BY {plain} OFFSET {} LIMIT 1",
                as_text.join(", "),
                lower(after),
                key_params(&keys, at(after)),
                size - 1
            )
        };
        // With a `verify` condition, the statement checks every row as written (after any
        // trigger) through RETURNING and gives back the rows changed and the key of the first
        // row still wrong: the check costs no second read of the rows. The rows of the range
        // it leaves alone do not match the filter, and the condition includes the filter.
        let update = |after: bool| {
            format!(
                "UPDATE {table} SET {sets} WHERE {}{plain} <= {}{filter}",
                lower(after),
                key_params(&keys, at(after))
            )
        };
        let update_sql = |after: bool| match b.verify {
            Some(wrong) => format!(
                "WITH u AS ({} RETURNING ARRAY[{}] AS k, ({wrong}) AS wrong) \
                 SELECT (SELECT count(*) FROM u), (SELECT k FROM u WHERE wrong LIMIT 1)",
                update(after),
                as_text.join(", ")
            ),
            None => update(after),
        };
        let count_sql = |after: bool| {
            format!(
                "SELECT count(*) FROM {table} WHERE {}{plain} <= {}",
                lower(after),
                key_params(&keys, at(after))
            )
        };
        // Per batch: how long to wait for a row lock, and whether the commit waits for the
        // batch's WAL (see `BackfillSettings::synchronous_commit`; left as the server has it
        // when on).
        let lock = format!(
            "SET LOCAL lock_timeout = '{}ms'{}",
            settings.lock_timeout.as_millis().max(1),
            if settings.synchronous_commit {
                ""
            } else {
                "; SET LOCAL synchronous_commit = off"
            }
        );
        // Pages this session writes go to disk as it goes (see `BackfillSettings::flush_after`);
        // a server that refuses the setting only loses that.
        if let Some(f) = &settings.flush_after {
            let _ = sqlx::query("SELECT set_config('backend_flush_after', $1, false)")
                .bind(f)
                .execute(&mut *conn)
                .await;
        }
        let mut progress = Progress::new(format!("backfill {table}"), walked, estimate);
        let mut timeouts = 0u32;
        let mut lag_checked: Option<Instant> = None;
        // Other sessions' commits, from pg_stat_database, minus our own transactions.
        let mut busy = Busy::new(conn).await;
        loop {
            // Replicas first: a batch adds WAL they must replay.
            if let Some(bound) = settings.max_replica_lag {
                if lag_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    lag_checked = Some(Instant::now());
                    busy.own += 1;
                    let mut said: Option<Instant> = None;
                    while let Some(lag) = replica_lag(conn).await?.filter(|l| *l > bound) {
                        if said.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            said = Some(Instant::now());
                            progress.say(&format!(
                                "waiting: a replica is {:.1} s behind (max_replica_lag {:.1} s)",
                                lag.as_secs_f64(),
                                bound.as_secs_f64()
                            ));
                        }
                        let wait = Instant::now();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        report.replica_wait += wait.elapsed();
                    }
                }
            }
            let size = sizer.rows();
            let batch_started = Instant::now();
            let mut tx = conn.begin().await.map_err(db("starting a batch"))?;
            sqlx::raw_sql(AssertSqlSafe(lock.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db("setting lock_timeout"))?;
            let after = cursor.last.is_some();
            let batch = async {
                let mut q = sqlx::query(AssertSqlSafe(end_sql(after, size))).persistent(false);
                for v in cursor.last.iter().flatten().chain(upper.iter()) {
                    q = q.bind(v.clone());
                }
                let end: Option<Vec<String>> = q.fetch_optional(&mut *tx).await?.map(|r| r.get(0));
                let last_batch = end.is_none();
                let end = end.unwrap_or_else(|| upper.clone());
                let mut u = sqlx::query(AssertSqlSafe(update_sql(after))).persistent(false);
                for v in cursor.last.iter().flatten().chain(end.iter()) {
                    u = u.bind(v.clone());
                }
                let changed = if b.verify.is_some() {
                    let r = u.fetch_one(&mut *tx).await?;
                    if let Some(row) = r.get::<Option<Vec<String>>, _>(1) {
                        return Ok(Err(row));
                    }
                    r.get::<i64, _>(0)
                } else {
                    u.execute(&mut *tx).await?.rows_affected() as i64
                };
                let taken = if last_batch {
                    let mut c =
                        sqlx::query_scalar(AssertSqlSafe(count_sql(after))).persistent(false);
                    for v in cursor.last.iter().flatten().chain(end.iter()) {
                        c = c.bind(v.clone());
                    }
                    c.fetch_one(&mut *tx).await?
                } else {
                    size
                };
                Ok::<_, sqlx::Error>(Ok((taken, changed, end, last_batch)))
            }
            .await;
            match batch {
                Ok(Err(row)) => {
                    drop(tx);
                    progress.finish();
                    return Err(wrong_rows(&table, b.verify.unwrap_or_default(), &row));
                }
                Ok(Ok((taken, changed, last, last_batch))) => {
                    walked += taken;
                    cursor.last = Some(last);
                    cursor.size = Some(size);
                    meta.save_backfill(
                        &mut *tx,
                        b.migration,
                        b.ordinal,
                        &b.table.name,
                        &cursor,
                        walked,
                        None,
                        false,
                    )
                    .await?;
                    let committing = Instant::now();
                    tx.commit().await.map_err(db("committing a batch"))?;
                    let commit = committing.elapsed();
                    let took = batch_started.elapsed();
                    report.rows += changed;
                    report.walked += taken;
                    report.batches += 1;
                    report.smallest = report.smallest.min(taken.max(1));
                    report.largest = report.largest.max(taken);
                    timeouts = 0;
                    crate::engine::run::failpoint("batch", report.batches as usize);
                    sizer.observe(taken, took);
                    progress.update(walked, sizer.rows());
                    // A commit slower than a whole batch should be (with synchronous_commit) is
                    // the disk falling behind: give it that long again to catch up before adding
                    // more writes.
                    busy.own += 1;
                    if settings.busy_pause.is_some() && busy.due() {
                        let was = busy.busy;
                        busy.sample(conn, settings.busy_tps).await;
                        if busy.busy != was {
                            progress.say(&if busy.busy {
                                format!(
                                    "other sessions are busy ({:.0} commits/s): slowing down",
                                    busy.tps
                                )
                            } else {
                                "the database is quiet again: full speed".to_string()
                            });
                        }
                    }
                    report.busy_batches += i64::from(busy.busy);
                    let mut pause = match settings.busy_pause {
                        Some(p) if busy.busy => p.after(took),
                        _ => settings.pause.after(took),
                    };
                    if commit > settings.target {
                        pause += commit.min(Duration::from_secs(2));
                    }
                    if last_batch {
                        break;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") =>
                {
                    drop(tx);
                    report.lock_timeouts += 1;
                    // Smaller batches first; only once at the smallest do tries count down.
                    if sizer.at_min() {
                        timeouts += 1;
                    }
                    sizer.lock_timeout();
                    if timeouts > exec.retries {
                        progress.finish();
                        return Err(Error::LockTimeout(format!(
                            "backfilling {table}: the next {} rows stayed locked by another session through {} tries of {} ms{}; run again to resume from the saved cursor",
                            sizer.rows(),
                            timeouts,
                            settings.lock_timeout.as_millis(),
                            crate::engine::exec::blockers(conn, &[b.table.sql()]).await
                        )));
                    }
                    progress.say(&format!(
                        "a row lock held elsewhere; retrying with {} rows",
                        sizer.rows()
                    ));
                    tokio::time::sleep(crate::engine::exec::backoff(exec, timeouts.max(1))).await;
                }
                Err(e) => {
                    progress.finish();
                    return Err(db("a batch failed")(e));
                }
            }
        }
        progress.finish();
        if settings.flush_after.is_some() {
            let _ = sqlx::query("RESET backend_flush_after")
                .execute(&mut *conn)
                .await;
        }
    }
    // Every row the batches updated was checked as written (rows after the bound are the
    // triggers' job).
    report.verified = b.verify.is_some();
    if report.smallest == i64::MAX {
        report.smallest = 0;
    }
    meta.save_backfill(
        &mut *conn,
        b.migration,
        b.ordinal,
        &b.table.name,
        &cursor,
        walked,
        None,
        true,
    )
    .await?;
    Ok(report)
}

fn wrong_rows(table: &str, wrong: &str, key: &[String]) -> Error {
    Error::Database(format!(
        "backfilling {table}: the row with key ({}) still matches `{wrong}` as its batch wrote it (a trigger on the table changes it, or the UPDATE does not make it right); the batch was rolled back and the batches before it are kept. Fix the cause and run `migrate backfill` again to resume",
        key.join(", ")
    ))
}
