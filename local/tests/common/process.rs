//! The built `media-local` binary as a child process, for what only a real process shows: its peak
//! memory, its exit, commands run next to it.

use std::path::Path;
use std::time::Duration;

use super::SECRET;

/// The server binary with its own data directory and the given settings (none of the caller's
/// MEDIA_* variables).
pub struct ServerProcess {
    pub base: String,
    pub process: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_media-local"));
        for (k, _) in std::env::vars() {
            if k.starts_with("MEDIA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MEDIA_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIA_DATA_DIR", dir.path())
            .env("MEDIA_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        let process = cmd.spawn().unwrap();
        // Ready when it answers a request (the port is bound before the server is set up).
        let client = reqwest::Client::new();
        for _ in 0..400 {
            let probe = client
                .get(format!("http://127.0.0.1:{port}/api/v2/media/0/"))
                .send()
                .await;
            if probe.is_ok() {
                return ServerProcess {
                    base: format!("http://127.0.0.1:{port}"),
                    process,
                    dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A field of /proc/<pid>/status, in bytes (VmHWM: peak resident memory; VmRSS: now).
    pub fn memory(&self, field: &str) -> u64 {
        let pid = self.process.id().expect("the server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }

    pub fn token(&self, user: &str) -> String {
        media_shared::api::auth::Hs256::new(SECRET.as_bytes())
            .issue(user, 3600)
            .unwrap()
    }

    /// Stops the server as Ctrl-C or a service manager would (SIGTERM), and waits for its exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.process.id().expect("the server runs");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        tokio::time::timeout(Duration::from_secs(20), self.process.wait())
            .await
            .expect("the server stops on SIGTERM")
            .unwrap()
    }
}
