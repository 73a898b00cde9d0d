//! `BlobStore`: chunks of unfinished uploads, and finished objects. Chunks go through the real chunk
//! handler; crashes are injected by writing a chunk's bytes without committing (`write_only`).

use bytes::Bytes;
use media_shared::domain::image_metadata::MetadataPolicy;
use media_shared::domain::upload::{UploadSession, UploadStatus};
use media_shared::domain::MediaType;
use media_shared::ports::ChunkWrite;

use super::Backend;
use crate::handlers::{chunk, complete, finish_object, new_session, send_chunk, write_only};
use crate::{md5_hex, pdf, random_bytes, CHUNK, MIB};

/// More than one 5 MiB part, so that S3 merges staged chunks into a part and finishes a second one.
const SIZE: usize = 6 * MIB + 4321;

/// A new upload of `data`, its chunks sent through the handler.
async fn uploaded(b: &impl Backend, data: &[u8]) -> UploadSession {
    let mut s = new_session(b.app(), data.len() as u64).await;
    for chunk in data.chunks(CHUNK) {
        send_chunk(b.app(), &mut s, chunk).await;
    }
    s
}

async fn assert_nothing_staged(b: &impl Backend, s: &UploadSession) {
    assert_eq!(
        b.staged(&s.id).await,
        Vec::<String>::new(),
        "upload {}",
        s.id
    );
}

async fn assert_object(b: &impl Backend, key: &str, data: &[u8]) {
    let stored = b
        .object(key)
        .await
        .unwrap_or_else(|| panic!("no object {key}"));
    assert!(
        stored == data,
        "object {key} differs: {} bytes, MD5 {}, expected {} bytes, MD5 {}",
        stored.len(),
        md5_hex(&stored),
        data.len(),
        md5_hex(data)
    );
}

