use crate::lint::Rule;

crate::declare_rule! {
    /// A `-- migrate:` directive that is malformed, unknown, or excuses nothing.
    ///
    /// ## What it catches
    /// `-- migrate:allow <rule-id> <reason>` on the line before a statement suppresses that rule
    /// on that statement. A directive with no reason, an unknown rule id, or one that suppresses
    /// nothing on the next statement is reported, and so is a `-- migrate:` comment that is no
    /// directive at all (`-- migrate:contrct`), which would otherwise be ignored.
    ///
    /// ## Why it hurts
    /// An excuse without a reason cannot be reviewed, and a stale one hides the next real
    /// problem someone writes under it.
    ///
    /// ## Example
    /// ```sql
    /// -- migrate:allow require-concurrent-index-creation
    /// CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
    /// ```
    ///
    /// ## Instead
    /// Give the reason, and keep the directive only where it suppresses a finding:
    /// `-- migrate:allow require-concurrent-index-creation table has 10 rows, lookup data`.
    pub struct AllowDirective => "allow-directive", Warning;
}

impl Rule for AllowDirective {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn an_allow_with_a_reason_suppresses() {
        let sql = "-- migrate:allow require-concurrent-index-creation lookup table of 12 rows\nCREATE INDEX i ON users (name);";
        let fired = rules_fired(&[USERS], sql, &Default::default());
        assert!(
            !fired.contains(&"require-concurrent-index-creation"),
            "{fired:?}"
        );
        assert!(!fired.contains(&"allow-directive"), "{fired:?}");
    }

    #[test]
    fn fires_without_reason_unknown_or_unused() {
        fires(
            "allow-directive",
            &[USERS],
            "-- migrate:allow require-concurrent-index-creation\nCREATE INDEX i ON users (name);",
        );
        fires(
            "allow-directive",
            &[USERS],
            "-- migrate:allow no-such-rule because\nSELECT 1;",
        );
        fires("allow-directive", &[USERS], "-- migrate:allow renaming-column not renaming anything\nCREATE INDEX CONCURRENTLY i ON users (name);");
    }

    #[test]
    fn a_misspelt_directive_is_reported_and_the_real_ones_are_not() {
        fires(
            "allow-directive",
            &[USERS],
            "-- migrate:contrct\nALTER TABLE users DROP COLUMN name;",
        );
        silent(
            "allow-directive",
            &[USERS],
            "-- migrate:expand\nALTER TABLE users ADD COLUMN a int;\n-- migrate:contract\nALTER TABLE users DROP COLUMN name;",
        );
    }
}
