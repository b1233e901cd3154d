//! No input makes `migrate plan` panic: random and mutated SQL through the whole pipeline and
//! every reporter. The generator is seeded, so a failure names the seed that reproduces it.

use migrate::analyze::analyze_sources;
use migrate::config::Settings;
use migrate::report::{self, Format, HumanOptions};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "'",
    "\"",
    "$$",
    "$a$",
    "$1",
    "/*",
    "*/",
    "--",
    ";",
    "\n",
    "(",
    ")",
    ",",
    "BEGIN",
    "BEGIN ATOMIC",
    "END",
    "CASE",
    "COMMIT",
    "ROLLBACK",
    "E'\\'",
    "U&'x'",
    "é",
    "日本",
    "\u{feff}",
    "CONCURRENTLY",
    "NOT VALID",
    "ALTER TABLE users",
    "ADD COLUMN",
    "DROP",
    "RENAME",
    "TO",
    "TYPE",
    "USING",
    "SET NOT NULL",
    "DEFAULT random()",
    "PRIMARY KEY",
    "REFERENCES users (id)",
    "CREATE INDEX",
    "ON",
    "-- migrate:allow renaming-column because",
    "-- migrate:expand",
    "-- migrate:backfill",
    "-- migrate:contract",
    "-- migrate:no-transaction",
    "-- migrate:down",
    "UPDATE users SET",
    "WHERE",
    "DO $$ BEGIN END $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql",
    "\"Weird \"\" Name\"",
    "VACUUM FULL",
    "LOCK TABLE",
    "TRUNCATE",
    "EXCLUDE USING gist (a WITH &&)",
    "GENERATED ALWAYS AS (1) STORED",
];

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        "migrations-example",
        "tests/fixtures/rejected",
        "tests/fixtures/syntax",
        "tests/fixtures/layouts/flyway",
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    assert!(out.len() >= 20);
    out
}

fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut s = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        let at = boundaries[rng.below(boundaries.len())];
        match rng.below(6) {
            0 => s.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]),
            1 => {
                let to = boundaries[rng.below(boundaries.len())];
                let (a, b) = (at.min(to), at.max(to));
                s.replace_range(a..b, "");
            }
            2 => s.truncate(at),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let ob: Vec<usize> = other
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([other.len()])
                    .collect();
                let cut = ob[rng.below(ob.len())];
                s.insert_str(at, &other[cut..]);
            }
            4 => {
                let to = boundaries[rng.below(boundaries.len())];
                let (a, b) = (at.min(to), at.max(to));
                let dup = s[a..b].to_string();
                s.insert_str(b, &dup);
            }
            _ => {
                let noise: String = (0..rng.below(40))
                    .map(|_| char::from_u32(rng.below(0x250) as u32).unwrap_or('x'))
                    .collect();
                s.insert_str(at, &noise);
            }
        }
    }
    s
}

fn check(sql: &str, case: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let context = ["CREATE TABLE users (id bigint PRIMARY KEY, name text, email varchar(10));"];
        let reports = analyze_sources(&context, sql, &Settings::default());
        let lines = sql.lines().count().max(1) + 1;
        for f in reports.iter().flat_map(|r| &r.findings) {
            assert!(f.line >= 1 && f.line <= lines && f.column >= 1, "{f:?}");
        }
        for format in [Format::Human, Format::Json, Format::Github, Format::Sarif] {
            let mut buf = Vec::new();
            report::write(
                format,
                &reports,
                HumanOptions {
                    color: true,
                    explain: true,
                },
                &mut buf,
            )
            .unwrap();
        }
    }));
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{case} panicked: {msg:?}\ninput:\n{sql}");
    }
}

#[test]
fn mutated_migrations_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..3000 {
        let sql = mutate(&mut rng, &seeds);
        check(&sql, &format!("mutation {i}"));
    }
}

#[test]
fn random_text_never_panics() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for i in 0..1000 {
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.below(256) as u8).collect();
        let sql = String::from_utf8_lossy(&bytes).into_owned();
        check(&sql, &format!("random {i}"));
    }
}
