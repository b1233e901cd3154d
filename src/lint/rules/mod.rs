//! The rule registry: every rule once, in the order `migrate rules` lists them.

use super::Rule;

/// Declares every rule's module and lists it in the registry, from one line per rule: a rule
/// cannot be written and left out. A module whose struct is not named here fails the build.
macro_rules! registry {
    ($($module:ident :: $rule:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every rule, once.
        pub static RULES: &[&dyn Rule] = &[$(&$module::$rule),*];
        /// The module of each rule, for the test that every rule file is listed.
        #[cfg(test)]
        static MODULES: &[&str] = &[$(stringify!($module)),*];
    };
}

registry! {
    syntax_error::SyntaxErrorRule,
    unreadable_file::UnreadableFile,
    unknown_table_or_column::UnknownTableOrColumn,
    fails_at_run_time::FailsAtRunTime,
    allow_directive::AllowDirective,
    phase_mismatch::PhaseMismatch,
    require_concurrent_index_creation::RequireConcurrentIndexCreation,
    require_concurrent_index_deletion::RequireConcurrentIndexDeletion,
    require_concurrent_reindex::RequireConcurrentReindex,
    concurrently_in_transaction::ConcurrentlyInTransaction,
    pg14_concurrent_index_bug::Pg14ConcurrentIndexBug,
    require_concurrent_detach::RequireConcurrentDetach,
    index_too_many_columns::IndexTooManyColumns,
    volatile_default::VolatileDefault,
    adding_required_field::AddingRequiredField,
    adding_serial_column::AddingSerialColumn,
    adding_stored_generated_column::AddingStoredGeneratedColumn,
    changing_column_type::ChangingColumnType,
    setting_not_null::SettingNotNull,
    constraint_missing_not_valid::ConstraintMissingNotValid,
    validate_in_same_transaction::ValidateInSameTransaction,
    unique_constraint_without_index::UniqueConstraintWithoutIndex,
    adding_exclusion_constraint::AddingExclusionConstraint,
    fk_without_index::FkWithoutIndex,
    domain_constraint::DomainConstraint,
    renaming_column::RenamingColumn,
    renaming_table::RenamingTable,
    renaming_schema::RenamingSchema,
    renaming_enum_value::RenamingEnumValue,
    dropping_column::DroppingColumn,
    dropping_table::DroppingTable,
    dropping_schema::DroppingSchema,
    dropping_database::DroppingDatabase,
    dropping_constraint::DroppingConstraint,
    dropping_not_null::DroppingNotNull,
    truncate::Truncate,
    changing_row_level_security::ChangingRowLevelSecurity,
    disabling_triggers::DisablingTriggers,
    adding_identity::AddingIdentity,
    create_table_if_not_exists_live::CreateTableIfNotExistsLive,
    vacuum_full::VacuumFull,
    cluster::Cluster,
    lock_table::LockTable,
    table_rewrite::TableRewrite,
    refresh_matview_concurrently::RefreshMatviewConcurrently,
    statement_after_access_exclusive::StatementAfterAccessExclusive,
    backfill_in_ddl_transaction::BackfillInDdlTransaction,
    multiple_alter_table::MultipleAlterTable,
    transaction_nesting::TransactionNesting,
    unclosed_transaction::UnclosedTransaction,
    syntax_newer_than_target::SyntaxNewerThanTarget,
    opaque_statement::OpaqueStatement,
    missing_timeouts::MissingTimeouts,
    prefer_robust_statements::PreferRobustStatements,
    prefer_jsonb::PreferJsonb,
    prefer_bigint::PreferBigint,
    prefer_identity::PreferIdentity,
    prefer_timestamptz::PreferTimestamptz,
    prefer_text_field::PreferTextField,
    ban_char_field::BanCharField,
    identifier_too_long::IdentifierTooLong,
}

/// Whether a rule has this id (for checking the ids in migrate.toml).
pub fn exists(id: &str) -> bool {
    find(id).is_some()
}

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| r.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_file_is_in_the_registry() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lint/rules");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            assert!(
                module == "mod" || MODULES.contains(&module),
                "src/lint/rules/{name} is not listed in `registry!`"
            );
        }
    }

    #[test]
    fn ids_are_unique_kebab_case_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for r in RULES {
            let m = r.meta();
            assert!(seen.insert(m.id), "duplicate id {}", m.id);
            assert!(
                m.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                m.id
            );
            let doc = m.doc_markdown();
            for section in ["## Why it hurts", "## Example", "## Instead"] {
                assert!(doc.contains(section), "{} lacks `{section}`", m.id);
            }
        }
    }
}
