//! Every form of each hazard, settled on a live server.
//!
//! Each form is a statement PostgreSQL accepts, written one of the ways teams write it (inline
//! column constraints, several actions in one ALTER TABLE, a check that proves NOT NULL through a
//! conjunction…), with what PostgreSQL does with it. The test holds both sides to that:
//! - the linter: the rule fires or stays silent, and the locks it claims for the statement
//!   (level, and whether it rewrites, scans or only changes the catalog) are the ones written;
//! - the server: run on a table of 100 rows inside a transaction that is rolled back, a new
//!   relfilenode proves a rewrite, a `seq_scan` delta in `pg_stat_xact_user_tables` a scan, and
//!   `pg_locks` the strongest lock taken; a form that PostgreSQL refuses fails with its SQLSTATE.
//!
//! The server's major version is the target the linter is told (`scripts/test-pg-versions.sh`
//! runs this on 13 to 18).

mod common;

use common::TestDb;
use migrate::analyze::{analyze_sources, claimed_locks};
use migrate::config::{AppliedBy, Settings};
use migrate::model::locks::{LockHold, LockLevel};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row};

/// What a form does to table `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Does {
    /// The catalog only, under this lock.
    Brief(LockLevel),
    /// A read of every row, under this lock.
    Scan(LockLevel),
    /// A new copy of the table and its indexes, under ACCESS EXCLUSIVE.
    Rewrite,
    /// Rows written (and read as its WHERE says), under this lock.
    Rows(LockLevel),
    /// PostgreSQL refuses it, with this SQLSTATE.
    Fails(&'static str),
}

use Does::*;
use LockLevel::*;

#[derive(Clone, Copy)]
struct Form {
    rule: &'static str,
    form: &'static str,
    /// The relation whose lock, storage and scans are measured and claimed.
    table: &'static str,
    /// Linted as files another runner applies (`applied_by = "other"`).
    other_runner: bool,
    /// Run after BASE, in an earlier migration.
    setup: &'static str,
    sql: &'static str,
    fires: bool,
    does: Does,
    /// The first PostgreSQL major that reads it. On an older server the form is held to that
    /// instead: PostgreSQL refuses it as a syntax error, and syntax-newer-than-target fires.
    since: u32,
}

/// Every form starts from these tables, with rows.
const BASE: &str = "CREATE TABLE u (id int PRIMARY KEY);
INSERT INTO u VALUES (1);
CREATE TABLE t (id int PRIMARY KEY, a int, b int, s varchar(50), tags text[]);
INSERT INTO t SELECT g, 1, g, 'x', '{a}' FROM generate_series(1, 100) g;";

const fn form(
    rule: &'static str,
    form: &'static str,
    setup: &'static str,
    sql: &'static str,
    fires: bool,
    does: Does,
) -> Form {
    Form {
        rule,
        form,
        table: "t",
        other_runner: false,
        setup,
        sql,
        fires,
        does,
        since: 13,
    }
}

/// A form PostgreSQL reads from `major` on.
const fn since(major: u32, f: Form) -> Form {
    Form { since: major, ..f }
}

/// A form measured on another relation than `t`.
const fn on(table: &'static str, f: Form) -> Form {
    Form { table, ..f }
}

/// A form linted as a file another runner applies.
const fn other_runner(f: Form) -> Form {
    Form {
        other_runner: true,
        ..f
    }
}

