use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `ADD COLUMN … NOT NULL` without a default on an existing table.
    ///
    /// ## What it catches
    /// A new `NOT NULL` column with no `DEFAULT` (and not an identity or generated column) on a
    /// table that may hold rows.
    ///
    /// ## Why it hurts
    /// It fails outright if the table has any row. If it is empty now, the old version's
    /// INSERTs, which do not know the column, fail from then on.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;
    /// ```
    ///
    /// ## Instead
    /// Give it a constant default (`DEFAULT 0`: metadata only from PostgreSQL 11), or add it
    /// nullable, backfill it, and `SET NOT NULL` in contract:
    /// `ALTER TABLE users ADD COLUMN tenant_id bigint;` then
    /// `UPDATE users SET tenant_id = … WHERE tenant_id IS NULL;` then
    /// `ALTER TABLE users ALTER COLUMN tenant_id SET NOT NULL;`.
    pub struct AddingRequiredField => "adding-required-field", Error;
}

impl Rule for AddingRequiredField {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AddColumn { table, column, .. } = op else {
                continue;
            };
            let required = column.not_null
                && column.default.is_none()
                && !column.identity
                && !column.ty.is_serial()
                && column.generated_stored.is_none();
            if required && ctx.is_live_table(table) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("NOT NULL column {table}.{} has no default: existing rows and the old version's inserts fail", column.name),
                    "give it a constant DEFAULT, or add it nullable, backfill, then SET NOT NULL in contract",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_without_default() {
        fires(
            "adding-required-field",
            &[USERS],
            "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;",
        );
    }

    #[test]
    fn silent_with_default_or_new_table() {
        silent(
            "adding-required-field",
            &[USERS],
            "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL DEFAULT 0;",
        );
        silent(
            "adding-required-field",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int NOT NULL;",
        );
    }
}
