//! The operations a statement means, independent of how it was spelled.
//!
//! `convert` turns a parse tree into a list of `Operation`s (one `ALTER TABLE` with three
//! actions is three operations); `catalog` replays them into an in-memory schema; `types`
//! knows which type changes rewrite a table; `locks` knows what each operation locks and for
//! how long.

pub mod catalog;
pub mod convert;
pub mod locks;
pub mod types;

use serde::Serialize;
use std::fmt;

/// SQL deparsed from a statement tree only when asked for: most statements never need it, and
/// deparsing costs a round trip through the C library.
#[derive(Clone)]
pub struct LazySql(pub Box<pg_query::NodeEnum>);

impl LazySql {
    pub fn sql(&self) -> String {
        convert::deparse_stmt(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for LazySql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LazySql")
    }
}

/// Compared by what it would produce; operations compare equal regardless of it.
impl PartialEq for LazySql {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LazySql {}

/// A schema-qualified name as the parser gives it (unquoted names already folded to lower case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct QualifiedName {
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        QualifiedName {
            schema: schema.filter(|s| !s.is_empty()).map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The name as SQL, each part quoted only where PostgreSQL requires it.
    pub fn sql(&self) -> String {
        self.to_string()
    }

    /// The schema, `public` when unqualified.
    pub fn schema_name(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }

    /// Whether both name the same object (an unqualified name is in `public`).
    pub fn same(&self, other: &QualifiedName) -> bool {
        self.name == other.name && self.schema_name() == other.schema_name()
    }
}

/// Written as SQL without a string per part.
impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write_ident(f, schema)?;
            f.write_str(".")?;
        }
        write_ident(f, &self.name)
    }
}

/// Quotes an identifier for generated SQL. Every identifier the tool writes into SQL goes
/// through here (or [`write_ident`], the same into a writer): it is left bare only when it is
/// a lower-case, non-keyword name.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    let _ = write_ident(&mut out, name);
    out
}

/// Quotes a string as an SQL literal, for the few statements that cannot take a bound value
/// (`COMMENT`, `CREATE EXTENSION … VERSION`). The session runs with `standard_conforming_strings`
/// on (the default since 9.1), where a backslash is an ordinary character.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// [`quote_ident`] into `out`.
pub fn write_ident(out: &mut impl fmt::Write, name: &str) -> fmt::Result {
    let plain = !name.is_empty()
        && name
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !is_keyword(name);
    if plain {
        return out.write_str(name);
    }
    out.write_char('"')?;
    for (i, part) in name.split('"').enumerate() {
        if i > 0 {
            out.write_str("\"\"")?;
        }
        out.write_str(part)?;
    }
    out.write_char('"')
}

fn is_keyword(name: &str) -> bool {
    // Reserved keywords, and type names whose bare spelling means something else (`char` is
    // character(1), not the "char" type): quoting them is always safe. Kept sorted.
    const KEYWORDS: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "between",
        "bigint",
        "binary",
        "bit",
        "boolean",
        "both",
        "case",
        "cast",
        "char",
        "character",
        "check",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "dec",
        "decimal",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "double",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "float",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "int",
        "integer",
        "intersect",
        "interval",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "national",
        "natural",
        "nchar",
        "not",
        "notnull",
        "null",
        "numeric",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "precision",
        "primary",
        "real",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "setof",
        "similar",
        "smallint",
        "some",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "time",
        "timestamp",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "varchar",
        "variadic",
        "varying",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    ];
    KEYWORDS.binary_search(&name).is_ok()
}

/// A column type as written, with what rules need to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlType {
    /// The type as SQL (`varchar(255)`, `numeric(10,2)`, `text[]`).
    pub sql: String,
    /// The base type name, canonical and lower case (`varchar`, `int4`, `timestamptz`).
    pub base: String,
    /// Type modifiers (lengths, precision and scale), when all are integers.
    pub mods: Vec<i64>,
    pub array: bool,
}

impl SqlType {
    pub fn is_serial(&self) -> bool {
        matches!(
            self.base.as_str(),
            "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
        )
    }
}

