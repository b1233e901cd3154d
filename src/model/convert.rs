//! Parse tree → operations.

use super::locks::LockLevel;
use super::types::{canonical, is_known_non_volatile};
use super::*;
use crate::sql::reader::walk;
use pg_query::protobuf::{
    self, AlterTableType, ConstrType, DropBehavior, ObjectType, ReindexObjectType,
    TransactionStmtKind,
};
use pg_query::{Node, NodeEnum};

/// The operations a statement means, each with the SQL that performs it alone (the statement's
/// own text, or for one action of a multi-action `ALTER TABLE` that action deparsed).
pub fn operations(tree: &NodeEnum, text: &str) -> Vec<(Operation, String)> {
    if let NodeEnum::AlterTableStmt(s) = tree {
        return alter_table(s, text.trim());
    }
    operations_of(tree, text)
        .into_iter()
        .map(|op| (op, text.trim().to_string()))
        .collect()
}

fn operations_of(tree: &NodeEnum, text: &str) -> Vec<Operation> {
    use NodeEnum as N;
    match tree {
        N::CreateStmt(s) => vec![create_table(s)],
        N::CreateTableAsStmt(s) => {
            let table = relation(s.into.as_ref().and_then(|i| i.rel.as_ref()));
            vec![Operation::CreateTableAs {
                table,
                materialized_view: s.objtype() == ObjectType::ObjectMatview,
            }]
        }
        N::SelectStmt(s) => match s.into_clause.as_ref().and_then(|i| i.rel.as_ref()) {
            Some(rel) => vec![Operation::CreateTableAs {
                table: range_var(rel),
                materialized_view: false,
            }],
            None => vec![other("SELECT")],
        },
        N::IndexStmt(s) => vec![create_index(s, text)],
        N::DropStmt(s) => vec![drop(s)],
        N::DropdbStmt(s) => vec![Operation::Drop {
            kind: ObjectKind::Database,
            names: vec![QualifiedName::new(None, &s.dbname)],
            cascade: false,
            if_exists: s.missing_ok,
        }],
        N::RenameStmt(s) => vec![rename(s)],
        N::AlterEnumStmt(s) => {
            let ty = names(&s.type_name);
            if s.old_val.is_empty() {
                vec![Operation::AddEnumValue {
                    ty,
                    value: s.new_val.clone(),
                }]
            } else {
                vec![Operation::RenameEnumValue {
                    ty,
                    from: s.old_val.clone(),
                    to: s.new_val.clone(),
                }]
            }
        }
        N::CreateEnumStmt(s) => vec![Operation::CreateEnum {
            ty: names(&s.type_name),
            values: strings(&s.vals),
        }],
        N::CreateDomainStmt(s) => vec![Operation::CreateDomain {
            ty: names(&s.domainname),
            has_check: s.constraints.iter().any(|c| {
                matches!(&c.node, Some(N::Constraint(k)) if k.contype() == ConstrType::ConstrCheck)
            }),
        }],
        N::AlterDomainStmt(s) if s.subtype == "C" => {
            let not_valid = matches!(s.def.as_deref().and_then(|d| d.node.as_ref()), Some(N::Constraint(c)) if c.skip_validation);
            vec![Operation::AlterDomainAddConstraint {
                ty: names(&s.type_name),
                not_valid,
            }]
        }
        N::TransactionStmt(s) => {
            use TransactionStmtKind as K;
            let kind = match s.kind() {
                K::TransStmtBegin | K::TransStmtStart => TxControl::Begin,
                K::TransStmtCommit | K::TransStmtCommitPrepared => TxControl::Commit,
                K::TransStmtRollback | K::TransStmtRollbackPrepared => TxControl::Rollback,
                K::TransStmtSavepoint => TxControl::Savepoint,
                K::TransStmtRelease => TxControl::Release,
                K::TransStmtRollbackTo => TxControl::RollbackTo,
                K::TransStmtPrepare | K::Undefined => TxControl::Prepare,
            };
            vec![Operation::Transaction(kind)]
        }
        N::VacuumStmt(s) if s.is_vacuumcmd => {
            let full = s.options.iter().any(
                |o| matches!(&o.node, Some(N::DefElem(d)) if d.defname == "full" && def_is_true(d)),
            );
            let tables = s
                .rels
                .iter()
                .filter_map(|r| match &r.node {
                    Some(N::VacuumRelation(v)) => v.relation.as_ref().map(range_var),
                    _ => None,
                })
                .collect();
            vec![Operation::Vacuum { tables, full }]
        }
        N::VacuumStmt(_) => vec![other("ANALYZE")],
        N::ClusterStmt(s) => vec![Operation::Cluster {
            table: s.relation.as_ref().map(range_var),
        }],
        N::LockStmt(s) => vec![Operation::LockTable {
            tables: range_vars(&s.relations),
            mode: LockLevel::from_pg(s.mode),
        }],
        N::TruncateStmt(s) => vec![Operation::Truncate {
            tables: range_vars(&s.relations),
            cascade: s.behavior() == DropBehavior::DropCascade,
        }],
        N::ReindexStmt(s) => {
            let concurrently = s
                .params
                .iter()
                .any(|o| matches!(&o.node, Some(N::DefElem(d)) if d.defname == "concurrently" && def_is_true(d)));
            let target = match &s.relation {
                Some(r) => range_var(r).sql(),
                None => s.name.clone(),
            };
            vec![Operation::Reindex {
                target,
                relation: s.relation.as_ref().map(range_var),
                table_level: s.kind() != ReindexObjectType::ReindexObjectIndex,
                concurrently,
            }]
        }
        N::UpdateStmt(s) => {
            let table = relation(s.relation.as_ref());
            let targets: Vec<&protobuf::ResTarget> = s
                .target_list
                .iter()
                .filter_map(|t| match &t.node {
                    Some(N::ResTarget(r)) => Some(&**r),
                    _ => None,
                })
                .collect();
            let sets: Vec<(String, String)> = targets
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.val.as_deref().map(expr_sql).unwrap_or_default(),
                    )
                })
                .collect();
            let repeatable = targets.iter().all(|r| {
                r.val.as_deref().is_some_and(|v| {
                    expr(v).volatility != Volatility::Volatile
                        && !column_refs(v)
                            .iter()
                            .any(|c| sets.iter().any(|(t, _)| t == c))
                })
            });
            let plain: Vec<&str> = targets
                .iter()
                .filter(|r| r.indirection.is_empty())
                .map(|r| r.name.as_str())
                .collect();
            let assigned_twice = plain
                .iter()
                .enumerate()
                .find(|(i, n)| plain[..*i].contains(n))
                .map(|(_, n)| n.to_string());
            vec![Operation::Update {
                table,
                sets,
                repeatable,
                indirect: targets.iter().any(|r| !r.indirection.is_empty()),
                assigned_twice,
                filter: s.where_clause.as_deref().map(expr_sql),
                has_from: !s.from_clause.is_empty() || s.with_clause.is_some(),
            }]
        }
        N::DeleteStmt(s) => vec![Operation::Delete {
            table: relation(s.relation.as_ref()),
            has_where: s.where_clause.is_some(),
        }],
        N::InsertStmt(s) => {
            let from_select = matches!(
                s.select_stmt.as_deref().and_then(|n| n.node.as_ref()),
                Some(N::SelectStmt(sel)) if sel.values_lists.is_empty()
            );
            let columns = s
                .cols
                .iter()
                .filter_map(|c| match &c.node {
                    Some(N::ResTarget(r)) if r.indirection.is_empty() => Some(r.name.clone()),
                    _ => None,
                })
                .collect();
            vec![Operation::Insert {
                columns,
                table: relation(s.relation.as_ref()),
                from_select,
            }]
        }
        N::VariableSetStmt(s) => vec![Operation::SetVariable {
            name: s.name.clone(),
            local: s.is_local,
            nonzero: set_to_nonzero(s),
        }],
        N::CreateTrigStmt(s) => match &s.relation {
            Some(r) => vec![Operation::CreateTrigger {
                table: range_var(r),
                replace: s.replace,
            }],
            None => vec![other("CREATE TRIGGER")],
        },
        N::ViewStmt(s) => vec![Operation::CreateView {
            view: relation(s.view.as_ref()),
        }],
        N::RefreshMatViewStmt(s) => vec![Operation::RefreshMaterializedView {
            view: relation(s.relation.as_ref()),
            concurrently: s.concurrent,
        }],
        N::DoStmt(_) => vec![Operation::Opaque {
            what: "DO block".into(),
        }],
        N::CreateFunctionStmt(s) => vec![Operation::Opaque {
            what: if s.is_procedure {
                "CREATE PROCEDURE"
            } else {
                "CREATE FUNCTION"
            }
            .into(),
        }],
        N::CallStmt(_) => vec![Operation::Opaque {
            what: "CALL".into(),
        }],
        N::ExecuteStmt(_) => vec![Operation::Opaque {
            what: "EXECUTE".into(),
        }],
        N::CreateSchemaStmt(_) => vec![other("CREATE SCHEMA")],
        N::CreateSeqStmt(_) => vec![other("CREATE SEQUENCE")],
        N::AlterSeqStmt(_) => vec![other("ALTER SEQUENCE")],
        N::CreateExtensionStmt(_) => vec![other("CREATE EXTENSION")],
        N::CommentStmt(_) => vec![other("COMMENT")],
        N::GrantStmt(_) => vec![other("GRANT")],
        N::CopyStmt(_) => vec![other("COPY")],
        N::MergeStmt(s) => vec![Operation::Merge {
            table: relation(s.relation.as_ref()),
        }],
        _ => vec![other(&statement_tag(tree))],
    }
}

