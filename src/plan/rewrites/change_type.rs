//! A rewriting `ALTER COLUMN TYPE`: a shadow column of the new type, converting triggers,
//! a backfill, and a swap at contract. With views, the new version's view shows the shadow
//! under the column's name from expand on, so no running version's result type changes at the
//! swap; without views, the app casts across the change until contract.

use super::*;

pub(super) fn change_type(
    ctx: &PlanCtx,
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
    let original = ctx.catalog.table(table).and_then(|t| t.column(column));
    let old_type = original.map(|c| c.ty.sql.clone());
    r.view.push(ViewChange::ReplaceColumn {
        table: table.clone(),
        column: column.to_string(),
        with: shadow.clone(),
    });
    let to_new = using.map_or_else(
        || Conversion::Direct(format!("NEW.{qc}::{new_type}")),
        |u| Conversion::OverRow(format!("({u})")),
    );
    let to_old = Conversion::Direct(old_type.as_ref().map_or_else(
        || format!("NEW.{qs}::text /* cast to the column's current type */"),
        |t| format!("NEW.{qs}::{t}"),
    ));
    let sync = sync_trigger(table, column, &shadow, to_new, to_old);
    let drop = sync.drop.clone();
    // The column and the triggers that fill it belong together: one transaction.
    r.steps.push(exclusive(
        Phase::Expand,
        "add the column of the new type, with triggers converting every write into it and back",
        sync.around(&format!("ALTER TABLE {table} ADD COLUMN {qs} {new_type}")),
        table,
    ));
    let mut copies = copy_indexes(ctx, &mut r, table, column, &shadow);
    let (validations, constraint_renames) = copy_constraints(ctx, &mut r, table, column, &shadow);
    copies.renames.extend(constraint_renames);
    let not_null = original
        .filter(|c| c.not_null)
        .map(|_| shadow_not_null(&mut r, table, &shadow));
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
    let ck = not_null.map(|(ck, validate)| {
        r.steps.push(validate);
        ck
    });
    r.steps.extend(validations);
    // Foreign keys of other tables that reference the column depend on its key: each gets a
    // copy referencing the new column (after the backfill, so every row has a value there),
    // validated before the swap, which drops the original and gives the copy its name. A
    // partitioned table's new key exists only from the swap on: there the swap adds each
    // again NOT VALID, and a step after it validates them (see `LateForeignKey`).
    let partitioned = ctx.catalog.is_partitioned(table);
    let referencing = referencing_keys(ctx, &mut r, table, column, &shadow, partitioned);
    let mut swap = vec![
        drop.clone(),
        format!("ALTER TABLE {table} RENAME COLUMN {qc} TO {qo}"),
        format!("ALTER TABLE {table} RENAME COLUMN {qs} TO {qc}"),
    ];
    if let Some(ck) = &ck {
        // The validated check proves it: no scan.
        swap.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {qc} SET NOT NULL"
        ));
        swap.push(format!("ALTER TABLE {table} DROP CONSTRAINT {ck}"));
    }
    // Only now: during expand a default on the shadow would keep the triggers from copying an
    // insert's value into it.
    if let Some(d) = original.and_then(|c| c.default.as_ref()) {
        swap.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {qc} SET DEFAULT {d}"
        ));
    }
    for fk in &referencing {
        swap.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            fk.table,
            quote_ident(&fk.name)
        ));
    }
    swap.push(format!("ALTER TABLE {table} DROP COLUMN {qo}"));
    // Dropping the old column drops its indexes and keys; the copies take their places.
    if !partitioned {
        for fk in &referencing {
            copies.renames.push(format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                fk.table,
                quote_ident(&generated_name(&fk.name, &[&shadow])),
                quote_ident(&fk.name)
            ));
        }
    }
    let late = if partitioned {
        referencing.clone()
    } else {
        Vec::new()
    };
    let mut swap = copies.swap_step(
        "swap the columns in one short transaction",
        swap,
        table,
        late.clone(),
    );
    for fk in &referencing {
        swap.locks
            .extend(brief(&fk.table, LockLevel::AccessExclusive));
    }
    r.steps.push(swap);
    for fk in late {
        r.steps.push(step(
            Phase::Contract,
            format!(
                "validate foreign key {} of {}, added NOT VALID at the swap",
                quote_ident(&fk.name),
                fk.table
            ),
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                fk.table,
                quote_ident(&fk.name)
            ),
            StepKind::ForeignKey {
                table: fk.table.clone(),
                name: fk.name.clone(),
                definition: fk.definition.clone(),
                action: FkAction::Validate,
            },
            scan(&fk.table, LockLevel::ShareUpdateExclusive),
        ));
    }
    abort_shadow(&mut r, table, drop, &shadow);
    if !ctx.views {
        r.notes.push(format!(
            "without views, the swap changes the type a prepared `SELECT {qc}` returns (\"cached plan must not change result type\"): the new version reads {qc} with a cast to {new_type} until contract"
        ));
    }
    r
}

