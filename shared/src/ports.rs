//! The storage traits the handlers need. Two implementations exist: `adapters::local` (disk + redb) and
//! `adapters::aws` (S3 + DynamoDB); both pass the same contract tests (`testkit/src/contract/`).
//!
//! Writes of upload sessions are conditional on the version the writer read, which is what DynamoDB's
//! conditional writes give and what makes ordering and mutual exclusion live outside process memory.

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::events::PlatformEvent;
use crate::domain::image_metadata::MetadataPolicy;
use crate::domain::upload::{ChunkPlan, PartRecord, StagingState, UploadSession};
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

    /// Commits a chunk: stores `session` if the stored version is `expected`, as `put_upload` does,
    /// and in the same atomic write the part the chunk sealed, if any, apart from the session (the
    /// session counts it in `staging.parts_apart`, which the caller has raised). Only a winning commit
    /// records its part: a losing writer never replaces the winner's record of a part number. The
    /// default keeps no parts (a backend whose chunks never seal one: the local one).
    async fn commit_chunk(
        &self,
        session: &UploadSession,
        expected: u64,
        sealed: Option<&PartRecord>,
    ) -> Result<(), StoreError> {
        match sealed {
            None => self.put_upload(session, Some(expected)).await,
            Some(p) => Err(StoreError::Backend(anyhow::anyhow!(
                "this store keeps no parts, and a chunk sealed part {}",
                p.number
            ))),
        }
    }

    /// Every part recorded for `session`, in order: those it holds itself (sessions of earlier
    /// versions), then those recorded apart by `commit_chunk`. Read once, by completion.
    async fn recorded_parts(&self, session: &UploadSession) -> Result<Vec<PartRecord>, StoreError> {
        if session.staging.parts_apart > 0 {
            return Err(StoreError::Backend(anyhow::anyhow!(
                "this store keeps no parts, and upload {} counts {} recorded apart",
                session.id,
                session.staging.parts_apart
            )));
        }
        Ok(session.staging.parts.clone())
    }

    /// `put_upload` that may answer before the write is durable, for a write whose loss in a crash is
    /// harmless or repaired: a later flushed write of the same request follows it (the local store's
    /// commits become durable in order, so that one carries this one), or the session is recovered
    /// from elsewhere after a crash (the partial file of a chunk, `BlobStore::persist_progress`).
    /// Default: `put_upload`, durable before the answer.
    async fn put_upload_deferred(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_upload(session, expected).await
    }

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
    /// `put_media` that may answer before the write is durable, when a later flushed write of the
    /// same request follows (see `UploadStore::put_upload_deferred`). Default: `put_media`.
    async fn put_media_deferred(&self, media: &MediaRecord) -> Result<(), StoreError> {
        self.put_media(media).await
    }
    async fn get_media(&self, id: u64) -> Result<Option<MediaRecord>, StoreError>;
    /// Replaces the media only if it still exists (work done after the fact, such as a deferred
    /// thumbnail, must never bring back a deleted media). Answers whether it was written.
    async fn replace_media(&self, media: &MediaRecord) -> Result<bool, StoreError>;
    async fn delete_media(&self, id: u64) -> Result<(), StoreError>;
    async fn record_click(&self, click: &Click) -> Result<(), StoreError>;
}

/// What one attempt at a chunk wrote (`BlobStore::write_chunk`): the staging state to commit with the
/// session, and what the backend still has to do once that commit is decided. The handler only
/// passes it on: to `after_commit` if the commit won, to `abandon` if it certainly lost.
#[derive(Debug, Clone, Default)]
pub struct ChunkWrite {
    /// The staging state to commit with the session.
    pub staging: StagingState,
    /// Objects this attempt wrote under keys of its own, which nothing refers to unless its commit
    /// wins (removed again by `abandon`).
    pub own_objects: Vec<String>,
    /// A part this chunk completes, as (its record, its bytes): the record is committed with the
    /// session (`UploadStore::commit_chunk`), and the bytes are uploaded only once that commit has
    /// won, so that a losing attempt never writes where a committed part lives.
    pub sealed_part: Option<(PartRecord, Bytes)>,
}

/// A chunk hashed, written and made durable in one go (`BlobStore::write_hashed`).
#[derive(Debug, Clone)]
pub struct HashedChunk {
    pub write: ChunkWrite,
    /// The session to commit: the one read, with the chunk accepted (`UploadSession::accepted`).
    pub session: UploadSession,
    /// As `BlobStore::persist_progress` answers: the session is recoverable from what was written,
    /// so its commit needs no flush of its own.
    pub recoverable: bool,
}

/// Held by a chunk writer from reading the session to committing it, where the backend needs it
/// (`BlobStore::exclusive`); dropping it lets the next writer of the same upload in.
pub type ChunkGuard = Box<dyn Send + Sync>;

