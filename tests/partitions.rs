//! Indexes of partitioned tables through `migrate expand` and `abort`, with writers running:
//! PostgreSQL builds none of them concurrently, so the engine builds the parent's index `ON
//! ONLY`, each partition's concurrently, and attaches them; sub-partitions too. Every write
//! succeeds, every index ends valid on the parent and on every partition, and a kill between
//! partitions resumes at the next one.

mod common;

use common::{ok, text, TestDb};
use sqlx::{Connection, PgConnection};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const TABLES: &str =
    "CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, kind text, payload text)
    PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY HASH (id);
CREATE TABLE events_2026_a PARTITION OF events_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE events_2026_b PARTITION OF events_2026 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE events_old PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, date '2023-06-01' + (g % 1200), 'k' || (g % 10), 'p' || g
    FROM generate_series(1, 30000) g;\n";

const INDEXES: &str = "CREATE INDEX events_kind_idx ON events (kind);
CREATE UNIQUE INDEX events_id_at_key ON events (id, at);\n";

fn project(tag: &str) -> common::TempDir {
    common::project(
        "migrate-parts",
        tag,
        &[("0001_events.sql", TABLES), ("0002_indexes.sql", INDEXES)],
    )
}

fn run(db: &TestDb, dir: &Path, args: &[&str], failpoint: Option<&str>) -> Output {
    common::migrate_in(&db.url, dir, args, failpoint)
}

/// Per index of the migration: (valid on the parent, leaf partitions with a valid attached
/// index, leaf partitions in all); and the INVALID indexes left anywhere.
async fn index_state(c: &mut PgConnection) -> (Vec<(String, bool, i64, i64)>, i64) {
    let per: Vec<(String, bool, i64, i64)> = sqlx::query_as(
        "SELECT i.relname::text, x.indisvalid,
                (SELECT count(*) FROM pg_partition_tree(i.oid) t
                   JOIN pg_index cx ON cx.indexrelid = t.relid
                  WHERE t.isleaf AND cx.indisvalid),
                (SELECT count(*) FROM pg_partition_tree('events') t WHERE t.isleaf)
         FROM pg_class i JOIN pg_index x ON x.indexrelid = i.oid
         WHERE i.relname IN ('events_kind_idx', 'events_id_at_key')
         ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let invalid: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    (per, invalid)
}

/// Both indexes of the migration valid on the parent and attached and valid on every one of
/// the `leaves` leaf partitions, and no INVALID index anywhere.
async fn both_indexes_valid_everywhere(c: &mut PgConnection, leaves: i64) {
    let (per, invalid) = index_state(c).await;
    assert_eq!(
        per,
        vec![
            ("events_id_at_key".to_string(), true, leaves, leaves),
            ("events_kind_idx".to_string(), true, leaves, leaves)
        ]
    );
    assert_eq!(invalid, 0);
}

/// Runs `sql`, which must fail with SQLSTATE `code` (a key or a check in force).
async fn refused(c: &mut PgConnection, sql: &'static str, code: &str) {
    let r = sqlx::query(sql).execute(&mut *c).await;
    assert!(
        matches!(&r, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(code)),
        "{sql}: {r:?}"
    );
}

/// Writers insert into every partition while `f` runs; returns (writes, failed writes).
fn with_writers(db: &TestDb, f: impl FnOnce()) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = db.url.clone();
    let writer = {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = PgConnection::connect(&url).await.unwrap();
                let mut id = 1_000_000i64;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    // A prepared insert, as an app's driver sends it.
                    let r = sqlx::query(
                        "INSERT INTO events (id, at, kind, payload) VALUES ($1, date '2023-06-01' + ($1 % 1200)::int, 'w', 'x')",
                    )
                    .bind(id)
                    .execute(&mut c)
                    .await;
                    match r {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            });
        })
    };
    f();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

