use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// `char(n)` / `character(n)` columns.
    ///
    /// ## What it catches
    /// Columns defined or retyped as fixed-length `char`.
    ///
    /// ## Why it hurts
    /// Values are blank-padded: comparisons, `length()` and client code see surprising
    /// trailing spaces, and it is no faster than `text`.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE countries (code char(2));
    /// ```
    ///
    /// ## Instead
    /// `code text CHECK (length(code) = 2)`.
    pub struct BanCharField => "ban-char-field", Info;
}

impl Rule for BanCharField {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for c in ctx.defined_columns() {
            if c.ty.base == "bpchar" {
                out.push(ctx.finding(
                    &Self::META,
                    format!("{}.{} is {}: blank-padded", c.table, c.name, c.ty.sql),
                    "use text with a CHECK on its length",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_char() {
        fires("ban-char-field", &[], "CREATE TABLE c (code char(2));");
    }

    #[test]
    fn silent_on_text() {
        silent(
            "ban-char-field",
            &[],
            "CREATE TABLE c (code text, \"char\" text);",
        );
    }
}
