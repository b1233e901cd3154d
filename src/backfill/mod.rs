//! Batched backfills: keyset batches over the primary key, each batch its own short
//! transaction under a short lock_timeout, the cursor saved in the same transaction. The upper
//! bound is fixed when the backfill starts; rows written later are kept right by the expand
//! triggers, so the backfill always ends. A `kill -9` loses at most the batch in flight.
//!
//! This is the first version: single-column integer keys and a fixed batch size. Composite,
//! uuid and text keys, adaptive batch sizes, throttles and a progress bar come with the
//! backfill engine (issue 4).

use crate::engine::exec::ExecSettings;
use crate::engine::state::Metadata;
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// Keys per batch.
pub const BATCH_KEYS: i64 = 10_000;

/// One backfill of a migration's plan.
pub struct Backfill<'a> {
    pub migration: &'a str,
    /// Its place among the migration's backfills.
    pub ordinal: i32,
    pub table: &'a QualifiedName,
    pub set: &'a [(String, String)],
    pub filter: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    pub rows: i64,
    pub batches: i64,
}

/// The single integer primary-key column of a table, or a clear error naming the fix.
async fn integer_key(conn: &mut PgConnection, table: &QualifiedName) -> Result<String, Error> {
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading the primary key of {table}: {e}")))?;
    match rows.as_slice() {
        [] => Err(Error::Usage(format!(
            "{table} has no primary key, so it cannot be backfilled in batches: add one (for example a bigint identity column) first"
        ))),
        [r] if matches!(r.get::<String, _>(1).as_str(), "smallint" | "integer" | "bigint") => Ok(r.get(0)),
        _ => Err(Error::Usage(format!(
            "{table} has a primary key of {} column(s) ({}): this version backfills over a single integer key only; composite, uuid and text keys come with the backfill engine",
            rows.len(),
            rows.iter().map(|r| format!("{} {}", r.get::<String, _>(0), r.get::<String, _>(1))).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Runs or resumes a backfill.
pub async fn run(
    conn: &mut PgConnection,
    meta: &Metadata,
    b: &Backfill<'_>,
    exec: &ExecSettings,
) -> Result<BackfillReport, Error> {
    let key = integer_key(conn, b.table).await?;
    let k = quote_ident(&key);
    let table = b.table.sql();
    let name = table.clone();
    let db = move |what: &'static str| {
        let name = name.clone();
        move |e: sqlx::Error| Error::Database(format!("backfilling {name}: {what}: {e}"))
    };
    let (mut last, upper, mut rows) = match meta
        .backfill_cursor(conn, b.migration, b.ordinal)
        .await?
    {
        Some(saved) => saved,
        None => {
            let r = sqlx::query(AssertSqlSafe(format!(
                "SELECT coalesce(min({k}) - 1, 0)::bigint, coalesce(max({k}), 0)::bigint,
                        (SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)) FROM {table}"
            )))
            .bind(b.table.sql())
            .fetch_one(&mut *conn)
            .await
            .map_err(db("reading the key range"))?;
            let (first, upper, estimate): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            meta.save_backfill(
                &mut *conn,
                b.migration,
                b.ordinal,
                &b.table.name,
                (first, upper),
                0,
                (estimate >= 0).then_some(estimate),
                false,
            )
            .await?;
            (first, upper, 0)
        }
    };
    let sets: Vec<String> = b
        .set
        .iter()
        .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
        .collect();
    let filter = b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
    let update = format!(
        "UPDATE {table} SET {} WHERE {k} > $1 AND {k} <= $2{filter}",
        sets.join(", ")
    );
    let mut report = BackfillReport {
        rows: 0,
        batches: 0,
    };
    let mut timeouts = 0;
    while last < upper {
        let hi = last.saturating_add(BATCH_KEYS).min(upper);
        let mut tx = conn.begin().await.map_err(db("starting a batch"))?;
        let lock = format!(
            "SET LOCAL lock_timeout = '{}ms'",
            exec.lock_timeout.as_millis().max(1)
        );
        sqlx::raw_sql(AssertSqlSafe(lock))
            .execute(&mut *tx)
            .await
            .map_err(db("setting lock_timeout"))?;
        match sqlx::query(AssertSqlSafe(update.clone()))
            .bind(last)
            .bind(hi)
            .execute(&mut *tx)
            .await
        {
            Ok(done) => {
                rows += done.rows_affected() as i64;
                meta.save_backfill(
                    &mut *tx,
                    b.migration,
                    b.ordinal,
                    &b.table.name,
                    (hi, upper),
                    rows,
                    None,
                    hi >= upper,
                )
                .await?;
                tx.commit().await.map_err(db("committing a batch"))?;
                report.rows += done.rows_affected() as i64;
                report.batches += 1;
                last = hi;
                timeouts = 0;
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
                drop(tx);
                timeouts += 1;
                if timeouts > exec.retries {
                    return Err(Error::LockTimeout(format!(
                        "backfilling {table}: rows {}..{hi} stayed locked through {timeouts} tries; run again to resume from there",
                        last + 1
                    )));
                }
                tokio::time::sleep(exec.backoff.saturating_mul(timeouts)).await;
            }
            Err(e) => return Err(db("a batch failed")(e)),
        }
    }
    // No row left behind below the bound (rows above it are the triggers' job).
    if let Some(f) = b.filter {
        let left: bool = sqlx::query(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE {k} <= $1 AND ({f}))"
        )))
        .bind(upper)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("checking for rows left behind"))?
        .get(0);
        if left {
            return Err(Error::Database(format!(
                "backfilling {table}: rows matching `{f}` remain after the last batch; run again to fill them"
            )));
        }
    }
    meta.save_backfill(
        &mut *conn,
        b.migration,
        b.ordinal,
        &b.table.name,
        (upper, upper),
        rows,
        None,
        true,
    )
    .await?;
    Ok(report)
}
