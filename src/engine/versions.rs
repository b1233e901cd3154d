//! Version schemas: one schema per app version, first on its `search_path`, holding a view of a
//! table only while that version's shape of the table differs from the table itself.
//!
//! Through a view, ORMs that read the catalog find no primary key, and `COPY`, `TRUNCATE` and
//! other tools' DDL fail; so a version reads the tables themselves wherever it can. A version
//! schema starts empty. When a table that a prepared statement reads changes, PostgreSQL
//! analyses the statement again under the `search_path` it was prepared with, so a view made
//! (and committed) just before the change takes over that version's statements with the same
//! result shape: before an expand changes a table's shape, every other version that reads the
//! table itself gets its view of the table as it is ([`TableView::as_is`]). The new version gets
//! a view only where the expand cannot give the table its shape (a column hidden until contract
//! drops it, a type change's shadow shown under the column's name, placed where the swap at
//! contract puts it), and a view that has come to equal its table is dropped ([`Held`]), so
//! after contract the newest version reads tables only.
//!
//! Nothing an app made is dropped: what `migrate` makes carries a comment, contract and abort
//! drop only those views and the schemas by name, never `CASCADE`, and anything else in a
//! version schema, or anywhere that depends on one of its views, stops the step before anything
//! is dropped, named with its owner and the fix.
//!
//! The views carry what a view does not inherit: column defaults (for `UPDATE … SET c =
//! DEFAULT` and `ON CONFLICT`), the tables' GRANTs (table and column level) and USAGE on the
//! schema (never CREATE), and row-level security: `security_invoker` from PostgreSQL 15, so
//! every query is checked as the app's own role; before 15 a view runs as its owner, which would
//! bypass row security, so a view of a table with it is refused.

use crate::config::PgVersion;
use crate::error::Error;
use crate::model::quote_ident;
use crate::plan::rewrites::generated_name;
use crate::plan::ViewChange;
use sqlx::{PgConnection, Row};

/// The comment on every view and schema `migrate` makes: what carries it is `migrate`'s to drop.
pub const MARK: &str = "migrate: ";

/// The version schema of a migration: `<metadata schema>_<migration>`, within 63 bytes.
pub fn schema_name(metadata_schema: &str, migration: &str) -> String {
    generated_name(metadata_schema, &[migration])
}

/// The `search_path` an app of this version connects with: its version schema, then the
/// managed schemas, so functions, types and sequences still resolve. Without spaces, so that
/// it goes as it is into `-c search_path=…` of libpq's `options` and `PGOPTIONS`, which split
/// at spaces.
pub fn search_path(version_schema: &str, managed: &[String]) -> String {
    std::iter::once(version_schema)
        .chain(managed.iter().map(String::as_str))
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(",")
}

/// A privilege on a table or one of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub privilege: String,
    /// None: PUBLIC.
    pub grantee: Option<String>,
    pub grantable: bool,
    /// A column privilege: the table's column.
    pub column: Option<String>,
}

/// A column of a live table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveColumn {
    pub name: String,
    pub default: Option<String>,
    /// Identity or generated: the server fills it, and a view default would get in its way.
    pub server_filled: bool,
}

/// A table of a managed schema, as the catalog has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTable {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    pub row_security: bool,
    pub columns: Vec<LiveColumn>,
    pub grants: Vec<Grant>,
}

/// One column of a view: the table's column it shows, under the version's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    pub physical: String,
    pub default: Option<String>,
}

/// A table as one version sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableView {
    /// The view's name in the version schema.
    pub name: String,
    pub table: LiveTable,
    pub columns: Vec<ViewColumn>,
}

impl TableView {
    /// The table as it is: what a version that reads the table itself sees, kept as a view
    /// before a step changes the table.
    pub fn as_is(t: &LiveTable) -> TableView {
        TableView {
            name: t.name.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| ViewColumn {
                    name: c.name.clone(),
                    physical: c.name.clone(),
                    default: c.default.clone().filter(|_| !c.server_filled),
                })
                .collect(),
            table: t.clone(),
        }
    }

    /// Whether the version sees the table other than as it is, so it needs a view. The columns
    /// are a subsequence of the table's, in its order: the same count under the same names is
    /// the table itself.
    pub fn differs(&self) -> bool {
        self.name != self.table.name
            || self.columns.len() != self.table.columns.len()
            || self.columns.iter().any(|c| c.name != c.physical)
    }
}

