use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// Row-level security switched on or off on a live table.
    ///
    /// ## What it catches
    /// `ALTER TABLE … ENABLE`, `FORCE` or `DISABLE ROW LEVEL SECURITY` on a table that was not
    /// created in the same migration.
    ///
    /// ## Why it hurts
    /// No lock to speak of, and still an outage: once row security is on, every role but the
    /// owner (and superusers, and `BYPASSRLS` roles) sees only the rows a policy lets it see;
    /// with no policy for the app's role, the running version reads nothing and its writes
    /// fail, the moment the migration commits. `FORCE` does the same to the owner. `DISABLE`
    /// is the reverse: every role with the table's privileges sees every row, which the
    /// policies were there to stop.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
    /// ```
    ///
    /// ## Instead
    /// Create the policies for every role the app connects as first (in an earlier migration,
    /// deployed and checked as that role), then enable row security; disable it only where
    /// the table no longer holds rows a role must not see.
    pub struct ChangingRowLevelSecurity => "changing-row-level-security", Error;
}

impl Rule for ChangingRowLevelSecurity {
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
            let (message, fix) = match what.as_str() {
                "EnableRowSecurity" | "ForceRowSecurity" => (
                    format!(
                        "row-level security on {}: every role but its owner{} sees only the rows a policy lets it see, so a running version without a policy for its role reads nothing and its writes fail",
                        table.sql(),
                        if what == "ForceRowSecurity" { ", and now the owner too," } else { "" }
                    ),
                    "create the policies for every role the app connects as first, in an earlier migration, and check them as that role",
                ),
                "DisableRowSecurity" | "NoForceRowSecurity" => (
                    format!(
                        "row-level security off on {}: every role with its privileges sees every row the policies kept from it",
                        table.sql()
                    ),
                    "disable it only where no role may not see some rows; otherwise drop or change the policies instead",
                ),
                _ => continue,
            };
            out.push(ctx.finding(&Self::META, message, fix));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_a_live_table() {
        fires(
            "changing-row-level-security",
            &[USERS],
            "ALTER TABLE users ENABLE ROW LEVEL SECURITY;",
        );
        fires(
            "changing-row-level-security",
            &[USERS],
            "ALTER TABLE users DISABLE ROW LEVEL SECURITY;",
        );
    }

    #[test]
    fn silent_on_a_new_table() {
        silent(
            "changing-row-level-security",
            &[],
            "CREATE TABLE t (a int);\nALTER TABLE t ENABLE ROW LEVEL SECURITY;",
        );
    }
}
