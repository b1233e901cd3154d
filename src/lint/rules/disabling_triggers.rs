use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// Triggers disabled on a live table.
    ///
    /// ## What it catches
    /// `ALTER TABLE … DISABLE TRIGGER name | USER | ALL` on a table that was not created in the
    /// same migration.
    ///
    /// ## Why it hurts
    /// From the commit on, every write of the running version skips what the triggers did:
    /// audit rows, `updated_at`, denormalised counts, the sync triggers of a migration in
    /// flight. `ALL` also disables the internal triggers that enforce foreign keys: rows that
    /// break them go in unchecked, and a later `VALIDATE` or restore fails on them. It takes
    /// SHARE ROW EXCLUSIVE, which blocks writes while it waits.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE orders DISABLE TRIGGER ALL;
    /// ```
    ///
    /// ## Instead
    /// Change or drop the one trigger on purpose (`CREATE OR REPLACE TRIGGER`, `DROP TRIGGER`)
    /// with the code that stops needing it; for a bulk load, `SET session_replication_role =
    /// replica` in the loading session only.
    pub struct DisablingTriggers => "disabling-triggers", Error;
}

impl Rule for DisablingTriggers {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            let Operation::AlterTableOther { table, what } = op else {
                continue;
            };
            if !ctx.is_live_table(table) {
                continue;
            }
            let message = match what.as_str() {
                "DisableTrigAll" => format!(
                    "DISABLE TRIGGER ALL on {}: its foreign keys stop being enforced and every trigger stops firing for the running version's writes",
                    table.sql()
                ),
                "DisableTrig" | "DisableTrigUser" => format!(
                    "disabling triggers on {}: the running version's writes stop doing what they did (audit rows, updated_at, sync)",
                    table.sql()
                ),
                _ => continue,
            };
            out.push(ctx.finding(
                &Self::META,
                message,
                "change or drop the one trigger on purpose; for a bulk load, session_replication_role = replica in that session only",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_a_live_table() {
        fires(
            "disabling-triggers",
            &[USERS],
            "ALTER TABLE users DISABLE TRIGGER ALL;",
        );
        fires(
            "disabling-triggers",
            &[USERS],
            "ALTER TABLE users DISABLE TRIGGER USER;",
        );
    }

    #[test]
    fn silent_on_enable_and_on_a_new_table() {
        silent(
            "disabling-triggers",
            &[USERS],
            "ALTER TABLE users ENABLE TRIGGER ALL;",
        );
        silent(
            "disabling-triggers",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t DISABLE TRIGGER ALL;",
        );
    }
}
