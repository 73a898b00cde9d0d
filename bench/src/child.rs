//! The server under test: the release `media-local` binary as a child process on a scratch data
//! directory and a loopback port of its own choosing, plus what /proc says about it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const SECRET: &str = "media-bench-secret";

/// A running server; killed when dropped (also when the benchmark fails or is interrupted).
pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `binary` with the given extra environment; waits (bounded) for its "listening" line.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("creating the server log {}", log.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .env("MEDIA_LISTEN", "127.0.0.1:0")
            .env("MEDIA_DATA_DIR", data_dir)
            .env("MEDIA_JWT_SECRET", SECRET)
            // Big documents, the largest chunk the service allows, no sweep during the runs.
            .env("MEDIA_MAX_DOC_BYTES", (64u64 << 30).to_string())
            .env("MEDIA_MAX_CHUNK_BYTES", (4u64 << 20).to_string())
            .env("MEDIA_SWEEP_SECS", "86400")
            .env("RUST_LOG", "warn")
            .env_remove("MEDIA_BACKEND")
            .env_remove("MEDIA_PUBLIC_BASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) => bail!(
                "{} exited before listening; its log: {}",
                binary.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            Err(_) => bail!("{} did not listen within 60 s", binary.display()),
        };
        let base = line
            .strip_prefix("media-local listening on ")
            .with_context(|| format!("unexpected first line from the server: {line:?}"))?
            .trim()
            .to_string();
        anyhow::ensure!(
            base.starts_with("http://127.0.0.1:"),
            "the server listens off loopback: {base}"
        );
        // Nothing more is expected on stdout; drain it so the child can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            pid,
            base,
            log,
        })
    }

    /// utime + stime so far, in clock ticks.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        cpu_ticks(&format!("/proc/{}/stat", self.pid))
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.pid, "VmHWM:")
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("stopping the server (pid {})", self.pid))
    }
}

/// utime + stime of a process (`/proc/<pid>/stat`, or `/proc/self/stat`), in clock ticks.
pub fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("no ')' in {path}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("{path} has no field {n}"))?
            .parse()
            .with_context(|| format!("field {n} of {path} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in {path}"))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("{key} in {path} is not a number: {line:?}"))
}

/// The `media-local` binary next to this one (the same cargo profile). `cargo run -p media-bench`
/// builds only this binary, so the server is built first: `cargo build --release -p media-local`.
/// (Building it from here through `$CARGO` made cargo rebuild the package on every run.)
pub fn find_server_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--media-local {}: no such file", p.display());
        return Ok(p);
    }
    let me = std::env::current_exe().context("locating this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let binary = dir.join("media-local");
    anyhow::ensure!(
        binary.is_file(),
        "{} not found: build it first with `cargo build --release -p media-local`",
        binary.display()
    );
    Ok(binary)
}
