//! The command-line uploader: uploads a file through the API exactly like the official client (chunks
//! with Content-Range, `upload_id` first, the file part named `image`), shows progress with rate and
//! ETA, and resumes an interrupted upload from the offset the server reports. It is also the driver of
//! the benchmarks.
//!
//! Resuming needs no extra endpoint: the remembered upload is probed by sending the chunk we believe
//! comes next; if the server is further along, it answers 400 with its `offset`, and we go on there.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use md5::{Digest, Md5};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub file: PathBuf,
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    pub token: String,
    pub chunk_size: usize,
    /// `type` sent at completion (image, eimage, doc); absent: the server decides from the content.
    pub media_type: Option<String>,
    pub progress: bool,
    /// Stop after sending this many chunks (simulates an interruption; tests and benchmarks).
    pub max_chunks: Option<usize>,
    /// Where resumable uploads are remembered; default: the system temp directory.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Outcome {
    Completed {
        media: Value,
        upload_id: String,
        resumed_from: u64,
        chunks: usize,
        /// The whole call: chunks, the client's MD5 pass over the file, and completion.
        elapsed: Duration,
        /// From the start to the answer of the last chunk.
        chunks_elapsed: Duration,
        /// The completion request alone (sent until its answer is read), without the MD5 pass.
        complete_elapsed: Duration,
    },
    Interrupted {
        upload_id: String,
        offset: u64,
    },
}

/// How many times one chunk is retried after a transport error or a 409 before giving up.
const RETRIES: u32 = 8;

pub async fn upload(client: &reqwest::Client, opts: &UploadOptions) -> anyhow::Result<Outcome> {
    anyhow::ensure!(opts.chunk_size > 0, "the chunk size must be positive");
    let meta = std::fs::metadata(&opts.file)
        .with_context(|| format!("reading {}", opts.file.display()))?;
    let size = meta.len();
    anyhow::ensure!(size > 0, "{} is empty", opts.file.display());
    let state_path = state_file(opts, &meta)?;
    let mut file = std::fs::File::open(&opts.file)?;
    let name = opts
        .file
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let started = Instant::now();

    let mut upload_id = std::fs::read_to_string(&state_path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let mut offset = 0u64;
    let mut resumed_from = 0u64;
    let mut chunks = 0usize;
    let bar = progress_bar(opts.progress, size);

    while offset < size {
        if opts.max_chunks.is_some_and(|max| chunks >= max) {
            bar.abandon();
            return Ok(Outcome::Interrupted {
                upload_id: upload_id.unwrap_or_default(),
                offset,
            });
        }
        let len = (size - offset).min(opts.chunk_size as u64) as usize;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut buf)?;
        let (status, body) =
            send_chunk(client, opts, upload_id.as_deref(), offset, size, buf, &name).await?;
        match status {
            201 => {
                chunks += 1;
                let id = body["upload_id"]
                    .as_str()
                    .context("201 without upload_id")?
                    .to_string();
                if upload_id.as_deref() != Some(id.as_str()) {
                    std::fs::write(&state_path, &id).with_context(|| {
                        format!("remembering the upload in {}", state_path.display())
                    })?;
                    upload_id = Some(id);
                }
                offset = body["offset"].as_u64().context("201 without offset")?;
            }
            // The server is elsewhere (a resumed upload): go on from its offset.
            400 if body["offset"].is_u64() && upload_id.is_some() => {
                offset = body["offset"].as_u64().unwrap_or(0);
                if chunks == 0 {
                    resumed_from = offset;
                }
            }
            // The remembered upload is gone, expired or failed: start over.
            404 | 410 | 400 if upload_id.is_some() && chunks == 0 => {
                let _ = std::fs::remove_file(&state_path);
                upload_id = None;
                offset = 0;
            }
            _ => bail!("chunk at {offset}: HTTP {status}: {body}"),
        }
        bar.set_position(offset);
    }
    bar.finish_and_clear();
    let chunks_elapsed = started.elapsed();

    let upload_id = upload_id.context("no upload id after the last chunk")?;
    let md5 = file_md5(&opts.file).await?;
    let mut form = vec![("upload_id", upload_id.clone()), ("md5", md5)];
    if let Some(t) = &opts.media_type {
        form.push(("type", t.clone()));
    }
    let complete_started = Instant::now();
    let resp = with_retries(|| {
        client
            .post(url(opts, "/api/v2/media/upload/complete/"))
            .bearer_auth(&opts.token)
            .form(&form)
            .send()
    })
    .await?;
    let status = resp.status().as_u16();
    let media: Value = resp
        .json()
        .await
        .context("complete: the answer is not JSON")?;
    let complete_elapsed = complete_started.elapsed();
    if !(status == 201 || status == 200) {
        bail!("complete: HTTP {status}: {media}");
    }
    let _ = std::fs::remove_file(&state_path);
    Ok(Outcome::Completed {
        media,
        upload_id,
        resumed_from,
        chunks,
        elapsed: started.elapsed(),
        chunks_elapsed,
        complete_elapsed,
    })
}

