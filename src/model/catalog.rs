//! An in-memory schema: what the earlier migrations (or a live database) say exists.
//!
//! Rules consult it to tell a new, empty table from an existing one, to find a column's
//! current type, whether a `CHECK (c IS NOT NULL)` is validated, or whether a foreign key's
//! columns are indexed.

use super::{ColumnSpec, ConstraintKind, ConstraintSpec, Operation, QualifiedName, SqlType};
use std::collections::BTreeMap;

/// Objects by schema, then name: looked up with borrowed names, no allocation per lookup.
#[derive(Debug, Clone)]
struct NameMap<T>(BTreeMap<String, BTreeMap<String, T>>);

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        NameMap(BTreeMap::new())
    }
}

impl<T> NameMap<T> {
    fn get(&self, n: &QualifiedName) -> Option<&T> {
        self.0.get(n.schema_name())?.get(&n.name)
    }

    fn get_mut(&mut self, n: &QualifiedName) -> Option<&mut T> {
        self.0.get_mut(n.schema_name())?.get_mut(&n.name)
    }

    fn insert(&mut self, n: &QualifiedName, value: T) {
        match self.0.get_mut(n.schema_name()) {
            Some(m) => {
                m.insert(n.name.clone(), value);
            }
            None => {
                self.0.insert(
                    n.schema_name().to_string(),
                    BTreeMap::from([(n.name.clone(), value)]),
                );
            }
        }
    }

    fn remove(&mut self, n: &QualifiedName) -> Option<T> {
        self.0.get_mut(n.schema_name())?.remove(&n.name)
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.0.values().flat_map(BTreeMap::values)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.values_mut().flat_map(BTreeMap::values_mut)
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for m in self.0.values_mut() {
            m.retain(|_, v| keep(v));
        }
    }

    fn remove_schema(&mut self, schema: &str) {
        self.0.remove(schema);
    }
}

/// Where the catalog learned of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Created by an earlier migration or present in the database: may hold rows and traffic.
    Existing,
    /// Created earlier in the migration being checked: new and empty.
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    pub default: Option<String>,
    /// The server fills it (identity, serial or a generated column): an insert that leaves
    /// it out does not write NULL.
    pub generated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    pub validated: bool,
    /// The definition as the database prints it (`pg_get_constraintdef`), when read live.
    pub definition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: QualifiedName,
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub origin: Origin,
    /// Estimated rows, when read from a live database.
    pub rows: Option<i64>,
    /// A partitioned table (`PARTITION BY`): no index of it is built concurrently, and before
    /// PostgreSQL 18 no foreign key of it is added NOT VALID.
    pub partitioned: bool,
    /// The columns of its partition key and of its partitions' (sub-partitioning), as far as
    /// known: PostgreSQL changes the type of none of them and drops none.
    pub partition_key: Vec<String>,
}

