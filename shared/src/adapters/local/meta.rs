//! Upload sessions, media and clicks in redb, an embedded transactional key-value store. Each
//! conditional write is one redb write transaction, so the version check and the write are atomic.
//! Per-user quotas (`QUOTAS`: user -> the user's unfinished uploads and their declared sizes) are
//! written in the same transaction as the session they count.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

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
    db: Arc<Database>,
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
        Ok(LocalMeta { db: Arc::new(db) })
    }

    /// redb calls block (a commit waits for fsync): keep them off the async worker threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(e.into()))?
    }

    fn next_id(db: &Database, counter: &'static str) -> Result<u64, StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        let id = {
            let mut t = txn.open_table(COUNTERS).map_err(backend)?;
            let id = t.get(counter).map_err(backend)?.map_or(0, |v| v.value()) + 1;
            t.insert(counter, id).map_err(backend)?;
            id
        };
        txn.commit().map_err(backend)?;
        Ok(id)
    }
}

#[async_trait]
impl UploadStore for LocalMeta {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError> {
        let id = id.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(UPLOADS).map_err(backend)?;
            let row = t.get(id.as_str()).map_err(backend)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn put_upload(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let id = session.id.clone();
        let bytes = encode(session)?;
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
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
            txn.commit().map_err(backend)
        })
        .await
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
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
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
                if count >= quota.max_open || open.bytes().saturating_add(total) > quota.max_bytes {
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
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn release_quota(&self, session: &UploadSession) -> Result<bool, StoreError> {
        let (id, owner) = (session.id.clone(), session.owner.clone());
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
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
            txn.commit().map_err(backend)?;
            Ok(freed)
        })
        .await
    }

    async fn delete_upload(&self, id: &str, expected: u64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
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
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError> {
        self.run(move |db| {
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
        })
        .await
    }
}

#[async_trait]
impl MediaStore for LocalMeta {
    async fn next_media_id(&self) -> Result<u64, StoreError> {
        self.run(|db| Self::next_id(db, "media")).await
    }

    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError> {
        let (id, bytes) = (media.id, encode(media)?);
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(MEDIA)
                .map_err(backend)?
                .insert(id, bytes.as_slice())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn replace_media(&self, media: &MediaRecord) -> Result<bool, StoreError> {
        let (id, bytes) = (media.id, encode(media)?);
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let written = {
                let mut t = txn.open_table(MEDIA).map_err(backend)?;
                let exists = t.get(id).map_err(backend)?.is_some();
                if exists {
                    t.insert(id, bytes.as_slice()).map_err(backend)?;
                }
                exists
            };
            txn.commit().map_err(backend)?;
            Ok(written)
        })
        .await
    }

    async fn get_media(&self, id: u64) -> Result<Option<MediaRecord>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(MEDIA).map_err(backend)?;
            let row = t.get(id).map_err(backend)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn delete_media(&self, id: u64) -> Result<(), StoreError> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(MEDIA)
                .map_err(backend)?
                .remove(id)
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn record_click(&self, click: &Click) -> Result<(), StoreError> {
        let bytes = encode(click)?;
        self.run(move |db| {
            let id = Self::next_id(db, "click")?;
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(CLICKS)
                .map_err(backend)?
                .insert(id, bytes.as_slice())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
    }
}

impl LocalMeta {
    /// All recorded clicks (for tests and local inspection).
    pub async fn clicks(&self) -> Result<Vec<Click>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(CLICKS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                out.push(decode(row.map_err(backend)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }
}
