//! What only the function binaries behind `cargo lambda watch` can show (`MEDIA_TEST_BACKEND=lambda`;
//! on the other backends these tests say so and pass): that without a key they refuse every token
//! they cannot verify, and that each event of events/ gets from its function, through
//! `cargo lambda invoke`, the answer the README describes.

mod common;
use std::path::PathBuf;

use common::functions::Functions;
use common::*;
use media_shared::api::auth::Hs256;
use media_shared::domain::ThumbnailMode;
use media_shared::wiring::Backend;
use media_shared::wiring::Stores;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

fn not_on_lambda() -> bool {
    if !on_lambda() {
        eprintln!("skipped: only MEDIA_TEST_BACKEND=lambda runs the function binaries");
    }
    !on_lambda()
}

#[tokio::test]
async fn without_a_key_every_function_refuses_a_token_it_cannot_verify() {
    if not_on_lambda() {
        return;
    }
    let s = TestServer::start().await;
    let image = png(24, 16, 3);
    let upload = s.upload("alice", &image, 1000).await;
    let (st, media) = s.complete("alice", &upload, &md5_hex(&image), None).await;
    assert_eq!(st, 201, "{media}");
    let id = media["id"].as_u64().unwrap();

    // The same bucket and table, served by functions that have no MEDIA_JWT_SECRET.
    let Backend::Aws { config: aws, .. } = &s.config.backend else {
        unreachable!("the lambda backend is on S3 and DynamoDB")
    };
    let mut keyless = s.config.clone();
    keyless.jwt_secret = None;
    let f = Functions::start(&keyless, aws);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", f.port);
    let refused = json!({"errors": [{"code": "not_authenticated", "message":
        "the token cannot be verified: no authorizer checked it and neither MEDIA_JWT_SECRET nor MEDIA_JWT_JWKS_URL is set"}]});

    let forged = Hs256::new(b"a guess").issue("alice", 600).unwrap();
    // Signed with the secret the suite's other functions have: here nobody can check it either.
    let genuine = s.token("alice");
    for token in [forged, genuine] {
        let auth = format!("Bearer {token}");
        let c = &s.client;
        let chunk = Form::new().part("image", Part::bytes(image.clone()).file_name("photo.png"));
        let item = format!("/api/v2/media/{id}/");
        let requests = [
            c.post(url("/api/v2/media/upload/chunk/")).multipart(chunk),
            c.post(url("/api/v2/media/upload/complete/"))
                .form(&[("upload_id", upload.as_str()), ("md5", &md5_hex(&image))]),
            c.post(url("/api/v2/media/"))
                .json(&json!({"type": "url", "url": "https://example.com/"})),
            c.get(url(&item)),
            c.put(url(&item))
                .json(&json!({"image": "https://example.com/a.png"})),
            c.patch(url(&item))
                .json(&json!({"image": "https://example.com/a.png"})),
            c.delete(url(&item)),
        ];
        for r in requests {
            let r = r.header("authorization", &auth).build().unwrap();
            let what = format!("{} {}", r.method(), r.url().path());
            let (st, b) = json_of(c.execute(r).await.unwrap()).await;
            assert_eq!((st, &b), (401, &refused), "{what}");
        }
        // Click's route has no authorizer on AWS either, where signed-in users' tokens reach it
        // unverified: the token is ignored and the click counted as anonymous.
        let r = c
            .post(url(&format!("/api/v2/media/{id}/click/")))
            .header("authorization", &auth);
        assert_eq!(json_of(r.send().await.unwrap()).await.0, 204);
    }

    // Nothing changed: the media is there as it was, the clicks have no user.
    let (st, got) = s.get_media("alice", id).await;
    assert_eq!((st, unsigned(&got)), (200, unsigned(&media)));
    let clicks = s.clicks().await;
    assert_eq!(clicks.len(), 2, "{clicks:?}");
    assert!(clicks.iter().all(|c| c.user.is_none()), "{clicks:?}");
}

fn event(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../events")).join(format!("{name}.json"))
}

/// The status and JSON body of an HTTP function's answer (API Gateway's response format).
fn http(answer: Value) -> (u16, Value) {
    let status = answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode: {answer}")) as u16;
    let body = match answer["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")),
    };
    (status, body)
}

