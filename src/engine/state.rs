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
pub const SCHEMA_VERSION: i32 = 1;

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
            Some(_) => return Ok(()),
            None => {}
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
             );"
        );
        // One transaction: a failure leaves no half-made schema behind.
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
             FROM {s}.migrations m ORDER BY m.name"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
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
