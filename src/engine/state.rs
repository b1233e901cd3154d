//! The metadata schema: where every migration stands, in the database it changes.
//!
//! A schema of its own (default `migrate`), created on first use and versioned so later
//! releases can upgrade it: one row per migration (name, checksum, phase, the step reached, the
//! plan as JSON, timestamps, tool version) and one row per backfill. Identifiers are quoted
//! through `quote_ident`; values are bound.

use crate::error::Error;
use crate::model::quote_ident;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::fmt;

/// The layout this release writes; a database with a newer one is refused.
pub const SCHEMA_VERSION: i32 = 2;

/// One thing the guard did: a throttle, pause, resume or stop, with the signal and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardEvent {
    pub at: String,
    pub migration: Option<String>,
    pub command: String,
    pub action: String,
    pub signal: Option<String>,
    pub detail: String,
}

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationPhase {
    Pending,
    Expanding,
    Expanded,
    Backfilling,
    Backfilled,
    Contracting,
    Complete,
    Aborting,
    Aborted,
}

impl MigrationPhase {
    pub const ALL: [MigrationPhase; 9] = [
        MigrationPhase::Pending,
        MigrationPhase::Expanding,
        MigrationPhase::Expanded,
        MigrationPhase::Backfilling,
        MigrationPhase::Backfilled,
        MigrationPhase::Contracting,
        MigrationPhase::Complete,
        MigrationPhase::Aborting,
        MigrationPhase::Aborted,
    ];

    /// Expanded (or on its way) and not yet contracted: its expand's changes are live and its
    /// view changes still stand between the tables and the newest version.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            MigrationPhase::Expanding
                | MigrationPhase::Expanded
                | MigrationPhase::Backfilling
                | MigrationPhase::Backfilled
                | MigrationPhase::Contracting
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationPhase::Pending => "pending",
            MigrationPhase::Expanding => "expanding",
            MigrationPhase::Expanded => "expanded",
            MigrationPhase::Backfilling => "backfilling",
            MigrationPhase::Backfilled => "backfilled",
            MigrationPhase::Contracting => "contracting",
            MigrationPhase::Complete => "complete",
            MigrationPhase::Aborting => "aborting",
            MigrationPhase::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<MigrationPhase> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A migration's checksum: SHA-256 of the file's bytes, hex.
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a backfill stands: the last primary key done, and the last key that existed when it
/// started (the bound that makes it end), each as the key columns' values in text form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BackfillCursor {
    pub last: Option<Vec<String>>,
    pub upper: Option<Vec<String>>,
    /// The batch size reached, so that a resumed backfill starts where the last one had got to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// With several workers: the key ranges they walk, each with its own cursor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<RangeCursor>,
}

/// One worker's key range: after `last` (from the start when None) up to `upper`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RangeCursor {
    pub last: Option<Vec<String>>,
    pub upper: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default)]
    pub done: bool,
}

/// One recorded migration.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRecord {
    pub name: String,
    pub checksum: String,
    pub phase: MigrationPhase,
    pub step: i32,
    pub baselined: bool,
    pub updated_at: String,
    pub completed_at: Option<String>,
    pub last_error: Option<String>,
    /// Backfill progress: rows done and the estimate, summed over the migration's backfills.
    pub rows_done: i64,
    pub rows_estimate: Option<i64>,
}

/// The metadata schema of one database.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The schema's name, as configured (unquoted).
    pub schema: String,
}

fn db(context: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::Database(format!("{context}: {e}"))
}

impl Metadata {
    pub fn new(schema: &str) -> Metadata {
        Metadata {
            schema: schema.to_string(),
        }
    }

    fn q(&self) -> String {
        quote_ident(&self.schema)
    }

    /// Whether the schema and its version table exist.
    pub async fn exists(&self, conn: &mut PgConnection) -> Result<bool, Error> {
        let row =
            sqlx::query("SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL")
                .bind(&self.schema)
                .fetch_one(&mut *conn)
                .await
                .map_err(db("reading the metadata schema"))?;
        Ok(row.get(0))
    }

    /// The recorded layout version, if the schema exists.
    pub async fn version(&self, conn: &mut PgConnection) -> Result<Option<i32>, Error> {
        if !self.exists(conn).await? {
            return Ok(None);
        }
        let sql = format!("SELECT max(version) FROM {}.schema_version", self.q());
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .map_err(db("reading the metadata version"))?;
        Ok(row.get::<Option<i32>, _>(0))
    }

