//! Happy paths of chunked upload and completion, over HTTP against the real local server.

mod common;
use common::*;

#[tokio::test]
async fn multi_megabyte_image_in_official_client_chunks_is_served_intact_with_its_dimensions() {
    let s = TestServer::start().await;
    let image = png(1200, 900, 1);
    assert!(image.len() > 3_000_000);
    let id = s.upload("alice", &image, 204800).await;
    let (status, media) = s
        .complete("alice", &id, &md5_hex(&image), Some("image"))
        .await;
    assert_eq!(status, 201, "{media}");
    assert_eq!(media["type"], "image");
    assert_eq!(media["image_width"], 1200);
    assert_eq!(media["image_height"], 900);
    assert_eq!(media["image_mimetype"], "image/png");
    assert_eq!(media["mimetype"], "image/png");
    assert_eq!(media["size"], image.len() as u64);
    assert_eq!(media["title"], "photo.png");
    assert_eq!(media["url"], serde_json::Value::Null);
    assert!(media["id"].as_u64().unwrap() >= 1);
    let (status, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(md5_hex(&served), md5_hex(&image));
    assert_eq!(served.len(), image.len());
}

#[tokio::test]
async fn a_first_request_without_content_range_carries_the_whole_file() {
    let s = TestServer::start().await;
    let image = png(40, 30, 2);
    let (status, body) = s.chunk("alice", None, None, image.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["offset"], image.len() as u64);
    let id = body["upload_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let expires = body["expires"].as_str().unwrap();
    assert!(
        expires.ends_with('Z') && expires.len() == "2026-11-22T10:11:12.345Z".len(),
        "{expires}"
    );
    let (status, media) = s
        .complete("alice", id, &md5_hex(&image).to_uppercase(), None)
        .await;
    assert_eq!(status, 201, "{media}");
    assert_eq!(media["type"], "image");
}

#[tokio::test]
async fn pdf_becomes_a_doc_with_a_url_and_its_title() {
    let s = TestServer::start().await;
    let doc = pdf(700_000);
    let total = doc.len();
    let (st, b) = s
        .chunk_named(
            "alice",
            None,
            Some(format!("bytes 0-499999/{total}")),
            doc[..500_000].to_vec(),
            "document",
            "report.pdf",
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    let (st, b) = s
        .chunk_named(
            "alice",
            Some(&id),
            Some(format!("bytes 500000-{}/{total}", total - 1)),
            doc[500_000..].to_vec(),
            "file",
            "blob",
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, media) = s
        .complete("alice", &id, &md5_hex(&doc), Some("document"))
        .await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(media["type"], "doc");
    assert_eq!(media["title"], "report.pdf");
    assert_eq!(media["mimetype"], "application/pdf");
    assert_eq!(media["size"], total as u64);
    assert_eq!(media["image"], serde_json::Value::Null);
    let url = media["url"].as_str().unwrap();
    assert!(url_path(&media["url"]).ends_with(".pdf"), "{url}");
    let (st, served) = s.fetch(url).await;
    assert_eq!((st, md5_hex(&served)), (200, md5_hex(&doc)));
}

#[tokio::test]
async fn a_resized_image_named_blob_is_typed_by_its_bytes() {
    let s = TestServer::start().await;
    let image = png(64, 48, 3);
    // The part says blob / image/jpeg; the bytes are a PNG.
    let (st, b) = s
        .chunk_named("bob", None, None, image.clone(), "image", "blob")
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, media) = s
        .complete(
            "bob",
            b["upload_id"].as_str().unwrap(),
            &md5_hex(&image),
            Some("eimage"),
        )
        .await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(
        (media["type"].as_str(), media["image_mimetype"].as_str()),
        (Some("eimage"), Some("image/png"))
    );
    assert!(url_path(&media["image"]).ends_with(".png"), "{media}");
}

#[tokio::test]
async fn image_dimensions_beyond_the_first_chunk_are_read_from_the_stored_header() {
    let s = TestServer::start().await;
    let jpeg = jpeg_with_late_header(640, 480, 300_000);
    let id = s.upload("alice", &jpeg, 204800).await;
    let (st, media) = s.complete("alice", &id, &md5_hex(&jpeg), None).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(
        (
            media["image_width"].as_u64(),
            media["image_height"].as_u64()
        ),
        (Some(640), Some(480))
    );
    assert_eq!(media["mimetype"], "image/jpeg");
}

#[tokio::test]
async fn complete_accepts_multipart_and_json_and_paths_without_slash() {
    let s = TestServer::start().await;
    let a = png(10, 10, 4);
    let b = png(11, 11, 5);
    let id_a = s.upload("alice", &a, 100).await;
    let id_b = s.upload("alice", &b, 1000).await;
    let form = reqwest::multipart::Form::new()
        .text("upload_id", id_a.clone())
        .text("md5", md5_hex(&a))
        .text("type", "image");
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/complete"))
        .header("authorization", s.auth("alice"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, m) = json_of(r).await;
    assert_eq!(st, 201, "{m}");
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/complete/"))
        .header("authorization", s.auth("alice"))
        .json(&serde_json::json!({"upload_id": id_b, "md5": md5_hex(&b)}))
        .send()
        .await
        .unwrap();
    let (st, m2) = json_of(r).await;
    assert_eq!(st, 201, "{m2}");
    assert!(m2["id"].as_u64() > m["id"].as_u64(), "ids increase");
}

#[tokio::test]
async fn repeating_a_complete_returns_the_same_media() {
    let s = TestServer::start().await;
    let image = png(20, 20, 6);
    let id = s.upload("alice", &image, 300).await;
    let (st, first) = s.complete("alice", &id, &md5_hex(&image), None).await;
    assert_eq!(st, 201);
    let (st, again) = s.complete("alice", &id, &md5_hex(&image), None).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(unsigned(&first), unsigned(&again));
    let (st, other) = s.complete("alice", &id, &md5_hex(b"other"), None).await;
    assert_eq!((st, code(&other)), (400, "upload_completed"));
    // Nobody else learns that the upload exists.
    let (st, _) = s.complete("mallory", &id, &md5_hex(&image), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn get_returns_the_completed_media() {
    let s = TestServer::start().await;
    let image = png(30, 20, 7);
    let id = s.upload("alice", &image, 4096).await;
    let (_, media) = s.complete("alice", &id, &md5_hex(&image), None).await;
    let (st, got) = s.get_media("bob", media["id"].as_u64().unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(unsigned(&got), unsigned(&media));
}

/// Lambda's limit on a synchronous invocation's request payload: 6 MB.
const LAMBDA_MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

#[tokio::test]
async fn the_largest_chunk_the_template_allows_fits_one_lambda_request() {
    use base64::Engine;
    let s = TestServer::start().await;
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap(),
    )
    .unwrap();
    let max = template["Parameters"]["MaxChunkBytes"]["Default"]
        .as_u64()
        .expect("MaxChunkBytes has a default") as usize;
    assert_eq!(
        max as u64, s.config.limits.max_chunk_bytes,
        "the suite runs at the template's limit"
    );
    let doc = pdf(max + 1000);
    let total = doc.len();

    // The first chunk as the official client sends it: the file part alone, then its boundary.
    let boundary = "----WebKitFormBoundaryq3VYRnZtDiaN8k2p";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&doc[..max]);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let range = format!("bytes 0-{}/{total}", max - 1);

    // What API Gateway makes of it: a recorded chunk event (headers, authorizer claims, context) with
    // this body, base64-encoded as HTTP APIs deliver binary bodies.
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/tests/fixtures/apigw/chunk.json")).unwrap();
    event["body"] = base64::engine::general_purpose::STANDARD
        .encode(&body)
        .into();
    event["isBase64Encoded"] = true.into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["headers"]["content-range"] = range.clone().into();
    event["headers"]["content-type"] = content_type.clone().into();
    let event_bytes = serde_json::to_vec(&event).unwrap().len();
    eprintln!(
        "a {max}-byte chunk: {} bytes of multipart body, {event_bytes} bytes of API Gateway event; \
         Lambda takes {LAMBDA_MAX_REQUEST_BYTES} ({} to spare)",
        body.len(),
        LAMBDA_MAX_REQUEST_BYTES - event_bytes.min(LAMBDA_MAX_REQUEST_BYTES)
    );
    assert!(
        event_bytes < LAMBDA_MAX_REQUEST_BYTES,
        "{event_bytes} bytes of event do not fit in one Lambda request"
    );

    // And the service takes it (on the lambda backend: through watch's event, base64 and all).
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/chunk/"))
        .header("authorization", s.auth("alice"))
        .header("content-type", content_type)
        .header("content-range", range)
        .body(body);
    let (st, b) = json_of(r.send().await.unwrap()).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["offset"], max as u64);
    let id = b["upload_id"].as_str().unwrap();
    let (st, b) = s
        .chunk(
            "alice",
            Some(id),
            Some(format!("bytes {max}-{}/{total}", total - 1)),
            doc[max..].to_vec(),
        )
        .await;
    assert_eq!((st, b["offset"].as_u64()), (201, Some(total as u64)), "{b}");
    let (st, media) = s.complete("alice", id, &md5_hex(&doc), None).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(
        md5_hex(&s.fetch(media["url"].as_str().unwrap()).await.1),
        md5_hex(&doc)
    );
}
