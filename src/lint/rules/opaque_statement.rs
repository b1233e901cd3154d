use crate::lint::{Finding, Level, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A statement whose effect the tool cannot see: `DO` blocks, `CALL`, `EXECUTE`, routines.
    ///
    /// ## What it catches
    /// `DO` blocks, `CALL` and `EXECUTE` (warning), and `CREATE FUNCTION` / `CREATE PROCEDURE`,
    /// whose bodies are not checked (info).
    ///
    /// ## Why it hurts
    /// Anything can happen inside: an `ALTER TABLE` or a full-table `UPDATE` in a DO block gets
    /// none of the checks above, and the plan can only run it as written.
    ///
    /// ## Example
    /// ```sql
    /// DO $$ BEGIN EXECUTE 'ALTER TABLE users ALTER COLUMN id TYPE bigint'; END $$;
    /// ```
    ///
    /// ## Instead
    /// Write schema changes as plain statements so they can be checked and planned; keep
    /// DO blocks for logic that really needs them, and excuse them with
    /// `-- migrate:allow opaque-statement <reason>`.
    pub struct OpaqueStatement => "opaque-statement", Warning;
}

impl Rule for OpaqueStatement {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Opaque { what } = op {
                let routine = what.starts_with("CREATE");
                let mut f = ctx.finding(
                    &Self::META,
                    if routine {
                        format!("{what}: the body is not checked")
                    } else {
                        format!("{what}: the tool cannot see what it changes, so it cannot verify it is safe")
                    },
                    "write schema changes as plain statements, or excuse it with `-- migrate:allow opaque-statement <reason>`",
                );
                if routine {
                    f.level = Level::Info;
                }
                out.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_do_blocks_and_functions() {
        fires("opaque-statement", &[], "DO $$ BEGIN PERFORM 1; END $$;");
        fires(
            "opaque-statement",
            &[],
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        );
    }

    #[test]
    fn silent_on_plain_sql() {
        silent("opaque-statement", &[], "CREATE TABLE t (a int);");
    }
}
