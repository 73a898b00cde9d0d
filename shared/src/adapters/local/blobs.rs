//! Upload bytes on the local disk. An unfinished upload is one sparse file written at each chunk's
//! offset (`partial/<upload_id>`), so a retried chunk simply overwrites the same range, and finishing
//! is a rename into `objects/<key>`: no byte is copied twice. A photo whose metadata is stripped
//! (`domain::image_metadata`) is the exception: its rewritten bytes go to `partial/<upload_id>.stripped`
//! and that file is renamed into `objects/` instead.
//! Because attempts share the partial file, the chunk writers of one upload take turns (`exclusive`,
//! `upload_lock`). Behind the bytes the partial file keeps the upload's progress, flushed with each
//! chunk (`progress`), which is cut off when the upload finishes.
//!
//! Each finished object has its headers (`ObjectHeaders`) and MD5 in `headers/<key>.json`, written
//! before the object appears and removed after it is gone, which is what `/files/` serves it with
//! (S3 keeps the same headers as the object's metadata). Only `objects/` is served.

use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::progress;
use super::upload_lock::UploadLocks;
use crate::domain::image_metadata::{self, MetadataPolicy};
use crate::domain::sniff::mime_for_extension;
use crate::domain::upload::{ChunkPlan, PartRecord, UploadSession};
use crate::domain::ObjectHeaders;
use crate::ports::{BlobStore, ChunkGuard, ChunkWrite, HashedChunk};

pub struct LocalBlobs {
    root: PathBuf,
    /// Chunk writers of one upload take turns (`BlobStore::exclusive`): they all write one file.
    chunk_writers: UploadLocks,
    /// Prefix of the URLs at which the local server serves `objects/`, e.g. `http://127.0.0.1:8080/files`;
    /// `None` in a process that serves no files (the sweep command).
    files_url: Option<String>,
}

impl LocalBlobs {
    /// The store under `root`, whose objects this process serves below `files_url`.
    pub fn new(root: &Path, files_url: &str) -> anyhow::Result<Self> {
        Self::open(root, Some(files_url.trim_end_matches('/').to_string()))
    }

    /// The store under `root` in a process that serves no files: asking it for a URL is an error,
    /// never a URL nobody answers.
    pub fn unserved(root: &Path) -> anyhow::Result<Self> {
        Self::open(root, None)
    }

    fn open(root: &Path, files_url: Option<String>) -> anyhow::Result<Self> {
        for dir in ["partial", "objects", "headers"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        Ok(LocalBlobs {
            root: root.to_path_buf(),
            chunk_writers: UploadLocks::default(),
            files_url,
        })
    }

    /// The directory served at `files_url`.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    pub(super) fn partial(&self, upload_id: &str) -> PathBuf {
        self.root.join("partial").join(upload_id)
    }

    fn object(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.objects_dir().join(key))
    }

    /// Where the headers and MD5 of `key` are kept.
    fn sidecar(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join("headers").join(format!("{key}.json")))
    }

    /// The stored object `key` with what it is served with, or `None` if there is none (or `key` is
    /// no key of ours: it comes from a URL here). Objects stored before headers were kept get the
    /// type their extension says and must be revalidated (`no-cache`): their keys were not all unique.
    pub async fn stored(&self, key: &str) -> anyhow::Result<Option<StoredFile>> {
        let (Ok(path), Ok(sidecar)) = (self.object(key), self.sidecar(key)) else {
            return Ok(None);
        };
        let key = key.to_string();
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            };
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Ok(None);
            }
            let (headers, md5) = match std::fs::read(&sidecar) {
                Ok(json) => {
                    let s: Sidecar = serde_json::from_slice(&json)
                        .with_context(|| format!("reading {}", sidecar.display()))?;
                    (s.headers, s.md5)
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let ext = key.rsplit_once('.').map_or("", |(_, e)| e);
                    let mut headers = ObjectHeaders::inline(mime_for_extension(ext));
                    headers.cache_control = "no-cache".into();
                    (headers, None)
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", sidecar.display())),
            };
            Ok(Some(StoredFile {
                len: meta.len(),
                modified: meta.modified()?,
                file,
                headers,
                md5,
            }))
        })
        .await
    }
}

/// Keys are made by us, never by users; refuse anything that could leave the directory anyway.
fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        bail!("invalid object key {key:?}");
    }
    Ok(())
}

