//! Reads the live catalog (tables, columns, constraints, indexes, enums, row estimates) into
//! the same in-memory `Catalog` the migrations replay into.

use crate::error::Error;
use crate::model::catalog::{Catalog, Column, Constraint, Index, Origin, Table};
use crate::model::{convert, types::canonical, Operation, QualifiedName, SqlType};
use sqlx::{PgConnection, Row};

fn db_err(e: sqlx::Error) -> Error {
    Error::Database(format!("reading the catalog: {e}"))
}

/// Schema-qualified names as the migrations write them: `public` is left unqualified.
fn name(schema: &str, rel: &str) -> QualifiedName {
    QualifiedName::new((schema != "public").then_some(schema), rel)
}

/// Type modifiers from `format_type` output: `character varying(255)` → [255].
fn mods_of(formatted: &str) -> Vec<i64> {
    let Some(open) = formatted.find('(') else {
        return Vec::new();
    };
    let Some(close) = formatted[open..].find(')') else {
        return Vec::new();
    };
    formatted[open + 1..open + close]
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// The filter for user schemas, as a literal so every query stays a static string.
macro_rules! user_schemas {
    () => {
        "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
    };
}

pub async fn read_catalog(conn: &mut PgConnection) -> Result<Catalog, Error> {
    let mut catalog = Catalog::default();
    catalog.live = true;
    let tables = sqlx::query(concat!(
        "SELECT n.nspname::text, c.relname::text, c.reltuples::float8, c.relkind = 'p',
                CASE WHEN c.relkind = 'p' THEN ARRAY(
                    SELECT DISTINCT a.attname::text FROM pg_partition_tree(c.oid) t
                    JOIN pg_partitioned_table p ON p.partrelid = t.relid
                    JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = ANY (p.partattrs)
                ) ELSE '{}' END
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v') AND ",
        user_schemas!(),
        ""
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in &tables {
        let (schema, rel, rows, partitioned): (String, String, f64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let partition_key: Vec<String> = row.get(4);
        catalog.insert_table(Table {
            name: name(&schema, &rel),
            columns: Vec::new(),
            constraints: Vec::new(),
            origin: Origin::Existing,
            rows: (rows >= 0.0).then_some(rows as i64),
            partitioned,
            partition_key,
        });
    }
    let mut tables: std::collections::BTreeMap<(String, String), Table> = catalog
        .tables()
        .map(|t| {
            (
                (
                    t.name.schema.clone().unwrap_or_else(|| "public".into()),
                    t.name.name.clone(),
                ),
                t.clone(),
            )
        })
        .collect();

    let columns = sqlx::query(concat!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                t.typname::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                a.attidentity <> '' OR a.attgenerated <> ''
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f', 'v') AND ", user_schemas!(), "
         ORDER BY a.attrelid, a.attnum"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in &columns {
        let schema: String = row.get(0);
        let rel: String = row.get(1);
        let formatted: String = row.get(3);
        let typname: String = row.get(4);
        let (array, base) = match typname.strip_prefix('_') {
            Some(elem) => (true, elem.to_string()),
            None => (false, typname),
        };
        if let Some(t) = tables.get_mut(&(schema, rel)) {
            t.columns.push(Column {
                name: row.get(2),
                ty: SqlType {
                    mods: mods_of(&formatted),
                    sql: formatted,
                    base: canonical(&base),
                    array,
                },
                not_null: row.get(5),
                default: row.get(6),
                generated: row.get(7),
            });
        }
    }

    // A foreign key with a parent constraint is PostgreSQL's own copy of it (on a partition of
    // the referencing table, or towards each partition of a referenced one): the parent's
    // alone is the key a migration names, drops or moves.
    let constraints = sqlx::query(concat!(
        "SELECT n.nspname::text, c.relname::text, con.conname::text, con.convalidated, pg_get_constraintdef(con.oid)
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT (con.contype = 'f' AND con.conparentid <> 0) AND ", user_schemas!(), ""
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in &constraints {
        let schema: String = row.get(0);
        let rel: String = row.get(1);
        let conname: String = row.get(2);
        let def: String = row.get(4);
        // The definition is parsed with the same grammar the migrations are.
        let sql = format!("ALTER TABLE t ADD CONSTRAINT c {def}");
        let Ok(Some(tree)) =
            crate::sql::parse::parse_statement(&sql, crate::sql::parse::Queries::Read)
        else {
            continue;
        };
        let Some((Operation::AddConstraint { constraint, .. }, _)) =
            convert::operations(&tree, &sql).into_iter().next()
        else {
            continue;
        };
        if let Some(t) = tables.get_mut(&(schema, rel)) {
            t.constraints.push(Constraint {
                name: conname,
                kind: constraint.kind,
                validated: row.get(3),
                definition: Some(def),
            });
        }
    }
    for t in tables.into_values() {
        catalog.insert_table(t);
    }

    let indexes = sqlx::query(concat!(
        "SELECT n.nspname::text, ic.relname::text, c.relname::text, i.indisunique, i.indpred IS NOT NULL,
                ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k)
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE ", user_schemas!(), ""
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in &indexes {
        let schema: String = row.get(0);
        let partial: bool = row.get(4);
        let cols: Vec<String> = row.get(5);
        catalog.insert_index(Index {
            name: name(&schema, &row.get::<String, _>(1)),
            table: name(&schema, &row.get::<String, _>(2)),
            columns: if partial {
                Vec::new()
            } else {
                cols.into_iter()
                    .map(|c| c.trim_matches('"').to_string())
                    .collect()
            },
            unique: row.get(3),
            origin: Origin::Existing,
        });
    }

    let enums = sqlx::query(concat!(
        "SELECT n.nspname::text, t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
         FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE ", user_schemas!(), " GROUP BY 1, 2"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in &enums {
        catalog.insert_enum(
            name(&row.get::<String, _>(0), &row.get::<String, _>(1)),
            row.get(2),
        );
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mods_from_format_type() {
        assert_eq!(super::mods_of("character varying(255)"), vec![255]);
        assert_eq!(super::mods_of("numeric(10,2)"), vec![10, 2]);
        assert_eq!(super::mods_of("text"), Vec::<i64>::new());
    }
}
