//! Finding migration files in the layouts teams already have, in order, with the transaction
//! each one runs in.
//!
//! Layouts: `0001_name.sql`, `0001_name.up.sql` (down files skipped), Flyway `V1__name.sql`
//! (undo `U1__` files skipped), and diesel's `<dir>/up.sql`. Files sort by name with numbers
//! compared as numbers, so `V2` comes before `V10`.

use crate::error::Error;
use crate::sql::SqlSource;
use serde::Serialize;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Whether a migration file runs inside one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransactionMode {
    /// The whole file is one transaction (the default of most runners).
    PerFile,
    /// Each statement commits on its own.
    None,
}

/// A migration file, read and parsed.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub path: PathBuf,
    /// The migration's name: the file stem, or the directory for diesel's `up.sql`.
    pub name: String,
    pub transaction: TransactionMode,
    /// Why the file runs outside a transaction, when it opted out itself.
    pub opt_out: Option<String>,
    pub source: SqlSource,
}

/// One migration found in a directory listing, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationEntry {
    pub path: PathBuf,
    pub name: String,
}

/// What `migrate plan PATH…` is asked to lint: one directory's migrations, in order, walked
/// once. Each is either reported on or, when it was not asked for, only replayed into the
/// catalog as context for the ones after it.
#[derive(Debug, Clone, Default)]
pub struct LintTarget {
    pub entries: Vec<TargetEntry>,
}

/// One migration of a [`LintTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub entry: MigrationEntry,
    /// Asked for: linted and reported. Otherwise it is context only.
    pub report: bool,
    /// What is known of the file before it is read.
    pub presence: Presence,
}

/// Whether a migration's file is known to exist before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The listing showed it, or a stat did.
    Seen,
    /// A sub-directory taken for a diesel migration without looking inside: a directory with no
    /// `up.sql` is no migration, which reading it finds out. That read runs on every core, where
    /// a stat per directory would run before any work can start (a tenth of a 286-migration
    /// project's lint).
    Assumed,
    /// Named on the command line and matched to an assumed one: missing, it is the error a
    /// missing file named always is.
    Named,
}

impl LintTarget {
    /// Every migration reported on, none only replayed.
    pub fn all(entries: Vec<MigrationEntry>) -> LintTarget {
        LintTarget::listed(entries.into_iter().map(|e| (e, Presence::Seen)).collect())
    }

    fn listed(entries: Vec<(MigrationEntry, Presence)>) -> LintTarget {
        LintTarget {
            entries: entries
                .into_iter()
                .map(|(entry, presence)| TargetEntry {
                    entry,
                    report: true,
                    presence,
                })
                .collect(),
        }
    }
}

/// Resolves command-line paths into lint targets. A directory lints all its migrations. Files
/// are grouped by their directory: each group is one walk over that directory in migration
/// order, reporting the files given and replaying the earlier ones as context, so the cost
/// grows with the directory, not with the directory times the files given.
pub fn resolve(paths: &[PathBuf]) -> Result<Vec<LintTarget>, Error> {
    let mut targets = Vec::new();
    // Files by directory, in the order each directory was first named.
    let mut groups: Vec<(Option<PathBuf>, Vec<MigrationEntry>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        // A `.sql` path is taken for a file, and found in its directory's listing; only one
        // the listing lacks costs a stat below. A CI step naming every file would otherwise
        // stat each of them once more, before any work can start.
        let named_sql = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"));
        if !named_sql {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                targets.push(LintTarget::listed(list(path, Subdirs::Assumed)?));
                continue;
            }
        }
        let (dir, me) = entry_for_file(path);
        if !seen.insert(me.path.clone()) {
            continue;
        }
        match groups.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, given)) => given.push(me),
            None => groups.push((dir, vec![me])),
        }
    }
    for (dir, given) in groups {
        let siblings = match &dir {
            // `x.sql` alone: its directory is the current one, its siblings named as it is.
            Some(d) if d.as_os_str().is_empty() => list(Path::new("."), Subdirs::Assumed)
                .unwrap_or_default()
                .into_iter()
                .map(|(e, presence)| {
                    let path = e
                        .path
                        .strip_prefix(".")
                        .map(Path::to_path_buf)
                        .unwrap_or(e.path);
                    (MigrationEntry { path, name: e.name }, presence)
                })
                .collect(),
            Some(d) => list(d, Subdirs::Assumed).unwrap_or_default(),
            None => Vec::new(),
        };
        // What the listing does not hold is looked at: it must exist, and a directory whose
        // name ends in `.sql` is linted as one.
        let listed: std::collections::HashSet<&Path> =
            siblings.iter().map(|(e, _)| e.path.as_path()).collect();
        let mut files = Vec::with_capacity(given.len());
        for me in given {
            if !listed.contains(me.path.as_path()) {
                let meta = std::fs::metadata(&me.path).map_err(|e| Error::io(&me.path, e))?;
                if meta.is_dir() {
                    targets.push(LintTarget::listed(list(&me.path, Subdirs::Assumed)?));
                    continue;
                }
            }
            files.push(me);
        }
        drop(listed);
        if !files.is_empty() {
            targets.push(walk_for(siblings, files));
        }
    }
    Ok(targets)
}

