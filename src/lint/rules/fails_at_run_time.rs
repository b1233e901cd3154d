use crate::config::AppliedBy;
use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ConstraintKind, Operation};

crate::declare_rule! {
    /// A statement that parses but that PostgreSQL refuses when it runs.
    ///
    /// ## What it catches
    /// What the statement itself shows to be an error, before any row is read: an `UPDATE`
    /// that assigns a column twice (`multiple assignments to same column`), an `INSERT` or
    /// `CREATE TABLE` that names a column twice (`column specified more than once`), and an
    /// `ADD COLUMN` of a column that an earlier action of the statement, an earlier migration or
    /// the live database already has (`column already exists`), unless it says `IF NOT EXISTS`;
    /// a primary key added to a table that has one (inline on `ADD COLUMN`, by `ADD CONSTRAINT`,
    /// or twice in `CREATE TABLE`) unless the same statement drops the old one first (`multiple
    /// primary keys for table are not allowed`).
    /// For files another runner applies (`applied_by = "other"`), also what migrate's engine
    /// would take apart: `CREATE INDEX CONCURRENTLY` on a partitioned table, and before
    /// PostgreSQL 18 a foreign key added `NOT VALID` to one; there and in phase sections
    /// (which run as written), a `PRIMARY KEY` or `UNIQUE` constraint `USING INDEX` on a
    /// partitioned table.
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
        // Primary keys as this statement goes: the table's before it, less the constraints it
        // drops, plus those it adds.
        let mut keyed: Vec<&crate::model::QualifiedName> = Vec::new();
        let mut dropped: Vec<(&crate::model::QualifiedName, &str)> = Vec::new();
        let is_key = |k: &ConstraintKind| matches!(k, ConstraintKind::PrimaryKey { .. });
        for op in ctx.ops {
            let adds_key = match op {
                Operation::AddConstraint { constraint, .. } => is_key(&constraint.kind),
                Operation::AddColumn { column, .. } => {
                    column.constraints.iter().any(|c| is_key(&c.kind))
                }
                Operation::DropConstraint { table, name, .. } => {
                    dropped.push((table, name));
                    false
                }
                _ => false,
            };
            if let Some(table) = op.table().filter(|_| adds_key) {
                let has_key = keyed.iter().any(|t| t.same(table))
                    || ctx.catalog.table(table).is_some_and(|t| {
                        t.constraints.iter().any(|c| {
                            is_key(&c.kind)
                                && !dropped.iter().any(|(d, n)| d.same(table) && *n == c.name)
                        })
                    });
                if has_key {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("{table} already has a primary key: PostgreSQL refuses a second one (multiple primary keys for table are not allowed)"),
                        "drop the old primary key in the same ALTER TABLE first (DROP CONSTRAINT …_pkey, ADD PRIMARY KEY …), or make this one UNIQUE",
                    ));
                }
                keyed.push(table);
            }
            // What the engine builds its own way in plain files, as written in phase sections
            // or by another runner.
            if let Operation::AddConstraint {
                table, constraint, ..
            } = op
            {
                let using = match &constraint.kind {
                    ConstraintKind::PrimaryKey { using_index, .. }
                    | ConstraintKind::Unique { using_index, .. } => using_index.is_some(),
                    _ => false,
                };
                let as_written =
                    ctx.section.is_some() || ctx.settings.applied_by == AppliedBy::Other;
                if using && as_written && ctx.catalog.is_partitioned(table) {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("{table} is partitioned: PostgreSQL takes no constraint USING INDEX on it (ALTER TABLE / ADD CONSTRAINT USING INDEX is not supported on partitioned tables)"),
                        "add the key to each partition USING INDEX of its own index, then ADD CONSTRAINT … (columns) on the parent, which takes them over (in a file without phase markers that migrate applies, either form is built that way)",
                    ));
                }
            }
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
                Operation::CreateTable {
                    table,
                    columns,
                    constraints,
                    ..
                } => {
                    let keys = columns
                        .iter()
                        .flat_map(|c| &c.constraints)
                        .chain(constraints)
                        .filter(|c| is_key(&c.kind))
                        .count();
                    twice(columns.iter().map(|c| c.name.as_str()))
                        .map(|c| {
                            format!("CREATE TABLE {table} defines {c} twice: PostgreSQL refuses it (column specified more than once)")
                        })
                        .or_else(|| (keys > 1).then(|| {
                            format!("CREATE TABLE {table} declares {keys} primary keys: PostgreSQL refuses it (multiple primary keys for table are not allowed)")
                        }))
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
                // What the engine takes apart itself, another runner sends as written.
                Operation::CreateIndex(ix)
                    if ix.concurrently
                        && ctx.settings.applied_by == AppliedBy::Other
                        && ctx.catalog.is_partitioned(&ix.table) =>
                {
                    Some(format!(
                        "{} is partitioned: PostgreSQL builds no index of it CONCURRENTLY (cannot create index on partitioned table concurrently)",
                        ix.table
                    ))
                }
                Operation::AddConstraint {
                    table, constraint, ..
                } if constraint.not_valid
                    && matches!(constraint.kind, crate::model::ConstraintKind::ForeignKey { .. })
                    && ctx.settings.applied_by == AppliedBy::Other
                    && !ctx.pg().at_least(18)
                    && ctx.catalog.is_partitioned(table) =>
                {
                    Some(format!(
                        "{table} is partitioned: before PostgreSQL 18 it takes no NOT VALID foreign key"
                    ))
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
    fn partitioned_tables_for_other_runners() {
        use crate::config::{AppliedBy, Settings};
        let parts = "CREATE TABLE accounts (id int PRIMARY KEY);
CREATE TABLE events (id int, account int, at date) PARTITION BY RANGE (at);";
        let index = "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY events_at_idx ON events (at);";
        let fk = "ALTER TABLE events ADD CONSTRAINT events_account_fk FOREIGN KEY (account) REFERENCES accounts (id) NOT VALID;";
        let other = Settings {
            applied_by: AppliedBy::Other,
            ..Settings::default()
        };
        let on_18 = Settings {
            pg_version: "18".parse().unwrap(),
            ..other.clone()
        };
        let fired = |sql: &str, s: &Settings| rules_fired(&[parts], sql, s).contains(&"fails-at-run-time");
        assert!(fired(index, &other));
        assert!(fired(fk, &other));
        assert!(!fired(fk, &on_18), "18 takes it");
        // migrate's engine takes both apart.
        assert!(!fired(index, &Settings::default()));
        assert!(!fired(fk, &Settings::default()));
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