#[test]
fn indexes_of_a_partitioned_table_are_built_per_partition_under_writes() {
    let db = TestDb::new();
    let dir = project("build");
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let (writes, failed) = with_writers(&db, || ok(&run(&db, &dir, &["expand"], None)));
    assert!(writes > 0);
    assert_eq!(failed, 0, "{failed} of {writes} writes failed");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        // Four leaves: 2024, 2025, 2026_a, 2026_b, and the default.
        both_indexes_valid_everywhere(&mut c, 5).await;
        // The unique index holds: a duplicate key is refused through the parent.
        refused(
            &mut c,
            "INSERT INTO events VALUES (1, date '2023-06-02', 'x', 'y')",
            "23505",
        )
        .await;
    });
    // Abort drops them: no concurrent drop of a partitioned index exists, so the plain one.
    ok(&run(&db, &dir, &["abort", "0002_indexes"], None));
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let (per, _) = index_state(&mut c).await;
        assert!(per.is_empty(), "{per:?}");
    });
}

#[test]
fn a_kill_between_partitions_resumes_at_the_next_one() {
    let db = TestDb::new();
    let dir = project("kill");
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let out = run(&db, &dir, &["expand"], Some("partition:3"));
    assert_eq!(out.status.code(), Some(86), "{}", text(&out));
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let (per, _) = index_state(&mut c).await;
        // Killed after the third attach of the first index: 2024 and 2025 are attached to the
        // parent's index, 2026_a to the index of the sub-partitioned 2026, which is not attached
        // yet; the parent's index is not valid.
        assert_eq!(
            per,
            vec![("events_kind_idx".to_string(), false, 2, 5)],
            "{per:?}"
        );
        let sub: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_partition_tree('events_2026_events_kind_idx') t
               JOIN pg_index x ON x.indexrelid = t.relid WHERE t.isleaf AND x.indisvalid",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(sub, 1);
    });
    let out = run(&db, &dir, &["expand"], None);
    ok(&out);
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        both_indexes_valid_everywhere(&mut c, 5).await;
    });
}

/// Partitions change between a killed run and its resume: one that had its index already is
/// detached, and a new one with rows and no index is attached. The resume builds and attaches
/// the new partition's indexes and leaves the detached table out; every index ends valid on
/// the parent and on every partition it has now.
#[test]
fn partitions_attached_or_detached_before_a_resume_are_followed() {
    let db = TestDb::new();
    let dir = project("reshaped");
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let out = run(&db, &dir, &["expand"], Some("partition:3"));
    assert_eq!(out.status.code(), Some(86), "{}", text(&out));
    db.exec(
        "ALTER TABLE events DETACH PARTITION events_2025;
         CREATE TABLE events_2027 (LIKE events);
         INSERT INTO events_2027 SELECT 2000000 + g, date '2027-03-01', 'n', 'p' FROM generate_series(1, 100) g;
         ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
    );
    ok(&run(&db, &dir, &["expand"], None));
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        // 2024, 2026_a, 2026_b, the default and 2027.
        both_indexes_valid_everywhere(&mut c, 5).await;
        // The new partition's rows are in its index: a duplicate is refused there too.
        refused(
            &mut c,
            "INSERT INTO events VALUES (2000001, date '2027-03-01', 'x', 'y')",
            "23505",
        )
        .await;
        // The detached table is a table of its own again, outside the tree.
        let inside: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_partition_tree('events') WHERE relid = 'events_2025'::regclass)",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(!inside);
    });
}

/// A column added, backfilled and made NOT NULL, and a CHECK added, on the partitioned table
/// with writers throughout expand and contract: no write fails, every row is right, and the
/// constraints are validated on the parent and on every partition.
#[test]
fn columns_and_constraints_of_a_partitioned_table_expand_and_contract_under_writes() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-parts",
        "columns",
        &[
            (
                "0001_events.sql",
                &format!("{TABLES}ALTER TABLE events ADD PRIMARY KEY (id, at);\n"),
            ),
            (
                "0002_region.sql",
                "ALTER TABLE events ADD COLUMN region text DEFAULT 'eu';
                 UPDATE events SET region = 'eu' WHERE region IS NULL;
                 ALTER TABLE events ALTER COLUMN region SET NOT NULL;
                 ALTER TABLE events ADD CONSTRAINT events_kind_len CHECK (length(kind) < 10);\n",
            ),
        ],
    );
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let (writes, failed) = with_writers(&db, || {
        ok(&run(&db, &dir, &["expand"], None));
        ok(&run(&db, &dir, &["contract"], None));
    });
    assert!(writes > 0);
    assert_eq!(failed, 0, "{failed} of {writes} writes failed");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let wrong: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE region IS DISTINCT FROM 'eu'")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!(wrong, 0);
        // NOT NULL on the parent and every leaf; the CHECK validated everywhere.
        let nullable: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_partition_tree('events') t
               JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'region'
              WHERE NOT a.attnotnull",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(nullable, 0);
        let checks: Vec<(String, bool)> = sqlx::query_as(
            "SELECT conrelid::regclass::text, convalidated FROM pg_constraint
              WHERE conname = 'events_kind_len' ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        // The parent, the sub-partitioned 2026 and the five leaves.
        assert_eq!(checks.len(), 7, "{checks:?}");
        assert!(checks.iter().all(|(_, v)| *v), "{checks:?}");
        refused(
            &mut c,
            "INSERT INTO events (id, at, kind) VALUES (-1, date '2024-02-02', 'much too long')",
            "23514",
        )
        .await;
    });
}

