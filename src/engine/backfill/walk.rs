//! The loop of one worker: batch after batch over its key range, each its own transaction
//! with its cursor, sized, throttled and shown.

use super::batches::{span_end, Batches};
use super::sizing::Sizer;
use super::workers::{pace, Finished, Range, Save, Shared};
use super::BackfillReport;
use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata, RangeCursor};
use crate::error::Error;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::time::{Duration, Instant};

/// Walks one key range in batches on `conn` until its end. A batch is one statement, its own
/// transaction and one round trip: the UPDATE over a range of the key (an index range scan),
/// the check of every row it wrote, and the save of the cursor; with counted batches (not
/// spans), a query for the batch's end comes before it. `rank` is the worker's place among
/// the backfill's workers (0 for the only one). The session settings the walk changes are
/// put back when it ends, however it ends.
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
    let mut set = Changed::default();
    let out = async {
        let settings = &exec.backfill;
        // For the session, not per batch: a batch has no transaction to SET LOCAL in. The
        // statements stay prepared (one round trip each), and each execution is planned with
        // its own bounds, as an unprepared one would be.
        let lock_timeout = format!("{}ms", settings.lock_timeout.as_millis().max(1));
        let mut wanted = vec![
            ("lock_timeout", lock_timeout.as_str()),
            ("plan_cache_mode", "force_custom_plan"),
        ];
        // Whether the commit waits for the batch's WAL (see
        // `BackfillSettings::synchronous_commit`; left as the server has it when on).
        if !settings.synchronous_commit {
            wanted.push(("synchronous_commit", "off"));
        }
        for (name, value) in wanted {
            set.set(conn, name, value)
                .await
                .map_err(q.db("setting the batches' session"))?;
        }
        walk_batches(conn, meta, exec, q, range, (save, rank), shared, &mut set).await
    }
    .await;
    set.restore(conn).await;
    out
}

