//! The Media model: what is stored (`MediaRecord`) and how it is shown to clients (`Media`, API.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::error::ApiError;
use super::sniff::ContentKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Eimage,
    Doc,
    Url,
    Embed,
    Share,
}

impl MediaType {
    /// Maps the `type` a client sends at completion; `document` and `file` are stored as `doc`.
    pub fn from_upload_field(value: &str) -> Result<Self, ApiError> {
        match value.trim() {
            "image" => Ok(MediaType::Image),
            "eimage" => Ok(MediaType::Eimage),
            "doc" | "document" | "file" => Ok(MediaType::Doc),
            other => Err(ApiError::field(
                "type",
                format!("\"{other}\" is not a valid type for an upload: use image, eimage or doc"),
            )),
        }
    }

    /// The type an uploaded file gets: the client's choice if it agrees with the bytes, else the content's own.
    pub fn for_upload(
        requested: Option<&str>,
        kind: ContentKind,
        mime: &str,
    ) -> Result<Self, ApiError> {
        let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
            return Ok(match kind {
                ContentKind::Image => MediaType::Image,
                ContentKind::Document => MediaType::Doc,
            });
        };
        let t = Self::from_upload_field(requested)?;
        let agrees = matches!(
            (t, kind),
            (MediaType::Image | MediaType::Eimage, ContentKind::Image)
                | (MediaType::Doc, ContentKind::Document)
        );
        if !agrees {
            return Err(ApiError::field(
                "type",
                format!(
                    "type \"{}\" does not match the uploaded content ({mime})",
                    requested.trim()
                ),
            ));
        }
        Ok(t)
    }

    pub fn is_image(self) -> bool {
        matches!(self, MediaType::Image | MediaType::Eimage)
    }
}

/// A Media as stored. URLs to stored bytes are not stored: they are derived from `object_key` when shown,
/// so a change of public base URL (or presigning) needs no migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub id: u64,
    pub owner: String,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    pub media_type: MediaType,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The submitted URL of a `url` media.
    pub url: Option<String>,
    /// The stored bytes of an image or doc media.
    pub object_key: Option<String>,
    /// An external preview image (url media).
    pub image_url: Option<String>,
    /// A preview image we downloaded and stored (url media, after the creator chose one); shown
    /// instead of `image_url`.
    #[serde(default)]
    pub image_key: Option<String>,
    pub image_width: Option<u32>,
    pub image_height: Option<u32>,
    pub image_mimetype: Option<String>,
    /// The stored thumbnail of an image media; shown as `image_thumbnail` with a URL derived from its key.
    #[serde(default)]
    pub thumbnail: Option<StoredThumbnail>,
    pub order: Option<i64>,
    pub embed: Option<Value>,
    pub size: Option<u64>,
    pub mimetype: Option<String>,
    /// The upload this media was completed from, so a repeated complete finds it.
    pub upload_id: Option<String>,
}

impl MediaRecord {
    pub fn new(id: u64, owner: &str, media_type: MediaType, added_at: OffsetDateTime) -> Self {
        MediaRecord {
            id,
            owner: owner.to_string(),
            added_at,
            media_type,
            title: None,
            description: None,
            url: None,
            object_key: None,
            image_url: None,
            image_key: None,
            image_width: None,
            image_height: None,
            image_mimetype: None,
            thumbnail: None,
            order: None,
            embed: None,
            size: None,
            mimetype: None,
            upload_id: None,
        }
    }

