//! The upload session and its state machine: which chunk may be written, when, and what completing needs.
//! Pure rules; the handlers load and store sessions through the ports, and every store write is
//! conditional on `version`, so two processes can never both move the same session forward.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::content_range::ContentRange;
use super::error::ApiError;
use super::keys;
use super::md5_state::ResumableMd5;
use super::object_headers::ObjectHeaders;
use super::sniff::Sniffed;
use super::time_fmt::{from_unix_millis, unix_millis};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadStatus {
    Receiving,
    /// The MD5 matched and a media id is reserved; the object and the media record are being written.
    /// A retried complete resumes from here with the same id, so a crash never makes two media.
    Completing {
        media_id: u64,
        media_type: super::media::MediaType,
    },
    Completed {
        media_id: u64,
        md5: String,
    },
    /// The upload can only expire: its bytes are being (or were) released. Written by the sweep's
    /// claim on an expired upload (`cleanup`), and by versions before an MD5 mismatch kept the
    /// upload completable.
    Failed {
        reason: String,
    },
}

/// One S3-style part (number, ETag, size): kept by us, as DESIGN.md asks. Recorded by the commit of
/// the chunk that fills it, apart from the session (`UploadStore::commit_chunk`), so that the session
/// stays the same size whatever the file's; sessions stored by earlier versions hold theirs inline
/// (`StagingState::parts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    /// What S3 answered to its UploadPart or, for a part uploaded only after the commit that records
    /// it, the ETag it must get (for S3: the quoted MD5 of its bytes).
    pub etag: String,
    pub size: u64,
    /// The staged objects the part is made of, in order (names below the upload's staging prefix),
    /// from which it can be written again if its upload after the commit never happened. Kept until
    /// the upload completes (the staged objects are too). Empty in parts that sessions of earlier
    /// versions recorded as confirmed, or from before parts were written after their commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl PartRecord {
    /// Whether the part can be written again from its sources (its upload follows its commit, and
    /// may not have happened).
    pub fn is_unconfirmed(&self) -> bool {
        !self.sources.is_empty()
    }
}

/// A chunk staged as its own object until enough bytes for a part have arrived.
///
/// Stored as one string, `<name>:<len>` (the name starts with the offset), about a third of the
/// object it was before: the session item is rewritten by every chunk and carries up to a part's
/// worth of these, so their size is most of what a chunk's commit costs beyond the first write
/// unit. Sessions stored as `{"key", "offset", "len"}` by earlier versions are still read (an
/// earlier version meeting the new form refuses the session, a 500, rather than misreading it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredChunk", into = "String")]
pub struct StagedChunk {
    /// The object's name below the upload's staging prefix (`<offset>-<token>`), the backend's to
    /// place: the prefix is the upload's, and need not be stored with every chunk.
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// A staged chunk as stored: compact, or as versions before it wrote it.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredChunk {
    Compact(String),
    Full { key: String, offset: u64, len: u64 },
}

impl TryFrom<StoredChunk> for StagedChunk {
    type Error = String;

    fn try_from(stored: StoredChunk) -> Result<Self, String> {
        match stored {
            StoredChunk::Full { key, offset, len } => Ok(StagedChunk {
                // Every version put them right below the upload's staging prefix.
                name: key.rsplit('/').next().unwrap_or(&key).to_string(),
                offset,
                len,
            }),
            StoredChunk::Compact(s) => {
                let bad = || format!("a staged chunk stored as {s:?}");
                let (name, len) = s.rsplit_once(':').ok_or_else(bad)?;
                let digits = name.split('-').next().unwrap_or(name);
                Ok(StagedChunk {
                    offset: digits.parse().map_err(|_| bad())?,
                    len: len.parse().map_err(|_| bad())?,
                    name: name.to_string(),
                })
            }
        }
    }
}

impl From<StagedChunk> for String {
    fn from(c: StagedChunk) -> String {
        format!("{}:{}", c.name, c.len)
    }
}

