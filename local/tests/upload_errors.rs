//! Every documented error of chunk and complete: its status, its JSON envelope, and that the upload it
//! was aimed at is left intact (it still completes with the right bytes afterwards).

mod common;
use common::*;
use serde_json::Value;

/// Starts an upload of `data` with its first `first` bytes; returns the id.
async fn begin(s: &TestServer, user: &str, data: &[u8], first: usize) -> String {
    let (st, b) = s
        .chunk(
            user,
            None,
            Some(format!("bytes 0-{}/{}", first - 1, data.len())),
            data[..first].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    b["upload_id"].as_str().unwrap().to_string()
}

/// Sends the rest of `data` from `from` and completes; proves the upload was not damaged.
async fn finish(s: &TestServer, user: &str, id: &str, data: &[u8], from: usize) {
    let (st, b) = s
        .chunk(
            user,
            Some(id),
            Some(format!("bytes {from}-{}/{}", data.len() - 1, data.len())),
            data[from..].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, media) = s.complete(user, id, &md5_hex(data), None).await;
    assert_eq!(st, 201, "{media}");
    let (_, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(md5_hex(&served), md5_hex(data));
}

#[tokio::test]
async fn bad_chunks_get_their_status_and_leave_the_upload_intact() {
    let s = TestServer::start().await;
    let data = png(100, 100, 11);
    let total = data.len();
    let id = begin(&s, "alice", &data, 1000).await;
    let piece = data[1000..2000].to_vec();

    let cases: Vec<(Option<String>, Vec<u8>, u16, &str)> = vec![
        (None, piece.clone(), 400, "missing_content_range"),
        (
            Some("bytes=1000-1999/x".into()),
            piece.clone(),
            400,
            "invalid_content_range",
        ),
        (
            Some(format!("bytes 1999-1000/{total}")),
            piece.clone(),
            400,
            "invalid_content_range",
        ),
        (
            Some(format!("bytes 1000-2000/{total}")),
            piece.clone(),
            400,
            "length_mismatch",
        ),
        (
            Some(format!("bytes 1000-1999/{}", total + 1)),
            piece.clone(),
            400,
            "total_changed",
        ),
        (
            Some("bytes 1000-1999/99999999999999999999999".into()),
            piece.clone(),
            400,
            "invalid_content_range",
        ),
        (
            Some(format!("bytes 1000-{total}/{total}")),
            piece.clone(),
            400,
            "invalid_content_range",
        ),
        (
            Some(format!("bytes 2000-2999/{total}")),
            piece.clone(),
            400,
            "offset_mismatch",
        ),
        // The range of the chunk accepted last with other bytes (the same bytes are a retry: 201).
        (
            Some(format!("bytes 0-999/{total}")),
            pdf(1000),
            400,
            "offset_mismatch",
        ),
        (
            Some(format!("bytes 1000-999/{total}")),
            vec![],
            400,
            "invalid_content_range",
        ),
    ];
    for (range, body, status, expected) in cases {
        let (st, b) = s.chunk("alice", Some(&id), range.clone(), body).await;
        assert_eq!((st, code(&b)), (status, expected), "{range:?}: {b}");
        if expected == "offset_mismatch" {
            assert_eq!(b["offset"], 1000, "the body tells where to resume: {b}");
        }
    }
    finish(&s, "alice", &id, &data, 1000).await;
}

#[tokio::test]
async fn requests_that_are_not_a_usable_multipart_form() {
    let s = TestServer::start().await;
    let post = |ct: &'static str, body: &'static str| {
        s.client
            .post(s.url("/api/v2/media/upload/chunk/"))
            .header("authorization", s.auth("alice"))
            .header("content-type", ct)
            .body(body)
    };
    let (st, b) = json_of(post("application/json", "{}").send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (400, "not_multipart"));
    let (st, b) = json_of(
        post("multipart/form-data; boundary=X", "garbage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code(&b)), (400, "malformed_multipart"));
    let body = "--X\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\nabc\r\n--X--\r\n";
    let (st, b) = json_of(
        post("multipart/form-data; boundary=X", body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code(&b)), (400, "missing_file"));
    let form = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(png(2, 2, 1)).file_name("a.png"),
    );
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/chunk/"))
        .header("authorization", s.auth("alice"))
        .multipart(form);
    let (st, b) = json_of(r.send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (400, "missing_file"));
}

#[tokio::test]
async fn chunk_over_the_maximum_is_413_and_totals_over_the_kind_limit_are_400() {
    let s = TestServer::start_with(|c| {
        c.limits.max_chunk_bytes = 100_000;
        c.limits.max_image_bytes = 150_000;
        c.limits.max_doc_bytes = 200_000;
    })
    .await;
    let image = png(200, 200, 12);
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-100000/{}", image.len())),
            image[..100_001].to_vec(),
        )
        .await;
    assert_eq!((st, code(&b)), (413, "chunk_too_large"));
    // Far over the limit: refused while reading the body.
    let (st, b) = s
        .chunk("alice", None, None, random_bytes(1_000_000, 1))
        .await;
    assert_eq!((st, code(&b)), (413, "chunk_too_large"));
    // The image is 30 KB over the image limit, but would fit the document one: the bytes decide.
    let big = png(160, 320, 13);
    assert!(big.len() > 150_000 && big.len() < 200_000);
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-99999/{}", big.len())),
            big[..100_000].to_vec(),
        )
        .await;
    assert_eq!((st, code(&b)), (400, "file_too_large"), "{b}");
    let doc = pdf(190_000);
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-99999/{}", doc.len())),
            doc[..100_000].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
}

#[tokio::test]
async fn content_not_on_the_allow_list_is_refused() {
    let s = TestServer::start().await;
    for (bytes, what) in [
        (
            b"PK\x03\x04\x14\x00\x00\x00\x08\x00zipzipzipzipzip".to_vec(),
            "zip",
        ),
        (b"just some plain text, not a picture".to_vec(), "text"),
        (
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
            "svg",
        ),
    ] {
        let (st, b) = s
            .chunk_named("alice", None, None, bytes, "image", "photo.jpg")
            .await;
        assert_eq!((st, code(&b)), (400, "unsupported_content"), "{what}: {b}");
    }
    let s =
        TestServer::start_with(|c| c.limits.allowed_mime = vec!["application/pdf".into()]).await;
    let (st, b) = s.chunk("alice", None, None, png(5, 5, 1)).await;
    assert_eq!((st, code(&b)), (400, "unsupported_content"));
}

#[tokio::test]
async fn unknown_foreign_and_malformed_upload_ids_are_404() {
    let s = TestServer::start().await;
    let data = png(50, 50, 14);
    let id = begin(&s, "alice", &data, 500).await;
    let range = Some(format!("bytes 500-999/{}", data.len()));
    for (user, upload_id) in [
        ("mallory", id.as_str()),
        ("alice", "0123456789abcdef0123456789abcdef"),
        ("alice", "../../etc/passwd"),
        ("alice", ""),
    ] {
        let (st, b) = s
            .chunk(
                user,
                Some(upload_id),
                range.clone(),
                data[500..1000].to_vec(),
            )
            .await;
        if upload_id.is_empty() {
            // An empty upload_id means "no upload yet": a new upload that must start at 0.
            assert_eq!((st, code(&b)), (400, "offset_mismatch"), "{b}");
        } else {
            assert_eq!(
                (st, code(&b)),
                (404, "not_found"),
                "{user} {upload_id}: {b}"
            );
        }
        let (st, b) = s.complete(user, upload_id, &md5_hex(&data), None).await;
        assert_eq!(st, if upload_id.is_empty() { 400 } else { 404 }, "{b}");
    }
    finish(&s, "alice", &id, &data, 500).await;
}

#[tokio::test]
async fn an_expired_upload_is_410() {
    let s = TestServer::start_with(|c| c.limits.upload_ttl_secs = 1).await;
    let data = png(50, 50, 15);
    let id = begin(&s, "alice", &data, 500).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            Some(format!("bytes 500-{}/{}", data.len() - 1, data.len())),
            data[500..].to_vec(),
        )
        .await;
    assert_eq!((st, code(&b)), (410, "upload_expired"), "{b}");
    let (st, b) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 410, "{b}");
}

