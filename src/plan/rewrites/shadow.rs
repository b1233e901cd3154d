//! A shadow column kept equal to its original by triggers: the sync triggers, the copies of
//! the original's indexes and constraints, and the abort that removes it all.

use super::*;

/// The abort of a shadow-column rewrite: drop its triggers, then the column it added.
pub(super) fn abort_shadow(
    r: &mut Rewrite,
    table: &QualifiedName,
    drop_triggers: String,
    column: &str,
) {
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the sync triggers",
        drop_triggers,
        table,
    ));
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the new column",
        format!(
            "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
            quote_ident(column)
        ),
        table,
    ));
}

/// How a sync trigger computes one column from the row.
pub(super) enum Conversion {
    /// An expression over `NEW` (`NEW.name`, `NEW.age::bigint`): a plain assignment.
    Direct(String),
    /// An expression over the table's column names (a `USING` clause): evaluated against the
    /// row as `t`, which costs a query per write.
    OverRow(String),
}

impl Conversion {
    fn assign(&self, target: &str) -> String {
        match self {
            Conversion::Direct(e) => format!("NEW.{target} := {e};"),
            Conversion::OverRow(e) => {
                format!("SELECT {e} INTO NEW.{target} FROM (SELECT NEW.*) AS t;")
            }
        }
    }
}

/// Triggers that keep `a` and `b` equal whichever version writes, without recursion: a BEFORE
/// trigger changes NEW in place.
pub(super) fn sync_trigger(
    table: &QualifiedName,
    a: &str,
    b: &str,
    to_b: Conversion,
    to_a: Conversion,
) -> SyncTrigger {
    let func = generated_name("migrate_sync", &[&table.name, a, b]);
    let fq = QualifiedName::new(table.schema.as_deref(), &func);
    let (qa, qb) = (quote_ident(a), quote_ident(b));
    let (set_b, set_a) = (to_b.assign(&qb), to_a.assign(&qa));
    // A row whose two columns already agree needs nothing: the WHEN clause is evaluated without
    // calling the function, which keeps the backfill (it writes both columns equal) and writes
    // that touch neither column almost as fast as without the trigger.
    let when = match &to_b {
        Conversion::Direct(e) => format!(" WHEN (NEW.{qb} IS DISTINCT FROM {e})"),
        Conversion::OverRow(_) => String::new(),
    };
    // A write that changes neither column, to a row the backfill has not reached yet, fills it
    // there and then: the new column's constraints (NOT NULL) hold for every new row version.
    let not_reached = match &to_b {
        Conversion::Direct(_) => "ELSE".to_string(),
        Conversion::OverRow(_) => format!("ELSIF NEW.{qb} IS NULL THEN"),
    };
    let create = format!(
        "CREATE FUNCTION {fq}() RETURNS trigger LANGUAGE plpgsql AS $migrate$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.{qb} IS NULL THEN
      {set_b}
    ELSIF NEW.{qa} IS NULL THEN
      {set_a}
    END IF;
  ELSIF NEW.{qa} IS DISTINCT FROM OLD.{qa} THEN
    {set_b}
  ELSIF NEW.{qb} IS DISTINCT FROM OLD.{qb} THEN
    {set_a}
  {not_reached}
    {set_b}
  END IF;
  RETURN NEW;
END
$migrate$"
    );
    let drop = format!(
        "DROP TRIGGER IF EXISTS {} ON {table};\nDROP FUNCTION IF EXISTS {fq}()",
        quote_ident(&func)
    );
    let trigger = format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW{when} EXECUTE FUNCTION {fq}()",
        quote_ident(&func)
    );
    SyncTrigger {
        function: create,
        trigger,
        drop,
    }
}

/// The SQL of a sync trigger: its function, the trigger, and what drops both.
pub(super) struct SyncTrigger {
    pub function: String,
    pub trigger: String,
    pub drop: String,
}

impl SyncTrigger {
    /// `add` (the shadow column's ALTER) with the trigger, in one transaction: the function is
    /// created first, before the ALTER takes its ACCESS EXCLUSIVE lock, which is then held only
    /// for the ALTER and the trigger.
    pub fn around(&self, add: &str) -> String {
        format!("{};\n{add};\n{}", self.function, self.trigger)
    }
}

/// What [`copy_indexes`] leaves for contract, once dropping `from` has dropped the originals:
/// the renames that give plain copies their originals' names, and the keys (PRIMARY KEY and
/// UNIQUE constraints) to make again from their copied indexes, under their old names.
#[derive(Default)]
pub(super) struct Copies {
    pub renames: Vec<String>,
    pub keys: Vec<Key>,
}

