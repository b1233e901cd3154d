//! Version schemas: one schema of views per app version, so that no step changes the shape a
//! running version reads.
//!
//! After `baseline` and after each migration's expand, the schema of that version holds one
//! view per table of the managed schemas: the table as that version sees it (`physical AS
//! logical`, in the column order of the version before, see [`keep_order`]). A view's column list is fixed when it is made and it
//! names the table and its columns by number, so a column added later never shows in it, and a
//! rename or swap underneath leaves its result alone. The app picks its version with
//! `search_path` (`migrate latest`). The shape of the newest version is the live tables with the
//! view changes of every migration not yet contracted applied in order; a change whose table
//! or column is gone (its contract ran) is a no-op.
//!
//! The views carry what a view does not inherit: column defaults (for `UPDATE … SET c =
//! DEFAULT` and `ON CONFLICT`), the tables' GRANTs (table and column level) and USAGE on the
//! schema, and row-level security: `security_invoker` from PostgreSQL 15, so every query is
//! checked as the app's own role; before 15 a view runs as its owner, which would bypass row
//! security, so tables with it are refused.

use crate::config::PgVersion;
use crate::error::Error;
use crate::model::quote_ident;
use crate::plan::rewrites::generated_name;
use crate::plan::ViewChange;
use sqlx::{PgConnection, Row};

/// The version schema of a migration: `<metadata schema>_<migration>`, within 63 bytes.
pub fn schema_name(metadata_schema: &str, migration: &str) -> String {
    generated_name(metadata_schema, &[migration])
}

/// The `search_path` an app of this version connects with: its version schema, then the
/// managed schemas, so functions, types and sequences still resolve.
pub fn search_path(version_schema: &str, managed: &[String]) -> String {
    std::iter::once(version_schema)
        .chain(managed.iter().map(String::as_str))
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
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
    let mut tables: Vec<(i64, LiveTable)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                LiveTable {
                    schema: r.get(1),
                    name: r.get(2),
                    row_security: r.get(3),
                    columns: Vec::new(),
                    grants: Vec::new(),
                },
            )
        })
        .collect();
    let oids: Vec<i64> = tables.iter().map(|(o, _)| *o).collect();
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
    for (oid, t) in &mut tables {
        t.columns = columns
            .iter()
            .filter(|r| r.get::<i64, _>(0) == *oid)
            .map(|r| LiveColumn {
                name: r.get(1),
                default: r.get(2),
                server_filled: r.get(3),
            })
            .collect();
        t.grants = grants
            .iter()
            .filter(|r| r.get::<i64, _>(0) == *oid)
            .map(|r| Grant {
                column: r.get(1),
                privilege: r.get(2),
                grantee: r.get(3),
                grantable: r.get(4),
            })
            .collect();
    }
    Ok(tables.into_iter().map(|(_, t)| t).collect())
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

