use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A table or column that does not exist in the database (checked against a live catalog).
    ///
    /// ## What it catches
    /// With `--database-url` (and always in `migrate expand`): a statement that changes a table
    /// the database does not have, or a column the table does not have, unless an earlier
    /// statement of the same migration creates it or the statement says `IF EXISTS`.
    ///
    /// ## Why it hurts
    /// The statement fails when it runs — a typo, or a migration written against a different
    /// schema than the one deployed — possibly after earlier steps have already run.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users RENAME COLUMN fullname TO full_name;  -- the column is `full_name` already
    /// ```
    ///
    /// ## Instead
    /// Fix the name, or check which migrations the database has (`migrate status`).
    pub struct UnknownTableOrColumn => "unknown-table-or-column", Error;
}

impl Rule for UnknownTableOrColumn {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        if !ctx.catalog.live {
            return;
        }
        // Columns an earlier action of the same statement adds (`ADD COLUMN c, ALTER COLUMN c …`).
        let mut added: Vec<(&crate::model::QualifiedName, &str)> = Vec::new();
        for op in ctx.ops {
            use Operation as O;
            match op {
                O::AddColumn { table, column, .. } => added.push((table, &column.name)),
                O::RenameColumn { table, to, .. } => added.push((table, to)),
                _ => {}
            }
            let (table, column) = match op.column_target() {
                Some((table, column)) => (table, Some(column)),
                None => match op {
                    O::AddColumn { table, .. }
                    | O::AddConstraint { table, .. }
                    | O::ValidateConstraint { table, .. }
                    | O::DropConstraint { table, .. }
                    | O::RenameTable { table, .. }
                    | O::Update { table, .. }
                    | O::Merge { table }
                    | O::Delete { table, .. } => (table, None),
                    O::CreateIndex(ix) => (&ix.table, None),
                    _ => continue,
                },
            };
            match ctx.catalog.table(table) {
                None => out.push(ctx.finding(
                    &Self::META,
                    format!("table {table} does not exist in the database"),
                    "fix the name, or check which migrations the database has (`migrate status`)",
                )),
                Some(t) => {
                    let new = |c: &str| added.iter().any(|(t, a)| t.same(table) && *a == c);
                    if let Some(c) = column.filter(|c| t.column(c).is_none() && !new(c)) {
                        out.push(ctx.finding(
                            &Self::META,
                            format!("column {table}.{c} does not exist in the database"),
                            format!(
                                    "{table} has: {}",
                                    t.columns
                                        .iter()
                                        .map(|c| c.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{analyze_file, Prepared};
    use crate::config::Settings;
    use crate::model::catalog::Catalog;

    fn live_rules(context: &str, sql: &str) -> Vec<&'static str> {
        // A catalog as if read from a database that has `context` applied.
        let mut catalog = Catalog::default();
        let ctx_file = crate::files::MigrationFile {
            path: "0000.sql".into(),
            name: "0000".into(),
            transaction: crate::files::TransactionMode::PerFile,
            opt_out: None,
            source: crate::sql::SqlSource::parse(context.to_string()),
        };
        crate::analyze::replay(&Prepared::new(ctx_file), &mut catalog);
        catalog.live = true;
        let file = crate::files::MigrationFile {
            path: "0001.sql".into(),
            name: "0001".into(),
            transaction: crate::files::TransactionMode::PerFile,
            opt_out: None,
            source: crate::sql::SqlSource::parse(sql.to_string()),
        };
        analyze_file(Prepared::new(file), &mut catalog, &Settings::default())
            .findings
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn a_column_added_earlier_in_the_same_statement_is_known() {
        let ctx = "CREATE TABLE orders (id bigint PRIMARY KEY);";
        let sql =
            "ALTER TABLE orders ADD COLUMN currency text, ALTER COLUMN currency SET DEFAULT 'EUR';";
        assert!(!live_rules(ctx, sql).contains(&"unknown-table-or-column"));
        let sql =
            "ALTER TABLE orders ALTER COLUMN currency SET DEFAULT 'EUR', ADD COLUMN currency text;";
        assert!(live_rules(ctx, sql).contains(&"unknown-table-or-column"));
    }

    #[test]
    fn fires_on_unknown_table_or_column_in_a_live_catalog() {
        let ctx = "CREATE TABLE users (id bigint PRIMARY KEY, name text);";
        assert!(live_rules(ctx, "ALTER TABLE userz ADD COLUMN a int;")
            .contains(&"unknown-table-or-column"));
        assert!(
            live_rules(ctx, "ALTER TABLE users RENAME COLUMN nmae TO full_name;")
                .contains(&"unknown-table-or-column")
        );
    }

    #[test]
    fn silent_for_known_or_new_objects_and_without_a_live_catalog() {
        let ctx = "CREATE TABLE users (id bigint PRIMARY KEY, name text);";
        assert!(
            !live_rules(ctx, "ALTER TABLE users RENAME COLUMN name TO full_name;")
                .contains(&"unknown-table-or-column")
        );
        assert!(!live_rules(
            ctx,
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int;"
        )
        .contains(&"unknown-table-or-column"));
        crate::lint::testing::silent(
            "unknown-table-or-column",
            &[],
            "ALTER TABLE nowhere ADD COLUMN a int;",
        );
    }
}
