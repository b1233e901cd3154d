//! The SQL of a backfill's batches over its key: where a batch ends, its `UPDATE` with the
//! check of every row it writes, and spans of an integer key's values.

use super::key::{key_params, KeyColumn};
use super::workers::Range;
use super::Backfill;
use crate::engine::state::Metadata;
use crate::error::Error;
use crate::model::quote_ident;
use sqlx::{AssertSqlSafe, PgConnection};

/// The SQL of a backfill's batches, built once from its key and assignments.
pub(super) struct Batches<'a> {
    pub(super) b: &'a Backfill<'a>,
    pub(super) table: String,
    pub(super) keys: &'a [KeyColumn],
    pub(super) plain: String,
    pub(super) as_text: String,
    pub(super) sets: String,
    pub(super) filter: String,
    /// The smallest key, when batches are spans of the key's values (see [`span_start`]).
    pub(super) span: Option<i128>,
}

impl Batches<'_> {
    pub(super) fn db(&self, what: &'static str) -> impl Fn(sqlx::Error) -> Error + '_ {
        move |e| Error::Database(format!("backfilling {}: {what}: {e}", self.table))
    }

    pub(super) fn lower(&self, after: bool) -> String {
        if after {
            format!("{} > {} AND ", self.plain, key_params(self.keys, 1))
        } else {
            String::new()
        }
    }

    pub(super) fn at(&self, after: bool) -> usize {
        if after {
            self.keys.len() + 1
        } else {
            1
        }
    }

    /// The key `size` rows on from the cursor: the batch's end (none when fewer are left).
    /// The rows to skip (`size - 1`) are the last parameter; the statement stays prepared and
    /// each batch is planned with its own values (`plan_cache_mode`, see `walk`).
    pub(super) fn end_sql(&self, after: bool) -> String {
        let at = self.at(after);
        format!(
            "SELECT ARRAY[{}] FROM {} WHERE {}{} <= {} ORDER BY {} OFFSET ${} LIMIT 1",
            self.as_text,
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, at),
            self.plain,
            self.after_end(after)
        )
    }

    /// A whole batch in one statement, which is its own transaction: the UPDATE, the check
    /// of every row it wrote (none is wrong without a `verify` condition), and the save of the
    /// cursor ([`Metadata::batch_save_ctes`], its parameters after the batch's end key). It
    /// gives back the rows changed, the rows still wrong (always 0 when it commits: a wrong
    /// row fails the statement) and whether the cursor was saved.
    pub(super) fn batch_sql(&self, after: bool, meta: &Metadata) -> String {
        let update = self.update_sql(after);
        let wrong = self.b.verify.unwrap_or("false");
        let save = meta.batch_save_ctes(self.after_end(after));
        format!(
            "WITH u AS ({update} RETURNING ({wrong}) AS wrong), \
             c AS (SELECT count(*) AS n, count(*) FILTER (WHERE wrong) AS bad FROM u), {save} \
             SELECT c.n, c.bad, (SELECT count(*) FROM s) FROM c"
        )
    }

    /// The first parameter after a batch's end key.
    fn after_end(&self, after: bool) -> usize {
        self.at(after) + self.keys.len()
    }

    /// The batch's UPDATE alone.
    pub(super) fn update_sql(&self, after: bool) -> String {
        format!(
            "UPDATE {} SET {} WHERE {}{} <= {}{}",
            self.table,
            self.sets,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after)),
            self.filter
        )
    }

    /// The key of a row of the batch that is still wrong, read in a transaction that ran
    /// the batch's UPDATE again (and so sees the rows as it wrote them) before it is rolled
    /// back.
    pub(super) fn wrong_sql(&self, after: bool, wrong: &str) -> String {
        format!(
            "SELECT ARRAY[{}] FROM {} WHERE {}{} <= {} AND ({wrong}) ORDER BY {} LIMIT 1",
            self.as_text,
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after)),
            self.plain
        )
    }

    pub(super) fn count_sql(&self, after: bool) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {}{} <= {}",
            self.table,
            self.lower(after),
            self.plain,
            key_params(self.keys, self.at(after))
        )
    }
}

/// The smallest key, when batches can be spans of the key's values instead of counts of rows:
/// a key of one integer column, no filter (every row of a span is updated, so the rows the
/// UPDATE reports are the rows walked), and at least half the values between the smallest and
/// the largest key in use. Then a batch is `key > last AND key <= last + span`, and no query
/// has to find its end in the key index first. The batch size is a span of values, never more
/// than `max_rows` of them, so no batch holds more rows than that however the keys cluster;
/// gaps only make some batches smaller.
pub(super) async fn span_start(
    conn: &mut PgConnection,
    q: &Batches<'_>,
    upper: &[String],
    estimate: i64,
) -> Result<Option<i128>, Error> {
    let integer = matches!(
        q.keys,
        [KeyColumn { ty, .. }] if matches!(ty.as_str(), "smallint" | "integer" | "bigint")
    );
    if !integer || q.b.filter.is_some() {
        return Ok(None);
    }
    let Some(Ok(upper)) = upper.first().map(|u| u.parse::<i128>()) else {
        return Ok(None);
    };
    let min: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT min({})::text FROM {}",
        quote_ident(&q.keys[0].name),
        q.table
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(q.db("reading the first key"))?;
    let Some(Ok(min)) = min.map(|m| m.parse::<i128>()) else {
        return Ok(None);
    };
    let values = upper - min + 1;
    Ok((values > 0 && i128::from(estimate) * 2 >= values).then_some(min))
}

/// With span batches, the end of the next one: `size` key values on from the cursor (from
/// the smallest key at the start), or `Some(None)` when that reaches the range's end.
pub(super) fn span_end(
    start: Option<i128>,
    range: &Range,
    size: i64,
) -> Option<Option<Vec<String>>> {
    let start = start?;
    let after = match &range.last {
        Some(last) => last.first()?.parse::<i128>().ok()?,
        None => start - 1,
    };
    let upper = range.upper.first()?.parse::<i128>().ok()?;
    let end = after + i128::from(size.max(1));
    Some((end < upper).then(|| vec![end.to_string()]))
}
