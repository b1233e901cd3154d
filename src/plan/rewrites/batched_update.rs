//! An `UPDATE` run in key-range batches, each its own short transaction.

use super::*;

pub(super) fn batched_update(op: &Operation, sql: &str) -> Rewrite {
    let Operation::Update {
        table,
        sets,
        filter,
        has_from,
        repeatable,
        indirect,
        ..
    } = op
    else {
        unreachable!("batched_update takes Update")
    };
    if *has_from || *indirect {
        let mut r = as_written(op, sql, Phase::Backfill, &describe(op));
        r.notes.push(if *has_from {
            "UPDATE … FROM / WITH cannot be batched by key range: it runs as one statement".into()
        } else {
            "an assignment to an array element or field cannot be batched by key range: it runs as one statement".into()
        });
        return r;
    }
    let mut r = new_rewrite(describe(op));
    r.steps.push(step(
        Phase::Backfill,
        "batched by primary key, one short transaction per batch",
        sql,
        StepKind::Backfill {
            table: table.clone(),
            set: sets.clone(),
            filter: filter.clone(),
            verify: repeatable.then(|| {
                let wrong: Vec<String> = sets
                    .iter()
                    .map(|(c, e)| format!("{} IS DISTINCT FROM ({e})", quote_ident(c)))
                    .collect();
                match filter {
                    Some(f) => format!("({f}) AND ({})", wrong.join(" OR ")),
                    None => wrong.join(" OR "),
                }
            }),
        },
        row_locks(table),
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::plan;

    #[test]
    fn by_key_range() {
        insta::assert_snapshot!(plan(
            "UPDATE users SET nickname = name WHERE nickname IS NULL;",
            true
        ));
    }
}
