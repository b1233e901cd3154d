//! Each documented way for an app to get its version's `search_path` through PgBouncer
//! (Debian's package) in transaction mode, which drops startup options: a role per version
//! (`migrate latest --format role`), and a pooler database entry per version (`migrate latest
//! --format pgbouncer`). Many transactions of several clients share the pooler's server
//! connections, and each must still read its own version's shape.

mod common;

use common::{ok, Roles, TestDb};
use std::process::{Child, Command, Stdio};

/// A PgBouncer in transaction mode on a free port, stopped when dropped.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: common::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The password in a `postgres://user:password@…` URL, if any.
fn password(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.rsplit_once('@').map_or("", |(a, _)| a);
    auth.split_once(':')
        .map_or(String::new(), |(_, p)| p.to_string())
}

fn start_bouncer(tag: &str, databases: &[String], users: &[(String, String)]) -> Bouncer {
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("pgbouncer is missing: `scripts/setup.sh --clients` installs it (scripts/test.sh runs it)");
    let dir = common::TempDir::new(&format!("migrate-pgbouncer-{tag}"));
    let port = free_port();
    let auth: String = users
        .iter()
        .map(|(u, p)| format!("\"{u}\" \"{p}\"\n"))
        .collect();
    std::fs::write(dir.join("users.txt"), auth).unwrap();
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n{}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 50\nlogfile = {}\n",
            databases.join("\n"),
            dir.join("users.txt").display(),
            dir.join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    // PgBouncer refuses to run as root.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        // The folder is the test's own: the pooler's user must read and write it.
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(&*dir)
            .status()
            .unwrap();
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", bin]);
        c
    } else {
        Command::new(bin)
    };
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbouncer");
    // Stopped and waited for when dropped, whatever happens next.
    let bouncer = Bouncer {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return bouncer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "pgbouncer did not listen on {port}: {}",
        std::fs::read_to_string(bouncer._dir.join("pgbouncer.log")).unwrap_or_default()
    );
}

/// Runs `sql` through the pooler with psql (the simple protocol: PgBouncer 1.18 keeps no
/// prepared statements in transaction mode), one transaction each; what it printed.
fn through(b: &Bouncer, db: &str, user: &str, pass: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args([
            "-XAtq",
            "-h",
            "127.0.0.1",
            "-p",
            &b.port.to_string(),
            "-d",
            db,
            "-U",
            user,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", pass)
        .output()
        .expect("psql");
    assert!(
        o.status.success(),
        "{user}@{db}: {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn each_version_keeps_its_path_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new();
    let dir = common::project(
        "migrate-pgbouncer",
        &db.name,
        &[
            (
                "0001_schema.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 5) g;\n",
            ),
            (
                "0002_rename.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
            ),
        ],
    );
    let suffix = db.name.trim_start_matches("migrate_test_");
    let roles = Roles {
        url: db.url.clone(),
        names: vec![format!("app_old_{suffix}"), format!("app_new_{suffix}")],
    };
    let (old_role, new_role) = (&roles.names[0], &roles.names[1]);
    db.exec(&format!(
        "CREATE ROLE \"{old_role}\" LOGIN PASSWORD 'pw'; CREATE ROLE \"{new_role}\" LOGIN PASSWORD 'pw';"
    ));
    let latest = |args: &[&str]| -> String {
        let mut all = vec!["latest"];
        all.extend_from_slice(args);
        let o = common::migrate_in(&db.url, &dir, &all, None);
        ok(&o);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    ok(&common::migrate_in(
        &db.url,
        &dir,
        &["expand", "0001_schema"],
        None,
    ));
    db.exec(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON users TO \"{old_role}\", \"{new_role}\""
    ));
    let old_value = latest(&[]);
    let old_entry = latest(&["--format", "pgbouncer", "--alias", "v_old"]);
    db.exec(&latest(&["--format", "role", "--role", old_role]));
    ok(&common::migrate_in(&db.url, &dir, &["expand"], None));
    let new_value = latest(&[]);
    let new_entry = latest(&["--format", "pgbouncer", "--alias", "v_new"]);
    db.exec(&latest(&["--format", "role", "--role", new_role]));
    let admin = db.url.rsplit_once('@').unwrap().0;
    let admin_user = admin
        .split_once("://")
        .map_or(admin, |(_, r)| r)
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let admin_pass = password(&db.url);
    let b = start_bouncer(
        suffix,
        &[old_entry, new_entry, {
            let o: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
            format!(
                "{} = host={} port={} dbname={}",
                db.name,
                o.get_host(),
                o.get_port(),
                db.name
            )
        }],
        &[
            (admin_user.clone(), admin_pass.clone()),
            (old_role.clone(), "pw".into()),
            (new_role.clone(), "pw".into()),
        ],
    );
    // Each way, many transactions, interleaved, over two server connections per pool.
    let cases = [
        (
            "v_old",
            admin_user.as_str(),
            admin_pass.as_str(),
            &old_value,
            "name",
        ),
        (
            "v_new",
            admin_user.as_str(),
            admin_pass.as_str(),
            &new_value,
            "full_name",
        ),
        (
            db.name.as_str(),
            old_role.as_str(),
            "pw",
            &old_value,
            "name",
        ),
        (
            db.name.as_str(),
            new_role.as_str(),
            "pw",
            &new_value,
            "full_name",
        ),
    ];
    for round in 0..5 {
        for (database, user, pass, value, column) in &cases {
            // PostgreSQL shows the list with a space after each comma.
            let seen = through(&b, database, user, pass, "SHOW search_path").replace(", ", ",");
            assert_eq!(seen, **value, "{user}@{database}, round {round}");
            // The version's own column name, and `SELECT *` in its shape.
            let name = through(
                &b,
                database,
                user,
                pass,
                &format!("SELECT {column} FROM users WHERE id = 1"),
            );
            assert_eq!(name, "u1", "{user}@{database}");
            let star = through(
                &b,
                database,
                user,
                pass,
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped",
            );
            assert_eq!(star, format!("id,{column}"), "{user}@{database}");
        }
    }
}
