//! Throwaway Redis servers for tests: one server ([`RedisServer`], which can be stopped and
//! restarted on the same port for outage tests) or a three-master Redis Cluster
//! ([`RedisCluster`]). Each runs from Debian's `redis-server` on loopback, with no persistence,
//! in its own temp dir, and is killed when dropped.
//!
//! Missing binaries follow the skip-or-fail rule of [`super::servers`].
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::servers::{self, TempDir, free_port, require_binary};

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new cluster may take to report `cluster_state:ok` on every node.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

fn redis_server_binary() -> Option<PathBuf> {
    require_binary(
        "redis",
        &["redis-server", "/usr/bin/redis-server"],
        "redis-server",
    )
}

fn redis_cli_binary() -> Option<PathBuf> {
    require_binary(
        "redis cluster",
        &["redis-cli", "/usr/bin/redis-cli"],
        "redis-tools",
    )
}

/// One `redis-server` process on a loopback port.
struct Process {
    binary: PathBuf,
    port: u16,
    /// Arguments after `--port`/`--bind`/`--dir` (cluster mode, password, ...); `{dir}` stands
    /// for the server's directory.
    extra: Vec<String>,
    dir: TempDir,
    child: Option<Child>,
}

impl Process {
    /// Starts a server on a free port (retrying once with another port if the port was taken in
    /// the meantime) and waits until it answers PING.
    fn start(binary: PathBuf, label: &str, extra: Vec<String>) -> Process {
        let dir = TempDir::new(label);
        let mut process = Process {
            binary,
            port: 0,
            extra,
            dir,
            child: None,
        };
        for attempt in 0..2 {
            process.port = free_port();
            match process.spawn_and_wait() {
                Ok(()) => return process,
                Err(output) if attempt == 0 && output.contains("Address already in use") => {
                    continue;
                }
                Err(output) => panic!(
                    "redis-server on port {} did not start: {output}",
                    process.port
                ),
            }
        }
        unreachable!("the second attempt returns or panics")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the server on `self.port`; on failure, kills it and returns its output.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path()).expect("create redis log");
        let log_err = log.try_clone().expect("clone redis log");
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(
                self.extra
                    .iter()
                    .map(|a| a.replace("{dir}", &self.dir_str())),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if answers_ping(self.port) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.kill();
                let output = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let why = if exited {
                    "exited"
                } else {
                    "no PING answer within 10 s"
                };
                return Err(format!("{why}; output:\n{output}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn dir_str(&self) -> String {
        self.dir.path().display().to_string()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server answers on `port` (any RESP answer counts: `-NOAUTH` too).
fn answers_ping(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

/// A throwaway single Redis server. Killed when dropped.
pub struct RedisServer {
    /// `redis://[:password@]127.0.0.1:<port>` (the password percent-encoded).
    pub url: String,
    /// The loopback port.
    pub port: u16,
    /// The password it requires, if started with [`RedisServer::start_with_password`].
    pub password: Option<String>,
    process: Process,
}

impl RedisServer {
    /// Starts a server without a password, or returns `None` (skip) if `redis-server` is missing.
    pub fn start() -> Option<RedisServer> {
        Self::launch(None)
    }

    /// Starts a server that requires `password` (`--requirepass`); `url` carries it.
    pub fn start_with_password(password: &str) -> Option<RedisServer> {
        Self::launch(Some(password))
    }

    fn launch(password: Option<&str>) -> Option<RedisServer> {
        let binary = redis_server_binary()?;
        let extra = match password {
            Some(p) => vec!["--requirepass".to_owned(), p.to_owned()],
            None => Vec::new(),
        };
        let process = Process::start(binary, "redis", extra);
        let port = process.port;
        let url = match password {
            Some(p) => format!(
                "redis://:{}@127.0.0.1:{port}",
                percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
            ),
            None => format!("redis://127.0.0.1:{port}"),
        };
        Some(RedisServer {
            url,
            port,
            password: password.map(str::to_owned),
            process,
        })
    }

    /// Kills the server (and waits for it); the port stays this server's for [`restart`].
    ///
    /// [`restart`]: RedisServer::restart
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port (empty: nothing was persisted), and waits until it
    /// answers PING.
    pub fn restart(&mut self) {
        self.process.kill();
        if let Err(output) = self.process.spawn_and_wait() {
            panic!(
                "redis-server did not restart on port {}: {output}",
                self.port
            );
        }
    }

    /// Freezes the server (`SIGSTOP`): connections are accepted by the kernel but nothing is
    /// answered, as with a hung host. [`resume`](RedisServer::resume) thaws it.
    pub fn pause(&self) {
        let child = self.process.child.as_ref().expect("server running");
        servers::signal_tree(child.id(), "STOP");
    }

    /// Thaws a [`pause`](RedisServer::pause)d server.
    pub fn resume(&self) {
        if let Some(child) = self.process.child.as_ref() {
            servers::signal_tree(child.id(), "CONT");
        }
    }

    /// Whether the server is running (not [`stop`](RedisServer::stop)ped).
    pub fn is_running(&self) -> bool {
        self.process.child.is_some()
    }
}

/// A throwaway Redis Cluster of three masters (no replicas), all slots assigned. Killed when
/// dropped.
pub struct RedisCluster {
    /// The masters, `127.0.0.1:<port>`.
    pub nodes: Vec<String>,
    processes: Vec<Process>,
}

impl RedisCluster {
    /// Starts three cluster-mode servers, joins them with `redis-cli --cluster create` and waits
    /// until every node reports `cluster_state:ok`. `None` (skip) if `redis-server` or `redis-cli`
    /// is missing.
    pub fn start() -> Option<RedisCluster> {
        let server = redis_server_binary()?;
        let cli = redis_cli_binary()?;
        let processes: Vec<Process> = (0..3)
            .map(|i| {
                // The cluster bus port must be free too (it defaults to port + 10000).
                let bus = free_port().to_string();
                let extra = vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    "{dir}/nodes.conf".into(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                    "--cluster-port".into(),
                    bus,
                ];
                Process::start(server.clone(), &format!("redis-cluster-{i}"), extra)
            })
            .collect();
        let nodes: Vec<String> = processes.iter().map(Process::addr).collect();
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", cli.display()));
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = RedisCluster { nodes, processes };
        cluster.wait_until_ok(&cli);
        Some(cluster)
    }

    fn wait_until_ok(&self, cli: &Path) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let states: Vec<String> = self
                .processes
                .iter()
                .map(|p| {
                    Command::new(cli)
                        .args(["-p", &p.port.to_string(), "cluster", "info"])
                        .stdin(Stdio::null())
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                })
                .collect();
            if states.iter().all(|s| s.contains("cluster_state:ok")) {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .processes
                    .iter()
                    .map(|p| std::fs::read_to_string(p.log_path()).unwrap_or_default())
                    .collect();
                panic!(
                    "redis cluster {:?} not ok within {CLUSTER_TIMEOUT:?}:\n{states:#?}\nlogs:\n{}",
                    self.nodes,
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
