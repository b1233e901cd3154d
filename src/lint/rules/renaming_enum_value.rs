use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// `ALTER TYPE … RENAME VALUE`.
    ///
    /// ## What it catches
    /// Renaming a value of an enum type.
    ///
    /// ## Why it hurts
    /// The running version still writes and compares the old label: its inserts fail with
    /// "invalid input value for enum" and its filters silently match nothing.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TYPE order_status RENAME VALUE 'canceled' TO 'cancelled';
    /// ```
    ///
    /// ## Instead
    /// Add the new value (`ADD VALUE 'cancelled'`), have the new version write it and read both,
    /// backfill rows, and stop using the old one. Enum values cannot be dropped; a lookup table
    /// or a CHECK constraint on text is easier to evolve.
    pub struct RenamingEnumValue => "renaming-enum-value", Error;
}

impl Rule for RenamingEnumValue {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::RenameEnumValue { ty, from, to } = op {
                out.push(ctx.finding(
                    &Self::META,
                    format!("renaming {ty} value '{from}' to '{to}' breaks the running version's writes and filters of '{from}'"),
                    "ADD VALUE the new label, migrate readers and rows to it, and leave the old one unused",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_rename_value() {
        fires(
            "renaming-enum-value",
            &[],
            "ALTER TYPE status RENAME VALUE 'a' TO 'b';",
        );
    }

    #[test]
    fn silent_on_add_value() {
        silent(
            "renaming-enum-value",
            &[],
            "ALTER TYPE status ADD VALUE 'c';",
        );
    }
}
