//! Splits a migration file into statements with exact byte spans, and collects its comments.
//!
//! The splitter knows just enough of PostgreSQL's lexical rules to find the `;` that ends a
//! statement: quoted strings (`'…'`, `E'…'` with backslash escapes), quoted identifiers,
//! dollar-quoted bodies (`$tag$…$tag$`), `--` and nested `/* */` comments, and SQL-standard
//! function bodies (`BEGIN ATOMIC … END`), whose inner semicolons do not end the statement.
//! It never fails: an unterminated construct runs to the end of the file, and the parser then
//! reports it as a syntax error at the right position.

/// A `--` or `/* */` comment, with its byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    /// The text without the comment markers, trimmed.
    pub body: String,
}

/// One statement's byte span in the file, from its first token to the end of its last one
/// (the terminating `;` excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementSpan {
    pub start: usize,
    pub end: usize,
    /// For `CREATE [MATERIALIZED] VIEW … AS query`: where the query starts. The linter needs a
    /// view's name, not its query, and a large query's parse tree is most of a file's cost.
    pub view_query: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Split {
    pub statements: Vec<StatementSpan>,
    pub comments: Vec<Comment>,
}

/// Splits `src` into statements and comments.
pub fn split(src: &str) -> Split {
    let b = src.as_bytes();
    let mut out = Split::default();
    let mut i = 0;
    // Start and end of the statement being read; None while only whitespace and comments seen.
    let mut stmt_start: Option<usize> = None;
    let mut stmt_end = 0;
    // BEGIN ATOMIC tracking: words seen at the top level of the current statement.
    let mut prev_word = String::new();
    let mut atomic_depth = 0usize;
    let mut is_routine = false;
    let mut words_in_stmt = 0usize;
    // CREATE [OR REPLACE] [TEMP] [RECURSIVE|MATERIALIZED] VIEW … AS: only those words before VIEW.
    let mut view = ViewHead::Maybe;
    let mut depth = 0i32;

    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            out.comments.push(Comment {
                start: i,
                end,
                body: src[i + 2..end].trim().to_string(),
            });
            i = end;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = block_comment_end(b, i);
            let inner_end = if end >= i + 4 && src[..end].ends_with("*/") {
                end - 2
            } else {
                end
            };
            out.comments.push(Comment {
                start: i,
                end,
                body: src[i + 2..inner_end.max(i + 2)].trim().to_string(),
            });
            i = end;
            continue;
        }
        if c == b';' {
            if atomic_depth == 0 {
                if let Some(s) = stmt_start.take() {
                    out.statements.push(StatementSpan {
                        start: s,
                        end: stmt_end,
                        view_query: view.query(),
                    });
                }
                prev_word.clear();
                view = ViewHead::Maybe;
                depth = 0;
                is_routine = false;
                words_in_stmt = 0;
                i += 1;
                continue;
            }
            // A `;` inside BEGIN ATOMIC belongs to the body.
            stmt_end = i + 1;
            i += 1;
            continue;
        }
        if stmt_start.is_none() {
            stmt_start = Some(i);
        }
        let tok_end = match c {
            b'\'' => quoted_end(b, i + 1, b'\'', false),
            b'"' => quoted_end(b, i + 1, b'"', false),
            b'$' => dollar_end(src, i).unwrap_or(i + 1),
            _ if is_ident_start(c) => {
                let mut j = i;
                while j < b.len() && is_ident_char(b[j]) {
                    j += 1;
                }
                // E'…' string with backslash escapes (also U&'…', B'…', X'…' are plain quotes).
                if j < b.len() && b[j] == b'\'' {
                    let word = &src[i..j];
                    let backslash = word.eq_ignore_ascii_case("e");
                    quoted_end(b, j + 1, b'\'', backslash)
                } else {
                    let word = src[i..j].to_ascii_lowercase();
                    words_in_stmt += 1;
                    if words_in_stmt <= 4
                        && (word == "function" || word == "procedure")
                        && matches!(prev_word.as_str(), "create" | "replace")
                    {
                        is_routine = true;
                    }
                    if is_routine {
                        if word == "atomic" && prev_word == "begin" && atomic_depth == 0 {
                            atomic_depth = 1;
                        } else if atomic_depth > 0 {
                            if word == "case" || (word == "atomic" && prev_word == "begin") {
                                atomic_depth += 1;
                            } else if word == "end" {
                                atomic_depth -= 1;
                            }
                        }
                    }
                    view = view.next(&word, depth, j);
                    prev_word = word;
                    j
                }
            }
            b'(' => {
                depth += 1;
                i + 1
            }
            b')' => {
                depth -= 1;
                i + 1
            }
            _ => i + char_len(c),
        };
        stmt_end = tok_end.min(b.len());
        i = tok_end.min(b.len());
    }
    if let Some(s) = stmt_start {
        out.statements.push(StatementSpan {
            start: s,
            end: stmt_end,
            view_query: view.query(),
        });
    }
    out
}

