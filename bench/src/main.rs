//! `media-bench`: the service's performance figures, measured in one run against the release
//! `media-local` binary (a child process on a scratch directory and a loopback port), driven by the
//! command-line uploader's library, and written to docs/BENCHMARKS.md with the command, the machine
//! and the date. Figures are compared with references measured in the same run (the machine is
//! shared and loaded; ratios within one run are what can be trusted).
//!
//!     cargo build --release -p media-local
//!     cargo run --release -p media-bench -- [--size-mib 256] [--skip-aws] [--out docs/BENCHMARKS.md]
//!
//! The AWS part needs the S3/DynamoDB server of `eval "$(scripts/start-moto.sh)"` (AWS_ENDPOINT_URL).

mod child;
mod cost;
mod proxy;
mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use md5::{Digest, Md5};
use media_local::uploader::{self, Outcome, UploadOptions};
use rand::{RngCore, SeedableRng};

use child::Server;
use report::*;

const MIB: u64 = 1 << 20;
const OFFICIAL_CHUNK: usize = 204_800;
/// The reference of the official chunk size's target (issue 12): its rate is compared with this one's.
const MID_CHUNK: usize = 1 << 20;
const BIG_CHUNK: usize = 4 << 20;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "media-bench",
    about = "Benchmarks media-local (and its AWS backend against moto) and writes the figures"
)]
pub struct Args {
    /// Size of the big file, in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Skip the AWS backend measurements (otherwise they need AWS_ENDPOINT_URL, e.g. moto's).
    #[arg(long)]
    pub skip_aws: bool,
    /// Size of the file uploaded to the AWS backend, in MiB (moto is slow: keep it small).
    #[arg(long, default_value_t = 32)]
    pub aws_size_mib: u64,
    /// Number of small (256 KiB) uploads, 8 at a time.
    #[arg(long, default_value_t = 200)]
    pub small_count: usize,
    /// Where the figures are written (Markdown).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub out: PathBuf,
    /// Parent of the scratch directory (default: the system temp directory).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// The media-local binary (default: the one next to this executable).
    #[arg(long)]
    pub media_local: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // Interrupted: `run` is dropped, which kills the servers and removes the scratch directory.
    tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: servers stopped, scratch directory removed"),
        _ = term.recv() => bail!("terminated: servers stopped, scratch directory removed"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib >= 2, "--size-mib must be at least 2");
    anyhow::ensure!(args.aws_size_mib >= 1, "--aws-size-mib must be at least 1");
    anyhow::ensure!(args.small_count >= 1, "--small-count must be at least 1");
    let machine = Machine::probe().await?;
    eprintln!(
        "{} cores, {}, load {} at start",
        machine.nproc, machine.cpu, machine.load
    );
    let binary = child::find_server_binary(args.media_local.clone())?;
    let parent = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("media-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    let dir = scratch.path().to_path_buf();
    let token = media_shared::api::auth::Hs256::new(child::SECRET.as_bytes())
        .issue("bench", 24 * 3600)
        .context("issuing the benchmark's token")?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .context("building the HTTP client")?;
    let ctx = Ctx {
        binary,
        dir: dir.clone(),
        token,
        client,
        clk_tck: machine.clk_tck,
    };

    // The files.
    let size = args.size_mib * MIB;
    eprintln!("writing the {} MiB test file ...", args.size_mib);
    let big = dir.join("big.pdf");
    let data = pdf_bytes(size as usize, 1);
    write_file(&big, &data)?;
    let small = dir.join("small.pdf");
    write_file(&small, &pdf_bytes(MIB as usize, 2))?;

    // 1. The physical limit: MD5 plus a disk write of the same bytes on one core, best of two.
    eprintln!("measuring the physical limit (MD5 + write + fsync on one core) ...");
    let (mut limit, mut limit_fsync) = (Duration::MAX, Duration::ZERO);
    let data = Arc::new(data);
    for i in 0..2 {
        let d = data.clone();
        let target = dir.join(format!("limit-{i}.bin"));
        let (took, fsync) = tokio::task::spawn_blocking(move || md5_and_write(&d, &target))
            .await
            .context("the limit measurement panicked")??;
        if took < limit {
            (limit, limit_fsync) = (took, fsync);
        }
    }
    let md5_per_chunk = {
        let d = data.clone();
        tokio::task::spawn_blocking(move || md5_per_chunk(&d, OFFICIAL_CHUNK))
            .await
            .context("the MD5 measurement panicked")?
    };
    drop(data);
    let limit_rate = mib_per_s(size, limit);
    eprintln!(
        "  limit: {limit_rate:.1} MiB/s; MD5 of a {OFFICIAL_CHUNK}-byte chunk {:.3} ms",
        ms(md5_per_chunk)
    );

    // 4. (reference) A fresh server that uploads only the 1 MiB file; then 2. the small completions.
    eprintln!("1 MiB uploads on a fresh server ...");
    let server = Server::start(&ctx.binary, &dir.join("srv-small"), &[]).await?;
    let first = ctx.upload(&server, &small, OFFICIAL_CHUNK).await?;
    let peak_small_kib = server.peak_rss_kib()?;
    let mut small_completes = vec![first.complete];
    for _ in 0..4 {
        small_completes.push(ctx.upload(&server, &small, OFFICIAL_CHUNK).await?.complete);
    }
    server.stop().await?;

    // 1, 2, 4: the big file, each chunk size on a fresh server.
    let mut big_runs = Vec::new();
    for chunk in [OFFICIAL_CHUNK, MID_CHUNK, BIG_CHUNK] {
        eprintln!(
            "{} MiB upload in {chunk}-byte chunks on a fresh server ...",
            args.size_mib
        );
        let data_dir = dir.join(format!("srv-big-{chunk}"));
        let server = Server::start(&ctx.binary, &data_dir, &[]).await?;
        let before = server.cpu_ticks()?;
        let client_before = child::cpu_ticks("/proc/self/stat")?;
        let up = ctx.upload(&server, &big, chunk).await?;
        let cpu_ticks = server.cpu_ticks()? - before;
        let client_ticks = child::cpu_ticks("/proc/self/stat")? - client_before;
        let peak_kib = server.peak_rss_kib()?;
        server.stop().await?;
        let _ = std::fs::remove_dir_all(&data_dir);
        eprintln!(
            "  {:.1} MiB/s, complete {:.1} ms",
            mib_per_s(size, up.chunks + up.complete),
            ms(up.complete)
        );
        big_runs.push(BigRun {
            chunk,
            up,
            cpu_secs: cpu_ticks as f64 / ctx.clk_tck as f64,
            client_cpu_secs: client_ticks as f64 / ctx.clk_tck as f64,
            peak_kib,
        });
    }

    // 3. Many small uploads, 8 at a time.
    eprintln!("{} uploads of 256 KiB, 8 at a time ...", args.small_count);
    let many = ctx.many_small(args.small_count, 8).await?;

    // 5. The AWS backend against moto, through the counting proxy.
    let aws = if args.skip_aws {
        AwsResult::Skipped("--skip-aws".into())
    } else {
        match std::env::var("AWS_ENDPOINT_URL") {
            Err(_) => AwsResult::Skipped(
                "AWS_ENDPOINT_URL is not set (run `eval \"$(scripts/start-moto.sh)\"` first)"
                    .into(),
            ),
            Ok(endpoint) => {
                eprintln!(
                    "{} MiB upload in {OFFICIAL_CHUNK}-byte chunks on the AWS backend (moto at {endpoint}) ...",
                    args.aws_size_mib
                );
                AwsResult::Measured(ctx.aws(&endpoint, args.aws_size_mib * MIB).await?)
            }
        }
    };

    let figures = Figures {
        size,
        limit,
        limit_fsync,
        md5_per_chunk,
        small_completes,
        peak_small_kib,
        big_runs,
        many,
        aws,
    };
    let doc = render(&args, &machine, &figures);
    println!("{doc}");
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.out, &doc).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    drop(scratch);
    Ok(())
}

