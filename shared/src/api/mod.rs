//! One handler per endpoint, each `http::Request<Bytes>` -> `http::Response<Bytes>`, generic over the
//! ports. The Lambda binaries call one handler each; the local server routes every path through `routes`.

pub mod auth;
pub mod chunk;
pub mod click;
pub mod complete;
pub mod create;
pub mod delete;
pub mod form;
pub mod get;
pub mod multipart;
pub mod response;
pub mod routes;
pub mod update;

use std::sync::Arc;

use bytes::Bytes;

use crate::domain::upload::{parse_upload_id, UploadSession};
use crate::domain::{ApiError, Limits, MediaRecord};
use crate::ports::{BlobStore, MediaStore, UploadStore};

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;

/// Everything a handler needs, built once per process (per cold start on Lambda).
#[derive(Clone)]
pub struct App {
    pub limits: Limits,
    pub uploads: Arc<dyn UploadStore>,
    pub media: Arc<dyn MediaStore>,
    pub blobs: Arc<dyn BlobStore>,
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

    /// The media named by the request's path, for a change only its creator may make: 401 without a
    /// user, 404 for an unknown media, 403 for anyone but the creator.
    pub async fn creators_media(&self, req: &Request) -> Result<MediaRecord, ApiError> {
        let user = auth::require_user(req)?;
        let media = self
            .media_or_404(media_id_from_path(req.uri().path())?)
            .await?;
        if media.owner != user {
            return Err(ApiError::Forbidden);
        }
        Ok(media)
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
}

/// `/api/v2/media/17/` and `/api/v2/media/17/click` -> 17, also behind an API Gateway stage prefix
/// (`/prod/api/v2/media/17/`). Anything else is an unknown media (404).
pub fn media_id_from_path(path: &str) -> Result<u64, ApiError> {
    let (_, rest) = path
        .split_once("/api/v2/media/")
        .ok_or(ApiError::NotFound("media"))?;
    let id = rest.split('/').next().unwrap_or("");
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::NotFound("media"));
    }
    id.parse().map_err(|_| ApiError::NotFound("media"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_from_paths() {
        assert_eq!(media_id_from_path("/api/v2/media/17/").unwrap(), 17);
        assert_eq!(media_id_from_path("/api/v2/media/17").unwrap(), 17);
        assert_eq!(media_id_from_path("/api/v2/media/17/click/").unwrap(), 17);
        assert_eq!(media_id_from_path("/prod/api/v2/media/5/").unwrap(), 5);
        for bad in [
            "/api/v2/media/",
            "/api/v2/media/x/",
            "/api/v2/media/-1/",
            "/other/17",
            "/api/v2/media/99999999999999999999/",
        ] {
            assert_eq!(media_id_from_path(bad).unwrap_err().status(), 404, "{bad}");
        }
    }
}
