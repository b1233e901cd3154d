use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::locks::LockLevel;

crate::declare_rule! {
    /// A data backfill (`UPDATE`, `DELETE`, `INSERT … SELECT`) in the same transaction as DDL.
    ///
    /// ## What it catches
    /// A DML statement on a live table after a schema change in the same transaction.
    ///
    /// ## Why it hurts
    /// The DDL's lock (often ACCESS EXCLUSIVE) is held until commit, so the whole backfill runs
    /// under it; and a one-statement UPDATE holds row locks on every row it touches, blocking
    /// the application's writes to them until it ends.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN full_name text;
    /// UPDATE users SET full_name = name;
    /// ```
    ///
    /// ## Instead
    /// Commit the DDL, then backfill in batches of short transactions. The plan moves the
    /// UPDATE to the backfill phase, where the engine batches it by primary key.
    pub struct BackfillInDdlTransaction => "backfill-in-ddl-transaction", Warning;
}

impl Rule for BackfillInDdlTransaction {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let Some(ddl) = ctx
            .tx
            .held
            .iter()
            .filter(|h| h.level > LockLevel::RowExclusive)
            .max_by_key(|h| h.level)
        else {
            return;
        };
        for op in ctx.ops.iter().filter(|o| o.is_dml()) {
            let Some(table) = op.table() else { continue };
            if ctx.is_live_table(table) {
                out.push(ctx.finding(
                    &Self::META,
                    format!("backfilling {table} in the transaction that holds {} on {} (line {}): the lock lasts the whole backfill", ddl.level, ddl.table, ddl.line),
                    "commit the DDL first and backfill in batches (the plan moves this to the backfill phase)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_after_ddl() {
        fires(
            "backfill-in-ddl-transaction",
            &[USERS],
            "ALTER TABLE users ADD COLUMN full_name text;\nUPDATE users SET full_name = name;",
        );
    }

    #[test]
    fn silent_without_ddl_or_outside_transaction() {
        silent(
            "backfill-in-ddl-transaction",
            &[USERS],
            "UPDATE users SET name = 'x' WHERE id = 1;",
        );
        silent("backfill-in-ddl-transaction", &[USERS], "-- migrate:no-transaction\nALTER TABLE users ADD COLUMN full_name text;\nUPDATE users SET full_name = name;");
    }
}
