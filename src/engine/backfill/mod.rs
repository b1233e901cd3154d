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

mod batches;
mod key;
mod progress;
mod sizing;
mod walk;
mod workers;

pub use sizing::Sizer;

use batches::{span_start, Batches};
use key::{key_list, table_estimate, walk_key};
use progress::Progress;
use walk::walk;
use workers::{in_parallel, split, Range, Save, Shared};

use crate::engine::exec::ExecSettings;
use crate::engine::guard::PaceSettings;
use crate::engine::state::{BackfillCursor, Metadata};
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::cell::{Cell, RefCell};
use std::time::Duration;

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
    /// Where the extra workers connect (`[backfill] workers`); never printed.
    pub url: Option<&'a str>,
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
    /// Time spent paused by the guard (every worker's pauses added up).
    pub guard_wait: Duration,
    /// Whether every row updated was checked as written (see `verify` of the step).
    pub verified: bool,
    /// Batches run while other sessions were busy (with `busy_pause`).
    pub busy_batches: i64,
    /// Times the batches backed off because commits slowed down (`commit_slowdown`), and the
    /// slowest commit the probe saw.
    pub slowdowns: i64,
    pub slowest_commit: Duration,
    /// The lowest commit time the probe saw (zero without a probe).
    pub lowest_commit: Duration,
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
    let as_text: Vec<String> = keys
        .iter()
        .map(|k| format!("{}::text", quote_ident(&k.name)))
        .collect();
    let sets: Vec<String> = b
        .set
        .iter()
        .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
        .collect();
    let mut q = Batches {
        b,
        table: table.clone(),
        keys: &keys,
        plain: key_list(&keys, ""),
        as_text: as_text.join(", "),
        sets: sets.join(", "),
        filter: b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default(),
        span: None,
    };
    let desc: Vec<String> = keys
        .iter()
        .map(|k| format!("{} DESC", quote_ident(&k.name)))
        .collect();

    let (mut cursor, walked, estimate) =
        match meta.backfill_cursor(conn, b.migration, b.ordinal).await? {
            Some((saved, done)) => {
                let estimate = table_estimate(conn, b.table).await?;
                (saved, done, estimate)
            }
            None => {
                // The bound: the last key that exists now.
                let r = sqlx::query(AssertSqlSafe(format!(
                    "SELECT ARRAY[{}] FROM {table} ORDER BY {} LIMIT 1",
                    q.as_text,
                    desc.join(", ")
                )))
                .fetch_optional(&mut *conn)
                .await
                .map_err(q.db("reading the last key"))?;
                let upper = r.map(|r| r.get::<Vec<String>, _>(0));
                let estimate = table_estimate(conn, b.table).await?;
                let ranges = match (&upper, settings.workers) {
                    (Some(upper), w) if w > 1 => split(conn, &q, upper, estimate, w).await?,
                    _ => Vec::new(),
                };
                let cursor = BackfillCursor {
                    last: None,
                    upper,
                    size: None,
                    ranges,
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
    if let Some(upper) = &cursor.upper {
        q.span = span_start(conn, &q, upper, estimate).await?;
    }
    let workers = if cursor.ranges.is_empty() {
        1
    } else {
        cursor.ranges.iter().filter(|r| !r.done).count() as u32
    };
    // The guard watches the other sessions and the commit latency for the backfill; the
    // probe acts only while the database is busy, when no more than `busy_workers` walk: its
    // first step back is then one of those.
    let pace = match (&exec.guard, &cursor.upper) {
        (Some(g), Some(_)) => Some(
            g.pace(PaceSettings {
                busy_tps: settings.busy_tps,
                commit_slowdown: settings.commit_slowdown,
                workers: workers.min(settings.busy_workers),
            })
            .await,
        ),
        _ => None,
    };
    let active = pace.as_ref().is_some_and(|p| p.busy());
    let shared = Shared {
        walked: Cell::new(walked),
        pace,
        busy_workers: settings.busy_workers,
        finished: RefCell::new(vec![false; workers as usize]),
        said_busy: Cell::new(active),
        progress: RefCell::new(
            Progress::new(
                format!("backfill {table}"),
                walked,
                estimate,
                exec.rollout
                    .as_ref()
                    .map(|h| (h.target.clone(), h.progress.clone())),
            )
            .watched_by(exec.guard.clone()),
        ),
    };
    if active && workers > settings.busy_workers {
        let t = format!("other sessions are active: {}", shared.walking());
        shared.progress.borrow_mut().say(&t);
    }
    // A table empty when the backfill started has no bound: nothing to walk.
    let outcome = match cursor.upper.clone() {
        None => Ok(BackfillReport::default()),
        Some(upper) if cursor.ranges.is_empty() => {
            let mut range = Range {
                last: cursor.last.take(),
                upper,
                size: cursor.size,
            };
            let r = walk(conn, meta, exec, &q, &mut range, (Save::Whole, 0), &shared).await;
            cursor.last = range.last;
            cursor.size = range.size;
            r
        }
        Some(_) => in_parallel(conn, meta, exec, &q, &mut cursor, &shared).await,
    };
    shared.progress.borrow_mut().finish();
    if let Some(g) = &exec.guard {
        g.pace_done();
    }
    let mut report = outcome?;
    if let Some(p) = &shared.pace {
        (
            report.slowdowns,
            report.slowest_commit,
            report.lowest_commit,
        ) = p.figures();
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
        shared.walked.get(),
        None,
        true,
    )
    .await?;
    Ok(report)
}