#[tokio::test]
async fn every_event_gets_its_answer_from_cargo_lambda_invoke() {
    if not_on_lambda() {
        return;
    }
    // As the template runs them: thumbnails are made by the thumbnail function, from the stream.
    let s = TestServer::start_with(|c| c.limits.thumbnails = ThumbnailMode::Deferred).await;
    let f = &s.lambda.as_ref().unwrap().0;

    // complete.json as committed names an upload this table never had.
    let (st, b) = http(f.invoke("complete", &event("complete")));
    assert_eq!((st, code(&b)), (404, "not_found"), "{b}");

    // chunk.json: a whole 48x32 PNG in one chunk, base64 multipart as API Gateway delivers it.
    let (st, b) = http(f.invoke("chunk", &event("chunk")));
    assert_eq!((st, b["offset"].as_u64()), (201, Some(3056)), "{b}");
    let upload = b["upload_id"].as_str().unwrap();

    // complete.json with that upload's id: media 1 of this fresh table, its thumbnail still to come.
    let committed = std::fs::read_to_string(event("complete")).unwrap();
    let edited = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        edited.path(),
        committed.replace("3f6c1d2e9a8b4c7d8e0f1a2b3c4d5e6f", upload),
    )
    .unwrap();
    let (st, media) = http(f.invoke("complete", edited.path()));
    assert_eq!(st, 201, "{media}");
    assert_eq!(
        (
            &media["id"],
            &media["type"],
            &media["image_width"],
            &media["image_thumbnail"]
        ),
        (&json!(1), &json!("image"), &json!(48), &Value::Null)
    );

    // thumbnail.json: the stream's INSERT of media 1.
    let answer = f.invoke("thumbnail", &event("thumbnail"));
    assert_eq!(answer, json!({"batchItemFailures": []}));

    // get.json: media 1, now with its thumbnail.
    let (st, got) = http(f.invoke("get", &event("get")));
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["image_thumbnail"]["width"], 48, "{got}");

    // update.json: only a url media has a preview image to choose; media 1 is an image.
    let (st, b) = http(f.invoke("update", &event("update")));
    assert_eq!((st, code(&b)), (400, "not_updatable"), "{b}");

    // click.json: no authorizer on click's route, so an anonymous click from the event's address.
    let (st, _) = http(f.invoke("click", &event("click")));
    assert_eq!(st, 204);
    let clicks = s.clicks().await;
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    assert_eq!(
        (
            clicks[0].media_id,
            clicks[0].user.as_deref(),
            clicks[0].ip.as_deref()
        ),
        (1, None, Some("203.0.113.7"))
    );

    // create.json: an embed. Its id is the first of the second block of ids: each process reserves
    // its own block of MEDIA_ID_BLOCK (100) ids, and the complete function's process took 1..=100.
    let (st, b) = http(f.invoke("create", &event("create")));
    assert_eq!(
        (st, &b["id"], &b["type"]),
        (201, &json!(101), &json!("embed")),
        "{b}"
    );

    // delete.json: media 1 is gone.
    let (st, _) = http(f.invoke("delete", &event("delete")));
    assert_eq!(st, 204);
    let (st, _) = http(f.invoke("get", &event("get")));
    assert_eq!(st, 404);

    // events.json: the stream's INSERT and REMOVE of media 1, published as Media Created and Media
    // Deleted on the bus the harness names (moto's default bus; what arrives there is checked in
    // shared/tests/stream_events.rs).
    let answer = f.invoke("events", &event("events"));
    assert_eq!(answer, json!({"batchItemFailures": []}));

    // cleanup.json: the TTL removal of a session; the chunk it had staged is freed.
    let Stores::Aws { clients, config } = s.stores() else {
        unreachable!()
    };
    let batch: Value =
        serde_json::from_str(&std::fs::read_to_string(event("cleanup")).unwrap()).unwrap();
    let session: Value = serde_json::from_str(
        batch
            .pointer("/Records/0/dynamodb/OldImage/data/S")
            .and_then(Value::as_str)
            .unwrap(),
    )
    .unwrap();
    let staged = session["staging"]["staged"][0]["key"].as_str().unwrap();
    clients
        .s3
        .put_object()
        .bucket(&config.bucket)
        .key(staged)
        .body(vec![7u8; 1024].into())
        .send()
        .await
        .unwrap();
    let answer = f.invoke("cleanup", &event("cleanup"));
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let left = clients
        .s3
        .list_objects_v2()
        .bucket(&config.bucket)
        .prefix(staged)
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "{staged} was not freed");
}