const FORMS: &[Form] = &[
    // CHECK and FOREIGN KEY validation.
    form(
        "constraint-missing-not-valid",
        "ADD CONSTRAINT CHECK",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "ADD CONSTRAINT CHECK NOT VALID",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "CHECK written on a new column: scanned though all NULL",
        "",
        "ALTER TABLE t ADD COLUMN x int CHECK (x > 0)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "CHECK on a new column with a default",
        "",
        "ALTER TABLE t ADD COLUMN x int DEFAULT 0 CHECK (x >= 0)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "ADD CONSTRAINT FOREIGN KEY",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id)",
        true,
        Scan(ShareRowExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "FOREIGN KEY NOT VALID",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
        false,
        Brief(ShareRowExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "REFERENCES on a new column without default: nothing to check",
        "",
        "ALTER TABLE t ADD COLUMN u_id int REFERENCES u (id)",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "constraint-missing-not-valid",
        "REFERENCES on a new column with a default: checked",
        "",
        "ALTER TABLE t ADD COLUMN u_id int DEFAULT 1 REFERENCES u (id)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "validate-in-same-transaction",
        "ADD … NOT VALID, VALIDATE in one statement",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID, VALIDATE CONSTRAINT t_a_pos",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "validate-in-same-transaction",
        "VALIDATE alone",
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID;",
        "ALTER TABLE t VALIDATE CONSTRAINT t_a_pos",
        false,
        Scan(ShareUpdateExclusive),
    ),
    // SET NOT NULL and the checks that prove it.
    form(
        "setting-not-null",
        "SET NOT NULL",
        "",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "setting-not-null",
        "over a validated CHECK (a IS NOT NULL)",
        "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL);",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "setting-not-null",
        "over a validated conjunction",
        "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a > 0 AND a IS NOT NULL);",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "setting-not-null",
        "over a disjunction: proves nothing",
        "ALTER TABLE t ADD CONSTRAINT t_ab_nn CHECK (a IS NOT NULL OR b IS NOT NULL);",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "setting-not-null",
        "over a NOT VALID check",
        "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "setting-not-null",
        "on a column added by the same statement",
        "",
        "ALTER TABLE t ADD COLUMN x int DEFAULT 0, ALTER COLUMN x SET NOT NULL",
        true,
        Scan(AccessExclusive),
    ),
    // Adding columns.
    form(
        "adding-required-field",
        "NOT NULL without a default on a table with rows",
        "",
        "ALTER TABLE t ADD COLUMN x int NOT NULL",
        true,
        Fails("23502"),
    ),
    form(
        "adding-required-field",
        "NOT NULL with a default",
        "",
        "ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 0",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "adding-field-with-volatile-default",
        "volatile default",
        "",
        "ALTER TABLE t ADD COLUMN x uuid DEFAULT gen_random_uuid()",
        true,
        Rewrite,
    ),
    form(
        "adding-field-with-volatile-default",
        "stable default, evaluated once",
        "",
        "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT now()",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "adding-field-with-volatile-default",
        "constant default",
        "",
        "ALTER TABLE t ADD COLUMN x int DEFAULT 0",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "adding-serial-column",
        "serial",
        "",
        "ALTER TABLE t ADD COLUMN x serial",
        true,
        Rewrite,
    ),
    form(
        "adding-serial-column",
        "identity",
        "",
        "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS IDENTITY",
        true,
        Rewrite,
    ),
    form(
        "adding-stored-generated-column",
        "stored generated",
        "",
        "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED",
        true,
        Rewrite,
    ),
    form(
        "multiple-alter-table",
        "two cheap actions in one statement",
        "",
        "ALTER TABLE t ADD COLUMN x int, ADD COLUMN y int DEFAULT 1",
        false,
        Brief(AccessExclusive),
    ),
    // Unique constraints and indexes.
    form(
        "unique-constraint-without-index",
        "ADD UNIQUE",
        "",
        "ALTER TABLE t ADD UNIQUE (b)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "unique-constraint-without-index",
        "UNIQUE written on a new column",
        "",
        "ALTER TABLE t ADD COLUMN x int UNIQUE",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "unique-constraint-without-index",
        "UNIQUE USING INDEX",
        "CREATE UNIQUE INDEX t_b_key ON t (b);",
        "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE USING INDEX t_b_key",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "require-concurrent-index-creation",
        "CREATE INDEX",
        "",
        "CREATE INDEX t_b_idx ON t (b)",
        true,
        Scan(Share),
    ),
    // Type changes.
    form(
        "changing-column-type",
        "int to bigint",
        "",
        "ALTER TABLE t ALTER COLUMN a TYPE bigint",
        true,
        Rewrite,
    ),
    form(
        "changing-column-type",
        "int to numeric",
        "",
        "ALTER TABLE t ALTER COLUMN a TYPE numeric",
        true,
        Rewrite,
    ),
    form(
        "changing-column-type",
        "varchar widened",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE varchar(100)",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "changing-column-type",
        "varchar to text",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE text",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "changing-column-type",
        "beside another action",
        "",
        "ALTER TABLE t ADD COLUMN x int, ALTER COLUMN a TYPE bigint",
        true,
        Rewrite,
    ),
    form(
        "changing-column-type",
        "varchar narrowed",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE varchar(20)",
        true,
        Rewrite,
    ),
    form(
        "changing-column-type",
        "varchar widened with a USING that only relabels",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE varchar(100) USING s::varchar(100)",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "changing-column-type",
        "a USING that computes",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE varchar(100) USING upper(s)",
        true,
        Rewrite,
    ),
    // Renames, drops and other catalog-only changes that still take ACCESS EXCLUSIVE.
    form(
        "renaming-column",
        "RENAME COLUMN",
        "",
        "ALTER TABLE t RENAME COLUMN b TO c",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "renaming-table",
        "RENAME TO",
        "",
        "ALTER TABLE t RENAME TO t_renamed",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "dropping-column",
        "DROP COLUMN",
        "",
        "ALTER TABLE t DROP COLUMN b",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "dropping-not-null",
        "DROP NOT NULL",
        "ALTER TABLE t ALTER COLUMN b SET NOT NULL;",
        "ALTER TABLE t ALTER COLUMN b DROP NOT NULL",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "adding-field-with-volatile-default",
        "SET DEFAULT of a volatile function: new rows only",
        "",
        "ALTER TABLE t ALTER COLUMN b SET DEFAULT (random() * 100)::int",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "require-concurrent-index-deletion",
        "DROP INDEX",
        "CREATE INDEX t_b_idx ON t (b);",
        "DROP INDEX t_b_idx",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "unique-constraint-without-index",
        "PRIMARY KEY USING INDEX over a nullable column",
        "ALTER TABLE t DROP CONSTRAINT t_pkey; CREATE UNIQUE INDEX t_b_key ON t (b);",
        "ALTER TABLE t ADD PRIMARY KEY USING INDEX t_b_key",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "adding-exclusion-constraint",
        "EXCLUDE",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_b_excl EXCLUDE (b WITH =)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "lock-table",
        "LOCK TABLE",
        "",
        "LOCK TABLE t IN SHARE MODE",
        true,
        Brief(Share),
    ),
    // Row security and triggers: no rows touched, and the running version still breaks.
    form(
        "changing-row-level-security",
        "ENABLE ROW LEVEL SECURITY",
        "",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "changing-row-level-security",
        "DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY;",
        "ALTER TABLE t DISABLE ROW LEVEL SECURITY",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "disabling-triggers",
        "DISABLE TRIGGER ALL",
        "",
        "ALTER TABLE t DISABLE TRIGGER ALL",
        true,
        Brief(ShareRowExclusive),
    ),
    form(
        "disabling-triggers",
        "DISABLE TRIGGER USER",
        "",
        "ALTER TABLE t DISABLE TRIGGER USER",
        true,
        Brief(ShareRowExclusive),
    ),
    form(
        "disabling-triggers",
        "ENABLE TRIGGER ALL",
        "",
        "ALTER TABLE t ENABLE TRIGGER ALL",
        false,
        Brief(ShareRowExclusive),
    ),
    form(
        "adding-identity",
        "ADD GENERATED ALWAYS AS IDENTITY",
        "",
        "ALTER TABLE t ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "adding-identity",
        "ADD GENERATED BY DEFAULT AS IDENTITY, no START",
        "",
        "ALTER TABLE t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "adding-identity",
        "ADD GENERATED BY DEFAULT AS IDENTITY (START WITH …)",
        "",
        "ALTER TABLE t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH 1000)",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "truncate",
        "TRUNCATE: new, empty storage, no row read",
        "",
        "TRUNCATE t",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "cluster",
        "CLUSTER",
        "",
        "CLUSTER t USING t_pkey",
        true,
        Rewrite,
    ),
    form(
        "dropping-constraint",
        "DROP CONSTRAINT of a unique key the running version may rely on",
        "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b);",
        "ALTER TABLE t DROP CONSTRAINT t_b_key",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "dropping-constraint",
        "DROP CONSTRAINT of a CHECK",
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0);",
        "ALTER TABLE t DROP CONSTRAINT t_a_pos",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "require-concurrent-reindex",
        "REINDEX INDEX",
        "CREATE INDEX t_b_idx ON t (b);",
        "REINDEX INDEX t_b_idx",
        true,
        Scan(Share),
    ),
    form(
        "table-rewrite",
        "SET UNLOGGED",
        "",
        "ALTER TABLE t SET UNLOGGED",
        true,
        Rewrite,
    ),
    form(
        "require-concurrent-reindex",
        "REINDEX TABLE",
        "",
        "REINDEX TABLE t",
        true,
        Scan(Share),
    ),
    form(
        "multiple-alter-table",
        "two ALTERs of one table",
        "",
        "ALTER TABLE t ADD COLUMN x int; ALTER TABLE t ADD COLUMN y int",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "statement-after-access-exclusive",
        "an index build after an ALTER, in one transaction",
        "",
        "ALTER TABLE t ADD COLUMN x int; CREATE INDEX t_b_idx ON t (b)",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "backfill-in-ddl-transaction",
        "an UPDATE after the ALTER that added its column",
        "",
        "ALTER TABLE t ADD COLUMN x int; UPDATE t SET x = b",
        true,
        Scan(AccessExclusive),
    ),
    form(
        "concurrently-in-transaction",
        "CREATE INDEX CONCURRENTLY in the file's transaction",
        "",
        "CREATE INDEX CONCURRENTLY t_b_idx ON t (b)",
        true,
        Fails("25001"),
    ),
    // A table created in the same migration is new and empty: nothing to scan, nobody to block.
    form("constraint-missing-not-valid", "CHECK on a table this migration creates", "",
        "CREATE TABLE t2 (id int PRIMARY KEY, a int); ALTER TABLE t2 ADD CONSTRAINT t2_a_pos CHECK (a > 0)", false, Brief(AccessShare)),
    form("require-concurrent-index-creation", "index on a table this migration creates", "",
        "CREATE TABLE t2 (id int PRIMARY KEY, a int); CREATE INDEX t2_a_idx ON t2 (a)", false, Brief(AccessShare)),
    form("setting-not-null", "SET NOT NULL on a table this migration creates as a copy of a live one", "",
        "CREATE TABLE t2 (LIKE t INCLUDING DEFAULTS); ALTER TABLE t2 ALTER COLUMN a SET NOT NULL", false, Brief(AccessShare)),
    form("dropping-table", "DROP TABLE", "",
        "DROP TABLE t", true, Brief(AccessExclusive)),
    form("vacuum-full", "VACUUM FULL: no transaction may hold it", "",
        "VACUUM FULL t", true, Fails("25001")),
    form("domain-constraint", "a CHECK added to a domain a live column uses", "CREATE DOMAIN positive AS int; ALTER TABLE t ADD COLUMN p positive;",
        "ALTER DOMAIN positive ADD CONSTRAINT positive_check CHECK (VALUE > 0)", true, Scan(Share)),
    // What PostgreSQL refuses at run time.
    form(
        "fails-at-run-time",
        "UPDATE assigns a column twice",
        "",
        "UPDATE t SET a = 1, a = 2",
        true,
        Fails("42601"),
    ),
    form(
        "fails-at-run-time",
        "UPDATE of two elements of one array",
        "",
        "UPDATE t SET tags[1] = 'x', tags[2] = 'y'",
        false,
        Rows(RowExclusive),
    ),
    form(
        "fails-at-run-time",
        "INSERT names a column twice",
        "",
        "INSERT INTO t (id, a, id) VALUES (1000, 1, 1001)",
        true,
        Fails("42701"),
    ),
    form(
        "fails-at-run-time",
        "ADD COLUMN twice in one statement",
        "",
        "ALTER TABLE t ADD COLUMN x int, ADD COLUMN x int",
        true,
        Fails("42701"),
    ),
    form(
        "fails-at-run-time",
        "ADD COLUMN of an existing column",
        "",
        "ALTER TABLE t ADD COLUMN a int",
        true,
        Fails("42701"),
    ),
    form(
        "fails-at-run-time",
        "ADD COLUMN IF NOT EXISTS of an existing column",
        "",
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "fails-at-run-time",
        "ADD PRIMARY KEY to a table that has one",
        "",
        "ALTER TABLE t ADD PRIMARY KEY (b)",
        true,
        Fails("42P16"),
    ),
    form(
        "fails-at-run-time",
        "ADD COLUMN … PRIMARY KEY on a table that has one",
        "",
        "ALTER TABLE t ADD COLUMN k int PRIMARY KEY",
        true,
        Fails("42P16"),
    ),
    form(
        "fails-at-run-time",
        "DROP CONSTRAINT of the old key, ADD PRIMARY KEY, in one statement",
        "",
        "ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (id, b)",
        false,
        Scan(AccessExclusive),
    ),
    form(
        "fails-at-run-time",
        "CREATE TABLE with a column key and a table key",
        "",
        "CREATE TABLE k2 (id int PRIMARY KEY, b int, PRIMARY KEY (b))",
        true,
        Fails("42P16"),
    ),
    other_runner(on(
        "p",
        form(
            "fails-at-run-time",
            "PRIMARY KEY USING INDEX on a partitioned table",
            "CREATE TABLE p (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
             CREATE UNIQUE INDEX p_id_at ON p (id, at);",
            "ALTER TABLE p ADD CONSTRAINT p_pkey PRIMARY KEY USING INDEX p_id_at",
            true,
            Fails("0A000"),
        ),
    )),
    other_runner(form(
        "fails-at-run-time",
        "UNIQUE USING INDEX on a table not partitioned",
        "CREATE UNIQUE INDEX t_b_key ON t (b);",
        "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE USING INDEX t_b_key",
        false,
        Brief(AccessExclusive),
    )),
    form(
        "identifier-too-long",
        "a 64-byte index name",
        "",
        "CREATE INDEX index_on_t_by_b_for_the_nightly_report_that_finance_reads_every_day ON t (b)",
        true,
        Scan(Share),
    ),
    // Foreign keys and the index a delete on the referenced table needs.
    form(
        "fk-without-index",
        "FOREIGN KEY NOT VALID on an unindexed column",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
        true,
        Brief(ShareRowExclusive),
    ),
    form(
        "fk-without-index",
        "on a column with an index",
        "CREATE INDEX t_a ON t (a);",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
        false,
        Brief(ShareRowExclusive),
    ),
    form(
        "fk-without-index",
        "the index made later in the same migration",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID; CREATE INDEX t_a ON t (a)",
        false,
        Scan(ShareRowExclusive),
    ),
    form(
        "fk-without-index",
        "an index whose first column is another",
        "CREATE INDEX t_b_a ON t (b, a);",
        "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
        true,
        Brief(ShareRowExclusive),
    ),
    form(
        "fk-without-index",
        "on the primary key's column",
        "",
        "ALTER TABLE t ADD CONSTRAINT t_id_fk FOREIGN KEY (id) REFERENCES u (id) NOT VALID",
        false,
        Brief(ShareRowExclusive),
    ),
    form(
        "fk-without-index",
        "REFERENCES on a new column",
        "",
        "ALTER TABLE t ADD COLUMN u_id int REFERENCES u (id)",
        true,
        Brief(AccessExclusive),
    ),
    // Index width.
    form(
        "index-too-many-columns",
        "four key columns",
        "",
        "CREATE INDEX t_wide ON t (id, a, b, s)",
        true,
        Scan(Share),
    ),
    form(
        "index-too-many-columns",
        "three key columns and INCLUDE",
        "",
        "CREATE INDEX t_wide ON t (id, a, b) INCLUDE (s)",
        false,
        Scan(Share),
    ),
    // Types that age badly: the column is added without a rewrite either way.
    form(
        "prefer-text-field",
        "ADD COLUMN varchar(n)",
        "",
        "ALTER TABLE t ADD COLUMN x varchar(20)",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-text-field",
        "ADD COLUMN varchar without a length",
        "",
        "ALTER TABLE t ADD COLUMN x varchar",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-text-field",
        "retyped to a longer varchar(n): no rewrite",
        "",
        "ALTER TABLE t ALTER COLUMN s TYPE varchar(100)",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "ban-char-field",
        "ADD COLUMN char(n)",
        "",
        "ALTER TABLE t ADD COLUMN c char(2)",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "ban-char-field",
        "character varying is not char",
        "",
        "ALTER TABLE t ADD COLUMN c character varying",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-timestamptz",
        "ADD COLUMN timestamp",
        "",
        "ALTER TABLE t ADD COLUMN at timestamp",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-timestamptz",
        "timestamp with time zone",
        "",
        "ALTER TABLE t ADD COLUMN at timestamp with time zone",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-jsonb",
        "ADD COLUMN json",
        "",
        "ALTER TABLE t ADD COLUMN j json",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-jsonb",
        "ADD COLUMN jsonb",
        "",
        "ALTER TABLE t ADD COLUMN j jsonb",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-bigint",
        "an int …_id column",
        "",
        "ALTER TABLE t ADD COLUMN owner_id int",
        true,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-bigint",
        "an int column that is no key",
        "",
        "ALTER TABLE t ADD COLUMN visits int",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "prefer-identity",
        "ADD COLUMN bigserial: every row gets a value",
        "",
        "ALTER TABLE t ADD COLUMN n bigserial",
        true,
        Rewrite,
    ),
    form(
        "prefer-identity",
        "ADD COLUMN … GENERATED AS IDENTITY: a rewrite as well",
        "",
        "ALTER TABLE t ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY",
        false,
        Rewrite,
    ),
    // Partitions and materialized views, measured on the relation the statement locks.
    on(
        "p",
        form(
            "require-concurrent-detach",
            "DETACH PARTITION",
            "CREATE TABLE p (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
             INSERT INTO p VALUES (1, '2020-02-02');",
            "ALTER TABLE p DETACH PARTITION p1",
            true,
            Brief(AccessExclusive),
        ),
    ),
    on(
        "mv",
        form(
            "refresh-matview-concurrently",
            "REFRESH MATERIALIZED VIEW: new storage, filled",
            "CREATE MATERIALIZED VIEW mv AS SELECT id, a FROM t;",
            "REFRESH MATERIALIZED VIEW mv",
            true,
            Rewrite,
        ),
    ),
    on(
        "mv",
        form(
            "refresh-matview-concurrently",
            "REFRESH … CONCURRENTLY: a diff applied in place, reads go on",
            "CREATE MATERIALIZED VIEW mv AS SELECT id, a FROM t; CREATE UNIQUE INDEX mv_id ON mv (id);",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            false,
            Scan(Exclusive),
        ),
    ),
    // Names the server does not know, and text it cannot read. Offline, a table or column
    // the files do not show may still exist (created before the files began, or by hand), so
    // unknown-table-or-column speaks only from a live catalog (tests/live_catalog.rs).
    form(
        "unknown-table-or-column",
        "DROP COLUMN of a column that is not there: the rule needs the live catalog",
        "",
        "ALTER TABLE t DROP COLUMN nope",
        false,
        Fails("42703"),
    ),
    form(
        "unknown-table-or-column",
        "DROP COLUMN IF EXISTS of a column that is not there",
        "",
        "ALTER TABLE t DROP COLUMN IF EXISTS nope",
        false,
        Brief(AccessExclusive),
    ),
    form(
        "unknown-table-or-column",
        "an index on a table that is not there: the rule needs the live catalog",
        "",
        "CREATE INDEX nope_a ON nope (a)",
        false,
        Fails("42P01"),
    ),
    form(
        "syntax-error",
        "ADD COLUMN without a column",
        "",
        "ALTER TABLE t ADD COLUMN",
        true,
        Fails("42601"),
    ),
    // Schemas, databases and types: objects above or beside the table.
    form(
        "renaming-enum-value",
        "RENAME VALUE of a type a column uses: no lock on the table",
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); ALTER TABLE t ADD COLUMN m mood;",
        "ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'",
        true,
        Brief(AccessShare),
    ),
    on(
        "archive.x",
        form(
            "dropping-schema",
            "DROP SCHEMA … CASCADE drops its tables",
            "CREATE SCHEMA archive; CREATE TABLE archive.x (id int); INSERT INTO archive.x VALUES (1);",
            "DROP SCHEMA archive CASCADE",
            true,
            Brief(AccessExclusive),
        ),
    ),
    on(
        "attic.x",
        form(
            "renaming-schema",
            "RENAME of a schema: no lock on its tables",
            "CREATE SCHEMA attic; CREATE TABLE attic.x (id int);",
            "ALTER SCHEMA attic RENAME TO loft",
            true,
            Brief(AccessShare),
        ),
    ),
    form(
        "dropping-database",
        "DROP DATABASE, refused in a transaction",
        "",
        "DROP DATABASE nope",
        true,
        Fails("25001"),
    ),
    // Files another runner applies: nothing bounds their lock waits unless they say so.
    other_runner(form(
        "missing-timeouts",
        "ADD COLUMN with no lock_timeout",
        "",
        "ALTER TABLE t ADD COLUMN x int",
        true,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "missing-timeouts",
        "after SET lock_timeout",
        "",
        "SET lock_timeout = '100ms'; ALTER TABLE t ADD COLUMN x int",
        false,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "missing-timeouts",
        "after SET lock_timeout = 0, which is off",
        "",
        "SET lock_timeout = 0; ALTER TABLE t ADD COLUMN x int",
        true,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "missing-timeouts",
        "after RESET lock_timeout",
        "",
        "SET lock_timeout = '100ms'; RESET lock_timeout; ALTER TABLE t ADD COLUMN x int",
        true,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "missing-timeouts",
        "a scan under the lock with no statement_timeout",
        "",
        "SET lock_timeout = '100ms'; ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        true,
        Scan(AccessExclusive),
    )),
    other_runner(form(
        "missing-timeouts",
        "both timeouts set",
        "",
        "SET lock_timeout = '100ms'; SET statement_timeout = '1min'; ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        false,
        Scan(AccessExclusive),
    )),
    // Reruns after a failure, in files another runner applies outside a transaction.
    other_runner(form(
        "prefer-robust-statements",
        "ADD COLUMN outside a transaction",
        "",
        "-- migrate:no-transaction\nALTER TABLE t ADD COLUMN x int",
        true,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "prefer-robust-statements",
        "ADD COLUMN IF NOT EXISTS outside a transaction",
        "",
        "-- migrate:no-transaction\nALTER TABLE t ADD COLUMN IF NOT EXISTS x int",
        false,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "prefer-robust-statements",
        "CREATE INDEX outside a transaction",
        "",
        "-- migrate:no-transaction\nCREATE INDEX t_b ON t (b)",
        true,
        Scan(Share),
    )),
    other_runner(form(
        "prefer-robust-statements",
        "ADD COLUMN in a file the runner wraps in a transaction",
        "",
        "ALTER TABLE t ADD COLUMN x int",
        false,
        Brief(AccessExclusive),
    )),
    other_runner(form(
        "prefer-robust-statements",
        "DROP INDEX IF EXISTS outside a transaction",
        "CREATE INDEX t_b ON t (b);",
        "-- migrate:no-transaction\nDROP INDEX IF EXISTS t_b",
        false,
        Brief(AccessExclusive),
    )),
    // Syntax of a newer PostgreSQL: on older servers each is held to the syntax error.
    since(
        15,
        form(
            "syntax-newer-than-target",
            "CREATE UNIQUE INDEX … NULLS NOT DISTINCT",
            "",
            "CREATE UNIQUE INDEX t_b_nnd ON t (b) NULLS NOT DISTINCT",
            false,
            Scan(Share),
        ),
    ),
    since(
        15,
        form(
            "syntax-newer-than-target",
            "ADD CONSTRAINT UNIQUE NULLS NOT DISTINCT",
            "",
            "ALTER TABLE t ADD CONSTRAINT t_b_nnd UNIQUE NULLS NOT DISTINCT (b)",
            false,
            Scan(AccessExclusive),
        ),
    ),
    since(
        15,
        form(
            "syntax-newer-than-target",
            "MERGE",
            "",
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DO NOTHING",
            false,
            Rows(RowExclusive),
        ),
    ),
    since(
        14,
        form(
            "syntax-newer-than-target",
            "CREATE OR REPLACE TRIGGER",
            "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
            "CREATE OR REPLACE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch()",
            false,
            Brief(ShareRowExclusive),
        ),
    ),
    since(
        18,
        form(
            "syntax-newer-than-target",
            "ADD COLUMN … GENERATED ALWAYS AS (…) VIRTUAL",
            "",
            "ALTER TABLE t ADD COLUMN twice int GENERATED ALWAYS AS (a * 2) VIRTUAL",
            false,
            Brief(AccessExclusive),
        ),
    ),
    form(
        "syntax-newer-than-target",
        "ALTER COLUMN … DROP EXPRESSION, read since 13",
        "ALTER TABLE t ADD COLUMN twice int GENERATED ALWAYS AS (a * 2) STORED;",
        "ALTER TABLE t ALTER COLUMN twice DROP EXPRESSION",
        false,
        Brief(AccessExclusive),
    ),
    since(
        17,
        form(
            "table-rewrite",
            "ALTER COLUMN … SET EXPRESSION of a stored generated column",
            "ALTER TABLE t ADD COLUMN twice int GENERATED ALWAYS AS (a * 2) STORED;",
            "ALTER TABLE t ALTER COLUMN twice SET EXPRESSION AS (a * 3)",
            true,
            Rewrite,
        ),
    ),
    on(
        "p",
        since(
            14,
            form(
                "syntax-newer-than-target",
                "DETACH PARTITION … CONCURRENTLY, which no transaction takes",
                "CREATE TABLE p (id int, at date) PARTITION BY RANGE (at);
                 CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');",
                "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
                false,
                Fails("25001"),
            ),
        ),
    ),
    since(
        18,
        form(
            "constraint-missing-not-valid",
            "ADD CONSTRAINT … NOT NULL c: a scan, as SET NOT NULL",
            "",
            "ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a",
            true,
            Scan(AccessExclusive),
        ),
    ),
    since(
        18,
        form(
            "constraint-missing-not-valid",
            "ADD CONSTRAINT … NOT NULL c NOT VALID",
            "",
            "ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a NOT VALID",
            false,
            Brief(AccessExclusive),
        ),
    ),
    since(
        18,
        form(
            "constraint-missing-not-valid",
            "CHECK … NOT ENFORCED: no row read",
            "",
            "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT ENFORCED",
            false,
            Brief(AccessExclusive),
        ),
    ),
    since(
        15,
        form(
            "syntax-newer-than-target",
            "FOREIGN KEY … ON DELETE SET NULL (columns)",
            "",
            "ALTER TABLE t ADD CONSTRAINT t_a_fk FOREIGN KEY (a) REFERENCES u (id) ON DELETE SET NULL (a) NOT VALID",
            false,
            Brief(ShareRowExclusive),
        ),
    ),
    // Transactions written in the file.
    form(
        "transaction-nesting",
        "BEGIN in a file the runner wraps in a transaction: PostgreSQL only warns",
        "",
        "BEGIN; ALTER TABLE t ADD COLUMN x int",
        true,
        Brief(AccessExclusive),
    ),
];

