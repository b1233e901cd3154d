use crate::lint::{Finding, Rule, StmtCtx};

crate::declare_rule! {
    /// An identifier longer than PostgreSQL's 63-byte limit.
    ///
    /// ## What it catches
    /// Any identifier over 63 bytes, in any statement: the name of a new table, column, index
    /// or constraint, and a reference to one.
    ///
    /// ## Why it hurts
    /// PostgreSQL truncates them silently, with at most a NOTICE: two long names that share 63
    /// bytes collide (`already exists`), and whatever names the object in full where no
    /// truncation happens — a string such as `'…'::regclass`, a catalog query, an ORM's schema
    /// check, another tool — does not find it. The migration that wrote the name works; a later
    /// one fails.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX index_on_customer_orders_by_created_at_and_status_and_region_for_reports ON orders (created_at);
    /// ```
    ///
    /// ## Instead
    /// Keep names to 63 bytes.
    pub struct IdentifierTooLong => "identifier-too-long", Error;
}

impl Rule for IdentifierTooLong {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        // The parser has already truncated long names in the tree: read the source tokens.
        if !has_long_word(&ctx.stmt.text) {
            return;
        }
        let Ok(scan) = pg_query::scan(&ctx.stmt.text) else {
            return;
        };
        let mut seen = Vec::new();
        for t in scan
            .tokens
            .iter()
            .filter(|t| t.token == pg_query::protobuf::Token::Ident as i32)
        {
            let raw = ctx
                .stmt
                .text
                .get(t.start as usize..t.end as usize)
                .unwrap_or("");
            let name = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .map_or_else(|| raw.to_lowercase(), |q| q.replace("\"\"", "\""));
            if name.len() > 63 && !seen.contains(&name) {
                out.push(ctx.finding(
                    &Self::META,
                    format!(
                        "`{name}` is {} bytes: PostgreSQL truncates it to 63",
                        name.len()
                    ),
                    "shorten it to 63 bytes",
                ));
                seen.push(name);
            }
        }
    }
}

/// Whether any run of identifier characters, or any quoted stretch, exceeds 63 bytes: a cheap
/// test before scanning the statement's tokens.
fn has_long_word(text: &str) -> bool {
    let mut run = 0usize;
    let mut quoted = false;
    for b in text.bytes() {
        if b == b'"' {
            quoted = !quoted;
            run = 0;
        } else if quoted || b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            run += 1;
            if run > 63 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_long_names() {
        let long = "a".repeat(64);
        fires(
            "identifier-too-long",
            &[],
            &format!("CREATE TABLE t ({long} int);"),
        );
    }

    #[test]
    fn silent_on_63_bytes() {
        let ok = "a".repeat(63);
        silent(
            "identifier-too-long",
            &[],
            &format!("CREATE TABLE t ({ok} int);"),
        );
    }
}