/// A foreign key from the partitioned table, with writers throughout: before PostgreSQL 18 the
/// parent refuses it NOT VALID, so expand adds it NOT VALID to each partition and contract
/// validates each and then adds the parent's, which attaches them. It ends validated on the
/// parent and on every partition, and refuses a row without its account. Abort takes it off
/// every partition.
#[test]
fn a_foreign_key_from_a_partitioned_table_is_added_per_partition_and_attached() {
    let db = TestDb::new();
    let fk = "ALTER TABLE events ADD CONSTRAINT events_account_fk FOREIGN KEY (account) REFERENCES accounts (id);\n";
    let tables = format!(
        "CREATE TABLE accounts (id int PRIMARY KEY);
         INSERT INTO accounts SELECT generate_series(1, 100);
         {TABLES}ALTER TABLE events ADD PRIMARY KEY (id, at);
         ALTER TABLE events ADD COLUMN account int;
         UPDATE events SET account = 1 + id % 100;\n"
    );
    let dir = common::project(
        "migrate-parts",
        "fk",
        &[("0001_events.sql", &tables), ("0002_fk.sql", fk)],
    );
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let state = |db: &TestDb| {
        db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_as::<_, (String, bool, bool)>(
                "SELECT conrelid::regclass::text, convalidated, conparentid <> 0 FROM pg_constraint
                  WHERE conname = 'events_account_fk' ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
        })
    };
    let (writes, failed) = with_writers(&db, || {
        ok(&run(&db, &dir, &["expand"], None));
        let after_expand = state(&db);
        assert!(!after_expand.is_empty());
        assert!(
            after_expand.iter().all(|(_, valid, _)| !valid),
            "{after_expand:?}"
        );
        ok(&run(&db, &dir, &["contract"], None));
    });
    assert!(writes > 0);
    assert_eq!(failed, 0, "{failed} of {writes} writes failed");
    let done = state(&db);
    // The parent, the sub-partitioned 2026 and the five leaves; all but the parent attached.
    assert_eq!(done.len(), 7, "{done:?}");
    assert!(done.iter().all(|(_, valid, _)| *valid), "{done:?}");
    assert_eq!(
        done.iter().filter(|(_, _, attached)| !attached).count(),
        1,
        "{done:?}"
    );
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        refused(
            &mut c,
            "INSERT INTO events (id, at, account) VALUES (-1, date '2024-02-02', 9999)",
            "23503",
        )
        .await;
    });

    // Abort after expand, on a second database: nothing is left on any partition.
    let db2 = TestDb::new();
    ok(&run(&db2, &dir, &["expand", "0001_events"], None));
    ok(&run(&db2, &dir, &["expand"], None));
    assert!(!state(&db2).is_empty());
    ok(&run(&db2, &dir, &["abort", "0002_fk"], None));
    assert_eq!(state(&db2), vec![]);
}

/// The unique indexes of the leaf partitions: (index, its relfilenode), in order.
async fn leaf_unique_indexes(c: &mut PgConnection) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT i.relname::text, i.relfilenode::bigint
         FROM pg_partition_tree('events') t JOIN pg_index x ON x.indrelid = t.relid
         JOIN pg_class i ON i.oid = x.indexrelid
         WHERE t.isleaf AND x.indisunique ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
}