impl Table {
    /// Whether `column` is in the partition key of the table or of one of its partitions.
    pub fn in_partition_key(&self, column: &str) -> bool {
        self.partition_key.iter().any(|k| k == column)
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_new(&self) -> bool {
        self.origin == Origin::New
    }

    /// Whether a validated `CHECK (column IS NOT NULL)` exists.
    pub fn has_valid_not_null_check(&self, column: &str) -> bool {
        self.constraints.iter().any(|c| {
            c.validated
                && matches!(&c.kind, ConstraintKind::Check { implies_not_null, .. }
                    if implies_not_null.iter().any(|c| c == column))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: QualifiedName,
    pub table: QualifiedName,
    pub columns: Vec<String>,
    pub unique: bool,
    pub origin: Origin,
}

/// The schema as far as the tool knows it.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: NameMap<Table>,
    indexes: NameMap<Index>,
    enums: NameMap<Vec<String>>,
    domains: NameMap<bool>,
    /// Tables and indexes created by the migration being checked, to settle after it.
    fresh_tables: Vec<QualifiedName>,
    fresh_indexes: Vec<QualifiedName>,
    /// Whether the catalog came from a live database (then an unknown table is really unknown).
    pub live: bool,
}

impl Catalog {
    pub fn table(&self, name: &QualifiedName) -> Option<&Table> {
        self.tables.get(name)
    }

    /// Whether the table is known to be partitioned (from its CREATE TABLE or the live catalog).
    pub fn is_partitioned(&self, name: &QualifiedName) -> bool {
        self.table(name).is_some_and(|t| t.partitioned)
    }

    pub fn index(&self, name: &QualifiedName) -> Option<&Index> {
        self.indexes.get(name)
    }

    pub fn indexes_of<'a>(
        &'a self,
        table: &'a QualifiedName,
    ) -> impl Iterator<Item = &'a Index> + 'a {
        self.indexes.values().filter(move |i| i.table.same(table))
    }

    pub fn enum_values(&self, name: &QualifiedName) -> Option<&[String]> {
        self.enums.get(name).map(Vec::as_slice)
    }

    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// Whether the table is known to be new and empty (created in the migration being checked).
    pub fn is_new_table(&self, name: &QualifiedName) -> bool {
        self.table(name).is_some_and(Table::is_new)
    }

    /// Marks every table and index as existing: called between migrations, since a table
    /// created by an earlier migration may have rows by the time a later one runs.
    pub fn settle(&mut self) {
        for name in std::mem::take(&mut self.fresh_tables) {
            if let Some(t) = self.tables.get_mut(&name) {
                t.origin = Origin::Existing;
            }
        }
        for name in std::mem::take(&mut self.fresh_indexes) {
            if let Some(i) = self.indexes.get_mut(&name) {
                i.origin = Origin::Existing;
            }
        }
    }

    pub fn insert_table(&mut self, table: Table) {
        if table.origin == Origin::New {
            self.fresh_tables.push(table.name.clone());
        }
        let name = table.name.clone();
        self.tables.insert(&name, table);
    }

    pub fn insert_index(&mut self, index: Index) {
        if index.origin == Origin::New {
            self.fresh_indexes.push(index.name.clone());
        }
        let name = index.name.clone();
        self.indexes.insert(&name, index);
    }

    pub fn insert_enum(&mut self, name: QualifiedName, values: Vec<String>) {
        self.enums.insert(&name, values);
    }

    /// Whether some index of `table` starts with `columns` (in any order for the prefix).
    pub fn has_index_covering(&self, table: &QualifiedName, columns: &[String]) -> bool {
        if columns.is_empty() {
            return true;
        }
        self.indexes_of(table).any(|i| {
            i.columns.len() >= columns.len() && {
                let prefix = &i.columns[..columns.len()];
                columns.iter().all(|c| prefix.contains(c))
            }
        }) || self.table(table).is_some_and(|t| {
            t.constraints.iter().any(|c| match &c.kind {
                ConstraintKind::PrimaryKey { columns: k, .. }
                | ConstraintKind::Unique { columns: k, .. } => {
                    k.len() >= columns.len()
                        && columns.iter().all(|c| k[..columns.len()].contains(c))
                }
                _ => false,
            })
        })
    }

    /// Applies an operation. `origin` is how a table it creates is marked.
    pub fn apply(&mut self, op: &Operation, origin: Origin) {
        use Operation as O;
        match op {
            // PostgreSQL does nothing: the table there stays, rows and all, and what follows
            // in the file runs against it.
            O::CreateTable {
                table,
                if_not_exists: true,
                ..
            } if self.tables.get(table).is_some() => {}
            O::CreateTable {
                table,
                columns,
                constraints,
                partitioned,
                partition_key,
                partition_of,
                ..
            } => {
                let mut t = Table {
                    name: table.clone(),
                    columns: columns.iter().map(column_of).collect(),
                    constraints: Vec::new(),
                    origin,
                    rows: None,
                    partitioned: *partitioned,
                    partition_key: partition_key.clone(),
                };
                for c in columns {
                    for k in &c.constraints {
                        add_constraint(&mut t, k);
                    }
                }
                for k in constraints {
                    add_constraint(&mut t, k);
                    if let ConstraintKind::PrimaryKey { columns, .. } = &k.kind {
                        for col in t.columns.iter_mut().filter(|c| columns.contains(&c.name)) {
                            col.not_null = true;
                        }
                    }
                }
                self.insert_table(t);
                // A partition partitioned in turn: its key's columns cannot change either.
                if let Some(parent) = partition_of.as_ref().and_then(|p| self.tables.get_mut(p)) {
                    for k in partition_key {
                        if !parent.in_partition_key(k) {
                            parent.partition_key.push(k.clone());
                        }
                    }
                }
            }
            O::CreateTableAs { table, .. } => {
                self.insert_table(Table {
                    name: table.clone(),
                    columns: Vec::new(),
                    constraints: Vec::new(),
                    origin,
                    rows: None,
                    partitioned: false,
                    partition_key: Vec::new(),
                });
            }
            O::AddColumn { table, column, .. } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.columns.retain(|c| c.name != column.name);
                    t.columns.push(column_of(column));
                    for k in &column.constraints {
                        add_constraint(t, k);
                    }
                }
            }
            O::DropColumn { table, column, .. } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.columns.retain(|c| &c.name != column);
                }
                self.indexes
                    .retain(|i| !(i.table.same(table) && i.columns.contains(column)));
            }
            O::AlterColumnType {
                table, column, ty, ..
            } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.ty = ty.clone();
                }
            }
            O::SetNotNull { table, column } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.not_null = true;
                }
            }
            O::DropNotNull { table, column } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.not_null = false;
                }
            }
            O::SetDefault {
                table,
                column,
                default,
            } => {
                if let Some(c) = self.column_mut(table, column) {
                    c.default = default.as_ref().map(|d| d.sql.clone());
                }
            }
            O::AddConstraint {
                table, constraint, ..
            } => {
                if let Some(t) = self.tables.get_mut(table) {
                    add_constraint(t, constraint);
                }
            }
            O::ValidateConstraint { table, name } => {
                if let Some(t) = self.tables.get_mut(table) {
                    for c in t.constraints.iter_mut().filter(|c| &c.name == name) {
                        c.validated = true;
                    }
                }
            }
            O::DropConstraint { table, name, .. } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.constraints.retain(|c| &c.name != name);
                }
            }
            O::RenameColumn { table, from, to } => {
                if let Some(c) = self.column_mut(table, from) {
                    c.name = to.clone();
                }
                for i in self.indexes.values_mut().filter(|i| i.table.same(table)) {
                    for c in i.columns.iter_mut().filter(|c| *c == from) {
                        c.clone_from(to);
                    }
                }
            }
            O::RenameTable { table, to, .. } => {
                if let Some(mut t) = self.tables.remove(table) {
                    t.name = QualifiedName::new(table.schema.as_deref(), to);
                    let new_name = t.name.clone();
                    self.insert_table(t);
                    for i in self.indexes.values_mut().filter(|i| i.table.same(table)) {
                        i.table = new_name.clone();
                    }
                }
            }
            O::CreateIndex(ix) => {
                let name = QualifiedName::new(
                    ix.table.schema.as_deref(),
                    &ix.name.clone().unwrap_or_else(|| {
                        format!("{}_{}_idx", ix.table.name, ix.columns.join("_"))
                    }),
                );
                let origin = if self.is_new_table(&ix.table) {
                    Origin::New
                } else {
                    origin
                };
                self.insert_index(Index {
                    name,
                    table: ix.table.clone(),
                    columns: if ix.partial {
                        Vec::new()
                    } else {
                        ix.columns.clone()
                    },
                    unique: ix.unique,
                    origin,
                });
            }
            O::DropIndex { names, .. } => {
                for n in names {
                    self.indexes.remove(n);
                }
            }
            O::Drop { kind, names, .. } => {
                use super::ObjectKind as K;
                for n in names {
                    match kind {
                        K::Table | K::View | K::MaterializedView => {
                            self.tables.remove(n);
                            self.indexes.retain(|i| !i.table.same(n));
                        }
                        K::Type => {
                            self.enums.remove(n);
                        }
                        K::Domain => {
                            self.domains.remove(n);
                        }
                        K::Schema => {
                            self.tables.remove_schema(&n.name);
                            self.indexes.remove_schema(&n.name);
                        }
                        _ => {}
                    }
                }
            }
            O::CreateEnum { ty, values } => {
                self.enums.insert(ty, values.clone());
            }
            O::AddEnumValue { ty, value } => match self.enums.get_mut(ty) {
                Some(v) => v.push(value.clone()),
                None => self.enums.insert(ty, vec![value.clone()]),
            },
            O::RenameEnumValue { ty, from, to } => {
                if let Some(v) = self.enums.get_mut(ty) {
                    for x in v.iter_mut().filter(|x| *x == from) {
                        x.clone_from(to);
                    }
                }
            }
            O::CreateDomain { ty, has_check } => {
                self.domains.insert(ty, *has_check);
            }
            _ => {}
        }
    }

    fn column_mut(&mut self, table: &QualifiedName, column: &str) -> Option<&mut Column> {
        self.tables
            .get_mut(table)?
            .columns
            .iter_mut()
            .find(|c| c.name == column)
    }
}