#[derive(Clone)]
struct Ctx {
    binary: PathBuf,
    dir: PathBuf,
    token: String,
    client: reqwest::Client,
    clk_tck: u64,
}

impl Ctx {
    /// One upload through the uploader library; fails unless it completed.
    async fn upload(&self, server: &Server, file: &Path, chunk: usize) -> anyhow::Result<Upload> {
        let opts = UploadOptions {
            file: file.to_path_buf(),
            api: server.base.clone(),
            token: self.token.clone(),
            chunk_size: chunk,
            media_type: None,
            progress: false,
            max_chunks: None,
            state_dir: Some(self.dir.join("uploader-state")),
        };
        let outcome = uploader::upload(&self.client, &opts)
            .await
            .with_context(|| {
                format!(
                    "uploading {} to {}; the server's log ends with:\n{}",
                    file.display(),
                    server.base,
                    log_tail(&server.log)
                )
            })?;
        match outcome {
            Outcome::Completed {
                chunks,
                elapsed,
                chunks_elapsed,
                complete_elapsed,
                ..
            } => Ok(Upload {
                count: chunks,
                total: elapsed,
                chunks: chunks_elapsed,
                complete: complete_elapsed,
            }),
            Outcome::Interrupted { offset, .. } => {
                bail!("the upload of {} stopped at {offset}", file.display())
            }
        }
    }