/// Where the received bytes are, in terms any backend can use (the local one needs none of it).
/// Bounded in size whatever the file's: the part list is not in it (`parts_apart`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingState {
    pub multipart_upload_id: Option<String>,
    /// Where the multipart upload was opened (an S3 key), recorded by `BlobStore::begin` so that no
    /// later chunk or completion has to work it out again under rules that may have changed since
    /// (a deploy in the middle of an upload). `None` in sessions of versions before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_key: Option<String>,
    /// Parts held in the session itself: only sessions stored by versions before parts were recorded
    /// apart have any (read, and completed, as before); nothing is added here any more. Left out of
    /// the stored session when empty, which also makes an earlier version that meets a newer session
    /// during a deploy refuse it (a missing field) rather than number its parts from 1 again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRecord>,
    /// How many parts are recorded apart from the session (`UploadStore::commit_chunk`), numbered
    /// after those in `parts`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts_apart: u32,
    pub staged: Vec<StagedChunk>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StagingState {
    /// Every part recorded so far, inline or apart.
    pub fn part_count(&self) -> u32 {
        u32::try_from(self.parts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.parts_apart)
    }

    /// The numbers of the parts recorded apart: those after the inline ones.
    pub fn numbers_apart(&self) -> std::ops::RangeInclusive<u32> {
        let inline = u32::try_from(self.parts.len()).unwrap_or(u32::MAX);
        inline.saturating_add(1)..=self.part_count()
    }
}

/// The chunk accepted last, kept so that the client's retry of it (its answer was lost) can be
/// recognised and answered as the success it was. The MD5 state from before the chunk tells whether
/// the retried bytes are the same ones: fed with them, it must become the session's current state.
/// Nothing is hashed for it on the normal path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastChunk {
    pub start: u64,
    pub len: u64,
    pub md5_before: ResumableMd5,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: String,
    pub until_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadSession {
    pub id: String,
    pub owner: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub total: u64,
    /// Bytes received and committed so far; the next chunk must start here.
    pub offset: u64,
    pub status: UploadStatus,
    pub content: Sniffed,
    pub filename: Option<String>,
    pub md5: ResumableMd5,
    pub staging: StagingState,
    pub lease: Option<Lease>,
    /// Absent in sessions stored before it existed, and until the first chunk is accepted.
    #[serde(default)]
    pub last_chunk: Option<LastChunk>,
    /// Bumped by every write; writes are conditional on the version they read.
    pub version: u64,
}

/// Where a chunk goes, once it has been checked against the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub start: u64,
    pub len: u64,
    pub total: u64,
}

impl ChunkPlan {
    /// The chunk that ends the file: the backend finishes its last part with it.
    pub fn is_last(&self) -> bool {
        self.start + self.len == self.total
    }

    /// The first chunk of a new upload. Without a Content-Range header it carries the whole file.
    pub fn first(range: Option<ContentRange>, len: u64) -> Result<Self, ApiError> {
        if len == 0 {
            return Err(ApiError::bad_request(
                "empty_chunk",
                "the file part is empty",
            ));
        }
        let Some(r) = range else {
            return Ok(ChunkPlan {
                start: 0,
                len,
                total: len,
            });
        };
        check_len(&r, len)?;
        if r.start != 0 {
            return Err(ApiError::OffsetMismatch { offset: 0 });
        }
        Ok(ChunkPlan {
            start: 0,
            len,
            total: r.total,
        })
    }
}

fn check_len(r: &ContentRange, len: u64) -> Result<(), ApiError> {
    if r.len() != len {
        return Err(ApiError::bad_request(
            "length_mismatch",
            format!(
                "Content-Range covers {} bytes but the file part has {len}",
                r.len()
            ),
        ));
    }
    Ok(())
}

/// 32 lowercase hex digits, as clients expect.
pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Anything that is not an id we could have issued is treated as unknown (404), never looked up.
pub fn parse_upload_id(raw: &str) -> Result<String, ApiError> {
    let id = raw.trim().to_ascii_lowercase();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(ApiError::NotFound("upload"))
    }
}

impl UploadSession {
    pub fn new(
        owner: &str,
        now: OffsetDateTime,
        ttl_secs: u64,
        plan: &ChunkPlan,
        content: Sniffed,
        filename: Option<String>,
    ) -> Self {
        let created_at_ms = unix_millis(now);
        UploadSession {
            id: new_upload_id(),
            owner: owner.to_string(),
            created_at_ms,
            expires_at_ms: created_at_ms.saturating_add((ttl_secs as i64).saturating_mul(1000)),
            total: plan.total,
            offset: 0,
            status: UploadStatus::Receiving,
            content,
            filename,
            md5: ResumableMd5::default(),
            staging: StagingState::default(),
            lease: None,
            last_chunk: None,
            version: 0,
        }
    }

    pub fn expires(&self) -> OffsetDateTime {
        from_unix_millis(self.expires_at_ms)
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        unix_millis(now) >= self.expires_at_ms
    }

