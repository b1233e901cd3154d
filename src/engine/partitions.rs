//! Indexes of partitioned tables. PostgreSQL builds no index of a partitioned table
//! concurrently, so the build is taken apart the way its documentation describes: the index
//! `ON ONLY` the parent (INVALID, instant), then for each partition an index built
//! `CONCURRENTLY` and attached to it; the parent's index turns valid once every partition's is
//! attached. Sub-partitions get an `ON ONLY` index of their own, recursively.
//!
//! The catalog is the checkpoint: a partition whose index is attached is done, an INVALID
//! leftover of a build killed halfway is dropped and rebuilt, so a rerun after a crash goes on
//! at the first partition not attached — including partitions attached since the plan was made.
//!
//! Foreign keys from a partitioned table, before PostgreSQL 18 (which refuses them NOT VALID on
//! the parent): NOT VALID on each partition in expand, then in contract each validated and the
//! parent's constraint added, which attaches the validated ones without reading a row.

use super::exec::StepReport;
use crate::model::{quote_ident, QualifiedName};
use crate::plan::Key;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, PgConnection, Row};

/// Builds `index` on the partitioned `table`: `parent_only` is its `CREATE INDEX … ON ONLY`.
/// Runs under the session's lock_timeout; a lock timeout comes back as the error, and the
/// retry resumes where this try stopped.
pub async fn build_index(
    conn: &mut PgConnection,
    table: &str,
    index: &QualifiedName,
    parent_only: &str,
    report: &mut StepReport,
) -> Result<(), sqlx::Error> {
    match index_valid(conn, &index.sql()).await? {
        Some(true) => {
            report.already_done = true;
            return Ok(());
        }
        Some(false) => {}
        None => {
            sqlx::raw_sql(AssertSqlSafe(parent_only.to_string()))
                .execute(&mut *conn)
                .await?;
        }
    }
    let mut attached = 0usize;
    let parent = (index.sql(), index.name.clone());
    attach_children(conn, table, parent, report, &mut attached).await
}

/// Whether a table is partitioned (None when there is no such table).
pub async fn is_partitioned(conn: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    let r: Option<bool> =
        sqlx::query_scalar("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)")
            .bind(table)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(r.unwrap_or(false))
}

/// Whether `index` exists and is valid. An INVALID one, left by a build killed halfway, is
/// dropped (concurrently) so that it can be built again.
pub async fn valid_or_cleared(
    conn: &mut PgConnection,
    index: &str,
    report: &mut StepReport,
) -> Result<bool, sqlx::Error> {
    match index_valid(conn, index).await? {
        Some(true) => Ok(true),
        Some(false) => {
            let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
            sqlx::raw_sql(AssertSqlSafe(drop))
                .execute(&mut *conn)
                .await?;
            report.rebuilt_invalid_index = true;
            Ok(false)
        }
        None => Ok(false),
    }
}

/// Whether an index exists, and if so whether it is valid.
async fn index_valid(conn: &mut PgConnection, index: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
        .bind(index)
        .fetch_optional(&mut *conn)
        .await
}

/// The definition of `index` after `ON ONLY <table>`, and whether it is unique: what each
/// partition's index is built from (`USING btree (at) WHERE …`).
async fn definition(conn: &mut PgConnection, index: &str) -> Result<(bool, String), sqlx::Error> {
    let r = sqlx::query(
        "SELECT x.indisunique, pg_get_indexdef(x.indexrelid)
         FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
    )
    .bind(index)
    .fetch_one(&mut *conn)
    .await?;
    let (unique, def): (bool, String) = (r.get(0), r.get(1));
    // `CREATE [UNIQUE] INDEX name ON [ONLY] table USING method (…) …`: from the method on.
    let tail = def
        .find(" ON ")
        .and_then(|on| {
            def[on..]
                .find(" USING ")
                .map(|u| def[on + u + 1..].to_string())
        })
        .ok_or_else(|| sqlx::Error::Protocol(format!("unexpected index definition: {def}")))?;
    Ok((unique, tail))
}

