//! Intent → phased plan: each statement becomes expand, backfill and contract steps, each with
//! its SQL and the lock it takes. The plan is a typed value; the engine executes it later.

pub mod rewrites;

use crate::files::TransactionMode;
use crate::model::locks::TableLock;
use crate::model::QualifiedName;
pub use crate::vocab::Phase;
use serde::Serialize;

/// What the planner sees of one statement: its operations, the schema before it, and the
/// settings that change a plan. Built by the pipeline beside the linter's own context; the
/// planner needs nothing of the linter.
#[derive(Debug, Clone, Copy)]
pub struct PlanCtx<'a> {
    /// The statement's index in its file, and its first line.
    pub index: usize,
    pub line: usize,
    pub ops: &'a [crate::model::Operation],
    /// The schema before this statement.
    pub catalog: &'a crate::model::catalog::Catalog,
    /// The `-- migrate:<phase>` section the statement stands in, if the file has markers.
    pub section: Option<Phase>,
    pub pg: crate::vocab::PgVersion,
    /// Whether the apps read through version schemas (`views` in migrate.toml).
    pub views: bool,
    /// Tables that migrations still in flight change in their backfill or contract steps,
    /// which name them as they are: a rename of one waits for contract.
    pub pending_tables: &'a [QualifiedName],
}

impl PlanCtx<'_> {
    pub fn pg(&self) -> crate::vocab::PgVersion {
        self.pg
    }

    /// Whether the table may hold rows and traffic: not created in this migration.
    pub fn is_live_table(&self, table: &QualifiedName) -> bool {
        !self.catalog.is_new_table(table)
    }
}

/// What a [`StepKind::ForeignKey`] step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FkAction {
    AddNotValid,
    Validate,
    Drop,
}

/// What a [`StepKind::Keys`] step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAction {
    /// Builds the key's unique index concurrently, outside a transaction.
    Build,
    /// Runs `before`, then makes each key's index its constraint, then adds `after`, in one
    /// transaction.
    Attach {
        before: String,
        /// Foreign keys that reference a key of a partitioned table, added NOT VALID once it
        /// exists (see [`LateForeignKey`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        after: Vec<LateForeignKey>,
    },
    /// Drops the key's index concurrently (abort, before the constraint exists).
    Drop,
}

/// A foreign key that references a key of a partitioned table made again at a swap: no copy
/// of it can reference the new column before the swap (the leaves' unique indexes are no key
/// of the parent until the parent's constraint is added over them), so the swap drops it and,
/// once the key exists, adds it NOT VALID (on each partition of a partitioned referencing
/// table before PostgreSQL 18); a step after the swap validates it. Every row was checked by
/// the original until the swap, and new writes are checked from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LateForeignKey {
    pub table: QualifiedName,
    pub name: String,
    /// `FOREIGN KEY (…) REFERENCES …`.
    pub definition: String,
}

impl LateForeignKey {
    pub fn add_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID",
            self.table,
            crate::model::quote_ident(&self.name),
            self.definition
        )
    }
}

/// A PRIMARY KEY or UNIQUE constraint made from a unique index built concurrently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Key {
    pub table: QualifiedName,
    /// The constraint's name; its index takes it once attached.
    pub name: String,
    /// The index built for it, in the table's schema.
    pub index: String,
    pub columns: Vec<String>,
    pub primary: bool,
}

impl Key {
    /// `PRIMARY KEY` or `UNIQUE`.
    pub fn kind(&self) -> &'static str {
        if self.primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        }
    }

    /// The statement that makes the built index the constraint, on a table not partitioned.
    pub fn attach_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}",
            self.table,
            crate::model::quote_ident(&self.name),
            self.kind(),
            crate::model::quote_ident(&self.index)
        )
    }
}

