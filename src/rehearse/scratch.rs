//! The scratch database a rehearsal makes on the target's server when it is given none: the
//! managed schemas, the metadata schema and the version schemas as they are now (extensions,
//! types, functions, sequences, tables, constraints, indexes, views, triggers, rules, row
//! security, grants, comments), and a sample of each table's rows that keeps every foreign key.
//!
//! The target is only read, in one `REPEATABLE READ READ ONLY` transaction, so the schema and
//! the rows are one snapshot and nothing can be written there. The rows are streamed with
//! `COPY … (FORMAT binary)` (the same server, so the same types). A table below
//! `whole_below` rows comes whole; a larger one as a block sample (`TABLESAMPLE SYSTEM`, which
//! reads only the sampled pages of the production table) of `fraction`, at most `max_rows`.
//! Rows whose foreign key finds no parent in the sample are left out, repeated until every
//! key holds, before the keys are added: the copy passes its own constraints.
//!
//! The scratch database is named `migrate_rehearsal_<target>_<key>` and is always dropped at
//! the end. While a rehearsal runs, it holds a session advisory lock on `key`; a database with
//! that prefix whose lock nobody holds and to which nobody is connected is the leftover of a
//! killed run, and the next rehearsal on the server drops it by name.

use crate::engine::connect;
use crate::error::Error;
use crate::model::{quote_ident, quote_literal};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::io::Write;
use std::time::Instant;

/// The prefix of every scratch database a rehearsal makes.
pub const PREFIX: &str = "migrate_rehearsal_";
/// The first half of the advisory lock a running rehearsal holds ("mrhs").
const LOCK_CLASS: i64 = 0x6d72_6873;

/// How much of each table the scratch copy takes.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The share of a large table's rows.
    pub fraction: f64,
    /// At most this many rows of one table.
    pub max_rows: i64,
    /// A table with fewer rows than this comes whole.
    pub whole_below: i64,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            fraction: 0.05,
            max_rows: 100_000,
            whole_below: 10_000,
        }
    }
}

/// One table of the copy: its size on the target and what the scratch database holds.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedTable {
    pub table: String,
    /// The planner's estimate of the target's rows (`reltuples`); for a table never analysed,
    /// its size at 100 bytes a row.
    pub target_rows: i64,
    /// The target table's size with its indexes and TOAST, in bytes.
    pub target_bytes: i64,
    /// Rows in the scratch copy.
    pub rows: i64,
    /// The whole table was copied.
    pub whole: bool,
    /// Rows added to the sample because sampled rows of another table reference them.
    pub parents_added: i64,
    /// Rows left out because their foreign key finds no parent (a key `NOT VALID` on the
    /// target, or a parent the sample could not fetch).
    pub orphans_left_out: i64,
}

/// How the scratch database was made and what became of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScratchReport {
    pub database: String,
    pub seconds: f64,
    pub tables: Vec<CopiedTable>,
    /// Leftovers of killed rehearsals found on the server and dropped.
    pub leftovers_dropped: Vec<String>,
    /// What could not be copied and did not stop the copy (a GRANT to a role the rehearsal
    /// may not grant to).
    pub warnings: Vec<String>,
}

/// A foreign key a migration adds to tables that exist: the sample must keep its parents too,
/// or the rehearsal would fail where production passes.
#[derive(Debug, Clone)]
pub struct FkHint {
    pub child: crate::model::QualifiedName,
    pub columns: Vec<String>,
    pub parent: crate::model::QualifiedName,
    pub ref_columns: Vec<String>,
}

