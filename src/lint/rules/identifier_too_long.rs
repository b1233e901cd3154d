use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::Operation;

crate::declare_rule! {
    /// An identifier longer than PostgreSQL's 63-byte limit.
    ///
    /// ## What it catches
    /// Table, column, index and constraint names over 63 bytes.
    ///
    /// ## Why it hurts
    /// PostgreSQL truncates them silently: two long names can collide, and later migrations or
    /// code that use the full name do not find the object.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX index_on_customer_orders_by_created_at_and_status_and_region_for_reports ON orders (created_at);
    /// ```
    ///
    /// ## Instead
    /// Keep names to 63 bytes.
    pub struct IdentifierTooLong => "identifier-too-long", Info;
}

impl Rule for IdentifierTooLong {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        // The parser has already truncated long names in the tree: read the source tokens.
        let creates = ctx.ops.iter().any(|op| {
            matches!(
                op,
                Operation::CreateTable { .. }
                    | Operation::AddColumn { .. }
                    | Operation::CreateIndex(_)
                    | Operation::AddConstraint { .. }
                    | Operation::RenameTable { .. }
                    | Operation::RenameColumn { .. }
                    | Operation::RenameConstraint { .. }
                    | Operation::CreateView { .. }
                    | Operation::CreateTableAs { .. }
                    | Operation::CreateEnum { .. }
            )
        });
        if !creates {
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
