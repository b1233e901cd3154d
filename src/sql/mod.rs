//! Reading SQL: statements with exact spans, their parse trees, comments and positions.

pub mod directives;
pub mod parse;
pub mod reader;
pub mod split;

pub use parse::SyntaxError;
pub use split::{Comment, LineIndex};

use parse::Queries;
use pg_query::NodeEnum;

/// One statement of a file.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Byte span in the file (the terminating `;` excluded).
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// The parse tree, until the pipeline turns it into operations and drops it.
    pub tree: Option<NodeEnum>,
    /// The syntax error that stopped the parser, if one did.
    pub error: Option<SyntaxError>,
    /// Identifiers over 63 bytes, as written (the tree holds them truncated).
    pub long_identifiers: Vec<String>,
}

/// A file's source, split and parsed.
#[derive(Debug, Clone)]
pub struct SqlSource {
    pub text: String,
    pub lines: LineIndex,
    pub statements: Vec<Statement>,
    pub comments: Vec<Comment>,
}

/// Hands each long identifier to the statement it stands in.
fn give_long_identifiers(statements: &mut [Statement], found: Vec<split::LongIdentifier>) {
    for ident in found {
        if let Some(s) = statements
            .iter_mut()
            .find(|s| s.start <= ident.at && ident.at < s.end)
        {
            s.long_identifiers.push(ident.name);
        }
    }
}

impl SqlSource {
    pub fn parse(text: String) -> SqlSource {
        let split = split::split(&text);
        if let Some(mut statements) = Self::parse_whole(&text, &split.statements) {
            give_long_identifiers(&mut statements, split.long_identifiers);
            return SqlSource {
                lines: LineIndex::new(&text),
                text,
                statements,
                comments: split.comments,
            };
        }
        // A syntax error somewhere: parse statement by statement, so each error is reported at
        // its own position and every other statement is still checked.
        let mut statements: Vec<Statement> = split
            .statements
            .iter()
            .filter_map(|span| {
                let stmt_text = &text[span.start..span.end];
                let (tree, error) = match parse::parse_statement(stmt_text, Queries::Skip) {
                    Ok(Some(tree)) => (Some(tree), None),
                    Ok(None) => return None,
                    Err(e) => (None, Some(e)),
                };
                Some(Statement {
                    start: span.start,
                    end: span.end,
                    text: stmt_text.to_string(),
                    tree,
                    error,
                    long_identifiers: Vec::new(),
                })
            })
            .collect();
        give_long_identifiers(&mut statements, split.long_identifiers);
        SqlSource {
            lines: LineIndex::new(&text),
            text,
            statements,
            comments: split.comments,
        }
    }