/// What the linter says of a form: whether the rule fires, and the locks claimed on `t`.
fn linted(f: &Form, settings: &Settings) -> (bool, Does) {
    let settings = &Settings {
        applied_by: if f.other_runner {
            AppliedBy::Other
        } else {
            settings.applied_by
        },
        ..settings.clone()
    };
    let context = format!("{BASE}\n{}", f.setup);
    let reports = analyze_sources(&[&context], &format!("{};\n", f.sql), settings);
    let fired = reports[0].findings.iter().any(|x| x.rule == f.rule);
    // Over all the form's statements: they run in one transaction, which holds every lock.
    let claims = claimed_locks(&[&context], &format!("{};\n", f.sql), settings);
    let on_t: Vec<_> = claims
        .iter()
        .flatten()
        .filter(|l| match f.table.split_once('.') {
            Some((schema, name)) => {
                l.table.schema.as_deref() == Some(schema) && l.table.name == name
            }
            None => l.table.name == f.table,
        })
        .collect();
    let level = on_t.iter().map(|l| l.level).max().unwrap_or(AccessShare);
    let hold = on_t.iter().map(|l| l.hold).max().unwrap_or(LockHold::Brief);
    let does = match hold {
        LockHold::Rewrite => Rewrite,
        LockHold::Scan => Scan(level),
        // Row locks under a stronger table lock: the statement reads the rows it writes
        // while every other session waits.
        LockHold::Rows if level > RowExclusive => Scan(level),
        LockHold::Rows => Rows(level),
        LockHold::Brief => Brief(level),
    };
    (fired, does)
}