pub async fn chunks_become_one_object_with_the_uploaded_bytes(b: &impl Backend) {
    let data = random_bytes(SIZE, 1);
    let s = uploaded(b, &data).await;
    assert_eq!(s.offset, s.total);
    assert_eq!(s.md5.hex_digest().unwrap(), md5_hex(&data));
    let key = s.object_key();
    finish_object(b.app(), &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert_object(b, &key, &data).await;
    assert_nothing_staged(b, &s).await;

    let blobs = &b.app().blobs;
    assert_eq!(
        &blobs.read_head(&key, 1000).await.unwrap()[..],
        &data[..1000]
    );
    assert_eq!(
        &blobs.read_head(&key, SIZE as u64 + 10).await.unwrap()[..],
        &data[..]
    );
    assert!(blobs.read_head(&key, 0).await.unwrap().is_empty());
    let url = blobs.object_url(&key).await.unwrap();
    assert!(url.contains(&key), "{url}");
}

pub async fn finishing_again_finds_the_object_there(b: &impl Backend) {
    for size in [3 * CHUNK + 17, SIZE] {
        let data = random_bytes(size, 2);
        let s = uploaded(b, &data).await;
        let key = s.object_key();
        finish_object(b.app(), &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap();
        // A retried completion, after a crash before the media was recorded.
        finish_object(b.app(), &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap();
        assert_object(b, &key, &data).await;
        assert_nothing_staged(b, &s).await;
    }
}

pub async fn a_chunk_written_again_after_a_lost_commit_is_harmless(b: &impl Backend) {
    let data = random_bytes(SIZE, 3);
    let mut s = new_session(b.app(), data.len() as u64).await;
    for chunk in data.chunks(CHUNK) {
        // Every chunk's bytes reach storage once, then the process dies before the session is
        // committed; the client's retry writes the same offset against the committed session.
        write_only(b.app(), &s, chunk).await;
        send_chunk(b.app(), &mut s, chunk).await;
    }
    let key = s.object_key();
    finish_object(b.app(), &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert_object(b, &key, &data).await;
    assert_nothing_staged(b, &s).await;
}

pub async fn discard_frees_an_unfinished_upload_and_can_be_repeated(b: &impl Backend) {
    let app = b.app();
    let data = random_bytes(SIZE, 4);
    let mut s = new_session(app, data.len() as u64).await;
    // Past a 5 MiB part (26 chunks), two chunks after it, and one more written but never committed.
    let upto = 28 * CHUNK;
    for chunk in data[..upto].chunks(CHUNK) {
        send_chunk(app, &mut s, chunk).await;
    }
    write_only(app, &s, &data[upto..upto + CHUNK]).await;
    assert_ne!(b.staged(&s.id).await, Vec::<String>::new());
    // Someone else's unfinished upload must survive.
    let mut other = new_session(app, 1000).await;
    send_chunk(app, &mut other, &data[..500]).await;
    let other_staged = b.staged(&other.id).await;
    assert_ne!(other_staged, Vec::<String>::new());

    app.blobs.discard(&s).await.unwrap();
    assert_nothing_staged(b, &s).await;
    assert_eq!(b.object(&s.object_key()).await, None);
    assert_eq!(b.staged(&other.id).await, other_staged);
    app.blobs.discard(&s).await.unwrap();
    assert_nothing_staged(b, &s).await;
}

pub async fn discard_frees_a_last_chunk_that_was_never_committed(b: &impl Backend) {
    let app = b.app();
    for size in [1000, 3 * CHUNK + 17] {
        let data = random_bytes(size, 5);
        let mut s = new_session(app, data.len() as u64).await;
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        for chunk in &chunks[..chunks.len() - 1] {
            send_chunk(app, &mut s, chunk).await;
        }
        write_only(app, &s, chunks[chunks.len() - 1]).await;
        app.blobs.discard(&s).await.unwrap();
        assert_nothing_staged(b, &s).await;
        assert_eq!(b.object(&s.object_key()).await, None, "{size} bytes");
    }
}

pub async fn discard_never_touches_finished_objects(b: &impl Backend) {
    let app = b.app();
    for status in [
        UploadStatus::Completing {
            media_id: 1,
            media_type: MediaType::Doc,
        },
        UploadStatus::Completed {
            media_id: 1,
            md5: "0".repeat(32),
        },
    ] {
        let data = random_bytes(3 * CHUNK + 17, 6);
        let mut s = uploaded(b, &data).await;
        let key = s.object_key();
        finish_object(app, &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap();
        // An object of a media made from a URL, stored whole.
        app.blobs
            .put_object(
                "media/fetched.png",
                Bytes::from_static(b"\x89PNG rest"),
                "image/png",
            )
            .await
            .unwrap();
        // A session that reached `Completing` may have a media pointing at its object.
        s.status = status;
        app.blobs.discard(&s).await.unwrap();
        app.blobs.discard(&s).await.unwrap();
        assert_object(b, &key, &data).await;
        assert_object(b, "media/fetched.png", b"\x89PNG rest").await;
    }
}

pub async fn whole_objects_round_trip(b: &impl Backend) {
    let blobs = &b.app().blobs;
    let key = "media/fetched.png";
    blobs
        .put_object(key, Bytes::from_static(b"\x89PNG rest"), "image/png")
        .await
        .unwrap();
    assert_object(b, key, b"\x89PNG rest").await;
    assert_eq!(&blobs.read_head(key, 4).await.unwrap()[..], b"\x89PNG");
    assert_eq!(
        &blobs.read_head(key, 1000).await.unwrap()[..],
        b"\x89PNG rest"
    );
    let url = blobs.object_url(key).await.unwrap();
    assert!(url.contains(key), "{url}");
    // Stored again: replaced.
    blobs
        .put_object(key, Bytes::from_static(b"\x89PNG other"), "image/png")
        .await
        .unwrap();
    assert_object(b, key, b"\x89PNG other").await;
    blobs.delete_object(key).await.unwrap();
    assert_eq!(b.object(key).await, None);
    blobs.delete_object(key).await.unwrap();
    assert_eq!(b.object(key).await, None);
}

pub async fn after_commit_of_a_chunk_that_sealed_nothing_does_nothing(b: &impl Backend) {
    let app = b.app();
    // Nothing that only `before` referred to: what the committed session refers to stays.
    let data = random_bytes(3 * CHUNK + 17, 7);
    let mut s = new_session(app, data.len() as u64).await;
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    for chunk in &chunks[..2] {
        send_chunk(app, &mut s, chunk).await;
    }
    let nothing = ChunkWrite {
        staging: s.staging.clone(),
        ..ChunkWrite::default()
    };
    app.blobs
        .after_commit(&s, &s.staging, nothing)
        .await
        .unwrap();
    for chunk in &chunks[2..] {
        send_chunk(app, &mut s, chunk).await;
    }
    let key = s.object_key();
    finish_object(app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert_object(b, &key, &data).await;
}

/// Phone photos (issue 14), uploaded through the chunk handler in small chunks.
fn phone_photos() -> [(&'static str, Vec<u8>); 3] {
    use crate::photos::{phone_jpeg, phone_png, phone_webp};
    [
        ("image/jpeg", phone_jpeg(Some(6))),
        ("image/png", phone_png(Some(6))),
        ("image/webp", phone_webp(Some(6))),
    ]
}

async fn uploaded_photo(b: &impl Backend, photo: &[u8]) -> UploadSession {
    let app = b.app();
    let id = crate::handlers::upload(app, photo, &[1000], photo.len()).await;
    app.uploads.get_upload(&id).await.unwrap().unwrap()
}

pub async fn photos_are_stored_without_their_metadata(b: &impl Backend) {
    use crate::photos::{decoded, secrets_in};
    use media_shared::domain::image_metadata::strip;
    for (mime, photo) in phone_photos() {
        let s = uploaded_photo(b, &photo).await;
        assert_eq!(s.content.mime, mime);
        let key = s.object_key();
        // Nothing is served before completion, with or without metadata.
        assert_eq!(b.object(&key).await, None, "{mime}");
        let size = finish_object(b.app(), &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap();
        let stored = b.object(&key).await.expect("the finished object");
        assert_eq!(size, stored.len() as u64, "{mime}: the size answered");
        assert_eq!(Some(stored.clone()), strip(mime, &photo), "{mime}");
        assert_eq!(secrets_in(&stored), Vec::<String>::new(), "{mime}");
        assert!(
            decoded(&stored) == decoded(&photo),
            "{mime}: pixels or orientation changed"
        );
        // A retried completion: the same object, the same size.
        let again = finish_object(b.app(), &s, &key, MetadataPolicy::Strip).await;
        assert_eq!(again.unwrap(), size, "{mime}");
        assert_object(b, &key, &stored).await;
        assert_nothing_staged(b, &s).await;
    }
}

pub async fn photos_are_stored_as_uploaded_when_metadata_is_kept(b: &impl Backend) {
    for (mime, photo) in phone_photos() {
        let s = uploaded_photo(b, &photo).await;
        let key = s.object_key();
        let size = finish_object(b.app(), &s, &key, MetadataPolicy::Keep)
            .await
            .unwrap();
        assert_eq!(size, photo.len() as u64, "{mime}");
        assert_object(b, &key, &photo).await;
        assert_nothing_staged(b, &s).await;
    }
}

pub async fn discard_frees_a_fully_received_photo(b: &impl Backend) {
    for (mime, photo) in phone_photos() {
        let s = uploaded_photo(b, &photo).await;
        assert_ne!(b.staged(&s.id).await, Vec::<String>::new(), "{mime}");
        b.app().blobs.discard(&s).await.unwrap();
        b.app().blobs.discard(&s).await.unwrap();
        assert_nothing_staged(b, &s).await;
        assert_eq!(b.object(&s.object_key()).await, None, "{mime}");
    }
}

/// Two requests for the same offset with different bytes, at once (a client sending twice, a retry
/// racing the original): exactly one version is accepted, whatever the interleaving, and the file
/// ends up holding exactly the accepted bytes. Raced at an ordinary chunk, at the chunk that fills
/// the first 5 MiB part (S3 uploads a part there) and at the last chunk.
pub async fn racing_writers_of_one_offset_leave_exactly_one_version(b: &impl Backend) {
    let app = b.app();
    let data = pdf(SIZE, 8);
    let total = data.len();
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let raced = [3, 25, chunks.len() - 1];
    let (status, body) = chunk(app, None, chunks[0], 0, total).await;
    assert_eq!(status, 201, "{body}");
    let id = body["upload_id"].as_str().unwrap().to_string();
    let mut accepted = Vec::with_capacity(total);
    accepted.extend_from_slice(chunks[0]);
    for (i, mine) in chunks.iter().enumerate().skip(1) {
        let start = i * CHUNK;
        if !raced.contains(&i) {
            let (status, body) = chunk(app, Some(&id), mine, start, total).await;
            assert_eq!(status, 201, "chunk {i}: {body}");
            accepted.extend_from_slice(mine);
            continue;
        }
        let mut theirs = mine.to_vec();
        theirs[0] ^= 0xff;
        let (a, b2) = tokio::join!(
            chunk(app, Some(&id), mine, start, total),
            chunk(app, Some(&id), &theirs, start, total)
        );
        let end = (start + mine.len()) as u64;
        let lost = |(status, body): &(u16, serde_json::Value)| {
            // Lost the commit (409), or came after it and found other bytes there (400 + offset).
            *status == 409 || (*status == 400 && body["offset"] == end)
        };
        eprintln!("chunk {i}: {} / {}", a.0, b2.0);
        let winner: &[u8] = match (a.0, b2.0) {
            (201, _) if lost(&b2) => mine,
            (_, 201) if lost(&a) => &theirs,
            _ => panic!("chunk {i}: exactly one version must be accepted: {a:?} / {b2:?}"),
        };
        accepted.extend_from_slice(winner);
    }
    let s = b.app().uploads.get_upload(&id).await.unwrap().unwrap();
    assert_eq!(s.offset, total as u64);
    assert_eq!(s.md5.hex_digest().unwrap(), md5_hex(&accepted));
    let (status, media) = complete(app, &id, &md5_hex(&accepted)).await;
    assert_eq!(status, 201, "{media}");
    assert_object(b, &s.object_key(), &accepted).await;
    assert_nothing_staged(b, &s).await;
}