/// Per key constraint of the tree: (table, kind, has a parent constraint), in order.
async fn key_constraints(c: &mut PgConnection) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT con.conrelid::regclass::text, con.contype::text, con.conparentid <> 0
         FROM pg_constraint con JOIN pg_partition_tree('events') t ON t.relid = con.conrelid
         WHERE con.contype IN ('p', 'u') ORDER BY 1, 2",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
}

/// Expands the migrations up to `first` alone, then with writers throughout the rest and
/// contracts them all; returns the leaves' unique indexes as expand left them.
fn keys_made_under_writes(db: &TestDb, dir: &Path, first: &str) -> Vec<(String, i64)> {
    ok(&run(db, dir, &["expand", first], None));
    let mut built = Vec::new();
    let (writes, failed) = with_writers(db, || {
        ok(&run(db, dir, &["expand"], None));
        built = db.rt.block_on(async {
            let mut c = PgConnection::connect(&db.url).await.unwrap();
            leaf_unique_indexes(&mut c).await
        });
        ok(&run(db, dir, &["contract"], None));
    });
    assert!(writes > 0);
    assert_eq!(failed, 0, "{failed} of {writes} writes failed");
    built
}

/// Two keys on every table of the tree below the parent (the sub-partitioned 2026 and the five
/// leaves), each attached to its parent's, no INVALID index, and the primary key in force.
async fn both_keys_everywhere(c: &mut PgConnection, keys: &[(String, String, bool)]) {
    assert_eq!(keys.len(), 2 + 2 * 6, "{keys:?}");
    assert!(
        keys.iter().filter(|(t, _, _)| t != "events").all(|k| k.2),
        "{keys:?}"
    );
    let invalid: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(invalid, 0);
    refused(
        c,
        "INSERT INTO events VALUES (1, date '2023-06-02', 'x', 'y')",
        "23505",
    )
    .await;
}

/// A UNIQUE constraint and a PRIMARY KEY added to the live partitioned table, with writers
/// throughout: PostgreSQL has neither a concurrent build nor `USING INDEX` on a partitioned
/// table, so expand builds each leaf's index concurrently and contract makes each the leaf's
/// constraint and adds the parent's, which takes them over: the contract builds no index
/// (every leaf index keeps its relfilenode), and the keys hold through the parent.
#[test]
fn keys_of_a_partitioned_table_are_built_per_partition_and_attached_without_a_build() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-parts",
        "keys",
        &[
            ("0001_events.sql", TABLES),
            (
                "0002_keys.sql",
                "ALTER TABLE events ADD CONSTRAINT events_id_at_uq UNIQUE (id, at);
                 ALTER TABLE events ADD PRIMARY KEY (id, at);\n",
            ),
        ],
    );
    let built = keys_made_under_writes(&db, &dir, "0001_events");
    // Two keys on each of the five leaves.
    assert_eq!(built.len(), 10, "{built:?}");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let after = leaf_unique_indexes(&mut c).await;
        let files = |v: &[(String, i64)]| {
            let mut f: Vec<i64> = v.iter().map(|(_, n)| *n).collect();
            f.sort();
            f
        };
        assert_eq!(files(&after), files(&built), "contract built an index");
        let keys = key_constraints(&mut c).await;
        let parent: Vec<_> = keys.iter().filter(|(t, _, _)| t == "events").collect();
        assert_eq!(
            parent,
            vec![
                &("events".to_string(), "p".to_string(), false),
                &("events".to_string(), "u".to_string(), false)
            ]
        );
        both_keys_everywhere(&mut c, &keys).await;
    });
}