fn column_of(c: &ColumnSpec) -> Column {
    Column {
        name: c.name.clone(),
        ty: c.ty.clone(),
        not_null: c.not_null || c.identity || c.ty.is_serial(),
        default: c.default.as_ref().map(|d| d.sql.clone()),
        generated: c.identity || c.ty.is_serial() || c.generated_stored.is_some(),
    }
}

fn add_constraint(t: &mut Table, k: &ConstraintSpec) {
    let name = k
        .name
        .clone()
        .unwrap_or_else(|| default_constraint_name(&t.name.name, &k.kind));
    t.constraints.retain(|c| c.name != name);
    t.constraints.push(Constraint {
        name,
        kind: k.kind.clone(),
        validated: !k.not_valid,
        definition: None,
    });
}

/// The name PostgreSQL gives a constraint written without one.
pub fn default_constraint_name(table: &str, kind: &ConstraintKind) -> String {
    match kind {
        ConstraintKind::PrimaryKey { .. } => format!("{table}_pkey"),
        ConstraintKind::Unique { columns, .. } => format!("{table}_{}_key", columns.join("_")),
        ConstraintKind::ForeignKey { columns, .. } => format!("{table}_{}_fkey", columns.join("_")),
        ConstraintKind::Check {
            not_null_of: Some(c),
            ..
        } => format!("{table}_{c}_check"),
        ConstraintKind::Check { .. } => format!("{table}_check"),
        ConstraintKind::Exclusion => format!("{table}_excl"),
        ConstraintKind::NotNull { column } => format!("{table}_{column}_not_null"),
    }
}
