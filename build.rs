//! Compiles the one C function migrate calls libpg_query's deparser through (it needs C's
//! sigsetjmp for PostgreSQL's error handling; see src/sql/reader/deparse.c).
fn main() {
    println!("cargo:rerun-if-changed=src/sql/reader/deparse.c");
    cc::Build::new()
        .file("src/sql/reader/deparse.c")
        .warnings(true)
        .compile("migrate_deparse");
}