/// How a default or backfill expression behaves when evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Volatility {
    /// A literal or a cast of one.
    Constant,
    /// Evaluated once per statement (`now()`, `current_user`): stored once by ADD COLUMN.
    Stable,
    /// Evaluated per row (`random()`, `gen_random_uuid()`, `nextval()`), or a function the tool
    /// cannot vouch for.
    Volatile,
}

/// An expression as SQL, with its volatility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expr {
    pub sql: String,
    pub volatility: Volatility,
    /// The function that makes it volatile, when one does.
    pub volatile_fn: Option<String>,
}

/// A column definition, in `CREATE TABLE` or `ADD COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    pub default: Option<Expr>,
    /// `GENERATED ALWAYS|BY DEFAULT AS IDENTITY`.
    pub identity: bool,
    /// `GENERATED ALWAYS AS (…) STORED` (true) or `VIRTUAL` (false).
    pub generated_stored: Option<bool>,
    /// Constraints written on the column (`PRIMARY KEY`, `UNIQUE`, `REFERENCES`, `CHECK`).
    pub constraints: Vec<ConstraintSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConstraintKind {
    Check {
        expr: String,
        /// The column a `CHECK (c IS NOT NULL)` proves non-null.
        not_null_of: Option<String>,
        /// Every column the check proves non-null, as PostgreSQL's predicate proof sees it: the
        /// exact form, or `c IS NOT NULL` as one term of an AND (`c IS NOT NULL AND c > 0`).
        /// An OR proves nothing. A validated such check lets SET NOT NULL skip its scan.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        implies_not_null: Vec<String>,
    },
    ForeignKey {
        columns: Vec<String>,
        references: QualifiedName,
        ref_columns: Vec<String>,
    },
    Unique {
        columns: Vec<String>,
        /// `UNIQUE USING INDEX name`.
        using_index: Option<String>,
    },
    PrimaryKey {
        columns: Vec<String>,
        using_index: Option<String>,
    },
    Exclusion,
    NotNull {
        column: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConstraintSpec {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    /// Written with `NOT VALID`, or `NOT ENFORCED` (PostgreSQL 18): no row is read.
    pub not_valid: bool,
    /// The newest syntax it is written with, when a PostgreSQL release after 13 brought it:
    /// (that major, the syntax in words).
    pub needs: Option<(u32, &'static str)>,
}

/// The transaction-control statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxControl {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackTo,
    Prepare,
}

/// What an index is built over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSpec {
    pub name: Option<String>,
    pub table: QualifiedName,
    /// Leading columns (an expression element is written as its SQL).
    pub columns: Vec<String>,
    pub unique: bool,
    pub concurrently: bool,
    pub if_not_exists: bool,
    pub partial: bool,
    pub method: String,
    pub nulls_not_distinct: bool,
    pub include: bool,
    /// The statement's text, to reproduce it with changes.
    pub sql: String,
}

/// Kinds of object a DROP or RENAME can name, where rules care about the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    Table,
    View,
    MaterializedView,
    Index,
    Sequence,
    Schema,
    Database,
    Type,
    Domain,
    Function,
    Trigger,
    Extension,
    Other,
}