/// A finished object as `/files/` serves it.
pub struct StoredFile {
    pub file: std::fs::File,
    pub len: u64,
    pub modified: SystemTime,
    pub headers: ObjectHeaders,
    /// Hex MD5 of the bytes (S3's ETag of an object written in one piece); absent for old objects.
    pub md5: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    #[serde(flatten)]
    headers: ObjectHeaders,
    md5: Option<String>,
}

/// Writes the sidecar of an object (atomically: a reader sees the old one or the new one). Not
/// flushed to disk: a power cut that loses it only leaves the object served with the fallback headers
/// of `LocalBlobs::stored`, and keeps completion free of a second fsync.
fn write_sidecar(path: &Path, headers: ObjectHeaders, md5: String) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("sidecar path has a parent")?)?;
    let json = serde_json::to_vec(&Sidecar {
        headers,
        md5: Some(md5),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Renames a whole, flushed file into place as `object` and makes the rename itself durable: the
/// directory entry lives in the directory, not the file, and the media record that points to the
/// object is committed right after `finish` returns. A directory created for it is flushed into its
/// own parent too.
fn place(from: &Path, object: &Path) -> anyhow::Result<()> {
    let dir = object.parent().context("object path has a parent")?;
    let created = !dir.exists();
    std::fs::create_dir_all(dir)?;
    std::fs::rename(from, object)
        .with_context(|| format!("renaming {} to {}", from.display(), object.display()))?;
    sync_dir(dir)?;
    if created {
        if let Some(up) = dir.parent() {
            sync_dir(up)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("flushing the directory {}", dir.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Chunks below this size are hashed, written and flushed in one blocking task (`write_hashed`):
/// one thread hand-off instead of three, which the profile showed at a fifth of the server's CPU at
/// 204800-byte chunks, against an overlap of MD5 and write worth ~0.1 ms there. From 1 MiB up they
/// are hashed while they are written: the overlap (the copy into the page cache, 0.5-3 ms here) is
/// worth more than the hand-offs.
const HASH_APART_FROM: u64 = 1 << 20;

/// Whether a chunk is flushed on its own and committed with a flush of the database, as before
/// `progress`: the first, whose commit also makes its session's creation durable (`LocalMeta`'s
/// `create_upload` is not flushed), and the last, whose record then needs nothing from the partial
/// file (and a one-chunk upload has no progress slots to cut off when it finishes).
fn flushed_alone(plan: &ChunkPlan) -> bool {
    plan.start == 0 || plan.is_last()
}

/// Starts writing `len` bytes at `at` of `file` to the disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the flush after the chunk's hashing finds them
/// under way or done. Without it a chunk's bytes waited for the MD5 before going out (at 4 MiB, ~7 ms
/// of MD5, then the write-out). Only a hint: durability is the flush's.
fn start_writeback(file: &std::fs::File, at: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the whole call, which reads no memory of ours. A
        // failure only leaves all the work to the flush, as without the hint.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                at as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, at, len);
}

fn open_partial(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Where the stripped copy of a partial file is written before it becomes the object.
fn stripped_path(partial: &Path) -> PathBuf {
    partial.with_extension("stripped")
}

fn ignore_missing(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn exclusive(&self, upload_id: &str) -> Option<ChunkGuard> {
        Some(self.chunk_writers.lock(upload_id).await)
    }

    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<ChunkWrite> {
        let path = self.partial(&session.id);
        let at = plan.start;
        // See `flushed_alone`; any other chunk is flushed with its progress, by `persist_progress`,
        // once its MD5 is known.
        let flush = flushed_alone(plan);
        blocking(move || {
            let file = open_partial(&path)?;
            file.write_all_at(&data, at).with_context(|| {
                format!("writing {} bytes at {at} of {}", data.len(), path.display())
            })?;
            if flush {
                // On disk before the session commit acknowledges it: an acknowledged chunk survives
                // a power loss, not only a crash of the process.
                file.sync_data()
                    .with_context(|| format!("flushing {}", path.display()))?;
            } else {
                start_writeback(&file, at, data.len());
            }
            Ok(())
        })
        .await?;
        Ok(ChunkWrite {
            staging: session.staging.clone(),
            ..ChunkWrite::default()
        })
    }

    async fn write_hashed(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: &Bytes,
    ) -> Option<anyhow::Result<HashedChunk>> {
        if plan.len >= HASH_APART_FROM {
            return None;
        }
        let path = self.partial(&session.id);
        let (read, plan, data) = (session.clone(), *plan, data.clone());
        Some(
            blocking(move || {
                let file = open_partial(&path)?;
                file.write_all_at(&data, plan.start).with_context(|| {
                    format!(
                        "writing {} bytes at {} of {}",
                        data.len(),
                        plan.start,
                        path.display()
                    )
                })?;
                // The disk takes the bytes while the CPU hashes them; the flush below waits for both.
                start_writeback(&file, plan.start, data.len());
                let md5 = read.md5.clone().advanced(&data)?;
                let accepted = read.accepted(&plan, md5, read.staging.clone());
                let slot = match flushed_alone(&plan) {
                    true => None,
                    false => progress::encode(&accepted)?,
                };
                if let Some(slot) = &slot {
                    progress::write(&file, &accepted, slot)
                        .with_context(|| format!("writing the progress into {}", path.display()))?;
                }
                file.sync_data()
                    .with_context(|| format!("flushing {}", path.display()))?;
                Ok(HashedChunk {
                    write: ChunkWrite {
                        staging: read.staging.clone(),
                        ..ChunkWrite::default()
                    },
                    session: accepted,
                    recoverable: slot.is_some(),
                })
            })
            .await,
        )
    }

    async fn persist_progress(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
    ) -> anyhow::Result<bool> {
        if flushed_alone(plan) {
            return Ok(false);
        }
        let path = self.partial(&session.id);
        let slot = progress::encode(session)?;
        let session = session.clone();
        blocking(move || {
            let file = open_partial(&path)?;
            if let Some(slot) = &slot {
                progress::write(&file, &session, slot)
                    .with_context(|| format!("writing the progress into {}", path.display()))?;
            }
            // One flush for the chunk's bytes and the record of its session (`progress`).
            file.sync_data()
                .with_context(|| format!("flushing {}", path.display()))?;
            Ok(slot.is_some())
        })
        .await
    }

    async fn finish(
        &self,
        session: &UploadSession,
        _parts: &[PartRecord],
        key: &str,
        metadata: MetadataPolicy,
    ) -> anyhow::Result<u64> {
        let partial = self.partial(&session.id);
        let stripped = stripped_path(&partial);
        let object = self.object(key)?;
        let sidecar = self.sidecar(key)?;
        let (headers, md5) = (session.object_headers(), session.md5.hex_digest()?);
        let total = session.total;
        let mime = session.content.mime.clone();
        let rewrite = metadata == MetadataPolicy::Strip && image_metadata::applies(&mime);
        blocking(move || {
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&partial)
            {
                Ok(f) => f,
                // Finished by an earlier attempt that crashed before recording it.
                Err(e) if e.kind() == ErrorKind::NotFound && object.exists() => {
                    return Ok(std::fs::metadata(&object)?.len());
                }
                Err(e) => return Err(e).with_context(|| format!("opening {}", partial.display())),
            };
            // The progress records behind the bytes (`progress`), or an uncommitted write of a crashed
            // request past the end: cut off, durably, before the rename can be. Otherwise there is
            // nothing to flush: every chunk was on disk before it was acknowledged, and an fsync here
            // cost each completion one more disk flush (issue 12).
            if file.metadata()?.len() != total {
                file.set_len(total)?;
                file.sync_all()?;
            }
            if rewrite {
                // A photo: at most `max_image_bytes` (admission), read once.
                let mut bytes = Vec::with_capacity(usize::try_from(total)?);
                (&file).take(total).read_to_end(&mut bytes)?;
                if let Some(clean) = image_metadata::strip(&mime, &bytes) {
                    // Written beside the partial file and renamed into place, so the object appears
                    // whole and stripped. The partial file goes last: a retry after a crash before
                    // that strips it again, to the same bytes (the rewrite is deterministic).
                    std::fs::write(&stripped, &clean)
                        .with_context(|| format!("writing {}", stripped.display()))?;
                    std::fs::File::open(&stripped)?.sync_all()?;
                    write_sidecar(&sidecar, headers, hex::encode(Md5::digest(&clean)))?;
                    // Durably in place before the original goes: a crash in between leaves both,
                    // and the retry strips the original again to the same bytes.
                    place(&stripped, &object)?;
                    std::fs::remove_file(&partial)?;
                    return Ok(clean.len() as u64);
                }
            }
            // Headers first: the object is never served without them.
            write_sidecar(&sidecar, headers, md5)?;
            place(&partial, &object)?;
            // A copy a crashed attempt under another setting left behind.
            ignore_missing(std::fs::remove_file(&stripped))?;
            Ok(total)
        })
        .await
    }

    async fn discard(&self, session: &UploadSession) -> anyhow::Result<()> {
        self.remove_partial(&session.id).await
    }

    async fn read_head(&self, key: &str, len: u64) -> anyhow::Result<Bytes> {
        let path = self.object(key)?;
        blocking(move || {
            let mut buf = Vec::new();
            std::fs::File::open(&path)?
                .take(len)
                .read_to_end(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put_object(&self, key: &str, data: Bytes, mime: &str) -> anyhow::Result<()> {
        let path = self.object(key)?;
        let sidecar = self.sidecar(key)?;
        let headers = ObjectHeaders::inline(mime);
        blocking(move || {
            write_sidecar(&sidecar, headers, hex::encode(Md5::digest(&data)))?;
            std::fs::create_dir_all(path.parent().context("object path has a parent")?)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })
        .await
    }

    async fn delete_object(&self, key: &str) -> anyhow::Result<()> {
        let path = self.object(key)?;
        let sidecar = self.sidecar(key)?;
        blocking(move || {
            ignore_missing(std::fs::remove_file(path))?;
            Ok(ignore_missing(std::fs::remove_file(sidecar))?)
        })
        .await
    }

    async fn object_url(&self, key: &str) -> anyhow::Result<String> {
        self.object(key)?;
        let base = self
            .files_url
            .as_deref()
            .with_context(|| format!("no URL for {key}: this process serves no files"))?;
        Ok(format!("{base}/{key}"))
    }
}

impl LocalBlobs {
    /// The ids of every upload with a partial file (or a stripped copy), for `recover`.
    pub(super) fn partial_ids(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.root.join("partial");
        let mut ids = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let id = name.strip_suffix(".stripped").unwrap_or(&name);
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    /// Removes what an unfinished upload holds on disk (`discard`).
    pub(super) async fn remove_partial(&self, upload_id: &str) -> anyhow::Result<()> {
        let partial = self.partial(upload_id);
        blocking(move || {
            ignore_missing(std::fs::remove_file(stripped_path(&partial)))?;
            Ok(ignore_missing(std::fs::remove_file(partial))?)
        })
        .await
    }

    /// Whether an unfinished upload still holds bytes on disk (for tests of cleanup).
    pub fn has_partial(&self, upload_id: &str) -> bool {
        let partial = self.partial(upload_id);
        partial.exists() || stripped_path(&partial).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_are_served_with_their_stored_headers_or_a_safe_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path(), "http://x/files").unwrap();
        blobs
            .put_object(
                "thumbnails/a.jpg",
                Bytes::from_static(b"jpeg"),
                "image/jpeg",
            )
            .await
            .unwrap();
        let s = blobs.stored("thumbnails/a.jpg").await.unwrap().unwrap();
        assert_eq!(s.headers, ObjectHeaders::inline("image/jpeg"));
        assert_eq!(s.md5.as_deref(), Some(&*hex::encode(Md5::digest(b"jpeg"))));
        assert_eq!(s.len, 4);

        // Written before headers were kept: the type its extension says, revalidated every time.
        std::fs::create_dir_all(dir.path().join("objects/media")).unwrap();
        std::fs::write(dir.path().join("objects/media/old.pdf"), b"%PDF").unwrap();
        let s = blobs.stored("media/old.pdf").await.unwrap().unwrap();
        assert_eq!(s.headers.content_type, "application/pdf");
        assert_eq!(s.headers.cache_control, "no-cache");
        assert_eq!((s.headers.content_disposition, s.md5), (None, None));

        // Not a stored object: nothing, and never an error.
        for key in [
            "media",
            "media/none.png",
            "../media.redb",
            "a//b",
            "",
            "/etc/passwd",
        ] {
            assert!(blobs.stored(key).await.unwrap().is_none(), "{key:?}");
        }

        blobs.delete_object("thumbnails/a.jpg").await.unwrap();
        assert!(blobs.stored("thumbnails/a.jpg").await.unwrap().is_none());
        assert!(!dir.path().join("headers/thumbnails/a.jpg.json").exists());
    }
}