/// The walk over a directory's `siblings` that reports the `given` files: every sibling up to
/// the last file given, in order. A given file the listing does not hold (a name no layout
/// knows) takes its place by name.
fn walk_for(siblings: Vec<(MigrationEntry, Presence)>, given: Vec<MigrationEntry>) -> LintTarget {
    let wanted: std::collections::HashSet<&Path> = given.iter().map(|e| e.path.as_path()).collect();
    let mut entries: Vec<TargetEntry> = siblings
        .into_iter()
        .map(|(entry, presence)| {
            let report = wanted.contains(entry.path.as_path());
            TargetEntry {
                presence: match presence {
                    Presence::Assumed if report => Presence::Named,
                    other => other,
                },
                report,
                entry,
            }
        })
        .collect();
    let listed: std::collections::HashSet<PathBuf> = entries
        .iter()
        .filter(|e| e.report)
        .map(|e| e.entry.path.clone())
        .collect();
    for me in given {
        if !listed.contains(&me.path) {
            let at = entries
                .iter()
                .position(|e| natural_cmp(&e.entry.name, &me.name) == Ordering::Greater)
                .unwrap_or(entries.len());
            entries.insert(
                at,
                TargetEntry {
                    entry: me,
                    report: true,
                    presence: Presence::Seen,
                },
            );
        }
    }
    let last = entries.iter().rposition(|e| e.report).map_or(0, |i| i + 1);
    entries.truncate(last);
    LintTarget { entries }
}

fn entry_for_file(path: &Path) -> (Option<PathBuf>, MigrationEntry) {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file_name == "up.sql" {
        if let Some(parent) = path.parent() {
            let name = parent
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return (
                parent.parent().map(Path::to_path_buf),
                MigrationEntry {
                    path: path.to_path_buf(),
                    name,
                },
            );
        }
    }
    (
        path.parent().map(Path::to_path_buf),
        MigrationEntry {
            path: path.to_path_buf(),
            name: migration_name(&file_name),
        },
    )
}

/// The migrations of a directory, in order.
pub fn list_dir(dir: &Path) -> Result<Vec<MigrationEntry>, Error> {
    Ok(list(dir, Subdirs::Checked)?
        .into_iter()
        .map(|(e, _)| e)
        .collect())
}

/// Whether a listing looks inside each sub-directory for diesel's `up.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subdirs {
    /// A stat each: what the engine runs must exist.
    Checked,
    /// Taken for migrations, to be found out when read ([`Presence::Assumed`]).
    Assumed,
}

fn list(dir: &Path, subdirs: Subdirs) -> Result<Vec<(MigrationEntry, Presence)>, Error> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // The directory listing says what each entry is; only a symbolic link costs a stat.
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => path.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => path.is_dir(),
        };
        if is_dir {
            let up = path.join("up.sql");
            let presence = match subdirs {
                Subdirs::Assumed => Presence::Assumed,
                Subdirs::Checked if up.is_file() => Presence::Seen,
                Subdirs::Checked => continue,
            };
            let entry = MigrationEntry {
                path: up,
                name: file_name,
            };
            out.push((entry, presence));
        } else if is_up_migration(&file_name) {
            let entry = MigrationEntry {
                name: migration_name(&file_name),
                path,
            };
            out.push((entry, Presence::Seen));
        }
    }
    out.sort_by(|(a, _), (b, _)| natural_cmp(&a.name, &b.name));
    Ok(out)
}

fn is_up_migration(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    if !lower.ends_with(".sql") || lower.ends_with(".down.sql") || lower == "down.sql" {
        return false;
    }
    // Flyway undo migrations: U1__name.sql.
    let b = file_name.as_bytes();
    !(b.first() == Some(&b'U')
        && b.get(1).is_some_and(u8::is_ascii_digit)
        && file_name.contains("__"))
}

