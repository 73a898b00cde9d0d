//! Photos lose their metadata before they are stored (issue 14: phones write the GPS position into
//! EXIF), on every backend (`MEDIA_TEST_BACKEND`): uploaded in chunks over HTTP, completed with the md5
//! of the uploaded bytes, served without EXIF, XMP or text, the pixels and the orientation unchanged,
//! and the Media's `size`, `image_width` and `image_height` those of the file served.
//! `MEDIA_STRIP_METADATA=0` stores the bytes as uploaded.

mod common;

use common::*;
use image::metadata::Orientation;
use media_shared::domain::image_metadata::{strip, MetadataPolicy};
use media_testkit::photos::{decoded, phone_jpeg, phone_png, phone_webp, secrets_in};
use serde_json::Value;

fn photos() -> [(&'static str, Vec<u8>); 3] {
    [
        ("image/jpeg", phone_jpeg(Some(6))),
        ("image/png", phone_png(Some(6))),
        ("image/webp", phone_webp(Some(6))),
    ]
}

/// Uploaded in 1000-byte chunks (several per photo) and completed: the Media and the bytes served.
async fn uploaded(s: &TestServer, photo: &[u8]) -> (Value, Vec<u8>) {
    let id = s.upload("alice", photo, 1000).await;
    let (st, media) = s.complete("alice", &id, &md5_hex(photo), None).await;
    assert_eq!(st, 201, "{media}");
    let (st, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    // A client retrying the completion gets the same Media; the md5 stays that of its upload.
    let (st, again) = s.complete("alice", &id, &md5_hex(photo), None).await;
    assert_eq!((st, unsigned(&again)), (200, unsigned(&media)));
    (media, served)
}

#[tokio::test]
async fn a_phone_photo_is_served_without_its_metadata() {
    let s = TestServer::start().await;
    for (mime, photo) in photos() {
        let (media, served) = uploaded(&s, &photo).await;
        assert_eq!(secrets_in(&served), Vec::<String>::new(), "{mime}");
        assert_eq!(Some(&served), strip(mime, &photo).as_ref(), "{mime}");
        let (width, height, pixels, orientation) = decoded(&served);
        let (w0, h0, pixels0, _) = decoded(&photo);
        assert!(pixels == pixels0, "{mime}: the pixels changed");
        // Kept, not applied: the stored grid is the uploaded one, turned when shown.
        assert_eq!(orientation, Orientation::Rotate90, "{mime}");
        assert_eq!((width, height), (w0, h0), "{mime}");
        assert_eq!(media["size"], served.len() as u64, "{mime}: {media}");
        assert!(served.len() < photo.len());
        assert_eq!(
            (
                media["image_width"].as_u64(),
                media["image_height"].as_u64()
            ),
            (Some(u64::from(width)), Some(u64::from(height))),
            "{mime}"
        );
        assert_eq!(
            (media["mimetype"].as_str(), media["type"].as_str()),
            (Some(mime), Some("image"))
        );
        let (st, read) = s.get_media("alice", media["id"].as_u64().unwrap()).await;
        assert_eq!((st, unsigned(&read)), (200, unsigned(&media)));
    }

    // Without an orientation, no EXIF at all is left.
    let photo = phone_jpeg(None);
    let (media, served) = uploaded(&s, &photo).await;
    assert!(!served.windows(4).any(|w| w == b"Exif"), "{media}");
    assert_eq!(decoded(&served).3, Orientation::NoTransforms);
    assert!(decoded(&served).2 == decoded(&photo).2);
    assert_eq!(media["size"], served.len() as u64);
}

#[tokio::test]
async fn with_stripping_turned_off_the_bytes_served_are_the_bytes_uploaded() {
    let s = TestServer::start_with(|c| c.limits.metadata = MetadataPolicy::Keep).await;
    for (mime, photo) in photos() {
        let (media, served) = uploaded(&s, &photo).await;
        assert!(served == photo, "{mime}: the bytes changed");
        assert_eq!(media["size"], photo.len() as u64, "{mime}");
    }
}
