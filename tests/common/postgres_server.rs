//! A throwaway PostgreSQL server for tests: its own data directory (removed on drop) and
//! loopback port, trust authentication for the `postgres` user, one database per test.
//!
//! When the tests run as root (CI containers), `initdb` and `pg_ctl` run as the `postgres` OS
//! user (`runuser`), which then owns the data directory: PostgreSQL refuses to run as root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::servers::{self, TempDir, find_binary, free_port, unavailable};

/// A running PostgreSQL server; stopped (`pg_ctl stop -m immediate`) and deleted when dropped.
pub struct PostgresServer {
    /// The loopback port it listens on.
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    dir: TempDir,
    databases: AtomicUsize,
}

impl PostgresServer {
    /// Starts a fresh server, or `None` (after a `SKIP` notice; a panic under `CI=true`) when
    /// PostgreSQL is not installed.
    pub fn start() -> Option<PostgresServer> {
        let Some(bin) = bin_dir() else {
            unavailable(
                "postgres",
                "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin or on PATH \
                 (apt-get install postgresql)",
            );
            return None;
        };
        let as_postgres = running_as_root();
        let dir = TempDir::new("postgres");
        if as_postgres {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .output()
                .expect("run chown");
            check("chown the data directory to postgres", &out, None);
        }
        let mut server = PostgresServer {
            port: 0,
            bin,
            as_postgres,
            dir,
            databases: AtomicUsize::new(0),
        };
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .expect("run initdb");
        check("initdb", &out, None);
        // A free port can be taken between the probe and the start: try a few.
        for attempt in 1..=3 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return Some(server),
                Err(log) if attempt == 3 => panic!("PostgreSQL did not start:\n{log}"),
                Err(_) => continue,
            }
        }
        unreachable!()
    }

    /// A server shared by every test holding it; started on first use, stopped when the last
    /// holder drops it (the next caller then starts a new one). `None` as for [`start`](Self::start).
    pub fn shared() -> Option<Arc<PostgresServer>> {
        static SHARED: OnceLock<Mutex<Weak<PostgresServer>>> = OnceLock::new();
        let slot = SHARED.get_or_init(Mutex::default);
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = slot.upgrade() {
            return Some(server);
        }
        let server = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&server);
        Some(server)
    }

    /// The URL of database `db` (as user `postgres`, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database with a new, unique name and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("tower_sso_test_{n}");
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name)
            .output()
            .expect("run createdb");
        check("createdb", &out, Some(&self.log()));
        self.url(&name)
    }

    /// Stops the server at once (`-m immediate`: like a crash); [`start_again`](Self::start_again)
    /// brings it back with the same port and data.
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        check("pg_ctl stop", &out, Some(&self.log()));
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port with the same data.
    pub fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL did not start again:\n{log}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-o", &options, "-t", "30", "-w", "start"])
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// `program` from the PostgreSQL bin directory, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl PostgresServer {
    /// The postmaster's process id (from `postmaster.pid`).
    fn postmaster_pid(&self) -> u32 {
        let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .expect("postmaster.pid: is the server running?");
        pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid")
    }

    /// Freezes the server and its backends (`SIGSTOP`): connections hang without an answer, as
    /// with a hung host. [`resume`](PostgresServer::resume) thaws it.
    pub fn pause(&self) {
        servers::signal_tree(self.postmaster_pid(), "STOP");
    }

    /// Thaws a [`pause`](PostgresServer::pause)d server.
    pub fn resume(&self) {
        servers::signal_tree(self.postmaster_pid(), "CONT");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // A frozen server could not be stopped.
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = std::panic::catch_unwind(|| self.resume());
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        // `TempDir` removes the data directory next.
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`, else the directory
/// of `initdb` on PATH.
fn bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: f64 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        let initdb = find_binary(&["initdb"])?;
        let dir = initdb.parent()?.to_path_buf();
        has_tools(&dir).then_some(dir)
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn check(what: &str, out: &Output, log: Option<&str>) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log.unwrap_or("")
    );
}
