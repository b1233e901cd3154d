use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A statement that parses but that PostgreSQL refuses when it runs.
    ///
    /// ## What it catches
    /// What the statement itself shows to be an error, before any row is read: an `UPDATE`
    /// that assigns a column twice (`multiple assignments to same column`), an `INSERT` or
    /// `CREATE TABLE` that names a column twice (`column specified more than once`), and an
    /// `ADD COLUMN` of a column that an earlier action of the statement, an earlier migration or
    /// the live database already has (`column already exists`), unless it says `IF NOT EXISTS`.
    ///
    /// ## Why it hurts
    /// The deploy stops at this statement; in a file that runs outside a transaction, after the
    /// statements before it have already run.
    ///
    /// ## Example
    /// ```sql
    /// UPDATE users SET status = 'active', status = lower(status);
    /// ```
    ///
    /// ## Instead
    /// Name each column once; add a column that may exist with `ADD COLUMN IF NOT EXISTS`.
    pub struct FailsAtRunTime => "fails-at-run-time", Error;
}

impl Rule for FailsAtRunTime {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        let mut added: Vec<(&crate::model::QualifiedName, &str)> = Vec::new();
        for op in ctx.ops {
            let problem = match op {
                Operation::Update {
                    table,
                    assigned_twice: Some(c),
                    ..
                } => Some(format!(
                    "UPDATE assigns {table}.{c} twice: PostgreSQL refuses it (multiple assignments to same column)"
                )),
                Operation::Insert { table, columns, .. } => {
                    twice(columns.iter().map(String::as_str)).map(|c| {
                        format!("INSERT names {table}.{c} twice: PostgreSQL refuses it (column specified more than once)")
                    })
                }
                Operation::CreateTable { table, columns, .. } => {
                    twice(columns.iter().map(|c| c.name.as_str())).map(|c| {
                        format!("CREATE TABLE {table} defines {c} twice: PostgreSQL refuses it (column specified more than once)")
                    })
                }
                Operation::AddColumn {
                    table,
                    column,
                    if_not_exists: false,
                } => {
                    let earlier = added
                        .iter()
                        .any(|(t, c)| t.same(table) && *c == column.name);
                    let existing = ctx
                        .catalog
                        .table(table)
                        .is_some_and(|t| t.column(&column.name).is_some());
                    added.push((table, &column.name));
                    (earlier || existing).then(|| {
                        format!(
                            "{table} already has a column {}{}: PostgreSQL refuses the ADD COLUMN",
                            column.name,
                            if earlier { " (added earlier in this statement)" } else { "" }
                        )
                    })
                }
                _ => None,
            };
            if let Some(message) = problem {
                out.push(ctx.finding(
                    &Self::META,
                    message,
                    "name each column once; for a column that may exist, ADD COLUMN IF NOT EXISTS",
                ));
            }
        }
    }
}

/// The first name that comes a second time.
fn twice<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if seen.contains(&n) {
            return Some(n.to_string());
        }
        seen.push(n);
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_what_postgres_refuses() {
        let rule = "fails-at-run-time";
        fires(rule, &[USERS], "UPDATE users SET name = 'a', name = 'b';");
        fires(rule, &[USERS], "INSERT INTO orgs (id, name, id) VALUES (1, 'a', 2);");
        fires(rule, &[], "CREATE TABLE t (a int, b int, a text);");
        fires(rule, &[USERS], "ALTER TABLE users ADD COLUMN x int, ADD COLUMN x int;");
        fires(rule, &[USERS], "ALTER TABLE users ADD COLUMN age int;");
    }

    #[test]
    fn silent_on_what_postgres_accepts() {
        let rule = "fails-at-run-time";
        silent(rule, &[USERS], "UPDATE users SET name = 'a', age = 1;");
        // Elements of one array column are separate targets.
        silent(
            rule,
            &["CREATE TABLE t (id int PRIMARY KEY, tags text[]);"],
            "UPDATE t SET tags[1] = 'a', tags[2] = 'b';",
        );
        silent(rule, &[USERS], "ALTER TABLE users ADD COLUMN IF NOT EXISTS age int;");
        silent(rule, &[USERS], "INSERT INTO orgs (id, name) VALUES (1, 'a');");
        silent(rule, &[], "ALTER TABLE unknown_table ADD COLUMN x int;");
    }
}
