use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `ALTER SCHEMA … RENAME TO`.
    ///
    /// ## What it catches
    /// Renaming a schema.
    ///
    /// ## Why it hurts
    /// Every qualified name and every `search_path` of the running version that mentions the
    /// schema stops resolving at once; there is no view-like shim for a schema.
    ///
    /// ## Example
    /// ```sql
    /// ALTER SCHEMA billing RENAME TO payments;
    /// ```
    ///
    /// ## Instead
    /// Create the new schema, move objects one by one with shims (views) under the old names,
    /// and drop the old schema once nothing uses it.
    pub struct RenamingSchema => "renaming-schema", Error;
}

impl Rule for RenamingSchema {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RenameSchema { from, to } = op {
                out.push(ctx.finding(
                    &Self::META,
                    format!("renaming schema {from} to {to} breaks every query of the running version that names it"),
                    "create the new schema and move objects with views under the old names; drop the old schema last",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_it() {
        fires(
            "renaming-schema",
            &[],
            "ALTER SCHEMA billing RENAME TO payments;",
        );
    }

    #[test]
    fn silent_on_table_rename() {
        silent("renaming-schema", &[], "ALTER TABLE billing.x RENAME TO y;");
    }
}