fn lock_level(mode: &str) -> LockLevel {
    match mode {
        "AccessShareLock" => AccessShare,
        "RowShareLock" => RowShare,
        "RowExclusiveLock" => RowExclusive,
        "ShareUpdateExclusiveLock" => ShareUpdateExclusive,
        "ShareLock" => Share,
        "ShareRowExclusiveLock" => ShareRowExclusive,
        "ExclusiveLock" => Exclusive,
        "AccessExclusiveLock" => AccessExclusive,
        other => panic!("lock mode {other}"),
    }
}

/// What PostgreSQL does with a form, in a schema of its own, rolled back.
async fn measured(conn: &mut PgConnection, i: usize, f: &Form) -> Does {
    let schema = format!("form_{i}");
    conn.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA {schema}; SET search_path = {schema}, public; {BASE} {}",
        f.setup
    )))
    .await
    .unwrap_or_else(|e| panic!("setup of `{}`: {e}", f.form));
    // Every field by the oid alone, so a dropped table still shows the lock its drop holds.
    let probe = "SELECT (SELECT relfilenode::bigint FROM pg_class WHERE oid = $1) AS node,
            coalesce((SELECT seq_scan FROM pg_stat_xact_user_tables s WHERE s.relid = $1), 0) AS scans,
            (SELECT pg_relation_size(oid) FROM pg_class WHERE oid = $1) AS size,
            (SELECT array_agg(mode::text) FROM pg_locks l
              WHERE l.relation = $1 AND l.pid = pg_backend_pid()) AS modes";
    conn.execute("BEGIN").await.unwrap();
    // By oid: a rename keeps it.
    let oid: sqlx::postgres::types::Oid = sqlx::query_scalar("SELECT $1::regclass::oid")
        .bind(f.table)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let before = sqlx::query(probe)
        .bind(oid)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let outcome = conn.execute(AssertSqlSafe(f.sql.to_string())).await;
    let does = match outcome {
        Err(sqlx::Error::Database(e)) => Fails(match e.code().as_deref() {
            Some("23502") => "23502",
            Some("42601") => "42601",
            Some("42701") => "42701",
            Some("25001") => "25001",
            Some("42703") => "42703",
            Some("42P01") => "42P01",
            Some("42P16") => "42P16",
            Some("0A000") => "0A000",
            other => panic!("`{}` failed with {other:?}: {e}", f.form),
        }),
        Err(e) => panic!("`{}`: {e}", f.form),
        Ok(_) => {
            let after = sqlx::query(probe)
                .bind(oid)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let node: Option<i64> = after.get("node");
            let scans: i64 = after.get::<i64, _>("scans") - before.get::<i64, _>("scans");
            let modes: Vec<String> = after
                .get::<Option<Vec<String>>, _>("modes")
                .unwrap_or_default();
            let level = modes
                .iter()
                .map(|m| lock_level(m))
                .max()
                .unwrap_or(AccessShare);
            // A rewrite reads the old storage into the new; TRUNCATE swaps in empty storage
            // without reading a row.
            let new_storage = node.is_some() && node != before.get::<Option<i64>, _>("node");
            if new_storage && after.get::<Option<i64>, _>("size") > Some(0) {
                Rewrite
            } else if new_storage || node.is_none() {
                // Dropped, or
                // New, empty storage: emptied, not read (the xact counters of a truncated
                // relation are not a read of it).
                Brief(level)
            } else if level == RowExclusive {
                Rows(level)
            } else if scans > 0 {
                Scan(level)
            } else {
                Brief(level)
            }
        }
    };
    conn.execute("ROLLBACK").await.unwrap();
    conn.execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    does
}

