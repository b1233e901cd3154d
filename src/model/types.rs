//! Which column type changes rewrite the table, and which functions are volatile.

use super::SqlType;

/// What `ALTER COLUMN … TYPE` does to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    /// Catalog only: binary-coercible and no narrower.
    NoRewrite,
    /// Every row is rewritten and every index rebuilt, under ACCESS EXCLUSIVE.
    Rewrite,
    /// The current type is not known (no earlier migration, no `--database-url`).
    Unknown,
}

/// Canonical base name of a type as the parser spells it.
pub fn canonical(name: &str) -> String {
    match name {
        "int" | "integer" | "int4" => "int4",
        "smallint" | "int2" => "int2",
        "bigint" | "int8" => "int8",
        "varchar" | "character varying" => "varchar",
        "char" | "character" | "bpchar" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "float8" | "double precision" => "float8",
        "float4" | "real" => "float4",
        "bool" | "boolean" => "bool",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        "varbit" | "bit varying" => "varbit",
        other => other,
    }
    .to_string()
}

/// Whether changing a column from `old` to `new` (with or without `USING`) rewrites the table.
pub fn type_change(old: Option<&SqlType>, new: &SqlType, using: bool) -> TypeChange {
    let Some(old) = old else {
        return TypeChange::Unknown;
    };
    if using || old.array != new.array {
        // A USING expression is evaluated for every row.
        return if old == new {
            TypeChange::NoRewrite
        } else {
            TypeChange::Rewrite
        };
    }
    let widen = |o: &[i64], n: &[i64]| match (o.first(), n.first()) {
        (_, None) => true, // to unconstrained
        (Some(a), Some(b)) => b >= a,
        (None, Some(_)) => false,
    };
    let (o, n) = (old.base.as_str(), new.base.as_str());
    let no_rewrite = match (o, n) {
        _ if o == n && old.mods == new.mods => true,
        ("varchar", "varchar") | ("varbit", "varbit") => widen(&old.mods, &new.mods),
        ("varchar", "text") | ("text", "varchar") => new.mods.is_empty(),
        ("numeric", "numeric") => {
            new.mods.is_empty()
                || (old.mods.len() == 2
                    && new.mods.len() == 2
                    && new.mods[1] == old.mods[1]
                    && new.mods[0] >= old.mods[0])
                || (old.mods.len() == 1 && new.mods.len() <= 1 && widen(&old.mods, &new.mods))
        }
        ("timestamp", "timestamp")
        | ("timestamptz", "timestamptz")
        | ("time", "time")
        | ("timetz", "timetz")
        | ("interval", "interval") => widen(&old.mods, &new.mods),
        ("cidr", "inet") | ("xml", "text") => true,
        _ => false,
    };
    if no_rewrite {
        TypeChange::NoRewrite
    } else {
        TypeChange::Rewrite
    }
}

/// Functions that are evaluated once per statement (stable or immutable) and commonly used in
/// defaults and backfills. Anything not listed is treated as volatile: the tool cannot vouch
/// for a function it does not know.
const NON_VOLATILE: &[&str] = &[
    "abs",
    "btrim",
    "coalesce",
    "concat",
    "concat_ws",
    "current_database",
    "current_schema",
    "current_setting",
    "date_part",
    "date_trunc",
    "greatest",
    "initcap",
    "jsonb_build_array",
    "jsonb_build_object",
    "json_build_array",
    "json_build_object",
    "least",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "md5",
    "now",
    "nullif",
    "replace",
    "right",
    "round",
    "rpad",
    "rtrim",
    "split_part",
    "statement_timestamp",
    "substr",
    "substring",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "trim",
    "trunc",
    "upper",
    "array_length",
    "array_to_string",
    "string_to_array",
    "cardinality",
];

/// Whether a function (by its last name part) is known not to be volatile.
pub fn is_known_non_volatile(func: &str) -> bool {
    NON_VOLATILE.contains(&func)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(base: &str, mods: &[i64]) -> SqlType {
        SqlType {
            sql: base.into(),
            base: base.into(),
            mods: mods.to_vec(),
            array: false,
        }
    }

    #[test]
    fn widening_does_not_rewrite() {
        assert_eq!(
            type_change(Some(&t("varchar", &[10])), &t("varchar", &[20]), false),
            TypeChange::NoRewrite
        );
        assert_eq!(
            type_change(Some(&t("varchar", &[10])), &t("text", &[]), false),
            TypeChange::NoRewrite
        );
        assert_eq!(
            type_change(
                Some(&t("numeric", &[10, 2])),
                &t("numeric", &[12, 2]),
                false
            ),
            TypeChange::NoRewrite
        );
    }

    #[test]
    fn narrowing_or_changing_rewrites() {
        assert_eq!(
            type_change(Some(&t("varchar", &[20])), &t("varchar", &[10]), false),
            TypeChange::Rewrite
        );
        assert_eq!(
            type_change(Some(&t("int4", &[])), &t("int8", &[]), false),
            TypeChange::Rewrite
        );
        assert_eq!(
            type_change(
                Some(&t("numeric", &[10, 2])),
                &t("numeric", &[12, 3]),
                false
            ),
            TypeChange::Rewrite
        );
        assert_eq!(
            type_change(Some(&t("timestamp", &[])), &t("timestamptz", &[]), false),
            TypeChange::Rewrite
        );
        assert_eq!(
            type_change(None, &t("int8", &[]), false),
            TypeChange::Unknown
        );
    }
}
