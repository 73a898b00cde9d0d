//! Every key under which a finished object is stored, made here and nowhere else.
//!
//! | key                                     | holds                                   |
//! |-----------------------------------------|-----------------------------------------|
//! | `media/<upload_id>.<ext>`               | the bytes of an uploaded file           |
//! | `media/fetched-<media_id>-<unique>.<ext>` | an image media downloaded from a URL  |
//! | `previews/<media_id>-<unique>.<ext>`    | a url media's chosen preview image      |
//! | `thumbnails/<stem of the image's key>.jpg` | an image media's thumbnail           |
//!
//! **No key is ever used for two different contents**, which is what lets every object be served with
//! `Cache-Control: immutable` for a year (`object_headers`): a browser or CDN that cached a URL can never
//! be shown stale bytes under it. Each key holds a 128-bit random part (an upload id is one) or is
//! derived from one; media ids alone would not do, since a new database (a wiped local data directory,
//! a re-created stack behind the same custom domain) counts them from 1 again. Writing the same key
//! twice only ever happens when a step is retried, and then with the same bytes.
//!
//! Unfinished uploads never live under these prefixes: the S3 backend stages chunks under `staging/`
//! and builds the object as a multipart upload that only becomes readable when it is complete, the
//! local one writes `partial/` files outside the served directory. So these prefixes are exactly what
//! may be served: template.yaml's bucket policy lets CloudFront read them and nothing else (a test
//! compares the two).

use super::sniff::extension_for;

/// The prefixes that hold only finished objects: what a CDN may serve.
pub const FINISHED_PREFIXES: [&str; 3] = ["media/", "previews/", "thumbnails/"];

/// A fresh 128-bit random token, hex.
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The object an upload becomes. The upload id is random and used by one upload only.
pub fn upload(upload_id: &str, extension: &str) -> String {
    format!("media/{upload_id}.{extension}")
}

/// An image media downloaded from a URL. The media id makes it readable, the random part unique.
pub fn fetched_image(media_id: u64, mime: &str) -> String {
    format!(
        "media/fetched-{media_id}-{}.{}",
        unique(),
        extension_for(mime)
    )
}

/// A preview image chosen for a url media: a new key per choice, so caches holding the previous
/// image's URL never show the new one under it (or the old one under the new URL).
pub fn preview(media_id: u64, mime: &str) -> String {
    format!("previews/{media_id}-{}.{}", unique(), extension_for(mime))
}

/// The thumbnail of the image stored at `image_key`: derived from that key, which is unique, so a
/// retried thumbnail job overwrites the same object with the same bytes instead of leaving another.
pub fn thumbnail(image_key: &str) -> String {
    let name = image_key.rsplit('/').next().unwrap_or(image_key);
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    format!("thumbnails/{stem}.jpg")
}

/// Whether `key` lies under a prefix that holds only finished objects.
pub fn is_finished(key: &str) -> bool {
    FINISHED_PREFIXES.iter().any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_a_finished_prefix() {
        let keys = [
            upload("0123456789abcdef0123456789abcdef", "pdf"),
            fetched_image(3, "image/png"),
            preview(3, "image/webp"),
            thumbnail("media/0123456789abcdef0123456789abcdef.png"),
        ];
        for key in &keys {
            assert!(is_finished(key), "{key}");
        }
        assert!(!is_finished("staging/abc/00000000000000000000"));
        assert!(!is_finished("partial/abc"));
    }

    #[test]
    fn keys_with_a_media_id_are_never_made_twice() {
        assert_ne!(fetched_image(1, "image/png"), fetched_image(1, "image/png"));
        assert_ne!(preview(1, "image/png"), preview(1, "image/png"));
        let k = fetched_image(7, "image/jpeg");
        assert!(
            k.starts_with("media/fetched-7-") && k.ends_with(".jpg"),
            "{k}"
        );
    }

    #[test]
    fn a_thumbnail_key_follows_its_image_key() {
        assert_eq!(thumbnail("media/ab12.png"), "thumbnails/ab12.jpg");
        assert_eq!(
            thumbnail("media/fetched-3-cd34.webp"),
            "thumbnails/fetched-3-cd34.jpg"
        );
        assert_eq!(thumbnail("media/noext"), "thumbnails/noext.jpg");
        // The same image, the same thumbnail key: a retry overwrites, never adds.
        assert_eq!(thumbnail("media/x.png"), thumbnail("media/x.png"));
    }
}