fn db(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::Database(format!("{context}: {e}"))
}

/// The tables of the managed schemas (not partitions: the app reads their parent), with
/// their columns and privileges.
pub async fn read_tables(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<Vec<LiveTable>, Error> {
    let rows = sqlx::query(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relrowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY array_position($1, n.nspname::text), c.relname",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the tables for the version schema"))?;
    let mut tables: Vec<LiveTable> = rows
        .iter()
        .map(|r| LiveTable {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            row_security: r.get(3),
            columns: Vec::new(),
            grants: Vec::new(),
        })
        .collect();
    let oids: Vec<i64> = tables.iter().map(|t| t.oid).collect();
    let columns = sqlx::query(
        "SELECT a.attrelid::int8, a.attname::text, pg_get_expr(d.adbin, d.adrelid),
                a.attidentity <> '' OR a.attgenerated <> ''
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = ANY($1::int8[]::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attrelid, a.attnum",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the columns for the version schema"))?;
    // Privileges granted to the migrating role itself need no copy: it owns the views.
    let grants = sqlx::query(
        "SELECT g.oid, g.col, p.privilege_type::text, r.rolname::text, p.is_grantable
         FROM (SELECT c.oid::int8 AS oid, NULL::text AS col, coalesce(c.relacl, acldefault('r', c.relowner)) AS acl
               FROM pg_class c WHERE c.oid = ANY($1::int8[]::oid[])
               UNION ALL
               SELECT a.attrelid::int8, a.attname::text, a.attacl
               FROM pg_attribute a
               WHERE a.attrelid = ANY($1::int8[]::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
                 AND a.attacl IS NOT NULL) g,
              aclexplode(g.acl) p
         LEFT JOIN pg_roles r ON r.oid = p.grantee
         WHERE p.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
           AND p.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
         ORDER BY 1, 2 NULLS FIRST, 4 NULLS FIRST, 3",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the tables' privileges for the version schema"))?;
    for t in &mut tables {
        t.columns = columns
            .iter()
            .filter(|r| r.get::<i64, _>(0) == t.oid)
            .map(|r| LiveColumn {
                name: r.get(1),
                default: r.get(2),
                server_filled: r.get(3),
            })
            .collect();
        t.grants = grants
            .iter()
            .filter(|r| r.get::<i64, _>(0) == t.oid)
            .map(|r| Grant {
                column: r.get(1),
                privilege: r.get(2),
                grantee: r.get(3),
                grantable: r.get(4),
            })
            .collect();
    }
    Ok(tables)
}