/// One operation of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    CreateTable {
        table: QualifiedName,
        columns: Vec<ColumnSpec>,
        constraints: Vec<ConstraintSpec>,
        partition_of: Option<QualifiedName>,
        /// `PARTITION BY …`: the table holds no rows itself, its partitions do.
        partitioned: bool,
        /// The columns its `PARTITION BY` names (expressions left out).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        partition_key: Vec<String>,
        if_not_exists: bool,
    },
    /// `CREATE TABLE … AS`, `SELECT … INTO`, `CREATE MATERIALIZED VIEW`.
    CreateTableAs {
        table: QualifiedName,
        materialized_view: bool,
    },
    AddColumn {
        table: QualifiedName,
        column: ColumnSpec,
        if_not_exists: bool,
    },
    DropColumn {
        table: QualifiedName,
        column: String,
        cascade: bool,
    },
    AlterColumnType {
        table: QualifiedName,
        column: String,
        ty: SqlType,
        using: Option<String>,
        collate: bool,
    },
    SetNotNull {
        table: QualifiedName,
        column: String,
    },
    DropNotNull {
        table: QualifiedName,
        column: String,
    },
    SetDefault {
        table: QualifiedName,
        column: String,
        default: Option<Expr>,
    },
    AddIdentity {
        table: QualifiedName,
        column: String,
        /// `GENERATED ALWAYS` (a value given in an INSERT is refused), not `BY DEFAULT`.
        always: bool,
        /// A `START WITH` is given (else its sequence starts at 1, whatever the rows hold).
        start: bool,
    },
    /// `ALTER COLUMN … DROP EXPRESSION` on a generated column (`SET EXPRESSION` is a
    /// [`Operation::RewriteTable`]).
    AlterGenerated {
        table: QualifiedName,
        column: String,
    },
    AddConstraint {
        table: QualifiedName,
        constraint: ConstraintSpec,
        /// The same action written with `NOT VALID`, deparsed when a plan needs it.
        #[serde(skip)]
        not_valid_sql: LazySql,
    },
    ValidateConstraint {
        table: QualifiedName,
        name: String,
    },
    DropConstraint {
        table: QualifiedName,
        name: String,
        cascade: bool,
    },
    RenameColumn {
        table: QualifiedName,
        from: String,
        to: String,
    },
    RenameTable {
        table: QualifiedName,
        to: String,
        kind: ObjectKind,
    },
    RenameConstraint {
        table: QualifiedName,
        from: String,
        to: String,
    },
    RenameSchema {
        from: String,
        to: String,
    },
    RenameEnumValue {
        ty: QualifiedName,
        from: String,
        to: String,
    },
    RenameOther {
        kind: ObjectKind,
        name: String,
        to: String,
    },
    CreateIndex(IndexSpec),
    DropIndex {
        names: Vec<QualifiedName>,
        concurrently: bool,
        if_exists: bool,
        cascade: bool,
    },
    Reindex {
        target: String,
        /// The table or index named, for `REINDEX TABLE` / `REINDEX INDEX`.
        relation: Option<QualifiedName>,
        table_level: bool,
        concurrently: bool,
    },
    Drop {
        kind: ObjectKind,
        names: Vec<QualifiedName>,
        cascade: bool,
        if_exists: bool,
    },
    Truncate {
        tables: Vec<QualifiedName>,
        cascade: bool,
    },
    Vacuum {
        tables: Vec<QualifiedName>,
        full: bool,
    },
    Cluster {
        table: Option<QualifiedName>,
    },
    LockTable {
        tables: Vec<QualifiedName>,
        mode: crate::model::locks::LockLevel,
    },
    AttachPartition {
        table: QualifiedName,
        partition: QualifiedName,
    },
    DetachPartition {
        table: QualifiedName,
        partition: QualifiedName,
        concurrently: bool,
        finalize: bool,
    },
    /// Table rewrites that are not type changes: `SET LOGGED/UNLOGGED`, `SET TABLESPACE`,
    /// `SET ACCESS METHOD`.
    RewriteTable {
        table: QualifiedName,
        what: String,
    },
    /// Table-level changes that take a brief lock and touch no rows (triggers, options, owner…).
    AlterTableOther {
        table: QualifiedName,
        what: String,
    },
    CreateEnum {
        ty: QualifiedName,
        values: Vec<String>,
    },
    AddEnumValue {
        ty: QualifiedName,
        value: String,
    },
    CreateDomain {
        ty: QualifiedName,
        has_check: bool,
    },
    AlterDomainAddConstraint {
        ty: QualifiedName,
        not_valid: bool,
    },
    CreateTrigger {
        table: QualifiedName,
        /// `CREATE OR REPLACE TRIGGER`.
        replace: bool,
    },
    CreateView {
        view: QualifiedName,
    },
    RefreshMaterializedView {
        view: QualifiedName,
        concurrently: bool,
    },
    Update {
        table: QualifiedName,
        /// `column = expression` pairs.
        sets: Vec<(String, String)>,
        filter: Option<String>,
        /// `UPDATE … FROM`: the batching engine cannot take it apart.
        has_from: bool,
        /// An assignment to an array element or a field (`SET tags[1] = …`, `SET pos.x = …`):
        /// `sets` names only the column, so the statement cannot be rebuilt from it.
        indirect: bool,
        /// A column assigned twice (`SET a = 1, a = 2`), which PostgreSQL refuses.
        assigned_twice: Option<String>,
        /// Whether running the assignments again would change nothing: no volatile function,
        /// no subquery, no assigned column read. Only then can the engine check afterwards
        /// that every row got its values.
        repeatable: bool,
    },
    Delete {
        table: QualifiedName,
        has_where: bool,
    },
    /// `MERGE INTO table …`: rows inserted, updated or deleted as its clauses say.
    Merge {
        table: QualifiedName,
    },
    Insert {
        table: QualifiedName,
        from_select: bool,
        /// The column list as written (empty when there is none).
        columns: Vec<String>,
    },
    Transaction(TxControl),
    /// `SET`, `SET LOCAL` and `RESET` (the name empty for `RESET ALL`).
    SetVariable {
        name: String,
        local: bool,
        /// Whether the value is other than zero or the default (see `set_to_nonzero`).
        nonzero: bool,
    },
    /// `DO` blocks, routines and anything else whose effect the tool cannot read.
    Opaque {
        what: String,
    },
    /// Statements that change no schema a migration cares about (`SELECT`, `COMMENT`, `GRANT`…).
    Other {
        what: String,
    },
}

