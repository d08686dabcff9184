//! Runs moto_server (the AWS emulator) on a free loopback port. It runs
//! under a small shell guard that kills it as soon as our stdin pipe closes,
//! so the emulator never outlives the process that started it — even when
//! that process is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub struct Moto {
    pub endpoint: String,
    guard: Child,
}

impl Drop for Moto {
    /// Closing the guard's stdin makes it stop moto and exit. (Killing the
    /// guard instead would orphan moto: a killed shell runs no trap.)
    fn drop(&mut self) {
        drop(self.guard.stdin.take());
        for _ in 0..100 {
            if !matches!(self.guard.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How moto is started: `KEEL_MOTO_SERVER` (a moto_server executable) if
/// set, else the project venv's Python (made by `make venv`) running
/// `infra/local/moto_server.py`, moto_server without its ever-growing record
/// of model instances (see that file).
pub fn moto_command() -> (PathBuf, Option<PathBuf>) {
    match std::env::var_os("KEEL_MOTO_SERVER") {
        Some(binary) => (PathBuf::from(binary), None),
        None => (crate::repo_root().join(".keel/venv/bin/python"), Some(crate::repo_root().join("infra/local/moto_server.py"))),
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Moto {
    pub async fn start(log: Option<PathBuf>) -> anyhow::Result<Moto> {
        let (binary, script) = moto_command();
        if !binary.exists() {
            bail!("{} not found: run `make venv` (or `make dev`/`make test`, which do it)", binary.display());
        }
        let port = free_port()?;
        let log = log.unwrap_or_else(|| PathBuf::from("/dev/null"));
        // "$3" is the launcher script when moto runs under the venv's Python.
        let run = if script.is_some() { r#""$0" "$3""# } else { r#""$0""# };
        let guard = Command::new("sh")
            .arg("-c")
            .arg(format!(r#"{run} -H 127.0.0.1 -p "$1" >>"$2" 2>&1 & pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT; trap 'exit 0' INT TERM HUP; read _ignored"#))
            .arg(&binary)
            .arg(port.to_string())
            .arg(&log)
            .args(script.as_ref())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting moto_server")?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("moto_server did not start on port {port} within 30 s (log: {})", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Moto { endpoint: format!("http://127.0.0.1:{port}"), guard })
    }
}