    /// Creates the schema on first use, or upgrades it; refuses a newer layout. Call it while
    /// holding the runner lock, so two first runs do not race.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<(), Error> {
        match self.version(conn).await? {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::Database(format!(
                    "the metadata schema {} has layout version {v}, newer than this migrate understands ({SCHEMA_VERSION}): upgrade migrate",
                    self.q()
                )))
            }
            Some(v) if v == SCHEMA_VERSION => return Ok(()),
            _ => {}
        }
        let s = self.q();
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.schema_version (
                 version integer NOT NULL,
                 tool_version text NOT NULL,
                 upgraded_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE TABLE IF NOT EXISTS {s}.migrations (
                 name text PRIMARY KEY,
                 checksum text NOT NULL,
                 phase text NOT NULL CHECK (phase IN ('pending', 'expanding', 'expanded', 'backfilling', 'backfilled', 'contracting', 'complete', 'aborting', 'aborted')),
                 step integer NOT NULL DEFAULT 0,
                 plan jsonb,
                 baselined boolean NOT NULL DEFAULT false,
                 tool_version text NOT NULL,
                 last_error text,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 expanded_at timestamptz,
                 completed_at timestamptz,
                 aborted_at timestamptz
             );
             CREATE TABLE IF NOT EXISTS {s}.backfills (
                 migration text NOT NULL REFERENCES {s}.migrations (name) ON DELETE CASCADE,
                 ordinal integer NOT NULL,
                 table_name text NOT NULL,
                 cursor jsonb,
                 rows_done bigint NOT NULL DEFAULT 0,
                 rows_estimate bigint,
                 batch_size integer,
                 started_at timestamptz,
                 updated_at timestamptz,
                 finished_at timestamptz,
                 PRIMARY KEY (migration, ordinal)
             );
             -- Layout 2: what the guard did, and why.
             CREATE TABLE IF NOT EXISTS {s}.guard_events (
                 at timestamptz NOT NULL DEFAULT now(),
                 migration text,
                 command text NOT NULL,
                 action text NOT NULL CHECK (action IN ('throttle', 'pause', 'resume', 'stop')),
                 signal text,
                 detail text NOT NULL
             );"
        );
        // One transaction: a failure leaves no half-made schema behind. Every statement above
        // is IF NOT EXISTS, so the same DDL upgrades an older layout.
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(db("creating the metadata schema"))?;
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&mut *tx)
            .await
            .map_err(db("creating the metadata schema"))?;
        let insert =
            format!("INSERT INTO {s}.schema_version (version, tool_version) VALUES ($1, $2)");
        sqlx::query(AssertSqlSafe(insert))
            .bind(SCHEMA_VERSION)
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(&mut *tx)
            .await
            .map_err(db("creating the metadata schema"))?;
        tx.commit()
            .await
            .map_err(db("creating the metadata schema"))
    }

    /// Every recorded migration, by name, with its backfill progress.
    pub async fn records(&self, conn: &mut PgConnection) -> Result<Vec<MigrationRecord>, Error> {
        self.select(conn, None).await
    }

    /// One recorded migration.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Option<MigrationRecord>, Error> {
        Ok(self.select(conn, Some(name)).await?.pop())
    }

    async fn select(
        &self,
        conn: &mut PgConnection,
        name: Option<&str>,
    ) -> Result<Vec<MigrationRecord>, Error> {
        if !self.exists(conn).await? {
            return Ok(Vec::new());
        }
        let s = self.q();
        let sql = format!(
            "SELECT m.name, m.checksum, m.phase, m.step, m.baselined,
                    to_char(m.updated_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    to_char(m.completed_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    m.last_error,
                    coalesce((SELECT sum(b.rows_done) FROM {s}.backfills b WHERE b.migration = m.name), 0)::bigint,
                    (SELECT sum(b.rows_estimate) FROM {s}.backfills b WHERE b.migration = m.name)::bigint
             FROM {s}.migrations m WHERE $1::text IS NULL OR m.name = $1 ORDER BY m.name"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading the metadata"))?;
        rows.iter()
            .map(|r| {
                let phase: String = r.get(2);
                Ok(MigrationRecord {
                    name: r.get(0),
                    checksum: r.get(1),
                    phase: MigrationPhase::parse(&phase).ok_or_else(|| {
                        Error::Database(format!("unknown phase `{phase}` in the metadata"))
                    })?,
                    step: r.get(3),
                    baselined: r.get(4),
                    updated_at: r.get(5),
                    completed_at: r.get(6),
                    last_error: r.get(7),
                    rows_done: r.get(8),
                    rows_estimate: r.get(9),
                })
            })
            .collect()
    }

    /// The stored plan of a recorded migration (the plan it was expanded with: a resume never
    /// re-plans).
    pub async fn plan(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Option<crate::plan::MigrationPlan>, Error> {
        let sql = format!(
            "SELECT plan::text FROM {}.migrations WHERE name = $1",
            self.q()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the stored plan"))?;
        let Some(json) = row.and_then(|r| r.get::<Option<String>, _>(0)) else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| Error::Database(format!("the stored plan of {name} cannot be read: {e}")))
    }

    /// Records the start of a migration's expand, with the plan it will follow.
    pub async fn start(
        &self,
        conn: &mut PgConnection,
        name: &str,
        checksum: &str,
        plan: &crate::plan::MigrationPlan,
    ) -> Result<(), Error> {
        let json = serde_json::to_string(plan)
            .map_err(|e| Error::Database(format!("storing the plan: {e}")))?;
        // An aborted migration starts again from nothing: its record goes, and with it its
        // backfills' cursors, in the transaction that records the new start.
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(db("recording the migration"))?;
        let forget = format!(
            "DELETE FROM {}.migrations WHERE name = $1 AND phase = 'aborted'",
            self.q()
        );
        sqlx::query(AssertSqlSafe(forget))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("clearing the aborted record"))?;
        let sql = format!(
            "INSERT INTO {}.migrations (name, checksum, phase, step, plan, tool_version)
             VALUES ($1, $2, 'expanding', 0, $3::jsonb, $4)",
            self.q()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(checksum)
            .bind(json)
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(&mut *tx)
            .await
            .map_err(db("recording the migration"))?;
        tx.commit().await.map_err(db("recording the migration"))?;
        Ok(())
    }

    /// Moves a migration to `phase` with `step` steps of it done. Runs on any executor, so a
    /// transactional step and its checkpoint commit together.
    pub async fn checkpoint<'e>(
        &self,
        conn: impl sqlx::PgExecutor<'e>,
        name: &str,
        phase: MigrationPhase,
        step: i32,
    ) -> Result<(), Error> {
        let stamp = match phase {
            MigrationPhase::Expanded => ", expanded_at = now()",
            MigrationPhase::Complete => ", completed_at = now()",
            MigrationPhase::Aborted => ", aborted_at = now()",
            _ => "",
        };
        let sql = format!(
            "UPDATE {}.migrations SET phase = $2, step = $3, last_error = NULL, updated_at = now(){stamp} WHERE name = $1",
            self.q()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(phase.name())
            .bind(step)
            .execute(conn)
            .await
            .map_err(db("checkpointing"))?;
        Ok(())
    }

    /// Forgets a migration whose expand failed before any step was applied: the metadata goes
    /// back to exactly what it was before the attempt.
    pub async fn forget(&self, conn: &mut PgConnection, name: &str) -> Result<(), Error> {
        let sql = format!(
            "DELETE FROM {}.migrations WHERE name = $1 AND phase = 'expanding' AND step = 0",
            self.q()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(db("forgetting the failed start"))?;
        Ok(())
    }

    /// Notes why the last run of a migration stopped (shown by `status`).
    pub async fn note_error(
        &self,
        conn: &mut PgConnection,
        name: &str,
        error: &str,
    ) -> Result<(), Error> {
        let sql = format!(
            "UPDATE {}.migrations SET last_error = $2, updated_at = now() WHERE name = $1",
            self.q()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(error)
            .execute(&mut *conn)
            .await
            .map_err(db("recording the error"))?;
        Ok(())
    }

    /// The guard's last pause or stop (and whether it resumed since), newest first.
    pub async fn last_guard_events(
        &self,
        conn: &mut PgConnection,
        limit: i64,
    ) -> Result<Vec<GuardEvent>, Error> {
        let sql = format!(
            "SELECT to_char(at, 'YYYY-MM-DD HH24:MI:SS'), migration, command, action, signal, detail
             FROM {}.guard_events ORDER BY at DESC LIMIT $1",
            self.q()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading the guard's events"))?;
        Ok(rows
            .iter()
            .map(|r| GuardEvent {
                at: r.get(0),
                migration: r.get(1),
                command: r.get(2),
                action: r.get(3),
                signal: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }

    /// A backfill's saved cursor and rows done, if it has started.
    pub async fn backfill_cursor(
        &self,
        conn: &mut PgConnection,
        name: &str,
        ordinal: i32,
    ) -> Result<Option<(BackfillCursor, i64)>, Error> {
        let sql = format!(
            "SELECT cursor::text, rows_done FROM {}.backfills WHERE migration = $1 AND ordinal = $2",
            self.q()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(ordinal)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading the backfill cursor"))?;
        let Some(row) = row else { return Ok(None) };
        let json: Option<String> = row.get(0);
        let cursor = serde_json::from_str(json.as_deref().unwrap_or("{}")).map_err(|e| {
            Error::Database(format!("the backfill cursor of {name} cannot be read: {e}"))
        })?;
        Ok(Some((cursor, row.get(1))))
    }

    /// Saves a backfill's cursor; called in each batch's own transaction, so a batch and its
    /// cursor commit together.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_backfill<'e>(
        &self,
        conn: impl sqlx::PgExecutor<'e>,
        name: &str,
        ordinal: i32,
        table: &str,
        cursor: &BackfillCursor,
        rows_done: i64,
        estimate: Option<i64>,
        finished: bool,
    ) -> Result<(), Error> {
        let json = serde_json::to_string(cursor)
            .map_err(|e| Error::Database(format!("saving the backfill cursor: {e}")))?;
        let sql = format!(
            "INSERT INTO {s}.backfills AS b (migration, ordinal, table_name, cursor, rows_done, rows_estimate, started_at, updated_at, finished_at)
             VALUES ($1, $2, $3, $4::jsonb, $5, $6, now(), now(), CASE WHEN $7 THEN now() END)
             ON CONFLICT (migration, ordinal) DO UPDATE SET cursor = excluded.cursor, rows_done = excluded.rows_done,
                 rows_estimate = coalesce(excluded.rows_estimate, b.rows_estimate), updated_at = now(),
                 finished_at = CASE WHEN $7 THEN now() END",
            s = self.q()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(ordinal)
            .bind(table)
            .bind(json)
            .bind(rows_done)
            .bind(estimate)
            .bind(finished)
            .execute(conn)
            .await
            .map_err(db("saving the backfill cursor"))?;
        Ok(())
    }

    /// The save of a backfill batch's cursor as part of the batch's own statement, so the rows
    /// and the cursor commit together in one round trip. It follows a CTE named `c` with the
    /// columns `n` (rows the batch changed) and `bad` (rows it left wrong), and adds two:
    /// `s` saves the cursor when no row is wrong; `f` inserts a row that cannot exist when
    /// some are, so the whole statement fails and nothing of the batch commits (see
    /// [`Metadata::is_wrong_rows`]). Parameters from `$p`: the migration, the backfill's
    /// ordinal, the worker's range (null: the cursor of the whole backfill), the cursor, the
    /// rows walked before this batch (with the whole's cursor; null for a range, which adds
    /// to its total), and the rows this batch walked (null: the rows it changed).
    pub fn batch_save_ctes(&self, p: usize) -> String {
        let (m, o, r, j, w, t) = (p, p + 1, p + 2, p + 3, p + 4, p + 5);
        format!(
            "s AS (UPDATE {s}.backfills SET \
                 cursor = CASE WHEN ${r}::int IS NULL THEN ${j}::jsonb \
                     ELSE jsonb_set(cursor, ARRAY['ranges', ${r}::text], ${j}::jsonb) END, \
                 rows_done = coalesce(${w}::bigint, rows_done) + coalesce(${t}::bigint, c.n), \
                 updated_at = now() \
               FROM c WHERE migration = ${m} AND ordinal = ${o} AND c.bad = 0 RETURNING 1), \
             f AS (INSERT INTO {s}.backfills (migration, ordinal, table_name) \
               SELECT NULL, 0, '' FROM c WHERE c.bad > 0)",
            s = self.q()
        )
    }

    /// Whether a batch's statement failed because some of its rows were wrong: the row its
    /// `f` CTE inserts breaks the NOT NULL of `backfills.migration`.
    pub fn is_wrong_rows(&self, e: &sqlx::Error) -> bool {
        let Some(d) = e.as_database_error() else {
            return false;
        };
        let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
            return false;
        };
        pg.code() == "23502"
            && pg.schema() == Some(self.schema.as_str())
            && pg.table() == Some("backfills")
            && pg.column() == Some("migration")
    }

    /// Records a migration as already applied, without running it. Returns false when it was
    /// already recorded.
    pub async fn baseline(
        &self,
        conn: &mut PgConnection,
        name: &str,
        checksum: &str,
    ) -> Result<bool, Error> {
        let sql = format!(
            "INSERT INTO {}.migrations (name, checksum, phase, baselined, tool_version, completed_at)
             VALUES ($1, $2, 'complete', true, $3, now()) ON CONFLICT (name) DO NOTHING",
            self.q()
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(checksum)
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(&mut *conn)
            .await
            .map_err(db("recording the baseline"))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_sha256_hex() {
        assert_eq!(
            checksum(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn phases_round_trip() {
        for p in MigrationPhase::ALL {
            assert_eq!(MigrationPhase::parse(p.name()), Some(p));
        }
    }
}
