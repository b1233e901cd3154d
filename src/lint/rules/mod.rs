//! The rule registry: every rule once, in the order `migrate rules` lists them.

use super::Rule;

pub mod adding_exclusion_constraint;
pub mod adding_required_field;
pub mod adding_serial_column;
pub mod adding_stored_generated_column;
pub mod allow_directive;
pub mod backfill_in_ddl_transaction;
pub mod ban_char_field;
pub mod changing_column_type;
pub mod cluster;
pub mod concurrently_in_transaction;
pub mod constraint_missing_not_valid;
pub mod domain_constraint;
pub mod dropping_column;
pub mod dropping_constraint;
pub mod dropping_database;
pub mod dropping_not_null;
pub mod dropping_schema;
pub mod dropping_table;
pub mod fk_without_index;
pub mod identifier_too_long;
pub mod index_too_many_columns;
pub mod lock_table;
pub mod multiple_alter_table;
pub mod opaque_statement;
pub mod pg14_concurrent_index_bug;
pub mod phase_mismatch;
pub mod prefer_bigint;
pub mod prefer_identity;
pub mod prefer_jsonb;
pub mod prefer_robust_statements;
pub mod prefer_text_field;
pub mod prefer_timestamptz;
pub mod refresh_matview_concurrently;
pub mod renaming_column;
pub mod renaming_enum_value;
pub mod renaming_schema;
pub mod renaming_table;
pub mod require_concurrent_detach;
pub mod require_concurrent_index_creation;
pub mod require_concurrent_index_deletion;
pub mod require_concurrent_reindex;
pub mod setting_not_null;
pub mod statement_after_access_exclusive;
pub mod syntax_error;
pub mod syntax_newer_than_target;
pub mod table_rewrite;
pub mod transaction_nesting;
pub mod truncate;
pub mod unclosed_transaction;
pub mod unique_constraint_without_index;
pub mod unknown_table_or_column;
pub mod vacuum_full;
pub mod validate_in_same_transaction;
pub mod volatile_default;

/// Every rule, once.
pub static RULES: &[&dyn Rule] = &[
    &syntax_error::SyntaxErrorRule,
    &unknown_table_or_column::UnknownTableOrColumn,
    &allow_directive::AllowDirective,
    &phase_mismatch::PhaseMismatch,
    &require_concurrent_index_creation::RequireConcurrentIndexCreation,
    &require_concurrent_index_deletion::RequireConcurrentIndexDeletion,
    &require_concurrent_reindex::RequireConcurrentReindex,
    &concurrently_in_transaction::ConcurrentlyInTransaction,
    &pg14_concurrent_index_bug::Pg14ConcurrentIndexBug,
    &require_concurrent_detach::RequireConcurrentDetach,
    &index_too_many_columns::IndexTooManyColumns,
    &volatile_default::VolatileDefault,
    &adding_required_field::AddingRequiredField,
    &adding_serial_column::AddingSerialColumn,
    &adding_stored_generated_column::AddingStoredGeneratedColumn,
    &changing_column_type::ChangingColumnType,
    &setting_not_null::SettingNotNull,
    &constraint_missing_not_valid::ConstraintMissingNotValid,
    &validate_in_same_transaction::ValidateInSameTransaction,
    &unique_constraint_without_index::UniqueConstraintWithoutIndex,
    &adding_exclusion_constraint::AddingExclusionConstraint,
    &fk_without_index::FkWithoutIndex,
    &domain_constraint::DomainConstraint,
    &renaming_column::RenamingColumn,
    &renaming_table::RenamingTable,
    &renaming_schema::RenamingSchema,
    &renaming_enum_value::RenamingEnumValue,
    &dropping_column::DroppingColumn,
    &dropping_table::DroppingTable,
    &dropping_schema::DroppingSchema,
    &dropping_database::DroppingDatabase,
    &dropping_constraint::DroppingConstraint,
    &dropping_not_null::DroppingNotNull,
    &truncate::Truncate,
    &vacuum_full::VacuumFull,
    &cluster::Cluster,
    &lock_table::LockTable,
    &table_rewrite::TableRewrite,
    &refresh_matview_concurrently::RefreshMatviewConcurrently,
    &statement_after_access_exclusive::StatementAfterAccessExclusive,
    &backfill_in_ddl_transaction::BackfillInDdlTransaction,
    &multiple_alter_table::MultipleAlterTable,
    &transaction_nesting::TransactionNesting,
    &unclosed_transaction::UnclosedTransaction,
    &syntax_newer_than_target::SyntaxNewerThanTarget,
    &opaque_statement::OpaqueStatement,
    &prefer_robust_statements::PreferRobustStatements,
    &prefer_jsonb::PreferJsonb,
    &prefer_bigint::PreferBigint,
    &prefer_identity::PreferIdentity,
    &prefer_timestamptz::PreferTimestamptz,
    &prefer_text_field::PreferTextField,
    &ban_char_field::BanCharField,
    &identifier_too_long::IdentifierTooLong,
];

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static dyn Rule> {
    RULES.iter().copied().find(|r| r.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
