//! The Lambda glue fed with API Gateway HTTP API (payload format 2.0) events, shaped like the ones API
//! Gateway sends behind the JWT authorizer (`fixtures/apigw/*.json`): each event goes through
//! `lambda::into_api_request` -> `routes::dispatch` -> `lambda::into_lambda_response`, the way a
//! function binary handles it, on S3 + DynamoDB served by moto. Run with
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-shared --features lambda --test lambda_events -- --include-ignored
//! scripts/stop-moto.sh
//! ```
//!
//! Without `--include-ignored` only the tests that need no moto run (see `media_testkit::moto`).
//!
//! The fixtures are complete events; a test loads one and only changes what must vary (body, upload
//! id, media id in the path, the caller's `sub`, the authorizer's presence).

#![cfg(feature = "lambda")]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use lambda_http::Body;
use media_shared::adapters::aws::{AwsClients, AwsConfig};
use media_shared::api::auth::{Caller, ClientIp, Hs256, IdpConfig, IdpTokens, Verifier};
use media_shared::api::jwks::Jwks;
use media_shared::api::routes::{self, Endpoint};
use media_shared::app::App;
use media_shared::cleanup::{self, CleanupEvent};
use media_shared::domain::Click;
use media_shared::lambda::{self, CallerRule};
use media_shared::metrics::emf::Emf;
use media_shared::metrics::Metric;
use media_testkit::aws::LambdaEnv;
use media_testkit::jwks::{JwksServer, TestKey, AUDIENCE, ISSUER};
use media_testkit::{emf, md5_hex, png};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The `sub` claim of every fixture with an authorizer, and the fixtures' client address.
const ALICE: &str = "7f9c2ba4-e88f-4b6a-9d1f-3c5e8a2b6d10";
const SOURCE_IP: &str = "203.0.113.7";
const BOUNDARY: &str = "----WebKitFormBoundaryq3VYRnZtDiaN8k2p";

fn fixture(name: &str) -> Value {
    let text = match name {
        "chunk" => include_str!("fixtures/apigw/chunk.json"),
        "complete" => include_str!("fixtures/apigw/complete.json"),
        "create" => include_str!("fixtures/apigw/create.json"),
        "get" => include_str!("fixtures/apigw/get.json"),
        "delete" => include_str!("fixtures/apigw/delete.json"),
        "click" => include_str!("fixtures/apigw/click.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// The event as the runtime hands it to the function.
fn request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("not an API Gateway v2 event: {e}\n{event:#}"))
}

/// A media id in the path of a `/api/v2/media/{id}/...` event (raw path, context path, parameter).
fn with_media_id(mut event: Value, id: u64) -> Value {
    for field in ["/rawPath", "/requestContext/http/path"] {
        let path = event.pointer_mut(field).unwrap();
        *path = json!(path.as_str().unwrap().replace("/17/", &format!("/{id}/")));
    }
    event["pathParameters"]["id"] = json!(id.to_string());
    event
}

fn with_sub(mut event: Value, sub: &str) -> Value {
    *event
        .pointer_mut("/requestContext/authorizer/jwt/claims/sub")
        .expect("the fixture has JWT claims") = json!(sub);
    event
}

/// What a route without authorizer delivers: no authorizer in the context (and here no token either).
fn without_authorizer(mut event: Value) -> Value {
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    event
}

/// A binary body the way API Gateway delivers it: base64 with `isBase64Encoded`.
fn with_binary_body(mut event: Value, body: &[u8], content_type: Option<&str>) -> Value {
    event["body"] = json!(base64(body));
    event["isBase64Encoded"] = json!(true);
    event["headers"]["content-length"] = json!(body.len().to_string());
    if let Some(ct) = content_type {
        event["headers"]["content-type"] = json!(ct);
    }
    event
}

/// One chunk event: the multipart body the official client sends (`upload_id` first, then `image`).
fn chunk_event(upload_id: Option<&str>, file: &[u8], start: usize, len: usize) -> Value {
    let mut body = Vec::new();
    if let Some(id) = upload_id {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\n{id}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&file[start..start + len]);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let mut event = with_binary_body(fixture("chunk"), &body, None);
    event["headers"]["content-range"] =
        json!(format!("bytes {start}-{}/{}", start + len - 1, file.len()));
    event
}

/// The complete event, its urlencoded form base64-encoded as HTTP APIs deliver form posts.
fn complete_event(upload_id: &str, md5: &str) -> Value {
    let form = format!("upload_id={upload_id}&md5={md5}&type=image");
    with_binary_body(fixture("complete"), form.as_bytes(), None)
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Body,
}

impl Answer {
    /// The JSON body, which must be sent as text with `application/json`.
    fn json(&self) -> Value {
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        match &self.body {
            Body::Text(text) => serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}")),
            other => panic!("expected a JSON text body, got {other:?}"),
        }
    }

    fn assert_empty(&self) {
        assert!(
            matches!(self.body, Body::Empty),
            "expected no body, got {:?}",
            self.body
        );
    }
}