/// The tables as a version sees them: the live tables with `changes` applied in order.
pub fn shape<'a>(
    tables: &[LiveTable],
    changes: impl IntoIterator<Item = &'a ViewChange>,
) -> Vec<TableView> {
    let mut views: Vec<TableView> = tables
        .iter()
        .map(|t| TableView {
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
        })
        .collect();
    for change in changes {
        if let ViewChange::HideTable { table } = change {
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
                let Some(shadow) = v.columns.iter().position(|c| c.physical == *with) else {
                    continue;
                };
                let shadow = v.columns.remove(shadow);
                if let Some(c) = v.columns.iter_mut().find(|c| c.physical == *column) {
                    c.physical = shadow.physical;
                    // The shadow gets the original's default only at the swap.
                    c.default = shadow.default.or(c.default.take());
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

/// The columns of each view of a version schema, in order: how that version shows its tables.
pub async fn view_columns(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<(String, Vec<String>)>, Error> {
    sqlx::query_as(
        "SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = $1 AND c.relkind = 'v'
         GROUP BY c.relname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading the columns of the previous version's views"))
}

/// Puts each view's columns in the order the version before showed them (`before`, from
/// [`view_columns`]), so that a column PostgreSQL moved to the end of its table (a type change
/// swaps in a new column) keeps its place from version to version. A column is found there
/// by its name in this version, else by the table's column it shows (renamed by this
/// version); columns the version before did not have follow, in the table's order.
pub fn keep_order(views: &mut [TableView], before: &[(String, Vec<String>)]) {
    for v in views {
        let Some((_, order)) = before
            .iter()
            .find(|(n, _)| *n == v.name)
            .or_else(|| before.iter().find(|(n, _)| *n == v.table.name))
        else {
            continue;
        };
        let at = |c: &ViewColumn| {
            order
                .iter()
                .position(|o| *o == c.name)
                .or_else(|| order.iter().position(|o| *o == c.physical))
                .unwrap_or(usize::MAX)
        };
        v.columns.sort_by_key(at);
    }
}

/// The SQL that makes the version schema `schema` afresh (it is dropped first if a killed run
/// left it half made): one transaction's worth.
pub fn create_sql(
    schema: &str,
    views: &[TableView],
    usage: &[Option<String>],
    pg: PgVersion,
    migration: &str,
) -> Result<String, Error> {
    let vs = quote_ident(schema);
    let mut sql = vec![
        format!("DROP SCHEMA IF EXISTS {vs} CASCADE"),
        format!("CREATE SCHEMA {vs}"),
        format!(
            "COMMENT ON SCHEMA {vs} IS 'migrate: the tables as version {} sees them'",
            migration.replace('\'', "''")
        ),
    ];
    for u in usage {
        sql.push(format!("GRANT USAGE ON SCHEMA {vs} TO {}", grantee(u)));
    }
    let invoker = pg.at_least(15);
    let mut seen = std::collections::BTreeSet::new();
    for v in views {
        if !seen.insert(v.name.clone()) {
            return Err(Error::Refused(format!(
                "two managed tables show as {} in version {migration}: the version schema holds one view per name; list one of their schemas only in `schemas`, or set views = false",
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
                "{table} has row-level security: before PostgreSQL 15 a view runs as its owner and would bypass it; upgrade to 15 or later, or set views = false"
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
    Ok(sql.join(";\n"))
}

/// Drops version schemas (those that exist); idempotent.
pub fn drop_sql(schemas: &[String]) -> Option<String> {
    (!schemas.is_empty()).then(|| {
        format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schemas
                .iter()
                .map(|s| quote_ident(s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
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
            schema: "public".into(),
            name: "users".into(),
            row_security: false,
            columns: vec![
                LiveColumn {
                    server_filled: true,
                    ..col("id", None)
                },
                col("name", None),
                col("age", Some("0")),
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

    #[test]
    fn every_change_maps_the_live_table() {
        let changes = [
            ViewChange::RenameColumn {
                table: t(),
                from: "name".into(),
                to: "full_name".into(),
            },
            ViewChange::ReplaceColumn {
                table: t(),
                column: "age".into(),
                with: "age_new".into(),
            },
            ViewChange::HideColumn {
                table: t(),
                column: "nickname".into(),
            },
            ViewChange::RenameTable {
                table: t(),
                to: "people".into(),
            },
        ];
        let v = shape(&[users()], &changes);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "people");
        let cols: Vec<(&str, &str, Option<&str>)> = v[0]
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.physical.as_str(), c.default.as_deref()))
            .collect();
        // The identity column gets no view default; the shadow keeps the original's place and
        // default.
        assert_eq!(
            cols,
            [
                ("id", "id", None),
                ("full_name", "name", None),
                ("age", "age_new", Some("0"))
            ]
        );
        let sql = create_sql(
            "migrate_0002_x",
            &v,
            &[None],
            PgVersion {
                major: 15,
                minor: 0,
            },
            "0002_x",
        )
        .unwrap();
        assert!(sql.contains("CREATE VIEW migrate_0002_x.people WITH (security_invoker = true) AS SELECT id, name AS full_name, age_new AS age FROM public.users"), "{sql}");
        assert!(
            sql.contains("ALTER VIEW migrate_0002_x.people ALTER COLUMN age SET DEFAULT 0"),
            "{sql}"
        );
        assert!(
            sql.contains("GRANT SELECT ON migrate_0002_x.people TO reader"),
            "{sql}"
        );
        assert!(
            sql.contains("GRANT USAGE ON SCHEMA migrate_0002_x TO PUBLIC"),
            "{sql}"
        );
    }

    /// The order of the version before: by this version's name, else by the column shown (a
    /// rename of this version); a column it did not have goes last.
    #[test]
    fn columns_keep_the_order_of_the_version_before() {
        let changes = [ViewChange::RenameColumn {
            table: t(),
            from: "name".into(),
            to: "full_name".into(),
        }];
        let mut views = shape(&[users()], &changes);
        let before = vec![(
            "users".to_string(),
            ["age", "id", "name", "age_new"].map(String::from).to_vec(),
        )];
        keep_order(&mut views, &before);
        let names: Vec<&str> = views[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["age", "id", "full_name", "age_new", "nickname"]);
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
        assert!(v[0]
            .columns
            .iter()
            .any(|c| c.name == "age" && c.physical == "age"));
        let v = shape(&[live], &[ViewChange::HideTable { table: t() }]);
        assert!(v.is_empty());
    }

    #[test]
    fn row_security_is_refused_before_15_and_long_names_fit() {
        let mut live = users();
        live.row_security = true;
        let v = shape(&[live], &[]);
        let err = create_sql(
            "s",
            &v,
            &[],
            PgVersion {
                major: 14,
                minor: 0,
            },
            "0002_x",
        )
        .unwrap_err();
        assert!(matches!(err, Error::Refused(m) if m.contains("row-level security")));
        assert!(create_sql(
            "s",
            &v,
            &[],
            PgVersion {
                major: 15,
                minor: 0
            },
            "0002_x"
        )
        .is_ok());
        assert!(schema_name("migrate", &"x".repeat(100)).len() <= 63);
    }
}