/// The foreign keys the migrations add to existing tables (`ALTER TABLE … ADD … FOREIGN KEY`).
pub fn fk_hints(settings: &crate::config::Settings) -> Result<Vec<FkHint>, Error> {
    use crate::model::{ConstraintKind, Operation};
    let mut out = Vec::new();
    for entry in crate::files::list_dir(&settings.migrations_dir)? {
        let file = crate::files::load(&entry, settings.transaction)?;
        for ops in crate::analyze::Prepared::new(file).ops {
            for op in ops {
                if let Operation::AddConstraint {
                    table, constraint, ..
                } = op
                {
                    if let ConstraintKind::ForeignKey {
                        columns,
                        references,
                        ref_columns,
                    } = constraint.kind
                    {
                        out.push(FkHint {
                            child: table,
                            columns,
                            parent: references,
                            ref_columns,
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A scratch database made on the target's server; [`Scratch::remove`] drops it.
pub struct Scratch {
    pub url: String,
    pub name: String,
    /// A connection to the target's server holding the rehearsal's advisory lock.
    admin: PgConnection,
}

fn db(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::Database(format!("making the scratch copy ({what}): {e}"))
}

fn qn(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A key no other rehearsal is using: from the hasher's random seed, the time and the pid.
fn fresh_key() -> i64 {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    ));
    (seed & 0x7fff_ffff) as i64
}

/// The scratch database's name for a target database and a key, within 63 bytes.
pub fn scratch_name(target_db: &str, key: i64) -> String {
    let base: String = target_db
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("{PREFIX}{base}_{key:08x}")
}

/// The key in a scratch database's name, if it is one of ours.
fn key_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(PREFIX)?;
    let hex = rest.rsplit('_').next()?;
    (hex.len() == 8)
        .then(|| i64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Drops every scratch database of a killed rehearsal on the server: named with the prefix,
/// its lock held by nobody, nobody connected.
pub async fn drop_leftovers(admin: &mut PgConnection) -> Result<Vec<String>, Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT d.datname::text FROM pg_database d
         WHERE starts_with(d.datname::text, $1)
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
         ORDER BY 1",
    )
    .bind(PREFIX)
    .fetch_all(&mut *admin)
    .await
    .map_err(db("finding leftovers"))?;
    let mut dropped = Vec::new();
    for name in names {
        let Some(key) = key_of(&name) else { continue };
        let running: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                 AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2)",
        )
        .bind(LOCK_CLASS)
        .bind(key)
        .fetch_one(&mut *admin)
        .await
        .map_err(db("finding leftovers"))?;
        if running {
            continue;
        }
        let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(&name));
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *admin).await {
            Ok(_) => dropped.push(name),
            // Someone connected since: not a leftover after all.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55006") => {}
            Err(e) => return Err(db("dropping a leftover")(e)),
        }
    }
    Ok(dropped)
}

impl Scratch {
    /// Makes the scratch database on the target's server and copies into it.
    pub async fn make(
        target_url: &str,
        schemas: &[String],
        metadata_schema: &str,
        sample: &Sample,
        hints: &[FkHint],
        out: &mut dyn Write,
    ) -> Result<(Scratch, ScratchReport), Error> {
        let started = Instant::now();
        let mut admin = connect(target_url).await?;
        let mut report = ScratchReport {
            leftovers_dropped: drop_leftovers(&mut admin).await?,
            ..Default::default()
        };
        for l in &report.leftovers_dropped {
            let _ = writeln!(out, "dropped {l}, left by a rehearsal that was killed");
        }
        refuse_in_flight(&mut admin, metadata_schema).await?;
        let key = fresh_key();
        sqlx::query("SELECT pg_advisory_lock($1::int, $2::int)")
            .bind(LOCK_CLASS)
            .bind(key)
            .execute(&mut admin)
            .await
            .map_err(db("taking the rehearsal's lock"))?;
        let (target_db, encoding, collate, ctype): (String, String, String, String) =
            sqlx::query_as(
                "SELECT d.datname::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text
                 FROM pg_database d WHERE d.datname = current_database()",
            )
            .fetch_one(&mut admin)
            .await
            .map_err(db("reading the target database"))?;
        let name = scratch_name(&target_db, key);
        let url = crate::fleet::with_database(target_url, &name).map_err(|e| {
            Error::Usage(format!(
                "rehearse makes its scratch database beside the target, which needs the target as a URL: {e}; or give --scratch-url"
            ))
        })?;
        let create = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(&name),
            quote_literal(&encoding),
            quote_literal(&collate),
            quote_literal(&ctype)
        );
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut admin)
            .await
        {
            let denied = e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501");
            return Err(if denied {
                Error::Refused(format!(
                    "the rehearsal makes its scratch database on the target's server, and the role may not create databases ({e}): grant it CREATEDB, or give --scratch-url (a branch, a restored backup, a clone)"
                ))
            } else {
                db("creating the database")(e)
            });
        }
        let scratch = Scratch {
            url,
            name: name.clone(),
            admin,
        };
        let _ = writeln!(
            out,
            "made the scratch database {name} on the target's server; copying the schemas and a sample of the rows"
        );
        report.database = name;
        match copy(
            target_url,
            &scratch.url,
            schemas,
            metadata_schema,
            sample,
            hints,
            &mut report,
        )
        .await
        {
            Ok(()) => {
                report.seconds = started.elapsed().as_secs_f64();
                Ok((scratch, report))
            }
            Err(e) => {
                let _ = scratch.remove().await;
                Err(e)
            }
        }
    }

    /// Drops the scratch database (closing whatever is still connected to it) and releases the
    /// rehearsal's lock.
    pub async fn remove(mut self) -> Result<(), Error> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        let done = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.admin)
            .await
            .map_err(db("dropping the scratch database"));
        let _ = self.admin.close().await;
        done.map(|_| ())
    }
}

/// A made copy starts from a settled database: a migration in flight on the target would need
/// its backfill's cursors and its version schemas' views to match the sampled rows.
async fn refuse_in_flight(admin: &mut PgConnection, metadata_schema: &str) -> Result<(), Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass(format('%I.migrations', $1::text)) IS NOT NULL")
            .bind(metadata_schema)
            .fetch_one(&mut *admin)
            .await
            .map_err(db("reading the metadata"))?;
    if !exists {
        return Ok(());
    }
    let sql = format!(
        "SELECT name || ' (' || phase || ')' FROM {}.migrations
         WHERE phase NOT IN ('pending', 'complete', 'aborted') ORDER BY name",
        quote_ident(metadata_schema)
    );
    let busy: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(&mut *admin)
        .await
        .map_err(db("reading the metadata"))?;
    if busy.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{} in flight on the target: a made scratch copy starts from a database where every migration is complete, pending or aborted; finish or abort it first, or give --scratch-url (a copy taken as it is)",
        busy.join(", ")
    )))
}

/// Runs one statement of the copy on the scratch database.
async fn ddl(dst: &mut PgConnection, sql: String) -> Result<(), Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut *dst)
        .await
        .map(|_| ())
        .map_err(|e| {
            let mut shown: String = sql.chars().take(200).collect();
            if shown.len() < sql.len() {
                shown.push('…');
            }
            Error::Database(format!("making the scratch copy: {e}\n  in: {shown}"))
        })
}