impl Copies {
    /// The contract step that runs `swap` (which drops `from`), gives the copies their
    /// originals' names, makes the keys again and adds the foreign keys `after` that
    /// reference them, in one transaction.
    pub fn swap_step(
        self,
        action: &str,
        mut swap: Vec<String>,
        table: &QualifiedName,
        after: Vec<LateForeignKey>,
    ) -> Step {
        swap.extend(self.renames);
        if self.keys.is_empty() && after.is_empty() {
            exclusive(Phase::Contract, action, swap.join(";\n"), table)
        } else {
            attach_keys(action, table, swap, self.keys, after)
        }
    }
}

/// Copies of the indexes on `from`, built concurrently on `to`; an index of a PRIMARY KEY or
/// UNIQUE constraint is copied as that key's index, so the key itself is made again at the
/// swap (a bare unique index in its place would lose the primary key).
pub(super) fn copy_indexes(
    ctx: &PlanCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    from: &str,
    to: &str,
) -> Copies {
    let mut copies = Copies::default();
    let indexes: Vec<_> = ctx
        .catalog
        .indexes_of(table)
        .filter(|i| i.columns.iter().any(|c| c == from))
        .cloned()
        .collect();
    let constraints = ctx
        .catalog
        .table(table)
        .map(|t| t.constraints.as_slice())
        .unwrap_or_default();
    for ix in indexes {
        let columns: Vec<String> = ix
            .columns
            .iter()
            .map(|c| if c == from { to } else { c }.to_string())
            .collect();
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let name = generated_name(&ix.name.name, &[to]);
        let qn = QualifiedName::new(table.schema.as_deref(), &name);
        let key = constraints.iter().find_map(|c| match &c.kind {
            ConstraintKind::PrimaryKey { using_index, .. }
            | ConstraintKind::Unique { using_index, .. }
                if c.name == ix.name.name || using_index.as_deref() == Some(&ix.name.name) =>
            {
                Some(Key {
                    table: table.clone(),
                    name: c.name.clone(),
                    index: name.clone(),
                    columns: columns.clone(),
                    primary: matches!(c.kind, ConstraintKind::PrimaryKey { .. }),
                })
            }
            _ => None,
        });
        if let Some(key) = key {
            copy_key(r, &mut copies, key, to);
            continue;
        }
        let sql = format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {table} ({})",
            if ix.unique { "UNIQUE " } else { "" },
            quote_ident(&name),
            cols.join(", ")
        );
        r.steps.push(step(
            Phase::Expand,
            format!(
                "copy index {} onto {}",
                quote_ident(&ix.name.name),
                quote_ident(to)
            ),
            sql.clone(),
            StepKind::Concurrent {
                index: Some(qn.clone()),
                partitioned: Some(on_only(&sql)),
            },
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        r.abort.push(step(
            Phase::Expand,
            "drop the copied index",
            format!("DROP INDEX CONCURRENTLY IF EXISTS {qn}"),
            StepKind::Concurrent {
                index: None,
                partitioned: Some(format!("DROP INDEX IF EXISTS {qn}")),
            },
            Vec::new(),
        ));
        copies.renames.push(format!(
            "ALTER INDEX {qn} RENAME TO {}",
            quote_ident(&ix.name.name)
        ));
    }
    // Keys the migrations read declare without naming an index (inline, or ADD CONSTRAINT):
    // their index is the constraint's namesake.
    for c in constraints {
        let (columns, primary, using) = match &c.kind {
            ConstraintKind::PrimaryKey {
                columns,
                using_index,
            } => (columns, true, using_index),
            ConstraintKind::Unique {
                columns,
                using_index,
            } => (columns, false, using_index),
            _ => continue,
        };
        let index = using.as_deref().unwrap_or(&c.name);
        let known = ctx
            .catalog
            .indexes_of(table)
            .any(|i| i.name.name == index || i.name.name == c.name);
        if known || !columns.iter().any(|k| k == from) {
            continue;
        }
        let key = Key {
            table: table.clone(),
            name: c.name.clone(),
            index: generated_name(index, &[to]),
            columns: columns
                .iter()
                .map(|k| if k == from { to } else { k }.to_string())
                .collect(),
            primary,
        };
        copy_key(r, &mut copies, key, to);
    }
    if ctx.catalog.is_partitioned(table) && !copies.keys.is_empty() {
        r.notes.push(partitioned_key_note(table));
    }
    if !ctx.catalog.live && ctx.catalog.table(table).is_none() {
        r.notes.push(format!(
            "{table} is not in the migrations read: its indexes and constraints on {} are copied from the live catalog when expand runs",
            quote_ident(from)
        ));
    }
    copies
}

/// A key's index built again over the new column, its constraint made again at the swap.
fn copy_key(r: &mut Rewrite, copies: &mut Copies, key: Key, to: &str) {
    let mut build = build_key(&key);
    build.action = format!(
        "copy the index of {} {} onto {}",
        key.kind(),
        quote_ident(&key.name),
        quote_ident(to)
    );
    r.steps.push(build);
    r.abort.push(drop_key(&key, "drop the copied index"));
    copies.keys.push(key);
}

/// Copies of the CHECK and FOREIGN KEY constraints on `from`, added NOT VALID on `to` in
/// expand and validated in contract. Needs their definitions from a live catalog. Returns the
/// contract's validations and the renames that give the copies their originals' names once
/// dropping `from` has dropped the originals.
pub(super) fn copy_constraints(
    ctx: &PlanCtx,
    r: &mut Rewrite,
    table: &QualifiedName,
    from: &str,
    to: &str,
) -> (Vec<Step>, Vec<String>) {
    let (mut validate, mut renames) = (Vec::new(), Vec::new());
    let Some(t) = ctx.catalog.table(table) else {
        return (validate, renames);
    };
    for c in &t.constraints {
        let Some(def) = &c.definition else { continue };
        let def = def.strip_suffix(" NOT VALID").unwrap_or(def);
        let copied = match &c.kind {
            // A NOT NULL check is copied by the rename itself.
            ConstraintKind::Check {
                not_null_of: Some(_),
                ..
            } => continue,
            ConstraintKind::Check { .. } => crate::sql::rename_identifier(def, from, to),
            // Only the referencing side is this table's: the referenced columns keep their names.
            ConstraintKind::ForeignKey { columns, .. } if columns.iter().any(|c| c == from) => {
                let split = def.find(" REFERENCES ").unwrap_or(def.len());
                crate::sql::rename_identifier(&def[..split], from, to)
                    .map(|left| format!("{left}{}", &def[split..]))
            }
            _ => continue,
        };
        let Some(copied) = copied else { continue };
        let name = generated_name(&c.name, &[to]);
        let q = quote_ident(&name);
        let mut locks = brief(table, LockLevel::AccessExclusive);
        if let ConstraintKind::ForeignKey { references, .. } = &c.kind {
            locks = foreign_key_locks(table, references);
        }
        r.steps.push(step(
            Phase::Expand,
            format!(
                "copy constraint {} onto {} (NOT VALID: new writes only)",
                quote_ident(&c.name),
                quote_ident(to)
            ),
            format!("ALTER TABLE {table} ADD CONSTRAINT {q} {copied} NOT VALID"),
            StepKind::Ddl,
            locks,
        ));
        r.abort.push(exclusive(
            Phase::Expand,
            "drop the copied constraint",
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {q}"),
            table,
        ));
        validate.push(step(
            Phase::Contract,
            format!("validate the copy of {}", quote_ident(&c.name)),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {q}"),
            StepKind::Ddl,
            scan(table, LockLevel::ShareUpdateExclusive),
        ));
        renames.push(format!(
            "ALTER TABLE {table} RENAME CONSTRAINT {q} TO {}",
            quote_ident(&c.name)
        ));
    }
    (validate, renames)
}

/// NOT NULL carried onto a shadow column: a NOT VALID check for new writes in expand (dropped
/// again by abort) and its validation, returned for the caller's contract, before the swap.
/// Returns the check's quoted name too, for the swap's `SET NOT NULL` and `DROP CONSTRAINT`.
pub(super) fn shadow_not_null(
    r: &mut Rewrite,
    table: &QualifiedName,
    shadow: &str,
) -> (String, Step) {
    let ck = quote_ident(&generated_name(&table.name, &[shadow, "not_null_check"]));
    let qs = quote_ident(shadow);
    r.steps.push(exclusive(
        Phase::Expand,
        "NOT NULL on the new column, for new writes",
        format!("ALTER TABLE {table} ADD CONSTRAINT {ck} CHECK ({qs} IS NOT NULL) NOT VALID"),
        table,
    ));
    r.abort.push(exclusive(
        Phase::Expand,
        "drop the new column's NOT NULL check",
        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {ck}"),
        table,
    ));
    let validate = step(
        Phase::Contract,
        "validate NOT NULL on the new column",
        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {ck}"),
        StepKind::Ddl,
        scan(table, LockLevel::ShareUpdateExclusive),
    );
    (ck, validate)
}
