use crate::lint::{FileCtx, Finding, Rule};
use crate::model::Operation;
use std::collections::HashMap;

crate::declare_rule! {
    /// Several `ALTER TABLE` statements on one table that could be one.
    ///
    /// ## What it catches
    /// Two or more ALTER TABLE statements on the same live table in one migration, when their
    /// actions can be combined into a single statement.
    ///
    /// ## Why it hurts
    /// Each statement queues for its own ACCESS EXCLUSIVE lock (outside a transaction), or
    /// stretches the time it is held; one statement takes it once and, for rewriting actions,
    /// rewrites the table once.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN a int;
    /// ALTER TABLE users ADD COLUMN b int;
    /// ```
    ///
    /// ## Instead
    /// `ALTER TABLE users ADD COLUMN a int, ADD COLUMN b int;`
    pub struct MultipleAlterTable => "multiple-alter-table", Info;
}

impl Rule for MultipleAlterTable {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check_file(&self, ctx: &FileCtx, out: &mut Vec<Finding>) {
        let mut first: HashMap<(Option<crate::plan::Phase>, String, String), usize> =
            HashMap::new();
        for s in ctx.statements {
            // Only actions that gain from sharing one lock and one rewrite; constraint recipes
            // (NOT VALID, VALIDATE, SET NOT NULL) must stay separate statements.
            let combinable = !s.ops.is_empty()
                && s.ops.iter().all(|o| {
                    matches!(
                        o,
                        Operation::AddColumn { .. }
                            | Operation::DropColumn { .. }
                            | Operation::AlterColumnType { .. }
                            | Operation::SetDefault { .. }
                            | Operation::DropNotNull { .. }
                    )
                });
            let Some(table) = s.ops.first().and_then(Operation::table) else {
                continue;
            };
            if !combinable || s.new_tables.iter().any(|t| t.same(table)) {
                continue;
            }
            let key = (
                s.section,
                table.schema_name().to_string(),
                table.name.clone(),
            );
            match first.get(&key) {
                Some(line) => out.push(ctx.finding_at(
                    &Self::META,
                    s,
                    format!("{table} is altered again (first on line {line})"),
                    "combine the actions into one ALTER TABLE, separated by commas",
                )),
                None => {
                    first.insert(key, s.line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_two_alters() {
        fires(
            "multiple-alter-table",
            &[USERS],
            "ALTER TABLE users ADD COLUMN a int;\nALTER TABLE users ADD COLUMN b int;",
        );
    }

    #[test]
    fn silent_on_one_or_different_tables() {
        silent("multiple-alter-table", &[USERS], "ALTER TABLE users ADD COLUMN a int, ADD COLUMN b int;\nALTER TABLE orgs ADD COLUMN c int;");
    }
}
