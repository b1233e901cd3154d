//! `migrate rules [ID]`: the rule list, one rule's documentation, or the whole reference.

use super::EXIT_OK;
use crate::error::Error;
use crate::lint::rules::{find, RULES};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// A rule id: print its documentation.
    pub id: Option<String>,
    /// `markdown` prints the full rule reference (docs/rules.md is generated from it).
    #[arg(long, value_enum, default_value = "table")]
    pub format: RulesFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    Table,
    Markdown,
}

/// The rule reference, generated from the rules' doc comments.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Rule reference\n\nGenerated from the rules' doc comments by `migrate rules --format markdown`; do not edit by hand.\n\n\
         Levels: **error** cannot be made safe automatically (the build fails); **warning** is unsafe as written (the plan makes it safe, or a person must look); **info** is style.\n\n\
         | rule | level | what it catches |\n|---|---|---|\n",
    );
    for r in RULES {
        let m = r.meta();
        s.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            m.id,
            m.id,
            m.level,
            m.summary().replace('|', "\\|")
        ));
    }
    for r in RULES {
        let m = r.meta();
        let doc = m.doc_markdown();
        let mut lines = doc.lines();
        let summary = lines.next().unwrap_or("");
        s.push_str(&format!(
            "\n## {}\n\nLevel: **{}**. {}\n",
            m.id, m.level, summary
        ));
        for line in lines {
            // Rule docs use `##` sections; nest them under the rule's heading.
            if let Some(h) = line.strip_prefix("## ") {
                s.push_str(&format!("### {h}\n"));
            } else {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s
}

pub fn run(args: RulesArgs) -> Result<u8, Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e| Error::io(std::path::Path::new("<stdout>"), e);
    if let Some(id) = args.id {
        let rule = find(&id).ok_or_else(|| {
            Error::Usage(format!(
                "there is no rule `{id}`; `migrate rules` lists them"
            ))
        })?;
        let m = rule.meta();
        writeln!(out, "{} ({})\n\n{}", m.id, m.level, m.doc_markdown()).map_err(io)?;
        out.flush().map_err(io)?;
        return Ok(EXIT_OK);
    }
    if args.format == RulesFormat::Markdown {
        write!(out, "{}", reference_markdown()).map_err(io)?;
        out.flush().map_err(io)?;
        return Ok(EXIT_OK);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["rule", "level", "what it catches"]);
    for r in RULES {
        let m = r.meta();
        table.add_row(vec![m.id.to_string(), m.level.to_string(), m.summary()]);
    }
    writeln!(
        out,
        "{table}\n{} rules; `migrate rules <id>` explains one.",
        RULES.len()
    )
    .map_err(io)?;
    Ok(EXIT_OK)
}
