//! What the server fixtures (Redis, PostgreSQL, ...) share: the skip-or-fail rule, free loopback
//! ports, and throwaway directories.
//!
//! A fixture whose binary is missing returns `None` after printing a `SKIP` line, so the test
//! passes without it on a developer machine; under `CI=true` it panics instead, so CI can never
//! go green without the real server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Whether the tests run under `CI=true` (where a skip is a failure).
pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a fixture that cannot run: panics under `CI=true`, else prints a skip notice.
pub fn unavailable(fixture: &str, reason: &str) {
    if running_in_ci() {
        panic!("{fixture} fixture unavailable under CI=true: {reason}");
    }
    // Straight to stderr: the test harness captures `eprintln!`, and a skip must be seen.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP {fixture} test: {reason}");
}

/// The first of `candidates` that exists, or `None` after reporting the `fixture` as
/// [`unavailable`] with the Debian `package` that installs it.
pub fn require_binary(fixture: &str, candidates: &[&str], package: &str) -> Option<PathBuf> {
    let found = find_binary(candidates);
    if found.is_none() {
        let name = candidates
            .first()
            .map_or("binary", |c| c.rsplit('/').next().unwrap_or(c));
        unavailable(
            fixture,
            &format!("{name} not found (install it: apt-get install {package})"),
        );
    }
    found
}

/// The first of `candidates` that exists as a file.
pub fn find_binary(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            // Bare names: search PATH.
            candidates.iter().find_map(|name| which(name))
        })
}

fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A loopback TCP port nobody listens on right now, below the kernel's ephemeral range
/// (32768 and up on Linux): a server stopped and restarted on its port must not find it taken
/// meanwhile by the local end of some outgoing connection, which ports handed out by binding
/// port 0 would risk.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Spread test binaries running side by side over the range, then walk it.
    let seed = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-sso-{label}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Freezes (`"STOP"`) or thaws (`"CONT"`) process `pid` and its direct children: a server that
/// accepts connections but never answers, as a hung host or a partition that drops packets looks.
pub fn signal_tree(pid: u32, signal: &str) {
    let pid = pid.to_string();
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
    // No children is fine (pkill exits 1).
    let _ = std::process::Command::new("pkill")
        .args([&format!("-{signal}"), "-P", &pid])
        .status();
}
