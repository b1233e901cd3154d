use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// A 32-bit (or 16-bit) integer key column.
    ///
    /// ## What it catches
    /// Primary key columns, `id`, and `…_id` columns defined as `integer`, `smallint`,
    /// `serial` or `smallserial`.
    ///
    /// ## Why it hurts
    /// Busy tables run out of 2,147,483,647 values, and widening a key later is a rewrite of the
    /// table and of every table that references it.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE orders (id serial PRIMARY KEY, user_id int);
    /// ```
    ///
    /// ## Instead
    /// `bigint` (`id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint`).
    pub struct PreferBigint => "prefer-bigint", Info;
}

impl Rule for PreferBigint {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            let small = matches!(
                c.ty.base.as_str(),
                "int4" | "int2" | "serial" | "serial4" | "smallserial" | "serial2"
            );
            let key = c.primary_key || c.name == "id" || c.name.ends_with("_id");
            if small && key && !c.ty.array {
                out.push(ctx.finding(
                    &Self::META,
                    format!(
                        "key column {}.{} is {}: it can run out of values",
                        c.table, c.name, c.ty.sql
                    ),
                    "use bigint",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_int_keys() {
        fires(
            "prefer-bigint",
            &[],
            "CREATE TABLE o (id serial PRIMARY KEY);",
        );
        fires("prefer-bigint", &[], "CREATE TABLE o (user_id int);");
    }

    #[test]
    fn silent_on_bigint_or_non_keys() {
        silent(
            "prefer-bigint",
            &[],
            "CREATE TABLE o (id bigint PRIMARY KEY, quantity int);",
        );
    }
}
