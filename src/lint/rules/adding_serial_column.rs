use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// Adding a `serial` or identity column to an existing table.
    ///
    /// ## What it catches
    /// `ADD COLUMN … serial|bigserial|smallserial` or `ADD COLUMN … GENERATED … AS IDENTITY` on a
    /// table that may hold rows.
    ///
    /// ## Why it hurts
    /// Every existing row needs its own sequence value: the table is rewritten under ACCESS
    /// EXCLUSIVE, blocking all reads and writes for the duration.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events ADD COLUMN seq bigserial;
    /// ```
    ///
    /// ## Instead
    /// Add a nullable `bigint`, create a sequence and `SET DEFAULT nextval(…)` for new rows,
    /// backfill existing rows in batches, then `SET NOT NULL` through a validated check.
    pub struct AddingSerialColumn => "adding-serial-column", Error;
}

impl Rule for AddingSerialColumn {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AddColumn { table, column, .. } = op else {
                continue;
            };
            if (column.identity || column.ty.is_serial()) && ctx.is_live_table(table) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("adding {} column {table}.{} rewrites the table under ACCESS EXCLUSIVE", if column.identity { "an identity" } else { "a serial" }, column.name),
                    "add a nullable bigint with a sequence default for new rows, backfill in batches, then SET NOT NULL",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_serial_and_identity() {
        fires(
            "adding-serial-column",
            &[USERS],
            "ALTER TABLE users ADD COLUMN seq bigserial;",
        );
        fires(
            "adding-serial-column",
            &[USERS],
            "ALTER TABLE users ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;",
        );
    }

    #[test]
    fn silent_on_new_tables() {
        silent(
            "adding-serial-column",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN id bigserial;",
        );
    }
}
