//! The key a backfill walks, and the SQL over it.

use crate::error::Error;
use crate::model::{quote_ident, QualifiedName};
use sqlx::{PgConnection, Row};

/// A column of the key a backfill walks: its name and type.
pub(super) struct KeyColumn {
    pub(super) name: String,
    pub(super) ty: String,
}

/// The key a backfill walks the table by: the primary key, or else the unique index over NOT
/// NULL columns with the fewest columns (valid, not partial, no expressions), which orders and
/// identifies every row just as well. None of either is a clear error naming the fix.
pub(super) async fn walk_key(
    conn: &mut PgConnection,
    table: &QualifiedName,
) -> Result<Vec<KeyColumn>, Error> {
    let rows = sqlx::query(
        "WITH candidates AS (
             SELECT i.indexrelid, i.indisprimary, i.indnkeyatts,
                    pg_relation_size(i.indexrelid) AS size
             FROM pg_index i
             WHERE i.indrelid = to_regclass($1)
               AND (i.indisprimary OR (i.indisunique AND i.indisvalid AND i.indpred IS NULL
                    AND i.indexprs IS NULL
                    AND NOT EXISTS (
                        SELECT FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        WHERE NOT a.attnotnull)))
             ORDER BY i.indisprimary DESC, i.indnkeyatts, size, i.indexrelid
             LIMIT 1)
         SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM candidates c
         JOIN pg_index i ON i.indexrelid = c.indexrelid
         CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         ORDER BY k.ord",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("reading the key of {table}: {e}")))?;
    if rows.is_empty() {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table.sql())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::Database(format!("looking for {table}: {e}")))?;
        if !exists {
            return Err(Error::Refused(format!(
                "{table} does not exist: it was renamed or dropped after this migration was planned; nothing of its backfill ran"
            )));
        }
        return Err(Error::Usage(format!(
            "{table} has no primary key and no unique index over NOT NULL columns, so it cannot be backfilled in batches: add a primary key (for example a bigint identity column), or CREATE UNIQUE INDEX CONCURRENTLY over columns that are NOT NULL, first"
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
pub(super) fn key_list(keys: &[KeyColumn], prefix: &str) -> String {
    let cols: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}{}", quote_ident(&k.name)))
        .collect();
    format!("({})", cols.join(", "))
}

/// `($n::text::type, …)`: key values bound as text and cast back to the column types.
pub(super) fn key_params(keys: &[KeyColumn], first: usize) -> String {
    let params: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("${}::text::{}", first + i, k.ty))
        .collect();
    format!("({})", params.join(", "))
}

/// The planner's row estimate for a table (0 when it has never been analyzed).
pub(super) async fn table_estimate(
    conn: &mut PgConnection,
    table: &QualifiedName,
) -> Result<i64, Error> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(table.sql())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::Database(format!("estimating the rows of {table}: {e}")))?;
    Ok(n.unwrap_or(0))
}