async fn send_chunk(
    client: &reqwest::Client,
    opts: &UploadOptions,
    upload_id: Option<&str>,
    offset: u64,
    size: u64,
    data: Vec<u8>,
    name: &str,
) -> anyhow::Result<(u16, Value)> {
    let range = format!("bytes {offset}-{}/{size}", offset + data.len() as u64 - 1);
    let data = bytes::Bytes::from(data);
    let mut conflicts = 0;
    loop {
        // A multipart form is consumed by sending; each attempt builds one over the same shared bytes.
        let resp = with_retries(|| {
            client
                .post(url(opts, "/api/v2/media/upload/chunk/"))
                .bearer_auth(&opts.token)
                .header("content-range", &range)
                .multipart(chunk_form(upload_id, &data, name))
                .send()
        })
        .await?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        // Another request (perhaps our own timed-out one) holds the upload: wait and resend.
        if status == 409 && conflicts < RETRIES {
            conflicts += 1;
            tokio::time::sleep(Duration::from_millis(500 * u64::from(conflicts))).await;
            continue;
        }
        return Ok((status, body));
    }
}

/// `upload_id` first, then the file part `image`, as the official client writes them. Cloning
/// `Bytes` shares the buffer, so a retry does not copy the chunk.
fn chunk_form(
    upload_id: Option<&str>,
    data: &bytes::Bytes,
    name: &str,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    if let Some(id) = upload_id {
        form = form.text("upload_id", id.to_string());
    }
    form.part(
        "image",
        // With its length known the form has a Content-Length, as browsers send it, instead of a
        // chunked body the server cannot size its buffer for.
        reqwest::multipart::Part::stream_with_length(data.clone(), data.len() as u64)
            .file_name(name.to_string()),
    )
}

/// Sends, retrying transport errors (connection refused while a server restarts, resets) with backoff.
async fn with_retries<F, Fut>(send: F) -> anyhow::Result<reqwest::Response>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Ok(resp) => return Ok(resp),
            Err(e) if attempt < RETRIES => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt.min(5)))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn url(opts: &UploadOptions, path: &str) -> String {
    format!("{}{path}", opts.api.trim_end_matches('/'))
}

/// One remembered upload per (service, file, size, modification time): a changed file starts afresh.
fn state_file(opts: &UploadOptions, meta: &std::fs::Metadata) -> anyhow::Result<PathBuf> {
    let dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("media-local-uploads"));
    std::fs::create_dir_all(&dir)?;
    let path = std::fs::canonicalize(&opts.file)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = Md5::digest(format!(
        "{}\n{}\n{}\n{mtime}",
        opts.api,
        path.display(),
        meta.len()
    ));
    Ok(dir.join(hex::encode(key)))
}

/// The MD5 of the whole file, read in 1 MiB blocks off the async threads.
async fn file_md5(path: &Path) -> anyhow::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await?
}

fn progress_bar(show: bool, size: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    let style = indicatif::ProgressStyle::with_template(
        "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