impl Operation {
    /// The existing column a column-level operation acts on (a rename's old name).
    pub fn column_target(&self) -> Option<(&QualifiedName, &str)> {
        use Operation::*;
        match self {
            DropColumn { table, column, .. }
            | AlterColumnType { table, column, .. }
            | SetNotNull { table, column }
            | DropNotNull { table, column }
            | SetDefault { table, column, .. }
            | RenameColumn {
                table,
                from: column,
                ..
            } => Some((table, column.as_str())),
            _ => None,
        }
    }

    /// The table the operation changes, when it changes one.
    pub fn table(&self) -> Option<&QualifiedName> {
        use Operation::*;
        match self {
            CreateTable { table, .. }
            | CreateTableAs { table, .. }
            | AddColumn { table, .. }
            | DropColumn { table, .. }
            | AlterColumnType { table, .. }
            | SetNotNull { table, .. }
            | DropNotNull { table, .. }
            | SetDefault { table, .. }
            | AddIdentity { table, .. }
            | AlterGenerated { table, .. }
            | AddConstraint { table, .. }
            | ValidateConstraint { table, .. }
            | DropConstraint { table, .. }
            | RenameColumn { table, .. }
            | RenameTable { table, .. }
            | RenameConstraint { table, .. }
            | AttachPartition { table, .. }
            | DetachPartition { table, .. }
            | RewriteTable { table, .. }
            | AlterTableOther { table, .. }
            | CreateTrigger { table, .. }
            | Update { table, .. }
            | Delete { table, .. }
            | Merge { table }
            | Insert { table, .. } => Some(table),
            CreateIndex(ix) => Some(&ix.table),
            _ => None,
        }
    }

    /// Whether this is one action of an `ALTER TABLE`.
    pub fn is_alter_table(&self) -> bool {
        use Operation::*;
        matches!(
            self,
            AddColumn { .. }
                | DropColumn { .. }
                | AlterColumnType { .. }
                | SetNotNull { .. }
                | DropNotNull { .. }
                | SetDefault { .. }
                | AddIdentity { .. }
                | AlterGenerated { .. }
                | AddConstraint { .. }
                | ValidateConstraint { .. }
                | DropConstraint { .. }
                | AttachPartition { .. }
                | DetachPartition { .. }
                | RewriteTable { .. }
                | AlterTableOther { .. }
        )
    }

    /// Data changes a backfill would make.
    pub fn is_dml(&self) -> bool {
        matches!(
            self,
            Operation::Update { .. }
                | Operation::Delete { .. }
                | Operation::Insert { .. }
                | Operation::Merge { .. }
        )
    }
}
