//! The AWS adapters against moto on loopback, through the real AWS SDK: what is particular to S3 and
//! DynamoDB (parts of at least 5 MiB, bytes written per byte uploaded, stray multipart uploads, the
//! TTL attribute, public URLs). What every adapter promises is the port contract suite of
//! `media-testkit`, run against these adapters too. Chunks go through the real chunk handler. Run with
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-shared --test aws_adapters -- --include-ignored
//! scripts/stop-moto.sh
//! ```
//!
//! moto enforces S3's 5 MiB minimum part size (EntityTooSmall), so uploads in 204800-byte chunks
//! passing here show that chunks really are merged into parts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use media_shared::adapters::aws::{staging_prefix, DynamoMeta, MAX_STAGED, MIN_PART_SIZE};
use media_shared::app::App;
use media_shared::domain::image_metadata::MetadataPolicy;
use media_shared::domain::upload::{StagingState, UploadStatus};
use media_shared::domain::MediaType;
use media_shared::ports::BlobStore;
use media_testkit::aws::*;
use media_testkit::handlers::{
    chunk, commit_only, complete, finish_object, new_session, send_chunk, write_only,
};
use media_testkit::{md5_hex, pdf, random_bytes, CHUNK, MIB};

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn sessions_carry_their_expiry_for_dynamodb_ttl() {
    let env = fresh().await;
    // The TTL attribute is in epoch seconds, next to the millisecond expiry the sweep uses.
    let s = new_session(&env.app, 1000).await;
    let item = env
        .clients
        .dynamodb
        .get_item()
        .table_name(&env.cfg.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("upload#{}", s.id)),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item["expires_at"].as_n().unwrap(),
        &(s.expires_at_ms / 1000).to_string()
    );
    assert_eq!(item["kind"].as_s().unwrap(), "upload");
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_12_mib_file_in_small_chunks_becomes_one_object() {
    let env = fresh().await;
    let data = random_bytes(12 * MIB, 1);
    let mut s = new_session(&env.app, data.len() as u64).await;
    for chunk in data.chunks(CHUNK) {
        send_chunk(&env.app, &mut s, chunk).await;
        // Never more staged than a part's worth, and every part but the last at least 5 MiB.
        let staged: u64 = s.staging.staged.iter().map(|c| c.len).sum();
        assert!(staged < MIN_PART_SIZE);
    }
    // The last chunk finished the last part: nothing is staged any more.
    assert!(s.staging.staged.is_empty());
    // The parts are recorded apart from the session, every one but the last at least 5 MiB.
    assert!(s.staging.parts.is_empty());
    assert_eq!(s.staging.part_count(), 3);
    let parts = env.app.uploads.recorded_parts(&s).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(parts[..2].iter().all(|p| p.size >= MIN_PART_SIZE));
    assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), s.total);
    assert!(s.staging.multipart_upload_id.is_some());
    assert_eq!(s.md5.hex_digest().unwrap(), md5_hex(&data));

    let key = s.object_key();
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    // A retried completion finds the object there.
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();

    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(multipart_uploads(&env).await, vec![]);
    assert_eq!(keys(&env, "staging/").await, Vec::<String>::new());
    assert_eq!(keys(&env, "").await, vec![key.clone()]);

    let written = env.put_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let ratio = written as f64 / data.len() as f64;
    println!(
        "bytes written per byte uploaded: {ratio:.3} ({written} for {})",
        data.len()
    );
    assert!(ratio <= 2.1, "wrote {ratio:.3} bytes per byte");

    assert_eq!(
        &env.blobs.read_head(&key, 1000).await.unwrap()[..],
        &data[..1000]
    );
    let url = env.blobs.object_url(&key).await.unwrap();
    assert!(
        url.contains(&key) && url.contains("X-Amz-Signature"),
        "{url}"
    );
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_file_that_fits_in_one_part_is_invisible_until_finished() {
    let env = fresh().await;
    let data = random_bytes(MIB, 2);
    let mut s = new_session(&env.app, data.len() as u64).await;
    for chunk in data.chunks(CHUNK) {
        send_chunk(&env.app, &mut s, chunk).await;
    }
    assert!(s.staging.staged.is_empty());
    assert_eq!(s.staging.part_count(), 1);
    let key = s.object_key();
    // Its only part is written, but nothing under the served prefix exists before the MD5 is checked.
    assert_eq!(keys(&env, "media/").await, Vec::<String>::new());
    assert_eq!(multipart_uploads(&env).await.len(), 1);
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(keys(&env, "").await, vec![key.clone()]);
    assert_eq!(multipart_uploads(&env).await, vec![]);
    let written = env.put_bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(written as f64 / data.len() as f64 <= 2.1);

    // Created with the headers it is served with: new_session's file is `file.pdf`.
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/pdf"));
    assert_eq!(
        head.cache_control(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        head.content_disposition(),
        Some(r#"attachment; filename="file.pdf""#)
    );
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_crash_between_the_write_and_the_commit_is_repaired_by_the_retry() {
    let env = fresh().await;
    // Two full parts and a last one: merges at chunks 26 and 52, and the last chunk.
    let data = random_bytes(11 * MIB + 12345, 3);
    let mut s = new_session(&env.app, data.len() as u64).await;
    let mut crashes = 0;
    for chunk in data.chunks(CHUNK) {
        let staged: u64 = s.staging.staged.iter().map(|c| c.len).sum();
        let merges = s.offset + chunk.len() as u64 == s.total
            || staged + chunk.len() as u64 >= MIN_PART_SIZE;
        if merges || crashes == 0 {
            // The bytes reach S3, then the process dies before the session is committed: no commit,
            // no after_commit. The client retries the same chunk against the committed session.
            let lost = write_only(&env.app, &s, chunk).await;
            assert_ne!(lost, s.staging);
            crashes += 1;
        }
        send_chunk(&env.app, &mut s, chunk).await;
    }
    assert_eq!(crashes, 4);
    let key = s.object_key();
    // The multipart upload is opened with the session and parts are uploaded only after their commit:
    // the crashes opened no multipart upload and wrote no part, only staged objects of their own.
    assert_eq!(multipart_uploads(&env).await.len(), 1);
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(multipart_uploads(&env).await, vec![]);
    assert_eq!(keys(&env, "staging/").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_crash_on_the_last_chunk_of_a_one_part_file_is_repaired_by_the_retry() {
    let env = fresh().await;
    let data = random_bytes(3 * CHUNK + 17, 4);
    let mut s = new_session(&env.app, data.len() as u64).await;
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    for chunk in &chunks[..chunks.len() - 1] {
        send_chunk(&env.app, &mut s, chunk).await;
    }
    let last = chunks[chunks.len() - 1];
    write_only(&env.app, &s, last).await;
    send_chunk(&env.app, &mut s, last).await;
    let key = s.object_key();
    // The crashed write opened no multipart upload of its own: the only one was opened with the session.
    assert_eq!(multipart_uploads(&env).await.len(), 1);
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(keys(&env, "").await, vec![key]);
    assert_eq!(multipart_uploads(&env).await, vec![]);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn discard_leaves_nothing_behind_and_can_be_repeated() {
    let env = fresh().await;
    let data = random_bytes(12 * MIB, 5);
    let mut s = new_session(&env.app, data.len() as u64).await;
    // One part written, chunks staged for the next one.
    for chunk in data[..7 * MIB].chunks(CHUNK) {
        send_chunk(&env.app, &mut s, chunk).await;
    }
    assert_eq!(s.staging.part_count(), 1);
    assert!(!s.staging.staged.is_empty());
    // A staged chunk that was written but never committed, and a multipart upload nobody recorded.
    write_only(&env.app, &s, &data[7 * MIB..7 * MIB + CHUNK]).await;
    env.clients
        .s3
        .create_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(s.object_key())
        .send()
        .await
        .unwrap();
    assert_eq!(multipart_uploads(&env).await.len(), 2);
    // Someone else's upload must survive.
    let mut other = new_session(&env.app, 1000).await;
    send_chunk(&env.app, &mut other, &data[..500]).await;

    let of = |id: &str| {
        let key = format!("media/{id}.pdf");
        move |uploads: Vec<(String, String)>| uploads.into_iter().filter(|(k, _)| *k == key).count()
    };
    env.blobs.discard(&s).await.unwrap();
    assert_eq!(of(&s.id)(multipart_uploads(&env).await), 0);
    assert_eq!(
        keys(&env, &format!("staging/{}/", s.id)).await,
        Vec::<String>::new()
    );
    assert_eq!(keys(&env, "media/").await, Vec::<String>::new());
    assert_eq!(keys(&env, "staging/").await.len(), 1);
    assert_eq!(of(&other.id)(multipart_uploads(&env).await), 1);
    env.blobs.discard(&s).await.unwrap();

    // An upload whose only chunk was written but never committed: the multipart upload it opened,
    // which nothing records, is aborted too.
    let small = random_bytes(1000, 6);
    let t = new_session(&env.app, small.len() as u64).await;
    write_only(&env.app, &t, &small).await;
    assert_eq!(of(&t.id)(multipart_uploads(&env).await), 1);
    env.blobs.discard(&t).await.unwrap();
    assert_eq!(of(&t.id)(multipart_uploads(&env).await), 0);
    assert_eq!(keys(&env, "media/").await, Vec::<String>::new());

    // A session that reached `Completing` may have a media pointing at its object: it stays.
    let mut u = new_session(&env.app, small.len() as u64).await;
    send_chunk(&env.app, &mut u, &small).await;
    finish_object(&env.app, &u, &u.object_key(), MetadataPolicy::Strip)
        .await
        .unwrap();
    u.status = UploadStatus::Completing {
        media_id: 1,
        media_type: MediaType::Doc,
    };
    env.blobs.discard(&u).await.unwrap();
    assert_eq!(keys(&env, "media/").await, vec![u.object_key()]);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn tiny_chunks_are_compacted_so_the_session_stays_small() {
    let env = fresh().await;
    let data = random_bytes(300 * 1000 + 1, 7);
    let mut s = new_session(&env.app, data.len() as u64).await;
    let mut most = 0;
    for chunk in data.chunks(1000) {
        send_chunk(&env.app, &mut s, chunk).await;
        most = most.max(s.staging.staged.len());
    }
    assert!(most < MAX_STAGED, "{most} chunks staged at once");
    let key = s.object_key();
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(keys(&env, "").await, vec![key]);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn whole_objects_and_public_urls() {
    let env = fresh_with(Some("https://cdn.example.com/")).await;
    let key = "media/fetched.png";
    env.blobs
        .put_object(key, Bytes::from_static(b"\x89PNG rest"), "image/png")
        .await
        .unwrap();
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.cfg.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(&env.blobs.read_head(key, 4).await.unwrap()[..], b"\x89PNG");
    assert_eq!(
        &env.blobs.read_head(key, 1000).await.unwrap()[..],
        b"\x89PNG rest"
    );
    assert_eq!(
        env.blobs.object_url(key).await.unwrap(),
        "https://cdn.example.com/media/fetched.png"
    );
    env.blobs.delete_object(key).await.unwrap();
    env.blobs.delete_object(key).await.unwrap();
    assert_eq!(keys(&env, "").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_chunk_costs_one_session_read_and_one_conditional_write() {
    let env = fresh().await;
    // Two full 5 MiB parts and a last one, in the official client's chunks.
    let data = pdf(12 * MIB + 4321, 9);
    let total = data.len();
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let counts = |env: &TestEnv| {
        (
            env.dynamodb_requests.get(),
            env.s3_requests.get(),
            env.put_bytes.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let before = counts(&env);
    let (status, body) = chunk(&env.app, None, chunks[0], 0, total).await;
    assert_eq!(status, 201, "{body}");
    let id = body["upload_id"].as_str().unwrap().to_string();
    // The first chunk creates the session (and counts it against the quota) before its commit.
    let first = counts(&env);
    assert_eq!(
        first.0 - before.0,
        3,
        "DynamoDB requests of the first chunk"
    );
    for (i, data) in chunks.iter().enumerate().skip(1) {
        let at = env.dynamodb_requests.get();
        let (status, body) = chunk(&env.app, Some(&id), data, i * CHUNK, total).await;
        assert_eq!(status, 201, "chunk {i}: {body}");
        // GetItem of the session and the commit: no lease.
        assert_eq!(env.dynamodb_requests.get() - at, 2, "chunk {i}");
    }
    let after = counts(&env);
    let n = chunks.len() as u64;
    let (dynamodb, s3, written) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "{n} chunks: {dynamodb} DynamoDB requests, {s3} S3 requests, {:.3} bytes written per byte",
        written as f64 / total as f64
    );
    assert_eq!(dynamodb, 2 * n + 1);
    // Per part of k chunks: k PutObject, k - 1 GetObject, one UploadPart; and the multipart upload.
    assert!(s3 <= 2 * n + 1, "{s3} S3 requests for {n} chunks");
    assert!(written <= 2 * total as u64, "{written} bytes written");

    let (status, media) = complete(&env.app, &id, &md5_hex(&data)).await;
    assert_eq!(status, 201, "{media}");
    let key = format!("media/{id}.pdf");
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(keys(&env, "staging/").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_part_lost_after_its_commit_is_written_again_from_its_sources() {
    let env = fresh().await;
    let data = random_bytes(11 * MIB + 12345, 10);
    let mut s = new_session(&env.app, data.len() as u64).await;
    let mut sealed = 0;
    for chunk in data.chunks(CHUNK) {
        let parts = s.staging.part_count();
        if sealed == 0 && s.offset + chunk.len() as u64 >= 5 * MIB as u64 {
            // The request that fills the first part dies right after its commit: the part it was
            // about to upload is recorded, with its sources, but not in S3.
            commit_only(&env.app, &mut s, chunk).await;
            assert_eq!(s.staging.part_count(), parts + 1);
            let recorded = env.app.uploads.recorded_parts(&s).await.unwrap();
            assert!(recorded[0].is_unconfirmed());
            sealed += 1;
            continue;
        }
        send_chunk(&env.app, &mut s, chunk).await;
    }
    let key = s.object_key();
    let upload_id = s.staging.multipart_upload_id.clone().unwrap();
    let listed = env
        .clients
        .s3
        .list_parts()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let numbers: Vec<i32> = listed
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, vec![2, 3], "part 1 was never uploaded");
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert!(get_object(&env, &key).await == data, "object bytes differ");
    assert_eq!(multipart_uploads(&env).await, vec![]);
    assert_eq!(keys(&env, "staging/").await, Vec::<String>::new());
    // Finishing again (a retried completion) finds the object there.
    finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
}

/// What the AWS adapter does for photos in particular (issue 14): the multipart upload is assembled
/// under `staging/`, so nothing under the CDN-served `media/` prefix ever holds the photo with its
/// GPS position, not even between the steps of a completion that crashes.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_photo_never_exists_under_media_with_its_metadata() {
    use media_testkit::photos::{decoded, phone_jpeg, secrets_in};

    let env = fresh().await;
    let photo = phone_jpeg(Some(6));
    let id = media_testkit::handlers::upload(&env.app, &photo, &[1000], photo.len()).await;
    let s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    let key = s.object_key();
    assert_eq!(keys(&env, "media/").await, Vec::<String>::new());
    let uploads = multipart_uploads(&env).await;
    assert_eq!(uploads.len(), 1);
    let assembly = &uploads[0].0;
    assert!(
        assembly.starts_with(&format!("staging/{id}/")),
        "{assembly}"
    );

    // A completion that crashed after completing the private multipart upload, before writing the
    // final object: the retry finds the assembled photo and goes on from there.
    let parts = env
        .app
        .uploads
        .recorded_parts(&s)
        .await
        .unwrap()
        .iter()
        .map(|p| {
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(p.number as i32)
                .e_tag(&p.etag)
                .build()
        })
        .collect();
    env.clients
        .s3
        .complete_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(assembly)
        .upload_id(s.staging.multipart_upload_id.clone().unwrap())
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(keys(&env, "media/").await, Vec::<String>::new());

    let size = finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    let served = get_object(&env, &key).await;
    assert_eq!(size, served.len() as u64);
    assert!(size < photo.len() as u64);
    assert_eq!(secrets_in(&served), Vec::<String>::new());
    let (before, after) = (decoded(&photo), decoded(&served));
    assert!(before == after, "pixels or orientation changed");
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(
        head.cache_control(),
        Some(media_shared::domain::object_headers::IMMUTABLE)
    );
    // Repeated: the same object, nothing left behind.
    assert_eq!(
        finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap(),
        size
    );
    assert!(get_object(&env, &key).await == served);
    assert_eq!(keys(&env, "").await, vec![key.clone()]);
    assert_eq!(multipart_uploads(&env).await, vec![]);
}

/// A photo whose upload an earlier version opened at its final key (a deploy in the middle of an
/// upload) still completes, stripped.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_photo_upload_opened_at_its_final_key_still_completes_stripped() {
    use media_shared::domain::upload::PartRecord;
    use media_testkit::photos::{phone_jpeg, secrets_in};

    let env = fresh().await;
    let photo = phone_jpeg(None);
    let id = media_testkit::handlers::upload(&env.app, &photo, &[1000], photo.len()).await;
    let mut s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    let key = s.object_key();
    let s3 = &env.clients.s3;
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let etag = s3
        .upload_part()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(Bytes::from(photo.clone()).into())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    s.staging = StagingState {
        multipart_upload_id: Some(upload_id),
        multipart_key: None,
        parts_apart: 0,
        parts: vec![PartRecord {
            number: 1,
            etag,
            size: photo.len() as u64,
            sources: vec![],
        }],
        staged: vec![],
    };
    let size = finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    let served = get_object(&env, &key).await;
    assert_eq!(size, served.len() as u64);
    assert_eq!(secrets_in(&served), Vec::<String>::new());
    assert!(!served.windows(4).any(|w| w == b"Exif"));
}

/// The same photo when the first completion crashed after completing the multipart upload at the
/// final key, before writing the stripped object: the photo as uploaded is there, and the retry
/// strips it instead of taking it for the finished object.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_crash_after_completing_a_photo_at_its_final_key_leaves_it_stripped() {
    use media_shared::domain::upload::PartRecord;
    use media_testkit::photos::{phone_jpeg, secrets_in};

    let env = fresh().await;
    let photo = phone_jpeg(Some(6));
    let id = media_testkit::handlers::upload(&env.app, &photo, &[1000], photo.len()).await;
    let mut s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    let key = s.object_key();
    let s3 = &env.clients.s3;
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let etag = s3
        .upload_part()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(Bytes::from(photo.clone()).into())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    s3.complete_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(&etag)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(!secrets_in(&get_object(&env, &key).await).is_empty());
    // As an earlier version stored it (no key recorded), or as this one records it.
    for multipart_key in [None, Some(key.clone())] {
        s.staging = StagingState {
            multipart_upload_id: Some(upload_id.clone()),
            multipart_key,
            parts_apart: 0,
            parts: vec![PartRecord {
                number: 1,
                etag: etag.clone(),
                size: photo.len() as u64,
                sources: vec![],
            }],
            staged: vec![],
        };
        let size = finish_object(&env.app, &s, &key, MetadataPolicy::Strip)
            .await
            .unwrap();
        let served = get_object(&env, &key).await;
        assert_eq!(size, served.len() as u64);
        assert!(size < photo.len() as u64);
        assert_eq!(secrets_in(&served), Vec::<String>::new());
    }
}

// ---------------------------------------------------------------------------------------------------
// Parts recorded apart from the session (issue 12: the session item no longer grows with the file).

/// The stored item's size as DynamoDB counts it for strings and numbers: attribute names plus values.
async fn stored_session_size(env: &TestEnv, id: &str) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    let item = env
        .clients
        .dynamodb
        .get_item()
        .table_name(&env.cfg.table)
        .key("pk", AttributeValue::S(format!("upload#{id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the session item");
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// Stores `s` as a version from before parts were recorded apart and the multipart key was recorded
/// would have stored it: its JSON without `multipart_key` and `parts_apart`, its parts inline in
/// `staging.parts` (always present then), its staged chunks as `{"key", "offset", "len"}` objects
/// with their whole keys, written with the SDK.
async fn store_as_earlier_version(
    env: &TestEnv,
    s: &media_shared::domain::upload::UploadSession,
    inline_parts: &[media_shared::domain::upload::PartRecord],
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut json = serde_json::to_value(s).unwrap();
    let staging = json["staging"].as_object_mut().unwrap();
    staging.remove("multipart_key");
    staging.remove("parts_apart");
    staging.insert("parts".into(), serde_json::to_value(inline_parts).unwrap());
    let staged: Vec<serde_json::Value> = s
        .staging
        .staged
        .iter()
        .map(|c| {
            serde_json::json!({
                "key": format!("{}{}", staging_prefix(&s.id), c.name),
                "offset": c.offset,
                "len": c.len,
            })
        })
        .collect();
    staging.insert("staged".into(), staged.into());
    let mut item = media_shared::adapters::aws::items::session_item(s).unwrap();
    item.insert("data".into(), AttributeValue::S(json.to_string()));
    env.clients
        .dynamodb
        .put_item()
        .table_name(&env.cfg.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_file_of_many_parts_completes_and_its_session_item_keeps_its_size() {
    let env = fresh().await;
    // 9 parts of 5 MiB, two chunks each, and a short last one (documents stop at 50 MiB).
    let size = 5 * MIB / 2;
    let data = pdf(9 * 5 * MIB + 4321, 12);
    let total = data.len();
    let (status, body) = chunk(&env.app, None, &data[..size], 0, total).await;
    assert_eq!(status, 201, "{body}");
    let id = body["upload_id"].as_str().unwrap().to_string();
    let mut sizes = Vec::new();
    for (i, piece) in data.chunks(size).enumerate().skip(1) {
        let (status, body) = chunk(&env.app, Some(&id), piece, i * size, total).await;
        assert_eq!(status, 201, "chunk {i}: {body}");
        if i % 2 == 1 {
            // Each of these filled a part: nothing staged, one more part recorded.
            sizes.push(stored_session_size(&env, &id).await);
        }
    }
    let s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    assert_eq!(s.staging.part_count(), 10);
    // The same size after part 1 as after part 9, but for the digits of growing numbers.
    let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(most - least <= 16, "the session item grew: {sizes:?}");
    let (status, media) = complete(&env.app, &id, &md5_hex(&data)).await;
    assert_eq!(status, 201, "{media}");
    assert!(
        get_object(&env, &format!("media/{id}.pdf")).await == data,
        "object bytes differ"
    );
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn forty_parts_leave_the_session_item_as_small_as_one() {
    use aws_sdk_dynamodb::types::AttributeValue;
    // Parts far below S3's minimum, so that many fit in a test: recorded and uploaded as any part
    // (S3 refuses them only at completion, which this test does not reach).
    let part = 64 * 1024;
    let env = fresh_with_part_size(part as u64).await;
    let data = random_bytes(40 * part + 1000, 13);
    let mut s = new_session(&env.app, data.len() as u64).await;
    let mut sizes = Vec::new();
    for piece in data.chunks(part / 4) {
        let before = s.staging.part_count();
        send_chunk(&env.app, &mut s, piece).await;
        if s.staging.part_count() > before {
            sizes.push(stored_session_size(&env, &s.id).await);
        }
    }
    assert_eq!(sizes.len(), 41);
    let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(most - least <= 16, "the session item grew: {sizes:?}");
    assert!(*most < 2048, "{most} bytes");
    assert_eq!(s.md5.hex_digest().unwrap(), md5_hex(&data));

    // Every part is an item of its own, with everything a repair needs, and the session's TTL.
    let parts = env.app.uploads.recorded_parts(&s).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        (1..=41).collect::<Vec<u32>>()
    );
    assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), s.total);
    assert!(parts[..40].iter().all(|p| p.sources.len() == 4));
    let item = env
        .clients
        .dynamodb
        .get_item()
        .table_name(&env.cfg.table)
        .key("pk", AttributeValue::S(format!("part#{}#7", s.id)))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["kind"].as_s().unwrap(), "part");
    assert_eq!(
        item["expires_at"].as_n().unwrap(),
        &(s.expires_at_ms / 1000).to_string()
    );
    // Nothing that makes it a session to the sweep's index or the stream's readers.
    assert!(!item.contains_key("expiry_shard") && !item.contains_key("expires_ms"));
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_session_stored_with_its_parts_inline_goes_on_and_completes() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = fresh().await;
    let data = pdf(12 * MIB + 4321, 14);
    let mut s = new_session(&env.app, data.len() as u64).await;
    // Part 1 sealed and some chunks staged for part 2 when the deploy happens.
    let mut sent = 0;
    while sent < 7 * MIB {
        send_chunk(&env.app, &mut s, &data[sent..sent + CHUNK]).await;
        sent += CHUNK;
    }
    let parts = env.app.uploads.recorded_parts(&s).await.unwrap();
    assert_eq!(parts.len(), 1);
    // The earlier version kept part 1 in the session: only that copy remains.
    env.clients
        .dynamodb
        .delete_item()
        .table_name(&env.cfg.table)
        .key("pk", AttributeValue::S(format!("part#{}#1", s.id)))
        .send()
        .await
        .unwrap();
    let staged = s.staging.staged.clone();
    assert!(staged.len() > 5, "{staged:?}");
    store_as_earlier_version(&env, &s, &parts).await;
    s = env.app.uploads.get_upload(&s.id).await.unwrap().unwrap();
    assert_eq!(s.staging.staged, staged);
    assert_eq!(s.staging.parts, parts);
    assert_eq!(s.staging.parts_apart, 0);
    assert_eq!(s.staging.multipart_key, None);

    for piece in data[sent..].chunks(CHUNK) {
        send_chunk(&env.app, &mut s, piece).await;
    }
    // Parts 2 and 3 recorded apart, after the inline one; the key worked out once and recorded.
    assert_eq!(s.staging.parts.len(), 1);
    assert_eq!(s.staging.parts_apart, 2);
    assert_eq!(
        s.staging.multipart_key.as_deref(),
        Some(s.object_key().as_str())
    );
    let (status, media) = complete(&env.app, &s.id, &md5_hex(&data)).await;
    assert_eq!(status, 201, "{media}");
    assert!(
        get_object(&env, &s.object_key()).await == data,
        "object bytes differ"
    );
    assert_eq!(multipart_uploads(&env).await, vec![]);
}

/// The deploy transition of issue 14's photo assembly: a photo upload opened by a version that put
/// its multipart upload at the final key gets its parts there, not at today's assembly key.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_photo_upload_opened_at_its_final_key_gets_its_parts_there() {
    use media_testkit::photos::{phone_jpeg, secrets_in};

    let env = fresh().await;
    let photo = phone_jpeg(Some(6));
    let total = photo.len();
    let (status, body) = chunk(&env.app, None, &photo[..1000], 0, total).await;
    assert_eq!(status, 201, "{body}");
    let id = body["upload_id"].as_str().unwrap().to_string();
    let mut s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    let key = s.object_key();
    let assembly = s.staging.multipart_key.clone().unwrap();
    assert!(
        assembly.starts_with(&format!("staging/{id}/")),
        "{assembly}"
    );
    // As the earlier version left it: its multipart upload at the final key, no key recorded.
    let s3 = &env.clients.s3;
    s3.abort_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(&assembly)
        .upload_id(s.staging.multipart_upload_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&env.cfg.bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    s.staging.multipart_upload_id = Some(upload_id.clone());
    store_as_earlier_version(&env, &s, &[]).await;

    let logged = env.s3_log.lines().len();
    let (status, body) = chunk(&env.app, Some(&id), &photo[1000..], 1000, total).await;
    assert_eq!(status, 201, "{body}");
    let requests = env.s3_log.lines()[logged..].to_vec();
    assert!(
        !requests.iter().any(|r| r.contains("assembled")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("PUT") && r.contains(&key) && r.contains("partNumber=1")),
        "the part was not uploaded to {key}: {requests:#?}"
    );
    let s = env.app.uploads.get_upload(&id).await.unwrap().unwrap();
    assert_eq!(s.staging.multipart_key.as_deref(), Some(key.as_str()));

    let (status, media) = complete(&env.app, &id, &md5_hex(&photo)).await;
    assert_eq!(status, 201, "{media}");
    let served = get_object(&env, &key).await;
    assert!(served.len() < photo.len());
    assert_eq!(secrets_in(&served), Vec::<String>::new());
    assert_eq!(multipart_uploads(&env).await, vec![]);
}

/// Racing writers of a part-filling chunk: the session's condition decides the whole transaction, so
/// a loser records no part and never replaces the winner's record.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn only_the_winning_commit_records_its_part() {
    use media_shared::domain::upload::PartRecord;
    use media_shared::domain::StoreError;

    let env = fresh().await;
    let s = new_session(&env.app, 1000).await;
    let part = |etag: &str| PartRecord {
        number: 1,
        etag: etag.into(),
        size: 1000,
        sources: vec![format!("0-{etag}")],
    };
    let mut winner = s.clone();
    winner.staging.parts_apart = 1;
    winner.version = s.version + 1;
    let loser = winner.clone();
    env.app
        .uploads
        .commit_chunk(&winner, s.version, Some(&part("winner")))
        .await
        .unwrap();
    let lost = env
        .app
        .uploads
        .commit_chunk(&loser, s.version, Some(&part("loser")))
        .await;
    assert!(matches!(lost, Err(StoreError::Conflict)), "{lost:?}");
    let stored = env.app.uploads.get_upload(&s.id).await.unwrap().unwrap();
    assert_eq!(
        env.app.uploads.recorded_parts(&stored).await.unwrap(),
        vec![part("winner")]
    );
    // A commit on a session that is gone records nothing either.
    let mut gone = winner.clone();
    gone.id = media_shared::domain::upload::new_upload_id();
    let lost = env
        .app
        .uploads
        .commit_chunk(&gone, s.version, Some(&part("orphan")))
        .await;
    assert!(matches!(lost, Err(StoreError::Conflict)), "{lost:?}");
    let orphan = env
        .clients
        .dynamodb
        .get_item()
        .table_name(&env.cfg.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("part#{}#1", gone.id)),
        )
        .send()
        .await
        .unwrap();
    assert!(orphan.item.is_none());
}

/// The app of `env` with its session store on a client that loses the answer of the first
/// `operation` of a chunk's commit (conditional on `:expected`) after DynamoDB applied it.
fn losing_first_commit_answer(env: &TestEnv, operation: &'static str) -> (App, LoseAnswerOnce) {
    let lose = LoseAnswerOnce::new(operation, ":expected");
    let meta = DynamoMeta::new(lose.client(&env.clients.dynamodb), &env.cfg.table);
    let app = App {
        uploads: Arc::new(meta.clone()),
        media: Arc::new(meta),
        ..env.app.clone()
    };
    (app, lose)
}

/// Every staged object the stored session of `id` refers to is in the bucket.
async fn staged_objects_exist(env: &TestEnv, app: &App, id: &str) {
    let s = app.uploads.get_upload(id).await.unwrap().unwrap();
    let held = keys(env, &format!("staging/{id}/")).await;
    for c in &s.staging.staged {
        let key = format!("{}{}", staging_prefix(id), c.name);
        assert!(
            held.contains(&key),
            "{key} is gone; the bucket holds {held:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_chunk_whose_applied_commit_is_retried_keeps_its_bytes() {
    let env = fresh().await;
    let (app, lose) = losing_first_commit_answer(&env, "PutItem");
    let data = pdf(4 * CHUNK + 1000, 21);
    let total = data.len();
    let mut id = None;
    for (i, piece) in data.chunks(CHUNK).enumerate() {
        let (status, body) = chunk(&app, id.as_deref(), piece, i * CHUNK, total).await;
        // The first chunk's commit (after the PutItem creating the session) is applied, its answer
        // lost, and the SDK's retry refused by the condition the first attempt moved past.
        assert_eq!(status, 201, "chunk {i}: {body}");
        id = Some(body["upload_id"].as_str().unwrap().to_string());
        if i == 0 {
            assert_eq!(lose.lost.load(Ordering::SeqCst), 1, "no answer was lost");
            staged_objects_exist(&env, &app, id.as_deref().unwrap()).await;
        }
    }
    let id = id.unwrap();
    let (status, media) = complete(&app, &id, &md5_hex(&data)).await;
    assert_eq!(status, 201, "{media}");
    assert!(get_object(&env, &format!("media/{id}.pdf")).await == data);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_chunk_whose_applied_part_commit_is_retried_keeps_its_part() {
    // moto ignores the transaction's ClientRequestToken, so the retry meets the failed condition
    // (as it would on DynamoDB after the token's 10 minutes).
    let env = fresh().await;
    let (app, lose) = losing_first_commit_answer(&env, "TransactWriteItems");
    let size = 5 * MIB / 2;
    let data = pdf(5 * MIB + 1000, 22);
    let total = data.len();
    let mut id = None;
    for (i, piece) in data.chunks(size).enumerate() {
        let (status, body) = chunk(&app, id.as_deref(), piece, i * size, total).await;
        assert_eq!(status, 201, "chunk {i}: {body}");
        id = Some(body["upload_id"].as_str().unwrap().to_string());
    }
    assert_eq!(lose.lost.load(Ordering::SeqCst), 1, "no answer was lost");
    let id = id.unwrap();
    let (status, media) = complete(&app, &id, &md5_hex(&data)).await;
    assert_eq!(status, 201, "{media}");
    assert!(get_object(&env, &format!("media/{id}.pdf")).await == data);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_part_s_worth_of_staged_chunks_costs_the_session_little() {
    let env = fresh().await;
    let data = pdf(6 * MIB, 23);
    let mut s = new_session(&env.app, data.len() as u64).await;
    // As many 204800-byte chunks as a part holds before the one that fills it.
    let chunks = (5 * MIB - 1) / CHUNK;
    let mut one = 0;
    for (i, piece) in data.chunks(CHUNK).take(chunks).enumerate() {
        send_chunk(&env.app, &mut s, piece).await;
        if i == 0 {
            one = stored_session_size(&env, &s.id).await;
        }
    }
    assert_eq!(s.staging.staged.len(), chunks);
    let full = stored_session_size(&env, &s.id).await;
    // About 34 bytes per staged chunk (its name and length); it was about 110 with the whole key.
    let per_chunk = (full - one) / (chunks - 1);
    assert!(
        per_chunk <= 40,
        "{per_chunk} bytes per staged chunk ({one} → {full})"
    );
}