/// Keys written by hand as `ADD CONSTRAINT … USING INDEX`, which PostgreSQL refuses on a
/// partitioned table, with writers throughout: one over an index built earlier in the same
/// migration (not built as written), one over the index of an earlier migration (dropped when
/// the key is attached). Each key is built leaf by leaf and the contract builds no index: the
/// leaves' indexes after it are ones expand built, and neither hand-written index is left.
#[test]
fn keys_using_an_index_of_a_partitioned_table_are_built_per_partition() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-parts",
        "using-index",
        &[
            ("0001_events.sql", TABLES),
            (
                "0002_index.sql",
                "CREATE UNIQUE INDEX events_at_id_key ON events (at, id);\n",
            ),
            (
                "0003_keys.sql",
                "CREATE UNIQUE INDEX events_id_at_idx ON events (id, at);
                 ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_id_at_idx;
                 ALTER TABLE events ADD CONSTRAINT events_at_id_uq UNIQUE USING INDEX events_at_id_key;\n",
            ),
        ],
    );
    let built = keys_made_under_writes(&db, &dir, "0002_index");
    // On each of the five leaves: the earlier migration's index and the two keys' own.
    assert_eq!(built.len(), 15, "{built:?}");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let after = leaf_unique_indexes(&mut c).await;
        assert_eq!(after.len(), 10, "{after:?}");
        let files: Vec<i64> = built.iter().map(|(_, n)| *n).collect();
        assert!(
            after.iter().all(|(_, n)| files.contains(n)),
            "contract built an index: {after:?} after {built:?}"
        );
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class WHERE relname IN ('events_id_at_idx', 'events_at_id_key')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(left, 0, "a hand-written index is left");
        let named: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, contype::text FROM pg_constraint
             WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u') ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(
            named,
            vec![
                ("events_at_id_uq".to_string(), "u".to_string()),
                ("events_pkey".to_string(), "p".to_string())
            ]
        );
        let keys = key_constraints(&mut c).await;
        both_keys_everywhere(&mut c, &keys).await;
    });
}

/// A kill between the leaves of a key's build: the rerun goes on at the next leaf, and abort
/// drops every leaf's index.
#[test]
fn a_kill_between_the_partitions_of_a_key_resumes_and_abort_drops_every_leaf_index() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-parts",
        "keykill",
        &[
            ("0001_events.sql", TABLES),
            (
                "0002_pk.sql",
                "ALTER TABLE events ADD PRIMARY KEY (id, at);\n",
            ),
        ],
    );
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let out = run(&db, &dir, &["expand"], Some("partition:2"));
    assert_eq!(out.status.code(), Some(86), "{}", text(&out));
    let first = db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        leaf_unique_indexes(&mut c).await
    });
    assert_eq!(first.len(), 2, "{first:?}");
    ok(&run(&db, &dir, &["expand"], None));
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let all = leaf_unique_indexes(&mut c).await;
        assert_eq!(all.len(), 5, "{all:?}");
        // The two built before the kill were kept, not built again.
        assert!(first.iter().all(|f| all.contains(f)), "{first:?} {all:?}");
    });
    ok(&run(&db, &dir, &["abort", "0002_pk"], None));
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        assert_eq!(leaf_unique_indexes(&mut c).await, Vec::new());
    });
}