/// The roles (None: PUBLIC) with USAGE on every managed schema: the version schema gives its
/// USAGE to them alone.
pub async fn schema_usage(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<Vec<Option<String>>, Error> {
    let rows = sqlx::query(
        "SELECT r.rolname::text
         FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) p
         LEFT JOIN pg_roles r ON r.oid = p.grantee
         WHERE n.nspname = ANY($1) AND p.privilege_type = 'USAGE'
           AND p.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
         GROUP BY p.grantee, r.rolname
         HAVING count(DISTINCT n.oid) = cardinality($1)
         ORDER BY 1 NULLS FIRST",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading USAGE on the managed schemas"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether a change's table (an unqualified name is in `public`) is this one.
fn is(t: &TableView, name: &crate::model::QualifiedName) -> bool {
    t.table.name == name.name && t.table.schema == name.schema_name()
}

/// The tables as a version sees them: the live tables with `changes` applied in order. A
/// change whose column or table is not there (a rename made at expand, a contract that ran) is
/// a no-op. Only those that [`TableView::differs`] need a view.
pub fn shape<'a>(
    tables: &[LiveTable],
    changes: impl IntoIterator<Item = &'a ViewChange>,
) -> Vec<TableView> {
    let mut views: Vec<TableView> = tables.iter().map(TableView::as_is).collect();
    for change in changes {
        if let ViewChange::HideTable { table } = change {
            // The version reads the table itself (it could not be hidden from a path that
            // holds its schema): nothing to make.
            views.retain(|v| !is(v, table));
            continue;
        }
        let Some(v) = views.iter_mut().find(|v| is(v, change.table())) else {
            continue;
        };
        match change {
            ViewChange::RenameColumn { from, to, .. } => {
                if let Some(c) = v.columns.iter_mut().find(|c| c.physical == *from) {
                    c.name = to.clone();
                }
            }
            ViewChange::RenameTable { to, .. } => v.name = to.clone(),
            ViewChange::HideColumn { column, .. } => v.columns.retain(|c| c.physical != *column),
            ViewChange::ReplaceColumn { column, with, .. } => {
                // The shadow shows under the column's name where it stands in the table, which
                // is where the swap at contract leaves the column: the view then equals the
                // table, and goes.
                if !v.columns.iter().any(|c| c.physical == *with) {
                    continue;
                }
                let Some(at) = v.columns.iter().position(|c| c.physical == *column) else {
                    continue;
                };
                let original = v.columns.remove(at);
                if let Some(c) = v.columns.iter_mut().find(|c| c.physical == *with) {
                    c.name = original.name;
                    // The shadow gets the original's default only at the swap.
                    c.default = c.default.take().or(original.default);
                }
            }
            ViewChange::HideTable { .. } => {}
        }
    }
    views
}

fn grantee(g: &Option<String>) -> String {
    g.as_deref()
        .map_or_else(|| "PUBLIC".to_string(), quote_ident)
}

/// The SQL that makes the version schema `schema` if it is missing: the schema, its comment,
/// and USAGE for the roles that have it on every managed schema (never CREATE).
pub fn schema_sql(schema: &str, usage: &[Option<String>], migration: &str) -> Vec<String> {
    let vs = quote_ident(schema);
    let mut sql = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {vs}"),
        format!(
            "COMMENT ON SCHEMA {vs} IS '{MARK}the tables as version {} sees them where they differ from the tables'",
            migration.replace('\'', "''")
        ),
    ];
    for u in usage {
        sql.push(format!("GRANT USAGE ON SCHEMA {vs} TO {}", grantee(u)));
    }
    sql
}

/// The SQL that makes `views` in the version schema `schema` of `migration`: each view, its
/// comment, its columns' defaults and its table's grants.
pub fn views_sql(
    schema: &str,
    views: &[&TableView],
    pg: PgVersion,
    migration: &str,
) -> Result<Vec<String>, Error> {
    let vs = quote_ident(schema);
    let invoker = pg.at_least(15);
    let mut sql = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for v in views {
        if !seen.insert(v.name.clone()) {
            return Err(Error::Refused(format!(
                "two managed tables show as {} in version {migration}: a version schema holds one view per name; list one of their schemas only in `schemas`, or set views = false",
                quote_ident(&v.name)
            )));
        }
        let table = format!(
            "{}.{}",
            quote_ident(&v.table.schema),
            quote_ident(&v.table.name)
        );
        if v.table.row_security && !invoker {
            return Err(Error::Refused(format!(
                "{table} has row-level security, and version {migration} needs a view of it: before PostgreSQL 15 a view runs as its owner and would bypass it; upgrade to 15 or later, or set views = false; nothing was changed"
            )));
        }
        let view = format!("{vs}.{}", quote_ident(&v.name));
        let cols: Vec<String> = v
            .columns
            .iter()
            .map(|c| {
                if c.name == c.physical {
                    quote_ident(&c.name)
                } else {
                    format!("{} AS {}", quote_ident(&c.physical), quote_ident(&c.name))
                }
            })
            .collect();
        sql.push(format!(
            "CREATE VIEW {view}{} AS SELECT {} FROM {table}",
            if invoker {
                " WITH (security_invoker = true)"
            } else {
                ""
            },
            cols.join(", ")
        ));
        sql.push(format!(
            "COMMENT ON VIEW {view} IS '{MARK}{} as version {} reads it'",
            table.replace('\'', "''"),
            migration.replace('\'', "''")
        ));
        for c in &v.columns {
            if let Some(d) = &c.default {
                sql.push(format!(
                    "ALTER VIEW {view} ALTER COLUMN {} SET DEFAULT {d}",
                    quote_ident(&c.name)
                ));
            }
        }
        for g in &v.table.grants {
            let on = match &g.column {
                None => String::new(),
                Some(col) => match v.columns.iter().find(|c| c.physical == *col) {
                    Some(c) => format!(" ({})", quote_ident(&c.name)),
                    // A column this version does not show.
                    None => continue,
                },
            };
            sql.push(format!(
                "GRANT {}{on} ON {view} TO {}{}",
                g.privilege,
                grantee(&g.grantee),
                if g.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(sql)
}

/// A view `migrate` made in a version schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnView {
    pub schema: String,
    pub name: String,
    /// The table it reads.
    pub table: Option<i64>,
    /// It shows its table as it is, under the table's name, in a managed schema where the name
    /// finds it: the version reads the same through the table itself.
    pub equals_table: bool,
}

/// Something in or on a version schema that `migrate` did not make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Foreign {
    /// `table migrate_0002_x.sessions`, `materialized view public.totals`.
    pub what: String,
    pub owner: String,
    /// The version schema it is in, or whose view it depends on.
    pub schema: String,
    /// For a dependent object: the view of ours it reads.
    pub reads: Option<String>,
    /// What to do about it.
    pub fix: String,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reads {
            Some(view) => write!(
                f,
                "{} (owner {}) reads {view}: {}",
                self.what, self.owner, self.fix
            ),
            None => write!(f, "{} (owner {}): {}", self.what, self.owner, self.fix),
        }
    }
}

/// What some version schemas hold: `migrate`'s views, and what others made in them or over
/// their views.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub own: Vec<OwnView>,
    pub foreign: Vec<Foreign>,
}