/// What a step does, in a form the engine can act on without parsing SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// Transactional DDL, run with a short lock_timeout and retried.
    Ddl,
    /// A `CONCURRENTLY` statement: alone, outside any transaction; an INVALID index of this
    /// name left by a failed build is dropped and rebuilt.
    Concurrent {
        index: Option<QualifiedName>,
        /// What to run instead when the table is partitioned as the step runs: PostgreSQL has
        /// no concurrent build or drop of a partitioned index. For a build, the index `ON ONLY`
        /// the parent, after which the engine builds each partition's index concurrently and
        /// attaches it; for a drop, the plain `DROP INDEX`, under a short lock_timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitioned: Option<String>,
    },
    /// A foreign key added NOT VALID, validated, or dropped: transactional DDL, except on a
    /// table partitioned when the step runs on a server before 18, which refuses a NOT VALID
    /// foreign key on a partitioned table. There the engine adds it NOT VALID to each
    /// partition, validates each, and only then adds it to the parent, which attaches the
    /// partitions' constraints without a scan.
    ForeignKey {
        table: QualifiedName,
        name: String,
        /// `FOREIGN KEY (…) REFERENCES …`, as written.
        definition: String,
        action: FkAction,
    },
    /// PRIMARY KEY or UNIQUE constraints through concurrently built indexes. On a plain table
    /// the build and the drop are the step's SQL (`CREATE UNIQUE INDEX CONCURRENTLY`, `DROP
    /// INDEX CONCURRENTLY`); the attach is one transaction of `before`, `ADD CONSTRAINT …
    /// USING INDEX` and the `after` foreign keys. A table partitioned as the step runs has
    /// neither form, so the engine builds (or drops) each leaf partition's index concurrently;
    /// to attach, it builds any leaf's still missing (a partition attached since), then in one
    /// transaction runs `before`, makes each leaf's index the leaf's constraint, adds the
    /// parent's over the same columns, which takes the leaves' constraints as its own without
    /// building an index, and adds the `after` foreign keys.
    Keys { keys: Vec<Key>, action: KeyAction },
    /// A batched `UPDATE table SET … WHERE …`, one short transaction per key range.
    Backfill {
        table: QualifiedName,
        set: Vec<(String, String)>,
        filter: Option<String>,
        /// A condition true of a row the backfill has not got right, checked over the whole
        /// range at the end; None when no such check is sound (volatile values).
        #[serde(default)]
        verify: Option<String>,
    },
    /// Run as written, once (DML the engine cannot batch, opaque statements).
    AsWritten,
}

impl StepKind {
    /// Whether the step runs outside a transaction (a `CONCURRENTLY` statement).
    pub fn concurrent(&self) -> bool {
        match self {
            StepKind::Concurrent { .. } => true,
            StepKind::Keys { action, .. } => !matches!(action, KeyAction::Attach { .. }),
            _ => false,
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Step {
    pub phase: Phase,
    /// What the step is for, in a few words.
    pub action: String,
    pub sql: String,
    pub kind: StepKind,
    pub locks: Vec<TableLock>,
}

/// The safe form of one statement's intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rewrite {
    /// Index of the statement in its file.
    pub statement: usize,
    pub line: usize,
    /// The intent, in words (`rename column users.name to full_name`).
    pub intent: String,
    pub steps: Vec<Step>,
    /// Steps that undo the expand phase, for `migrate abort`.
    pub abort: Vec<Step>,
    /// Things a person should know: assumptions made, facts the tool could not find.
    pub notes: Vec<String>,
    /// Why the intent cannot be made safe automatically, when it cannot.
    pub rejected: Option<String>,
    /// Whether the steps differ from running the statement as written.
    pub rewritten: bool,
    /// How the new version's views show what this rewrite changes (with `views` on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view: Vec<ViewChange>,
    /// The tables whose shape (their columns, the columns' names or types) the expand steps
    /// change: a running version that reads such a table itself gets its view of it first.
    #[serde(default, skip_serializing_if = "Reshape::is_nothing")]
    pub reshapes: Reshape,
    /// The columns the statement changes or builds on (`*`: the whole table), so that the
    /// engine can refuse it while an earlier migration is still renaming, swapping or dropping
    /// one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<(QualifiedName, String)>,
    /// An index built earlier in the same migration that this rewrite builds in its own way
    /// instead (a constraint `USING INDEX` on a partitioned table): that index's build is
    /// dropped from the plan.
    #[serde(skip)]
    pub adopts: Option<QualifiedName>,
}

/// Which tables' shape an expand changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reshape {
    #[default]
    Nothing,
    Tables(Vec<QualifiedName>),
    /// An opaque statement (a `DO` block, a function): any table may change.
    Unknown,
}

impl Reshape {
    pub fn is_nothing(&self) -> bool {
        *self == Reshape::Nothing
    }

