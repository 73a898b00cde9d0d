//! The application: the ports composed into one value, built once per process (per cold start on
//! Lambda) by `wiring::build`, and the storage steps several handlers and the background jobs share.
//! It knows nothing of HTTP: the handlers (`api`), the cleanup and the thumbnail jobs all sit above it.

use std::sync::Arc;

use crate::domain::events::PlatformEvent;
use crate::domain::upload::{parse_upload_id, UploadSession};
use crate::domain::{ApiError, Limits, MediaRecord};
use crate::metrics::Recorder;
use crate::ports::{BlobStore, EventSink, MediaStore, UploadStore};

/// Everything a handler or a background job needs.
#[derive(Clone)]
pub struct App {
    pub limits: Limits,
    pub uploads: Arc<dyn UploadStore>,
    pub media: Arc<dyn MediaStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Where the platform's events go (`ports::EventSink`): `NoEvents` unless the entry point
    /// attaches a bus (the cleanup and events functions) or a webhook (media-local).
    pub events: Arc<dyn EventSink>,
    /// Where operational events are counted (`metrics`): EMF on Lambda, Prometheus in media-local
    /// when enabled, nowhere by default.
    pub metrics: Arc<dyn Recorder>,
}

impl App {
    /// Writes the session if nobody wrote it since we read it; bumps its version.
    pub async fn save_upload(&self, session: &mut UploadSession) -> Result<(), ApiError> {
        let expected = session.version;
        session.version += 1;
        if let Err(e) = self.uploads.put_upload(session, Some(expected)).await {
            session.version = expected;
            return Err(e.into());
        }
        Ok(())
    }

    /// The caller's own upload with this id; unknown, malformed and foreign ids are all 404.
    pub async fn own_upload(&self, raw_id: &str, user: &str) -> Result<UploadSession, ApiError> {
        let id = parse_upload_id(raw_id)?;
        let session = self
            .uploads
            .get_upload(&id)
            .await?
            .ok_or(ApiError::NotFound("upload"))?;
        session.check_owner(user)?;
        Ok(session)
    }

    pub async fn media_or_404(&self, id: u64) -> Result<MediaRecord, ApiError> {
        self.media
            .get_media(id)
            .await?
            .ok_or(ApiError::NotFound("media"))
    }

    /// The Media JSON, with a URL for each stored object (bytes, preview image, thumbnail).
    pub async fn media_json(&self, media: &MediaRecord) -> Result<serde_json::Value, ApiError> {
        let mut urls = Vec::new();
        for key in media.stored_keys() {
            urls.push((key, self.blobs.object_url(key).await?));
        }
        Ok(media.to_json(|key| urls.iter().find(|(k, _)| *k == key).map(|(_, u)| u.clone())))
    }

    /// Tells the platform from the request path: never fails the request and never waits for a
    /// receiver (the request path's sink queues, `ports::EventSink`); a refusal is logged.
    pub async fn announce(&self, event: PlatformEvent) {
        if let Err(e) = self.events.publish(std::slice::from_ref(&event)).await {
            tracing::warn!(detail_type = event.detail_type(), error = %e, "event not published");
        }
    }

    /// `announce`s a media just created and answers its JSON (what the request answers too).
    pub async fn announce_created(
        &self,
        media: &MediaRecord,
    ) -> Result<serde_json::Value, ApiError> {
        let json = self.media_json(media).await?;
        self.announce(PlatformEvent::media_created(&media.owner, json.clone()))
            .await;
        Ok(json)
    }
}