    /// Another user's upload is indistinguishable from an unknown one.
    pub fn check_owner(&self, user: &str) -> Result<(), ApiError> {
        if self.owner == user {
            Ok(())
        } else {
            Err(ApiError::NotFound("upload"))
        }
    }

    /// A later chunk: the session must be receiving, unexpired, and the chunk must start at its offset.
    pub fn plan_chunk(
        &self,
        range: Option<ContentRange>,
        len: u64,
        now: OffsetDateTime,
    ) -> Result<ChunkPlan, ApiError> {
        self.check_receiving(now)?;
        if len == 0 {
            return Err(ApiError::bad_request(
                "empty_chunk",
                "the file part is empty",
            ));
        }
        let r = range.ok_or_else(|| {
            ApiError::bad_request(
                "missing_content_range",
                "a Content-Range header is required on every chunk after the first",
            )
        })?;
        check_len(&r, len)?;
        if r.total != self.total {
            return Err(ApiError::bad_request(
                "total_changed",
                format!(
                    "Content-Range total {} differs from the upload's total {}",
                    r.total, self.total
                ),
            ));
        }
        if r.start != self.offset {
            return Err(ApiError::OffsetMismatch {
                offset: self.offset,
            });
        }
        Ok(ChunkPlan {
            start: r.start,
            len,
            total: self.total,
        })
    }

    /// The chunk accepted last, if this request names exactly its range again (a retry after a lost
    /// answer) on an upload still receiving. The caller compares the bytes (`is_same_chunk`): the
    /// same ones are answered as the success they were; other bytes are an offset mismatch.
    pub fn repeated_chunk(
        &self,
        range: Option<&ContentRange>,
        len: u64,
        now: OffsetDateTime,
    ) -> Option<&LastChunk> {
        let (r, last) = (range?, self.last_chunk.as_ref()?);
        let same_range = r.start == last.start
            && r.len() == len
            && len == last.len
            && r.total == self.total
            && last.start + last.len == self.offset;
        (same_range && self.check_receiving(now).is_ok()).then_some(last)
    }

    /// Whether `data` are the bytes of the chunk accepted last (`repeated_chunk`).
    pub fn is_same_chunk(&self, last: &LastChunk, data: &[u8]) -> anyhow::Result<bool> {
        Ok(last.md5_before.clone().advanced(data)? == self.md5)
    }

    fn check_receiving(&self, now: OffsetDateTime) -> Result<(), ApiError> {
        match &self.status {
            UploadStatus::Receiving => {}
            UploadStatus::Completing { .. } | UploadStatus::Completed { .. } => {
                return Err(ApiError::bad_request(
                    "upload_completed",
                    "this upload is already completed",
                ))
            }
            // A failed upload past its expiry (the sweep's claim marks it failed before freeing it)
            // is simply gone, as the API says of expired uploads.
            UploadStatus::Failed { .. } if self.is_expired(now) => return Err(ApiError::Gone),
            UploadStatus::Failed { reason } => {
                return Err(ApiError::bad_request(
                    "upload_failed",
                    format!("this upload has failed: {reason}"),
                ))
            }
        }
        if self.is_expired(now) {
            return Err(ApiError::Gone);
        }
        Ok(())
    }

    /// Checks before completing: the rules for a session that has not completed yet.
    pub fn check_completable(&self, now: OffsetDateTime) -> Result<(), ApiError> {
        if let UploadStatus::Failed { reason } = &self.status {
            if self.is_expired(now) {
                return Err(ApiError::Gone);
            }
            return Err(ApiError::bad_request(
                "upload_failed",
                format!("this upload has failed: {reason}"),
            ));
        }
        if self.status == UploadStatus::Receiving && self.is_expired(now) {
            return Err(ApiError::Gone);
        }
        if self.offset < self.total {
            let missing = self.total - self.offset;
            return Err(ApiError::bad_request(
                "upload_incomplete",
                format!(
                    "the upload has {} of {} bytes: {missing} bytes are missing",
                    self.offset, self.total
                ),
            ));
        }
        Ok(())
    }