impl Held {
    /// The views of ours in `schema`.
    pub fn own_in<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a OwnView> + 'a {
        self.own.iter().filter(move |v| v.schema == schema)
    }

    /// Whether something depends on this view of ours.
    fn depended_on(&self, v: &OwnView) -> bool {
        let view = format!("{}.{}", quote_ident(&v.schema), quote_ident(&v.name));
        self.foreign
            .iter()
            .any(|f| f.reads.as_deref() == Some(&view))
    }

    /// Views of ours that equal their tables and that nothing depends on: dropping one changes
    /// nothing its version reads.
    pub fn redundant(&self) -> Vec<&OwnView> {
        self.own
            .iter()
            .filter(|v| v.equals_table && !self.depended_on(v))
            .collect()
    }
}

/// Reads what `schemas` (version schemas) hold. A view is `migrate`'s when it carries
/// [`MARK`], or, in a schema made by an earlier release (which made every view in the
/// transaction that made the schema), when it was made in that same transaction.
pub async fn held(
    conn: &mut PgConnection,
    schemas: &[String],
    managed: &[String],
) -> Result<Held, Error> {
    let mut held = Held::default();
    if schemas.is_empty() {
        return Ok(held);
    }
    let rows = sqlx::query(
        "WITH rel AS (
           SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind,
                  pg_get_userbyid(c.relowner)::text AS owner,
                  c.relkind = 'v' AND (coalesce(obj_description(c.oid, 'pg_class'), '') LIKE $3 || '%'
                    OR (coalesce(obj_description(n.oid, 'pg_namespace'), '') LIKE $3 || '%' AND c.xmin = n.xmin)) AS own,
                  (SELECT min(d.refobjid) FROM pg_rewrite r
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid AND d.refobjsubid > 0
                   WHERE r.ev_class = c.oid) AS tbl
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
             AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
         ),
         sig AS (
           SELECT a.attrelid, string_agg(format('%s:%s:%s:%s', a.attname, a.atttypid, a.atttypmod, a.attcollation), ',' ORDER BY a.attnum) AS s
           FROM pg_attribute a
           WHERE a.attrelid IN (SELECT oid FROM rel UNION SELECT tbl FROM rel WHERE tbl IS NOT NULL)
             AND a.attnum > 0 AND NOT a.attisdropped
           GROUP BY a.attrelid
         )
         SELECT rel.schema, rel.name, rel.relkind::text, rel.owner, rel.own, rel.tbl::int8,
                rel.own AND t.relname = rel.name AND tn.nspname = ANY($2)
                  AND vs.s IS NOT DISTINCT FROM ts.s
                  -- and the name finds this table on the version's path, not one of an
                  -- earlier managed schema
                  AND NOT EXISTS (SELECT 1 FROM pg_class o JOIN pg_namespace onn ON onn.oid = o.relnamespace
                                  WHERE o.relname = rel.name AND onn.nspname = ANY($2)
                                    AND array_position($2, onn.nspname::text) < array_position($2, tn.nspname::text))
                  AS equals_table
         FROM rel
         LEFT JOIN pg_class t ON t.oid = rel.tbl
         LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
         LEFT JOIN sig vs ON vs.attrelid = rel.oid
         LEFT JOIN sig ts ON ts.attrelid = rel.tbl
         ORDER BY rel.schema, rel.name",
    )
    .bind(schemas)
    .bind(managed)
    .bind(MARK)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading what the version schemas hold"))?;
    for r in &rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        let q = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        if r.get::<bool, _>(4) {
            held.own.push(OwnView {
                schema,
                name,
                table: r.get(5),
                equals_table: r.get::<Option<bool>, _>(6).unwrap_or(false),
            });
            continue;
        }
        let kind = match r.get::<String, _>(2).as_str() {
            "r" | "p" => "table",
            "v" => "view",
            "m" => "materialized view",
            "S" => "sequence",
            "f" => "foreign table",
            _ => "type",
        };
        let target = managed.first().map_or("public", String::as_str);
        let fix = match kind {
            "table" | "foreign table" => format!(
                "move it where every version sees it: ALTER TABLE {q} SET SCHEMA {}",
                quote_ident(target)
            ),
            "view" | "materialized view" => format!(
                "move it where every version sees it: ALTER {} {q} SET SCHEMA {} (or drop it)",
                kind.to_uppercase(),
                quote_ident(target)
            ),
            "sequence" => format!("ALTER SEQUENCE {q} SET SCHEMA {}", quote_ident(target)),
            _ => format!("ALTER TYPE {q} SET SCHEMA {}", quote_ident(target)),
        };
        held.foreign.push(Foreign {
            what: format!("{kind} {q}"),
            owner: r.get(3),
            schema,
            reads: None,
            fix,
        });
    }
    // Functions, and types that are not a relation's row type or an array, made in the schemas.
    let others = sqlx::query(
        "SELECT n.nspname::text, format('function %s.%s', quote_ident(n.nspname), p.oid::regprocedure::text),
                pg_get_userbyid(p.proowner)::text
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($1)
         UNION ALL
         SELECT n.nspname::text, format('type %I.%I', n.nspname, t.typname), pg_get_userbyid(t.typowner)::text
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = ANY($1) AND t.typrelid = 0
           AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
         ORDER BY 1, 2",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the functions and types in the version schemas"))?;
    for r in &others {
        let what: String = r.get(1);
        let target = quote_ident(managed.first().map_or("public", String::as_str));
        let fix = match what.split_once(' ') {
            Some((kind, name)) => format!(
                "move it where every version sees it: ALTER {} {name} SET SCHEMA {target} (or drop it)",
                kind.to_uppercase()
            ),
            None => format!("move it to {target}, or drop it"),
        };
        held.foreign.push(Foreign {
            fix,
            what,
            owner: r.get(2),
            schema: r.get(0),
            reads: None,
        });
    }
    // Whatever depends on a view of ours: views and materialized views over it, rules and
    // triggers on it. Its own rule and its column defaults (ours) do not count.
    let own_views: Vec<String> = held
        .own
        .iter()
        .map(|v| format!("{}.{}", quote_ident(&v.schema), quote_ident(&v.name)))
        .collect();
    if !own_views.is_empty() {
        let deps = sqlx::query(
            "SELECT DISTINCT format('%I.%I', vn.nspname, v.relname), vn.nspname::text,
                    CASE WHEN dc.oid IS NOT NULL THEN
                      format('%s %I.%I', CASE dc.relkind WHEN 'm' THEN 'materialized view' WHEN 'v' THEN 'view' ELSE 'relation' END,
                             dn.nspname, dc.relname)
                    ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END,
                    coalesce(pg_get_userbyid(dc.relowner)::text, '?'),
                    dc.relkind::text
             FROM unnest($1::text[]) AS u(name)
             JOIN pg_class v ON v.oid = u.name::regclass
             JOIN pg_namespace vn ON vn.oid = v.relnamespace
             JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = v.oid AND d.deptype IN ('n', 'a')
             LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
             LEFT JOIN pg_class dc ON dc.oid = r.ev_class
             LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
             WHERE d.classid <> 'pg_attrdef'::regclass AND (r.oid IS NULL OR r.ev_class <> v.oid)
             ORDER BY 1, 3",
        )
        .bind(&own_views)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading what depends on the version schemas' views"))?;
        for r in &deps {
            let view: String = r.get(0);
            let kind: Option<String> = r.get(4);
            let table = held
                .own
                .iter()
                .find(|v| format!("{}.{}", quote_ident(&v.schema), quote_ident(&v.name)) == view)
                .and_then(|v| v.table);
            let fix = match kind.as_deref() {
                Some("m") | Some("v") => format!(
                    "make it read the table{} instead of the version's view (drop and create it again over the table), or drop it",
                    table.map(|_| " itself").unwrap_or_default()
                ),
                _ => "drop it, or move it onto the table itself".to_string(),
            };
            held.foreign.push(Foreign {
                what: r.get(2),
                owner: r.get(3),
                schema: r.get(1),
                reads: Some(view),
                fix,
            });
        }
    }
    Ok(held)
}