fn other(what: &str) -> Operation {
    Operation::Other { what: what.into() }
}

/// A readable name for a statement kind, from its node name (`CreatePolicyStmt` → `CREATE POLICY`).
fn statement_tag(tree: &NodeEnum) -> String {
    let dbg = format!("{tree:?}");
    let name = dbg
        .split('(')
        .next()
        .unwrap_or("statement")
        .trim_end_matches("Stmt");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn def_is_true(d: &protobuf::DefElem) -> bool {
    match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
        None => true,
        Some(NodeEnum::Boolean(b)) => b.boolval,
        Some(NodeEnum::Integer(i)) => i.ival != 0,
        Some(NodeEnum::String(s)) => {
            !matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0")
        }
        _ => true,
    }
}

pub(crate) fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn names(nodes: &[Node]) -> QualifiedName {
    let parts = strings(nodes);
    match parts.as_slice() {
        [] => QualifiedName::new(None, "?"),
        [name] => QualifiedName::new(None, name),
        [.., schema, name] => QualifiedName::new(Some(schema), name),
    }
}

pub(crate) fn range_var(rv: &protobuf::RangeVar) -> QualifiedName {
    QualifiedName::new(Some(&rv.schemaname), &rv.relname)
}

/// The table a statement names, or `?` when the tree has none.
fn relation(r: Option<&protobuf::RangeVar>) -> QualifiedName {
    r.map(range_var)
        .unwrap_or_else(|| QualifiedName::new(None, "?"))
}

fn range_vars(nodes: &[Node]) -> Vec<QualifiedName> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::RangeVar(r)) => Some(range_var(r)),
            _ => None,
        })
        .collect()
}

