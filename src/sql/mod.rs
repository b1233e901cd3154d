//! Reading SQL: statements with exact spans, their parse trees, comments and positions.

pub mod parse;
pub mod split;

pub use parse::SyntaxError;
pub use split::{Comment, LineIndex};

use pg_query::NodeEnum;

/// One statement of a file.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Byte span in the file (the terminating `;` excluded).
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// The parse tree, or the syntax error that stopped it.
    pub tree: Result<NodeEnum, SyntaxError>,
}

/// A file's source, split and parsed.
#[derive(Debug, Clone)]
pub struct SqlSource {
    pub text: String,
    pub lines: LineIndex,
    pub statements: Vec<Statement>,
    pub comments: Vec<Comment>,
}

impl SqlSource {
    pub fn parse(text: String) -> SqlSource {
        let split = split::split(&text);
        let statements = split
            .statements
            .iter()
            .filter_map(|span| {
                let stmt_text = &text[span.start..span.end];
                let tree = match parse::parse_statement(stmt_text) {
                    Ok(Some(tree)) => Ok(tree),
                    Ok(None) => return None,
                    Err(e) => Err(e),
                };
                Some(Statement {
                    start: span.start,
                    end: span.end,
                    text: stmt_text.to_string(),
                    tree,
                })
            })
            .collect();
        SqlSource {
            lines: LineIndex::new(&text),
            text,
            statements,
            comments: split.comments,
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        self.lines.position(&self.text, offset)
    }
}
