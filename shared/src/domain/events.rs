//! The events the service tells the platform about, written once: what happened (`detail-type`), who
//! says so (`source`) and what it is about (`detail`). The EventBridge publisher
//! (`adapters::aws::EventBus`) and media-local's webhook (`adapters::webhook`) both send these and
//! nothing else, so a receiver sees the same JSON from either.
//!
//! | `detail-type`    | when                                              | `detail`                                   |
//! |------------------|---------------------------------------------------|--------------------------------------------|
//! | `Media Created`  | a media record is written for the first time      | the Media JSON of the API, plus `owner`    |
//! | `Media Deleted`  | a media record is removed (DELETE by its creator) | the Media JSON as it was, plus `owner`     |
//! | `Upload Expired` | an unfinished upload passed its expiry and its bytes were freed | `upload_id`, `owner`, `size` (declared bytes), `received`, `expires` |
//!
//! `owner` is the `sub` of the creator's token: the Media JSON of the API does not name it, and a
//! platform moderating or indexing a file needs to know whose it is.
//!
//! Delivery is at least once on every path (a retry after a failure that came after the delivery
//! sends the event again): receivers deduplicate on the event's `id` (webhook) or on the detail's
//! `id` / `upload_id` and `detail-type` (EventBridge, whose event ids are assigned per put).

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::time_fmt::{from_unix_millis, rfc3339_millis};
use super::upload::UploadSession;

/// The `source` of every event.
pub const SOURCE: &str = "media-upload";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    MediaCreated,
    MediaDeleted,
    UploadExpired,
}

impl EventType {
    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            EventType::MediaCreated => "Media Created",
            EventType::MediaDeleted => "Media Deleted",
            EventType::UploadExpired => "Upload Expired",
        }
    }
}

/// One event for the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformEvent {
    pub kind: EventType,
    pub detail: Value,
}

impl PlatformEvent {
    /// A media was created; `media_json` is what the API answers for it.
    pub fn media_created(owner: &str, media_json: Value) -> Self {
        Self::about_media(EventType::MediaCreated, owner, media_json)
    }

    /// A media was deleted; `media_json` is what the API answered for it before.
    pub fn media_deleted(owner: &str, media_json: Value) -> Self {
        Self::about_media(EventType::MediaDeleted, owner, media_json)
    }

    fn about_media(kind: EventType, owner: &str, mut media_json: Value) -> Self {
        if let Value::Object(fields) = &mut media_json {
            fields.insert("owner".into(), Value::from(owner));
        }
        PlatformEvent {
            kind,
            detail: media_json,
        }
    }

    /// An unfinished upload expired and its bytes were freed.
    pub fn upload_expired(session: &UploadSession) -> Self {
        PlatformEvent {
            kind: EventType::UploadExpired,
            detail: json!({
                "upload_id": session.id,
                "owner": session.owner,
                "size": session.total,
                "received": session.offset,
                "expires": rfc3339_millis(from_unix_millis(session.expires_at_ms)),
            }),
        }
    }

    pub fn detail_type(&self) -> &'static str {
        self.kind.detail_type()
    }

    /// The event as one JSON document, with the top-level fields an EventBridge rule's target
    /// receives (`version`, `id`, `detail-type`, `source`, `time`, `detail`): the webhook's body.
    pub fn envelope(&self, id: &str, time: OffsetDateTime) -> Value {
        let time = time
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(time);
        json!({
            "version": "0",
            "id": id,
            "detail-type": self.detail_type(),
            "source": SOURCE,
            "time": rfc3339_seconds(time),
            "detail": self.detail,
        })
    }
}

/// `2026-12-02T14:20:44Z`, EventBridge's `time` format.
fn rfc3339_seconds(t: OffsetDateTime) -> String {
    let millis = rfc3339_millis(t);
    // "...SS.mmmZ" -> "...SSZ"
    format!("{}Z", &millis[..millis.len() - 5])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::upload::UploadStatus;

    #[test]
    fn media_events_carry_the_media_json_and_its_owner() {
        let media = json!({"id": 7, "type": "image", "image": "http://x/files/a.png"});
        let e = PlatformEvent::media_created("alice", media.clone());
        assert_eq!(e.detail_type(), "Media Created");
        assert_eq!(
            e.detail,
            json!({"id": 7, "type": "image", "image": "http://x/files/a.png", "owner": "alice"})
        );
        let e = PlatformEvent::media_deleted("bob", media);
        assert_eq!(e.detail_type(), "Media Deleted");
        assert_eq!(e.detail["owner"], "bob");
    }

    #[test]
    fn an_expired_upload_names_its_id_owner_and_size() {
        let session: UploadSession = serde_json::from_value(json!({
            "id": "d360f08dd4e54c8bb3d177dfe3041d6b", "owner": "alice",
            "created_at_ms": 1795239907527i64, "expires_at_ms": 1795239910527i64,
            "total": 12582912, "offset": 8593408, "status": {"state": "receiving"},
            "content": {"mime": "application/pdf", "kind": "document", "width": null, "height": null},
            "filename": "doc.pdf",
            "md5": "10ecc8542d16052ee0804d14cf85cc6f800c02000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "staging": {"multipart_upload_id": null, "parts": [], "staged": []},
            "lease": null, "version": 5
        }))
        .unwrap();
        assert_eq!(session.status, UploadStatus::Receiving);
        let e = PlatformEvent::upload_expired(&session);
        assert_eq!(e.detail_type(), "Upload Expired");
        assert_eq!(
            e.detail,
            json!({"upload_id": "d360f08dd4e54c8bb3d177dfe3041d6b", "owner": "alice",
                   "size": 12582912, "received": 8593408, "expires": "2026-11-21T05:45:10.527Z"})
        );
    }

    #[test]
    fn the_envelope_has_eventbridges_top_level_fields() {
        let e = PlatformEvent::media_deleted("alice", json!({"id": 1}));
        let t = time::macros::datetime!(2026-12-02 14:20:44.987 UTC);
        assert_eq!(
            e.envelope("e1", t),
            json!({"version": "0", "id": "e1", "detail-type": "Media Deleted",
                   "source": "media-upload", "time": "2026-12-02T14:20:44Z",
                   "detail": {"id": 1, "owner": "alice"}})
        );
    }
}
