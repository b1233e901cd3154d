use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// Adding a stored generated column to an existing table.
    ///
    /// ## What it catches
    /// `ADD COLUMN … GENERATED ALWAYS AS (…) STORED` on a table that may hold rows.
    ///
    /// ## Why it hurts
    /// The expression is computed and written for every row: a full rewrite under ACCESS
    /// EXCLUSIVE.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN email_lower text GENERATED ALWAYS AS (lower(email)) STORED;
    /// ```
    ///
    /// ## Instead
    /// Add a plain nullable column kept up to date by a trigger, backfill it in batches; or on
    /// PostgreSQL 18 use a `VIRTUAL` generated column, which stores nothing.
    pub struct AddingStoredGeneratedColumn => "adding-stored-generated-column", Error;
}

impl Rule for AddingStoredGeneratedColumn {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AddColumn { table, column, .. } = op else {
                continue;
            };
            if column.generated_stored == Some(true) && ctx.is_live_table(table) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("stored generated column {table}.{} is computed for every row under ACCESS EXCLUSIVE", column.name),
                    "use a trigger-maintained column with a batched backfill, or a VIRTUAL column on PostgreSQL 18",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_stored() {
        fires(
            "adding-stored-generated-column",
            &[USERS],
            "ALTER TABLE users ADD COLUMN l text GENERATED ALWAYS AS (lower(name)) STORED;",
        );
    }

    #[test]
    fn silent_on_virtual_and_new_tables() {
        silent(
            "adding-stored-generated-column",
            &[USERS],
            "ALTER TABLE users ADD COLUMN l text GENERATED ALWAYS AS (lower(name)) VIRTUAL;",
        );
        silent("adding-stored-generated-column", &[], "CREATE TABLE t (a text);\nALTER TABLE t ADD COLUMN l text GENERATED ALWAYS AS (lower(a)) STORED;");
    }
}