#[test]
fn every_form_fires_as_written_and_does_what_postgres_does() {
    let db = TestDb::new();
    let mut failures = Vec::new();
    db.rt.block_on(async {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let settings = Settings {
            pg_version: format!("{}.{}", version / 10000, version % 100)
                .parse()
                .unwrap(),
            ..Settings::default()
        };
        let major = (version / 10000) as u32;
        for (i, f) in FORMS.iter().enumerate() {
            if major < f.since {
                // Held to what an older server does with newer syntax.
                let newer = Form {
                    rule: "syntax-newer-than-target",
                    ..*f
                };
                let (fired, _) = linted(&newer, &settings);
                let live = measured(&mut conn, i, f).await;
                if !fired || live != Fails("42601") {
                    failures.push(format!(
                        "{} / {}: PostgreSQL {} did {live:?} (a syntax error expected before {}); syntax-newer-than-target {}",
                        f.rule, f.form, settings.pg_version, f.since,
                        if fired { "fires" } else { "is silent" }
                    ));
                }
                continue;
            }
            let (fired, claimed) = linted(f, &settings);
            let live = measured(&mut conn, i, f).await;
            if fired != f.fires {
                failures.push(format!(
                    "{} / {}: the rule {} but should {}",
                    f.rule,
                    f.form,
                    if fired { "fires" } else { "is silent" },
                    if f.fires { "fire" } else { "stay silent" }
                ));
            }
            if live != f.does {
                failures.push(format!(
                    "{} / {}: PostgreSQL {} did {live:?}, the form says {:?}",
                    f.rule, f.form, settings.pg_version, f.does
                ));
            }
            // A refused statement takes no locks worth claiming; the rule is what matters.
            if !matches!(f.does, Fails(_)) && claimed != f.does {
                failures.push(format!(
                    "{} / {}: the linter claims {claimed:?}, PostgreSQL does {:?}",
                    f.rule, f.form, f.does
                ));
            }
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {} forms disagree:\n{}",
        failures.len(),
        FORMS.len(),
        failures.join("\n")
    );
}

/// What the rules without a lock to speak of say breaks, as PostgreSQL does it: with row
/// security on and no policy, a role that could read every row reads none; with `DISABLE
/// TRIGGER ALL`, a row whose foreign key finds no parent goes in; an identity added ALWAYS
/// refuses a given key, one added without START WITH hands out a key that exists; `CREATE
/// TABLE IF NOT EXISTS` of a table that exists leaves it as it is.
#[test]
fn row_security_hides_rows_disabled_triggers_let_broken_keys_in_and_identity_refuses_or_collides() {
    let db = TestDb::new();
    let role = format!("{}_app", db.name);
    db.exec(&format!(
        "{BASE}
         CREATE TABLE c (id int PRIMARY KEY, u_id int REFERENCES u (id));
         CREATE ROLE \"{role}\";
         GRANT SELECT ON t TO \"{role}\";"
    ));
    let seen = |sql: &str| -> i64 {
        db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            c.execute(AssertSqlSafe(sql.to_string())).await.unwrap();
            c.execute(AssertSqlSafe(format!("SET ROLE \"{role}\"")))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    assert_eq!(seen("SELECT 1"), 100);
    assert_eq!(seen("ALTER TABLE t ENABLE ROW LEVEL SECURITY"), 0);
    assert_eq!(seen("ALTER TABLE t DISABLE ROW LEVEL SECURITY"), 100);
    let broken = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let refused = c
            .execute("INSERT INTO c VALUES (1, 999)")
            .await
            .map_err(|e| {
                e.as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.to_string())
            });
        c.execute("ALTER TABLE c DISABLE TRIGGER ALL")
            .await
            .unwrap();
        let let_in = c.execute("INSERT INTO c VALUES (2, 999)").await.is_ok();
        (refused.err().flatten(), let_in)
    });
    assert_eq!(broken, (Some("23503".to_string()), true));
    // An identity added ALWAYS refuses a given value; added without START WITH it hands out
    // a key the rows hold.
    let identity = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let code = |r: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
            r.err().and_then(|e| {
                e.as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.to_string())
            })
        };
        c.execute("ALTER TABLE t ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY")
            .await
            .unwrap();
        let given = code(c.execute("INSERT INTO t (id, a) VALUES (1000, 1)").await);
        c.execute("ALTER TABLE t ALTER COLUMN id DROP IDENTITY")
            .await
            .unwrap();
        c.execute("ALTER TABLE t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
            .await
            .unwrap();
        let left = code(c.execute("INSERT INTO t (a) VALUES (1)").await);
        (given, left)
    });
    assert_eq!(
        identity,
        (Some("428C9".to_string()), Some("23505".to_string()))
    );
    // CREATE TABLE IF NOT EXISTS of a table that exists makes nothing it describes: the live
    // table stays, rows and all, for what follows.
    let kept = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        c.execute("CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, z int NOT NULL)")
            .await
            .unwrap();
        sqlx::query_as::<_, (i64, bool)>(
            "SELECT (SELECT count(*) FROM t WHERE id <= 100),
                    EXISTS (SELECT FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'z')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(kept, (100, false));
    db.exec(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""));
}
