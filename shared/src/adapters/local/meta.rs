//! Upload sessions, media and clicks in redb, an embedded transactional key-value store. Each
//! conditional write is one redb write transaction, so the version check and the write are atomic.
//! Per-user quotas (`QUOTAS`: user -> the user's unfinished uploads and their declared sizes) are
//! written in the same transaction as the session they count.
//!
//! Writes go through one writer thread that commits the writes queued at the same time together, with
//! one fsync (`group_commit`); each is answered once durable, except the deferred ones: writes whose
//! loss in a crash is harmless or repaired, answered before their commit is flushed (a chunk's commit
//! whose session its partial file holds, `progress`; completion's steps before its last write; media
//! ids, see `next_media_id`). Reads run on the caller's thread: a read
//! transaction takes no lock a commit holds and reads pages redb or the kernel has cached, so a hop to
//! a blocking thread and back (two thread wake-ups per read) cost more than the read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::group_commit::GroupCommit;

use crate::domain::upload::UploadSession;
use crate::domain::{Click, MediaRecord, StoreError, UserQuota};
use crate::ports::{MediaStore, UploadStore};

const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const MEDIA: TableDefinition<u64, &[u8]> = TableDefinition::new("media");
const CLICKS: TableDefinition<u64, &[u8]> = TableDefinition::new("clicks");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("quotas");

/// One user's unfinished uploads: upload id -> declared size.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct OpenUploads {
    uploads: BTreeMap<String, u64>,
}

impl OpenUploads {
    fn bytes(&self) -> u64 {
        self.uploads.values().sum()
    }
}

#[derive(Clone)]
pub struct LocalMeta {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// Dropped last: waits for the queued writes, so the file is closed when the store is gone.
    writer: GroupCommit,
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(backend)
}

impl LocalMeta {
    /// Opens (or creates) the database. redb holds an exclusive lock on the file, so no other process
    /// can be writing: any chunk lease still recorded belongs to a process that died, and is cleared.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(MEDIA)?;
            txn.open_table(CLICKS)?;
            txn.open_table(COUNTERS)?;
            txn.open_table(QUOTAS)?;
            let mut uploads = txn.open_table(UPLOADS)?;
            let mut stale = Vec::new();
            for row in uploads.iter()? {
                let (k, v) = row?;
                let s: UploadSession = serde_json::from_slice(v.value())?;
                if s.lease.is_some() {
                    stale.push((k.value().to_string(), s));
                }
            }
            for (k, mut s) in stale {
                s.lease = None;
                s.version += 1;
                uploads.insert(k.as_str(), serde_json::to_vec(&s)?.as_slice())?;
            }
        }
        txn.commit()?;
        let db = Arc::new(db);
        let writer = GroupCommit::start(db.clone())?;
        Ok(LocalMeta {
            inner: Arc::new(Inner { db, writer }),
        })
    }

    /// A write transaction, shared with the writes queued at the same time (`group_commit`): `f`
    /// must answer `Conflict` or `QuotaExceeded` before it writes anything.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner.writer.write(f).await
    }

    /// A read transaction on the caller's thread (see the module doc).
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.inner.db.begin_read().map_err(backend)?)
    }

    /// `put_upload`, flushed before the answer or not (`durable`).
    async fn put_upload_as(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let id = session.id.clone();
        let bytes = encode(session)?;
        let write = move |txn: &WriteTransaction| {
            {
                let mut t = txn.open_table(UPLOADS).map_err(backend)?;
                let current: Option<u64> = match t.get(id.as_str()).map_err(backend)? {
                    Some(v) => Some(decode::<UploadSession>(v.value())?.version),
                    None => None,
                };
                if current != expected {
                    return Err(StoreError::Conflict);
                }
                t.insert(id.as_str(), bytes.as_slice()).map_err(backend)?;
            }
            Ok(())
        };
        if durable {
            self.write(write).await
        } else {
            self.inner.writer.write_deferred(write).await
        }
    }

    fn next_id(txn: &WriteTransaction, counter: &'static str) -> Result<u64, StoreError> {
        let mut t = txn.open_table(COUNTERS).map_err(backend)?;
        let id = t.get(counter).map_err(backend)?.map_or(0, |v| v.value()) + 1;
        t.insert(counter, id).map_err(backend)?;
        Ok(id)
    }
}