/// A catalog condition: the object `oid` of catalog `cat` is not part of an extension.
fn not_extension(cat: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{cat}'::regclass AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

async fn copy(
    target_url: &str,
    scratch_url: &str,
    managed: &[String],
    metadata_schema: &str,
    sample: &Sample,
    hints: &[FkHint],
    report: &mut ScratchReport,
) -> Result<(), Error> {
    let mut src = connect(target_url).await?;
    // Every name the catalog's functions print comes schema-qualified; nothing is written.
    sqlx::raw_sql(
        "SET search_path = pg_catalog; SET standard_conforming_strings = on;
         SET default_transaction_read_only = on;
         BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    .execute(&mut src)
    .await
    .map_err(db("reading the target"))?;
    let mut dst = connect(scratch_url).await?;
    sqlx::raw_sql(
        "SET search_path = pg_catalog; SET standard_conforming_strings = on;
         SET check_function_bodies = off; SET client_min_messages = warning",
    )
    .execute(&mut dst)
    .await
    .map_err(db("opening the scratch database"))?;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_namespace n
         WHERE n.nspname = ANY($1) OR n.nspname = $2
            OR coalesce(obj_description(n.oid, 'pg_namespace'), '') LIKE 'migrate: %'
         ORDER BY n.nspname = $2 DESC, n.oid",
    )
    .bind(managed)
    .bind(metadata_schema)
    .fetch_all(&mut src)
    .await
    .map_err(db("reading the schemas"))?;
    let mut c = Copier {
        src: &mut src,
        dst: &mut dst,
        schemas,
        metadata_schema: metadata_schema.to_string(),
        report,
    };
    c.refuse_unsupported().await?;
    c.schemas_and_extensions().await?;
    c.types().await?;
    c.functions().await?;
    c.sequences().await?;
    let tables = c.tables().await?;
    c.rows(&tables, sample).await?;
    let fks = c.fk_list().await?;
    let mut wanted = c.hinted(hints, managed).await?;
    wanted.extend(fks.iter().cloned());
    c.pull_parents(&wanted).await?;
    c.constraints_and_indexes().await?;
    c.foreign_keys(fks).await?;
    c.views().await?;
    c.triggers_rules_policies().await?;
    c.grants().await?;
    c.comments().await?;
    c.sequence_values().await?;
    let _ = sqlx::raw_sql("COMMIT").execute(&mut src).await;
    let _ = src.close().await;
    ddl(&mut dst, "ANALYZE".into()).await?;
    let _ = dst.close().await;
    Ok(())
}

/// A table of the copy, as read from the target.
struct Table {
    oid: u32,
    schema: String,
    name: String,
    kind: String,
    /// The planner's row estimate; where the table was never analysed (or looks empty to the
    /// planner but has pages), minus a guess from its size at 100 bytes a row.
    reltuples: f64,
    bytes: i64,
}

impl Table {
    fn q(&self) -> String {
        qn(&self.schema, &self.name)
    }
}

/// A foreign key of a copied table.
#[derive(Clone)]
struct Fk {
    child: (String, String),
    parent: (String, String),
    parent_oid: u32,
    cols: Vec<String>,
    refs: Vec<String>,
    /// The parent's key columns' types, to read the keys back from their text.
    ref_types: Vec<String>,
    /// The statement that adds it, as on the target.
    add: String,
}

impl Fk {
    fn child_q(&self) -> String {
        qn(&self.child.0, &self.child.1)
    }

    /// A child row `c` whose key is set and finds no parent (MATCH SIMPLE).
    fn orphan_condition(&self) -> String {
        let set = self
            .cols
            .iter()
            .map(|c| format!("c.{} IS NOT NULL", quote_ident(c)));
        let matches = self
            .cols
            .iter()
            .zip(&self.refs)
            .map(|(c, r)| format!("p.{} = c.{}", quote_ident(r), quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        set.chain(std::iter::once(format!(
            "NOT EXISTS (SELECT 1 FROM {} p WHERE {matches})",
            qn(&self.parent.0, &self.parent.1)
        )))
        .collect::<Vec<_>>()
        .join(" AND ")
    }
}

struct Copier<'a> {
    src: &'a mut PgConnection,
    dst: &'a mut PgConnection,
    schemas: Vec<String>,
    metadata_schema: String,
    report: &'a mut ScratchReport,
}

impl Copier<'_> {
    /// What the copy does not know how to make is named up front, before anything is copied.
    async fn refuse_unsupported(&mut self) -> Result<(), Error> {
        let sql ="SELECT format('%s %I.%I', what, n.nspname, name) FROM (
               SELECT 'table with INHERITS' AS what, c.relnamespace AS ns, c.relname::text AS name, c.oid, 'pg_class' AS cat
               FROM pg_class c WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
               UNION ALL
               SELECT 'typed table', c.relnamespace, c.relname::text, c.oid, 'pg_class'
               FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.reloftype <> 0
               UNION ALL
               SELECT 'foreign table', c.relnamespace, c.relname::text, c.oid, 'pg_class'
               FROM pg_class c WHERE c.relkind = 'f'
               UNION ALL
               SELECT 'aggregate or window function', p.pronamespace, p.proname::text, p.oid, 'pg_proc'
               FROM pg_proc p WHERE p.prokind IN ('a', 'w')
               UNION ALL
               SELECT 'base or pseudo type', t.typnamespace, t.typname::text, t.oid, 'pg_type'
               FROM pg_type t WHERE t.typtype IN ('b', 'p') AND t.typcategory <> 'A'
             ) x JOIN pg_namespace n ON n.oid = x.ns
             WHERE n.nspname = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.cat::regclass AND e.objid = x.oid AND e.deptype = 'e')
             ORDER BY 1";
        let found: Vec<String> = sqlx::query_scalar(sql)
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the catalog"))?;
        if found.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "the scratch copy cannot make {}: give --scratch-url (a branch, a restored backup, a clone)",
            found.join(", ")
        )))
    }

    async fn schemas_and_extensions(&mut self) -> Result<(), Error> {
        for s in self.schemas.clone() {
            ddl(
                self.dst,
                format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&s)),
            )
            .await?;
        }
        let exts: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT e.extname::text, n.nspname::text, e.extversion FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname <> 'plpgsql' ORDER BY e.oid",
        )
        .fetch_all(&mut *self.src)
        .await
        .map_err(db("reading the extensions"))?;
        for (ext, schema, version) in exts {
            ddl(
                self.dst,
                format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&schema)),
            )
            .await?;
            ddl(
                self.dst,
                format!(
                    "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}",
                    quote_ident(&ext),
                    quote_ident(&schema),
                    quote_literal(&version)
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn types(&mut self) -> Result<(), Error> {
        let ext = not_extension("pg_type", "t.oid");
        // Enums, ranges, composites, then domains (a domain may be over any of them).
        let sql = format!(
            "SELECT n.nspname::text, t.typname::text, t.typtype::text,
                    coalesce((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '{{}}'),
                    coalesce((SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
                              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'),
                    (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid),
                    CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                    t.typnotnull, t.typdefault,
                    coalesce((SELECT array_agg(format('CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)) ORDER BY k.conname)
                              FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'), '{{}}')
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = ANY($1) AND {ext}
               AND (t.typtype IN ('e', 'r', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
             ORDER BY t.typtype = 'd', t.oid"
        );
        type TypeRow = (
            String,
            String,
            String,
            Vec<String>,
            Vec<String>,
            Option<String>,
            Option<String>,
            bool,
            Option<String>,
            Vec<String>,
        );
        let rows: Vec<TypeRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the types"))?;
        for (schema, name, kind, labels, attrs, subtype, base, not_null, default, checks) in rows {
            let q = qn(&schema, &name);
            let sql = match kind.as_str() {
                "e" => format!(
                    "CREATE TYPE {q} AS ENUM ({})",
                    labels
                        .iter()
                        .map(|l| quote_literal(l))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "c" => format!("CREATE TYPE {q} AS ({})", attrs.join(", ")),
                "r" => format!(
                    "CREATE TYPE {q} AS RANGE (SUBTYPE = {})",
                    subtype.unwrap_or_default()
                ),
                _ => {
                    let mut s = format!("CREATE DOMAIN {q} AS {}", base.unwrap_or_default());
                    if let Some(d) = default {
                        s.push_str(&format!(" DEFAULT {d}"));
                    }
                    if not_null {
                        s.push_str(" NOT NULL");
                    }
                    for c in checks {
                        s.push(' ');
                        s.push_str(&c);
                    }
                    s
                }
            };
            ddl(self.dst, sql).await?;
        }
        Ok(())
    }

    async fn functions(&mut self) -> Result<(), Error> {
        let sql = format!(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') AND {} ORDER BY p.oid",
            not_extension("pg_proc", "p.oid")
        );
        let defs: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the functions"))?;
        for d in defs {
            ddl(self.dst, d).await?;
        }
        Ok(())
    }

    /// Sequences of their own (an identity column's comes with its table); their values are
    /// set at the end.
    async fn sequences(&mut self) -> Result<(), Error> {
        let sql = format!(
            "SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                    s.seqmin, s.seqmax, s.seqcache, s.seqcycle
             FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND {}
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i')
             ORDER BY c.oid",
            not_extension("pg_class", "c.oid")
        );
        type Seq = (String, String, String, i64, i64, i64, i64, i64, bool);
        let rows: Vec<Seq> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the sequences"))?;
        for (schema, name, ty, start, inc, min, max, cache, cycle) in rows {
            ddl(
                self.dst,
                format!(
                    "CREATE SEQUENCE {} AS {ty} INCREMENT {inc} MINVALUE {min} MAXVALUE {max} START {start} CACHE {cache}{}",
                    qn(&schema, &name),
                    if cycle { " CYCLE" } else { "" }
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The tables and partitions with their columns, parents before their partitions; then
    /// which sequences they own.
    async fn tables(&mut self) -> Result<Vec<Table>, Error> {
        let sql = format!(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
                    CASE WHEN c.reltuples > 0 THEN c.reltuples::float8
                         WHEN pg_relation_size(c.oid) = 0 THEN 0
                         ELSE -(pg_relation_size(c.oid) / 100.0) END::float8,
                    pg_total_relation_size(c.oid),
                    CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                    CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
                    (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                       JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
                    array_to_string(c.reloptions, ', '),
                    (WITH RECURSIVE up(r, depth) AS (SELECT c.oid, 0 UNION ALL
                       SELECT i.inhparent, up.depth + 1 FROM up JOIN pg_inherits i ON i.inhrelid = up.r)
                     SELECT max(depth) FROM up)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND {}
             ORDER BY 12, c.oid",
            not_extension("pg_class", "c.oid")
        );
        type TableRow = (
            i64,
            String,
            String,
            String,
            String,
            f64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            i32,
        );
        let rows: Vec<TableRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the tables"))?;
        let mut out = Vec::new();
        for (oid, schema, name, kind, persistence, reltuples, bytes, key, bound, parent, opts, _) in
            rows
        {
            let t = Table {
                oid: oid as u32,
                schema,
                name,
                kind,
                reltuples,
                bytes,
            };
            let unlogged = if persistence == "u" { "UNLOGGED " } else { "" };
            let mut sql = match (&parent, &bound) {
                (Some(p), Some(b)) => {
                    format!("CREATE {unlogged}TABLE {} PARTITION OF {p} {b}", t.q())
                }
                _ => format!(
                    "CREATE {unlogged}TABLE {} ({})",
                    t.q(),
                    self.columns(t.oid).await?.join(", ")
                ),
            };
            if let Some(k) = key {
                sql.push_str(&format!(" PARTITION BY {k}"));
            }
            if let Some(o) = opts.filter(|o| !o.is_empty()) {
                sql.push_str(&format!(" WITH ({o})"));
            }
            ddl(self.dst, sql).await?;
            out.push(t);
        }
        // Sequences a column owns (serial), as on the target.
        let sql = format!(
            "SELECT format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.%I', sn.nspname, s.relname, tn.nspname, t.relname, a.attname)
             FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_namespace sn ON sn.oid = s.relnamespace
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
               AND sn.nspname = ANY($1) AND tn.nspname = ANY($1) AND {}",
            not_extension("pg_class", "s.oid")
        );
        let owned: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the sequences' owners"))?;
        for o in owned {
            ddl(self.dst, o).await?;
        }
        Ok(out)
    }

    /// A table's column definitions as on the target, in the target's order.
    async fn columns(&mut self, table: u32) -> Result<Vec<String>, Error> {
        type Col = (
            String,
            String,
            bool,
            Option<String>,
            String,
            String,
            Option<String>,
        );
        let cols: Vec<Col> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
                    CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                         THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co
                               JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(table as i64)
        .fetch_all(&mut *self.src)
        .await
        .map_err(db("reading the columns"))?;
        Ok(cols
            .into_iter()
            .map(
                |(name, ty, not_null, default, identity, generated, collation)| {
                    let mut s = format!("{} {ty}", quote_ident(&name));
                    if let Some(c) = collation {
                        s.push_str(&format!(" COLLATE {c}"));
                    }
                    match (generated.as_str(), identity.as_str(), default) {
                        ("s", _, Some(e)) => {
                            s.push_str(&format!(" GENERATED ALWAYS AS ({e}) STORED"))
                        }
                        ("v", _, Some(e)) => {
                            s.push_str(&format!(" GENERATED ALWAYS AS ({e}) VIRTUAL"))
                        }
                        (_, "a", _) => s.push_str(" GENERATED ALWAYS AS IDENTITY"),
                        (_, "d", _) => s.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
                        (_, _, Some(e)) => s.push_str(&format!(" DEFAULT {e}")),
                        _ => {}
                    }
                    if not_null {
                        s.push_str(" NOT NULL");
                    }
                    s
                },
            )
            .collect())
    }

    /// The rows: each leaf table whole or sampled, streamed in binary.
    async fn rows(&mut self, tables: &[Table], sample: &Sample) -> Result<(), Error> {
        for t in tables.iter().filter(|t| t.kind == "r") {
            let list = self.copy_columns(t.oid).await?;
            let estimate = t.reltuples.abs() as i64;
            let whole = t.schema == self.metadata_schema || estimate < sample.whole_below;
            let select = if whole {
                format!("SELECT {list} FROM {}", t.q())
            } else {
                // The share of blocks that gives about the rows wanted, with a margin.
                let want = (estimate as f64 * sample.fraction).min(sample.max_rows as f64);
                let pct = (want / estimate.max(1) as f64 * 120.0).clamp(0.01, 100.0);
                format!(
                    "SELECT {list} FROM {} TABLESAMPLE SYSTEM ({pct:.4}) LIMIT {}",
                    t.q(),
                    sample.max_rows
                )
            };
            let rows = stream_rows(
                self.src,
                self.dst,
                &format!("COPY ({select}) TO STDOUT (FORMAT binary)"),
                &format!("COPY {} ({list}) FROM STDIN (FORMAT binary)", t.q()),
            )
            .await?;
            self.report.tables.push(CopiedTable {
                table: format!("{}.{}", t.schema, t.name),
                target_rows: estimate,
                target_bytes: t.bytes,
                rows: rows as i64,
                whole,
                parents_added: 0,
                orphans_left_out: 0,
            });
        }
        Ok(())
    }

    /// Primary keys, unique, exclusion and check constraints, then the other indexes (a
    /// partition's own come from its parent's), then the replica identities.
    async fn constraints_and_indexes(&mut self) -> Result<(), Error> {
        let sql = format!(
            "SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, r.relname, k.conname, pg_get_constraintdef(k.oid))
             FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = ANY($1) AND r.relkind IN ('r', 'p') AND k.contype IN ('p', 'u', 'x', 'c')
               AND k.conparentid = 0 AND k.conislocal AND {}
             ORDER BY k.contype = 'c', r.oid, k.oid",
            not_extension("pg_class", "r.oid")
        );
        self.run_generated(&sql, "reading the constraints").await?;
        let sql = format!(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = ANY($1) AND r.relkind IN ('r', 'p') AND {}
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
               AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
             ORDER BY r.oid, i.indexrelid",
            not_extension("pg_class", "r.oid")
        );
        self.run_generated(&sql, "reading the indexes").await?;
        let sql = "SELECT format('ALTER TABLE %I.%I REPLICA IDENTITY %s', n.nspname, r.relname,
                      CASE r.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                        ELSE (SELECT format('USING INDEX %I', ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                              WHERE i.indrelid = r.oid AND i.indisreplident) END)
             FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = ANY($1) AND r.relkind IN ('r', 'p') AND r.relreplident <> 'd'";
        self.run_generated(sql, "reading the replica identities")
            .await
    }

    /// Runs each statement a catalog query on the target generates.
    async fn run_generated(&mut self, sql: &str, what: &str) -> Result<(), Error> {
        let stmts: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db(what))?;
        for s in stmts.into_iter().flatten() {
            ddl(self.dst, s).await?;
        }
        Ok(())
    }

    /// The foreign keys of the copied tables, each with its columns and the parent's.
    async fn fk_list(&mut self) -> Result<Vec<Fk>, Error> {
        let sql = format!(
            "SELECT cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text, p.oid::int8,
                    (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(f.conkey) WITH ORDINALITY k(n, i)
                       JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n),
                    (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(f.confkey) WITH ORDINALITY k(n, i)
                       JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.n),
                    (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.i) FROM unnest(f.confkey) WITH ORDINALITY k(n, i)
                       JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.n),
                    format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', cn.nspname, c.relname, f.conname, pg_get_constraintdef(f.oid))
             FROM pg_constraint f
             JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
             JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE f.contype = 'f' AND f.conparentid = 0 AND cn.nspname = ANY($1) AND {}
             ORDER BY f.oid",
            not_extension("pg_class", "c.oid")
        );
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the foreign keys"))?;
        Ok(rows
            .into_iter()
            .map(|(cs, ct, ps, pt, poid, cols, refs, ref_types, add)| Fk {
                child: (cs, ct),
                parent: (ps, pt),
                parent_oid: poid as u32,
                cols,
                refs,
                ref_types,
                add,
            })
            .collect())
    }

    /// The keys the migrations add, as foreign keys between tables the copy has (a name
    /// without a schema is in the first managed schema).
    async fn hinted(&mut self, hints: &[FkHint], managed: &[String]) -> Result<Vec<Fk>, Error> {
        let first = managed.first().map_or("public", String::as_str);
        let mut out = Vec::new();
        for h in hints {
            let schema_of =
                |q: &crate::model::QualifiedName| q.schema.clone().unwrap_or(first.to_string());
            let (cs, ps) = (schema_of(&h.child), schema_of(&h.parent));
            if !self.schemas.contains(&cs) || !self.schemas.contains(&ps) {
                continue;
            }
            let found: Option<(i64, Vec<String>)> = sqlx::query_as(
                "SELECT p.oid::int8, array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.i)
                 FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace
                 CROSS JOIN unnest($3::text[]) WITH ORDINALITY k(col, i)
                 JOIN pg_attribute a ON a.attrelid = p.oid AND a.attname = k.col AND NOT a.attisdropped
                 WHERE n.nspname = $1 AND p.relname = $2 AND p.relkind IN ('r', 'p')
                 GROUP BY p.oid HAVING count(*) = cardinality($3::text[])",
            )
            .bind(&ps)
            .bind(&h.parent.name)
            .bind(&h.ref_columns)
            .fetch_optional(&mut *self.src)
            .await
            .map_err(db("reading the keys the migrations add"))?;
            let child_has: bool = sqlx::query_scalar(
                "SELECT count(*) = cardinality($3::text[]) FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = ANY($3) AND NOT a.attisdropped",
            )
            .bind(&cs)
            .bind(&h.child.name)
            .bind(&h.columns)
            .fetch_one(&mut *self.src)
            .await
            .map_err(db("reading the keys the migrations add"))?;
            // A key to or from a table the migrations make, or on a column they add: nothing
            // on the target to keep.
            let Some((oid, ref_types)) = found.filter(|_| child_has) else {
                continue;
            };
            out.push(Fk {
                child: (cs, h.child.name.clone()),
                parent: (ps, h.parent.name.clone()),
                parent_oid: oid as u32,
                cols: h.columns.clone(),
                refs: h.ref_columns.clone(),
                ref_types,
                add: String::new(),
            });
        }
        Ok(out)
    }

    /// The rows a sampled row's foreign key needs, fetched from the target by key (through
    /// its index), until every sampled row has its parent: the sample keeps its children.
    async fn pull_parents(&mut self, fks: &[Fk]) -> Result<(), Error> {
        loop {
            let mut pulled = 0u64;
            for fk in fks {
                let parent_name = format!("{}.{}", fk.parent.0, fk.parent.1);
                if self
                    .report
                    .tables
                    .iter()
                    .any(|t| t.table == parent_name && t.whole)
                {
                    continue;
                }
                // The keys the scratch's rows reference and its parent lacks, as array literals.
                let arrays = fk
                    .cols
                    .iter()
                    .map(|c| format!("array_agg(m.{})::text", quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT ARRAY[{arrays}] FROM (SELECT DISTINCT {} FROM {} c WHERE {}) m",
                    fk.cols
                        .iter()
                        .map(|c| format!("c.{}", quote_ident(c)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    fk.child_q(),
                    fk.orphan_condition()
                );
                let keys: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(&mut *self.dst)
                    .await
                    .map_err(db("finding the parents a sample needs"))?;
                if keys.iter().any(Option::is_none) {
                    continue;
                }
                let keys: Vec<String> = keys.into_iter().flatten().collect();
                let typed =
                    |i: usize| format!("{}::{}[]", quote_literal(&keys[i]), fk.ref_types[i]);
                let condition = if fk.refs.len() == 1 {
                    format!("p.{} = ANY({})", quote_ident(&fk.refs[0]), typed(0))
                } else {
                    format!(
                        "({}) IN (SELECT * FROM unnest({}))",
                        fk.refs
                            .iter()
                            .map(|r| format!("p.{}", quote_ident(r)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        (0..fk.refs.len()).map(typed).collect::<Vec<_>>().join(", ")
                    )
                };
                let list = self.copy_columns(fk.parent_oid).await?;
                let parent = qn(&fk.parent.0, &fk.parent.1);
                let n = stream_rows(
                    self.src,
                    self.dst,
                    &format!(
                        "COPY (SELECT {list} FROM {parent} p WHERE {condition}) TO STDOUT (FORMAT binary)"
                    ),
                    &format!("COPY {parent} ({list}) FROM STDIN (FORMAT binary)"),
                )
                .await?;
                if let Some(t) = self
                    .report
                    .tables
                    .iter_mut()
                    .find(|t| t.table == parent_name)
                {
                    t.rows += n as i64;
                    t.parents_added += n as i64;
                }
                pulled += n;
            }
            if pulled == 0 {
                return Ok(());
            }
        }
    }

    /// The columns a COPY writes (not the generated ones), quoted, in order.
    async fn copy_columns(&mut self, table: u32) -> Result<String, Error> {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = $1::int8::oid
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        )
        .bind(table as i64)
        .fetch_all(&mut *self.src)
        .await
        .map_err(db("reading the columns"))?;
        Ok(cols
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// The foreign keys, after the rows whose key finds no parent in the copy are left out
    /// (again and again, as leaving a row out may orphan the rows that reference it): rows a
    /// key on the target does not hold either (`NOT VALID`) are all that is left to leave out.
    async fn foreign_keys(&mut self, fks: Vec<Fk>) -> Result<(), Error> {
        loop {
            let mut left_out = 0u64;
            for fk in &fks {
                let sql = format!(
                    "DELETE FROM {} c WHERE {}",
                    fk.child_q(),
                    fk.orphan_condition()
                );
                let n = sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *self.dst)
                    .await
                    .map_err(db("leaving out rows without a parent"))?
                    .rows_affected();
                if n > 0 {
                    left_out += n;
                    let name = format!("{}.{}", fk.child.0, fk.child.1);
                    if let Some(t) = self.report.tables.iter_mut().find(|t| t.table == name) {
                        t.orphans_left_out += n as i64;
                        t.rows -= n as i64;
                    }
                }
            }
            if left_out == 0 {
                break;
            }
        }
        for fk in fks {
            ddl(self.dst, fk.add).await?;
        }
        Ok(())
    }

    /// Views and materialized views, a view before those that read it (tried until every one
    /// is made), with their column defaults and the materialized views' indexes.
    async fn views(&mut self) -> Result<(), Error> {
        let sql = format!(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid),
                    array_to_string(c.reloptions, ', ')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('v', 'm') AND {} ORDER BY c.oid",
            not_extension("pg_class", "c.oid")
        );
        let mut pending: Vec<(String, String, String, String, Option<String>)> =
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(&self.schemas)
                .fetch_all(&mut *self.src)
                .await
                .map_err(db("reading the views"))?;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut last = None;
            let round = pending.len();
            for v in std::mem::take(&mut pending) {
                let (schema, name, kind, def, opts) = &v;
                let with = opts
                    .as_ref()
                    .filter(|o| !o.is_empty())
                    .map(|o| format!(" WITH ({o})"))
                    .unwrap_or_default();
                let what = if kind == "m" {
                    "MATERIALIZED VIEW"
                } else {
                    "VIEW"
                };
                let sql = format!(
                    "CREATE {what} {}{with} AS {}",
                    qn(schema, name),
                    def.trim_end().trim_end_matches(';')
                );
                if let Err(e) = ddl(self.dst, sql).await {
                    last = Some(e);
                    failed.push(v);
                }
            }
            if failed.len() == round {
                // No view could be made in a whole round: the error is real.
                if let Some(e) = last {
                    return Err(e);
                }
            }
            pending = failed;
        }
        let sql = "SELECT format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s', n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid))
             FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid AND c.relkind = 'v'
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.adnum
             WHERE n.nspname = ANY($1)";
        self.run_generated(sql, "reading the views' defaults")
            .await?;
        let sql = "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = ANY($1) AND r.relkind = 'm'";
        self.run_generated(sql, "reading the materialized views' indexes")
            .await
    }

    /// Triggers (as they are enabled), rules and row-level security with its policies: after
    /// the rows, so no trigger fires on the copy.
    async fn triggers_rules_policies(&mut self) -> Result<(), Error> {
        let sql = "SELECT pg_get_triggerdef(t.oid) || CASE t.tgenabled
                        WHEN 'D' THEN format('; ALTER TABLE %I.%I DISABLE TRIGGER %I', n.nspname, c.relname, t.tgname)
                        WHEN 'R' THEN format('; ALTER TABLE %I.%I ENABLE REPLICA TRIGGER %I', n.nspname, c.relname, t.tgname)
                        WHEN 'A' THEN format('; ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER %I', n.nspname, c.relname, t.tgname)
                        ELSE '' END
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.oid";
        self.run_generated(sql, "reading the triggers").await?;
        let sql =
            "SELECT pg_get_ruledef(r.oid) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND r.rulename <> '_RETURN' ORDER BY r.oid";
        self.run_generated(sql, "reading the rules").await?;
        let sql = "SELECT format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', n.nspname, c.relname)
                      || CASE WHEN c.relforcerowsecurity THEN format('; ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', n.nspname, c.relname) ELSE '' END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relrowsecurity";
        self.run_generated(sql, "reading row-level security")
            .await?;
        let sql = "SELECT format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s', p.polname, n.nspname, c.relname,
                        CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                        CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                        (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') FROM unnest(p.polroles) r))
                    || coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', '')
                    || coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '')
             FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) ORDER BY p.oid";
        self.run_generated(sql, "reading the policies").await
    }

    /// The GRANTs of schemas, relations, columns and functions. One that fails (the rehearsal's
    /// role may not grant it) is a warning: the rehearsal's probes run as that role.
    async fn grants(&mut self) -> Result<(), Error> {
        let sql = "SELECT format('GRANT %s ON SCHEMA %I TO %s%s', a.privilege_type, n.nspname,
                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = ANY($1) AND a.grantee <> n.nspowner
           UNION ALL
           SELECT format('GRANT %s ON %s %I.%I TO %s%s', a.privilege_type,
                          CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname,
                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND a.grantee <> c.relowner
           UNION ALL
           SELECT format('GRANT %s (%I) ON TABLE %I.%I TO %s%s', a.privilege_type, at.attname, n.nspname, c.relname,
                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
                  aclexplode(at.attacl) a
             WHERE n.nspname = ANY($1) AND at.attnum > 0 AND NOT at.attisdropped AND a.grantee <> c.relowner
           UNION ALL
           SELECT CASE WHEN a.grantee IS NULL THEN format('REVOKE EXECUTE ON FUNCTION %I.%I(%s) FROM PUBLIC', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
                  ELSE format('GRANT %s ON FUNCTION %I.%I(%s) TO %s', a.privilege_type, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) END
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             LEFT JOIN LATERAL (SELECT * FROM aclexplode(p.proacl) x WHERE x.grantee <> p.proowner
                                UNION ALL SELECT NULL, NULL, NULL, false WHERE NOT EXISTS (SELECT 1 FROM aclexplode(p.proacl) y WHERE y.grantee = 0)) a ON true
             WHERE n.nspname = ANY($1) AND p.proacl IS NOT NULL AND p.prokind IN ('f', 'p')";
        let stmts: Vec<String> = sqlx::query_scalar(sql)
            .bind(&self.schemas)
            .fetch_all(&mut *self.src)
            .await
            .map_err(db("reading the grants"))?;
        for s in stmts {
            if let Err(e) = ddl(self.dst, s).await {
                self.report.warnings.push(e.to_string());
            }
        }
        Ok(())
    }

    /// Comments on schemas, relations and columns: `migrate`'s own marks among them.
    async fn comments(&mut self) -> Result<(), Error> {
        type Comment = (String, Option<String>, Option<String>, String, String);
        let rows: Vec<Comment> = sqlx::query_as(
            "SELECT 'SCHEMA', NULL, NULL, n.nspname::text, d.description FROM pg_namespace n
               JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
               WHERE n.nspname = ANY($1)
             UNION ALL
             SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                    n.nspname::text, NULL, c.relname::text, d.description
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
               WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
             UNION ALL
             SELECT 'COLUMN', n.nspname::text, c.relname::text, a.attname::text, d.description
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid > 0
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
               WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm')",
        )
        .bind(&self.schemas)
        .fetch_all(&mut *self.src)
        .await
        .map_err(db("reading the comments"))?;
        for (kind, schema, table, name, text) in rows {
            let target = match (kind.as_str(), schema, table) {
                ("COLUMN", Some(s), Some(t)) => {
                    format!("{}.{}", qn(&s, &t), quote_ident(&name))
                }
                (_, Some(s), _) => qn(&s, &name),
                _ => quote_ident(&name),
            };
            ddl(
                self.dst,
                format!("COMMENT ON {kind} {target} IS {}", quote_literal(&text)),
            )
            .await?;
        }
        Ok(())
    }

    /// Every sequence continues where the target's is: no copied row's key is handed out again.
    async fn sequence_values(&mut self) -> Result<(), Error> {
        // The CASE keeps the function off relations that are not sequences, whatever order
        // the planner filters in.
        let values: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT format('%I.%I', n.nspname, c.relname),
                    CASE WHEN c.relkind = 'S' THEN pg_sequence_last_value(c.oid) END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'S' AND n.nspname = ANY($1)",
        )
        .bind(&self.schemas)
        .fetch_all(&mut *self.src)
        .await
        .map_err(db("reading the sequences' values"))?;
        for (seq, value) in values {
            let Some(value) = value else { continue };
            sqlx::query("SELECT setval($1::regclass, $2, true)")
                .bind(&seq)
                .bind(value)
                .execute(&mut *self.dst)
                .await
                .map_err(db("setting the sequences"))?;
        }
        Ok(())
    }
}

/// Streams one `COPY … TO STDOUT` on the target into one `COPY … FROM STDIN` on the scratch
/// database; the rows copied.
async fn stream_rows(
    src: &mut PgConnection,
    dst: &mut PgConnection,
    out_sql: &str,
    in_sql: &str,
) -> Result<u64, Error> {
    let mut stream = src
        .copy_out_raw(out_sql)
        .await
        .map_err(db("reading the rows"))?;
    let mut sink = dst
        .copy_in_raw(in_sql)
        .await
        .map_err(db("writing the rows"))?;
    loop {
        let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
        match next {
            Some(Ok(chunk)) => {
                if let Err(e) = sink.send(chunk).await {
                    return Err(db("writing the rows")(e));
                }
            }
            Some(Err(e)) => {
                let _ = sink.abort(e.to_string()).await;
                return Err(db("reading the rows")(e));
            }
            None => break,
        }
    }
    sink.finish().await.map_err(db("writing the rows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_name_holds_its_key_and_fits() {
        let long = "a".repeat(80);
        let n = scratch_name(&long, 0x1234_abcd);
        assert!(n.len() <= 63, "{n}");
        assert_eq!(key_of(&n), Some(0x1234_abcd));
        assert_eq!(
            scratch_name("Shop-Prod", 7),
            "migrate_rehearsal_shop_prod_00000007"
        );
        assert_eq!(key_of("migrate_rehearsal_x_zz"), None);
        assert_eq!(key_of("other_db_00000007"), None);
    }
}
