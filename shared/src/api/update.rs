//! PUT/PATCH /api/v2/media/{id}/ `{"image": "<url>"}`: choose the preview image of a url media.
//! Creator only. Downloading the image needs the server-side fetcher, which this server does not have
//! yet: a valid request for a url media is answered with a clear 400 until then.

use serde_json::Value;

use super::auth::require_user;
use super::form::json_object;
use super::{media_id_from_path, response, App, Request, Response};
use crate::domain::{ApiError, MediaType};

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(update(app, req).await)
}

async fn update(app: &App, req: Request) -> Result<Response, ApiError> {
    let user = require_user(&req)?;
    let media = app
        .media_or_404(media_id_from_path(req.uri().path())?)
        .await?;
    if media.owner != user {
        return Err(ApiError::Forbidden);
    }
    let body = json_object(req.body())?;
    if media.media_type != MediaType::Url {
        return Err(ApiError::bad_request(
            "not_updatable",
            "only the preview image of a url media can be changed",
        ));
    }
    let image = body
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::field("image", "This field is required."))?;
    if !(image.starts_with("http://") || image.starts_with("https://")) {
        return Err(ApiError::field("image", "must be an http or https URL"));
    }
    Err(ApiError::field(
        "image",
        "fetching images from URLs is not available on this server yet",
    ))
}
