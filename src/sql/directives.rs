//! `-- migrate:` directives: the one parser of the comments that steer how a file is read,
//! planned and run. Every directive is a whole comment whose text starts with `migrate:`.

use crate::vocab::Phase;

/// One directive, from a comment's text (markers and whitespace already trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive<'a> {
    /// `migrate:expand`, `migrate:backfill`, `migrate:contract`: the statements after it run in
    /// that phase.
    Phase(Phase),
    /// dbmate's `migrate:up`, with `transaction:false` when the file opts out of a transaction.
    Up { transaction: bool },
    /// dbmate's `migrate:down`: nothing after it is part of the migration.
    Down,
    /// `migrate:no-transaction`: the file runs outside a transaction.
    NoTransaction,
    /// `migrate:allow <rule> <reason>`: excuses that rule on the next statement.
    Allow { rule: &'a str, reason: &'a str },
    /// `migrate:<anything else>`: a directive this version does not know (often a typo).
    Unknown(&'a str),
}

/// The directive a comment holds, or None for an ordinary comment.
pub fn parse(comment: &str) -> Option<Directive<'_>> {
    let rest = comment.trim().strip_prefix("migrate:")?;
    let (word, args) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(w, a)| (w, a.trim()));
    Some(match word {
        "expand" if args.is_empty() => Directive::Phase(Phase::Expand),
        "backfill" if args.is_empty() => Directive::Phase(Phase::Backfill),
        "contract" if args.is_empty() => Directive::Phase(Phase::Contract),
        "down" => Directive::Down,
        "up" => Directive::Up {
            transaction: !args.split_whitespace().any(|a| a == "transaction:false"),
        },
        "no-transaction" if args.is_empty() => Directive::NoTransaction,
        "allow" => {
            let (rule, reason) = args
                .split_once(char::is_whitespace)
                .map_or((args, ""), |(r, why)| (r, why.trim()));
            Directive::Allow { rule, reason }
        }
        _ => Directive::Unknown(rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directive_and_the_ordinary_comments() {
        assert_eq!(
            parse("migrate:expand"),
            Some(Directive::Phase(Phase::Expand))
        );
        assert_eq!(
            parse(" migrate:contract "),
            Some(Directive::Phase(Phase::Contract))
        );
        assert_eq!(parse("migrate:down"), Some(Directive::Down));
        assert_eq!(
            parse("migrate:up transaction:false"),
            Some(Directive::Up { transaction: false })
        );
        assert_eq!(
            parse("migrate:up"),
            Some(Directive::Up { transaction: true })
        );
        assert_eq!(
            parse("migrate:no-transaction"),
            Some(Directive::NoTransaction)
        );
        assert_eq!(
            parse("migrate:allow truncate  lookup table, 10 rows"),
            Some(Directive::Allow {
                rule: "truncate",
                reason: "lookup table, 10 rows"
            })
        );
        assert_eq!(
            parse("migrate:allow truncate"),
            Some(Directive::Allow {
                rule: "truncate",
                reason: ""
            })
        );
        assert_eq!(
            parse("migrate:contrct"),
            Some(Directive::Unknown("contrct"))
        );
        assert_eq!(
            parse("migrate:expand now"),
            Some(Directive::Unknown("expand now"))
        );
        assert_eq!(parse("add the index"), None);
        assert_eq!(parse("see migrate: docs"), None);
    }
}