/// The name of the index of `partition` that belongs to `parent_index`: both names, cut to
/// PostgreSQL's 63 bytes with a hash of the whole when too long, so it is the same every run.
fn child_index_name(partition: &str, parent_index: &str) -> String {
    let full = format!("{partition}_{parent_index}");
    if full.len() <= 63 {
        return full;
    }
    let hash = Sha256::digest(full.as_bytes());
    let tag: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut cut = 54;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{tag}", &full[..cut])
}

/// Builds and attaches the index of every partition of `table` under `parent_index`.
/// `parent` is the parent's index, as SQL and as its bare name.
async fn attach_children(
    conn: &mut PgConnection,
    table: &str,
    (parent_index, parent_name): (String, String),
    report: &mut StepReport,
    attached: &mut usize,
) -> Result<(), sqlx::Error> {
    let parent_index = parent_index.as_str();
    let (unique, tail) = definition(conn, parent_index).await?;
    // The partitions as they are now, and which already have their index attached.
    let children = sqlx::query(
        "SELECT c.oid::regclass::text, c.relkind = 'p', c.relname::text, n.nspname::text,
                EXISTS (SELECT FROM pg_inherits ih JOIN pg_index x ON x.indexrelid = ih.inhrelid
                        WHERE ih.inhparent = to_regclass($2) AND x.indrelid = c.oid)
         FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE h.inhparent = to_regclass($1)
         ORDER BY c.relname",
    )
    .bind(table)
    .bind(parent_index)
    .fetch_all(&mut *conn)
    .await?;
    for row in children {
        let (partition, partitioned, relname, schema, done): (String, bool, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if done && !partitioned {
            continue;
        }
        let child_name = child_index_name(&relname, &parent_name);
        let child = format!("{}.{}", quote_ident(&schema), quote_ident(&child_name));
        let unique_kw = if unique { "UNIQUE " } else { "" };
        if partitioned {
            if index_valid(conn, &child).await?.is_none() {
                let sql = format!(
                    "CREATE {unique_kw}INDEX {} ON ONLY {partition} {tail}",
                    quote_ident(&child_name)
                );
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await?;
            }
            let parent = (child.clone(), child_name.clone());
            Box::pin(attach_children(conn, &partition, parent, report, attached)).await?;
        } else {
            match valid_or_cleared(conn, &child, report).await? {
                true => {}
                false => {
                    let sql = format!(
                        "CREATE {unique_kw}INDEX CONCURRENTLY {} ON {partition} {tail}",
                        quote_ident(&child_name)
                    );
                    sqlx::raw_sql(AssertSqlSafe(sql))
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        if !done {
            let attach = format!("ALTER INDEX {parent_index} ATTACH PARTITION {child}");
            sqlx::raw_sql(AssertSqlSafe(attach))
                .execute(&mut *conn)
                .await?;
            *attached += 1;
            super::run::failpoint("partition", *attached);
        }
    }
    Ok(())
}

/// The leaf partitions of `table` as they are now: (the leaf as SQL, its schema, its name).
async fn leaves(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.oid::regclass::text, n.nspname::text, c.relname::text
         FROM pg_partition_tree(to_regclass($1)) t
         JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE t.isleaf ORDER BY c.relname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
}

/// Builds the unique index of `key` on every leaf partition of its table, concurrently, under
/// the session's lock_timeout: a leaf whose index is valid is done, an INVALID leftover of a
/// killed build is dropped and built again, so a rerun goes on at the first leaf not done —
/// partitions attached since the plan included. Nothing to do once the key is the parent's.
pub async fn build_key(
    conn: &mut PgConnection,
    key: &Key,
    report: &mut StepReport,
) -> Result<(), sqlx::Error> {
    let table = key.table.sql();
    if key_in_place(conn, key).await? {
        report.already_done = true;
        return Ok(());
    }
    let cols: Vec<String> = key.columns.iter().map(|c| quote_ident(c)).collect();
    let mut built = 0usize;
    for (leaf, schema, relname) in leaves(conn, &table).await? {
        let name = child_index_name(&relname, &key.index);
        let index = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        if valid_or_cleared(conn, &index, report).await? {
            continue;
        }
        let sql = format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {leaf} ({})",
            quote_ident(&name),
            cols.join(", ")
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
        built += 1;
        super::run::failpoint("partition", built);
    }
    Ok(())
}

/// Whether the table has the key already: a constraint of its name over its columns (a key
/// copied onto a new column shares its name with the original until the swap drops that).
async fn key_in_place(conn: &mut PgConnection, key: &Key) -> Result<bool, sqlx::Error> {
    let columns: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                      ORDER BY k.o)
         FROM pg_constraint con WHERE con.conrelid = to_regclass($1) AND con.conname = $2",
    )
    .bind(key.table.sql())
    .bind(&key.name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(columns.is_some_and(|c| c == key.columns))
}

/// Drops the index of `key` from every leaf partition, concurrently (abort, before contract
/// made it a constraint).
pub async fn drop_key(conn: &mut PgConnection, key: &Key) -> Result<(), sqlx::Error> {
    for (_, schema, relname) in leaves(conn, &key.table.sql()).await? {
        let name = child_index_name(&relname, &key.index);
        let sql = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            quote_ident(&schema),
            quote_ident(&name)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// In the caller's transaction: each leaf's index of `key` made the leaf's constraint
/// (`USING INDEX`, metadata only), then the parent's constraint over the same columns, which
/// takes the leaves' constraints as its own rather than building an index (PostgreSQL has no
/// `USING INDEX` on a partitioned table).
pub async fn attach_key(conn: &mut PgConnection, key: &Key) -> Result<(), sqlx::Error> {
    let table = key.table.sql();
    if key_in_place(conn, key).await? {
        return Ok(());
    }
    let leaves = leaves(conn, &table).await?;
    // The columns as they are named now, from a leaf's index: `before` may have renamed them
    // (a swap).
    let mut columns = key.columns.clone();
    if let Some((_, schema, relname)) = leaves.first() {
        let index = child_index_name(relname, &key.index);
        columns = sqlx::query_scalar(
            "SELECT array(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
                          ORDER BY k.o)
             FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
        )
        .bind(format!("{}.{}", quote_ident(schema), quote_ident(&index)))
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(columns);
    }
    for (leaf, _, relname) in &leaves {
        let index = child_index_name(relname, &key.index);
        let constraint = child_index_name(relname, &key.name);
        let sql = format!(
            "ALTER TABLE {leaf} ADD CONSTRAINT {} {} USING INDEX {}",
            quote_ident(&constraint),
            key.kind(),
            quote_ident(&index)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let sql = format!(
        "ALTER TABLE {table} ADD CONSTRAINT {} {} ({})",
        quote_ident(&key.name),
        key.kind(),
        cols.join(", ")
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// A foreign key of a [`crate::plan::StepKind::ForeignKey`] step.
pub struct ForeignKey<'a> {
    pub table: &'a str,
    pub name: &'a str,
    /// `FOREIGN KEY (…) REFERENCES …`.
    pub definition: &'a str,
}

impl ForeignKey<'_> {
    /// The statement that adds it NOT VALID to `table` (its own, or one of its partitions).
    fn add_not_valid(&self, table: &str) -> String {
        format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {} NOT VALID",
            quote_ident(self.name),
            self.definition
        )
    }
}

/// Whether the foreign key must be taken apart: the table is partitioned and the server
/// refuses a NOT VALID foreign key on it (before 18).
pub async fn split_foreign_key(
    conn: &mut PgConnection,
    fk: &ForeignKey<'_>,
) -> Result<bool, sqlx::Error> {
    if !is_partitioned(conn, fk.table).await? {
        return Ok(false);
    }
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *conn)
        .await?;
    Ok(version < 180000)
}

/// In the caller's transaction: `fk` added NOT VALID to its table, or to each of its leaf
/// partitions where the server refuses that on a partitioned table (before 18; the step that
/// validates it adds the parent's then). A table or leaf that has it already is left alone.
pub async fn add_foreign_key_not_valid(
    conn: &mut PgConnection,
    fk: &crate::plan::LateForeignKey,
) -> Result<(), sqlx::Error> {
    let table = fk.table.sql();
    let on = ForeignKey {
        table: &table,
        name: &fk.name,
        definition: &fk.definition,
    };
    let targets: Vec<String> = if split_foreign_key(conn, &on).await? {
        leaves(conn, &table)
            .await?
            .into_iter()
            .map(|(l, _, _)| l)
            .collect()
    } else {
        vec![table.clone()]
    };
    for target in targets {
        if constraint_state(conn, &target, &fk.name).await?.is_none() {
            sqlx::raw_sql(AssertSqlSafe(on.add_not_valid(&target)))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The table's constraint `name`, if it has one: whether it is validated.
async fn constraint_state(
    conn: &mut PgConnection,
    table: &str,
    name: &str,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
    )
    .bind(table)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
}

/// One statement in a transaction of its own, under `lock` (`SET LOCAL lock_timeout …`).
async fn short(conn: &mut PgConnection, lock: &str, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; {lock}; {sql}; COMMIT")))
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Runs a foreign-key step on a partitioned table, partition by partition. Idempotent: what a
/// killed or timed-out try did is seen in the catalog and not done again.
pub async fn foreign_key(
    conn: &mut PgConnection,
    fk: &ForeignKey<'_>,
    action: crate::plan::FkAction,
    lock: &str,
) -> Result<(), sqlx::Error> {
    let result = foreign_key_steps(conn, fk, action, lock).await;
    if result.is_err() {
        // A statement that failed inside `short` left its transaction open: end it.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

async fn foreign_key_steps(
    conn: &mut PgConnection,
    fk: &ForeignKey<'_>,
    action: crate::plan::FkAction,
    lock: &str,
) -> Result<(), sqlx::Error> {
    use crate::plan::FkAction;
    let name = quote_ident(fk.name);
    let leaves: Vec<String> = leaves(conn, fk.table)
        .await?
        .into_iter()
        .map(|(leaf, _, _)| leaf)
        .collect();
    let on_parent = constraint_state(conn, fk.table, fk.name).await?;
    match action {
        FkAction::AddNotValid => {
            if on_parent.is_some() {
                return Ok(());
            }
            for leaf in &leaves {
                if constraint_state(conn, leaf, fk.name).await?.is_none() {
                    short(conn, lock, fk.add_not_valid(leaf)).await?;
                }
            }
        }
        FkAction::Validate => {
            match on_parent {
                Some(true) => return Ok(()),
                Some(false) => {
                    let sql = format!("ALTER TABLE {} VALIDATE CONSTRAINT {name}", fk.table);
                    return short(conn, lock, sql).await;
                }
                None => {}
            }
            for leaf in &leaves {
                match constraint_state(conn, leaf, fk.name).await? {
                    Some(true) => continue,
                    // A partition attached since expand: it never had the constraint.
                    None => {
                        short(conn, lock, fk.add_not_valid(leaf)).await?;
                    }
                    Some(false) => {}
                }
                let sql = format!("ALTER TABLE {leaf} VALIDATE CONSTRAINT {name}");
                short(conn, lock, sql).await?;
            }
            // Every partition's constraint is validated: the parent's attaches them unread.
            let sql = format!(
                "ALTER TABLE {} ADD CONSTRAINT {name} {}",
                fk.table, fk.definition
            );
            short(conn, lock, sql).await?;
        }
        FkAction::Drop => {
            if on_parent.is_some() {
                let sql = format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name}", fk.table);
                short(conn, lock, sql).await?;
            }
            for leaf in &leaves {
                if constraint_state(conn, leaf, fk.name).await?.is_some() {
                    let sql = format!("ALTER TABLE {leaf} DROP CONSTRAINT IF EXISTS {name}");
                    short(conn, lock, sql).await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::child_index_name;

    #[test]
    fn child_index_names_fit_and_stay_the_same() {
        assert_eq!(
            child_index_name("events_2026", "events_at_idx"),
            "events_2026_events_at_idx"
        );
        let long = child_index_name(&"p".repeat(40), &"i".repeat(40));
        assert!(long.len() <= 63, "{long}");
        assert_eq!(long, child_index_name(&"p".repeat(40), &"i".repeat(40)));
        assert_ne!(long, child_index_name(&"p".repeat(40), &"j".repeat(40)));
    }
}
