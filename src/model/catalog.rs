//! An in-memory schema: what the earlier migrations (or a live database) say exists.
//!
//! Rules consult it to tell a new, empty table from an existing one, to find a column's
//! current type, whether a `CHECK (c IS NOT NULL)` is validated, or whether a foreign key's
//! columns are indexed.

use super::{ColumnSpec, ConstraintKind, ConstraintSpec, Operation, QualifiedName, SqlType};
use std::collections::BTreeMap;

type Key = (String, String);

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    pub validated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: QualifiedName,
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    pub origin: Origin,
    /// Estimated rows, when read from a live database.
    pub rows: Option<i64>,
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
            c.validated && matches!(&c.kind, ConstraintKind::Check { not_null_of: Some(col), .. } if col == column)
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
    tables: BTreeMap<Key, Table>,
    indexes: BTreeMap<Key, Index>,
    enums: BTreeMap<Key, Vec<String>>,
    domains: BTreeMap<Key, bool>,
    /// Whether the catalog came from a live database (then an unknown table is really unknown).
    pub live: bool,
}

impl Catalog {
    pub fn table(&self, name: &QualifiedName) -> Option<&Table> {
        self.tables.get(&name.key())
    }

    pub fn index(&self, name: &QualifiedName) -> Option<&Index> {
        self.indexes.get(&name.key())
    }

    pub fn indexes_of<'a>(
        &'a self,
        table: &'a QualifiedName,
    ) -> impl Iterator<Item = &'a Index> + 'a {
        let key = table.key();
        self.indexes.values().filter(move |i| i.table.key() == key)
    }

    pub fn enum_values(&self, name: &QualifiedName) -> Option<&[String]> {
        self.enums.get(&name.key()).map(Vec::as_slice)
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
        for t in self.tables.values_mut() {
            t.origin = Origin::Existing;
        }
        for i in self.indexes.values_mut() {
            i.origin = Origin::Existing;
        }
    }

    pub fn insert_table(&mut self, table: Table) {
        self.tables.insert(table.name.key(), table);
    }

    pub fn insert_index(&mut self, index: Index) {
        self.indexes.insert(index.name.key(), index);
    }

    pub fn insert_enum(&mut self, name: QualifiedName, values: Vec<String>) {
        self.enums.insert(name.key(), values);
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
            O::CreateTable {
                table,
                columns,
                constraints,
                ..
            } => {
                let mut t = Table {
                    name: table.clone(),
                    columns: columns.iter().map(column_of).collect(),
                    constraints: Vec::new(),
                    origin,
                    rows: None,
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
                self.tables.insert(table.key(), t);
            }
            O::CreateTableAs { table, .. } => {
                self.tables.insert(
                    table.key(),
                    Table {
                        name: table.clone(),
                        columns: Vec::new(),
                        constraints: Vec::new(),
                        origin,
                        rows: None,
                    },
                );
            }
            O::AddColumn { table, column, .. } => {
                if let Some(t) = self.tables.get_mut(&table.key()) {
                    t.columns.retain(|c| c.name != column.name);
                    t.columns.push(column_of(column));
                    for k in &column.constraints {
                        add_constraint(t, k);
                    }
                }
            }
            O::DropColumn { table, column, .. } => {
                if let Some(t) = self.tables.get_mut(&table.key()) {
                    t.columns.retain(|c| &c.name != column);
                }
                self.indexes
                    .retain(|_, i| !(i.table == *table && i.columns.contains(column)));
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
                if let Some(t) = self.tables.get_mut(&table.key()) {
                    add_constraint(t, constraint);
                }
            }
            O::ValidateConstraint { table, name } => {
                if let Some(t) = self.tables.get_mut(&table.key()) {
                    for c in t.constraints.iter_mut().filter(|c| &c.name == name) {
                        c.validated = true;
                    }
                }
            }
            O::DropConstraint { table, name, .. } => {
                if let Some(t) = self.tables.get_mut(&table.key()) {
                    t.constraints.retain(|c| &c.name != name);
                }
            }
            O::RenameColumn { table, from, to } => {
                if let Some(c) = self.column_mut(table, from) {
                    c.name = to.clone();
                }
                for i in self.indexes.values_mut().filter(|i| i.table == *table) {
                    for c in i.columns.iter_mut().filter(|c| *c == from) {
                        c.clone_from(to);
                    }
                }
            }
            O::RenameTable { table, to, .. } => {
                if let Some(mut t) = self.tables.remove(&table.key()) {
                    t.name = QualifiedName::new(table.schema.as_deref(), to);
                    let new_name = t.name.clone();
                    self.tables.insert(new_name.key(), t);
                    for i in self.indexes.values_mut().filter(|i| i.table == *table) {
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
                self.indexes.insert(
                    name.key(),
                    Index {
                        name,
                        table: ix.table.clone(),
                        columns: if ix.partial {
                            Vec::new()
                        } else {
                            ix.columns.clone()
                        },
                        unique: ix.unique,
                        origin,
                    },
                );
            }
            O::DropIndex { names, .. } => {
                for n in names {
                    self.indexes.remove(&n.key());
                }
            }
            O::Drop { kind, names, .. } => {
                use super::ObjectKind as K;
                for n in names {
                    match kind {
                        K::Table | K::View | K::MaterializedView => {
                            self.tables.remove(&n.key());
                            self.indexes.retain(|_, i| i.table.key() != n.key());
                        }
                        K::Type => {
                            self.enums.remove(&n.key());
                        }
                        K::Domain => {
                            self.domains.remove(&n.key());
                        }
                        K::Schema => {
                            let schema = n.name.clone();
                            self.tables.retain(|k, _| k.0 != schema);
                            self.indexes.retain(|k, _| k.0 != schema);
                        }
                        _ => {}
                    }
                }
            }
            O::CreateEnum { ty, values } => {
                self.enums.insert(ty.key(), values.clone());
            }
            O::AddEnumValue { ty, value } => {
                self.enums.entry(ty.key()).or_default().push(value.clone());
            }
            O::RenameEnumValue { ty, from, to } => {
                if let Some(v) = self.enums.get_mut(&ty.key()) {
                    for x in v.iter_mut().filter(|x| *x == from) {
                        x.clone_from(to);
                    }
                }
            }
            O::CreateDomain { ty, has_check } => {
                self.domains.insert(ty.key(), *has_check);
            }
            _ => {}
        }
    }

    fn column_mut(&mut self, table: &QualifiedName, column: &str) -> Option<&mut Column> {
        self.tables
            .get_mut(&table.key())?
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
