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
}

/// An identifier longer than PostgreSQL keeps (`NAMEDATALEN - 1`, 63 bytes), as written: the
/// parser truncates it, so its tree no longer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongIdentifier {
    /// Byte offset of its first character (the opening quote of a quoted one).
    pub at: usize,
    /// The name PostgreSQL would keep before truncating: unquoted and `""` unescaped, or
    /// folded to lower case (ASCII only, as the server's UTF-8 folding does).
    pub name: String,
}

/// The bytes an identifier may have before PostgreSQL truncates it.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

#[derive(Debug, Default)]
pub struct Split {
    pub statements: Vec<StatementSpan>,
    pub comments: Vec<Comment>,
    /// Every identifier over [`MAX_IDENTIFIER_BYTES`], in order.
    pub long_identifiers: Vec<LongIdentifier>,
}

/// The words the splitter acts on, found without building a lower-case copy of every word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Create,
    Replace,
    Function,
    Procedure,
    Begin,
    Atomic,
    Case,
    End,
    Other,
}

impl Word {
    fn of(word: &[u8]) -> Word {
        const WORDS: [(&[u8], Word); 8] = [
            (b"create", Word::Create),
            (b"replace", Word::Replace),
            (b"function", Word::Function),
            (b"procedure", Word::Procedure),
            (b"begin", Word::Begin),
            (b"atomic", Word::Atomic),
            (b"case", Word::Case),
            (b"end", Word::End),
        ];
        WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map_or(Word::Other, |&(_, k)| k)
    }
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
    let mut prev_word = Word::Other;
    let mut atomic_depth = 0usize;
    let mut is_routine = false;
    let mut words_in_stmt = 0usize;

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
                    });
                }
                prev_word = Word::Other;
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
            b'"' => {
                let end = quoted_end(b, i + 1, b'"', false);
                // The quotes and any doubled quote do not count.
                if end - i > MAX_IDENTIFIER_BYTES + 2 {
                    let body = src[i + 1..end]
                        .strip_suffix('"')
                        .unwrap_or(&src[i + 1..end]);
                    let name = body.replace("\"\"", "\"");
                    if name.len() > MAX_IDENTIFIER_BYTES {
                        out.long_identifiers.push(LongIdentifier { at: i, name });
                    }
                }
                end
            }
            b'$' => dollar_end(src, i).unwrap_or(i + 1),
            // A number, with its digits, base prefix, separators and exponent (`0b1010`, `1_000`,
            // `1.5e10`): none of it is an identifier.
            b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && (is_ident_char(b[j]) || b[j] == b'.') {
                    j += 1;
                }
                j
            }
            _ if is_ident_start(c) => {
                let mut j = i;
                while j < b.len() && is_ident_char(b[j]) {
                    j += 1;
                }
                // E'…' string with backslash escapes (also U&'…', B'…', X'…' are plain quotes).
                if j < b.len() && b[j] == b'\'' {
                    let backslash = b[i..j].eq_ignore_ascii_case(b"e");
                    quoted_end(b, j + 1, b'\'', backslash)
                } else {
                    if j - i > MAX_IDENTIFIER_BYTES {
                        out.long_identifiers.push(LongIdentifier {
                            at: i,
                            name: src[i..j].to_ascii_lowercase(),
                        });
                    }
                    let word = Word::of(&b[i..j]);
                    words_in_stmt += 1;
                    if words_in_stmt <= 4
                        && matches!(word, Word::Function | Word::Procedure)
                        && matches!(prev_word, Word::Create | Word::Replace)
                    {
                        is_routine = true;
                    }
                    if is_routine {
                        if word == Word::Atomic && prev_word == Word::Begin && atomic_depth == 0 {
                            atomic_depth = 1;
                        } else if atomic_depth > 0 {
                            if word == Word::Case
                                || (word == Word::Atomic && prev_word == Word::Begin)
                            {
                                atomic_depth += 1;
                            } else if word == Word::End {
                                atomic_depth -= 1;
                            }
                        }
                    }
                    prev_word = word;
                    j
                }
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
        });
    }
    out
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
    fn identifiers_over_63_bytes_are_found_as_postgresql_reads_them() {
        let long = "A".repeat(64);
        let ok = "b".repeat(63);
        let quoted = format!("q\"\"{}", "x".repeat(62)); // 65 bytes written, 64 meant
        let src = format!(
            "CREATE TABLE {long} ({ok} int, \"{quoted}\" text);\n\
             -- {long} in a comment\n\
             SELECT '{long}', $${long}$$, E'{long}', \"{}\", 0b{}, 1e{} FROM t;",
            "c".repeat(63),
            "1".repeat(64),
            "0".repeat(64)
        );
        let found: Vec<_> = split(&src)
            .long_identifiers
            .into_iter()
            .map(|l| (l.at, l.name))
            .collect();
        assert_eq!(
            found,
            vec![
                (13, "a".repeat(64)),
                (src.find('"').unwrap(), format!("q\"{}", "x".repeat(62)))
            ]
        );
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
