use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// `timestamp` (without time zone) instead of `timestamptz`.
    ///
    /// ## What it catches
    /// Columns defined or retyped as `timestamp` / `timestamp without time zone`.
    ///
    /// ## Why it hurts
    /// The value carries no zone: each client's `TimeZone` setting silently decides what it
    /// means, and converting the column later rewrites the table (unless the session runs in
    /// UTC, on PostgreSQL 12 and later).
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events ADD COLUMN happened_at timestamp;
    /// ```
    ///
    /// ## Instead
    /// `timestamptz`, which stores an absolute instant.
    pub struct PreferTimestamptz => "prefer-timestamptz", Info;
}

impl Rule for PreferTimestamptz {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            if c.ty.base == "timestamp" {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{}.{} is timestamp without time zone", c.table, c.name),
                    "use timestamptz",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_timestamp() {
        fires("prefer-timestamptz", &[], "CREATE TABLE e (at timestamp);");
    }

    #[test]
    fn silent_on_timestamptz() {
        silent(
            "prefer-timestamptz",
            &[],
            "CREATE TABLE e (at timestamptz, b timestamp with time zone);",
        );
    }
}
