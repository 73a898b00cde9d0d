//! The storage traits the handlers need. Two implementations exist: `adapters::local` (disk + redb) and
//! `adapters::aws` (S3 + DynamoDB); both pass the same contract tests (`testkit/src/contract/`).
//!
//! Writes of upload sessions are conditional on the version the writer read, which is what DynamoDB's
//! conditional writes give and what makes ordering and mutual exclusion live outside process memory.

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::image_metadata::MetadataPolicy;
use crate::domain::upload::{ChunkPlan, StagingState, UploadSession};
use crate::domain::{Click, MediaRecord, StoreError, UserQuota};

#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError>;

    /// Stores `session` if the stored version is `expected` (`None`: only if no session has this id).
    /// Fails with `StoreError::Conflict` otherwise, writing nothing.
    async fn put_upload(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Creates a new session (only if no session has its id) and counts it against its owner's
    /// unfinished uploads: one more upload, `session.total` more declared bytes. When that would take
    /// the owner past `quota`, the answer is `StoreError::QuotaExceeded` and no session remains. The
    /// check and the count are one conditional write, so racing creators cannot pass the quota
    /// together. A crash may leave a session that is not counted (a free upload), never a count
    /// without a session (which nothing would ever free).
    async fn create_upload(
        &self,
        session: &UploadSession,
        quota: &UserQuota,
    ) -> Result<(), StoreError>;

    /// Gives the session's share of its owner's quota back: it completed, failed or expired.
    /// Idempotent (each session is counted once and freed at most once): answers whether this call
    /// freed it.
    async fn release_quota(&self, session: &UploadSession) -> Result<bool, StoreError>;

    /// Removes the session if its stored version is still `expected`. A missing session is not an
    /// error (TTL or another sweep got there first): the answer says whether this call removed it.
    async fn delete_upload(&self, id: &str, expected: u64) -> Result<bool, StoreError>;

    /// Sessions whose `expires_at_ms` is before `now_ms`, at most `limit` of them: every unfinished one
    /// (not `Completed`: it may hold bytes or quota to free). A completed one holds neither and may be
    /// left out; it is listed only by a backend with no other way to remove its record (the local one;
    /// on DynamoDB the table's TTL removes it).
    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError>;
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    /// The next media id: unique and roughly increasing, never 0. Unique across every process of the
    /// service; a process may reserve ids ahead (the AWS backend takes blocks from one atomic
    /// counter), so ids from different processes interleave and ids reserved by a process that ends
    /// are never used (gaps, never duplicates).
    async fn next_media_id(&self) -> Result<u64, StoreError>;
    /// Creates or replaces the media with this id.
    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError>;
    async fn get_media(&self, id: u64) -> Result<Option<MediaRecord>, StoreError>;
    /// Replaces the media only if it still exists (work done after the fact, such as a deferred
    /// thumbnail, must never bring back a deleted media). Answers whether it was written.
    async fn replace_media(&self, media: &MediaRecord) -> Result<bool, StoreError>;
    async fn delete_media(&self, id: u64) -> Result<(), StoreError>;
    async fn record_click(&self, click: &Click) -> Result<(), StoreError>;
}

/// The bytes: chunks of unfinished uploads, and finished objects.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes one checked chunk. Must be safe to repeat for the same offset (a retry after a crash
    /// before the session was committed) and must not destroy anything the committed session still
    /// refers to. Returns the staging state to commit with the session.
    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<StagingState>;

    /// Called once the session with `after` is committed: frees what only `before` referred to.
    async fn after_commit(
        &self,
        _before: &StagingState,
        _after: &StagingState,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// Turns a fully received upload into the object `key`, served with `session.object_headers()`,
    /// and answers the object's size. Under `MetadataPolicy::Strip` a photo (`image_metadata::applies`)
    /// is stored as `image_metadata::strip` makes it, and no object with its metadata ever exists at
    /// `key`, not even for a moment (it lies under a served prefix, `domain::keys`); the rewrite reads
    /// the whole file once into memory, which admission bounds (`Limits::max_image_bytes`).
    /// Idempotent: a retry after a crash finds the object already there (or writes the same bytes
    /// again) and succeeds. Before this call no object exists at `key`.
    async fn finish(
        &self,
        session: &UploadSession,
        key: &str,
        metadata: MetadataPolicy,
    ) -> anyhow::Result<u64>;

    /// Frees everything an unfinished upload holds. Idempotent, never touches finished objects.
    async fn discard(&self, session: &UploadSession) -> anyhow::Result<()>;

    /// Up to `len` bytes from the start of a finished object (image headers beyond the first chunk).
    async fn read_head(&self, key: &str, len: u64) -> anyhow::Result<Bytes>;

    /// Stores a whole finished object at once (images fetched from URLs, thumbnails), served inline
    /// with `ObjectHeaders::inline(mime)`.
    async fn put_object(&self, key: &str, data: Bytes, mime: &str) -> anyhow::Result<()>;

    /// Removes the object and whatever is stored with it. A missing object is not an error. Copies
    /// that caches (a CDN, browsers) made of it are not touched.
    async fn delete_object(&self, key: &str) -> anyhow::Result<()>;

    /// A URL from which clients can GET the object.
    async fn object_url(&self, key: &str) -> anyhow::Result<String>;
}