#[async_trait]
impl UploadStore for LocalMeta {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(UPLOADS).map_err(backend)?;
            let row = t.get(id).map_err(backend)?;
            row.map(|v| decode(v.value())).transpose()
        })
    }

    async fn put_upload(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_upload_as(session, expected, true).await
    }

    async fn put_upload_deferred(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_upload_as(session, expected, false).await
    }

    async fn create_upload(
        &self,
        session: &UploadSession,
        quota: &UserQuota,
    ) -> Result<(), StoreError> {
        let (id, owner, total, quota) = (
            session.id.clone(),
            session.owner.clone(),
            session.total,
            *quota,
        );
        let bytes = encode(session)?;
        // Deferred (not flushed before the answer): the first chunk's commit, which follows at once,
        // is flushed (`LocalBlobs`) and makes this one durable too. A crash in between loses both
        // the session and its count, and leaves a partial file that `recover` removes at start.
        self.inner
            .writer
            .write_deferred(move |txn| {
                {
                    let mut uploads = txn.open_table(UPLOADS).map_err(backend)?;
                    if uploads.get(id.as_str()).map_err(backend)?.is_some() {
                        return Err(StoreError::Conflict);
                    }
                    let mut quotas = txn.open_table(QUOTAS).map_err(backend)?;
                    let mut open: OpenUploads = match quotas.get(owner.as_str()).map_err(backend)? {
                        Some(v) => decode(v.value())?,
                        None => OpenUploads::default(),
                    };
                    let count = open.uploads.len() as u64;
                    if count >= quota.max_open
                        || open.bytes().saturating_add(total) > quota.max_bytes
                    {
                        return Err(StoreError::QuotaExceeded(quota));
                    }
                    open.uploads.insert(id.clone(), total);
                    quotas
                        .insert(owner.as_str(), encode(&open)?.as_slice())
                        .map_err(backend)?;
                    uploads
                        .insert(id.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
                Ok(())
            })
            .await
    }

    /// Deferred (not flushed before the answer): every caller writes the session again afterwards
    /// (completion its final state, the sweep its removal), and that flushed commit makes this one
    /// durable too; a crash before it leaves the session, whose retry or sweep frees it again.
    async fn release_quota(&self, session: &UploadSession) -> Result<bool, StoreError> {
        let (id, owner) = (session.id.clone(), session.owner.clone());
        self.inner
            .writer
            .write_deferred(move |txn| {
                let freed = {
                    let mut quotas = txn.open_table(QUOTAS).map_err(backend)?;
                    let mut open: OpenUploads = match quotas.get(owner.as_str()).map_err(backend)? {
                        Some(v) => decode(v.value())?,
                        None => return Ok(false),
                    };
                    if open.uploads.remove(&id).is_none() {
                        return Ok(false);
                    }
                    if open.uploads.is_empty() {
                        quotas.remove(owner.as_str()).map_err(backend)?;
                    } else {
                        quotas
                            .insert(owner.as_str(), encode(&open)?.as_slice())
                            .map_err(backend)?;
                    }
                    true
                };
                Ok(freed)
            })
            .await
    }

    async fn delete_upload(&self, id: &str, expected: u64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |txn| {
            {
                let mut t = txn.open_table(UPLOADS).map_err(backend)?;
                let version = match t.get(id.as_str()).map_err(backend)? {
                    Some(v) => decode::<UploadSession>(v.value())?.version,
                    None => return Ok(false),
                };
                if version != expected {
                    return Err(StoreError::Conflict);
                }
                t.remove(id.as_str()).map_err(backend)?;
            }
            Ok(true)
        })
        .await
    }

    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError> {
        // A scan of every session: on a blocking thread, unlike the point reads.
        let db = self.inner.db.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(UPLOADS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let s: UploadSession = decode(v.value())?;
                if s.expires_at_ms < now_ms {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        });
        scan.await.map_err(|e| StoreError::Backend(e.into()))?
    }
}

#[async_trait]
impl MediaStore for LocalMeta {
    /// Deferred (not flushed before the answer): an id is only ever stored by a later write, whose
    /// flushed commit makes the counter's durable too (redb's commits become durable in order). An
    /// id lost in a crash before that was stored nowhere, so handing it out again is harmless.
    async fn next_media_id(&self) -> Result<u64, StoreError> {
        self.inner
            .writer
            .write_deferred(|txn| Self::next_id(txn, "media"))
            .await
    }

    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError> {
        self.write(Self::media_write(media)?).await
    }

    async fn put_media_deferred(&self, media: &MediaRecord) -> Result<(), StoreError> {
        self.inner
            .writer
            .write_deferred(Self::media_write(media)?)
            .await
    }

    async fn replace_media(&self, media: &MediaRecord) -> Result<bool, StoreError> {
        let (id, bytes) = (media.id, encode(media)?);
        self.write(move |txn| {
            let written = {
                let mut t = txn.open_table(MEDIA).map_err(backend)?;
                let exists = t.get(id).map_err(backend)?.is_some();
                if exists {
                    t.insert(id, bytes.as_slice()).map_err(backend)?;
                }
                exists
            };
            Ok(written)
        })
        .await
    }

    async fn get_media(&self, id: u64) -> Result<Option<MediaRecord>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(MEDIA).map_err(backend)?;
            let row = t.get(id).map_err(backend)?;
            row.map(|v| decode(v.value())).transpose()
        })
    }

    async fn delete_media(&self, id: u64) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(MEDIA)
                .map_err(backend)?
                .remove(id)
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn record_click(&self, click: &Click) -> Result<(), StoreError> {
        let bytes = encode(click)?;
        // The id and the click in one transaction (they were two commits).
        self.write(move |txn| {
            let id = Self::next_id(txn, "click")?;
            txn.open_table(CLICKS)
                .map_err(backend)?
                .insert(id, bytes.as_slice())
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

impl LocalMeta {
    fn media_write(
        media: &MediaRecord,
    ) -> Result<impl FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static, StoreError>
    {
        let (id, bytes) = (media.id, encode(media)?);
        Ok(move |txn: &WriteTransaction| {
            txn.open_table(MEDIA)
                .map_err(backend)?
                .insert(id, bytes.as_slice())
                .map_err(backend)?;
            Ok(())
        })
    }

    /// Every session (for `recover`, at start).
    pub(super) fn sessions(&self) -> Result<Vec<UploadSession>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(UPLOADS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                out.push(decode(row.map_err(backend)?.1.value())?);
            }
            Ok(out)
        })
    }

    /// All recorded clicks (for tests and local inspection).
    pub async fn clicks(&self) -> Result<Vec<Click>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(CLICKS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                out.push(decode(row.map_err(backend)?.1.value())?);
            }
            Ok(out)
        })
    }
}
