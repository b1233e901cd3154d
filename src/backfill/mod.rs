//! Batched backfills: keyset batches over the primary key — any type (integer, bigint, uuid,
//! text, …) and composite keys — each batch its own short transaction under a short
//! lock_timeout, its cursor saved in the same transaction. The last key is fixed when the
//! backfill starts; rows written later are kept right by the expand triggers, so it always
//! ends. Each batch walks the key index from the cursor, so its cost stays flat from the first
//! batch to the last. A `kill -9` loses at most the batch in flight.
//!
//! Still to come with the backfill engine (issue 4): adaptive batch sizes, throttles, a
//! progress bar.

use crate::engine::exec::ExecSettings;
use crate::engine::state::{BackfillCursor, Metadata};
use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// Rows per batch.
pub const BATCH_ROWS: i64 = 10_000;

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

/// A primary-key column: its name and type.
struct KeyColumn {
    name: String,
    ty: String,
}

/// The primary key's columns in order, or a clear error naming the fix.
async fn primary_key(
    conn: &mut PgConnection,
    table: &QualifiedName,
) -> Result<Vec<KeyColumn>, Error> {
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary
         ORDER BY k.ord",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading the primary key of {table}: {e}")))?;
    if rows.is_empty() {
        return Err(Error::Usage(format!(
            "{table} has no primary key, so it cannot be backfilled in batches: add one (for example a bigint identity column) first"
        )));
    }
    Ok(rows
        .iter()
        .map(|r| KeyColumn {
            name: r.get(0),
            ty: r.get(1),
        })
        .collect())
}

/// `(a, b)` over the key columns, each prefixed.
fn key_list(keys: &[KeyColumn], prefix: &str) -> String {
    let cols: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}{}", quote_ident(&k.name)))
        .collect();
    format!("({})", cols.join(", "))
}

/// `($n::text::type, …)`: key values bound as text and cast back to the column types.
fn key_params(keys: &[KeyColumn], first: usize) -> String {
    let params: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("${}::text::{}", first + i, k.ty))
        .collect();
    format!("({})", params.join(", "))
}

/// Runs or resumes a backfill.
pub async fn run(
    conn: &mut PgConnection,
    meta: &Metadata,
    b: &Backfill<'_>,
    exec: &ExecSettings,
) -> Result<BackfillReport, Error> {
    let keys = primary_key(conn, b.table).await?;
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

    let (mut cursor, mut rows) = match meta.backfill_cursor(conn, b.migration, b.ordinal).await? {
        Some(saved) => saved,
        None => {
            // The bound: the last key that exists now.
            let r = sqlx::query(AssertSqlSafe(format!(
                "SELECT ARRAY[{}], (SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)) FROM {table} ORDER BY {} LIMIT 1",
                as_text.join(", "),
                desc.join(", ")
            )))
            .bind(b.table.sql())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the last key"))?;
            let (upper, estimate) = match r {
                Some(r) => (Some(r.get::<Vec<String>, _>(0)), r.get::<i64, _>(1)),
                None => (None, 0),
            };
            let cursor = BackfillCursor { last: None, upper };
            meta.save_backfill(
                &mut *conn,
                b.migration,
                b.ordinal,
                &b.table.name,
                &cursor,
                0,
                (estimate >= 0).then_some(estimate),
                false,
            )
            .await?;
            (cursor, 0)
        }
    };
    let mut report = BackfillReport {
        rows: 0,
        batches: 0,
    };
    // A table empty when the backfill started has no bound: nothing to walk.
    if let Some(upper) = cursor.upper.clone() {
        // One statement per batch: take the next keys in order from the cursor, update those rows,
        // and return how many changed and the last key taken.
        let sets: Vec<String> = b
            .set
            .iter()
            .map(|(c, e)| format!("{} = {e}", quote_ident(c)))
            .collect();
        let filter = b.filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let aliased: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} AS __migrate_k{i}", quote_ident(&k.name)))
            .collect();
        let batch_keys: Vec<String> = (0..n).map(|i| format!("batch.__migrate_k{i}")).collect();
        let batch_text: Vec<String> = (0..n).map(|i| format!("__migrate_k{i}::text")).collect();
        let batch_desc: Vec<String> = (0..n).map(|i| format!("__migrate_k{i} DESC")).collect();
        let table_keys = key_list(&keys, &format!("{table}."));
        let batch_sql = |after: bool| {
            let lower = if after {
                format!("{plain} > {} AND ", key_params(&keys, 1))
            } else {
                String::new()
            };
            let upper_at = if after { n + 1 } else { 1 };
            format!(
                "WITH batch AS (
                     SELECT {} FROM {table} WHERE {lower}{plain} <= {} ORDER BY {plain} LIMIT {BATCH_ROWS}
                 ), changed AS (
                     UPDATE {table} SET {} FROM batch WHERE {table_keys} = ({}){filter} RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM changed), (SELECT ARRAY[{}] FROM batch ORDER BY {} LIMIT 1)",
                aliased.join(", "),
                key_params(&keys, upper_at),
                sets.join(", "),
                batch_keys.join(", "),
                batch_text.join(", "),
                batch_desc.join(", ")
            )
        };
        let (first_sql, next_sql) = (batch_sql(false), batch_sql(true));
        let lock = crate::engine::exec::set_local_lock_timeout(exec);
        let mut timeouts = 0;
        loop {
            let mut tx = conn.begin().await.map_err(db("starting a batch"))?;

            sqlx::raw_sql(AssertSqlSafe(lock.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db("setting lock_timeout"))?;
            let mut q = match &cursor.last {
                Some(_) => sqlx::query(AssertSqlSafe(next_sql.clone())),
                None => sqlx::query(AssertSqlSafe(first_sql.clone())),
            };
            for v in cursor.last.iter().flatten().chain(upper.iter()) {
                q = q.bind(v.clone());
            }
            match q.fetch_one(&mut *tx).await {
                Ok(r) => {
                    let changed: i64 = r.get(0);
                    let Some(last) = r.get::<Option<Vec<String>>, _>(1) else {
                        drop(tx);
                        break;
                    };
                    rows += changed;
                    cursor.last = Some(last);
                    meta.save_backfill(
                        &mut *tx,
                        b.migration,
                        b.ordinal,
                        &b.table.name,
                        &cursor,
                        rows,
                        None,
                        false,
                    )
                    .await?;
                    tx.commit().await.map_err(db("committing a batch"))?;
                    report.rows += changed;
                    report.batches += 1;
                    timeouts = 0;
                    crate::engine::run::failpoint("batch", report.batches as usize);
                }
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") =>
                {
                    drop(tx);
                    timeouts += 1;
                    if timeouts > exec.retries {
                        return Err(Error::LockTimeout(format!(
                            "backfilling {table}: the next batch stayed locked through {timeouts} tries; run again to resume from the saved cursor"
                        )));
                    }
                    tokio::time::sleep(exec.backoff.saturating_mul(timeouts)).await;
                }
                Err(e) => return Err(db("a batch failed")(e)),
            }
        }
        // No row left behind up to the bound (rows after it are the triggers' job).
        if let Some(f) = b.filter {
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE {plain} <= {} AND ({f}))",
                key_params(&keys, 1)
            )));
            for v in &upper {
                q = q.bind(v.clone());
            }
            let left: bool = q
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
    }
    meta.save_backfill(
        &mut *conn,
        b.migration,
        b.ordinal,
        &b.table.name,
        &cursor,
        rows,
        None,
        true,
    )
    .await?;
    Ok(report)
}
