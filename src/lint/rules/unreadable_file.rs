use crate::lint::Rule;

crate::declare_rule! {
    /// A migration file that cannot be read.
    ///
    /// ## What it catches
    /// A file named on the command line or found in the migrations directory that cannot be
    /// opened, or is not UTF-8 text. It is reported like any other finding, and every other file
    /// of the run is still checked.
    ///
    /// ## Why it hurts
    /// The runner that applies the migrations fails on it, or applies text nobody reviewed.
    ///
    /// ## Example
    /// A file saved in Latin-1 with `é` in a comment, or one without read permission.
    ///
    /// ## Instead
    /// Save the file as UTF-8 and make it readable.
    pub struct UnreadableFile => "unreadable-file", Error;
}

impl Rule for UnreadableFile {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_targets;
    use crate::files::resolve;

    #[test]
    fn an_unreadable_file_is_a_finding_and_the_others_are_still_checked() {
        let dir = std::env::temp_dir().join(format!("migrate-unreadable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0001_a.sql"), b"-- caf\xe9\nSELECT 1;\n").unwrap();
        std::fs::write(dir.join("0002_b.sql"), "CREATE INDEX i ON t (c);\n").unwrap();
        let targets = resolve(std::slice::from_ref(&dir)).unwrap();
        let reports = analyze_targets(&targets, &Default::default(), &Default::default()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let rules: Vec<Vec<&str>> = reports
            .iter()
            .map(|r| r.findings.iter().map(|f| f.rule).collect())
            .collect();
        assert_eq!(rules[0], vec!["unreadable-file"]);
        assert!(
            rules[1].contains(&"require-concurrent-index-creation"),
            "{rules:?}"
        );
    }
}
