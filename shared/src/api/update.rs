//! PUT/PATCH /api/v2/media/{id}/ `{"image": "<url>"}`: choose the preview image of a url media.
//! Creator only; other media types are 400. The image is downloaded (`crate::fetch`, same address
//! rules as creating from a URL), stored under a key of ours and shown instead of the page's own.

use serde_json::Value;

use super::form::json_object;
use super::{creators_media, response, Request, Response};
use crate::app::App;
use crate::domain::keys;
use crate::domain::{ApiError, MediaType};
use crate::fetch;

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(update(app, req).await)
}

async fn update(app: &App, req: Request) -> Result<Response, ApiError> {
    let mut media = creators_media(app, &req).await?;
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
        .map(str::trim)
        .ok_or_else(|| ApiError::field("image", "This field is required."))?;
    if !(image.starts_with("http://") || image.starts_with("https://")) {
        return Err(ApiError::field("image", "must be an http or https URL"));
    }
    let downloaded = fetch::image::download(&app.limits, image, "image").await?;
    let c = &downloaded.content;
    // A new key per choice (see `keys::preview`).
    let key = keys::preview(media.id, &c.mime);
    app.blobs
        .put_object(&key, downloaded.bytes, &c.mime)
        .await?;
    let previous = media.image_key.replace(key.clone());
    media.image_url = Some(image.to_string());
    media.image_width = c.width;
    media.image_height = c.height;
    media.image_mimetype = Some(c.mime.clone());
    // Only if the media still exists: a concurrent delete must not be undone by this write.
    if !app.media.replace_media(&media).await? {
        app.blobs.delete_object(&key).await?;
        return Err(ApiError::NotFound("media"));
    }
    if let Some(old) = previous {
        if let Err(e) = app.blobs.delete_object(&old).await {
            tracing::warn!(
                media_id = media.id,
                error = format!("{e:#}"),
                "previous preview image not removed"
            );
        }
    }
    Ok(response::json(200, &app.media_json(&media).await?))
}