/// How far a statement has shown itself to be `CREATE … VIEW name … AS query`.
#[derive(Debug, Clone, Copy)]
enum ViewHead {
    /// Only words that may come before VIEW so far.
    Maybe,
    /// VIEW seen: waiting for the `AS` outside parentheses.
    Named,
    /// The query starts at this offset.
    Query(usize),
    Not,
}

impl ViewHead {
    fn next(self, word: &str, depth: i32, end: usize) -> ViewHead {
        match self {
            ViewHead::Maybe => match word {
                "view" => ViewHead::Named,
                "create" | "or" | "replace" | "temp" | "temporary" | "recursive"
                | "materialized" => ViewHead::Maybe,
                _ => ViewHead::Not,
            },
            ViewHead::Named if word == "as" && depth == 0 => ViewHead::Query(end),
            other => other,
        }
    }

    fn query(self) -> Option<usize> {
        match self {
            ViewHead::Query(at) => Some(at),
            _ => None,
        }
    }
}

fn char_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
    .max(1)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// End (exclusive) of a quoted token whose body starts at `i`; a doubled quote is an escape.
fn quoted_end(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// End (exclusive) of a nested block comment starting at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// End (exclusive) of a dollar-quoted string starting at `i`, or None when `$` does not open one
/// (a positional parameter such as `$1`).
fn dollar_end(src: &str, i: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut j = i + 1;
    while j < b.len() && b[j] != b'$' {
        if !(b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80)
            || (j == i + 1 && b[j].is_ascii_digit())
        {
            return None;
        }
        j += 1;
    }
    if j >= b.len() {
        return None;
    }
    let tag = &src[i..=j];
    match src[j + 1..].find(tag) {
        Some(n) => Some(j + 1 + n + tag.len()),
        None => Some(b.len()),
    }
}

/// Maps byte offsets to 1-based line and column (in characters).
#[derive(Debug, Clone)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { line_starts }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn position(&self, src: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(src.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = src
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text<'a>(&self, src: &'a str, line: usize) -> &'a str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.line_starts.get(line).map_or(src.len(), |&e| e);
        src[start..end].trim_end_matches(['\n', '\r'])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        split(src)
            .statements
            .iter()
            .map(|s| &src[s.start..s.end])
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let src = "SELECT ';'; -- a; comment\nSELECT \"a;b\" /* x; /* nested; */ y; */ FROM t;\n";
        assert_eq!(
            texts(src),
            vec![
                "SELECT ';'",
                "SELECT \"a;b\" /* x; /* nested; */ y; */ FROM t"
            ]
        );
        assert_eq!(split(src).comments.len(), 2);
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        let src = "DO $body$ BEGIN PERFORM 1; END $body$; PREPARE p AS SELECT $1; SELECT $$a;b$$";
        assert_eq!(
            texts(src),
            vec![
                "DO $body$ BEGIN PERFORM 1; END $body$",
                "PREPARE p AS SELECT $1",
                "SELECT $$a;b$$"
            ]
        );
    }

    #[test]
    fn escape_strings() {
        assert_eq!(
            texts(r"SELECT E'it\'s;'; SELECT 1"),
            vec![r"SELECT E'it\'s;'", "SELECT 1"]
        );
    }

    #[test]
    fn begin_atomic_bodies_keep_their_semicolons() {
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3;";
        assert_eq!(
            texts(src),
            vec![
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END",
                "SELECT 3"
            ]
        );
    }

    #[test]
    fn begin_alone_is_a_statement() {
        assert_eq!(
            texts("BEGIN; SELECT 1; COMMIT;"),
            vec!["BEGIN", "SELECT 1", "COMMIT"]
        );
    }

    #[test]
    fn unterminated_constructs_run_to_the_end() {
        assert_eq!(
            texts("SELECT 1; SELECT 'abc; SELECT 2"),
            vec!["SELECT 1", "SELECT 'abc; SELECT 2"]
        );
        assert_eq!(texts("SELECT 1 /* open"), vec!["SELECT 1"]);
        assert!(texts("").is_empty());
        assert!(texts("  -- only a comment\n").is_empty());
    }

    #[test]
    fn positions_are_one_based_in_characters() {
        let src = "ab\nçd;x";
        let idx = LineIndex::new(src);
        assert_eq!(idx.position(src, 0), (1, 1));
        assert_eq!(idx.position(src, 3), (2, 1));
        assert_eq!(idx.position(src, 5), (2, 2));
        assert_eq!(idx.line_text(src, 2), "çd;x");
    }
}