/// The foreign keys of other tables that reference `column` of `table`, each as it is to be
/// after the swap. Unless `table` is partitioned, also a copy of each referencing `shadow`,
/// added NOT VALID and validated in contract (partition by partition where the referencing
/// table needs it), which the swap renames to the original's name.
fn referencing_keys(
    ctx: &PlanCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    column: &str,
    shadow: &str,
    partitioned: bool,
) -> Vec<LateForeignKey> {
    let mut out = Vec::new();
    for t in ctx.catalog.tables() {
        for c in &t.constraints {
            let ConstraintKind::ForeignKey {
                columns,
                references,
                ref_columns,
            } = &c.kind
            else {
                continue;
            };
            if !references.same(table) || !ref_columns.iter().any(|k| k == column) {
                continue;
            }
            let refs = |to: &str| -> Vec<String> {
                ref_columns
                    .iter()
                    .map(|k| quote_ident(if k == column { to } else { k }))
                    .collect()
            };
            let cols: Vec<String> = columns.iter().map(|k| quote_ident(k)).collect();
            // The actions (ON DELETE …) as the live catalog prints them, after the column list.
            let actions = c
                .definition
                .as_deref()
                .and_then(|d| d.find(" REFERENCES ").map(|i| &d[i..]))
                .and_then(|d| d.find(')').map(|i| d[i + 1..].to_string()))
                .map(|a| a.strip_suffix(" NOT VALID").unwrap_or(&a).to_string())
                .unwrap_or_default();
            let definition = |to: &str| {
                format!(
                    "FOREIGN KEY ({}) REFERENCES {table} ({}){actions}",
                    cols.join(", "),
                    refs(to).join(", ")
                )
            };
            out.push(LateForeignKey {
                table: t.name.clone(),
                name: c.name.clone(),
                definition: definition(column),
            });
            if partitioned {
                continue;
            }
            let definition = definition(shadow);
            let copy = generated_name(&c.name, &[shadow]);
            let q = quote_ident(&copy);
            let fk = |action| StepKind::ForeignKey {
                table: t.name.clone(),
                name: copy.clone(),
                definition: definition.clone(),
                action,
            };
            let locks = foreign_key_locks(&t.name, table);
            r.steps.push(step(
                Phase::Contract,
                format!(
                    "copy foreign key {} of {} onto {} (NOT VALID: new writes only)",
                    quote_ident(&c.name),
                    t.name,
                    quote_ident(shadow)
                ),
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {q} {definition} NOT VALID",
                    t.name
                ),
                fk(FkAction::AddNotValid),
                locks,
            ));
            r.steps.push(step(
                Phase::Contract,
                format!("validate the copy of foreign key {}", quote_ident(&c.name)),
                format!("ALTER TABLE {} VALIDATE CONSTRAINT {q}", t.name),
                fk(FkAction::Validate),
                scan(&t.name, LockLevel::ShareUpdateExclusive),
            ));
            r.abort.push(step(
                Phase::Expand,
                "drop the copied foreign key",
                format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {q}", t.name),
                fk(FkAction::Drop),
                brief(&t.name, LockLevel::AccessExclusive),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn shadow_shown_under_the_name_through_views() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
            true
        ));
    }

    #[test]
    fn keeps_not_null_and_default_without_views() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN name TYPE varchar(200);",
            false
        ));
    }

    #[test]
    fn a_primary_key_column_keeps_its_primary_key() {
        insta::assert_snapshot!(plan("ALTER TABLE orgs ALTER COLUMN id TYPE numeric;", true));
    }

    #[test]
    fn a_check_and_an_index_on_the_retyped_column_come_after_the_swap() {
        // Made at expand, on the old column, the swap would drop both with it.
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;\nALTER TABLE users ADD CONSTRAINT users_age_positive CHECK (age >= 0);\nCREATE INDEX users_age ON users (age);",
            true
        ));
    }

    #[test]
    fn a_concurrent_index_on_the_retyped_column_is_built_once_concurrently_at_contract() {
        let p = plan(
            "-- migrate:no-transaction\nALTER TABLE users ALTER COLUMN age TYPE bigint;\nCREATE INDEX CONCURRENTLY users_age ON users (age);",
            true,
        );
        assert!(p.contains("CREATE INDEX CONCURRENTLY users_age"), "{p}");
        assert!(!p.contains("CONCURRENTLY CONCURRENTLY"), "{p}");
    }

    #[test]
    fn a_widening_goes_through_the_shadow_with_views() {
        insta::assert_snapshot!(plan(
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(200);",
            true
        ));
    }
}
