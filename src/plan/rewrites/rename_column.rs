//! `RENAME COLUMN a TO b`.
//!
//! With views: metadata only, at expand. The table takes the new version's shape, so the new
//! version reads the table itself from its first query; the old version was given its view of
//! the table just before (`b AS a`: views name columns by number, so its result does not
//! change), and contract only drops that view with the old version's schema. No shadow column,
//! no trigger, no backfill; abort renames the column back.
//!
//! Without views: a second column `b` kept equal to `a` by triggers, a copy of every row, and in
//! contract one transaction that drops the triggers and `a` together — a gap between the two
//! would fail the new version's inserts that leave `a` out while it is still NOT NULL.

use super::*;

pub(super) fn rename_column(
    ctx: &PlanCtx,
    table: &QualifiedName,
    from: &str,
    to: &str,
    what: &str,
    changed_before: bool,
) -> Rewrite {
    if ctx.views {
        let mut r = new_rewrite(what);
        r.view.push(ViewChange::RenameColumn {
            table: table.clone(),
            from: from.to_string(),
            to: to.to_string(),
        });
        let (qf, qt) = (quote_ident(from), quote_ident(to));
        if changed_before {
            // Later phases of an earlier statement name the column as it is: the rename comes
            // after them, at contract, and the new version's view shows the new name until then.
            r.steps.push(exclusive(
                Phase::Contract,
                "rename the column: metadata only, after this migration's other steps on the table",
                format!("ALTER TABLE {table} RENAME COLUMN {qf} TO {qt}"),
                table,
            ));
            r.notes.push(format!(
                "an earlier statement of this migration, or a migration still in flight, changes {table}, and its later steps name it as it is: the column is renamed at contract, and until then the new version reads {table} through a view; a rename in a migration of its own is done at expand, and the new version reads the table itself"
            ));
            return r;
        }
        r.steps.push(exclusive(
            Phase::Expand,
            "rename the column: metadata only; the old version reads it under its old name through its view",
            format!("ALTER TABLE {table} RENAME COLUMN {qf} TO {qt}"),
            table,
        ));
        r.abort.push(exclusive(
            Phase::Expand,
            "rename the column back",
            format!("ALTER TABLE {table} RENAME COLUMN {qt} TO {qf}"),
            table,
        ));
        return r;
    }
    dual_columns(ctx, table, from, to, what)
}

fn dual_columns(ctx: &PlanCtx, table: &QualifiedName, from: &str, to: &str, what: &str) -> Rewrite {
    let mut r = new_rewrite(what);
    let col = ctx.catalog.table(table).and_then(|t| t.column(from));
    let ty = col.map_or_else(
        || format!("/* type of {} */", quote_ident(from)),
        |c| c.ty.sql.clone(),
    );
    let (qf, qt) = (quote_ident(from), quote_ident(to));
    // The default is set after the column is added: given in ADD COLUMN, a volatile one (a
    // serial's nextval) would rewrite the table under ACCESS EXCLUSIVE.
    let mut add = format!("ALTER TABLE {table} ADD COLUMN {qt} {ty}");
    if let Some(d) = col.and_then(|c| c.default.as_ref()) {
        add.push_str(&format!(
            ";\nALTER TABLE {table} ALTER COLUMN {qt} SET DEFAULT {d}"
        ));
    }
    let sync = sync_trigger(
        table,
        from,
        to,
        Conversion::Direct(format!("NEW.{qf}")),
        Conversion::Direct(format!("NEW.{qt}")),
    );
    let drop = sync.drop.clone();
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the new column (same type and default), kept equal to the old one by triggers whichever version writes",
        sync.around(&add),
        table,
    ));
    let mut copies = copy_indexes(ctx, &mut r, table, from, to);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, from, to);
    copies.renames.extend(constraint_renames);
    let not_null = col
        .filter(|c| c.not_null)
        .map(|_| shadow_not_null(&mut r, table, to));
    r.steps.push(step(
        Phase::Backfill,
        "copy existing rows in batches",
        format!("UPDATE {table} SET {qt} = {qf} WHERE {qt} IS DISTINCT FROM {qf}"),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(to.to_string(), qf.clone())],
            filter: Some(format!("{qt} IS DISTINCT FROM {qf}")),
            verify: Some(format!("{qt} IS DISTINCT FROM {qf}")),
        },
        row_locks(table),
    ));
    // Validations scan without blocking writes, so they come first, while the triggers still
    // keep both columns filled; then one short transaction ends the old column.
    let ck = not_null.map(|(ck, validate)| {
        r.steps.push(validate);
        ck
    });
    r.steps.extend(validations);
    let mut end = vec![drop.clone()];
    if let Some(ck) = &ck {
        end.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {qt} SET NOT NULL"
        ));
        end.push(format!("ALTER TABLE {table} DROP CONSTRAINT {ck}"));
    }
    // Dropping the old column drops its indexes and keys; the copies take their places.
    end.push(format!("ALTER TABLE {table} DROP COLUMN {qf}"));
    r.steps.push(copies.swap_step(
        "drop the sync triggers and the old column in one transaction",
        end,
        table,
        Vec::new(),
    ));
    abort_shadow(&mut r, table, drop, to);
    r.notes.push(
        "without views, a prepared `SELECT *` sees the new column appear at expand: apps name their columns"
            .into(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn through_views() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users RENAME COLUMN name TO full_name;",
            true
        ));
    }

    #[test]
    fn after_an_earlier_change_of_the_table_at_contract() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users RENAME COLUMN name TO full_name;",
            true
        ));
    }

    #[test]
    fn two_columns_without_views() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users RENAME COLUMN name TO full_name;",
            false
        ));
    }

    #[test]
    fn with_its_index_and_check_without_views() {
        insta::assert_snapshot!(plan("ALTER TABLE users RENAME COLUMN age TO years;", false));
    }
}
