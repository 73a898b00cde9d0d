//! One handler per endpoint, each `http::Request<Bytes>` -> `http::Response<Bytes>`, over the ports
//! composed in `App` (`crate::app`). The Lambda binaries call one handler each; the local server
//! routes every path through `routes`.

pub mod auth;
pub mod chunk;
pub mod click;
pub mod complete;
pub mod create;
pub mod delete;
pub mod form;
pub mod get;
pub mod jwks;
pub mod multipart;
pub mod response;
pub mod routes;
pub mod update;

use bytes::Bytes;

use crate::app::App;
use crate::domain::{ApiError, MediaRecord};

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;

/// The media named by the request's path, for a change only its creator may make: 401 without a
/// user, 404 for an unknown media, 403 for anyone but the creator.
pub async fn creators_media(app: &App, req: &Request) -> Result<MediaRecord, ApiError> {
    let user = auth::require_user(req)?;
    let media = app
        .media_or_404(media_id_from_path(req.uri().path())?)
        .await?;
    if media.owner != user {
        return Err(ApiError::Forbidden);
    }
    Ok(media)
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
