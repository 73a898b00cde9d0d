//! The identity provider's key set (`api::jwks`) against a loopback JWKS server: when it is fetched
//! again (unknown key id, bounded in rate, shared by concurrent misses), what a failed fetch does, and
//! the claim rules of `auth::Verifier` for the provider's tokens that the HTTP tests
//! (local/tests/jwks_tokens.rs) do not go through one by one.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, Header};
use media_shared::api::auth::{Caller, Hs256, IdpConfig, IdpTokens, Verifier};
use media_shared::api::jwks::Jwks;
use media_testkit::jwks::{claims, now, JwksServer, TestKey, AUDIENCE, ISSUER, OTHER_AUDIENCE};
use serde_json::json;

fn config(server: &JwksServer) -> IdpConfig {
    IdpConfig {
        jwks_url: server.url.clone(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into(), OTHER_AUDIENCE.into()],
    }
}

async fn verifier(server: &JwksServer) -> Verifier {
    Verifier::new(None, Some(IdpTokens::start(&config(server)).await.unwrap()))
}

async fn caller(verifier: &Verifier, token: &str) -> Caller {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    verifier.caller(&headers).await
}

async fn refused(verifier: &Verifier, token: &str) -> String {
    match caller(verifier, token).await {
        Caller::Invalid(why) => why,
        other => panic!("accepted: {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_set_again_once_and_concurrent_misses_share_that_fetch() {
    let (a, b) = (TestKey::rsa_a(), TestKey::ec_a());
    // Each answer takes 300 ms, so that the misses below overlap the fetch.
    let server = JwksServer::start(&[&a], Duration::from_millis(300)).await;
    let keys = Arc::new(Jwks::fetch(&server.url).await.unwrap());
    assert_eq!(server.fetches(), 1);
    assert!(keys.key("rsa-a").await.is_some());
    assert_eq!(server.fetches(), 1, "a known key id fetches nothing");

    // The provider rotates: twenty requests with the new key id at once.
    server.serve(&[&a, &b]);
    let misses: Vec<_> = (0..20)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key("ec-a").await.is_some() })
        })
        .collect();
    for miss in misses {
        assert!(miss.await.unwrap(), "every request finds the new key");
    }
    assert_eq!(server.fetches(), 2, "one fetch for all of them");

    // A flood of made-up key ids within the interval: refused, and no fetch at all.
    let flood: Vec<_> = (0..50)
        .map(|i| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key(&format!("made-up-{i}")).await.is_none() })
        })
        .collect();
    for f in flood {
        assert!(f.await.unwrap());
    }
    assert_eq!(server.fetches(), 2, "the interval bounds the fetches");
    assert!(keys.key("rsa-a").await.is_some());
}

#[tokio::test]
async fn after_the_interval_a_miss_fetches_again_and_a_failed_fetch_keeps_the_keys_held() {
    let (a, b) = (TestKey::rsa_a(), TestKey::rsa_b());
    let server = JwksServer::start(&[&a], Duration::ZERO).await;
    let interval = Duration::from_millis(400);
    let keys = Jwks::fetch_with(&server.url, interval).await.unwrap();
    assert!(keys.key("unknown-1").await.is_none());
    assert_eq!(server.fetches(), 2);
    // Rotated right after that fetch: not seen until the interval has passed.
    server.serve(&[&a, &b]);
    assert!(keys.key("rsa-b").await.is_none());
    assert_eq!(server.fetches(), 2);
    tokio::time::sleep(interval).await;
    assert!(keys.key("rsa-b").await.is_some());
    assert_eq!(server.fetches(), 3);

    // The provider fails: the next refetch is attempted, fails, and the keys held still verify.
    server.fail(true);
    tokio::time::sleep(interval).await;
    assert!(keys.key("unknown-2").await.is_none());
    assert_eq!(server.fetches(), 4);
    assert!(keys.key("rsa-a").await.is_some());
    assert!(keys.key("rsa-b").await.is_some());
}

#[tokio::test]
async fn the_first_fetch_fails_with_the_reason() {
    let server = JwksServer::start(&[&TestKey::ec_a()], Duration::ZERO).await;
    server.fail(true);
    let e = Jwks::fetch(&server.url).await.err().expect("503");
    assert!(format!("{e:#}").contains("503"), "{e:#}");
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let e = Jwks::fetch(&closed).await.err().expect("refused");
    assert!(format!("{e:#}").contains("fetching the key set"), "{e:#}");
    // A set with nothing usable in it.
    server.fail(false);
    server.serve(&[]);
    let e = Jwks::fetch(&server.url).await.err().expect("empty");
    assert!(format!("{e:#}").contains("no usable signing key"), "{e:#}");
}