    async fn many_small(&self, count: usize, parallel: usize) -> anyhow::Result<Many> {
        let files_dir = self.dir.join("small-files");
        std::fs::create_dir_all(&files_dir)
            .with_context(|| format!("creating {}", files_dir.display()))?;
        let mut files = Vec::with_capacity(count);
        for i in 0..count {
            let f = files_dir.join(format!("doc-{i:04}.pdf"));
            write_file(&f, &pdf_bytes(256 * 1024, 100 + i as u64))?;
            files.push(f);
        }
        let server = Arc::new(Server::start(&self.binary, &self.dir.join("srv-many"), &[]).await?);
        let files = Arc::new(files);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..parallel {
            let (server, files, next) = (server.clone(), files.clone(), next.clone());
            let ctx = self.clone();
            workers.spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(file) = files.get(i) else { break };
                    let t = Instant::now();
                    let up = ctx.upload(&server, file, 256 * 1024).await?;
                    anyhow::ensure!(up.count == 1, "a 256 KiB upload took {} chunks", up.count);
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            });
        }
        let mut latencies = Vec::with_capacity(count);
        while let Some(done) = workers.join_next().await {
            latencies.extend(done.context("an upload worker panicked")??);
        }
        let wall = started.elapsed();
        drop(workers);
        match Arc::try_unwrap(server) {
            Ok(s) => s.stop().await?,
            Err(_) => bail!("the server of the small uploads is still shared"),
        }
        anyhow::ensure!(
            latencies.len() == count,
            "{} of {count} uploads",
            latencies.len()
        );
        latencies.sort();
        Ok(Many {
            count,
            parallel,
            wall,
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
        })
    }

    async fn aws(&self, endpoint: &str, size: u64) -> anyhow::Result<Aws> {
        let proxy = proxy::start(endpoint).await?;
        let unique = format!(
            "bench-{}",
            &hex::encode(Md5::digest(format!(
                "{:?}{}",
                Instant::now(),
                std::process::id()
            )))[..16]
        );
        let env = [
            ("MEDIA_BACKEND", "aws".to_string()),
            ("MEDIA_BUCKET", unique.clone()),
            ("MEDIA_TABLE", unique.clone()),
            ("MEDIA_CREATE_RESOURCES", "1".to_string()),
            ("MEDIA_S3_FORCE_PATH_STYLE", "1".to_string()),
            ("AWS_ENDPOINT_URL", proxy.url.clone()),
            (
                "AWS_REGION",
                std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            ),
            (
                "AWS_ACCESS_KEY_ID",
                std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
            ),
        ];
        let server = Server::start(&self.binary, &self.dir.join("srv-aws"), &env).await?;
        let file = self.dir.join("aws.pdf");
        write_file(&file, &pdf_bytes(size as usize, 7))?;
        let part_size = 5 * MIB;
        let before = proxy.counts();
        let up = self.upload(&server, &file, OFFICIAL_CHUNK).await?;
        // Tidying after completion may run just after the answer; let it land in the counts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let counts = proxy.counts().since(&before);
        server.stop().await?;
        anyhow::ensure!(
            counts.errors == 0,
            "{} requests failed in the counting proxy",
            counts.errors
        );
        Ok(Aws {
            size,
            part_size,
            bucket: unique,
            up,
            counts,
        })
    }
}

/// A PDF header, `len` bytes in all of seeded random data, a PDF trailer.
fn pdf_bytes(len: usize, seed: u64) -> Vec<u8> {
    let head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
    let tail = b"%%EOF\n";
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v[..head.len()].copy_from_slice(head);
    v[len - tail.len()..].copy_from_slice(tail);
    v
}

/// Writes and fsyncs, so that no write-back of the inputs overlaps the measurements.
fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync of {}", path.display()))
}

/// MD5 and a write of the same 1 MiB blocks, then fsync: what storing an upload must at least cost.
/// Returns the whole time and the final fsync's share of it.
fn md5_and_write(data: &[u8], target: &Path) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut file =
        std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    let mut hasher = Md5::new();
    for block in data.chunks(MIB as usize) {
        hasher.update(block);
        file.write_all(block)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    let before_fsync = Instant::now();
    file.sync_all()
        .with_context(|| format!("fsync of {}", target.display()))?;
    let took = started.elapsed();
    let fsync = before_fsync.elapsed();
    std::hint::black_box(hasher.finalize());
    drop(file);
    std::fs::remove_file(target).with_context(|| format!("removing {}", target.display()))?;
    Ok((took, fsync))
}

/// The time MD5 takes over one chunk of `chunk` bytes on one core (best of two passes over `data`):
/// what a chunk's server CPU is compared with.
fn md5_per_chunk(data: &[u8], chunk: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        let mut n = 0u32;
        for c in data.chunks(chunk) {
            std::hint::black_box(Md5::digest(c));
            n += 1;
        }
        best = best.min(started.elapsed() / n.max(1));
    }
    best
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let start = log.len().saturating_sub(2000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    log[start..].to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
