//! Downloading an image from a URL: fetched under the image size limit, then judged by its bytes
//! like an uploaded file (allow-list, size), never by the server's Content-Type or the URL's name, and
//! stored without its metadata like an uploaded photo (`image_metadata`).

use bytes::Bytes;

use crate::domain::image_metadata;
use crate::domain::sniff::{sniff, ContentKind, Sniffed};
use crate::domain::{ApiError, Limits};

use super::{get, Policy};

const ACCEPT_IMAGES: &str = "image/jpeg,image/png,image/gif,image/webp;q=0.9,image/*;q=0.5";

/// An image downloaded and checked, its metadata stripped if the limits say so.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: Bytes,
    pub content: Sniffed,
    /// The last segment of the URL's path (after redirects), the image's name if it has one.
    pub file_name: Option<String>,
}

/// Downloads the image at `url`; every failure is a field error on `field` (`url` or `image`).
pub async fn download(limits: &Limits, url: &str, field: &str) -> Result<Downloaded, ApiError> {
    let policy = Policy::new(&limits.fetch).capped(limits.max_image_bytes);
    let fetched = get(url, &policy, ACCEPT_IMAGES)
        .await
        .map_err(|e| e.on_field(field))?;
    let sniffed = sniff(&fetched.body).filter(|s| s.kind == ContentKind::Image);
    let Some(sniffed) = sniffed else {
        return Err(ApiError::field(field, "the URL does not serve an image"));
    };
    let content = limits
        .admit(Some(sniffed), fetched.body.len() as u64)
        .map_err(|e| ApiError::field(field, e.to_string()))?;
    let file_name = fetched
        .url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let bytes = match image_metadata::apply(limits.metadata, &content.mime, &fetched.body) {
        Some(stripped) => Bytes::from(stripped),
        None => fetched.body,
    };
    Ok(Downloaded {
        bytes,
        content,
        file_name,
    })
}