#[tokio::test]
async fn complete_errors() {
    let s = TestServer::start().await;
    let data = png(60, 60, 16);
    let id = begin(&s, "alice", &data, 1000).await;

    // Missing fields are field errors.
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/complete/"))
        .header("authorization", s.auth("alice"))
        .form(&[("md5", md5_hex(&data))]);
    let (st, b) = json_of(r.send().await.unwrap()).await;
    assert_eq!((st, field_error(&b)), (400, "upload_id"));
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/complete/"))
        .header("authorization", s.auth("alice"))
        .form(&[("upload_id", &id)]);
    let (st, b) = json_of(r.send().await.unwrap()).await;
    assert_eq!((st, field_error(&b)), (400, "md5"));

    // Not all bytes yet: say how many are missing.
    let (st, b) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!((st, code(&b)), (400, "upload_incomplete"));
    let missing = data.len() - 1000;
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{missing} bytes are missing")),
        "{b}"
    );

    // The rest arrives; a type contradicting the content is refused without failing the upload.
    let (st, _) = s
        .chunk(
            "alice",
            Some(&id),
            Some(format!("bytes 1000-{}/{}", data.len() - 1, data.len())),
            data[1000..].to_vec(),
        )
        .await;
    assert_eq!(st, 201);
    let (st, b) = s.complete("alice", &id, &md5_hex(&data), Some("doc")).await;
    assert_eq!((st, field_error(&b)), (400, "type"));
    let (st, b) = s
        .complete("alice", &id, &md5_hex(&data), Some("video"))
        .await;
    assert_eq!((st, field_error(&b)), (400, "type"));
    let (st, media) = s
        .complete("alice", &id, &md5_hex(&data), Some("image"))
        .await;
    assert_eq!(st, 201, "{media}");
}