fn migration_name(file_name: &str) -> String {
    let stem = file_name
        .strip_suffix(".sql")
        .or_else(|| file_name.strip_suffix(".SQL"))
        .unwrap_or(file_name);
    stem.strip_suffix(".up").unwrap_or(stem).to_string()
}

/// Compares names with runs of digits compared as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Names in one folder share long prefixes (dates, numbers): skip what is the same, back to
    // the start of a number it ends inside, which is then compared whole.
    let mut same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while same > 0 && a[same - 1].is_ascii_digit() {
        same -= 1;
    }
    natural_cmp_from(&a[same..], &b[same..])
}

fn natural_cmp_from(mut a: &[u8], mut b: &[u8]) -> Ordering {
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da
                    .len()
                    .cmp(&db.len())
                    .then_with(|| da.cmp(db))
                    .then_with(|| na.cmp(&nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// Reads and parses a migration, deciding the transaction it runs in.
pub fn load(entry: &MigrationEntry, default_mode: TransactionMode) -> Result<MigrationFile, Error> {
    let bytes = read_file(&entry.path).map_err(|e| Error::io(&entry.path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8(entry.path.clone()))?;
    let opt_out = transaction_opt_out(&entry.path, &text);
    let transaction = if opt_out.is_some() {
        TransactionMode::None
    } else {
        default_mode
    };
    Ok(MigrationFile {
        path: entry.path.clone(),
        name: entry.name.clone(),
        transaction,
        opt_out,
        source: SqlSource::parse(text),
    })
}

/// A file's bytes: `std::fs::read` without its stat for the size, which a migration's few
/// kilobytes do not need (one system call of five per file, on a few hundred files). Read
/// through `take`, as a `File` itself would stat and seek to size its buffer.
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(16 << 10);
    std::fs::File::open(path)?
        .take(u64::MAX)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The runner-specific ways a file says it must not run in a transaction.
fn transaction_opt_out(path: &Path, text: &str) -> Option<String> {
    let first_line = text.lines().next().unwrap_or("").trim();
    if first_line == "-- no-transaction" {
        return Some("first line `-- no-transaction` (sqlx)".into());
    }
    use crate::sql::directives::{self, Directive};
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("--")) {
        match directives::parse(line.trim_start_matches('-')) {
            Some(Directive::NoTransaction) => {
                return Some("`-- migrate:no-transaction`".into());
            }
            Some(Directive::Up { transaction: false }) => {
                return Some("`-- migrate:up transaction:false` (dbmate)".into());
            }
            _ => {}
        }
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file_name.contains(".autocommit.") {
        return Some("`.autocommit.` in the file name".into());
    }
    if file_name == "up.sql" {
        if let Some(meta) = path.parent().map(|p| p.join("metadata.toml")) {
            if let Ok(s) = std::fs::read_to_string(&meta) {
                if let Ok(v) = s.parse::<toml::Table>() {
                    if v.get("run_in_transaction").and_then(toml::Value::as_bool) == Some(false) {
                        return Some(
                            "`run_in_transaction = false` in metadata.toml (diesel)".into(),
                        );
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_holds_where_names_share_a_prefix() {
        let names = [
            "a9",
            "a10",
            "a010",
            "a01",
            "a1",
            "a1b",
            "a1a",
            "2017-08-31-230457_x",
            "2017-08-31-23045_x",
            "2017-8-31",
            "007",
            "07",
            "7",
            "70",
            "",
            "x",
            "x0",
            "x00",
            "V1__a",
            "V10__a",
            "V2__a",
        ];
        // The full comparison, segment by segment from the start.
        for a in names {
            for b in names {
                assert_eq!(
                    natural_cmp(a, b),
                    natural_cmp_from(a.as_bytes(), b.as_bytes()),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["V10__c", "V2__b", "V1__a", "0002_x", "0010_y", "0001_z"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec!["0001_z", "0002_x", "0010_y", "V1__a", "V2__b", "V10__c"]
        );
    }

    #[test]
    fn up_and_down_files() {
        assert!(is_up_migration("0001_x.sql"));
        assert!(is_up_migration("0001_x.up.sql"));
        assert!(is_up_migration("V1__x.sql"));
        assert!(!is_up_migration("0001_x.down.sql"));
        assert!(!is_up_migration("U1__x.sql"));
        assert!(!is_up_migration("notes.txt"));
        assert_eq!(migration_name("0001_x.up.sql"), "0001_x");
    }
}