/// How a deployed function tells who is calling: from the authorizer's claims, no key of its own.
fn on_aws(endpoint: Endpoint) -> CallerRule {
    CallerRule::new(None, endpoint)
}

/// What a function binary does with one event.
async fn call(app: &App, endpoint: Endpoint, event: &Value) -> Answer {
    call_with(app, endpoint, &on_aws(endpoint), event).await
}

/// The same under another rule (e.g. with `MEDIA_JWT_SECRET`, as under `cargo lambda watch`).
async fn call_with(app: &App, endpoint: Endpoint, rule: &CallerRule, event: &Value) -> Answer {
    let req = lambda::into_api_request(request(event), rule).await;
    let resp = lambda::into_lambda_response(routes::dispatch(endpoint, app, req).await);
    Answer {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string()),
        body: resp.into_body(),
    }
}

struct Moto {
    app: App,
    clients: AwsClients,
    cfg: AwsConfig,
}

/// The App on a fresh bucket and table in moto, built by `wiring::for_lambda` as the functions build it.
async fn moto() -> Moto {
    let LambdaEnv { app, clients, cfg } = media_testkit::aws::for_lambda(
        "the Lambda event tests",
        "media-lambda",
        // As template.yaml sets it for the functions: thumbnails come later, from the stream.
        &[("MEDIA_THUMBNAILS", "deferred")],
    )
    .await;
    Moto { app, clients, cfg }
}

fn error(code: &str, message: &str) -> Value {
    json!({"errors": [{"code": code, "message": message}]})
}