/// The type of a primary-key column of a partitioned table changed, with writers throughout:
/// the copied key's index is built per leaf and, at the swap, becomes the primary key again on
/// the parent and every partition, over the new type. The foreign keys that reference it, from
/// a plain and from a partitioned table, are made again over the new column (no copy of them
/// can reference it before the swap) and validated: they keep their names and actions, and
/// refuse an orphan.
#[test]
fn a_type_change_of_a_primary_key_column_of_a_partitioned_table_keeps_the_key() {
    let db = TestDb::new();
    let tables = "CREATE TABLE events (id integer NOT NULL, at date NOT NULL, kind text, payload text)
    PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY RANGE (at);
CREATE TABLE events_2025_h1 PARTITION OF events_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE events_2025_h2 PARTITION OF events_2025 FOR VALUES FROM ('2025-07-01') TO ('2026-01-01');
CREATE TABLE events_old PARTITION OF events DEFAULT;
ALTER TABLE events ADD PRIMARY KEY (id, at);
INSERT INTO events SELECT g, date '2023-06-01' + (g % 1200), 'k', 'p' FROM generate_series(1, 20000) g;
CREATE TABLE tags (id int PRIMARY KEY, event_id int NOT NULL, event_at date NOT NULL,
    FOREIGN KEY (event_id, event_at) REFERENCES events (id, at) ON DELETE CASCADE);
CREATE TABLE tag_log (event_id int NOT NULL, event_at date NOT NULL,
    FOREIGN KEY (event_id, event_at) REFERENCES events (id, at)) PARTITION BY RANGE (event_at);
CREATE TABLE tag_log_all PARTITION OF tag_log DEFAULT;
INSERT INTO tags SELECT g, g, date '2023-06-01' + (g % 1200) FROM generate_series(1, 500) g;
INSERT INTO tag_log SELECT g, date '2023-06-01' + (g % 1200) FROM generate_series(1, 500) g;\n";
    let dir = common::project(
        "migrate-parts",
        "pktype",
        &[
            ("0001_events.sql", tables),
            (
                "0002_bigint.sql",
                "ALTER TABLE events ALTER COLUMN id TYPE bigint;\n",
            ),
        ],
    );
    ok(&run(&db, &dir, &["expand", "0001_events"], None));
    let (writes, failed) = with_writers(&db, || {
        ok(&run(&db, &dir, &["expand"], None));
        ok(&run(&db, &dir, &["contract"], None));
    });
    assert!(writes > 0);
    assert_eq!(failed, 0, "{failed} of {writes} writes failed");
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let keys: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT con.conrelid::regclass::text, pg_get_constraintdef(con.oid), con.conparentid <> 0
             FROM pg_constraint con JOIN pg_partition_tree('events') t ON t.relid = con.conrelid
             WHERE con.contype = 'p' ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        // The parent, the sub-partitioned 2025 and its two halves, 2024 and the default.
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(keys.iter().all(|(_, d, _)| d == "PRIMARY KEY (id, at)"), "{keys:?}");
        assert!(keys.iter().all(|(t, _, p)| *p == (t != "events")), "{keys:?}");
        let (parent_name, ty): (String, String) = sqlx::query_as(
            "SELECT (SELECT conname::text FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p'),
                    format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'events'::regclass AND attname = 'id'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!((parent_name.as_str(), ty.as_str()), ("events_pkey", "bigint"));
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id <= 20000")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(rows, 20000);
        refused(&mut c, "INSERT INTO events (id, at, kind, payload) VALUES (1, date '2023-06-02', 'x', 'y')", "23505").await;
        let fks: Vec<(String, String, bool, String)> = sqlx::query_as(
            "SELECT conrelid::regclass::text, conname::text, convalidated, pg_get_constraintdef(oid)
             FROM pg_constraint WHERE contype = 'f' AND conparentid = 0
              AND confrelid = 'events'::regclass ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let fk = |t: &str, d: &str| {
            let def = format!("FOREIGN KEY (event_id, event_at) REFERENCES events(id, at){d}");
            (t.to_string(), format!("{t}_event_id_event_at_fkey"), true, def)
        };
        assert_eq!(fks, vec![fk("tag_log", ""), fk("tags", " ON DELETE CASCADE")]);
        refused(&mut c, "INSERT INTO tags VALUES (1000, 99999999, date '2023-06-02')", "23503").await;
        refused(&mut c, "INSERT INTO tag_log VALUES (99999999, date '2023-06-02')", "23503").await;
        refused(&mut c, "DELETE FROM events WHERE id = 2", "23503").await;
        sqlx::raw_sql("DELETE FROM tag_log WHERE event_id = 2; DELETE FROM events WHERE id = 2")
            .execute(&mut c)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM tags WHERE event_id = 2")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(left, 0, "ON DELETE CASCADE was lost");
    });
}

/// A type change of a column in the key of a partition (the 2026 partition is hashed by `id`),
/// known only from the live catalog: PostgreSQL cannot change it, so expand refuses before it
/// touches anything, naming the column, rather than failing at the contract's swap after a
/// full backfill.
#[test]
fn a_type_change_of_a_partition_key_column_is_refused_before_any_change() {
    let db = TestDb::new();
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(TABLES).execute(&mut c).await.unwrap();
    });
    let dir = common::project(
        "migrate-parts",
        "keytype",
        &[(
            "0001_numeric.sql",
            "ALTER TABLE events ALTER COLUMN id TYPE numeric;\n",
        )],
    );
    let out = run(&db, &dir, &["expand"], None);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("\"id\" is in the partition key of events")
            || text(&out).contains("id is in the partition key of events"),
        "{}",
        text(&out)
    );
    db.rt.block_on(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(columns, ["id", "at", "kind", "payload"]);
    });
}
