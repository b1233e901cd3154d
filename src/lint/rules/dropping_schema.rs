use crate::lint::{Finding, Rule, StmtCtx};
use crate::model::{ObjectKind, Operation};

crate::declare_rule! {
    /// `DROP SCHEMA`.
    ///
    /// ## What it catches
    /// Dropping a schema.
    ///
    /// ## Why it hurts
    /// Everything in it goes (with CASCADE, silently): tables, data, functions the running
    /// version calls.
    ///
    /// ## Example
    /// ```sql
    /// DROP SCHEMA reporting CASCADE;
    /// ```
    ///
    /// ## Instead
    /// Drop the objects one by one in contract, once no deployed version uses them; then the
    /// empty schema without CASCADE.
    pub struct DroppingSchema => "dropping-schema", Warning;
}

impl Rule for DroppingSchema {
    fn meta(&self) -> &'static crate::lint::RuleMeta {
        &Self::META
    }

    fn check(&self, ctx: &StmtCtx, out: &mut Vec<Finding>) {
        for op in ctx.ops {
            if let Operation::Drop {
                kind: ObjectKind::Schema,
                names,
                cascade,
                ..
            } = op
            {
                for n in names {
                    out.push(ctx.finding(
                        &Self::META,
                        format!("dropping schema {}{} removes everything in it", n.name, if *cascade { " with CASCADE" } else { "" }),
                        "drop its objects one by one in contract, then the empty schema without CASCADE",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::*;

    #[test]
    fn fires_on_it() {
        fires("dropping-schema", &[], "DROP SCHEMA reporting CASCADE;");
    }

    #[test]
    fn silent_on_create() {
        silent("dropping-schema", &[], "CREATE SCHEMA reporting;");
    }
}
