//! The parser wrapper: PostgreSQL's own grammar through `pg_query`, one statement at a time.
//!
//! `pg_query::parse` reports only the message of a syntax error; the position comes from the
//! same C library's `PgQueryError.cursorpos`, read through a small FFI call made only when a
//! statement has already failed to parse.

use pg_query::NodeEnum;
use std::ffi::{c_char, c_int, CStr, CString};

/// A syntax error: its byte offset within the statement text, and PostgreSQL's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// Parses one statement's text into its parse tree (None for an empty statement).
pub fn parse_statement(text: &str) -> Result<Option<NodeEnum>, SyntaxError> {
    if text.contains('\0') {
        return Err(SyntaxError {
            offset: text.find('\0').unwrap_or(0),
            message: "a NUL byte cannot appear in SQL".into(),
        });
    }
    match pg_query::parse(text, 0) {
        Ok(result) => Ok(result
            .protobuf
            .stmts
            .into_iter()
            .next()
            .and_then(|raw| raw.stmt)
            .and_then(|node| node.node)),
        Err(err) => {
            let (offset, message) = error_position(text).unwrap_or((0, err.to_string()));
            Err(SyntaxError { offset, message })
        }
    }
}

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    // Provided by the libpg_query static library that the pg_query crate links.
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// Byte offset (0-based, within `text`) and message of the error PostgreSQL's parser reports.
fn error_position(text: &str) -> Option<(usize, String)> {
    let input = CString::new(text).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the call; the result is
    // read only while it is alive and freed exactly once with the library's own function.
    unsafe {
        let result = pg_query_parse(input.as_ptr());
        let out = if result.error.is_null() {
            None
        } else {
            let err = &*result.error;
            let message = CStr::from_ptr(err.message).to_string_lossy().into_owned();
            // cursorpos counts characters from 1; 0 means "no position".
            let chars = (err.cursorpos.max(1) - 1) as usize;
            let offset = text
                .char_indices()
                .nth(chars)
                .map_or(text.len(), |(i, _)| i);
            Some((offset, message))
        };
        pg_query_free_parse_result(result);
        out
    }
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
            assert!(parse_statement(sql).unwrap().is_some(), "{sql}");
        }
    }

    #[test]
    fn reports_the_position_of_a_syntax_error() {
        // `FROMM` is a column alias; the parser stops at `t`.
        let err = parse_statement("SELECT 1 FROMM t").unwrap_err();
        assert_eq!(err.offset, 15, "{err:?}");
        assert!(err.message.contains("syntax error"), "{err:?}");
        let err = parse_statement("SELECT 'é' FROMM t").unwrap_err();
        assert_eq!(&"SELECT 'é' FROMM t"[err.offset..], "t");
    }
}
