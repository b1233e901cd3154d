use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{Operation, Volatility};

crate::declare_rule! {
    /// `ADD COLUMN … DEFAULT` that rewrites the table: a volatile default, or any default before PostgreSQL 11.
    ///
    /// ## What it catches
    /// Adding a column to an existing table with a default evaluated per row (`random()`,
    /// `gen_random_uuid()`, `clock_timestamp()`, `nextval()`, a function the tool cannot vouch
    /// for), or with any non-null default when the target is older than PostgreSQL 11.
    ///
    /// ## Why it hurts
    /// PostgreSQL must write the value into every row: a full table rewrite under ACCESS
    /// EXCLUSIVE, during which nothing can read or write the table. From 11, a constant or
    /// stable default (`now()`) is stored once in the catalog and costs nothing.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();
    /// ```
    ///
    /// ## Instead
    /// Add the column without the default, `SET DEFAULT` for new rows, then fill existing rows in
    /// batches. The plan does exactly this.
    pub struct VolatileDefault => "adding-field-with-volatile-default", Warning;
}

impl Rule for VolatileDefault {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AddColumn { table, column, .. } = op else {
                continue;
            };
            let Some(d) = &column.default else { continue };
            if !ctx.is_live_table(table) || d.sql.eq_ignore_ascii_case("null") {
                continue;
            }
            if d.volatility == Volatility::Volatile {
                let f = d.volatile_fn.clone().unwrap_or_else(|| d.sql.clone());
                out.push(ctx.finding(
                    &Self::META,
                    format!("the default of {table}.{} calls {f}, evaluated per row: the table is rewritten under ACCESS EXCLUSIVE", column.name),
                    "add the column without a default, SET DEFAULT, then backfill in batches (the plan does)",
                ));
            } else if !ctx.pg().at_least(11) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("before PostgreSQL 11, ADD COLUMN with a default rewrites {table} under ACCESS EXCLUSIVE"),
                    "add the column without a default, SET DEFAULT, then backfill in batches (the plan does)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_volatile_or_old_versions() {
        fires(
            "adding-field-with-volatile-default",
            &[USERS],
            "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        );
        fires(
            "adding-field-with-volatile-default",
            &[USERS],
            "ALTER TABLE users ADD COLUMN n int DEFAULT my_func();",
        );
        fires_on(
            "10",
            "adding-field-with-volatile-default",
            &[USERS],
            "ALTER TABLE users ADD COLUMN n int DEFAULT 0;",
        );
    }

    #[test]
    fn silent_on_constant_and_stable_defaults_from_11() {
        silent(
            "adding-field-with-volatile-default",
            &[USERS],
            "ALTER TABLE users ADD COLUMN n int DEFAULT 0;",
        );
        silent(
            "adding-field-with-volatile-default",
            &[USERS],
            "ALTER TABLE users ADD COLUMN at timestamptz DEFAULT now();",
        );
        silent(
            "adding-field-with-volatile-default",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
        );
    }
}