    pub fn lease_active(&self, now: OffsetDateTime) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.until_ms > unix_millis(now))
    }

    /// Takes the write lease for one request; fails with 409 while another request holds a live one.
    /// Only completion takes it now; chunks stored by older versions may still hold one.
    pub fn take_lease(&mut self, now: OffsetDateTime, secs: u64) -> Result<(), ApiError> {
        if self.lease_active(now) {
            // Who holds it follows from the stored state: chunks write receiving uploads, a
            // completion holds it from the moment the upload is completing.
            let holder = match self.status {
                UploadStatus::Receiving => "a chunk of this upload is being written",
                _ => "this upload is being completed by another request",
            };
            return Err(ApiError::Conflict(format!(
                "{holder} right now; retry shortly"
            )));
        }
        self.lease = Some(Lease {
            token: uuid::Uuid::new_v4().simple().to_string(),
            until_ms: unix_millis(now) + secs as i64 * 1000,
        });
        Ok(())
    }

    /// Records a written chunk: the MD5 state moved forward over exactly this chunk
    /// (`self.md5.clone().advanced(chunk)`, computed wherever is convenient, e.g. while the bytes
    /// are being written), and the offset moves too. Chunks take no lease (their commit is
    /// conditional on the version they read); one left by an older version is cleared.
    pub fn accept_chunk(&mut self, plan: &ChunkPlan, md5: ResumableMd5, staging: StagingState) {
        debug_assert_eq!(plan.start, self.offset);
        self.last_chunk = Some(LastChunk {
            start: plan.start,
            len: plan.len,
            md5_before: std::mem::replace(&mut self.md5, md5),
        });
        self.offset = plan.start + plan.len;
        self.staging = staging;
        self.lease = None;
    }

    /// The session to commit for a chunk written against this one (the version read): the chunk
    /// accepted (`accept_chunk`) and the version one up, which the commit is conditional on.
    pub fn accepted(&self, plan: &ChunkPlan, md5: ResumableMd5, staging: StagingState) -> Self {
        let mut next = self.clone();
        next.accept_chunk(plan, md5, staging);
        next.version = self.version + 1;
        next
    }

    /// Compares the client's MD5 with the carried-forward one; `Ok` is the (lowercase) digest.
    pub fn verify_md5(&self, claimed: &str) -> Result<String, Md5Error> {
        let ours = self.md5.hex_digest().map_err(Md5Error::State)?;
        let claimed = claimed.trim();
        if !(claimed.len() == 32 && claimed.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(Md5Error::Malformed);
        }
        if claimed.eq_ignore_ascii_case(&ours) {
            Ok(ours)
        } else {
            Err(Md5Error::Mismatch {
                claimed: claimed.to_string(),
            })
        }
    }

    /// The stored object's key: nothing the user chose, only our id and the sniffed type's extension.
    pub fn object_key(&self) -> String {
        keys::upload(&self.id, self.content.extension())
    }

    /// The headers the finished object is served with (a document downloads under its file name).
    pub fn object_headers(&self) -> ObjectHeaders {
        ObjectHeaders::for_upload(&self.content, self.filename.as_deref())
    }
}