#[tokio::test]
async fn image_type_for_a_pdf_is_400() {
    let s = TestServer::start().await;
    let doc = pdf(5000);
    let (_, b) = s.chunk("alice", None, None, doc.clone()).await;
    let (st, b) = s
        .complete(
            "alice",
            b["upload_id"].as_str().unwrap(),
            &md5_hex(&doc),
            Some("image"),
        )
        .await;
    assert_eq!((st, field_error(&b)), (400, "type"));
}

/// A wrong md5 is a 400 and changes nothing (django-chunked-upload's "bad md5 -> 400, then
/// complete -> 200"); a malformed one is a field error and changes nothing either. The bytes stay,
/// and the right md5 then completes the upload.
#[tokio::test]
async fn a_wrong_or_malformed_md5_is_400_and_the_right_one_completes_afterwards() {
    let s = TestServer::start().await;
    let data = png(40, 40, 17);
    let id = s.upload("alice", &data, 1024).await;
    for (bad, expected) in [
        ("00000000000000000000000000000000", "md5_mismatch"),
        ("not-an-md5", "invalid"),
        ("0123456789abcdef0123456789abcdeg", "invalid"),
        ("", "invalid"),
    ] {
        let (st, b) = s.complete("alice", &id, bad, None).await;
        assert_eq!(st, 400, "{bad:?}: {b}");
        if expected == "invalid" {
            assert_eq!(field_error(&b), "md5", "{b}");
        } else {
            assert_eq!(code(&b), expected, "{b}");
        }
        assert!(s.holds_bytes(&id).await, "bytes kept after {bad:?}");
    }
    let (st, media) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 201, "{media}");
    let (_, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(served, data);
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let s = TestServer::start().await;
    let exp = |secs: i64| (time_now() as i64 + secs) as u64;
    let forged = encode(
        &Header::default(),
        &serde_json::json!({"sub": "alice", "exp": exp(600)}),
        &EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    let expired = encode(
        &Header::default(),
        &serde_json::json!({"sub": "alice", "exp": exp(-600)}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let no_sub = encode(
        &Header::default(),
        &serde_json::json!({"exp": exp(600)}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let headers: Vec<Option<String>> = vec![
        None,
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {no_sub}")),
        Some("Basic YWxpY2U6cHc=".into()),
        Some("Bearer".into()),
    ];
    for h in headers {
        for (method, path) in [
            ("POST", "/api/v2/media/upload/chunk/"),
            ("POST", "/api/v2/media/upload/complete/"),
            ("POST", "/api/v2/media/"),
            ("GET", "/api/v2/media/1/"),
            ("DELETE", "/api/v2/media/1/"),
            ("PATCH", "/api/v2/media/1/"),
        ] {
            let mut r = s.client.request(method.parse().unwrap(), s.url(path));
            if let Some(h) = &h {
                r = r.header("authorization", h);
            }
            let (st, b) = json_of(r.send().await.unwrap()).await;
            assert_eq!(
                (st, code(&b)),
                (401, "not_authenticated"),
                "{method} {path} with {h:?}: {b}"
            );
        }
    }
}

fn time_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn concurrent_chunks_of_one_upload_one_wins_and_the_file_stays_correct() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let data = png(300, 300, 18);
    let total = data.len();
    let id = begin(&s, "alice", &data, 100_000).await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (s, id) = (s.clone(), id.clone());
        // Same offset, different bytes: only one may be taken, or the MD5 and the file would disagree.
        let mut piece = data[100_000..200_000].to_vec();
        if i > 0 {
            piece[0] ^= i;
        }
        tasks.push(tokio::spawn(async move {
            let (st, b) = s
                .chunk(
                    "alice",
                    Some(&id),
                    Some(format!("bytes 100000-199999/{total}")),
                    piece,
                )
                .await;
            (i, st, b)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, st, b) = t.await.unwrap();
        match st {
            201 => winners.push(i),
            409 => assert_eq!(code(&b), "conflict"),
            400 => assert_eq!(code(&b), "offset_mismatch"),
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one chunk is taken");
    let mut expected = data.clone();
    expected[100_000] ^= winners[0];
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            Some(format!("bytes 200000-{}/{total}", total - 1)),
            data[200_000..].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    // The server's MD5 follows the bytes it kept.
    let (st, b) = s.complete("alice", &id, &md5_hex(&data), None).await;
    if winners[0] == 0 {
        assert_eq!(st, 201, "{b}");
        let (_, served) = s.fetch(b["image"].as_str().unwrap()).await;
        assert_eq!(served, data);
    } else {
        assert_eq!((st, code(&b)), (400, "md5_mismatch"));
    }
    let _: Value = b;
}