/// The error for what stops a drop of version schemas or views: every object, its owner and
/// the fix.
pub fn refusal(what: &str, foreign: &[&Foreign]) -> Error {
    let lines: Vec<String> = foreign.iter().map(|f| format!("  {f}")).collect();
    Error::Refused(format!(
        "{what} stopped before dropping anything: migrate drops only what it made, and these are not its own:\n{}\nthen run it again; it resumes here",
        lines.join("\n")
    ))
}

/// The SQL that drops views of ours and then version schemas, by name, without `CASCADE`: a
/// schema that still holds anything else is not dropped, and the transaction fails whole.
pub fn drop_sql(views: &[&OwnView], schemas: &[String]) -> Option<String> {
    let mut sql = Vec::new();
    if !views.is_empty() {
        sql.push(format!(
            "DROP VIEW IF EXISTS {}",
            views
                .iter()
                .map(|v| format!("{}.{}", quote_ident(&v.schema), quote_ident(&v.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !schemas.is_empty() {
        sql.push(format!(
            "DROP SCHEMA IF EXISTS {}",
            schemas
                .iter()
                .map(|s| quote_ident(s))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (!sql.is_empty()).then(|| sql.join(";\n"))
}

/// Which of these schemas exist.
pub async fn existing(conn: &mut PgConnection, schemas: &[String]) -> Result<Vec<String>, Error> {
    sqlx::query_scalar(
        "SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i)
         WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) ORDER BY i",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the version schemas"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QualifiedName;

    fn users() -> LiveTable {
        let col = |n: &str, d: Option<&str>| LiveColumn {
            name: n.into(),
            default: d.map(str::to_string),
            server_filled: false,
        };
        LiveTable {
            oid: 1,
            schema: "public".into(),
            name: "users".into(),
            row_security: false,
            columns: vec![
                LiveColumn {
                    server_filled: true,
                    ..col("id", None)
                },
                col("age", Some("0")),
                col("name", None),
                col("nickname", None),
                col("age_new", None),
            ],
            grants: vec![Grant {
                privilege: "SELECT".into(),
                grantee: Some("reader".into()),
                grantable: false,
                column: None,
            }],
        }
    }

    fn t() -> QualifiedName {
        QualifiedName::new(None, "users")
    }

    fn pg(major: u32) -> PgVersion {
        PgVersion { major, minor: 0 }
    }

    /// A swapped type shows where the swap at contract leaves the column (last, where the
    /// shadow is), and a hidden column is left out: the view then equals the table after
    /// contract.
    #[test]
    fn the_new_version_sees_the_table_as_contract_will_leave_it() {
        let changes = [
            ViewChange::ReplaceColumn {
                table: t(),
                column: "age".into(),
                with: "age_new".into(),
            },
            ViewChange::HideColumn {
                table: t(),
                column: "nickname".into(),
            },
        ];
        let v = shape(&[users()], &changes);
        assert_eq!(v.len(), 1);
        assert!(v[0].differs());
        let cols: Vec<(&str, &str, Option<&str>)> = v[0]
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.physical.as_str(), c.default.as_deref()))
            .collect();
        // The identity column gets no view default; the shadow takes the original's default.
        assert_eq!(
            cols,
            [
                ("id", "id", None),
                ("name", "name", None),
                ("age", "age_new", Some("0"))
            ]
        );
        let sql = views_sql("migrate_0002_x", &[&v[0]], pg(15), "0002_x")
            .unwrap()
            .join(";\n");
        assert!(sql.contains("CREATE VIEW migrate_0002_x.users WITH (security_invoker = true) AS SELECT id, name, age_new AS age FROM public.users"), "{sql}");
        assert!(
            sql.contains("ALTER VIEW migrate_0002_x.users ALTER COLUMN age SET DEFAULT 0"),
            "{sql}"
        );
        assert!(
            sql.contains("COMMENT ON VIEW migrate_0002_x.users IS 'migrate: public.users as version 0002_x reads it'"),
            "{sql}"
        );
        assert!(
            sql.contains("GRANT SELECT ON migrate_0002_x.users TO reader"),
            "{sql}"
        );
        let schema = schema_sql("migrate_0002_x", &[None], "0002_x").join(";\n");
        assert!(
            schema.contains("GRANT USAGE ON SCHEMA migrate_0002_x TO PUBLIC"),
            "{schema}"
        );
        assert!(!schema.contains("CREATE ON"), "{schema}");
    }

    /// A rename made at expand is the table's own: the new version reads the table.
    #[test]
    fn a_version_whose_shape_is_the_table_s_needs_no_view() {
        let mut live = users();
        live.columns.retain(|c| c.name != "name");
        live.columns.insert(
            2,
            LiveColumn {
                name: "full_name".into(),
                default: None,
                server_filled: false,
            },
        );
        let changes = [
            ViewChange::RenameColumn {
                table: t(),
                from: "name".into(),
                to: "full_name".into(),
            },
            ViewChange::HideTable {
                table: QualifiedName::new(None, "other"),
            },
        ];
        let v = shape(std::slice::from_ref(&live), &changes);
        assert!(!v[0].differs());
        assert!(!TableView::as_is(&live).differs());
        // A view of an older binary's plan, whose rename is still to come, differs.
        let v = shape(&[users()], &changes);
        assert!(v[0].differs());
    }

    #[test]
    fn a_change_whose_column_is_gone_is_a_no_op_and_hidden_tables_go() {
        // After contract swapped age_new into age, the stored change no longer applies.
        let mut live = users();
        live.columns.retain(|c| c.name != "age_new");
        let changes = [ViewChange::ReplaceColumn {
            table: t(),
            column: "age".into(),
            with: "age_new".into(),
        }];
        let v = shape(std::slice::from_ref(&live), &changes);
        assert!(!v[0].differs());
        let v = shape(&[live], &[ViewChange::HideTable { table: t() }]);
        assert!(v.is_empty());
    }

    #[test]
    fn row_security_is_refused_before_15_and_long_names_fit() {
        let mut live = users();
        live.row_security = true;
        let v = TableView::as_is(&live);
        let err = views_sql("s", &[&v], pg(14), "0002_x").unwrap_err();
        assert!(matches!(err, Error::Refused(m) if m.contains("row-level security")));
        assert!(views_sql("s", &[&v], pg(15), "0002_x").is_ok());
        assert!(views_sql("s", &[], pg(14), "0002_x").is_ok());
        assert!(schema_name("migrate", &"x".repeat(100)).len() <= 63);
    }

    /// Views that equal their tables go unless something reads them; drops never cascade.
    #[test]
    fn only_views_of_ours_that_nothing_reads_are_redundant() {
        let own = |name: &str, equals_table| OwnView {
            schema: "migrate_1".into(),
            name: name.into(),
            table: Some(1),
            equals_table,
        };
        let held = Held {
            own: vec![own("a", true), own("b", true), own("c", false)],
            foreign: vec![Foreign {
                what: "materialized view public.totals".into(),
                owner: "app".into(),
                schema: "migrate_1".into(),
                reads: Some("migrate_1.b".into()),
                fix: "drop it".into(),
            }],
        };
        let names: Vec<&str> = held.redundant().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        let sql = drop_sql(&held.redundant(), &["migrate_1".into()]).unwrap();
        assert_eq!(
            sql,
            "DROP VIEW IF EXISTS migrate_1.a;\nDROP SCHEMA IF EXISTS migrate_1"
        );
        assert!(!sql.to_uppercase().contains("CASCADE"));
        assert!(drop_sql(&[], &[]).is_none());
        let err = refusal(
            "contract of 0002_x",
            &held.foreign.iter().collect::<Vec<_>>(),
        );
        assert!(
            matches!(&err, Error::Refused(m) if m.contains("materialized view public.totals (owner app) reads migrate_1.b")),
            "{err}"
        );
    }
}
