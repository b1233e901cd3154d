use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `CREATE TABLE IF NOT EXISTS` of a table that already exists.
    ///
    /// ## What it catches
    /// `CREATE TABLE IF NOT EXISTS` naming a table an earlier migration made (or the live
    /// catalog has).
    ///
    /// ## Why it hurts
    /// PostgreSQL skips it with a notice: the columns, keys and defaults the statement
    /// describes are not made, and everything after it in the file (an index built without
    /// `CONCURRENTLY`, a backfill, constraints checked at once) runs against the live table
    /// with its rows and its running version, as if it were the new, empty table the file
    /// was written for. The linter judges what follows against the live table too.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL);
    /// CREATE INDEX users_email ON users (email);
    /// ```
    ///
    /// ## Instead
    /// Name a new table, or change the existing one with the statements that say what changes
    /// (`ADD COLUMN`, `CREATE INDEX CONCURRENTLY`).
    pub struct CreateTableIfNotExistsLive => "create-table-if-not-exists-live", Warning;
}

impl Rule for CreateTableIfNotExistsLive {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::CreateTable {
                table,
                if_not_exists: true,
                ..
            } = op
            {
                if ctx.catalog.table(table).is_some() && ctx.is_live_table(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!(
                            "{} exists already: CREATE TABLE IF NOT EXISTS does nothing, and what follows in the file runs against the live table and its rows",
                            table.sql()
                        ),
                        "name a new table, or change the existing one with ADD COLUMN, CREATE INDEX CONCURRENTLY…",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_a_table_that_exists_and_judges_what_follows_against_it() {
        fires(
            "create-table-if-not-exists-live",
            &[USERS],
            "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);",
        );
        // The index that follows is on the live table: not concurrent, it blocks writes.
        fires(
            "require-concurrent-index-creation",
            &[USERS],
            "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);\nCREATE INDEX users_id2 ON users (id);",
        );
    }

    #[test]
    fn silent_on_a_new_table() {
        silent(
            "create-table-if-not-exists-live",
            &[],
            "CREATE TABLE IF NOT EXISTS t (a int);",
        );
    }
}
