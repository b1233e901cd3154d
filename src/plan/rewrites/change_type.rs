//! A rewriting `ALTER COLUMN TYPE`: a shadow column of the new type, converting triggers,
//! a backfill, and a swap at contract.

use super::*;

pub(super) fn change_type(
    ctx: &StmtCtx,
    table: &QualifiedName,
    column: &str,
    new_type: &str,
    using: Option<&str>,
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    let shadow = generated_name(column, &["new"]);
    let old = generated_name(column, &["old"]);
    let (qc, qs, qo) = (quote_ident(column), quote_ident(&shadow), quote_ident(&old));
    let old_type = ctx
        .catalog
        .table(table)
        .and_then(|t| t.column(column))
        .map(|c| c.ty.sql.clone());
    let to_new = using.map_or_else(
        || Conversion::Direct(format!("NEW.{qc}::{new_type}")),
        |u| Conversion::OverRow(format!("({u})")),
    );
    let to_old = Conversion::Direct(old_type.as_ref().map_or_else(
        || format!("NEW.{qs}::text /* cast to the column's current type */"),
        |t| format!("NEW.{qs}::{t}"),
    ));
    let (create, drop) = sync_trigger(table, column, &shadow, to_new, to_old);
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the column of the new type, with triggers converting every write into it and back",
        format!("ALTER TABLE {table} ADD COLUMN {qs} {new_type};\n{create}"),
        table,
    ));
    let mut renames = copy_indexes(ctx, &mut r, table, column, &shadow);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, column, &shadow);
    renames.extend(constraint_renames);
    let expr = using.map_or_else(|| format!("{qc}::{new_type}"), str::to_string);
    r.steps.push(step(
        Phase::Backfill,
        "convert existing rows in batches",
        format!("UPDATE {table} SET {qs} = {expr}"),
        StepKind::Backfill {
            table: table.clone(),
            set: vec![(shadow.clone(), expr.clone())],
            filter: None,
            // A USING expression may be anything; a plain cast gives the same value again.
            verify: using
                .is_none()
                .then(|| format!("{qs} IS DISTINCT FROM ({expr})")),
        },
        row_locks(table),
    ));
    r.steps.extend(validations);
    let swap = format!("{drop};\nALTER TABLE {table} RENAME COLUMN {qc} TO {qo};\nALTER TABLE {table} RENAME COLUMN {qs} TO {qc};\nALTER TABLE {table} DROP COLUMN {qo}");
    // Dropping the old column drops its indexes; the copies take their names.
    let swap = std::iter::once(swap)
        .chain(renames)
        .collect::<Vec<_>>()
        .join(";\n");
    r.steps.push(exclusive(
        Phase::Contract,
        "swap the columns in one short transaction",
        swap,
        table,
    ));
    abort_shadow(&mut r, table, drop, &shadow);
    r.notes.push(format!(
        "the swap changes the type a prepared `SELECT {qc}` returns (\"cached plan must not change result type\"): run it once no version prepares statements on the old type, or read through per-version views"
    ));
    r
}
