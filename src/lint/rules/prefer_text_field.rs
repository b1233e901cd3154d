use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// `varchar(n)` where `text` (with a CHECK if needed) ages better.
    ///
    /// ## What it catches
    /// Columns defined or retyped as `varchar(n)` / `character varying(n)`.
    ///
    /// ## Why it hurts
    /// The length is rarely a real rule; when it has to grow it is cheap, but when it has to
    /// shrink the change rewrites the table under ACCESS EXCLUSIVE. `text` and `varchar` store
    /// and perform the same.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE users (email varchar(255));
    /// ```
    ///
    /// ## Instead
    /// `email text`, plus `CHECK (length(email) <= 255)` when the limit matters: a check can be
    /// changed with `NOT VALID` and `VALIDATE` without blocking.
    pub struct PreferTextField => "prefer-text-field", Info;
}

impl Rule for PreferTextField {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            if c.ty.base == "varchar" && !c.ty.mods.is_empty() {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{}.{} is {}", c.table, c.name, c.ty.sql),
                    "use text, with a CHECK (length(…) <= n) if the limit matters",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_varchar_n() {
        fires(
            "prefer-text-field",
            &[],
            "CREATE TABLE u (email varchar(255));",
        );
    }

    #[test]
    fn silent_on_text() {
        silent(
            "prefer-text-field",
            &[],
            "CREATE TABLE u (email text, b varchar);",
        );
    }
}
