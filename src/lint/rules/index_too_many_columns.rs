use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// A B-tree index over more than three columns.
    ///
    /// ## What it catches
    /// `CREATE INDEX` with four or more key columns (not counting `INCLUDE`).
    ///
    /// ## Why it hurts
    /// Wide indexes are large and slow to build and maintain; the trailing columns rarely help
    /// a query the leading ones do not already narrow.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX CONCURRENTLY orders_idx ON orders (a, b, c, d);
    /// ```
    ///
    /// ## Instead
    /// Index the selective leading columns, and move the rest to `INCLUDE (…)` when they are
    /// only read.
    pub struct IndexTooManyColumns => "index-too-many-columns", Info;
}

impl Rule for IndexTooManyColumns {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::CreateIndex(ix) = op {
                if ix.columns.len() > 3 && matches!(ix.method.as_str(), "" | "btree") {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("index on {} has {} key columns", ix.table, ix.columns.len()),
                        "keep the selective leading columns; move read-only ones to INCLUDE (…)",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_four_columns() {
        fires(
            "index-too-many-columns",
            &[],
            "CREATE TABLE t (a int, b int, c int, d int);\nCREATE INDEX i ON t (a, b, c, d);",
        );
    }

    #[test]
    fn silent_on_three() {
        silent("index-too-many-columns", &[], "CREATE TABLE t (a int, b int, c int, d int);\nCREATE INDEX i ON t (a, b, c) INCLUDE (d);");
    }
}
