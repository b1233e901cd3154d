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
        // The parser has already truncated long names in the tree: the splitter found them in
        // the source (sql::split::LongIdentifier).
        let mut seen: Vec<&String> = Vec::new();
        for name in &ctx.stmt.long_identifiers {
            if !seen.contains(&name) {
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
