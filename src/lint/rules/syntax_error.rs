use crate::lint::Rule;

crate::declare_rule! {
    /// A statement PostgreSQL's parser rejects.
    ///
    /// ## What it catches
    /// Any statement that does not parse, reported at the exact line and column the parser
    /// stopped at. The rest of the file, and of the run, is still checked.
    ///
    /// ## Why it hurts
    /// The migration fails when it reaches the statement, possibly after earlier statements of a
    /// non-transactional file have already run.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN email text NOT NUL;
    /// ```
    ///
    /// ## Instead
    /// Fix the statement. The tool parses with PostgreSQL's own grammar, so what it rejects the
    /// server rejects too.
    pub struct SyntaxErrorRule => "syntax-error", Error;
}

impl Rule for SyntaxErrorRule {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_and_the_rest_goes_on() {
        let r = lint_with(
            &[],
            "SELECT 1;\nALTER TABLE t ADD COLUMN c text NOT NUL;\nCREATE INDEX i ON t (c);",
            &Default::default(),
        );
        let f = r
            .findings
            .iter()
            .find(|f| f.rule == "syntax-error")
            .expect("syntax-error");
        assert_eq!((f.line, f.column), (2, 37));
        assert!(r
            .findings
            .iter()
            .any(|f| f.rule == "require-concurrent-index-creation"));
    }

    #[test]
    fn silent_on_valid_sql() {
        silent("syntax-error", &[], "SELECT 1; CREATE TABLE t (id int);");
    }
}
