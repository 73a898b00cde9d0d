//! Real tokens over HTTP: the server configured with an identity provider (`MEDIA_JWT_JWKS_URL`,
//! `MEDIA_JWT_ISSUER`, `MEDIA_JWT_AUDIENCE`) whose loopback JWKS server serves an RSA and an EC key
//! (`media_testkit::jwks`). A good token uploads a chunk; every kind of bad one is a 401 with the
//! reason; a rotated key is picked up after one refetch, and unknown key ids cost bounded fetches.
//!
//! On `MEDIA_TEST_BACKEND=lambda` the function binaries get the same three variables and verify the
//! tokens themselves, as under `cargo lambda watch` (no authorizer).

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, Header};
use media_shared::api::auth::{Hs256, IdpConfig};
use media_testkit::jwks::{claims, now, unsigned, JwksServer, TestKey, AUDIENCE, ISSUER};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

fn idp(server: &JwksServer) -> IdpConfig {
    IdpConfig {
        jwks_url: server.url.clone(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
    }
}

/// The server with only the provider's tokens: no MEDIA_JWT_SECRET, so no development secret either.
async fn start(server: &JwksServer) -> TestServer {
    let idp = idp(server);
    TestServer::start_with(|c| {
        c.jwt_secret = None;
        c.idp = Some(idp);
    })
    .await
}

/// A one-chunk upload of a small PNG with `token` as the bearer.
async fn upload(s: &TestServer, token: &str) -> (u16, Value) {
    upload_to(
        s.client.clone(),
        s.url("/api/v2/media/upload/chunk/"),
        token.to_string(),
    )
    .await
}

/// `upload`, owning what it needs (for spawned tasks).
async fn upload_to(client: reqwest::Client, url: String, token: String) -> (u16, Value) {
    let form = Form::new().part(
        "image",
        Part::bytes(png(4, 4, 1))
            .file_name("photo.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let resp = client
        .post(url)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

/// The same uploads with each of `tokens` at once; their answers in order.
async fn concurrently(s: &TestServer, tokens: Vec<String>) -> Vec<(u16, Value)> {
    let url = s.url("/api/v2/media/upload/chunk/");
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| tokio::spawn(upload_to(s.client.clone(), url.clone(), t)))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn not_authenticated(message: &str) -> Value {
    json!({"errors": [{"code": "not_authenticated", "message": message}]})
}

fn with(change: Value) -> Value {
    let mut c = claims("alice");
    for (k, v) in change.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn the_providers_tokens_upload_and_every_bad_one_is_a_401_with_the_reason() {
    let (rsa, ec) = (TestKey::rsa_a(), TestKey::ec_a());
    let provider = JwksServer::start(&[&rsa, &ec], Duration::ZERO).await;
    let s = start(&provider).await;

    for key in [&rsa, &ec] {
        let (status, body) = upload(&s, &key.sign(&claims("alice"))).await;
        assert_eq!(status, 201, "{:?}: {body}", key.alg);
        assert_eq!(body["offset"], png(4, 4, 1).len());
    }

    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("not-published".into());
    let public_key_as_secret = Hs256::new(rsa.public_pem).issue("alice", 600).unwrap();
    let development_secret = Hs256::new(media_local::config::DEV_SECRET.as_bytes())
        .issue("alice", 600)
        .unwrap();
    let hs256_refused = "the token is signed with a shared secret (HS256), which this server does \
                         not accept: use a token from the identity provider";
    let cases = [
        (
            "wrong aud",
            rsa.sign(&with(json!({"aud": "another-app"}))),
            "the token is not meant for this API: its audience (aud, or client_id) is not accepted",
        ),
        (
            "wrong iss",
            ec.sign(&with(json!({"iss": "https://evil.example/"}))),
            "the token's issuer (iss) is not the one this API trusts",
        ),
        (
            "unknown kid",
            rsa.sign_with(unknown_kid, &claims("alice")),
            "the token's key id (kid) is not one of the identity provider's keys",
        ),
        (
            "expired",
            rsa.sign(&with(json!({"exp": now() - 120}))),
            "the token has expired",
        ),
        (
            "not yet valid",
            ec.sign(&with(json!({"nbf": now() + 600}))),
            "the token is not valid yet",
        ),
        (
            "alg none",
            unsigned(&claims("alice")),
            "the token's algorithm (\"none\") is not accepted",
        ),
        (
            "HS256 with the public key",
            public_key_as_secret,
            hs256_refused,
        ),
        (
            "HS256 with the development secret",
            development_secret,
            hs256_refused,
        ),
    ];
    for (why, token, message) in cases {
        let (status, body) = upload(&s, &token).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body, not_authenticated(message), "{why}");
    }
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_after_one_refetch_and_unknown_key_ids_cost_no_more() {
    // The fetch counts are those of one process. Behind `cargo lambda watch`, concurrent requests
    // start more processes of the chunk function, each fetching the set at its start (seen: 2
    // fetches for the 10 requests below), so the counts there say nothing about the rule.
    if skip_on_lambda("fetch counts per process; cargo lambda watch adds processes under load") {
        return;
    }
    let (a, b) = (TestKey::rsa_a(), TestKey::rsa_b());
    // Slow answers, so that the concurrent requests below overlap the refetch.
    let provider = JwksServer::start(&[&a], Duration::from_millis(300)).await;
    let s = start(&provider).await;
    // Warm: the server (each function process, on the lambda backend) has fetched the set.
    let (status, body) = upload(&s, &a.sign(&claims("alice"))).await;
    assert_eq!(status, 201, "{body}");
    let before = provider.fetches();
    assert!(before >= 1);

    // The provider rotates to key b; ten users upload with it at once.
    provider.serve(&[&a, &b]);
    let tokens = (0..10)
        .map(|i| b.sign(&claims(&format!("user-{i}"))))
        .collect();
    for (status, body) in concurrently(&s, tokens).await {
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(provider.fetches() - before, 1, "one refetch for all ten");

    // A flood of tokens naming keys that do not exist: refused, and no fetch within the interval.
    let flood: Vec<_> = (0..30)
        .map(|i| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(format!("made-up-{i}"));
            a.sign_with(header, &claims("mallory"))
        })
        .collect();
    for (status, body) in concurrently(&s, flood).await {
        assert_eq!(status, 401, "{body}");
        assert_eq!(
            body,
            not_authenticated(
                "the token's key id (kid) is not one of the identity provider's keys"
            )
        );
    }
    assert_eq!(provider.fetches() - before, 1, "the flood fetched nothing");
    // The keys held still work.
    let (status, body) = upload(&s, &b.sign(&claims("alice"))).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_key_set_that_cannot_be_fetched_stops_the_start() {
    if skip_on_lambda("media-local's own start-up") {
        return;
    }
    let provider = JwksServer::start(&[&TestKey::ec_a()], Duration::ZERO).await;
    provider.fail(true);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path().to_path_buf());
    config.backend = media_shared::wiring::Backend::Local {
        data_dir: dir.path().to_path_buf(),
    };
    config.idp = Some(idp(&provider));
    let e = match media_local::server::start(config).await {
        Ok(_) => panic!("started without keys"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("MEDIA_JWT_JWKS_URL"), "{e}");
    assert!(e.contains("503"), "{e}");
}
