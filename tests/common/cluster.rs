//! A throwaway PostgreSQL cluster of a test's own, for what the shared server cannot do: require
//! passwords, or be restarted. Made with the installed server binaries, as `postgres` when the
//! tests run as root; removed when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown(path: &std::path::Path) {
    assert!(Command::new("chown")
        .args(["-R", "postgres:postgres", path.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
}

/// An empty folder for a cluster, owned by the server's user, and a free port.
fn fresh_dir(as_postgres: bool) -> (PathBuf, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("migrate-cluster-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if as_postgres {
        chown(&dir);
    }
    (dir, port)
}

impl Cluster {
    fn cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A cluster that trusts everyone, or that requires this password of `postgres`.
    pub fn start(password: Option<&str>) -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL server binaries (initdb) are not installed: run scripts/test.sh");
        let as_postgres = is_root();
        let (dir, port) = fresh_dir(as_postgres);
        if let Some(pw) = password {
            let file = dir.join("pw");
            std::fs::write(&file, format!("{pw}\n")).unwrap();
            if as_postgres {
                chown(&file);
            }
        }
        let c = Cluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = c.dir.join("data");
        let mut initdb = c.cmd("initdb");
        initdb.args(["-D", data.to_str().unwrap(), "-U", "postgres", "--no-sync"]);
        match password {
            Some(_) => initdb
                .arg("--auth=scram-sha-256")
                .arg(format!("--pwfile={}", c.dir.join("pw").display())),
            None => initdb.arg("--auth=trust"),
        };
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.pg_ctl("start");
        c
    }

    /// A streaming replica of this (trust) cluster, made with pg_basebackup, on a port of its
    /// own.
    pub fn replica(&self) -> Cluster {
        let (dir, port) = fresh_dir(self.as_postgres);
        let replica = Cluster {
            dir,
            bin: self.bin.clone(),
            port,
            as_postgres: self.as_postgres,
        };
        let out = replica
            .cmd("pg_basebackup")
            .args([
                "-D",
                replica.dir.join("data").to_str().unwrap(),
                "-R",
                "-X",
                "stream",
            ])
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &self.port.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        replica.pg_ctl("start");
        replica
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, with the password when given.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!("postgres://postgres:{pw}@127.0.0.1:{}/postgres", self.port),
            None => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// `pg_ctl start`, `stop` (fast) or `restart`, waiting until done.
    pub fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut cmd = self.cmd("pg_ctl");
        cmd.args(["-D", data.to_str().unwrap(), "-w", "-l"])
            .arg(self.dir.join("log"))
            .args(["-m", "fast", action]);
        if action != "stop" {
            cmd.arg("-o").arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .cmd("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
