use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// `ADD UNIQUE` or `ADD PRIMARY KEY` that builds its index under ACCESS EXCLUSIVE.
    ///
    /// ## What it catches
    /// A unique or primary key constraint added to an existing table without `USING INDEX`, or
    /// written on a new column (`ADD COLUMN c int UNIQUE`); and
    /// `PRIMARY KEY USING INDEX` over columns not known to be NOT NULL, which makes PostgreSQL
    /// scan the table to set NOT NULL.
    ///
    /// ## Why it hurts
    /// The index is built while ACCESS EXCLUSIVE is held: no reads or writes for the whole build.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
    /// ```
    ///
    /// ## Instead
    /// `CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);` then
    /// `ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;`.
    /// For a primary key, make the columns NOT NULL through a validated check first. The plan
    /// does all of this.
    pub struct UniqueConstraintWithoutIndex => "unique-constraint-without-index", Warning;
}

impl Rule for UniqueConstraintWithoutIndex {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            // `ADD COLUMN c … UNIQUE` / `PRIMARY KEY`: the index is built in the statement.
            if let Operation::AddColumn { table, column, .. } = op {
                let inline = column.constraints.iter().find_map(|c| match c.kind {
                    ConstraintKind::Unique { .. } => Some("UNIQUE"),
                    ConstraintKind::PrimaryKey { .. } => Some("PRIMARY KEY"),
                    _ => None,
                });
                if let (Some(kind), true) = (inline, ctx.is_live_table(table)) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("the {kind} written on new column {table}.{} builds its index under ACCESS EXCLUSIVE: no reads or writes until it is done", column.name),
                        "add the column alone, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … USING INDEX",
                    ));
                }
                continue;
            }
            let Operation::AddConstraint {
                table, constraint, ..
            } = op
            else {
                continue;
            };
            if !ctx.is_live_table(table) {
                continue;
            }
            match &constraint.kind {
                ConstraintKind::Unique {
                    using_index: None, ..
                }
                | ConstraintKind::PrimaryKey {
                    using_index: None, ..
                } => {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("the constraint's index on {table} is built under ACCESS EXCLUSIVE: no reads or writes until it is done"),
                        "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … USING INDEX (the plan does)",
                    ));
                }
                ConstraintKind::PrimaryKey {
                    using_index: Some(ix),
                    ..
                } => {
                    let t = ctx.catalog.table(table);
                    let cols = ctx
                        .catalog
                        .index(&crate::model::QualifiedName::new(
                            table.schema.as_deref(),
                            ix,
                        ))
                        .map(|i| i.columns.clone())
                        .unwrap_or_default();
                    let nullable: Vec<&String> = cols
                        .iter()
                        .filter(|c| !t.and_then(|t| t.column(c)).is_some_and(|c| c.not_null))
                        .collect();
                    if !nullable.is_empty() {
                        out.push(ctx.finding(
                            &Self::META,
                            format!("PRIMARY KEY USING INDEX sets NOT NULL on {}: a full scan under ACCESS EXCLUSIVE", nullable.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                            "make the columns NOT NULL first through a validated CHECK (… IS NOT NULL)",
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_using_index() {
        fires(
            "unique-constraint-without-index",
            &[USERS],
            "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        );
        fires(
            "unique-constraint-without-index",
            &[
                "CREATE TABLE t (a int);",
                "CREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a);",
            ],
            "ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY USING INDEX t_a;",
        );
    }

    #[test]
    fn silent_with_using_index_or_new_table() {
        silent(
            "unique-constraint-without-index",
            &[
                USERS,
                "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);",
            ],
            "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;",
        );
        silent(
            "unique-constraint-without-index",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ADD CONSTRAINT u UNIQUE (a);",
        );
    }
}
