use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// Syntax or behaviour the target PostgreSQL version does not have.
    ///
    /// ## What it catches
    /// Features newer than `--pg-version` (or `pg_version` in migrate.toml): `CREATE INDEX …
    /// INCLUDE` (11), `CALL` (11), generated columns and `REINDEX CONCURRENTLY` (12),
    /// `DETACH PARTITION … CONCURRENTLY` and `CREATE OR REPLACE TRIGGER` (14),
    /// `NULLS NOT DISTINCT`, `MERGE` and `SET ACCESS METHOD` (15), `SET EXPRESSION` (17),
    /// `VIRTUAL` generated columns (18); and `ALTER TYPE … ADD VALUE` inside a transaction
    /// before 12.
    ///
    /// ## Why it hurts
    /// The server rejects the statement, and the migration fails in production although it
    /// passed on a developer's newer server.
    ///
    /// ## Example
    /// ```sql
    /// -- target: PostgreSQL 13
    /// ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;
    /// ```
    ///
    /// ## Instead
    /// Use the older form, or raise `pg_version` once every server runs the newer release.
    pub struct SyntaxNewerThanTarget => "syntax-newer-than-target", Error;
}

impl Rule for SyntaxNewerThanTarget {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let mut needs: Vec<(u32, &str)> = Vec::new();
        for op in ctx.ops {
            match op {
                Operation::CreateIndex(ix) => {
                    if ix.include {
                        needs.push((11, "CREATE INDEX … INCLUDE"));
                    }
                    if ix.nulls_not_distinct {
                        needs.push((15, "NULLS NOT DISTINCT"));
                    }
                }
                Operation::Reindex {
                    concurrently: true, ..
                } => needs.push((12, "REINDEX CONCURRENTLY")),
                Operation::DetachPartition {
                    concurrently: true, ..
                } => needs.push((14, "DETACH PARTITION … CONCURRENTLY")),
                Operation::DetachPartition { finalize: true, .. } => {
                    needs.push((14, "DETACH PARTITION … FINALIZE"))
                }
                Operation::RewriteTable { what, .. } if what == "SET ACCESS METHOD" => {
                    needs.push((15, "SET ACCESS METHOD"))
                }
                Operation::AlterGenerated { .. } => {
                    needs.push((13, "ALTER COLUMN … DROP EXPRESSION"))
                }
                Operation::RewriteTable { what, .. } if what == "ALTER COLUMN … SET EXPRESSION" => {
                    needs.push((17, "ALTER COLUMN … SET EXPRESSION"))
                }
                Operation::AddEnumValue { .. } if ctx.tx.in_transaction() => {
                    needs.push((12, "ALTER TYPE … ADD VALUE inside a transaction"))
                }
                Operation::Opaque { what } if what == "CALL" => needs.push((11, "CALL")),
                Operation::CreateTable {
                    columns,
                    constraints,
                    ..
                } => {
                    for c in columns {
                        match c.generated_stored {
                            Some(true) => needs.push((12, "generated columns")),
                            Some(false) => needs.push((18, "VIRTUAL generated columns")),
                            None => {}
                        }
                        needs.extend(c.constraints.iter().filter_map(|k| k.needs));
                    }
                    needs.extend(constraints.iter().filter_map(|k| k.needs));
                }
                Operation::AddColumn { column, .. } => {
                    match column.generated_stored {
                        Some(true) => needs.push((12, "generated columns")),
                        Some(false) => needs.push((18, "VIRTUAL generated columns")),
                        None => {}
                    }
                    needs.extend(column.constraints.iter().filter_map(|k| k.needs));
                }
                Operation::AddConstraint { constraint, .. } => needs.extend(constraint.needs),
                _ => {}
            }
        }
        for op in ctx.ops {
            match op {
                Operation::Merge { .. } => needs.push((15, "MERGE")),
                Operation::CreateTrigger { replace: true, .. } => {
                    needs.push((14, "CREATE OR REPLACE TRIGGER"))
                }
                _ => {}
            }
        }
        let target = ctx.pg();
        for (major, what) in needs {
            if target.major < major {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{what} needs PostgreSQL {major}; the target is {target}"),
                    format!("use the older form, or set pg_version to {major} once every server runs it"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_below_the_version() {
        fires_on(
            "13",
            "syntax-newer-than-target",
            &[],
            "-- migrate:no-transaction\nALTER TABLE e DETACH PARTITION e1 CONCURRENTLY;",
        );
        fires_on(
            "14",
            "syntax-newer-than-target",
            &[],
            "CREATE TABLE t (a int);\nCREATE UNIQUE INDEX i ON t (a) NULLS NOT DISTINCT;",
        );
        fires_on(
            "11",
            "syntax-newer-than-target",
            &[],
            "CREATE TYPE s AS ENUM ('a');\nALTER TYPE s ADD VALUE 'b';",
        );
        fires_on(
            "14",
            "syntax-newer-than-target",
            &[],
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING;",
        );
    }

    /// Constraints written with syntax of 15 and 18, inline or as table constraints; a plain
    /// CHECK needs nothing (18's parser marks every constraint enforced unless it says not).
    #[test]
    fn constraint_syntax_by_version() {
        let t = "CREATE TABLE t (id int PRIMARY KEY, a int);";
        for (sql, major) in [
            ("ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT ENFORCED;", 18),
            ("ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a;", 18),
            ("ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a NOT VALID;", 18),
            ("CREATE TABLE k (a int, NOT NULL a);", 18),
            ("ALTER TABLE t ADD COLUMN b int REFERENCES t (id) ON DELETE SET NULL (b);", 15),
            ("ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE NULLS NOT DISTINCT (a);", 15),
        ] {
            fires_on(&(major - 1).to_string(), "syntax-newer-than-target", &[t], sql);
            silent_on(&major.to_string(), "syntax-newer-than-target", &[t], sql);
        }
        silent_on(
            "13",
            "syntax-newer-than-target",
            &[t],
            "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID; CREATE TABLE k (a int NOT NULL);",
        );
    }

    #[test]
    fn silent_at_or_above_the_version() {
        silent_on(
            "14",
            "syntax-newer-than-target",
            &[],
            "-- migrate:no-transaction\nALTER TABLE e DETACH PARTITION e1 CONCURRENTLY;",
        );
        silent_on(
            "12",
            "syntax-newer-than-target",
            &[],
            "CREATE TYPE s AS ENUM ('a');\nALTER TYPE s ADD VALUE 'b';",
        );
    }
}