/// The bytes: chunks of unfinished uploads, and finished objects.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Mutual exclusion of the writers of one upload, for a backend whose chunk writes are not
    /// isolated per attempt (the local one writes every chunk into one file, in one process): the
    /// guard is held from reading the session to committing it. `None` (the default): attempts never
    /// write where another attempt's committed bytes are, and the conditional commit alone decides.
    async fn exclusive(&self, _upload_id: &str) -> Option<ChunkGuard> {
        None
    }

    /// Called for a new upload before its session is first stored: opens what every chunk of it
    /// will write into, and returns the staging state the session starts with. Nothing else can
    /// write the upload yet (nobody knows its id), so nothing opened here is ever opened twice.
    async fn begin(&self, session: &UploadSession) -> anyhow::Result<StagingState> {
        Ok(session.staging.clone())
    }

    /// Writes one checked chunk against `session` (the version the writer read). Must be safe to
    /// repeat for the same offset, and to race with other attempts at the same offset, possibly with
    /// other bytes (a retry after a crash or a lost answer, a client sending twice): it must not
    /// destroy or change anything a committed session refers to, whichever attempt's commit wins.
    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<ChunkWrite>;

    /// For a backend whose write is local (nothing to overlap with the hashing): advances `session`'s
    /// MD5 over the chunk, writes it and does what `persist_progress` does, all in one task, so a
    /// chunk costs one hand-off to a blocking thread instead of three. `None` (the default): not
    /// offered for this chunk; the handler hashes while `write_chunk` writes, then calls
    /// `persist_progress`.
    async fn write_hashed(
        &self,
        _session: &UploadSession,
        _plan: &ChunkPlan,
        _data: &Bytes,
    ) -> Option<anyhow::Result<HashedChunk>> {
        None
    }

    /// Called after `write_chunk` and before `session` (the chunk accepted, its version the one to
    /// commit) is committed: makes the chunk durable, together with `session` where the backend can
    /// keep it beside the bytes, and answers whether it did. If it did, the commit needs no flush of
    /// its own (`UploadStore::put_upload_deferred`): after a crash the backend recovers the session
    /// from what it wrote here. Default: nothing to do (`write_chunk` made the bytes durable), false.
    async fn persist_progress(
        &self,
        _session: &UploadSession,
        _plan: &ChunkPlan,
    ) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// Called once the session with `write.staging` is committed (`session` is that committed one;
    /// `before` the staging state it replaced): finishes what only a winner may do. Failures here
    /// leave nothing inconsistent: what it did not do is repaired later (by `finish`).
    async fn after_commit(
        &self,
        _session: &UploadSession,
        _before: &StagingState,
        _write: ChunkWrite,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// Called when the commit of `write` certainly lost (another attempt moved the session on, or
    /// it is gone): removes what only this attempt refers to. Best effort: whatever it leaves is
    /// garbage that `discard`, `finish` or the bucket's lifecycle removes.
    async fn abandon(&self, _session: &UploadSession, _write: ChunkWrite) -> anyhow::Result<()> {
        Ok(())
    }

    /// Turns a fully received upload into the object `key`, served with `session.object_headers()`,
    /// and answers the object's size. `parts` are the upload's recorded parts
    /// (`UploadStore::recorded_parts`; none where chunks seal no parts). Under `MetadataPolicy::Strip` a photo (`image_metadata::applies`)
    /// is stored as `image_metadata::strip` makes it, and no object with its metadata ever exists at
    /// `key`, not even for a moment (it lies under a served prefix, `domain::keys`); the rewrite reads
    /// the whole file once into memory, which admission bounds (`Limits::max_image_bytes`).
    /// Idempotent: a retry after a crash finds the object already there (or writes the same bytes
    /// again) and succeeds. Before this call no object exists at `key`.
    async fn finish(
        &self,
        session: &UploadSession,
        parts: &[PartRecord],
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

/// Where the platform's events go (`domain::events`): an EventBridge bus, a webhook, or nowhere.
/// Which sink a process has is decided by its wiring: the request path only ever gets one that does
/// not wait for the receiver (media-local's webhook queue) or none (the Lambda functions, whose
/// media events come from the table's stream instead).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Hands `events` over for delivery, in order. `Ok`: all of them are delivered (or queued for a
    /// delivery that no longer concerns the caller). An error names the first one that was not: the
    /// ones before it were, the ones from it on may or may not have been; a caller that must not lose
    /// them publishes them again from there (at least once).
    async fn publish(&self, events: &[PlatformEvent]) -> Result<(), Undelivered>;
}

/// Events from `first` on were not (all) delivered, for `reason`.
#[derive(Debug, thiserror::Error)]
#[error("event {first} and later not delivered: {reason}")]
pub struct Undelivered {
    pub first: usize,
    pub reason: String,
}

/// The sink of a process that tells nobody (no bus or webhook configured).
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn publish(&self, _events: &[PlatformEvent]) -> Result<(), Undelivered> {
        Ok(())
    }
}