#[tokio::test]
async fn the_providers_tokens_are_checked_as_the_authorizer_checks_them() {
    let (rsa, ec) = (TestKey::rsa_a(), TestKey::ec_a());
    let server = JwksServer::start(&[&rsa, &ec], Duration::ZERO).await;
    let v = verifier(&server).await;
    let alice = || Caller::User("alice".into());

    assert_eq!(caller(&v, &rsa.sign(&claims("alice"))).await, alice());
    assert_eq!(caller(&v, &ec.sign(&claims("alice"))).await, alice());
    // Any of the audiences, in an array too; `client_id` only stands in for a missing `aud`.
    let with = |change: serde_json::Value| {
        let mut c = claims("alice");
        for (k, val) in change.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        c
    };
    for ok in [
        json!({"aud": OTHER_AUDIENCE}),
        json!({"aud": ["elsewhere", AUDIENCE]}),
        json!({"aud": null, "client_id": AUDIENCE}),
        json!({"nbf": now() - 60, "iat": now() - 60}),
    ] {
        assert_eq!(
            caller(&v, &rsa.sign(&with(ok.clone()))).await,
            alice(),
            "{ok}"
        );
    }
    let not_for_us =
        "the token is not meant for this API: its audience (aud, or client_id) is not accepted";
    for (change, why) in [
        (
            json!({"aud": "elsewhere", "client_id": AUDIENCE}),
            not_for_us,
        ),
        (json!({"aud": []}), not_for_us),
        (json!({"aud": null}), not_for_us),
        (
            json!({"iss": "https://idp.test.example"}),
            "the token's issuer (iss) is not the one this API trusts",
        ),
        (json!({"iss": null}), "the token has no issuer (iss)"),
        (json!({"exp": null}), "the token has no expiry (exp)"),
        (json!({"exp": now() - 60}), "the token has expired"),
        (json!({"nbf": now() + 600}), "the token is not valid yet"),
        (
            json!({"iat": now() + 600}),
            "the token says it was issued in the future (iat)",
        ),
        (json!({"sub": " "}), "the token has no subject (sub)"),
        (json!({"sub": null}), "the token has no subject (sub)"),
    ] {
        assert_eq!(
            refused(&v, &ec.sign(&with(change.clone()))).await,
            why,
            "{change}"
        );
    }

    // Header tricks: no kid, another key's kid, an algorithm the key is not for, none at all.
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    assert_eq!(
        refused(&v, &rsa.sign_with(no_kid, &claims("alice"))).await,
        "the token has no key id (kid) in its header"
    );
    let mut other_kid = Header::new(Algorithm::RS256);
    other_kid.kid = Some("ec-a".into());
    assert_eq!(
        refused(&v, &rsa.sign_with(other_kid, &claims("alice"))).await,
        "the token's algorithm is not one its key is for"
    );
    let mut wrong_sig = Header::new(Algorithm::RS256);
    wrong_sig.kid = Some("rsa-b".into()); // unknown here: the set only has rsa-a and ec-a
    assert_eq!(
        refused(&v, &rsa.sign_with(wrong_sig, &claims("alice"))).await,
        "the token's key id (kid) is not one of the identity provider's keys"
    );
    let b = TestKey::rsa_b();
    let mut forged = Header::new(Algorithm::RS256);
    forged.kid = Some("rsa-a".into());
    assert_eq!(
        refused(&v, &b.sign_with(forged, &claims("alice"))).await,
        "the token's signature does not verify"
    );
    assert_eq!(
        refused(&v, &media_testkit::jwks::unsigned(&claims("alice"))).await,
        "the token's algorithm (\"none\") is not accepted"
    );
    // The public key as an HMAC secret: HS256 is never checked against the provider's keys.
    let confused = Hs256::new(rsa.public_pem).issue("alice", 600).unwrap();
    assert!(refused(&v, &confused).await.contains("HS256"));
    // With a secret configured too, HS256 goes to the secret, and the public key is not it.
    let both = Verifier::new(
        Some(Hs256::new(b"the-secret")),
        Some(IdpTokens::start(&config(&server)).await.unwrap()),
    );
    assert_eq!(
        refused(&both, &confused).await,
        "the token's signature does not verify"
    );
    let genuine = Hs256::new(b"the-secret").issue("bob", 600).unwrap();
    assert_eq!(caller(&both, &genuine).await, Caller::User("bob".into()));
    assert_eq!(caller(&both, &rsa.sign(&claims("alice"))).await, alice());
    // An HS256-only verifier names what is missing for the provider's tokens.
    let hs_only = Verifier::new(Some(Hs256::new(b"the-secret")), None);
    assert!(refused(&hs_only, &rsa.sign(&claims("alice")))
        .await
        .contains("MEDIA_JWT_JWKS_URL"));
}

#[test]
fn the_provider_is_configured_by_all_three_variables_or_none() {
    let c = IdpConfig::from_env(&[
        (
            "MEDIA_JWT_JWKS_URL",
            "https://idp.example/.well-known/jwks.json",
        ),
        ("MEDIA_JWT_ISSUER", "https://idp.example/"),
        ("MEDIA_JWT_AUDIENCE", "media-api, media-web,"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(c.issuer, "https://idp.example/", "kept exactly");
    assert_eq!(c.audiences, ["media-api", "media-web"]);
    assert_eq!(IdpConfig::from_env(&[("OTHER", "x")]).unwrap(), None);
    for (env, var) in [
        (
            [
                ("MEDIA_JWT_ISSUER", "https://idp.example/"),
                ("MEDIA_JWT_AUDIENCE", "a"),
            ],
            "MEDIA_JWT_JWKS_URL",
        ),
        (
            [
                ("MEDIA_JWT_JWKS_URL", "https://idp.example/jwks"),
                ("MEDIA_JWT_AUDIENCE", "a"),
            ],
            "MEDIA_JWT_ISSUER",
        ),
        (
            [
                ("MEDIA_JWT_JWKS_URL", "https://idp.example/jwks"),
                ("MEDIA_JWT_ISSUER", "i"),
            ],
            "MEDIA_JWT_AUDIENCE",
        ),
        (
            [
                ("MEDIA_JWT_JWKS_URL", "idp.example/jwks"),
                ("MEDIA_JWT_ISSUER", "i"),
            ],
            "MEDIA_JWT_JWKS_URL",
        ),
    ] {
        assert_eq!(IdpConfig::from_env(&env).unwrap_err().var, var);
    }
}