/// Deparses an expression by wrapping it in `SELECT expr`. The common small expressions of
/// defaults and checks are written directly, as the deparser writes them: each deparser call
/// encodes and decodes the tree once more.
pub fn expr_sql(node: &Node) -> String {
    if let Some(sql) = simple_sql(node) {
        return sql;
    }
    deparse_expr(node)
}

/// Whether a `SET` leaves its setting at a value other than zero: `RESET`, `SET … TO DEFAULT`
/// and a zero (`0`, `'0'`, `'0ms'`) do not (PostgreSQL's default of the timeouts is 0, off); a
/// value that cannot be read counts as set.
fn set_to_nonzero(s: &protobuf::VariableSetStmt) -> bool {
    use protobuf::a_const::Val;
    use protobuf::VariableSetKind as K;
    match K::try_from(s.kind) {
        Ok(K::VarSetDefault | K::VarReset | K::VarResetAll) => false,
        Ok(K::VarSetValue) => match s.args.as_slice() {
            [Node {
                node: Some(NodeEnum::AConst(c)),
            }] => match &c.val {
                Some(Val::Ival(i)) => i.ival != 0,
                Some(Val::Fval(f)) => f.fval.parse::<f64>() != Ok(0.0),
                Some(Val::Sval(v)) => {
                    let text = v.sval.trim();
                    let digits = text
                        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                        .unwrap_or(text.len());
                    text[..digits].parse::<f64>() != Ok(0.0)
                }
                _ => true,
            },
            _ => true,
        },
        _ => true,
    }
}

/// A constant, a bare column, a call without arguments or a cast of a constant to a one-word
/// type, written as the deparser would; None for anything else.
fn simple_sql(node: &Node) -> Option<String> {
    use protobuf::a_const::Val;
    let plain = |name: &str| (crate::model::quote_ident(name) == name).then(|| name.to_string());
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => {
            if c.isnull {
                return Some("NULL".into());
            }
            match c.val.as_ref()? {
                Val::Ival(i) => Some(i.ival.to_string()),
                Val::Boolval(b) => Some(if b.boolval { "true" } else { "false" }.into()),
                // Backslashes and control characters take the deparser's E'…' form.
                Val::Sval(v) if !v.sval.chars().any(|c| c == '\\' || c.is_control()) => {
                    Some(format!("'{}'", v.sval.replace('\'', "''")))
                }
                _ => None,
            }
        }
        NodeEnum::ColumnRef(r) => match r.fields.as_slice() {
            [Node {
                node: Some(NodeEnum::String(name)),
            }] => plain(&name.sval),
            _ => None,
        },
        NodeEnum::FuncCall(f)
            if f.args.is_empty()
                && f.agg_order.is_empty()
                && f.agg_filter.is_none()
                && f.over.is_none()
                && !f.agg_star
                && !f.agg_distinct
                && !f.func_variadic =>
        {
            match f.funcname.as_slice() {
                [Node {
                    node: Some(NodeEnum::String(name)),
                }] => plain(&name.sval).map(|n| format!("{n}()")),
                _ => None,
            }
        }
        NodeEnum::TypeCast(t) => {
            let arg = t.arg.as_deref()?;
            // A negative number is parenthesized by the deparser; leave casts of those to it.
            let inner = match arg.node.as_ref()? {
                NodeEnum::AConst(c) if !c.isnull && matches!(c.val, Some(Val::Sval(_))) => {
                    simple_sql(arg)?
                }
                _ => return None,
            };
            let ty = t.type_name.as_ref()?;
            if !ty.typmods.is_empty() || !ty.array_bounds.is_empty() || ty.setof || ty.pct_type {
                return None;
            }
            match ty.names.as_slice() {
                [Node {
                    node: Some(NodeEnum::String(name)),
                }] => plain(&name.sval).map(|n| format!("{inner}::{n}")),
                _ => None,
            }
        }
        _ => None,
    }
}

fn deparse_expr(node: &Node) -> String {
    let target = protobuf::ResTarget {
        val: Some(Box::new(node.clone())),
        ..Default::default()
    };
    // Enum fields must hold real values: libpg_query asserts on 0 ("undefined").
    let select = protobuf::SelectStmt {
        target_list: vec![Node {
            node: Some(NodeEnum::ResTarget(Box::new(target))),
        }],
        limit_option: protobuf::LimitOption::Default as i32,
        op: protobuf::SetOperation::SetopNone as i32,
        ..Default::default()
    };
    match deparse_stmt(&NodeEnum::SelectStmt(Box::new(select))) {
        Some(s) => s.strip_prefix("SELECT ").unwrap_or(&s).to_string(),
        None => "<expression>".to_string(),
    }
}

/// The last name of every column an expression reads.
fn column_refs(node: &Node) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(n) = &node.node {
        walk(n, &mut |n| {
            if let NodeEnum::ColumnRef(c) = n {
                if let Some(name) = last_string(&c.fields) {
                    names.push(name.to_string());
                }
            }
        });
    }
    names
}

