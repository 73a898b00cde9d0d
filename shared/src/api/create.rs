//! POST /api/v2/media/: media that are not uploaded files: embeds, shares, link previews (`url`) and
//! images downloaded from a URL (`image` with a `url`). URLs are fetched by `crate::fetch`, which
//! refuses private and internal addresses; every fetch failure is a 400 on the `url` field.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::auth::require_user;
use super::form::json_object;
use super::{response, Request, Response};
use crate::app::App;
use crate::domain::keys;
use crate::domain::{ApiError, MediaRecord, MediaType, ThumbnailMode};
use crate::{fetch, thumbnailer};

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(create(app, req).await)
}

async fn create(app: &App, req: Request) -> Result<Response, ApiError> {
    let user = require_user(&req)?;
    let body = json_object(req.body())?;
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::field("type", "This field is required."))?;
    let embed = match kind {
        "embed" => user_embed(&body)?,
        "share" => share_embed(&body)?,
        "url" => return url_media(app, &user, required_url(&body)?).await,
        "image" => return image_from_url(app, &user, required_url(&body)?).await,
        other => {
            return Err(ApiError::field(
                "type",
                format!("\"{other}\" is not a valid type: use embed, share, url or image"),
            ))
        }
    };
    let id = app.media.next_media_id().await?;
    let media_type = if kind == "embed" {
        MediaType::Embed
    } else {
        MediaType::Share
    };
    let mut media = MediaRecord::new(id, &user, media_type, OffsetDateTime::now_utc());
    let mut embed = embed;
    embed.insert("id".into(), json!(id));
    media.embed = Some(Value::Object(embed));
    app.media.put_media(&media).await?;
    Ok(response::json(201, &app.announce_created(&media).await?))
}

/// `{"url": "http(s)://..."}`; the fetcher checks the rest (scheme again on redirects, addresses).
fn required_url(body: &Map<String, Value>) -> Result<&str, ApiError> {
    let url = body
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::field("url", "This field is required."))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::field("url", "must be an http or https URL"));
    }
    Ok(url)
}

/// A link preview: the page is fetched before an id is taken, so a refused URL costs nothing.
async fn url_media(app: &App, user: &str, url: &str) -> Result<Response, ApiError> {
    let preview = fetch::page::link_preview(&app.limits, url).await?;
    let id = app.media.next_media_id().await?;
    let mut media = MediaRecord::new(id, user, MediaType::Url, OffsetDateTime::now_utc());
    media.url = Some(url.to_string());
    media.title = Some(preview.title);
    media.description = preview.description;
    media.image_url = preview.image;
    (media.image_width, media.image_height) = preview.image_size.unzip();
    let mut embed = preview.embed;
    embed.insert("id".into(), json!(id));
    media.embed = Some(Value::Object(embed));
    app.media.put_media(&media).await?;
    Ok(response::json(201, &app.announce_created(&media).await?))
}

/// An image media from a URL: downloaded, judged by its bytes, stored under a key of ours.
async fn image_from_url(app: &App, user: &str, url: &str) -> Result<Response, ApiError> {
    let image = fetch::image::download(&app.limits, url, "url").await?;
    let id = app.media.next_media_id().await?;
    let c = &image.content;
    let key = keys::fetched_image(id, &c.mime);
    app.blobs
        .put_object(&key, image.bytes.clone(), &c.mime)
        .await?;
    let mut media = MediaRecord::new(id, user, MediaType::Image, OffsetDateTime::now_utc());
    media.title = image.file_name.clone();
    media.url = Some(url.to_string());
    media.size = Some(image.bytes.len() as u64);
    media.mimetype = Some(c.mime.clone());
    media.image_mimetype = Some(c.mime.clone());
    media.image_width = c.width;
    media.image_height = c.height;
    media.object_key = Some(key);
    if app.limits.thumbnails == ThumbnailMode::Inline {
        if let Err(e) = thumbnailer::attach(app, &mut media, image.bytes).await {
            tracing::warn!(
                media_id = id,
                error = format!("{e:#}"),
                "thumbnail not stored"
            );
        }
    }
    app.media.put_media(&media).await?;
    Ok(response::json(201, &app.announce_created(&media).await?))
}

/// `{"embed": {"embed_type", "embed_id", "url"?, "metadata"?}}`; `sc_` types are the server's own.
fn user_embed(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let embed = body
        .get("embed")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::field("embed", "This field is required."))?;
    let embed_type = embed
        .get("embed_type")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::field("embed", "embed_type is required"))?;
    if embed_type.starts_with("sc_") {
        return Err(ApiError::field(
            "embed",
            format!("embed_type \"{embed_type}\" is reserved"),
        ));
    }
    let embed_id = match embed.get("embed_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ApiError::field("embed", "embed_id is required")),
    };
    let url = match embed.get("url") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(_) => return Err(ApiError::field("embed", "url must be a string")),
    };
    let metadata = match embed.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(_) => return Err(ApiError::field("embed", "metadata must be an object")),
    };
    let mut out = Map::new();
    out.insert("embed_type".into(), json!(embed_type));
    out.insert("embed_id".into(), json!(embed_id));
    out.insert("url".into(), url);
    out.insert("metadata".into(), metadata);
    Ok(out)
}

/// `{"shared_object": 607}` or `{"event_object": 12}`: a share of a contribution or an event.
fn share_embed(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let (field, embed_type) = match (body.get("shared_object"), body.get("event_object")) {
        (Some(_), None) => ("shared_object", "sc_shared_object"),
        (None, Some(_)) => ("event_object", "sc_shared_event"),
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "shared_object",
                "give shared_object or event_object, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::field(
                "shared_object",
                "shared_object or event_object is required",
            ))
        }
    };
    let id = body[field]
        .as_u64()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field(field, "must be a positive integer id"))?;
    let mut out = Map::new();
    out.insert("embed_type".into(), json!(embed_type));
    out.insert("embed_id".into(), json!(id.to_string()));
    out.insert("url".into(), Value::Null);
    out.insert("metadata".into(), json!({}));
    Ok(out)
}
