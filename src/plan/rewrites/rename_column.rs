//! `RENAME COLUMN a TO b`.

use super::*;

pub(super) fn rename_column(
    ctx: &StmtCtx,
    table: &QualifiedName,
    from: &str,
    to: &str,
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    let col = ctx.catalog.table(table).and_then(|t| t.column(from));
    let ty = col.map_or_else(
        || format!("/* type of {} */", quote_ident(from)),
        |c| c.ty.sql.clone(),
    );
    let (qf, qt) = (quote_ident(from), quote_ident(to));
    let mut add = format!("ALTER TABLE {table} ADD COLUMN {qt} {ty}");
    if let Some(d) = col.and_then(|c| c.default.as_ref()) {
        add.push_str(&format!(" DEFAULT {d}"));
    }
    let (create, drop) = sync_trigger(
        table,
        from,
        to,
        Conversion::Direct(format!("NEW.{qf}")),
        Conversion::Direct(format!("NEW.{qt}")),
    );
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the new column (same type and default), kept equal to the old one by triggers whichever version writes",
        format!("{add};\n{create}"),
        table,
    ));
    let mut renames = copy_indexes(ctx, &mut r, table, from, to);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, from, to);
    renames.extend(constraint_renames);
    if col.is_some_and(|c| c.not_null) {
        r.steps.push(exclusive(
            Phase::Expand,
            "NOT NULL on the new column, for new writes",
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({qt} IS NOT NULL) NOT VALID",
                quote_ident(&generated_name(&table.name, &[to, "not_null"]))
            ),
            table,
        ));
    }
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
    if col.is_some_and(|c| c.not_null) {
        let ck = quote_ident(&generated_name(&table.name, &[to, "not_null"]));
        r.steps.push(step(
            Phase::Contract,
            "validate NOT NULL on the new column",
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"),
            StepKind::Ddl,
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        r.steps.push(exclusive(Phase::Contract, "set NOT NULL (no scan)", format!("ALTER TABLE {table} ALTER COLUMN {qt} SET NOT NULL;\nALTER TABLE {table} DROP CONSTRAINT {ck}"), table));
    }
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the sync triggers",
        drop.clone(),
        table,
    ));
    r.steps.extend(validations);
    r.steps.push(exclusive(
        Phase::Contract,
        "drop the old column",
        // Dropping it drops its indexes; the copies take their names.
        std::iter::once(format!("ALTER TABLE {table} DROP COLUMN {qf}"))
            .chain(renames)
            .collect::<Vec<_>>()
            .join(";\n"),
        table,
    ));
    abort_shadow(&mut r, table, drop, to);
    r.notes.push("prepared statements that SELECT * see the new column: no running version's result shape changes until contract drops the old one".into());
    r
}
