//! An app version's probe during a rehearsal: on its version's `search_path`, over and over, a
//! prepared `SELECT *` of a row by its key and an `UPDATE` that writes a column its version
//! knows back to itself (undone to a savepoint), round the tables it sees — as an app whose statements are prepared
//! once and then meet every change the rehearsal makes. Every failure is kept.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one version's probe saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    pub version: String,
    pub search_path: String,
    pub requests: u64,
    pub failed: u64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first failures, as the database reported them, with the phase they fell in.
    pub errors: Vec<String>,
}

/// A running probe; [`Probe::stop`] ends it and returns what it saw.
pub struct Probe {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<&'static str>>,
    task: tokio::task::JoinHandle<ProbeReport>,
}

/// One table as the version sees it: its name on the path, its key column, a column to write
/// back, and some keys.
struct Seen {
    table: String,
    /// The key column and its type.
    key: Option<(String, String)>,
    write: Option<String>,
    keys: Vec<String>,
}

impl Probe {
    /// Connects on `path` and starts probing the `tables` the version knows (by name, as its
    /// path finds them); `phase` names what the rehearsal is doing, for the failures.
    pub async fn start(
        url: &str,
        version: &str,
        path: &str,
        tables: &[String],
        phase: &'static str,
    ) -> Result<Probe, crate::error::Error> {
        let db = |e: sqlx::Error| {
            crate::error::Error::Database(format!("the {version} version's probe: {e}"))
        };
        let mut c = PgConnection::connect(url).await.map_err(db)?;
        crate::load::app_session(
            &mut c,
            Some(&format!("migrate rehearsal probe ({version})")),
            Some(path),
        )
        .await
        .map_err(db)?;
        let mut seen_tables = seen(&mut c).await.map_err(db)?;
        seen_tables.retain(|t| tables.contains(&t.table));
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new(phase));
        let report = ProbeReport {
            version: version.to_string(),
            search_path: path.to_string(),
            ..Default::default()
        };
        let task = tokio::spawn(run(c, seen_tables, stop.clone(), phase.clone(), report));
        Ok(Probe { stop, phase, task })
    }

    /// What the rehearsal does now.
    pub fn phase(&self, phase: &'static str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    pub async fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// The tables on the connection's path (the first schema that has a name wins), each with its
/// one-column primary key, the first other column, and up to 50 keys.
async fn seen(c: &mut PgConnection) -> Result<Vec<Seen>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH path AS (SELECT s, i FROM unnest(current_schemas(false)) WITH ORDINALITY AS p(s, i)),
              rel AS (SELECT DISTINCT ON (c.relname) c.oid, c.relname, c.relkind
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN path ON path.s = n.nspname
                      WHERE c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
                      ORDER BY c.relname, path.i)
         SELECT rel.relname::text,
                (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = rel.oid AND a.attnum > 0
                   AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1),
                (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = rel.oid
                   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1),
                (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = rel.oid AND a.attnum > 1
                   AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = '' ORDER BY a.attnum LIMIT 1)
         FROM rel ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let table: String = r.get(0);
        let first: Option<String> = r.get(1);
        let ty: Option<String> = r.get(2);
        let write: Option<String> = r.get(3);
        let q = crate::model::quote_ident;
        // The first column as the key when its values are unique among the rows sampled.
        let keys: Vec<String> = match &first {
            Some(k) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT DISTINCT {k}::text FROM (SELECT {k} FROM {t} LIMIT 50) s WHERE {k} IS NOT NULL",
                k = q(k),
                t = q(&table)
            )))
            .fetch_all(&mut *c)
            .await
            .unwrap_or_default(),
            None => Vec::new(),
        };
        out.push(Seen {
            table,
            key: first.zip(ty).filter(|_| !keys.is_empty()),
            write,
            keys,
        });
    }
    Ok(out)
}

async fn run(
    mut c: PgConnection,
    tables: Vec<Seen>,
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<&'static str>>,
    mut report: ProbeReport,
) -> ProbeReport {
    let q = crate::model::quote_ident;
    let mut times = crate::load::Timings::default();
    let mut n = 0usize;
    // At least one request each time it runs, however short the window.
    while !tables.is_empty() && (n == 0 || !stop.load(Ordering::SeqCst)) {
        let t = &tables[n % tables.len()];
        n += 1;
        let started = Instant::now();
        let result = match (&t.key, t.keys.get(n % t.keys.len().max(1))) {
            (Some((k, ty)), Some(v)) => {
                let read = format!("SELECT * FROM {} WHERE {} = $1::{ty}", q(&t.table), q(k));
                let r = sqlx::query(AssertSqlSafe(read))
                    .bind(v)
                    .fetch_optional(&mut c)
                    .await
                    .map(|_| ());
                match (&t.write, r) {
                    (Some(w), Ok(())) => {
                        let write = format!(
                            "UPDATE {t} SET {w} = {w} WHERE {k} = $1::{ty}",
                            t = q(&t.table),
                            w = q(w),
                            k = q(k)
                        );
                        // Undone to a savepoint: the write meets every view, trigger,
                        // constraint and lock on its way, and leaves the rows (an
                        // `updated_at` trigger's among them) for the rehearsal's comparison as
                        // the migration left them. The transaction itself commits: a rolled
                        // back one a request would count as the app failing, and the guard
                        // would pause the rehearsal for it.
                        match c.begin().await {
                            Ok(mut tx) => {
                                let r = async {
                                    sqlx::raw_sql("SAVEPOINT probe").execute(&mut *tx).await?;
                                    sqlx::query(AssertSqlSafe(write))
                                        .bind(v)
                                        .execute(&mut *tx)
                                        .await?;
                                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT probe")
                                        .execute(&mut *tx)
                                        .await
                                        .map(|_| ())
                                }
                                .await;
                                match r {
                                    Ok(()) => tx.commit().await,
                                    Err(e) => {
                                        let _ = tx.rollback().await;
                                        Err(e)
                                    }
                                }
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (_, r) => r,
                }
            }
            _ => {
                let read = format!("SELECT * FROM {} LIMIT 1", q(&t.table));
                sqlx::query(AssertSqlSafe(read))
                    .fetch_optional(&mut c)
                    .await
                    .map(|_| ())
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = result {
            times.fail();
            if report.errors.len() < 5 {
                let during = phase.lock().map(|p| *p).unwrap_or("?");
                report
                    .errors
                    .push(format!("during {during}, {}: {e}", t.table));
            }
        } else {
            times.ok(ms);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.requests = times.requests() as u64;
    report.failed = times.failed;
    report.p99_ms = times.percentile(0.99);
    report.max_ms = times.max();
    let _ = c.close().await;
    report
}