/// Why `verify_md5` refused a client's MD5.
#[derive(Debug, thiserror::Error)]
pub enum Md5Error {
    /// Not 32 hexadecimal digits: a field error, nothing is known about the bytes.
    #[error("md5 must be 32 hexadecimal digits")]
    Malformed,
    /// Well formed, but not the MD5 of the bytes received.
    #[error("the md5 {claimed} does not match the received bytes; the upload is kept, and completes with the md5 of the bytes it holds until it expires")]
    Mismatch { claimed: String },
    /// The carried MD5 state could not be finished (a corrupt session record).
    #[error("the upload's MD5 state")]
    State(#[source] anyhow::Error),
}

impl From<Md5Error> for ApiError {
    fn from(e: Md5Error) -> Self {
        match e {
            Md5Error::Malformed => ApiError::field("md5", e.to_string()),
            Md5Error::Mismatch { .. } => ApiError::bad_request("md5_mismatch", e.to_string()),
            Md5Error::State(source) => ApiError::Internal(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sniff::ContentKind;

    fn session(total: u64) -> UploadSession {
        let plan = ChunkPlan {
            start: 0,
            len: 1,
            total,
        };
        let content = Sniffed {
            mime: "image/png".into(),
            kind: ContentKind::Image,
            width: None,
            height: None,
        };
        UploadSession::new(
            "alice",
            OffsetDateTime::now_utc(),
            3600,
            &plan,
            content,
            None,
        )
    }

    fn range(s: u64, e: u64, t: u64) -> Option<ContentRange> {
        Some(ContentRange {
            start: s,
            end: e,
            total: t,
        })
    }

    #[test]
    fn ids_are_32_lowercase_hex() {
        let id = new_upload_id();
        assert_eq!(parse_upload_id(&id).unwrap(), id);
        assert_eq!(parse_upload_id(&id.to_uppercase()).unwrap(), id);
        assert!(parse_upload_id("../../etc/passwd").is_err());
        assert!(parse_upload_id("").is_err());
    }

    #[test]
    fn first_chunk_rules() {
        assert_eq!(
            ChunkPlan::first(None, 10).unwrap(),
            ChunkPlan {
                start: 0,
                len: 10,
                total: 10
            }
        );
        assert!(ChunkPlan::first(None, 10).unwrap().is_last());
        let p = ChunkPlan::first(range(0, 9, 100), 10).unwrap();
        assert!(!p.is_last());
        assert!(matches!(
            ChunkPlan::first(range(10, 19, 100), 10),
            Err(ApiError::OffsetMismatch { offset: 0 })
        ));
        assert_eq!(
            ChunkPlan::first(range(0, 9, 100), 11).unwrap_err().status(),
            400
        );
        assert!(ChunkPlan::first(None, 0).is_err());
    }

    #[test]
    fn later_chunk_rules() {
        let now = OffsetDateTime::now_utc();
        let mut s = session(100);
        s.offset = 40;
        assert_eq!(
            s.plan_chunk(range(40, 49, 100), 10, now).unwrap(),
            ChunkPlan {
                start: 40,
                len: 10,
                total: 100
            }
        );
        assert!(matches!(
            s.plan_chunk(range(30, 39, 100), 10, now),
            Err(ApiError::OffsetMismatch { offset: 40 })
        ));
        assert!(matches!(
            s.plan_chunk(range(50, 59, 100), 10, now),
            Err(ApiError::OffsetMismatch { offset: 40 })
        ));
        assert!(s
            .plan_chunk(range(40, 49, 101), 10, now)
            .unwrap_err()
            .to_string()
            .contains("total"));
        assert!(s.plan_chunk(range(40, 49, 100), 9, now).is_err());
        assert!(s.plan_chunk(None, 10, now).is_err());
        let later = now + time::Duration::hours(2);
        assert!(matches!(
            s.plan_chunk(range(40, 49, 100), 10, later),
            Err(ApiError::Gone)
        ));
        s.status = UploadStatus::Failed {
            reason: "md5".into(),
        };
        assert_eq!(
            s.plan_chunk(range(40, 49, 100), 10, now)
                .unwrap_err()
                .status(),
            400
        );
        // Failed by the sweep's claim because it expired: gone, for chunks and completion alike.
        assert!(matches!(
            s.plan_chunk(range(40, 49, 100), 10, later),
            Err(ApiError::Gone)
        ));
        assert!(matches!(s.check_completable(later), Err(ApiError::Gone)));
        assert_eq!(s.check_completable(now).unwrap_err().status(), 400);
    }

    #[test]
    fn the_last_chunk_sent_again_is_recognised_by_its_bytes() {
        let now = OffsetDateTime::now_utc();
        let mut s = session(6);
        let first = ChunkPlan {
            start: 0,
            len: 3,
            total: 6,
        };
        s.accept_chunk(
            &first,
            s.md5.clone().advanced(b"abc").unwrap(),
            StagingState::default(),
        );
        let again = range(0, 2, 6);
        let last = s.repeated_chunk(again.as_ref(), 3, now).unwrap().clone();
        assert!(s.is_same_chunk(&last, b"abc").unwrap());
        assert!(!s.is_same_chunk(&last, b"abd").unwrap());
        // Another range, length or total is not the same chunk; neither is an older chunk.
        assert!(s.repeated_chunk(range(0, 1, 6).as_ref(), 2, now).is_none());
        assert!(s.repeated_chunk(range(0, 2, 7).as_ref(), 3, now).is_none());
        assert!(s.repeated_chunk(None, 3, now).is_none());
        let second = ChunkPlan {
            start: 3,
            len: 3,
            total: 6,
        };
        s.accept_chunk(
            &second,
            s.md5.clone().advanced(b"def").unwrap(),
            StagingState::default(),
        );
        assert!(s.repeated_chunk(again.as_ref(), 3, now).is_none());
        let last = s
            .repeated_chunk(range(3, 5, 6).as_ref(), 3, now)
            .unwrap()
            .clone();
        assert!(s.is_same_chunk(&last, b"def").unwrap());
        // Not once the upload is no longer receiving, nor after it expired.
        let later = now + time::Duration::hours(2);
        assert!(s
            .repeated_chunk(range(3, 5, 6).as_ref(), 3, later)
            .is_none());
        s.status = UploadStatus::Completed {
            media_id: 1,
            md5: String::new(),
        };
        assert!(s.repeated_chunk(range(3, 5, 6).as_ref(), 3, now).is_none());
    }

    #[test]
    fn lease_excludes_a_second_writer_until_it_runs_out() {
        let now = OffsetDateTime::now_utc();
        let mut s = session(10);
        s.take_lease(now, 30).unwrap();
        let e = s.take_lease(now, 30).unwrap_err();
        assert_eq!(e.status(), 409);
        assert!(e.to_string().contains("chunk"), "{e}");
        s.status = UploadStatus::Completing {
            media_id: 1,
            media_type: crate::domain::MediaType::Image,
        };
        let e = s.take_lease(now, 30).unwrap_err();
        assert!(e.to_string().contains("being completed"), "{e}");
        s.take_lease(now + time::Duration::seconds(31), 30).unwrap();
    }

    #[test]
    fn parts_stored_before_sources_existed_read_as_confirmed() {
        let old: PartRecord =
            serde_json::from_str(r#"{"number":1,"etag":"\"abc\"","size":5}"#).unwrap();
        assert!(!old.is_unconfirmed());
        // A confirmed part is stored as before: no empty list in every session item.
        assert!(!serde_json::to_string(&old).unwrap().contains("sources"));
        let pending = PartRecord {
            sources: vec!["0-0123456789abcdef".into()],
            ..old
        };
        assert!(pending.is_unconfirmed());
        let back: PartRecord =
            serde_json::from_str(&serde_json::to_string(&pending).unwrap()).unwrap();
        assert_eq!(back, pending);
    }

    #[test]
    fn completion_needs_every_byte_and_the_right_md5() {
        let now = OffsetDateTime::now_utc();
        let mut s = session(3);
        let plan = ChunkPlan {
            start: 0,
            len: 2,
            total: 3,
        };
        s.accept_chunk(
            &plan,
            s.md5.clone().advanced(b"ab").unwrap(),
            StagingState::default(),
        );
        assert!(s
            .check_completable(now)
            .unwrap_err()
            .to_string()
            .contains("1 bytes are missing"));
        let plan = ChunkPlan {
            start: 2,
            len: 1,
            total: 3,
        };
        s.accept_chunk(
            &plan,
            s.md5.clone().advanced(b"c").unwrap(),
            StagingState::default(),
        );
        s.check_completable(now).unwrap();
        // md5("abc")
        assert_eq!(
            s.verify_md5("900150983CD24FB0D6963F7D28E17F72").unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert!(matches!(
            s.verify_md5("900150983cd24fb0d6963f7d28e17f73"),
            Err(Md5Error::Mismatch { .. })
        ));
        assert!(matches!(s.verify_md5("nothex"), Err(Md5Error::Malformed)));
    }

    #[test]
    fn staged_chunks_are_stored_compactly_and_read_in_every_form() {
        let c = StagedChunk {
            name: "1048576-0123456789abcdef".into(),
            offset: 1_048_576,
            len: 204_800,
        };
        let stored = serde_json::to_string(&c).unwrap();
        assert_eq!(stored, r#""1048576-0123456789abcdef:204800""#);
        assert_eq!(serde_json::from_str::<StagedChunk>(&stored).unwrap(), c);
        // As versions before stored it: the whole key, offset and length.
        let full = r#"{"key":"staging/u1/1048576-0123456789abcdef","offset":1048576,"len":204800}"#;
        assert_eq!(serde_json::from_str::<StagedChunk>(full).unwrap(), c);
        // As the first version named them: the offset alone, zero-padded.
        let padded = r#"{"key":"staging/u1/00000000000001048576","offset":1048576,"len":204800}"#;
        let old = serde_json::from_str::<StagedChunk>(padded).unwrap();
        assert_eq!(old.name, "00000000000001048576");
        let again = serde_json::to_string(&old).unwrap();
        assert_eq!(serde_json::from_str::<StagedChunk>(&again).unwrap(), old);
        for bad in [r#""1048576-abc""#, r#""x-abc:5""#, r#""5-abc:x""#] {
            assert!(serde_json::from_str::<StagedChunk>(bad).is_err(), "{bad}");
        }
    }
}
