//! The parser wrapper: PostgreSQL's own grammar (libpg_query, linked by the `pg_query` crate),
//! one statement at a time, with the exact position of a syntax error.

pub use super::reader::Queries;
use super::reader::{self, PgQueryError, ReadError};
use pg_query::{protobuf, NodeEnum};
use prost::Message;
use std::ffi::{c_char, CStr, CString};

/// A syntax error: its byte offset within the statement text, and PostgreSQL's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// Parses a whole file in one call: each statement's tree with its byte offset, or the first
/// syntax error. One call per file spares the parser's per-call setup, which dominates for
/// short statements.
pub fn parse_file(
    text: &str,
    queries: Queries,
) -> Result<Vec<(usize, Option<NodeEnum>)>, SyntaxError> {
    parse_raw(text, queries).map(|stmts| {
        stmts
            .into_iter()
            .map(|raw| {
                (
                    raw.stmt_location.max(0) as usize,
                    raw.stmt.and_then(|n| n.node),
                )
            })
            .collect()
    })
}

/// Parses one statement's text into its parse tree (None for an empty statement).
pub fn parse_statement(text: &str, queries: Queries) -> Result<Option<NodeEnum>, SyntaxError> {
    parse_raw(text, queries).map(|stmts| {
        stmts
            .into_iter()
            .next()
            .and_then(|raw| raw.stmt)
            .and_then(|node| node.node)
    })
}

fn parse_raw(text: &str, queries: Queries) -> Result<Vec<protobuf::RawStmt>, SyntaxError> {
    let Ok(input) = CString::new(text) else {
        return Err(SyntaxError {
            offset: text.find('\0').unwrap_or(0),
            message: "a NUL byte cannot appear in SQL".into(),
        });
    };
    match reader::parse(&input, queries) {
        Ok(stmts) => Ok(stmts),
        Err(ReadError::Syntax { message, cursorpos }) => {
            Err(syntax_error(text, cursorpos, message))
        }
        Err(ReadError::TooDeep) => Err(SyntaxError {
            offset: 0,
            message: format!(
                "the statement nests expressions more than {} levels deep",
                reader::MAX_DEPTH
            ),
        }),
        // A node type the direct reader has no table for: libpg_query's own protobuf writer
        // knows no more, so this does not happen with the pg_query the reader was made from.
        Err(ReadError::UnknownNode(_)) => parse_protobuf(&input, text),
    }
}

/// The same parse through libpg_query's protobuf encoding and prost's decoding: the pg_query
/// crate's own way, kept as the reference the direct reader is tested against.
pub fn parse_protobuf(input: &CStr, text: &str) -> Result<Vec<protobuf::RawStmt>, SyntaxError> {
    // SAFETY: `input` is a valid NUL-terminated string that outlives the call; the result is
    // read only while it is alive and freed exactly once with the library's own function.
    let outcome = unsafe {
        let result = pg_query_parse_protobuf(input.as_ptr());
        let outcome = if result.error.is_null() {
            let bytes = std::slice::from_raw_parts(
                result.parse_tree.data as *const u8,
                result.parse_tree.len,
            );
            Ok(protobuf::ParseResult::decode(bytes))
        } else {
            let err = &*result.error;
            let message = CStr::from_ptr(err.message).to_string_lossy().into_owned();
            Err((err.cursorpos, message))
        };
        pg_query_free_protobuf_parse_result(result);
        outcome
    };
    match outcome {
        Ok(Ok(tree)) => Ok(tree.stmts),
        Ok(Err(e)) => Err(SyntaxError {
            offset: 0,
            message: format!("the parse tree could not be decoded: {e}"),
        }),
        Err((cursorpos, message)) => Err(syntax_error(text, cursorpos, message)),
    }
}

/// A syntax error at libpg_query's `cursorpos`, which counts characters from 1 (0: no position).
fn syntax_error(text: &str, cursorpos: i32, message: String) -> SyntaxError {
    let chars = (cursorpos.max(1) - 1) as usize;
    let offset = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i);
    SyntaxError { offset, message }
}

#[repr(C)]
struct PgQueryProtobuf {
    len: usize,
    data: *mut c_char,
}

#[repr(C)]
struct PgQueryProtobufParseResult {
    parse_tree: PgQueryProtobuf,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    // Provided by the libpg_query static library that the pg_query crate links. Calling it
    // directly skips pg_query::parse's walk over the tree for table and function names.
    fn pg_query_parse_protobuf(input: *const c_char) -> PgQueryProtobufParseResult;
    fn pg_query_free_protobuf_parse_result(result: PgQueryProtobufParseResult);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_only_syntax() {
        for sql in [
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "REINDEX INDEX CONCURRENTLY i",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
            "ALTER TABLE t ALTER COLUMN c TYPE text COLLATE \"C\" USING c::text",
            "DO $$ BEGIN NULL; END $$",
        ] {
            assert!(
                parse_statement(sql, Queries::Read).unwrap().is_some(),
                "{sql}"
            );
        }
    }

    #[test]
    fn reports_the_position_of_a_syntax_error() {
        // `FROMM` is a column alias; the parser stops at `t`.
        let err = parse_statement("SELECT 1 FROMM t", Queries::Read).unwrap_err();
        assert_eq!(err.offset, 15, "{err:?}");
        assert!(err.message.contains("syntax error"), "{err:?}");
        let err = parse_statement("SELECT 'é' FROMM t", Queries::Read).unwrap_err();
        assert_eq!(&"SELECT 'é' FROMM t"[err.offset..], "t");
    }
}