    /// The fast path: the whole file in one parser call, its statements matched to the
    /// splitter's spans. None when the file does not parse, or the two disagree. Views' queries
    /// are checked by the grammar, but their trees are not read (`Queries::Skip`).
    fn parse_whole(text: &str, spans: &[split::StatementSpan]) -> Option<Vec<Statement>> {
        let trees = parse::parse_file(text, Queries::Skip).ok()?;
        let trees: Vec<_> = trees.into_iter().filter(|(_, t)| t.is_some()).collect();
        if trees.len() != spans.len() {
            return None;
        }
        let mut out = Vec::with_capacity(spans.len());
        for (span, (location, tree)) in spans.iter().zip(trees) {
            // PostgreSQL's statement starts after the previous `;`, before any comment; the
            // splitter's at the first token. They must bound the same statement.
            if location > span.start || span.start >= span.end {
                return None;
            }
            out.push(Statement {
                start: span.start,
                end: span.end,
                text: text[span.start..span.end].to_string(),
                tree: Some(tree?),
                error: None,
                long_identifiers: Vec::new(),
            });
        }
        Some(out)
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        self.lines.position(&self.text, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(src: &SqlSource) -> Vec<(usize, usize, bool, bool)> {
        src.statements
            .iter()
            .map(|s| (s.start, s.end, s.tree.is_some(), s.error.is_some()))
            .collect()
    }

    #[test]
    fn view_queries_are_grammar_checked_but_not_kept() {
        let text = "CREATE OR REPLACE VIEW v (a) WITH (security_barrier) AS SELECT a FROM t WHERE b IN (1, 2);\nCREATE MATERIALIZED VIEW IF NOT EXISTS m AS WITH x AS (SELECT 1 AS one) SELECT * FROM x;\nALTER TABLE t ADD c int;\n";
        let src = SqlSource::parse(text.to_string());
        assert_eq!(src.statements.len(), 3);
        for s in &src.statements {
            assert_eq!(&text[s.start..s.end], s.text, "spans are the file's");
            assert!(s.error.is_none());
        }
        match src.statements[0].tree.as_ref() {
            Some(NodeEnum::ViewStmt(v)) => {
                assert_eq!(v.view.as_ref().unwrap().relname, "v");
                assert_eq!(v.query, None, "the query's tree is left out");
            }
            other => panic!("{other:?}"),
        }
        match src.statements[1].tree.as_ref() {
            Some(NodeEnum::CreateTableAsStmt(c)) => assert_eq!(c.query, None),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            src.statements[2].tree,
            Some(NodeEnum::AlterTableStmt(_))
        ));
        // A broken query is still a syntax error at its own position.
        let broken = "CREATE VIEW v AS SELECT a FROM WHERE;\nALTER TABLE t ADD c int;\n";
        let src = SqlSource::parse(broken.to_string());
        let e = src.statements[0].error.as_ref().expect("syntax error");
        assert_eq!(&broken[src.statements[0].start + e.offset..][..5], "WHERE");
        assert!(src.statements[1].tree.is_some());
    }

    #[test]
    fn whole_file_and_per_statement_parsing_agree() {
        let text = "-- lead\nCREATE TABLE t (a int);\n/* x */ ALTER TABLE t ADD b text;\nDO $$ BEGIN END $$;\n";
        let whole = SqlSource::parse(text.to_string());
        assert_eq!(whole.statements.len(), 3);
        // The same file with a broken statement appended takes the per-statement path.
        let broken = SqlSource::parse(format!("{text}SELECT FROM WHERE;\n"));
        assert_eq!(shapes(&broken)[..3], shapes(&whole)[..]);
        assert!(broken.statements[3].error.is_some() && broken.statements[3].tree.is_none());
        for s in &whole.statements {
            assert_eq!(&text[s.start..s.end], s.text);
            assert!(s.tree.is_some() && s.error.is_none());
        }
    }
}

/// Replaces every identifier token equal to `from` (after unquoting and case folding) in a
/// fragment of SQL with `to`, quoted as needed. None when `from` does not occur. Works on the
/// scanner's tokens, so strings, comments and longer names are left alone.
pub fn rename_identifier(sql: &str, from: &str, to: &str) -> Option<String> {
    let scan = pg_query::scan(sql).ok()?;
    let mut out = String::with_capacity(sql.len() + to.len());
    let mut at = 0;
    let mut found = false;
    for t in &scan.tokens {
        let (start, end) = (t.start as usize, t.end as usize);
        let Some(raw) = sql.get(start..end) else {
            continue;
        };
        let ident = if let Some(q) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            q.replace("\"\"", "\"")
        } else if raw
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            raw.to_lowercase()
        } else {
            continue;
        };
        if ident == from {
            out.push_str(&sql[at..start]);
            out.push_str(&crate::model::quote_ident(to));
            at = end;
            found = true;
        }
    }
    out.push_str(&sql[at..]);
    found.then_some(out)
}

#[cfg(test)]
mod rename_tests {
    use super::rename_identifier;

    #[test]
    fn renames_identifier_tokens_only() {
        assert_eq!(
            rename_identifier(
                "CHECK ((\"select\" > 0) AND (name <> 'select'))",
                "select",
                "Chosen"
            )
            .as_deref(),
            Some("CHECK ((\"Chosen\" > 0) AND (name <> 'select'))")
        );
        assert_eq!(
            rename_identifier(
                "FOREIGN KEY (name) REFERENCES other(name)",
                "name",
                "full_name"
            )
            .as_deref(),
            Some("FOREIGN KEY (full_name) REFERENCES other(full_name)")
        );
        assert_eq!(rename_identifier("CHECK ((age > 0))", "name", "x"), None);
    }
}