#[tokio::test]
async fn fixtures_are_api_gateway_v2_events_with_the_jwt_sub() {
    let alice = Some(Caller::User(ALICE.into()));
    let ip = Some(ClientIp(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))));
    for (name, endpoint, method, path, caller) in [
        (
            "chunk",
            Endpoint::Chunk,
            "POST",
            "/api/v2/media/upload/chunk/",
            &alice,
        ),
        (
            "complete",
            Endpoint::Complete,
            "POST",
            "/api/v2/media/upload/complete/",
            &alice,
        ),
        ("create", Endpoint::Create, "POST", "/api/v2/media/", &alice),
        ("get", Endpoint::Get, "GET", "/api/v2/media/17/", &alice),
        (
            "delete",
            Endpoint::Delete,
            "DELETE",
            "/api/v2/media/17/",
            &alice,
        ),
        (
            "click",
            Endpoint::Click,
            "POST",
            "/api/v2/media/17/click/",
            &Some(Caller::Anonymous),
        ),
    ] {
        let event = fixture(name);
        assert_eq!(event["version"], "2.0", "{name}");
        assert_eq!(event["requestContext"]["stage"], "$default", "{name}");
        assert_eq!(event["rawPath"], path, "{name}");
        let req = lambda::into_api_request(request(&event), &on_aws(endpoint)).await;
        assert_eq!(req.method().as_str(), method, "{name}");
        assert_eq!(req.uri().path(), path, "{name}");
        assert_eq!(req.extensions().get::<Caller>(), caller.as_ref(), "{name}");
        assert_eq!(req.extensions().get::<ClientIp>(), ip.as_ref(), "{name}");
    }

    // Bodies arrive decoded: the multipart and the form from base64, the JSON as text.
    let chunk =
        lambda::into_api_request(request(&fixture("chunk")), &on_aws(Endpoint::Chunk)).await;
    assert!(chunk
        .body()
        .starts_with(format!("--{BOUNDARY}\r\n").as_bytes()));
    assert!(chunk
        .body()
        .ends_with(format!("--{BOUNDARY}--\r\n").as_bytes()));
    assert_eq!(
        chunk.body().len().to_string(),
        chunk.headers()["content-length"].to_str().unwrap()
    );
    let complete =
        lambda::into_api_request(request(&fixture("complete")), &on_aws(Endpoint::Complete)).await;
    assert_eq!(
        &complete.body()[..],
        b"upload_id=3f6c1d2e9a8b4c7d8e0f1a2b3c4d5e6f&md5=3ab739d7d4d7296eeafd3b9303b5121b&type=image"
    );
    let create =
        lambda::into_api_request(request(&fixture("create")), &on_aws(Endpoint::Create)).await;
    let body: Value = serde_json::from_slice(create.body()).unwrap();
    assert_eq!(body["type"], "embed");

    // The helpers change only what they say.
    let other = lambda::into_api_request(
        request(&with_sub(with_media_id(fixture("delete"), 4321), "bob")),
        &on_aws(Endpoint::Delete),
    )
    .await;
    assert_eq!(other.uri().path(), "/api/v2/media/4321/");
    assert_eq!(
        other.extensions().get::<Caller>(),
        Some(&Caller::User("bob".into()))
    );
    let anonymous = lambda::into_api_request(
        request(&without_authorizer(fixture("get"))),
        &on_aws(Endpoint::Get),
    )
    .await;
    assert_eq!(
        anonymous.extensions().get::<Caller>(),
        Some(&Caller::Anonymous)
    );
    assert!(anonymous.headers().get("authorization").is_none());
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn an_image_uploaded_in_two_chunks_is_served_read_clicked_and_deleted_by_its_owner() {
    let m = moto().await;
    let file = png(120, 80, 7);
    let first = 16_384;
    let started = OffsetDateTime::now_utc();

    // First chunk: creates the upload.
    let a = call(&m.app, Endpoint::Chunk, &chunk_event(None, &file, 0, first)).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let v = a.json();
    let upload_id = v["upload_id"].as_str().expect("upload_id").to_string();
    assert_eq!(upload_id.len(), 32, "{v}");
    assert!(upload_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let expires = OffsetDateTime::parse(v["expires"].as_str().unwrap(), &Rfc3339).unwrap();
    let ttl = (expires - started).whole_seconds();
    assert!(
        (86_390..=86_460).contains(&ttl),
        "expires {expires}: {ttl} s"
    );
    assert_eq!(
        v,
        json!({"upload_id": upload_id, "offset": first, "expires": v["expires"]})
    );

    // Second chunk: the rest of the file.
    let a = call(
        &m.app,
        Endpoint::Chunk,
        &chunk_event(Some(&upload_id), &file, first, file.len() - first),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(
        a.json(),
        json!({"upload_id": upload_id, "offset": file.len(), "expires": v["expires"]})
    );

    // Complete: 201 Media whose presigned URL serves exactly the uploaded bytes.
    let a = call(
        &m.app,
        Endpoint::Complete,
        &complete_event(&upload_id, &md5_hex(&file)),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let media = a.json();
    let id = media["id"].as_u64().expect("integer id");
    let added_at = media["added_at"].as_str().unwrap();
    OffsetDateTime::parse(added_at, &Rfc3339).unwrap();
    assert!(added_at.ends_with('Z'), "{added_at}");
    let image = media["image"].as_str().expect("image URL").to_string();
    assert_eq!(
        media,
        json!({
            "id": id, "added_at": added_at, "type": "image", "title": "photo.png",
            "description": null, "url": null, "image": image, "image_width": 120,
            "image_height": 80, "image_mimetype": "image/png", "image_thumbnail": null,
            "order": null, "embed": null, "size": file.len(), "mimetype": "image/png",
        })
    );
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    assert!(
        image.starts_with(&format!("{endpoint}/{}/", m.cfg.bucket))
            && image.contains("X-Amz-Signature="),
        "not a presigned path-style URL of the bucket: {image}"
    );
    let (status, bytes) = http_get(&image).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes.len(), file.len());
    assert!(bytes == file, "the image URL serves other bytes");

    // Get: the same media, with a freshly presigned URL serving the same bytes.
    let get = with_media_id(fixture("get"), id);
    let a = call(&m.app, Endpoint::Get, &get).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let got = a.json();
    let mut expected = media.clone();
    expected["image"] = got["image"].clone();
    assert_eq!(got, expected);
    assert_eq!(http_get(got["image"].as_str().unwrap()).await.1, file);

    // Click without authorizer: 204, recorded as anonymous from the event's source IP.
    let a = call(
        &m.app,
        Endpoint::Click,
        &with_media_id(fixture("click"), id),
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    a.assert_empty();
    let clicks = clicks(&m).await;
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    assert_eq!(clicks[0].media_id, id);
    assert_eq!(clicks[0].user, None);
    assert_eq!(clicks[0].ip.as_deref(), Some(SOURCE_IP));

    // Delete by somebody else: 403, nothing removed.
    let delete = with_media_id(fixture("delete"), id);
    let a = call(
        &m.app,
        Endpoint::Delete,
        &with_sub(delete.clone(), "0b6d8f3e-somebody-else"),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.json(),
        error(
            "permission_denied",
            "only the creator may change this media"
        )
    );
    assert_eq!(call(&m.app, Endpoint::Get, &get).await.status, 200);

    // Delete by the owner: 204, then the media and its bytes are gone.
    let a = call(&m.app, Endpoint::Delete, &delete).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    a.assert_empty();
    let a = call(&m.app, Endpoint::Get, &get).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json(), error("not_found", "media not found"));
    assert_eq!(http_get(&image).await.0, 404);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn an_embed_created_from_json_is_read_back_unchanged() {
    let m = moto().await;
    let a = call(&m.app, Endpoint::Create, &fixture("create")).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let media = a.json();
    let id = media["id"].as_u64().expect("integer id");
    assert_eq!(
        media,
        json!({
            "id": id, "added_at": media["added_at"], "type": "embed", "title": null,
            "description": null, "url": null, "image": null, "image_width": null,
            "image_height": null, "image_mimetype": null, "image_thumbnail": null,
            "order": null, "size": null, "mimetype": null,
            "embed": {
                "id": id, "embed_type": "youtube", "embed_id": "dQw4w9WgXcQ",
                "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                "metadata": {"title": "Never Gonna Give You Up", "provider_name": "YouTube"},
            },
        })
    );
    let a = call(&m.app, Endpoint::Get, &with_media_id(fixture("get"), id)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), media);
    // Another user may read it.
    let a = call(
        &m.app,
        Endpoint::Get,
        &with_sub(with_media_id(fixture("get"), id), "bob"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), media);
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn authenticated_endpoints_without_authorizer_answer_401_and_change_nothing() {
    let m = moto().await;
    let created = call(&m.app, Endpoint::Create, &fixture("create"))
        .await
        .json();
    let id = created["id"].as_u64().unwrap();
    let file = png(4, 4, 1);
    let unauthenticated = error(
        "not_authenticated",
        "authentication credentials were not provided",
    );
    for (endpoint, event) in [
        (Endpoint::Chunk, chunk_event(None, &file, 0, file.len())),
        (
            Endpoint::Complete,
            complete_event("3f6c1d2e9a8b4c7d8e0f1a2b3c4d5e6f", &md5_hex(&file)),
        ),
        (Endpoint::Create, fixture("create")),
        (Endpoint::Get, with_media_id(fixture("get"), id)),
        (Endpoint::Delete, with_media_id(fixture("delete"), id)),
    ] {
        let a = call(&m.app, endpoint, &without_authorizer(event)).await;
        assert_eq!(a.status, 401, "{endpoint:?}: {:?}", a.body);
        assert_eq!(a.json(), unauthenticated, "{endpoint:?}");
    }
    // An authorizer whose claims carry no subject is no user either.
    let a = call(
        &m.app,
        Endpoint::Get,
        &with_sub(with_media_id(fixture("get"), id), ""),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json(), unauthenticated);

    // The media is still there, and the refused create made no second one.
    let a = call(&m.app, Endpoint::Get, &with_media_id(fixture("get"), id)).await;
    assert_eq!((a.status, a.json()), (200, created));
    let a = call(
        &m.app,
        Endpoint::Get,
        &with_media_id(fixture("get"), id + 1),
    )
    .await;
    assert_eq!(a.status, 404);
}

/// What `cargo lambda watch` delivers: no authorizer in the context, the client's token in the header.
fn with_unverified_token(event: Value, token: &str) -> Value {
    let mut event = without_authorizer(event);
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    event
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn without_authorizer_a_token_counts_only_if_the_function_can_verify_it() {
    let m = moto().await;
    let created = call(&m.app, Endpoint::Create, &fixture("create"))
        .await
        .json();
    let id = created["id"].as_u64().unwrap();
    let file = png(4, 4, 1);
    let key = b"cargo-lambda-watch-secret";
    let genuine = Hs256::new(key).issue(ALICE, 600).unwrap();
    let forged = Hs256::new(b"not the key").issue(ALICE, 600).unwrap();
    let mut update = with_media_id(fixture("get"), id);
    update["requestContext"]["http"]["method"] = json!("PATCH");
    update["body"] = json!(r#"{"title":"forged"}"#);
    update["headers"]["content-type"] = json!("application/json");
    let events = [
        (Endpoint::Chunk, chunk_event(None, &file, 0, file.len())),
        (
            Endpoint::Complete,
            complete_event("3f6c1d2e9a8b4c7d8e0f1a2b3c4d5e6f", &md5_hex(&file)),
        ),
        (Endpoint::Create, fixture("create")),
        (Endpoint::Get, with_media_id(fixture("get"), id)),
        (Endpoint::Update, update),
        (Endpoint::Delete, with_media_id(fixture("delete"), id)),
        (Endpoint::Click, with_media_id(fixture("click"), id)),
    ];

    for (endpoint, event) in &events {
        // No key: nobody verified the token, so it is refused wherever the route has the authorizer
        // on AWS; click's route has none there, so the token is ignored and the click anonymous.
        let no_key = CallerRule::new(None, *endpoint);
        let a = call_with(
            &m.app,
            *endpoint,
            &no_key,
            &with_unverified_token(event.clone(), &forged),
        )
        .await;
        if *endpoint == Endpoint::Click {
            assert_eq!(a.status, 204, "{endpoint:?}: {:?}", a.body);
        } else {
            assert_eq!(a.status, 401, "{endpoint:?}: {:?}", a.body);
            assert_eq!(
                a.json(),
                error(
                    "not_authenticated",
                    "the token cannot be verified: no authorizer checked it and neither \
                     MEDIA_JWT_SECRET nor MEDIA_JWT_JWKS_URL is set"
                ),
                "{endpoint:?}"
            );
        }

        // With the key the function verifies the token as media-local does: a forged one is a 401.
        let with_key = CallerRule::new(Some(key), *endpoint);
        let a = call_with(
            &m.app,
            *endpoint,
            &with_key,
            &with_unverified_token(event.clone(), &forged),
        )
        .await;
        assert_eq!(a.status, 401, "{endpoint:?}: {:?}", a.body);
        let v = a.json();
        assert_eq!(v["errors"][0]["code"], "not_authenticated", "{endpoint:?}");
        // In the service's words, not the JWT library's.
        assert_eq!(
            v["errors"][0]["message"], "the token's signature does not verify",
            "{endpoint:?}: {v}"
        );
    }

    // Nothing changed: the media is unedited and still there, one anonymous click was counted.
    let a = call(&m.app, Endpoint::Get, &with_media_id(fixture("get"), id)).await;
    assert_eq!((a.status, a.json()), (200, created.clone()));
    let counted = clicks(&m).await;
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].user, None);

    // A genuine token with the key: the caller is its subject, as behind the authorizer.
    let get = with_unverified_token(with_media_id(fixture("get"), id), &genuine);
    let a = call_with(
        &m.app,
        Endpoint::Get,
        &CallerRule::new(Some(key), Endpoint::Get),
        &get,
    )
    .await;
    assert_eq!((a.status, a.json()), (200, created));
    let click = with_unverified_token(with_media_id(fixture("click"), id), &genuine);
    let rule = CallerRule::new(Some(key), Endpoint::Click);
    assert_eq!(
        call_with(&m.app, Endpoint::Click, &rule, &click)
            .await
            .status,
        204
    );
    let counted = clicks(&m).await;
    assert_eq!(counted.len(), 2, "{counted:?}");
    assert!(
        counted.iter().any(|c| c.user.as_deref() == Some(ALICE)),
        "{counted:?}"
    );
    // Without a token the function's own key changes nothing: anonymous, and 401 where a user is needed.
    let a = call_with(
        &m.app,
        Endpoint::Get,
        &CallerRule::new(Some(key), Endpoint::Get),
        &without_authorizer(with_media_id(fixture("get"), id)),
    )
    .await;
    assert_eq!(a.status, 401);
}

/// The functions under `cargo lambda watch` with `MEDIA_JWT_JWKS_URL`: the identity provider's tokens
/// are verified by the same `Verifier` media-local uses, with its issuer and audience; the
/// authorizer's claims, when present, still decide alone.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn without_authorizer_the_identity_providers_tokens_are_verified_with_its_key_set() {
    let m = moto().await;
    let (rsa, ec) = (TestKey::rsa_a(), TestKey::ec_a());
    let idp = JwksServer::start(&[&rsa, &ec], std::time::Duration::ZERO).await;
    let config = IdpConfig {
        jwks_url: idp.url.clone(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
    };
    let verifier = Verifier::new(
        None,
        Some(IdpTokens::new(
            Jwks::fetch(&idp.url).await.unwrap(),
            &config,
        )),
    );
    let rule = |endpoint| CallerRule::with_verifier(Some(verifier.clone()), endpoint);
    let file = png(4, 4, 1);
    let chunk = chunk_event(None, &file, 0, file.len());

    for key in [&rsa, &ec] {
        let good = key.sign(&media_testkit::jwks::claims(ALICE));
        let a = call_with(
            &m.app,
            Endpoint::Chunk,
            &rule(Endpoint::Chunk),
            &with_unverified_token(chunk.clone(), &good),
        )
        .await;
        assert_eq!(a.status, 201, "{:?}: {:?}", key.alg, a.body);
    }

    let mut other_app = media_testkit::jwks::claims(ALICE);
    other_app["aud"] = json!("another-app");
    let mut other_issuer = media_testkit::jwks::claims(ALICE);
    other_issuer["iss"] = json!("https://idp.test.example");
    for (why, token, message) in [
        (
            "aud",
            rsa.sign(&other_app),
            "the token is not meant for this API: its audience (aud, or client_id) is not accepted",
        ),
        (
            "iss",
            ec.sign(&other_issuer),
            "the token's issuer (iss) is not the one this API trusts",
        ),
        (
            "HS256 with the public key",
            Hs256::new(rsa.public_pem).issue(ALICE, 600).unwrap(),
            "the token is signed with a shared secret (HS256), which this server does not accept: \
             use a token from the identity provider",
        ),
    ] {
        for endpoint in [Endpoint::Chunk, Endpoint::Click] {
            let event = if endpoint == Endpoint::Chunk {
                chunk.clone()
            } else {
                with_media_id(fixture("click"), 1)
            };
            let a = call_with(
                &m.app,
                endpoint,
                &rule(endpoint),
                &with_unverified_token(event, &token),
            )
            .await;
            // Click too: its function can verify the token, so a bad one is refused, not ignored.
            assert_eq!(a.status, 401, "{why} {endpoint:?}: {:?}", a.body);
            assert_eq!(
                a.json(),
                error("not_authenticated", message),
                "{why} {endpoint:?}"
            );
        }
    }

    // Behind the authorizer the claims decide; the function does not verify the header again.
    let forged = Hs256::new(b"anything").issue("mallory", 600).unwrap();
    let mut behind = chunk.clone();
    behind["headers"]["authorization"] = json!(format!("Bearer {forged}"));
    let a = call_with(&m.app, Endpoint::Chunk, &rule(Endpoint::Chunk), &behind).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    // The set was fetched once, at start: every token named a key it held.
    assert_eq!(idp.fetches(), 1);
}

/// Every click recorded in the table.
/// The App of one function process on the test's bucket and table, its EMF documents (namespace and
/// function name from the environment, as on Lambda) collected in `lines` instead of stdout.
fn function(m: &Moto, name: &str, lines: &Arc<Mutex<Vec<String>>>) -> App {
    let env = [
        ("MEDIA_METRICS_NAMESPACE", METRICS_NAMESPACE),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
    ];
    let lines = lines.clone();
    let emf = Emf::from_env(&env)
        .expect("the metrics settings")
        .with_output(move |doc| lines.lock().unwrap().push(doc.to_string()));
    let mut app = m.app.clone();
    app.metrics = Arc::new(emf);
    app
}

const METRICS_NAMESPACE: &str = "Test/MediaUpload";

/// What `lambda::serve` does with one event: the answer's status, and the EMF documents the
/// invocation wrote (each checked against the format).
async fn invoke(
    app: &App,
    endpoint: Endpoint,
    event: &Value,
    lines: &Arc<Mutex<Vec<String>>>,
) -> (u16, Value, Vec<Value>) {
    let before = lines.lock().unwrap().len();
    let resp = lambda::invoke(endpoint, app, &on_aws(endpoint), request(event)).await;
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    let written = lines.lock().unwrap()[before..].join("\n");
    (
        resp.status().as_u16(),
        body,
        emf::documents(&written, METRICS_NAMESPACE),
    )
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn every_invocation_writes_what_it_counted_as_one_emf_document() {
    let m = moto().await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let chunk_fn = function(&m, "media-chunk", &lines);
    let complete_fn = function(&m, "media-complete", &lines);
    let cleanup_fn = function(&m, "media-cleanup", &lines);
    let file = png(120, 80, 7);
    let first = 16_384;

    // Two chunks: one document each.
    let (status, v, docs) = invoke(
        &chunk_fn,
        Endpoint::Chunk,
        &chunk_event(None, &file, 0, first),
        &lines,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let upload_id = v["upload_id"].as_str().unwrap().to_string();
    let rest = file.len() - first;
    let (status, _, docs) = invoke(
        &chunk_fn,
        Endpoint::Chunk,
        &chunk_event(Some(&upload_id), &file, first, rest),
        &lines,
    )
    .await;
    assert_eq!((status, docs.len()), (201, 1));
    // A chunk of an upload nobody has: refused, and its handling timed all the same.
    let (status, _, docs) = invoke(
        &chunk_fn,
        Endpoint::Chunk,
        &chunk_event(Some(&"0".repeat(32)), &file, 0, 10),
        &lines,
    )
    .await;
    assert_eq!((status, docs.len()), (404, 1), "{docs:#?}");
    let refused = &docs[0];
    assert_eq!(refused["ErrorCode"], "not_found");
    assert_eq!(
        refused["ChunkHandlerTime"].as_f64().map(|ms| ms >= 0.0),
        Some(true)
    );
    assert!(
        refused.get("ChunksReceived").is_none(),
        "nothing was stored: {refused}"
    );

    // The wrong md5 first, then the right one.
    let (status, v, docs) = invoke(
        &complete_fn,
        Endpoint::Complete,
        &complete_event(&upload_id, &"0".repeat(32)),
        &lines,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errors"][0]["code"], "md5_mismatch");
    assert_eq!(docs.len(), 1);
    let (status, v, docs) = invoke(
        &complete_fn,
        Endpoint::Complete,
        &complete_event(&upload_id, &md5_hex(&file)),
        &lines,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(docs.len(), 1);
    // The same completion retried: the same media, no second completion counted and nothing written.
    let (status, _, docs) = invoke(
        &complete_fn,
        Endpoint::Complete,
        &complete_event(&upload_id, &md5_hex(&file)),
        &lines,
    )
    .await;
    assert_eq!((status, docs.len()), (200, 0));

    // Another upload, abandoned after its first chunk, then swept two days later by the cleanup
    // function (its scheduled event).
    let other = png(64, 64, 3);
    let (status, _, _) = invoke(
        &chunk_fn,
        Endpoint::Chunk,
        &chunk_event(None, &other, 0, 1000),
        &lines,
    )
    .await;
    assert_eq!(status, 201);
    let before = lines.lock().unwrap().len();
    let later = OffsetDateTime::now_utc() + time::Duration::days(2);
    let answer = cleanup::handle_event(&cleanup_fn, &CleanupEvent::Schedule, later)
        .await
        .unwrap();
    cleanup_fn.metrics.flush();
    assert!(
        matches!(answer, cleanup::CleanupAnswer::Sweep(r) if r.released == 1),
        "{answer:?}"
    );
    assert_eq!(lines.lock().unwrap().len(), before + 1);

    let all = emf::documents(&lines.lock().unwrap().join("\n"), METRICS_NAMESPACE);
    assert_eq!(
        all.len(),
        7,
        "one document per invocation that counted something: {all:#?}"
    );
    let t = emf::Totals::of(&all);
    assert_eq!(t.sum("media-chunk", Metric::ChunksReceived), 3.0);
    assert_eq!(
        t.sum("media-chunk", Metric::BytesReceived),
        (file.len() + 1000) as f64
    );
    assert_eq!(t.samples("media-chunk", Metric::ChunkHandlerTime).len(), 4);
    assert_eq!(t.refused("media-chunk", "not_found"), 1.0);
    assert_eq!(t.sum("media-complete", Metric::UploadsCompleted), 1.0);
    assert_eq!(t.sum("media-complete", Metric::Md5Mismatches), 1.0);
    assert_eq!(t.refused("media-complete", "md5_mismatch"), 1.0);
    assert_eq!(t.sum("media-cleanup", Metric::UploadsExpired), 1.0);
    assert_eq!(t.sum("media-cleanup", Metric::BytesFreed), 1000.0);
    // Nothing else: every value accounted for above.
    assert_eq!(t.refused.len(), 2, "{t:#?}");
    assert_eq!(t.values.len(), 7, "{t:#?}");
}

async fn clicks(m: &Moto) -> Vec<Click> {
    media_testkit::aws::clicks(&m.clients.dynamodb, &m.cfg.table).await
}

/// A plain HTTP/1.0 GET on loopback (the presigned URLs point at moto), bounded in time.
async fn http_get(url: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(std::time::Duration::from_secs(30), fetch)
        .await
        .expect("GET timed out");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let body = raw[end + 4..].to_vec();
    if let Some(len) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    }) {
        assert_eq!(body.len(), len, "truncated body: {head}");
    }
    (status, body)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | ((b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc_4648() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}