    /// Every object stored for this media (its bytes, a downloaded preview image, the thumbnail):
    /// what a delete must remove, and what needs a URL when the media is shown.
    pub fn stored_keys(&self) -> Vec<&str> {
        [
            self.object_key.as_deref(),
            self.image_key.as_deref(),
            self.thumbnail.as_ref().map(|t| t.key.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The Media object of API.md; `url_of` turns a stored key into a URL clients can fetch (keys
    /// without a URL are shown as if absent).
    pub fn to_json(&self, url_of: impl Fn(&str) -> Option<String>) -> Value {
        let object_url = self.object_key.as_deref().and_then(&url_of);
        let (image, url) = match self.media_type {
            MediaType::Image | MediaType::Eimage => (object_url, None),
            MediaType::Doc => (None, object_url),
            MediaType::Url | MediaType::Embed | MediaType::Share => {
                let image = match self.image_key.as_deref() {
                    Some(key) => url_of(key),
                    None => self.image_url.clone(),
                };
                (image, self.url.clone())
            }
        };
        let thumbnail = self.thumbnail.as_ref().and_then(|t| {
            Some(serde_json::json!({
                "url": url_of(&t.key)?,
                "width": t.width,
                "height": t.height,
                "color": t.color,
            }))
        });
        serde_json::json!({
            "id": self.id,
            "added_at": super::time_fmt::rfc3339_micros(self.added_at),
            "type": self.media_type,
            "title": self.title,
            "description": self.description,
            "url": url,
            "image": image,
            "image_width": self.image_width,
            "image_height": self.image_height,
            "image_mimetype": self.image_mimetype,
            "image_thumbnail": thumbnail,
            "order": self.order,
            "embed": self.embed,
            "size": self.size,
            "mimetype": self.mimetype,
        })
    }
}

/// A thumbnail as stored: its key (the URL is derived when shown, like `object_key`'s), size and the
/// image's average colour (`#rrggbb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredThumbnail {
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub color: String,
}

/// A recorded click on a media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Click {
    pub media_id: u64,
    pub user: Option<String>,
    pub ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_type_mapping() {
        let img = ContentKind::Image;
        let pdf = ContentKind::Document;
        assert_eq!(
            MediaType::for_upload(None, img, "image/png").unwrap(),
            MediaType::Image
        );
        assert_eq!(
            MediaType::for_upload(Some(""), pdf, "application/pdf").unwrap(),
            MediaType::Doc
        );
        assert_eq!(
            MediaType::for_upload(Some("eimage"), img, "image/png").unwrap(),
            MediaType::Eimage
        );
        for t in ["doc", "document", "file"] {
            assert_eq!(
                MediaType::for_upload(Some(t), pdf, "application/pdf").unwrap(),
                MediaType::Doc
            );
        }
        assert_eq!(
            MediaType::for_upload(Some("image"), pdf, "application/pdf")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            MediaType::for_upload(Some("doc"), img, "image/png")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            MediaType::for_upload(Some("video"), img, "image/png")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn json_shape_of_an_image() {
        let at = time::macros::datetime!(2026-11-21 10:11:12.345678 UTC);
        let mut m = MediaRecord::new(17, "u1", MediaType::Image, at);
        m.image_width = Some(1920);
        m.object_key = Some("media/a.jpg".into());
        m.thumbnail = Some(StoredThumbnail {
            key: "thumbnails/17.jpg".into(),
            width: 360,
            height: 240,
            color: "#3366cc".into(),
        });
        let v = m.to_json(|k| Some(format!("http://x/files/{k}")));
        assert_eq!(
            v["image_thumbnail"],
            serde_json::json!({"url": "http://x/files/thumbnails/17.jpg", "width": 360, "height": 240, "color": "#3366cc"})
        );
        assert_eq!(m.stored_keys(), vec!["media/a.jpg", "thumbnails/17.jpg"]);
        assert_eq!(v["id"], 17);
        assert_eq!(v["type"], "image");
        assert_eq!(v["added_at"], "2026-11-21T10:11:12.345678Z");
        assert_eq!(v["image"], "http://x/files/media/a.jpg");
        assert_eq!(v["url"], Value::Null);
        assert_eq!(v["image_width"], 1920);
        assert!(v.get("owner").is_none());
    }

    #[test]
    fn url_media_shows_the_stored_preview_image_over_the_external_one() {
        let at = time::macros::datetime!(2026-11-21 10:11:12 UTC);
        let mut m = MediaRecord::new(3, "u1", MediaType::Url, at);
        m.url = Some("https://a.example/".into());
        m.image_url = Some("https://a.example/og.png".into());
        let shown = |m: &MediaRecord| m.to_json(|k| Some(format!("http://x/{k}")));
        assert_eq!(shown(&m)["image"], "https://a.example/og.png");
        m.image_key = Some("previews/3-ab.png".into());
        assert_eq!(shown(&m)["image"], "http://x/previews/3-ab.png");
        assert_eq!(shown(&m)["url"], "https://a.example/");
        assert_eq!(shown(&m)["image_thumbnail"], Value::Null);
        // Records stored before thumbnails existed still read.
        let old = r#"{"id":1,"owner":"u","added_at":"2026-01-01T00:00:00Z","media_type":"image","title":null,"description":null,"url":null,"object_key":"media/x.png","image_url":null,"image_width":1,"image_height":1,"image_mimetype":"image/png","image_thumbnail":null,"order":null,"embed":null,"size":3,"mimetype":"image/png","upload_id":"x"}"#;
        let r: MediaRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.thumbnail, r.image_key), (None, None));
    }
}
