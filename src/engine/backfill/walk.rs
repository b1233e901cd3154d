//! The loop of one worker: batch after batch over its key range, each its own transaction
//! with its cursor, sized, throttled and shown.

use super::batches::{span_end, Batches};
use super::progress::LOG_EVERY;
use super::sizing::Sizer;
use super::throttle::{replica_lag, Busy};
use super::workers::{pace, Finished, Range, Save, Shared};
use super::BackfillReport;
use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata, RangeCursor};
use crate::error::Error;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::time::{Duration, Instant};

/// Walks one key range in batches on `conn` until its end. Two statements per batch, both
/// index range scans over the key: find the batch's end, then update the rows up to it.
/// `rank` is the worker's place among the backfill's workers (0 for the only one).
pub(super) async fn walk(
    conn: &mut PgConnection,
    meta: &Metadata,
    exec: &ExecSettings,
    q: &Batches<'_>,
    range: &mut Range,
    (save, rank): (Save, usize),
    shared: &Shared,
) -> Result<BackfillReport, Error> {
    // However it ends, its turn passes on to a parked worker.
    let _done = Finished(shared, rank);
    let settings = &exec.backfill;
    let mut sizer = Sizer::new(settings, range.size);
    let mut report = BackfillReport {
        smallest: i64::MAX,
        ..Default::default()
    };
    // While other sessions use the database, pages this session writes go to disk as it goes
    // (see `BackfillSettings::flush_after`); alone, the kernel writes them back at its own
    // pace, which measured some 10% faster. It starts on when another session was active
    // as the backfill started, and each sample of the others' commits turns it on or off. A
    // server that refuses the setting only loses that.
    // What the database was (busy or quiet) when the setting last followed it.
    let mut flush_for = shared.busy();
    if let Some(f) = settings.flush_after.as_ref().filter(|_| flush_for) {
        session_setting(conn, "backend_flush_after", f).await;
    }
    // Compressed full-page images (see `BackfillSettings::wal_compression`) when the server
    // does not compress them already, the role may set it and the server knows the method.
    let compressing = match &settings.wal_compression {
        Some(m) => {
            let now: Option<String> =
                sqlx::query_scalar("SELECT current_setting('wal_compression')")
                    .fetch_one(&mut *conn)
                    .await
                    .ok();
            now.as_deref() == Some("off") && session_setting(conn, "wal_compression", m).await
        }
        None => false,
    };
    let mut timeouts = 0u32;
    let mut lag_checked: Option<Instant> = None;
    loop {
        if let Some(h) = &exec.rollout {
            h.check(|| format!("the next batch of backfilling {}", q.table))?;
        }
        // Replicas first: a batch adds WAL they must replay.
        if let Some(bound) = settings.max_replica_lag {
            if lag_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                lag_checked = Some(Instant::now());
                shared.own.set(shared.own.get() + 1);
                let mut said: Option<Instant> = None;
                while let Some(lag) = replica_lag(conn).await?.filter(|l| *l > bound) {
                    if said.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        said = Some(Instant::now());
                        shared.progress.borrow_mut().say(&format!(
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
        let pausing = pace(conn, rank, shared, &mut report).await;
        let size = sizer.rows();
        let batch_started = Instant::now();
        // BEGIN and the batch's settings in one round trip.
        let mut tx = conn
            .begin_with(AssertSqlSafe(format!("BEGIN; {}", q.lock)))
            .await
            .map_err(q.db("starting a batch"))?;
        let after = range.last.is_some();
        let batch = async {
            let end = match span_end(q.span, range, size) {
                Some(end) => end,
                None => {
                    let mut e =
                        sqlx::query(AssertSqlSafe(q.end_sql(after, size))).persistent(false);
                    for v in range.last.iter().flatten().chain(range.upper.iter()) {
                        e = e.bind(v.clone());
                    }
                    e.fetch_optional(&mut *tx).await?.map(|r| r.get(0))
                }
            };
            let last_batch = end.is_none();
            let end = end.unwrap_or_else(|| range.upper.clone());
            let mut u = sqlx::query(AssertSqlSafe(q.update_sql(after))).persistent(false);
            for v in range.last.iter().flatten().chain(end.iter()) {
                u = u.bind(v.clone());
            }
            let changed = if let Some(wrong) = q.b.verify {
                let r = u.fetch_one(&mut *tx).await?;
                if r.get::<i64, _>(1) > 0 {
                    let mut w = sqlx::query_scalar(AssertSqlSafe(q.wrong_sql(after, wrong)))
                        .persistent(false);
                    for v in range.last.iter().flatten().chain(end.iter()) {
                        w = w.bind(v.clone());
                    }
                    let row: Option<Vec<String>> = w.fetch_optional(&mut *tx).await?;
                    return Ok(Err(row.unwrap_or_default()));
                }
                r.get::<i64, _>(0)
            } else {
                u.execute(&mut *tx).await?.rows_affected() as i64
            };
            let taken = if q.span.is_some() {
                // No filter: every row of the span was updated.
                changed
            } else if last_batch {
                let mut c = sqlx::query_scalar(AssertSqlSafe(q.count_sql(after))).persistent(false);
                for v in range.last.iter().flatten().chain(end.iter()) {
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

                return Err(wrong_rows(&q.table, q.b.verify.unwrap_or_default(), &row));
            }
            Ok(Ok((taken, changed, last, last_batch))) => {
                shared.walked.set(shared.walked.get() + taken);
                range.last = Some(last);
                range.size = Some(size);
                // The cursor commits with the batch: its range alone, or the whole.
                match save {
                    Save::Whole => {
                        let cursor = BackfillCursor {
                            last: range.last.clone(),
                            upper: Some(range.upper.clone()),
                            size: range.size,
                            ranges: Vec::new(),
                        };
                        let (m, o, t) = (q.b.migration, q.b.ordinal, &q.b.table.name);
                        let walked = shared.walked.get();
                        meta.save_backfill(&mut *tx, m, o, t, &cursor, walked, None, false)
                            .await?;
                    }
                    Save::Range(i) => {
                        let cursor = RangeCursor {
                            last: range.last.clone(),
                            upper: range.upper.clone(),
                            size: range.size,
                            done: last_batch,
                        };
                        meta.save_backfill_range(
                            &mut *tx,
                            q.b.migration,
                            q.b.ordinal,
                            i,
                            &cursor,
                            taken,
                        )
                        .await?;
                    }
                }
                let committing = Instant::now();
                tx.commit().await.map_err(q.db("committing a batch"))?;
                let commit = committing.elapsed();
                let took = batch_started.elapsed();
                report.rows += changed;
                report.walked += taken;
                report.batches += 1;
                report.smallest = report.smallest.min(taken.max(1));
                report.largest = report.largest.max(taken);
                timeouts = 0;
                crate::engine::run::failpoint("batch", report.batches as usize);
                // A span is a full batch though gaps in the keys left it fewer rows.
                sizer.observe(if q.span.is_some() { size } else { taken }, took);
                shared
                    .progress
                    .borrow_mut()
                    .update(shared.walked.get(), sizer.rows());
                // A commit slower than a whole batch should be (with synchronous_commit) is
                // the disk falling behind: give it that long again to catch up before adding
                // more writes.
                shared.own.set(shared.own.get() + 1);
                let watch = settings.busy_pause.is_some()
                    || settings.flush_after.is_some()
                    || shared.latency.is_some();
                // Other sessions' commits, from pg_stat_database, minus our own transactions:
                // one worker samples them for all.
                if watch && shared.samples(rank) && shared.busy.borrow().due() {
                    let was = shared.busy();
                    let now = Busy::commits(conn).await;
                    let mut b = shared.busy.borrow_mut();
                    b.sample(now, settings.busy_tps, &shared.own);
                    let (busy, tps) = (b.busy, b.tps);
                    drop(b);
                    if settings.busy_pause.is_some() && busy != was {
                        shared.progress.borrow_mut().say(&if busy {
                            format!("other sessions are busy ({tps:.0} commits/s): slowing down")
                        } else {
                            "the database is quiet again: full speed".to_string()
                        });
                    }
                }
                let busy = shared.busy();
                if let Some(f) = settings
                    .flush_after
                    .as_deref()
                    .filter(|_| busy != flush_for)
                {
                    flush_for = busy;
                    let to = if busy { f } else { "0" };
                    session_setting(conn, "backend_flush_after", to).await;
                }
                report.busy_batches += i64::from(busy);
                let mut pause = match settings.busy_pause {
                    Some(p) if busy => p.after(took),
                    _ => settings.pause.after(took),
                };
                if commit > settings.target {
                    pause += commit.min(Duration::from_secs(2));
                }
                // Commits slowed down and one worker is left: as long again as the batch.
                if pausing {
                    pause = pause.max(took);
                }
                if last_batch {
                    break;
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
                drop(tx);
                report.lock_timeouts += 1;
                // Smaller batches first; only once at the smallest do tries count down.
                if sizer.at_min() {
                    timeouts += 1;
                }
                sizer.lock_timeout();
                if timeouts > exec.retries {
                    return Err(Error::LockTimeout(format!(
                            "backfilling {}: the next {} rows stayed locked by another session through {} tries of {} ms{}; run again to resume from the saved cursor",
                            q.table,
                            sizer.rows(),
                            timeouts,
                            settings.lock_timeout.as_millis(),
                            crate::engine::exec::blockers(conn, &[q.b.table.sql()]).await
                        )));
                }
                shared.progress.borrow_mut().say(&format!(
                    "a row lock held elsewhere; retrying with {} rows",
                    sizer.rows()
                ));
                tokio::time::sleep(crate::engine::exec::backoff(exec, timeouts.max(1))).await;
            }
            Err(e) => {
                return Err(q.db("a batch failed")(e));
            }
        }
    }
    if settings.flush_after.is_some() {
        let _ = sqlx::query("RESET backend_flush_after")
            .execute(&mut *conn)
            .await;
    }
    if compressing {
        let _ = sqlx::query("RESET wal_compression")
            .execute(&mut *conn)
            .await;
    }
    Ok(report)
}

/// Sets one of the session's settings; whether the server took it (a role that may not set
/// it, or a value this server does not know, only loses the setting).
pub(super) async fn session_setting(conn: &mut PgConnection, name: &str, value: &str) -> bool {
    sqlx::query("SELECT set_config($1, $2, false)")
        .bind(name)
        .bind(value)
        .execute(&mut *conn)
        .await
        .is_ok()
}

pub(super) fn wrong_rows(table: &str, wrong: &str, key: &[String]) -> Error {
    Error::Database(format!(
        "backfilling {table}: the row with key ({}) still matches `{wrong}` as its batch wrote it (a trigger on the table changes it, or the UPDATE does not make it right); the batch was rolled back and the batches before it are kept. Fix the cause and run `migrate backfill` again to resume",
        key.join(", ")
    ))
}