/// The last of a list of names, when it is a name (`*` is not).
fn last_string(names: &[Node]) -> Option<&str> {
    match names.last().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

/// An expression with its volatility, found by walking its tree for function calls.
pub fn expr(node: &Node) -> Expr {
    let sql = expr_sql(node);
    // The simple forms need no walk: a constant or cast constant, a column, a call.
    match node.node.as_ref() {
        Some(NodeEnum::AConst(_) | NodeEnum::TypeCast(_)) if simple_sql(node).is_some() => {
            return Expr {
                sql,
                volatility: Volatility::Constant,
                volatile_fn: None,
            };
        }
        Some(NodeEnum::ColumnRef(_)) if simple_sql(node).is_some() => {
            return Expr {
                sql,
                volatility: Volatility::Stable,
                volatile_fn: None,
            };
        }
        _ => {}
    }
    let mut volatility = Volatility::Constant;
    let mut volatile_fn = None;
    // Depth first, each node's fields by name: the first volatile call named is the one a
    // reader of the tree's JSON meets first.
    let mut look = |n: &NodeEnum| match n {
        NodeEnum::FuncCall(call) => {
            let func = last_string(&call.funcname).unwrap_or("?");
            if is_known_non_volatile(func) {
                volatility = volatility.max_with(Volatility::Stable);
            } else {
                volatility = Volatility::Volatile;
                volatile_fn.get_or_insert_with(|| format!("{func}()"));
            }
        }
        NodeEnum::SqlvalueFunction(_) | NodeEnum::ColumnRef(_) | NodeEnum::ParamRef(_) => {
            volatility = volatility.max_with(Volatility::Stable);
        }
        NodeEnum::SubLink(_) => {
            volatility = Volatility::Volatile;
            volatile_fn.get_or_insert_with(|| "a subquery".to_string());
        }
        _ => {}
    };
    if let Some(n) = &node.node {
        walk(n, &mut look);
    }
    Expr {
        sql,
        volatility,
        volatile_fn,
    }
}

impl Volatility {
    fn max_with(self, other: Volatility) -> Volatility {
        use Volatility::*;
        match (self, other) {
            (Volatile, _) | (_, Volatile) => Volatile,
            (Stable, _) | (_, Stable) => Stable,
            _ => Constant,
        }
    }
}

/// A column type as SQL and in canonical form.
/// Writes a type name as SQL without the deparser, for the common cases; None for the rest
/// (interval fields, `%TYPE`, `SETOF`, non-integer modifiers).
fn format_type(parts: &[String], mods: &[i64], tn: &protobuf::TypeName) -> Option<String> {
    if tn.pct_type || tn.setof || mods.len() != tn.typmods.len() {
        return None;
    }
    let name = match parts {
        [schema, name] if schema == "pg_catalog" => match name.as_str() {
            "int4" => "integer".to_string(),
            "int8" => "bigint".to_string(),
            "int2" => "smallint".to_string(),
            "bool" => "boolean".to_string(),
            "float8" => "double precision".to_string(),
            "float4" => "real".to_string(),
            "bpchar" => "char".to_string(),
            "interval" => return None,
            "varchar" | "numeric" | "timestamptz" | "timestamp" | "time" | "timetz" | "bit"
            | "varbit" | "text" | "date" => name.clone(),
            _ => return None,
        },
        _ => parts
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Vec<_>>()
            .join("."),
    };
    let mods = if mods.is_empty() {
        String::new()
    } else {
        format!(
            "({})",
            mods.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Some(format!(
        "{name}{mods}{}",
        "[]".repeat(tn.array_bounds.len())
    ))
}

pub fn sql_type(tn: &protobuf::TypeName) -> SqlType {
    let parts = strings(&tn.names);
    let base_raw = parts.last().cloned().unwrap_or_default();
    let mods: Vec<i64> = tn
        .typmods
        .iter()
        .filter_map(|m| match &m.node {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(protobuf::a_const::Val::Ival(i)) => Some(i.ival as i64),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if let Some(sql) = format_type(&parts, &mods, tn) {
        return SqlType {
            sql,
            base: canonical(&base_raw),
            mods,
            array: !tn.array_bounds.is_empty(),
        };
    }
    let cast = protobuf::TypeCast {
        arg: Some(Box::new(Node {
            node: Some(NodeEnum::AConst(protobuf::AConst {
                isnull: true,
                location: 0,
                val: None,
            })),
        })),
        type_name: Some(tn.clone()),
        location: 0,
    };
    let deparsed = expr_sql(&Node {
        node: Some(NodeEnum::TypeCast(Box::new(cast))),
    });
    let sql = deparsed
        .strip_prefix("NULL::")
        .map(str::to_string)
        .or_else(|| {
            deparsed
                .strip_prefix("CAST(NULL AS ")
                .and_then(|s| s.strip_suffix(')'))
                .map(str::to_string)
        })
        .unwrap_or_else(|| parts.join("."));
    SqlType {
        sql,
        base: canonical(&base_raw),
        mods,
        array: !tn.array_bounds.is_empty(),
    }
}

fn column_spec(c: &protobuf::ColumnDef) -> ColumnSpec {
    let ty = c.type_name.as_ref().map(sql_type).unwrap_or(SqlType {
        sql: "?".into(),
        base: "?".into(),
        mods: Vec::new(),
        array: false,
    });
    let mut spec = ColumnSpec {
        name: c.colname.clone(),
        ty,
        not_null: c.is_not_null,
        default: c.raw_default.as_deref().map(expr),
        identity: !c.identity.is_empty(),
        generated_stored: None,
        constraints: Vec::new(),
    };
    for n in &c.constraints {
        let Some(NodeEnum::Constraint(k)) = &n.node else {
            continue;
        };
        match k.contype() {
            ConstrType::ConstrNotnull => spec.not_null = true,
            ConstrType::ConstrDefault => spec.default = k.raw_expr.as_deref().map(expr),
            ConstrType::ConstrIdentity => spec.identity = true,
            ConstrType::ConstrGenerated => {
                // PostgreSQL 18 adds VIRTUAL; STORED is the default before it and must be written.
                spec.generated_stored = Some(k.generated_kind != "v");
            }
            _ => {
                if let Some(cs) = constraint_spec(k, Some(&c.colname)) {
                    if matches!(cs.kind, ConstraintKind::PrimaryKey { .. }) {
                        spec.not_null = true;
                    }
                    spec.constraints.push(cs);
                }
            }
        }
    }
    spec
}

fn constraint_spec(k: &protobuf::Constraint, column: Option<&str>) -> Option<ConstraintSpec> {
    let keys = |nodes: &[Node]| -> Vec<String> {
        let v = strings(nodes);
        if v.is_empty() {
            column.map(|c| vec![c.to_string()]).unwrap_or_default()
        } else {
            v
        }
    };
    let using_index = (!k.indexname.is_empty()).then(|| k.indexname.clone());
    let kind = match k.contype() {
        ConstrType::ConstrCheck => {
            let e = k.raw_expr.as_deref();
            ConstraintKind::Check {
                expr: e.map(expr_sql).unwrap_or_default(),
                not_null_of: e.and_then(is_not_null_test),
                implies_not_null: e.map(not_null_terms).unwrap_or_default(),
            }
        }
        ConstrType::ConstrForeign => ConstraintKind::ForeignKey {
            columns: keys(&k.fk_attrs),
            references: relation(k.pktable.as_ref()),
            ref_columns: strings(&k.pk_attrs),
        },
        ConstrType::ConstrUnique => ConstraintKind::Unique {
            columns: keys(&k.keys),
            using_index,
        },
        ConstrType::ConstrPrimary => ConstraintKind::PrimaryKey {
            columns: keys(&k.keys),
            using_index,
        },
        ConstrType::ConstrExclusion => ConstraintKind::Exclusion,
        ConstrType::ConstrNotnull => ConstraintKind::NotNull {
            column: keys(&k.keys).into_iter().next().unwrap_or_default(),
        },
        _ => return None,
    };
    let not_null_table = matches!(kind, ConstraintKind::NotNull { .. }) && column.is_none();
    // Only a CHECK or a foreign key can be NOT ENFORCED; the parser leaves the flag unset on
    // the others.
    let unenforced = !k.is_enforced
        && matches!(
            kind,
            ConstraintKind::Check { .. } | ConstraintKind::ForeignKey { .. }
        );
    let needs = [
        (k.without_overlaps, 18, "WITHOUT OVERLAPS"),
        (
            k.fk_with_period || k.pk_with_period,
            18,
            "PERIOD in a foreign key",
        ),
        (unenforced, 18, "NOT ENFORCED"),
        (not_null_table, 18, "NOT NULL as a table constraint"),
        (
            matches!(kind, ConstraintKind::NotNull { .. }) && k.skip_validation,
            18,
            "NOT NULL … NOT VALID",
        ),
        (
            !k.fk_del_set_cols.is_empty(),
            15,
            "ON DELETE SET NULL|DEFAULT (columns)",
        ),
        (k.nulls_not_distinct, 15, "NULLS NOT DISTINCT"),
    ]
    .into_iter()
    .filter(|(written, _, _)| *written)
    .map(|(_, major, what)| (major, what))
    .max_by_key(|(major, _)| *major);
    Some(ConstraintSpec {
        name: (!k.conname.is_empty()).then(|| k.conname.clone()),
        kind,
        not_valid: k.skip_validation || unenforced,
        needs,
    })
}

/// The column of a `c IS NOT NULL` check.
fn is_not_null_test(node: &Node) -> Option<String> {
    let Some(NodeEnum::NullTest(t)) = &node.node else {
        return None;
    };
    if t.nulltesttype() != protobuf::NullTestType::IsNotNull {
        return None;
    }
    match t.arg.as_deref().and_then(|a| a.node.as_ref()) {
        Some(NodeEnum::ColumnRef(c)) => strings(&c.fields).pop(),
        _ => None,
    }
}

/// Whether a `USING` expression is what PostgreSQL does without one: the column itself, or the
/// column cast to the new type. Written out, it changes nothing, and a type change that needs no
/// rewrite still needs none.
fn is_default_transform(using: &Node, column: &str, ty: Option<&protobuf::TypeName>) -> bool {
    let is_column = |n: &Node| match &n.node {
        Some(NodeEnum::ColumnRef(c)) => strings(&c.fields) == [column],
        _ => false,
    };
    match &using.node {
        Some(NodeEnum::TypeCast(cast)) => {
            cast.arg.as_deref().is_some_and(is_column)
                && cast.type_name.as_ref().map(sql_type) == ty.map(sql_type)
        }
        _ => is_column(using),
    }
}

/// The columns an expression proves non-null: each `c IS NOT NULL` that is the whole
/// expression or a term of a top-level AND (nested ANDs too).
fn not_null_terms(node: &Node) -> Vec<String> {
    if let Some(NodeEnum::BoolExpr(b)) = &node.node {
        if b.boolop() == protobuf::BoolExprType::AndExpr {
            return b.args.iter().flat_map(not_null_terms).collect();
        }
        return Vec::new();
    }
    is_not_null_test(node).into_iter().collect()
}

fn create_table(s: &protobuf::CreateStmt) -> Operation {
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    for e in &s.table_elts {
        match &e.node {
            Some(NodeEnum::ColumnDef(c)) => columns.push(column_spec(c)),
            Some(NodeEnum::Constraint(k)) => constraints.extend(constraint_spec(k, None)),
            _ => {}
        }
    }
    for k in &s.constraints {
        if let Some(NodeEnum::Constraint(k)) = &k.node {
            constraints.extend(constraint_spec(k, None));
        }
    }
    let partition_of = if s.partbound.is_some() {
        s.inh_relations.iter().find_map(|n| match &n.node {
            Some(NodeEnum::RangeVar(r)) => Some(range_var(r)),
            _ => None,
        })
    } else {
        None
    };
    Operation::CreateTable {
        table: relation(s.relation.as_ref()),
        columns,
        constraints,
        partition_of,
        partitioned: s.partspec.is_some(),
        partition_key: s
            .partspec
            .iter()
            .flat_map(|p| &p.part_params)
            .filter_map(|n| match &n.node {
                Some(NodeEnum::PartitionElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
                _ => None,
            })
            .collect(),
        if_not_exists: s.if_not_exists,
    }
}

/// The `ALTER TABLE` of `s` with `cmd` as its one action (the others not copied: a statement
/// of n actions would copy n² of them).
fn one_action(s: &protobuf::AlterTableStmt, cmd: Node) -> NodeEnum {
    NodeEnum::AlterTableStmt(protobuf::AlterTableStmt {
        relation: s.relation.clone(),
        cmds: vec![cmd],
        objtype: s.objtype,
        missing_ok: s.missing_ok,
    })
}

/// Deparses an `ALTER TABLE` holding one action.
fn alter_sql(s: &protobuf::AlterTableStmt, cmd: &Node) -> String {
    deparse_stmt(&one_action(s, cmd.clone())).unwrap_or_default()
}

/// A statement's SQL from its tree: libpg_query's deparser over the tree written as C nodes
/// (`sql::reader::deparse`), or through protobuf for a node kind the writer does not know.
pub fn deparse_stmt(stmt: &NodeEnum) -> Option<String> {
    match crate::sql::reader::deparse(stmt) {
        Ok(sql) => return Some(sql),
        Err(crate::sql::reader::DeparseError::Refused) => return None,
        Err(crate::sql::reader::DeparseError::UnknownNode) => {}
    }
    let result = protobuf::ParseResult {
        version: 0,
        stmts: vec![protobuf::RawStmt {
            stmt: Some(Box::new(Node {
                node: Some(stmt.clone()),
            })),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    pg_query::deparse(&result, Default::default()).ok()
}

fn alter_table(s: &protobuf::AlterTableStmt, text: &str) -> Vec<(Operation, String)> {
    let table = relation(s.relation.as_ref());
    let objtype = s.objtype();
    if !matches!(
        objtype,
        ObjectType::ObjectTable | ObjectType::ObjectForeignTable
    ) {
        let what = match objtype {
            ObjectType::ObjectIndex => "ALTER INDEX",
            ObjectType::ObjectView => "ALTER VIEW",
            ObjectType::ObjectMatview => "ALTER MATERIALIZED VIEW",
            ObjectType::ObjectSequence => "ALTER SEQUENCE",
            ObjectType::ObjectType => "ALTER TYPE",
            _ => "ALTER",
        };
        return vec![(other(what), text.to_string())];
    }
    let mut ops = Vec::new();
    let single = s.cmds.len() == 1;
    for cmd in &s.cmds {
        let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node else {
            continue;
        };
        let def = c.def.as_deref().and_then(|d| d.node.as_ref());
        let t = table.clone();
        let col = c.name.clone();
        use AlterTableType as A;
        let op = match c.subtype() {
            A::AtAddColumn => match def {
                Some(NodeEnum::ColumnDef(cd)) => Operation::AddColumn {
                    table: t,
                    column: column_spec(cd),
                    if_not_exists: c.missing_ok,
                },
                _ => continue,
            },
            A::AtColumnDefault => Operation::SetDefault {
                table: t,
                column: col,
                default: c.def.as_deref().map(expr),
            },
            A::AtDropNotNull => Operation::DropNotNull {
                table: t,
                column: col,
            },
            A::AtSetNotNull => Operation::SetNotNull {
                table: t,
                column: col,
            },
            A::AtDropColumn => Operation::DropColumn {
                table: t,
                column: col,
                cascade: c.behavior() == DropBehavior::DropCascade,
            },
            A::AtAddConstraint => match def {
                Some(NodeEnum::Constraint(k)) => match constraint_spec(k, None) {
                    Some(mut constraint) => {
                        // Name it explicitly, so later steps (VALIDATE, USING INDEX) can refer to it.
                        let name = constraint.name.clone().unwrap_or_else(|| {
                            super::catalog::default_constraint_name(&t.name, &constraint.kind)
                        });
                        constraint.name = Some(name.clone());
                        let mut named = (**k).clone();
                        named.conname = name;
                        // This action alone, validated as written or NOT VALID.
                        let alone = |not_valid: bool| {
                            let mut k2 = named.clone();
                            k2.skip_validation = not_valid;
                            k2.initially_valid = !not_valid;
                            let mut c2 = (**c).clone();
                            c2.def = Some(Box::new(Node {
                                node: Some(NodeEnum::Constraint(Box::new(k2))),
                            }));
                            one_action(
                                s,
                                Node {
                                    node: Some(NodeEnum::AlterTableCmd(Box::new(c2))),
                                },
                            )
                        };
                        let sql = if single {
                            text.to_string()
                        } else {
                            deparse_stmt(&alone(constraint.not_valid)).unwrap_or_default()
                        };
                        let not_valid_sql = super::LazySql(Box::new(alone(true)));
                        ops.push((
                            Operation::AddConstraint {
                                table: t,
                                constraint,
                                not_valid_sql,
                            },
                            sql,
                        ));
                        continue;
                    }
                    None => continue,
                },
                _ => continue,
            },
            A::AtValidateConstraint => Operation::ValidateConstraint {
                table: t,
                name: col,
            },
            A::AtDropConstraint => Operation::DropConstraint {
                table: t,
                name: col,
                cascade: c.behavior() == DropBehavior::DropCascade,
            },
            A::AtAlterColumnType => match def {
                Some(NodeEnum::ColumnDef(cd)) => Operation::AlterColumnType {
                    using: cd
                        .raw_default
                        .as_deref()
                        .filter(|u| !is_default_transform(u, &col, cd.type_name.as_ref()))
                        .map(expr_sql),
                    table: t,
                    column: col,
                    ty: cd.type_name.as_ref().map(sql_type).unwrap_or(SqlType {
                        sql: "?".into(),
                        base: "?".into(),
                        mods: vec![],
                        array: false,
                    }),
                    collate: cd.coll_clause.is_some(),
                },
                _ => continue,
            },
            A::AtAddIdentity => {
                let k = match def {
                    Some(NodeEnum::Constraint(k)) => Some(k),
                    _ => None,
                };
                Operation::AddIdentity {
                    table: t,
                    column: col,
                    always: k.is_some_and(|k| k.generated_when == "a"),
                    start: k.is_some_and(|k| {
                        k.options.iter().any(|o| {
                            matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname == "start")
                        })
                    }),
                }
            }
            // A stored generated column's new expression is written into every row.
            A::AtSetExpression => rewrite(t, "ALTER COLUMN … SET EXPRESSION"),
            A::AtDropExpression => Operation::AlterGenerated {
                table: t,
                column: col,
            },
            A::AtSetLogged => rewrite(t, "SET LOGGED"),
            A::AtSetUnLogged => rewrite(t, "SET UNLOGGED"),
            A::AtSetTableSpace => rewrite(t, "SET TABLESPACE"),
            A::AtSetAccessMethod => rewrite(t, "SET ACCESS METHOD"),
            A::AtAttachPartition | A::AtDetachPartition | A::AtDetachPartitionFinalize => {
                let Some(NodeEnum::PartitionCmd(p)) = def else {
                    continue;
                };
                let partition = relation(p.name.as_ref());
                if c.subtype() == A::AtAttachPartition {
                    Operation::AttachPartition {
                        table: t,
                        partition,
                    }
                } else {
                    Operation::DetachPartition {
                        table: t,
                        partition,
                        concurrently: p.concurrent,
                        finalize: c.subtype() == A::AtDetachPartitionFinalize,
                    }
                }
            }
            other => Operation::AlterTableOther {
                table: t,
                what: format!("{other:?}").trim_start_matches("At").to_string(),
            },
        };
        // A one-action statement is its own SQL; only a multi-action one is taken apart.
        let sql = if single {
            text.to_string()
        } else {
            alter_sql(s, cmd)
        };
        ops.push((op, sql));
    }
    ops
}

fn rewrite(table: QualifiedName, what: &str) -> Operation {
    Operation::RewriteTable {
        table,
        what: what.into(),
    }
}

fn create_index(s: &protobuf::IndexStmt, text: &str) -> Operation {
    let columns = s
        .index_params
        .iter()
        .map(|p| match &p.node {
            Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => e.name.clone(),
            Some(NodeEnum::IndexElem(e)) => e.expr.as_deref().map(expr_sql).unwrap_or_default(),
            _ => String::new(),
        })
        .collect();
    Operation::CreateIndex(IndexSpec {
        name: (!s.idxname.is_empty()).then(|| s.idxname.clone()),
        table: relation(s.relation.as_ref()),
        columns,
        unique: s.unique,
        concurrently: s.concurrent,
        if_not_exists: s.if_not_exists,
        partial: s.where_clause.is_some(),
        method: s.access_method.clone(),
        nulls_not_distinct: s.nulls_not_distinct,
        include: !s.index_including_params.is_empty(),
        sql: text.to_string(),
    })
}

fn object_kind(t: ObjectType) -> ObjectKind {
    use ObjectType as T;
    match t {
        T::ObjectTable | T::ObjectForeignTable => ObjectKind::Table,
        T::ObjectView => ObjectKind::View,
        T::ObjectMatview => ObjectKind::MaterializedView,
        T::ObjectIndex => ObjectKind::Index,
        T::ObjectSequence => ObjectKind::Sequence,
        T::ObjectSchema => ObjectKind::Schema,
        T::ObjectDatabase => ObjectKind::Database,
        T::ObjectType => ObjectKind::Type,
        T::ObjectDomain => ObjectKind::Domain,
        T::ObjectFunction | T::ObjectProcedure | T::ObjectRoutine | T::ObjectAggregate => {
            ObjectKind::Function
        }
        T::ObjectTrigger => ObjectKind::Trigger,
        T::ObjectExtension => ObjectKind::Extension,
        _ => ObjectKind::Other,
    }
}

fn drop(s: &protobuf::DropStmt) -> Operation {
    let kind = object_kind(s.remove_type());
    let names_of = |n: &Node| -> QualifiedName {
        match &n.node {
            Some(NodeEnum::List(l)) => names(&l.items),
            Some(NodeEnum::String(st)) => QualifiedName::new(None, &st.sval),
            Some(NodeEnum::TypeName(t)) => names(&t.names),
            Some(NodeEnum::ObjectWithArgs(o)) => names(&o.objname),
            _ => QualifiedName::new(None, "?"),
        }
    };
    let list: Vec<QualifiedName> = s.objects.iter().map(names_of).collect();
    let cascade = s.behavior() == DropBehavior::DropCascade;
    if kind == ObjectKind::Index {
        return Operation::DropIndex {
            names: list,
            concurrently: s.concurrent,
            if_exists: s.missing_ok,
            cascade,
        };
    }
    Operation::Drop {
        kind,
        names: list,
        cascade,
        if_exists: s.missing_ok,
    }
}

fn rename(s: &protobuf::RenameStmt) -> Operation {
    use ObjectType as T;
    let named = s.relation.as_ref().map(range_var);
    let rel = || relation(s.relation.as_ref());
    match s.rename_type() {
        T::ObjectColumn => Operation::RenameColumn {
            table: rel(),
            from: s.subname.clone(),
            to: s.newname.clone(),
        },
        T::ObjectTable | T::ObjectForeignTable | T::ObjectView | T::ObjectMatview => {
            Operation::RenameTable {
                table: rel(),
                to: s.newname.clone(),
                kind: object_kind(s.rename_type()),
            }
        }
        T::ObjectTabconstraint => Operation::RenameConstraint {
            table: rel(),
            from: s.subname.clone(),
            to: s.newname.clone(),
        },
        T::ObjectSchema => Operation::RenameSchema {
            from: s.subname.clone(),
            to: s.newname.clone(),
        },
        other_kind => {
            let name = match (&named, s.object.as_deref().and_then(|o| o.node.as_ref())) {
                (Some(r), _) => r.sql(),
                (None, Some(NodeEnum::List(l))) => names(&l.items).sql(),
                (None, Some(NodeEnum::String(st))) => st.sval.clone(),
                _ => s.subname.clone(),
            };
            Operation::RenameOther {
                kind: object_kind(other_kind),
                name,
                to: s.newname.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(sql: &str) -> Vec<Operation> {
        let tree = crate::sql::parse::parse_statement(sql, crate::sql::parse::Queries::Read)
            .unwrap()
            .unwrap();
        operations(&tree, sql)
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }

    #[test]
    fn simple_expressions_are_written_as_the_deparser_writes_them() {
        let exprs = [
            "0",
            "-1",
            "42",
            "true",
            "false",
            "NULL",
            "'x'",
            "''",
            "'it''s'",
            "'{}'::jsonb",
            "'a'::text",
            "now()",
            "gen_random_uuid()",
            "created_at",
            "\"Mixed\"",
            "\"select\"",
            "'é'",
            "E'a\\nb'",
            "1.5",
            "-1::int",
            "'1'::int",
            "x + 1",
            "lower(name)",
            "'{}'::text[]",
            "'a'::varchar(3)",
            "pg_catalog.now()",
            "t.c",
            "count(*)",
            "CURRENT_TIMESTAMP",
            "'x'::\"Custom\"",
        ];
        for e in exprs {
            let sql = format!("SELECT {e}");
            let tree = crate::sql::parse::parse_statement(&sql, crate::sql::parse::Queries::Read)
                .unwrap()
                .unwrap();
            let NodeEnum::SelectStmt(sel) = tree else {
                panic!("{e}")
            };
            let Some(NodeEnum::ResTarget(t)) = sel.target_list[0].node.as_ref() else {
                panic!("{e}")
            };
            let node = t.val.as_deref().unwrap();
            if let Some(fast) = simple_sql(node) {
                assert_eq!(fast, deparse_expr(node), "{e}");
            }
        }
        // The fast path is taken for the common defaults.
        for e in ["0", "'x'", "now()", "'{}'::jsonb", "true"] {
            let sql = format!("SELECT {e}");
            let tree = crate::sql::parse::parse_statement(&sql, crate::sql::parse::Queries::Read)
                .unwrap()
                .unwrap();
            let NodeEnum::SelectStmt(sel) = tree else {
                panic!()
            };
            let Some(NodeEnum::ResTarget(t)) = sel.target_list[0].node.as_ref() else {
                panic!()
            };
            assert!(simple_sql(t.val.as_deref().unwrap()).is_some(), "{e}");
        }
    }

    #[test]
    fn each_alter_action_gets_its_own_sql() {
        let sql = "ALTER TABLE users ADD COLUMN a int, ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES orgs (id)";
        let tree = crate::sql::parse::parse_statement(sql, crate::sql::parse::Queries::Read)
            .unwrap()
            .unwrap();
        let v = operations(&tree, sql);
        assert_eq!(v[0].1, "ALTER TABLE users ADD COLUMN a int");
        assert_eq!(
            v[1].1,
            "ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES orgs (id)"
        );
        match &v[1].0 {
            Operation::AddConstraint { not_valid_sql, .. } => {
                let sql = not_valid_sql.sql();
                assert!(sql.ends_with("NOT VALID"), "{sql}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alter_table_actions_become_operations() {
        let v = ops("ALTER TABLE app.users ADD COLUMN age int NOT NULL DEFAULT 0, ALTER COLUMN name SET NOT NULL");
        assert_eq!(v.len(), 2);
        match &v[0] {
            Operation::AddColumn { table, column, .. } => {
                assert_eq!(table.sql(), "app.users");
                assert_eq!(column.ty.base, "int4");
                assert!(column.not_null);
                assert_eq!(
                    column.default.as_ref().unwrap().volatility,
                    Volatility::Constant
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&v[1], Operation::SetNotNull { column, .. } if column == "name"));
    }

    #[test]
    fn volatility_of_defaults() {
        let vol = |sql: &str| match &ops(sql)[0] {
            Operation::AddColumn { column, .. } => column.default.as_ref().unwrap().volatility,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            vol("ALTER TABLE t ADD c timestamptz DEFAULT now()"),
            Volatility::Stable
        );
        assert_eq!(
            vol("ALTER TABLE t ADD c timestamptz DEFAULT current_timestamp"),
            Volatility::Stable
        );
        assert_eq!(
            vol("ALTER TABLE t ADD c uuid DEFAULT gen_random_uuid()"),
            Volatility::Volatile
        );
        assert_eq!(
            vol("ALTER TABLE t ADD c text DEFAULT 'x'::text"),
            Volatility::Constant
        );
    }

    #[test]
    fn types_are_canonical() {
        match &ops("ALTER TABLE t ALTER COLUMN c TYPE character varying(20)")[0] {
            Operation::AlterColumnType { ty, .. } => {
                assert_eq!(ty.base, "varchar");
                assert_eq!(ty.mods, vec![20]);
                assert_eq!(ty.sql, "varchar(20)");
            }
            other => panic!("{other:?}"),
        }
    }
}
