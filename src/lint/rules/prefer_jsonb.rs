use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// A `json` column where `jsonb` is meant.
    ///
    /// ## What it catches
    /// Columns defined or retyped as `json`.
    ///
    /// ## Why it hurts
    /// `json` has no equality operator, so `SELECT DISTINCT`, `GROUP BY` and `UNION` over it
    /// fail; it cannot be indexed with GIN and is re-parsed on every access. Changing it to
    /// `jsonb` later rewrites the table.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events ADD COLUMN payload json;
    /// ```
    ///
    /// ## Instead
    /// `ALTER TABLE events ADD COLUMN payload jsonb;` (keep `json` only when key order or
    /// duplicate keys must be preserved).
    pub struct PreferJsonb => "prefer-jsonb", Warning;
}

impl Rule for PreferJsonb {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            if c.ty.base == "json" {
                out.push(ctx.finding(
                    &Self::META,
                    format!(
                        "{}.{} is json: no equality, no GIN index, re-parsed on every read",
                        c.table, c.name
                    ),
                    "use jsonb",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_json() {
        fires("prefer-jsonb", &[], "CREATE TABLE e (payload json);");
    }

    #[test]
    fn silent_on_jsonb() {
        silent("prefer-jsonb", &[], "CREATE TABLE e (payload jsonb);");
    }
}
