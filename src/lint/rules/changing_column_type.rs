use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::types::{type_change, TypeChange};
use crate::model::Operation;

crate::declare_rule! {
    /// `ALTER COLUMN … TYPE` that rewrites the table.
    ///
    /// ## What it catches
    /// A type change on an existing table unless it is known not to rewrite: `varchar(n)` to a
    /// longer `varchar` or to `text`, `text` to unconstrained `varchar`, `numeric(p,s)` to a
    /// larger precision with the same scale or to unconstrained `numeric`, a larger precision
    /// for `timestamp`/`time`/`interval`, `varbit` widening, `cidr` to `inet`. A `USING` clause
    /// always rewrites. When the current type is not known (no earlier migration creates the
    /// column and no `--database-url`), the change is assumed to rewrite.
    ///
    /// ## Why it hurts
    /// A rewrite copies every row and rebuilds every index under ACCESS EXCLUSIVE. And the
    /// running version's queries (prepared statements above all) still expect the old type.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ALTER COLUMN id TYPE bigint;
    /// ```
    ///
    /// ## Instead
    /// Add a column of the new type, keep it in sync with triggers, backfill it in batches, and
    /// swap the names in contract. The plan does this; the new version's view shows the new
    /// column under the old name from expand on, so no running version's result type changes
    /// at the swap (with `views = false`, the new version reads the column with a cast).
    pub struct ChangingColumnType => "changing-column-type", Warning;
}

impl Rule for ChangingColumnType {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AlterColumnType {
                table,
                column,
                ty,
                using,
                ..
            } = op
            else {
                continue;
            };
            if !ctx.is_live_table(table) {
                continue;
            }
            let current = ctx
                .catalog
                .table(table)
                .and_then(|t| t.column(column))
                .map(|c| &c.ty);
            let msg = match type_change(current, ty, using.is_some()) {
                TypeChange::NoRewrite => continue,
                TypeChange::Rewrite => format!(
                    "changing {table}.{column} from {} to {} rewrites the table and its indexes under ACCESS EXCLUSIVE",
                    current.map_or("?", |c| c.sql.as_str()),
                    ty.sql
                ),
                TypeChange::Unknown => format!(
                    "the current type of {table}.{column} is unknown; changing it to {} may rewrite the table under ACCESS EXCLUSIVE",
                    ty.sql
                ),
            };
            out.push(ctx.finding(
                &Self::META,
                msg,
                if ctx.settings.views {
                    "add a column of the new type kept in sync by triggers, backfill, then swap in contract; the new version's view shows it under the column's name (the plan does; the app connects with `migrate latest`)"
                } else {
                    "add a column of the new type kept in sync by triggers, backfill, then swap in contract (the plan does); the new version reads the column with a cast until then"
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_rewriting_changes() {
        fires(
            "changing-column-type",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
        );
        fires(
            "changing-column-type",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(50);",
        );
        fires(
            "changing-column-type",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN name TYPE int USING name::int;",
        );
        fires(
            "changing-column-type",
            &[],
            "ALTER TABLE unknown ALTER COLUMN c TYPE text;",
        );
    }

    #[test]
    fn silent_on_changes_that_do_not_rewrite() {
        silent(
            "changing-column-type",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(200);",
        );
        silent(
            "changing-column-type",
            &[USERS],
            "ALTER TABLE users ALTER COLUMN email TYPE text;",
        );
        silent(
            "changing-column-type",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;",
        );
    }
}
