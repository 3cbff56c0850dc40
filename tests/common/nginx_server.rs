//! A throwaway nginx for tests: Debian's `/usr/sbin/nginx` in the foreground, one process
//! (`daemon off; master_process off;`), on a free loopback port, with its pid file, logs and
//! temp directories in a temp dir. Killed when dropped.
//!
//! A missing binary follows the skip-or-fail rule of [`super::servers`].
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::servers::{TempDir, free_port, require_binary};

/// How long nginx may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn nginx_binary() -> Option<PathBuf> {
    require_binary("nginx", &["/usr/sbin/nginx", "nginx"], "nginx")
}

/// A running nginx.
pub struct NginxServer {
    /// The loopback port it listens on.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl NginxServer {
    /// Starts nginx with `http` as the body of its `http {}` block (`server {}` blocks, maps, ...);
    /// `http` is given the listen port. Returns `None` (skip) if nginx is missing; panics with
    /// nginx's error log if it does not start.
    pub fn start(http: impl Fn(u16) -> String) -> Option<NginxServer> {
        let binary = nginx_binary()?;
        let dir = TempDir::new("nginx");
        let mut server = NginxServer {
            port: 0,
            dir,
            child: None,
        };
        for attempt in 0..2 {
            server.port = free_port();
            match server.spawn_and_wait(&binary, &http(server.port)) {
                Ok(()) => return Some(server),
                Err(log) if attempt == 0 && log.contains("Address already in use") => continue,
                Err(log) => panic!("nginx on port {} did not start: {log}", server.port),
            }
        }
        unreachable!("the second attempt returns or panics")
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// nginx's error log so far (for assertion messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn spawn_and_wait(&mut self, binary: &PathBuf, http: &str) -> Result<(), String> {
        let dir = self.dir.path().display().to_string();
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
             access_log {dir}/access.log;\n\
             client_body_temp_path {dir}/client_body;\n\
             proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n\
             uwsgi_temp_path {dir}/uwsgi;\n\
             scgi_temp_path {dir}/scgi;\n\
             {http}\n\
             }}\n"
        );
        let conf_path = self.dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let _ = std::fs::remove_file(self.dir.path().join("error.log"));
        let child = Command::new(binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&conf_path)
            // The compiled-in error log (/var/log/nginx) is opened before the configuration
            // is read: keep even that in the temp dir.
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.kill();
                let why = if exited {
                    "exited"
                } else {
                    "not listening within 10 s"
                };
                return Err(format!("{why}; error log:\n{}", self.error_log()));
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
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        self.kill();
    }
}
