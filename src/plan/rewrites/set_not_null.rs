//! `SET NOT NULL`: a trigger fills NULLs the old version writes, a backfill fills the rest,
//! then a NOT VALID check, its validation and `SET NOT NULL` without a scan.

use super::*;

/// CHECK NOT VALID → VALIDATE → SET NOT NULL (PG12+ skips the scan) and drop the check in one
/// short transaction, with `also` (more SQL under the same lock, such as dropping a fill
/// trigger): a table's ACCESS EXCLUSIVE is asked for once at the end, not once per statement.
pub(super) fn tighten_not_null(
    ctx: &PlanCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    column: &str,
    also: Option<&str>,
) {
    // Not `<table>_<column>_not_null`: from PostgreSQL 18 that is the name of the NOT NULL
    // constraint itself, which would then be made as `…_not_null1`.
    let check = generated_name(&table.name, &[column, "not_null_check"]);
    let c = quote_ident(column);
    let ck = quote_ident(&check);
    r.steps.push(exclusive(
        Phase::Contract,
        "add a NOT NULL check that skips existing rows",
        format!("ALTER TABLE {table} ADD CONSTRAINT {ck} CHECK ({c} IS NOT NULL) NOT VALID"),
        table,
    ));
    r.steps.push(step(
        Phase::Contract,
        "validate it without blocking writes",
        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"),
        StepKind::Ddl,
        scan(table, LockLevel::ShareUpdateExclusive),
    ));
    if ctx.pg().at_least(12) {
        let mut sql = format!(
            "ALTER TABLE {table} ALTER COLUMN {c} SET NOT NULL;\nALTER TABLE {table} DROP CONSTRAINT {ck}"
        );
        if let Some(more) = also {
            sql.push_str(&format!(";\n{more}"));
        }
        r.steps.push(exclusive(
            Phase::Contract,
            "set NOT NULL (the validated check proves it, no scan) and drop the check",
            sql,
            table,
        ));
    } else {
        r.notes.push(format!(
            "before PostgreSQL 12, SET NOT NULL always scans the table: the validated check {ck} is kept instead"
        ));
        if let Some(more) = also {
            r.steps.push(exclusive(
                Phase::Contract,
                "the rest, under a brief lock",
                more,
                table,
            ));
        }
    }
}

pub(super) fn fill_trigger(
    table: &QualifiedName,
    column: &str,
    expr: &str,
) -> (String, String, String) {
    let func = generated_name("migrate_fill", &[&table.name, column]);
    let fq = QualifiedName::new(table.schema.as_deref(), &func);
    let c = quote_ident(column);
    let create = format!(
        "CREATE FUNCTION {fq}() RETURNS trigger LANGUAGE plpgsql AS $migrate$\nBEGIN\n  IF NEW.{c} IS NULL THEN\n    SELECT {expr} INTO NEW.{c} FROM (SELECT NEW.*) AS t;\n  END IF;\n  RETURN NEW;\nEND\n$migrate$;\nCREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW WHEN (NEW.{c} IS NULL) EXECUTE FUNCTION {fq}()",
        quote_ident(&func)
    );
    let drop = format!(
        "DROP TRIGGER IF EXISTS {} ON {table};\nDROP FUNCTION IF EXISTS {fq}()",
        quote_ident(&func)
    );
    (func, create, drop)
}

pub(super) fn set_not_null(
    ctx: &PlanCtx,
    table: &QualifiedName,
    column: &str,
    earlier: &[&Operation],
    what: &str,
) -> Rewrite {
    let mut r = new_rewrite(what);
    // The fill expression comes from a backfill UPDATE of this column earlier in the file.
    let fill = earlier.iter().rev().find_map(|op| match op {
        Operation::Update {
            table: t,
            sets,
            has_from: false,
            indirect: false,
            ..
        } if t.same(table) => sets
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, e)| e.clone()),
        _ => None,
    });
    match fill {
        Some(expr) => {
            let (_, create, drop) = fill_trigger(table, column, &expr);
            r.steps.push(step(
                Phase::Expand,
                "fill NULLs the old version still writes",
                create,
                StepKind::Ddl,
                brief(table, LockLevel::ShareRowExclusive),
            ));
            // The fill trigger goes in the transaction that sets NOT NULL: no write between
            // the two can leave a NULL the constraint then refuses.
            tighten_not_null(ctx, &mut r, table, column, Some(&drop));
            r.abort.push(exclusive(
                Phase::Expand,
                "drop the fill trigger",
                drop,
                table,
            ));
        }
        None => {
            r.notes.push(format!(
                "no backfill fills NULLs in {table}.{c} before this: the contract's VALIDATE fails if NULLs remain; write `UPDATE {table} SET {c} = … WHERE {c} IS NULL;` before it",
                c = quote_ident(column)
            ));
            tighten_not_null(ctx, &mut r, table, column, None);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn with_its_fill_trigger() {
        insta::assert_snapshot!(plan("UPDATE users SET email = 'none' WHERE email IS NULL;\nALTER TABLE users ALTER COLUMN email SET NOT NULL;", true));
    }
}
