use crate::lint::{FileCtx, Finding, Rule};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// A foreign key whose referencing columns have no index.
    ///
    /// ## What it catches
    /// A foreign key (in `CREATE TABLE`, `ADD COLUMN … REFERENCES` or `ADD CONSTRAINT`) when no
    /// index or unique/primary key starting with its columns exists by the end of the migration.
    ///
    /// ## Why it hurts
    /// Every DELETE or key UPDATE on the referenced table scans the referencing table to find
    /// dependent rows, holding locks while it does; cascades get slow as the table grows.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
    /// ```
    ///
    /// ## Instead
    /// `CREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);` in the same or an
    /// earlier migration.
    pub struct FkWithoutIndex => "fk-without-index", Warning;
}

impl Rule for FkWithoutIndex {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check_file(&self, ctx: &FileCtx, out: &mut Vec<Finding>) {
        for s in ctx.statements {
            for op in s.ops {
                let (table, fks): (_, Vec<&Vec<String>>) = match op {
                    Operation::CreateTable {
                        table,
                        columns,
                        constraints,
                        ..
                    } => (
                        table,
                        columns
                            .iter()
                            .flat_map(|c| &c.constraints)
                            .chain(constraints)
                            .filter_map(|k| match &k.kind {
                                ConstraintKind::ForeignKey { columns, .. } => Some(columns),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Operation::AddColumn { table, column, .. } => (
                        table,
                        column
                            .constraints
                            .iter()
                            .filter_map(|k| match &k.kind {
                                ConstraintKind::ForeignKey { columns, .. } => Some(columns),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Operation::AddConstraint {
                        table, constraint, ..
                    } => match &constraint.kind {
                        ConstraintKind::ForeignKey { columns, .. } => (table, vec![columns]),
                        _ => continue,
                    },
                    _ => continue,
                };
                for cols in fks {
                    if ctx.catalog.table(table).is_some()
                        && !ctx.catalog.has_index_covering(table, cols)
                    {
                        out.push(ctx.finding_at(
                            &Self::META,
                            s,
                            format!("foreign key {table} ({}) has no index: deletes on the referenced table scan {table}", cols.join(", ")),
                            format!("CREATE INDEX CONCURRENTLY ON {table} ({})", cols.join(", ")),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_index() {
        fires("fk-without-index", &[USERS], "ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (org_id) REFERENCES orgs (id) NOT VALID;");
        fires(
            "fk-without-index",
            &[USERS],
            "CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));",
        );
    }

    #[test]
    fn silent_with_index_in_same_migration() {
        silent("fk-without-index", &[USERS], "CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\nCREATE INDEX posts_user_id_idx ON posts (user_id);");
        silent("fk-without-index", &[USERS, "CREATE INDEX CONCURRENTLY users_org_idx ON users (org_id);"], "ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (org_id) REFERENCES orgs (id) NOT VALID;");
    }
}
