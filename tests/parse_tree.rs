//! The direct reader of libpg_query's C tree (src/sql/reader) against the pg_query crate's own
//! protobuf round trip: on every file, the same statements, the same trees, the same errors;
//! and its writer, which deparses without protobuf: the same SQL for every statement.
//!
//! The corpus is every `.sql` file of this repository plus tests/fixtures/grammar, written to
//! reach each kind of node the grammar makes. `PARSE_CORPUS=dir1:dir2` adds more folders (the
//! PostgreSQL regression suite, real projects' migrations) for a run by hand.

use migrate::sql::parse::{parse_protobuf, SyntaxError};
use migrate::sql::reader::{self, Queries, ReadError};
use migrate::sql::split::split;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

fn sql_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" {
            sql_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
}

/// The kinds of node in a tree, by their names in its debug form (`node: Some(Kind(`).
fn node_kinds(tree: &impl std::fmt::Debug, kinds: &mut BTreeSet<String>) {
    let text = format!("{tree:?}");
    for part in text.split("node: Some(").skip(1) {
        let kind: String = part
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        kinds.insert(kind);
    }
}

/// Both ways of reading `text`: equal trees, or the same syntax error. The direct reader's
/// trees are compared whole (every field of every node), statement by statement.
fn same_both_ways(path: &Path, text: &str, kinds: &mut BTreeSet<String>) -> Result<usize, String> {
    let input = CString::new(text).map_err(|_| "NUL byte".to_string())?;
    let direct = reader::parse(&input, Queries::Read);
    let reference = parse_protobuf(&input, text);
    match (direct, reference) {
        (Ok(a), Ok(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{}: {} statements read, {} decoded",
                    path.display(),
                    a.len(),
                    b.len()
                ));
            }
            node_kinds(&a, kinds);
            for x in &a {
                same_sql(path, x)?;
                same_walk(path, x)?;
            }
            for (x, y) in a.iter().zip(&b) {
                if x != y {
                    let at = y.stmt_location.max(0) as usize;
                    let stmt = &text[at..(at + y.stmt_len.max(0) as usize).min(text.len())];
                    return Err(format!(
                        "{}: the trees differ for {:?}\nread:    {:?}\ndecoded: {:?}",
                        path.display(),
                        stmt.chars().take(200).collect::<String>(),
                        x,
                        y
                    ));
                }
            }
            Ok(a.len())
        }
        (Err(ReadError::Syntax { message, .. }), Err(SyntaxError { message: m2, .. }))
            if message == m2 =>
        {
            Err(SYNTAX.to_string())
        }
        // The decoder gives up at a tenth of the reader's depth.
        (Ok(_), Err(e)) if e.message.contains("could not be decoded") => Ok(0),
        (a, b) => Err(format!(
            "{}: read {:?}, decoded {:?}",
            path.display(),
            a.map(|s| s.len()),
            b.map(|s| s.len())
        )),
    }
}

const SYNTAX: &str = "the same syntax error";

/// `reader::walk` meets the statement's nodes in the order a walk over its JSON (serde_json's
/// sorted maps) meets their kinds: the linter's first volatile function, the columns an
/// expression reads, come out as they did when it walked the JSON.
fn same_walk(path: &Path, stmt: &pg_query::protobuf::RawStmt) -> Result<(), String> {
    fn json_kinds(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    // Node kinds; a constant's value (Ival, Sval, …) is a field of its own.
                    let value =
                        matches!(k.as_str(), "Ival" | "Fval" | "Boolval" | "Sval" | "Bsval");
                    if k.starts_with(|c: char| c.is_ascii_uppercase()) && !value {
                        out.push(k.clone());
                    }
                    json_kinds(child, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| json_kinds(i, out)),
            _ => {}
        }
    }
    let Some(node) = stmt.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return Ok(());
    };
    let mut walked = Vec::new();
    reader::walk(node, &mut |n| {
        let name = format!("{n:?}");
        walked.push(name[..name.find('(').unwrap_or(name.len())].to_string());
    });
    let mut expected = Vec::new();
    json_kinds(&serde_json::to_value(node).unwrap(), &mut expected);
    if walked == expected {
        Ok(())
    } else {
        Err(format!(
            "{}: walked {walked:?}\nJSON    {expected:?}",
            path.display()
        ))
    }
}

/// The statement deparsed through the C nodes the writer builds and through protobuf: the same
/// SQL, or both refused.
fn same_sql(path: &Path, stmt: &pg_query::protobuf::RawStmt) -> Result<(), String> {
    let Some(node) = stmt.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return Ok(());
    };
    let written = reader::deparse(node);
    let one = pg_query::protobuf::ParseResult {
        version: 0,
        stmts: vec![pg_query::protobuf::RawStmt {
            stmt: stmt.stmt.clone(),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    let reference = pg_query::deparse(&one, Default::default());
    match (&written, &reference) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(reader::DeparseError::Refused), Err(_)) => Ok(()),
        _ => Err(format!(
            "{}: deparsed differently\nwritten:  {written:?}\nprotobuf: {reference:?}",
            path.display()
        )),
    }
}

