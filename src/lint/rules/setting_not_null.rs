use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `SET NOT NULL` on an existing column without a validated `CHECK (c IS NOT NULL)`.
    ///
    /// ## What it catches
    /// `ALTER COLUMN … SET NOT NULL` on a table that may hold rows, unless a validated
    /// `CHECK (c IS NOT NULL)` already proves it and the target is PostgreSQL 12 or later.
    ///
    /// ## Why it hurts
    /// PostgreSQL scans the whole table to prove there is no NULL, holding ACCESS EXCLUSIVE the
    /// whole time. And the old version may still write NULLs.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ALTER COLUMN email SET NOT NULL;
    /// ```
    ///
    /// ## Instead
    /// Backfill the NULLs, add `CHECK (email IS NOT NULL) NOT VALID`, `VALIDATE` it (no write
    /// lock), then `SET NOT NULL` (PostgreSQL 12 skips the scan) and drop the check. The plan
    /// does this in contract, with a trigger filling NULLs from the old version meanwhile.
    pub struct SettingNotNull => "setting-not-null", Warning;
}

impl Rule for SettingNotNull {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::SetNotNull { table, column } = op else {
                continue;
            };
            if !ctx.is_live_table(table) {
                continue;
            }
            let proven = ctx.pg().at_least(12)
                && ctx
                    .catalog
                    .table(table)
                    .is_some_and(|t| t.has_valid_not_null_check(column));
            if !proven {
                out.push(ctx.finding(
                    &Self::META,
                    format!("SET NOT NULL scans all of {table} under ACCESS EXCLUSIVE to prove {column} has no NULL"),
                    "add CHECK (… IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL and drop the check (the plan does)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_check() {
        fires(
            "setting-not-null",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
        );
    }

    #[test]
    fn silent_after_validated_check_on_12() {
        let ctx = [
            USERS,
            "ALTER TABLE users ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID;",
            "ALTER TABLE users VALIDATE CONSTRAINT name_nn;",
        ];
        silent(
            "setting-not-null",
            &ctx,
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
        );
        fires_on(
            "11",
            "setting-not-null",
            &ctx,
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
        );
        fires(
            "setting-not-null",
            &[
                USERS,
                "ALTER TABLE users ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID;",
            ],
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
        );
    }
}
