//! The figures of one run, the machine they were measured on, and their Markdown rendering with the
//! verdict on each target.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;

use crate::proxy::Counts;
use crate::{Args, BIG_CHUNK, MIB, MID_CHUNK, OFFICIAL_CHUNK};

pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub load: String,
    pub clk_tck: u64,
    pub date: String,
    pub kernel: String,
    pub commit: String,
}

impl Machine {
    pub async fn probe() -> anyhow::Result<Machine> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
        let loadavg = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
        let load = loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let clk_tck: u64 = command_output("getconf", &["CLK_TCK"])
            .await?
            .parse()
            .context("getconf CLK_TCK is not a number")?;
        anyhow::ensure!(clk_tck > 0, "getconf CLK_TCK answered 0");
        let nproc = command_output("nproc", &[])
            .await?
            .parse()
            .context("nproc is not a number")?;
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the date")?;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"])
            .await
            .unwrap_or_else(|_| "unknown".into());
        Ok(Machine {
            nproc,
            cpu,
            load,
            clk_tck,
            date,
            kernel,
            commit,
        })
    }
}

async fn command_output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(out.status.success(), "{program} {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[derive(Debug, Clone, Copy)]
pub struct Upload {
    pub count: usize,
    /// The whole uploader call, with its MD5 pass over the file.
    pub total: Duration,
    pub chunks: Duration,
    pub complete: Duration,
}

pub struct BigRun {
    pub chunk: usize,
    pub up: Upload,
    pub cpu_secs: f64,
    /// CPU of the benchmark process itself (the uploader) during the upload.
    pub client_cpu_secs: f64,
    pub peak_kib: u64,
}

pub struct Many {
    pub count: usize,
    pub parallel: usize,
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

pub struct Aws {
    pub size: u64,
    pub part_size: u64,
    pub bucket: String,
    pub up: Upload,
    pub counts: Counts,
}

pub enum AwsResult {
    Skipped(String),
    Measured(Aws),
}

pub struct Figures {
    pub size: u64,
    pub limit: Duration,
    pub limit_fsync: Duration,
    /// MD5 of one official-size chunk on one core, measured in the benchmark process.
    pub md5_per_chunk: Duration,
    pub small_completes: Vec<Duration>,
    pub peak_small_kib: u64,
    pub big_runs: Vec<BigRun>,
    pub many: Many,
    pub aws: AwsResult,
}

pub fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64().max(1e-9)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

fn chunk_name(chunk: usize) -> String {
    if chunk == BIG_CHUNK {
        "4 MiB".into()
    } else if chunk == MID_CHUNK {
        "1 MiB".into()
    } else {
        format!("{chunk} B")
    }
}

/// The command that reproduces this run.
fn command(args: &Args) -> String {
    let mut c = String::new();
    if !args.skip_aws {
        c.push_str("eval \"$(scripts/start-moto.sh)\"\n");
    }
    c.push_str("cargo build --release -p media-local\n");
    c.push_str("cargo run --release -p media-bench");
    let given: Vec<String> = std::env::args().skip(1).collect();
    if !given.is_empty() {
        c.push_str(" --");
        for a in given {
            c.push(' ');
            c.push_str(&a);
        }
    }
    c
}

pub fn render(args: &Args, m: &Machine, f: &Figures) -> String {
    let mut d = String::new();
    let size_mib = f.size / MIB;
    let limit_rate = mib_per_s(f.size, f.limit);
    let mut small = f.small_completes.clone();
    small.sort();
    let small_median = small[small.len() / 2];

    let _ = writeln!(d, "# Benchmarks\n");
    let _ = writeln!(
        d,
        "Measured in one run by `media-bench` (`bench/`): it starts the release \
         `media-local` binary as a child process on a scratch data directory and a loopback port, drives it \
         with the command-line uploader's library (`local/src/uploader.rs`, chunks like the official client), \
         reads the server's CPU time and peak memory from `/proc`, and compares each figure with a reference \
         measured in the same run. The machine is shared with other work, so absolute figures vary between \
         runs; the ratios are the figures to trust.\n"
    );
    let _ = writeln!(d, "```sh\n{}\n```\n", command(args));
    let _ = writeln!(d, "| | |\n|---|---|");
    let _ = writeln!(d, "| date (UTC) | {} |", m.date);
    let _ = writeln!(d, "| commit | {} |", m.commit);
    let _ = writeln!(d, "| cores (`nproc`) | {} |", m.nproc);
    let _ = writeln!(d, "| CPU | {} |", m.cpu);
    let _ = writeln!(d, "| load average at start (1, 5, 15 min) | {} |", m.load);
    let _ = writeln!(d, "| kernel | {} |", m.kernel);
    let _ = writeln!(
        d,
        "| clock ticks per second (`getconf CLK_TCK`) | {} |",
        m.clk_tck
    );
    let _ = writeln!(
        d,
        "| scratch directory (data dirs and the limit's file) | {} |\n",
        args.scratch
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .display()
    );

    // 1.
    let _ = writeln!(d, "## 1. Upload rate of a {size_mib} MiB file\n");
    let _ = writeln!(
        d,
        "A PDF header and random bytes, uploaded on a fresh server per chunk size. The rate counts the chunk \
         requests and the completion request; the uploader's own MD5 pass over the file (client side, before \
         completing) is left out of it and shown apart. The physical limit is MD5 plus a write of the same \
         bytes on one core, in 1 MiB blocks, with one fsync at the end, in the same filesystem as the data \
         directories (best of two).\n"
    );
    let _ = writeln!(
        d,
        "| | chunks | time | rate (MiB/s) | of the limit | server CPU (s) | server CPU per MiB (ms) | server CPU per chunk (ms) | client CPU (s) | whole call with client MD5 (s) |"
    );
    let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        d,
        "| physical limit: MD5 + write + fsync, one core (fsync alone {:.0} ms) | | {:.2} s | {:.1} | 1.00 | | {:.2} (wall) | | | |",
        ms(f.limit_fsync),
        f.limit.as_secs_f64(),
        limit_rate,
        ms(f.limit) / size_mib as f64
    );
    for r in &f.big_runs {
        let t = r.up.chunks + r.up.complete;
        let rate = mib_per_s(f.size, t);
        let _ = writeln!(
            d,
            "| upload, {} chunks | {} | {:.2} s | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {:.2} |",
            chunk_name(r.chunk),
            r.up.count,
            t.as_secs_f64(),
            rate,
            rate / limit_rate,
            r.cpu_secs,
            r.cpu_secs * 1000.0 / size_mib as f64,
            r.cpu_secs * 1000.0 / r.up.count.max(1) as f64,
            r.client_cpu_secs,
            r.up.total.as_secs_f64()
        );
    }
    let run = |chunk| f.big_runs.iter().find(|r| r.chunk == chunk);
    let rate = |r: &BigRun| mib_per_s(f.size, r.up.chunks + r.up.complete);
    let _ = writeln!(d, "\nTargets (issue 12):\n");
    if let (Some(official), Some(mid)) = (run(OFFICIAL_CHUNK), run(MID_CHUNK)) {
        let ratio = rate(official) / rate(mid);
        let _ = writeln!(
            d,
            "- {OFFICIAL_CHUNK}-byte chunks at least 0.75 of the rate at 1 MiB chunks. Ratio {ratio:.2}: {}.",
            verdict(ratio >= 0.75)
        );
        let per_chunk = official.cpu_secs * 1000.0 / official.up.count.max(1) as f64;
        let beyond = per_chunk - ms(f.md5_per_chunk);
        let _ = writeln!(
            d,
            "- Server CPU per {OFFICIAL_CHUNK}-byte chunk at most 0.5 ms beyond the chunk's MD5 ({:.3} ms, \
             measured here on one core). {per_chunk:.3} ms per chunk, {beyond:.3} ms beyond: {}.",
            ms(f.md5_per_chunk),
            verdict(beyond <= 0.5)
        );
    }
    if let Some(r) = run(BIG_CHUNK) {
        let ratio = rate(r) / limit_rate;
        let _ = writeln!(
            d,
            "- 4 MiB chunks at least 0.75 of the limit. Ratio {ratio:.2}: {}.\n",
            verdict(ratio >= 0.75)
        );
    }

    // 2.
    let _ = writeln!(d, "## 2. Completion latency\n");
    let _ = writeln!(
        d,
        "The completion request alone (sent until its answer is read), on the server of the upload. A \
         server that re-read the file to check its MD5 would take time in proportion to the size \
         ({size_mib} MiB against 1 MiB).\n"
    );
    let _ = writeln!(d, "| file | completion (ms) | ratio to the 1 MiB median |");
    let _ = writeln!(d, "|---|---:|---:|");
    let all: Vec<String> = f
        .small_completes
        .iter()
        .map(|c| format!("{:.1}", ms(*c)))
        .collect();
    let _ = writeln!(
        d,
        "| 1 MiB, median of {} (all: {}) | {:.1} | 1.00 |",
        small.len(),
        all.join(", "),
        ms(small_median)
    );
    let mut worst: f64 = 0.0;
    for r in &f.big_runs {
        let ratio = r.up.complete.as_secs_f64() / small_median.as_secs_f64().max(1e-9);
        worst = worst.max(ratio);
        let _ = writeln!(
            d,
            "| {size_mib} MiB, {} chunks | {:.1} | {ratio:.2} |",
            chunk_name(r.chunk),
            ms(r.up.complete)
        );
    }
    let _ = writeln!(
        d,
        "\nTarget: the ratio stays near 1 (taken as below 10, where re-reading would give about {}). \
         Largest ratio {worst:.2}: {}.\n",
        size_mib,
        verdict(worst < 10.0)
    );

    // 3.
    let m3 = &f.many;
    let _ = writeln!(d, "## 3. Many small uploads\n");
    let _ = writeln!(
        d,
        "{} files of 256 KiB (different contents), one chunk each, {} uploads at a time on one fresh \
         server; an upload's latency is its chunk request, the client's MD5 of the 256 KiB and its \
         completion request.\n",
        m3.count, m3.parallel
    );
    let _ = writeln!(
        d,
        "| uploads | at a time | wall time (s) | uploads/s | MiB/s | p50 latency (ms) | p99 latency (ms) |"
    );
    let _ = writeln!(d, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        d,
        "| {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        m3.count,
        m3.parallel,
        m3.wall.as_secs_f64(),
        m3.count as f64 / m3.wall.as_secs_f64(),
        mib_per_s(m3.count as u64 * 256 * 1024, m3.wall),
        ms(m3.p50),
        ms(m3.p99)
    );
    let per_s = m3.count as f64 / m3.wall.as_secs_f64();
    let _ = writeln!(
        d,
        "Target: at least 1000 uploads/s, each chunk and completion durable before its answer. \
         {per_s:.0}/s: {}.\n",
        verdict(per_s >= 1000.0)
    );

    // 4.
    let _ = writeln!(d, "## 4. Peak resident memory of the server\n");
    let _ = writeln!(
        d,
        "VmHWM of the server process (`/proc/<pid>/status`) after its upload, each on a fresh server.\n"
    );
    let _ = writeln!(d, "| server | VmHWM (MiB) | ratio to the 1 MiB server |");
    let _ = writeln!(d, "|---|---:|---:|");
    let kib_mib = |k: u64| k as f64 / 1024.0;
    let _ = writeln!(
        d,
        "| uploaded one 1 MiB file, {} chunks | {:.1} | 1.00 |",
        chunk_name(OFFICIAL_CHUNK),
        kib_mib(f.peak_small_kib)
    );
    for r in &f.big_runs {
        let _ = writeln!(
            d,
            "| uploaded one {size_mib} MiB file, {} chunks | {:.1} | {:.2} |",
            chunk_name(r.chunk),
            kib_mib(r.peak_kib),
            r.peak_kib as f64 / f.peak_small_kib.max(1) as f64
        );
    }
    if let Some(same) = f.big_runs.iter().find(|r| r.chunk == OFFICIAL_CHUNK) {
        let ratio = same.peak_kib as f64 / f.peak_small_kib.max(1) as f64;
        let grew = kib_mib(same.peak_kib.saturating_sub(f.peak_small_kib));
        let _ = writeln!(
            d,
            "\nTarget: peak memory independent of the file size (same chunk size, {size_mib}× the bytes; \
             taken as a ratio below 1.5). Ratio {ratio:.2}, {grew:.1} MiB more: {}.\n",
            verdict(ratio < 1.5)
        );
    }
    if let (Some(official), Some(big)) = (
        f.big_runs.iter().find(|r| r.chunk == OFFICIAL_CHUNK),
        f.big_runs.iter().find(|r| r.chunk == BIG_CHUNK),
    ) {
        let ratio = big.peak_kib as f64 / official.peak_kib.max(1) as f64;
        let _ = writeln!(
            d,
            "Target: at 4 MiB chunks at most 1.5× the peak at {OFFICIAL_CHUNK}-byte chunks. Ratio \
             {ratio:.2}: {}.\n",
            verdict(ratio <= 1.5)
        );
    }

    // 5.
    let _ = writeln!(d, "## 5. AWS backend (S3 + DynamoDB) against moto\n");
    match &f.aws {
        AwsResult::Skipped(why) => {
            let _ = writeln!(d, "Skipped: {why}.\n");
        }
        AwsResult::Measured(a) => render_aws(&mut d, a),
    }
    d
}

fn render_aws(d: &mut String, a: &Aws) {
    let c = &a.counts;
    let chunks = a.up.count.max(1) as f64;
    let _ = writeln!(
        d,
        "`media-local` with `MEDIA_BACKEND=aws` (part size {} MiB), its `AWS_ENDPOINT_URL` pointed at a \
         counting proxy in the benchmark that forwards to moto; a {} MiB file in {} chunks of {OFFICIAL_CHUNK} \
         bytes, counted from the first chunk to 2 s after completion (bucket and table `{}` are left in moto). \
         S3 and DynamoDB share the endpoint and are told apart by `X-Amz-Target`. PUT body bytes are the \
         decoded length of aws-chunked bodies (`x-amz-decoded-content-length`). Upload time through moto: \
         {:.1} s ({:.1} MiB/s; moto, not the service, is the bottleneck here).\n",
        a.part_size / MIB,
        a.size / MIB,
        a.up.count,
        a.bucket,
        (a.up.chunks + a.up.complete).as_secs_f64(),
        mib_per_s(a.size, a.up.chunks + a.up.complete)
    );
    let _ = writeln!(d, "| service | operation | requests | per chunk |");
    let _ = writeln!(d, "|---|---|---:|---:|");
    for (op, n) in &c.s3 {
        let _ = writeln!(d, "| S3 | {op} | {n} | {:.2} |", *n as f64 / chunks);
    }
    let _ = writeln!(
        d,
        "| S3 | **all** | **{}** | **{:.2}** |",
        c.s3_total(),
        c.s3_total() as f64 / chunks
    );
    for (op, n) in &c.dynamodb {
        let _ = writeln!(d, "| DynamoDB | {op} | {n} | {:.2} |", *n as f64 / chunks);
    }
    let _ = writeln!(
        d,
        "| DynamoDB | **all** | **{}** | **{:.2}** |",
        c.dynamodb_total(),
        c.dynamodb_total() as f64 / chunks
    );
    let written = c.s3_put_bytes as f64 / a.size as f64;
    let read = c.s3_get_bytes as f64 / a.size as f64;
    let _ = writeln!(
        d,
        "\n| bytes | total | per byte uploaded |\n|---|---:|---:|\n| written to S3 (PUT bodies) | {} | {written:.3} |\n| read from S3 (GET answers) | {} | {read:.3} |\n",
        c.s3_put_bytes, c.s3_get_bytes
    );
    let _ = writeln!(
        d,
        "Target: at most 2.1 bytes written to S3 per byte uploaded. {written:.3}: {}.\n",
        verdict(written <= 2.1)
    );
    crate::cost::render(
        d,
        &crate::cost::Measured {
            size: a.size,
            chunk: OFFICIAL_CHUNK as u64,
            part_size: a.part_size,
            chunk_requests: a.up.count as u64,
            chunk_ms: ms(a.up.chunks) / chunks,
            complete_ms: ms(a.up.complete),
            calls: &c.calls,
        },
    );
}