/// A file both refuse is compared statement by statement, so that one bad statement (a psql
/// command in the regression suite) does not hide the rest.
fn compare_file(path: &Path, text: &str, kinds: &mut BTreeSet<String>) -> Result<usize, String> {
    match same_both_ways(path, text, kinds) {
        Err(e) if e == SYNTAX => {
            let mut n = 0;
            for span in split(text).statements {
                match same_both_ways(path, &text[span.start..span.end], kinds) {
                    Err(e) if e == SYNTAX => {}
                    other => n += other?,
                }
            }
            Ok(n)
        }
        other => other,
    }
}

#[test]
fn the_direct_reader_gives_the_protobuf_decoders_trees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sql_files(root, &mut files);
    let extra = std::env::var("PARSE_CORPUS").unwrap_or_default();
    for dir in extra.split(':').filter(|d| !d.is_empty()) {
        let before = files.len();
        sql_files(Path::new(dir), &mut files);
        assert!(
            files.len() > before,
            "PARSE_CORPUS: no .sql file under {dir}"
        );
    }
    files.sort();
    let grammar = root.join("tests/fixtures/grammar");
    assert!(
        files.iter().any(|f| f.starts_with(&grammar)),
        "the grammar corpus is missing"
    );
    let (mut statements, mut failures, mut kinds) = (0, Vec::new(), BTreeSet::new());
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let text = String::from_utf8_lossy(&bytes);
        if path.starts_with(&grammar) {
            // The grammar corpus is there to be read: all of it must parse.
            let input = CString::new(text.as_bytes()).unwrap();
            if let Err(e) = reader::parse(&input, Queries::Read) {
                failures.push(format!("{}: {e:?}", path.display()));
            }
        }
        match compare_file(path, &text, &mut kinds) {
            Ok(n) => statements += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{statements} statements of {} files read alike, {} kinds of node",
        files.len(),
        kinds.len()
    );
    assert!(statements > 150, "only {statements} statements compared");
    assert!(
        kinds.len() > 150,
        "only {} kinds of node: {kinds:?}",
        kinds.len()
    );
}

#[test]
fn a_tree_nested_past_the_limit_is_an_error_and_one_within_it_is_read() {
    // `1 + (1 + (1 + …))`: each level is an A_Expr in a Node.
    let nested = |levels: usize| {
        let mut sql = "SELECT ".to_string();
        for _ in 0..levels {
            sql.push_str("1 + (");
        }
        sql.push('1');
        sql.push_str(&")".repeat(levels));
        CString::new(sql).unwrap()
    };
    // The statement, its target and the first operator are three levels above the chain.
    let within = reader::MAX_DEPTH as usize - 10;
    // An optimized build reads the deepest tree within a thread's default 2 MiB of stack (what
    // MAX_DEPTH is chosen for); an unoptimized one keeps every temporary on the stack.
    let stack = if cfg!(debug_assertions) {
        64 << 20
    } else {
        2 << 20
    };
    let read = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let stmts = reader::parse(&nested(within), Queries::Read).map(|s| s.len());
            let past = reader::parse(&nested(reader::MAX_DEPTH as usize), Queries::Read);
            (stmts, past.map(|s| s.len()))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(read, (Ok(1), Err(ReadError::TooDeep)));
    const { assert!(migrate::analyze::PARSE_STACK >= 2 << 20) };
}

#[test]
fn a_tree_the_deparser_refuses_is_an_error_and_the_next_deparse_works() {
    use pg_query::protobuf as pb;
    use pg_query::NodeEnum;
    // Not statements: libpg_query's deparser raises an error (elog), which must come back here
    // through its own error handling instead of unwinding the process. (A tree with an enum
    // left at 0 trips an Assert in its debug build instead, on either path.)
    let refused = [
        NodeEnum::Integer(pb::Integer { ival: 1 }),
        NodeEnum::ColumnRef(pb::ColumnRef::default()),
    ];
    for node in &refused {
        assert_eq!(
            reader::deparse(node),
            Err(reader::DeparseError::Refused),
            "{node:?}"
        );
    }
    let input = CString::new("ALTER TABLE t ADD COLUMN c int DEFAULT 1").unwrap();
    let stmts = reader::parse(&input, Queries::Read).unwrap();
    let node = stmts[0].stmt.as_ref().unwrap().node.as_ref().unwrap();
    assert_eq!(
        reader::deparse(node).as_deref(),
        Ok("ALTER TABLE t ADD COLUMN c int DEFAULT 1")
    );
}

#[test]
fn a_syntax_error_is_reported_with_its_position() {
    let text = "CREATE TABLE t (a int);\nSELECT 1 FROMM t;";
    let input = CString::new(text).unwrap();
    match reader::parse(&input, Queries::Read) {
        Err(ReadError::Syntax { message, cursorpos }) => {
            assert!(message.contains("syntax error"), "{message}");
            assert_eq!(&text[cursorpos as usize - 1..], "t;");
        }
        other => panic!("{other:?}"),
    }
}
