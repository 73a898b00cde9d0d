//! `cold-start`: how long each function binary takes from its start to its first poll of the Lambda
//! Runtime API (`GET /2018-06-01/runtime/invocation/next`), which is when Lambda's INIT phase ends:
//! tracing set up, settings and credentials read from the environment, the S3 and DynamoDB clients
//! built. The Runtime API is emulated on a loopback port (as in `functions/get/tests/runtime.rs`); it
//! notes the instant the poll arrives and never answers it, and the process is then killed. The
//! environment is what Lambda gives a function (fixed credentials, region, function name) plus the
//! template's settings; nothing else, so no call leaves the machine.
//!
//!     cargo build --release -p fn-chunk -p fn-get ...   # every crate in functions/
//!     cargo run --release -p media-bench --bin cold-start -- [--bin-dir target/release] [--runs 21]
//!
//! Starts are interleaved across the functions (one of each per round) so that the shared machine's
//! load falls on all of them alike; the figures are the median, min and max per function, with the
//! binary's size and the process's peak resident memory (VmHWM) at its first poll. These are native
//! figures of the machine running it (x86_64 here), not Graviton's.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::State;
use axum::routing::{get, post};
use clap::Parser;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(
    name = "cold-start",
    about = "Time from starting each function binary to its first poll of an emulated Lambda Runtime API"
)]
struct Args {
    /// Where the function binaries are (`cargo build --release -p fn-...` puts them in target/release).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Starts per function.
    #[arg(long, default_value_t = 21)]
    runs: usize,
    /// Only these functions (binary names); default: every crate in functions/.
    #[arg(long, value_delimiter = ',')]
    functions: Vec<String>,
}

/// What the emulated Runtime API saw.
enum Seen {
    Poll(Instant),
    InitError(String),
}

async fn next(State(tx): State<Arc<mpsc::UnboundedSender<Seen>>>) {
    let _ = tx.send(Seen::Poll(Instant::now()));
    // Lambda holds the poll until an event comes; none will.
    std::future::pending::<()>().await;
}

async fn init_error(State(tx): State<Arc<mpsc::UnboundedSender<Seen>>>, body: String) {
    let _ = tx.send(Seen::InitError(body));
}

/// The function binaries: one per crate in functions/, named as its directory.
fn function_names() -> anyhow::Result<Vec<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {dir}"))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// One start: spawn, wait for the first poll, read the peak memory, kill.
async fn start_once(
    binary: &std::path::Path,
    name: &str,
    api: std::net::SocketAddr,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
) -> anyhow::Result<(Duration, u64)> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("media-{name}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/media-{name}"),
        )
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/02/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "example/secret/key/example/secret/key/00",
        )
        .env("AWS_SESSION_TOKEN", "example-session-token")
        .env("MEDIA_BUCKET", "media-bucket")
        .env("MEDIA_TABLE", "media-table")
        .env(
            "MEDIA_PUBLIC_BASE_URL",
            "https://d111111abcdef8.cloudfront.net",
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().unwrap_or(0);
    let mut stderr = child.stderr.take();
    let seen = tokio::select! {
        seen = tokio::time::timeout(Duration::from_secs(30), rx.recv()) => seen,
        status = child.wait() => {
            let mut log = String::new();
            if let Some(s) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_string(&mut log).await;
            }
            bail!("{name} exited ({:?}) before polling:\n{log}", status?)
        }
    };
    let polled = match seen {
        Ok(Some(Seen::Poll(at))) => at,
        Ok(Some(Seen::InitError(body))) => bail!("{name} reported an init error: {body}"),
        Ok(None) => bail!("the emulated Runtime API stopped"),
        Err(_) => bail!("{name} did not poll within 30 s"),
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    child.kill().await.ok();
    Ok((polled - started, hwm_kib))
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let names = if args.functions.is_empty() {
        function_names()?
    } else {
        args.functions.clone()
    };
    let mut binaries = Vec::new();
    for name in &names {
        let path = args.bin_dir.join(name);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!(
                "{} (build it first: cargo build --release -p fn-{name})",
                path.display()
            )
        })?;
        binaries.push((name.clone(), path, meta.len()));
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(Arc::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the emulated Runtime API")?;
    let api = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("emulated Runtime API stopped: {e}");
        }
    });

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); binaries.len()];
    let mut peaks: Vec<u64> = vec![0; binaries.len()];
    // One unmeasured start of each first, so that every measured start finds the binary in the page
    // cache, as Lambda's warm-ish hosts do not promise but a benchmark must, to be repeatable.
    for (name, path, _) in &binaries {
        start_once(path, name, api, &mut rx).await?;
    }
    for round in 0..args.runs {
        for (i, (name, path, _)) in binaries.iter().enumerate() {
            let (took, hwm) = start_once(path, name, api, &mut rx).await?;
            times[i].push(took);
            peaks[i] = peaks[i].max(hwm);
        }
        eprint!("\rround {}/{}", round + 1, args.runs);
    }
    eprintln!();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Cold start to the first Runtime API poll, {} starts per function, {} (`{}`), load {}\n",
        args.runs,
        std::env::consts::ARCH,
        args.bin_dir.display(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| function | binary (MB) | median (ms) | min (ms) | max (ms) | VmHWM at first poll (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (i, (name, _, size)) in binaries.iter().enumerate() {
        let t = &mut times[i];
        t.sort();
        println!(
            "| {name} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            *size as f64 / 1e6,
            ms(median(t)),
            ms(t[0]),
            ms(t[t.len() - 1]),
            peaks[i] as f64 / 1024.0
        );
    }
    Ok(())
}