/// Session settings a walk changed, each with the value it had before.
#[derive(Default)]
struct Changed(Vec<(&'static str, String)>);

impl Changed {
    /// Sets `name` for the session, keeping the value it had the first time.
    async fn set(
        &mut self,
        conn: &mut PgConnection,
        name: &'static str,
        value: &str,
    ) -> Result<(), sqlx::Error> {
        if !self.0.iter().any(|(n, _)| *n == name) {
            let before: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
            self.0.push((name, before));
        }
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(name)
            .bind(value)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Puts every changed setting back, the last changed first; a connection that broke
    /// loses nothing by it.
    async fn restore(self, conn: &mut PgConnection) {
        for (name, before) in self.0.into_iter().rev() {
            let _ = sqlx::query("SELECT set_config($1, $2, false)")
                .bind(name)
                .bind(before)
                .execute(&mut *conn)
                .await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn walk_batches(
    conn: &mut PgConnection,
    meta: &Metadata,
    exec: &ExecSettings,
    q: &Batches<'_>,
    range: &mut Range,
    (save, rank): (Save, usize),
    shared: &Shared,
    set: &mut Changed,
) -> Result<BackfillReport, Error> {
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
        let _ = set.set(conn, "backend_flush_after", f).await;
    }
    // Compressed full-page images (see `BackfillSettings::wal_compression`) when the server
    // does not compress them already, the role may set it and the server knows the method.
    if let Some(m) = &settings.wal_compression {
        let now: Option<String> = sqlx::query_scalar("SELECT current_setting('wal_compression')")
            .fetch_one(&mut *conn)
            .await
            .ok();
        if now.as_deref() == Some("off") {
            let _ = set.set(conn, "wal_compression", m).await;
        }
    }
    // The batch's statement, after the cursor and after none.
    let batch_sql = [q.batch_sql(false, meta), q.batch_sql(true, meta)];
    let mut timeouts = 0u32;
    loop {
        if let Some(h) = &exec.rollout {
            h.check(|| format!("the next batch of backfilling {}", q.table))?;
        }
        let mut throttled = false;
        if let Some(g) = &exec.guard {
            report.guard_wait += g
                .gate(|| format!("the next batch of backfilling {}", q.table))
                .await?;
            throttled = g.throttled();
        }
        let pausing = pace(rank, shared).await;
        let size = sizer.rows();
        let batch_started = Instant::now();
        let after = range.last.is_some();
        let batch = async {
            let end = match span_end(q.span, range, size) {
                Some(end) => end,
                None => {
                    let mut e = sqlx::query(AssertSqlSafe(q.end_sql(after)));
                    for v in range.last.iter().flatten().chain(range.upper.iter()) {
                        e = e.bind(v.clone());
                    }
                    // A transaction of ours, as the batch is.
                    shared.own(1);
                    e.bind(size - 1)
                        .fetch_optional(&mut *conn)
                        .await?
                        .map(|r| r.get(0))
                }
            };
            let last_batch = end.is_none();
            let end = end.unwrap_or_else(|| range.upper.clone());
            // The rows walked: with spans, every row the batch changes (there is no filter);
            // else a full batch, or what the last one has left.
            let taken: Option<i64> = if q.span.is_some() {
                None
            } else if last_batch {
                let mut c = sqlx::query_scalar(AssertSqlSafe(q.count_sql(after)));
                for v in range.last.iter().flatten().chain(end.iter()) {
                    c = c.bind(v.clone());
                }
                shared.own(1);
                Some(c.fetch_one(&mut *conn).await?)
            } else {
                Some(size)
            };
            // The cursor commits with the batch: its range alone, or the whole.
            let (slot, before, cursor) = match save {
                Save::Whole => (
                    None,
                    Some(shared.walked.get()),
                    serde_json::to_string(&BackfillCursor {
                        last: Some(end.clone()),
                        upper: Some(range.upper.clone()),
                        size: Some(size),
                        ranges: Vec::new(),
                    }),
                ),
                Save::Range(i) => (
                    Some(i as i32),
                    None,
                    serde_json::to_string(&RangeCursor {
                        last: Some(end.clone()),
                        upper: range.upper.clone(),
                        size: Some(size),
                        done: last_batch,
                    }),
                ),
            };
            let cursor = cursor.map_err(|e| sqlx::Error::Encode(e.into()))?;
            let mut s = sqlx::query(AssertSqlSafe(batch_sql[usize::from(after)].as_str()));
            for v in range.last.iter().flatten().chain(end.iter()) {
                s = s.bind(v.clone());
            }
            let s = s
                .bind(q.b.migration)
                .bind(q.b.ordinal)
                .bind(slot)
                .bind(cursor)
                .bind(before)
                .bind(taken);
            // With `synchronous_commit` the commit is timed apart: waiting for the WAL
            // flush longer than a batch should take is the disk falling behind.
            let mut commit = Duration::ZERO;
            let row = if settings.synchronous_commit {
                let mut tx = conn.begin().await?;
                let row = s.fetch_one(&mut *tx).await;
                if row.is_ok() {
                    let committing = Instant::now();
                    tx.commit().await?;
                    commit = committing.elapsed();
                }
                row
            } else {
                s.fetch_one(&mut *conn).await
            };
            let row = match (row, q.b.verify) {
                (Ok(row), _) => row,
                (Err(e), Some(wrong)) if meta.is_wrong_rows(&e) => {
                    return Ok(Err(wrong_row(conn, q, &range.last, &end, wrong).await?));
                }
                (Err(e), _) => return Err(e),
            };
            let changed: i64 = row.get(0);
            let saved = row.get::<i64, _>(2) > 0;
            let taken = taken.unwrap_or(changed);
            Ok::<_, sqlx::Error>(Ok((taken, changed, end, last_batch, saved, commit)))
        }
        .await;
        match batch {
            Ok(Err(row)) => {
                return Err(wrong_rows(&q.table, q.b.verify.unwrap_or_default(), &row));
            }
            Ok(Ok((_, _, _, _, false, _))) => {
                return Err(Error::Database(format!(
                    "backfilling {}: the backfill's record is gone from the metadata (was the migration aborted in another session?); its last batch is written, and no more will be. See `migrate status`",
                    q.table
                )));
            }
            Ok(Ok((taken, changed, last, last_batch, true, commit))) => {
                shared.walked.set(shared.walked.get() + taken);
                range.last = Some(last);
                range.size = Some(size);
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
                shared.own(1);
                // What changes when the guard finds the database busy or quiet: the pause,
                // and how many workers walk. One worker says it for all.
                let busy = shared.busy();
                if shared.samples(rank) && busy != shared.said_busy.get() {
                    shared.said_busy.set(busy);
                    let mut doing = Vec::new();
                    if settings.busy_pause.is_some() {
                        doing.push(if busy { "slowing down" } else { "full speed" }.to_string());
                    }
                    if shared.finished.borrow().len() as u32 > shared.busy_workers {
                        doing.push(shared.walking());
                    }
                    if !doing.is_empty() {
                        let doing = doing.join(", ");
                        let tps = shared.pace.as_ref().map_or(0.0, |p| p.tps());
                        shared.progress.borrow_mut().say(&if busy {
                            format!("other sessions are busy ({tps:.0} commits/s): {doing}")
                        } else {
                            format!("the database is quiet again: {doing}")
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
                    let _ = set.set(conn, "backend_flush_after", to).await;
                }
                report.busy_batches += i64::from(busy);
                let mut pause = match settings.busy_pause {
                    Some(p) if busy => p.after(took),
                    _ => settings.pause.after(took),
                };
                // A commit slower than a whole batch should be (with synchronous_commit) is
                // the disk falling behind: give it that long again to catch up before adding
                // more writes.
                if commit > settings.target {
                    pause += commit.min(Duration::from_secs(2));
                }
                // Commits slowed down and one worker is left: as long again as the batch.
                if pausing {
                    pause = pause.max(took);
                }
                // The guard says slow down: the batch's time again on top of any pause, so the
                // rate halves whatever the pause was.
                if throttled {
                    pause += took;
                }
                if last_batch {
                    break;
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
                report.lock_timeouts += 1;
                if let Some(g) = &exec.guard {
                    g.own_rollback();
                }
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
    Ok(report)
}

pub(super) fn wrong_rows(table: &str, wrong: &str, key: &[String]) -> Error {
    Error::Database(format!(
        "backfilling {table}: the row with key ({}) still matches `{wrong}` as its batch wrote it (a trigger on the table changes it, or the UPDATE does not make it right); the batch was rolled back and the batches before it are kept. Fix the cause and run `migrate backfill` again to resume",
        key.join(", ")
    ))
}

/// The key of a row a batch leaves wrong: the batch's UPDATE again, in a transaction that
/// reads the rows as it wrote them and is then rolled back.
async fn wrong_row(
    conn: &mut PgConnection,
    q: &Batches<'_>,
    last: &Option<Vec<String>>,
    end: &[String],
    wrong: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let after = last.is_some();
    let mut tx = conn.begin().await?;
    let mut u = sqlx::query(AssertSqlSafe(q.update_sql(after))).persistent(false);
    for v in last.iter().flatten().chain(end) {
        u = u.bind(v.clone());
    }
    u.execute(&mut *tx).await?;
    let mut w = sqlx::query_scalar(AssertSqlSafe(q.wrong_sql(after, wrong))).persistent(false);
    for v in last.iter().flatten().chain(end) {
        w = w.bind(v.clone());
    }
    let row: Option<Vec<String>> = w.fetch_optional(&mut *tx).await?;
    tx.rollback().await?;
    Ok(row.unwrap_or_default())
}