    /// Both together.
    pub fn union(self, other: &Reshape) -> Reshape {
        match (self, other) {
            (Reshape::Unknown, _) | (_, Reshape::Unknown) => Reshape::Unknown,
            (Reshape::Nothing, o) => o.clone(),
            (Reshape::Tables(mut a), Reshape::Tables(b)) => {
                for t in b {
                    if !a.iter().any(|x| x.same(t)) {
                        a.push(t.clone());
                    }
                }
                Reshape::Tables(a)
            }
            (s, Reshape::Nothing) => s,
        }
    }

    /// Whether the table `schema.name` may change shape.
    pub fn includes(&self, schema: &str, name: &str) -> bool {
        match self {
            Reshape::Nothing => false,
            Reshape::Unknown => true,
            Reshape::Tables(t) => t
                .iter()
                .any(|t| t.name == name && t.schema_name() == schema),
        }
    }
}

/// What one rewrite changes in the new version's view of a table, against the version before
/// it. Names are those of the live tables when the migration was planned. Applied to a table
/// that has moved on since (its contract already ran), a change whose column or table is not
/// found is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ViewChange {
    /// The column shows under a new name; the table's column keeps its name until contract.
    RenameColumn {
        table: QualifiedName,
        from: String,
        to: String,
    },
    /// The table shows under a new name until contract renames it.
    RenameTable { table: QualifiedName, to: String },
    /// The column is not shown (dropped at contract).
    HideColumn {
        table: QualifiedName,
        column: String,
    },
    /// The table is not shown (dropped at contract).
    HideTable { table: QualifiedName },
    /// The column shows the values of `with` (the shadow of a type change) under its name.
    ReplaceColumn {
        table: QualifiedName,
        column: String,
        with: String,
    },
}

impl ViewChange {
    /// The column (`*`: the whole table) whose name or values are in flux until contract.
    pub fn in_flux(&self) -> (&QualifiedName, &str) {
        match self {
            ViewChange::RenameColumn { table, from, .. } => (table, from),
            ViewChange::HideColumn { table, column }
            | ViewChange::ReplaceColumn { table, column, .. } => (table, column),
            ViewChange::RenameTable { table, .. } | ViewChange::HideTable { table } => (table, "*"),
        }
    }

    pub fn table(&self) -> &QualifiedName {
        match self {
            ViewChange::RenameColumn { table, .. }
            | ViewChange::RenameTable { table, .. }
            | ViewChange::HideColumn { table, .. }
            | ViewChange::HideTable { table }
            | ViewChange::ReplaceColumn { table, .. } => table,
        }
    }

    /// In words, for `migrate plan`.
    pub fn describe(&self) -> String {
        use crate::model::quote_ident as q;
        match self {
            ViewChange::RenameColumn { table, from, to } => format!(
                "{table}: {} for the new version, {} for the old one until contract",
                q(to),
                q(from)
            ),
            ViewChange::RenameTable { table, to } => format!(
                "{table}: {} for the new version, {} for the old one until contract",
                q(to),
                q(&table.name)
            ),
            ViewChange::HideColumn { table, column } => {
                format!("{table}: the new version does not see {}", q(column))
            }
            ViewChange::HideTable { table } => format!("the new version does not see {table}"),
            ViewChange::ReplaceColumn {
                table,
                column,
                with,
            } => format!(
                "{table}: the new version sees {} (the new type) as {}",
                q(with),
                q(column)
            ),
        }
    }
}

impl Rewrite {
    pub fn steps_in(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }
}

/// The plan of one migration file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MigrationPlan {
    pub migration: String,
    pub transaction: TransactionMode,
    /// Whether the file splits itself into phases with `-- migrate:<phase>` markers.
    pub explicit_phases: bool,
    pub rewrites: Vec<Rewrite>,
}

impl MigrationPlan {
    pub fn steps_in(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.rewrites.iter().flat_map(move |r| r.steps_in(phase))
    }

    /// The tables whose shape the expand phase changes.
    pub fn reshaped(&self) -> Reshape {
        self.rewrites
            .iter()
            .fold(Reshape::Nothing, |acc, r| acc.union(&r.reshapes))
    }

    /// What the new version's views change, in the order of the file.
    pub fn view_changes(&self) -> impl Iterator<Item = &ViewChange> {
        self.rewrites.iter().flat_map(|r| r.view.iter())
    }

    pub fn rejected(&self) -> impl Iterator<Item = &Rewrite> {
        self.rewrites.iter().filter(|r| r.rejected.is_some())
    }
}
