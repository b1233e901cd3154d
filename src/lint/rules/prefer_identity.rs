use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// `serial` / `bigserial` instead of an identity column.
    ///
    /// ## What it catches
    /// Columns defined as `serial`, `bigserial` or `smallserial`.
    ///
    /// ## Why it hurts
    /// The sequence is a separate object with its own permissions and ownership quirks; it is
    /// easy to insert explicit values that later collide with it, and dumps and copies of the
    /// table need care.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE orders (id bigserial PRIMARY KEY);
    /// ```
    ///
    /// ## Instead
    /// `id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY` (PostgreSQL 10 and later).
    pub struct PreferIdentity => "prefer-identity", Info;
}

impl Rule for PreferIdentity {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            if c.ty.is_serial() {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{}.{} is {}", c.table, c.name, c.ty.sql),
                    "use bigint GENERATED ALWAYS AS IDENTITY",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_serial() {
        fires(
            "prefer-identity",
            &[],
            "CREATE TABLE o (id bigserial PRIMARY KEY);",
        );
    }

    #[test]
    fn silent_on_identity() {
        silent(
            "prefer-identity",
            &[],
            "CREATE TABLE o (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);",
        );
    }
}
