//! Upload bytes on the local disk. An unfinished upload is one sparse file written at each chunk's
//! offset (`partial/<upload_id>`), so a retried chunk simply overwrites the same range, and finishing
//! is a rename into `objects/<key>`: no byte is copied twice.

use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::upload::{ChunkPlan, StagingState, UploadSession};
use crate::ports::BlobStore;

pub struct LocalBlobs {
    root: PathBuf,
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
        for dir in ["partial", "objects"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        Ok(LocalBlobs {
            root: root.to_path_buf(),
            files_url,
        })
    }

    /// The directory served at `files_url`.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    fn partial(&self, upload_id: &str) -> PathBuf {
        self.root.join("partial").join(upload_id)
    }

    fn object(&self, key: &str) -> anyhow::Result<PathBuf> {
        // Keys are made by us, never by users; refuse anything that could leave the directory anyway.
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            bail!("invalid object key {key:?}");
        }
        Ok(self.objects_dir().join(key))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn ignore_missing(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<StagingState> {
        let path = self.partial(&session.id);
        let at = plan.start;
        blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)?;
            file.write_all_at(&data, at).with_context(|| {
                format!("writing {} bytes at {at} of {}", data.len(), path.display())
            })?;
            // On disk before the session commit acknowledges it: an acknowledged chunk survives a
            // power loss, not only a crash of the process, and completing needs to flush nothing
            // but metadata, whatever the file's size.
            file.sync_data()
                .with_context(|| format!("flushing {}", path.display()))?;
            Ok(())
        })
        .await?;
        Ok(session.staging.clone())
    }

    async fn finish(&self, session: &UploadSession, key: &str) -> anyhow::Result<()> {
        let partial = self.partial(&session.id);
        let object = self.object(key)?;
        let total = session.total;
        blocking(move || {
            let file = match std::fs::OpenOptions::new().write(true).open(&partial) {
                Ok(f) => f,
                // Finished by an earlier attempt that crashed before recording it.
                Err(e) if e.kind() == ErrorKind::NotFound && object.exists() => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("opening {}", partial.display())),
            };
            // An uncommitted write of a crashed request may have run past the end; cut it off.
            file.set_len(total)?;
            file.sync_all()?;
            std::fs::create_dir_all(object.parent().context("object path has a parent")?)?;
            std::fs::rename(&partial, &object)?;
            Ok(())
        })
        .await
    }

    async fn discard(&self, session: &UploadSession) -> anyhow::Result<()> {
        let partial = self.partial(&session.id);
        blocking(move || Ok(ignore_missing(std::fs::remove_file(partial))?)).await
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

    async fn put_object(&self, key: &str, data: Bytes, _mime: &str) -> anyhow::Result<()> {
        let path = self.object(key)?;
        blocking(move || {
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
        blocking(move || Ok(ignore_missing(std::fs::remove_file(path))?)).await
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
    /// Whether an unfinished upload still holds bytes on disk (for tests of cleanup).
    pub fn has_partial(&self, upload_id: &str) -> bool {
        self.partial(upload_id).exists()
    }
}
