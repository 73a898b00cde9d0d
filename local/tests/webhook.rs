//! media-local's webhook (`MEDIA_WEBHOOK_URL`): the platform's events POSTed to a loopback receiver
//! in this test, which checks each signature the way the module doc of
//! `media_shared::adapters::webhook` tells receivers to; a receiver that answers 500 once gets the
//! event again; a receiver that never answers delays no API answer and fills a bounded queue, whose
//! overflow is dropped. Runs on media-local (embedded and AWS backends); the function binaries have no
//! webhook (on AWS the events go to EventBridge: shared/tests/stream_events.rs).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::HeaderMap;
use media_shared::adapters::webhook::{
    self, Webhook, WebhookConfig, EVENT_ID_HEADER, SIGNATURE_HEADER,
};
use media_shared::domain::events::PlatformEvent;
use media_shared::ports::EventSink;
use serde_json::{json, Value};

const HOOK_SECRET: &str = "whsec-test-0123456789";

/// What the receiver got, in order: each request's headers and exact body.
#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// How many of the first requests get a 500.
    fail_first: Arc<AtomicUsize>,
}

impl Received {
    fn all(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (or fails after 20 s).
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.all();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests: {:?}",
                got.len(),
                bodies(&got)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn bodies(got: &[(HeaderMap, Bytes)]) -> Vec<Value> {
    got.iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect()
}

/// A receiver on a loopback port: POST /hook records the request and answers 500 for the first
/// `fail_first` requests, 204 afterwards.
async fn receiver(fail_first: usize) -> (url::Url, Received) {
    let received = Received::default();
    received.fail_first.store(fail_first, Ordering::SeqCst);
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let mut requests = state.requests.lock().unwrap();
                requests.push((headers, body));
                if requests.len() <= state.fail_first.load(Ordering::SeqCst) {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        url::Url::parse(&format!("http://{addr}/hook")).unwrap(),
        received,
    )
}

/// A receiver that accepts connections and never answers (nor closes them).
async fn dead_receiver() -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    url::Url::parse(&format!("http://{addr}/hook")).unwrap()
}

fn hook(url: url::Url) -> WebhookConfig {
    let mut c = WebhookConfig::new(url, HOOK_SECRET);
    c.first_backoff = Duration::from_millis(100);
    c
}

/// The receiver's check: the signature of the exact body, a recent timestamp, the id header.
fn checked(headers: &HeaderMap, body: &[u8]) -> Value {
    let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    webhook::verify(HOOK_SECRET.as_bytes(), signature, body, now)
        .unwrap_or_else(|e| panic!("{e}: {signature}"));
    // The same header does not sign another body, nor does another secret give it.
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(webhook::verify(HOOK_SECRET.as_bytes(), signature, &tampered, now).is_err());
    assert!(webhook::verify(b"another-secret-00000", signature, body, now).is_err());
    assert_eq!(headers["content-type"], "application/json");
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(headers[EVENT_ID_HEADER].to_str().unwrap(), event["id"]);
    assert_eq!(event["source"], "media-upload");
    event
}

#[tokio::test]
async fn events_reach_the_webhook_signed_and_a_500_is_retried() {
    if skip_on_lambda("the functions have no webhook; they publish on EventBridge") {
        return;
    }
    // The first request is answered 500: the same event comes again.
    let (url, received) = receiver(1).await;
    let s = TestServer::start_with(|c| c.webhook = Some(hook(url))).await;

    let image = png(24, 16, 3);
    let id = s.upload("alice", &image, 1000).await;
    let (st, photo) = s.complete("alice", &id, &md5_hex(&image), None).await;
    assert_eq!(st, 201, "{photo}");
    let got = received.wait_for(2).await;
    assert_eq!(got[0].1, got[1].1, "the retry sends the same bytes");
    let first = checked(&got[0].0, &got[0].1);
    let retry = checked(&got[1].0, &got[1].1);
    assert_eq!(first["id"], retry["id"]);
    assert_eq!(first["detail-type"], "Media Created");
    // The detail is the Media JSON the client got, plus its owner.
    let mut expected = photo.clone();
    expected["owner"] = json!("alice");
    assert_eq!(first["detail"], expected);

    // An embed created, the image deleted.
    let (st, embed) = json_of(
        s.client
            .post(s.url("/api/v2/media/"))
            .header("authorization", s.auth("bob"))
            .json(&json!({"type": "embed", "embed": {"embed_type": "video", "embed_id": "v1"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{embed}");
    let photo_id = photo["id"].as_u64().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v2/media/{photo_id}/")))
        .header("authorization", s.auth("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // An unfinished upload, expired and swept by the server's own App (the periodic sweep's).
    let doc = png(64, 64, 9);
    let half = s.upload("carol", &doc[..1000], 1000).await;
    let later = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(s.app().limits.upload_ttl_secs as i64 + 60);
    let report = media_shared::cleanup::sweep(s.app(), later).await.unwrap();
    assert_eq!(report.released, 1, "{report:?}");

    let got = received.wait_for(5).await;
    let events: Vec<Value> = got[2..].iter().map(|(h, b)| checked(h, b)).collect();
    let summary: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| (e["detail-type"].as_str().unwrap(), &e["detail"]["owner"]))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Media Created", &json!("bob")),
            ("Media Deleted", &json!("alice")),
            ("Upload Expired", &json!("carol")),
        ]
    );
    let mut embed_expected = embed.clone();
    embed_expected["owner"] = json!("bob");
    assert_eq!(events[0]["detail"], embed_expected);
    assert_eq!(events[1]["detail"], expected, "the Media as it was");
    assert_eq!(
        events[2]["detail"]["upload_id"].as_str(),
        Some(half.as_str())
    );
    // Total declared by the Content-Range of the first chunk: the part sent was the whole "file".
    assert_eq!(events[2]["detail"]["size"], 1000);
    // Every event once (the 500 aside): no more requests come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.all().len(), 5, "{:?}", bodies(&received.all()));
}

#[tokio::test]
async fn a_dead_webhook_delays_no_answer() {
    if skip_on_lambda("the functions have no webhook; they publish on EventBridge") {
        return;
    }
    // Every attempt waits 10 s for an answer that never comes: a request that waited for the webhook
    // would take at least that long.
    let url = dead_receiver().await;
    let s = TestServer::start_with(|c| c.webhook = Some(hook(url))).await;
    for i in 0..3u64 {
        let image = png(24, 16, i);
        let id = s.upload("alice", &image, 1000).await;
        let started = Instant::now();
        let (st, media) = s.complete("alice", &id, &md5_hex(&image), None).await;
        let took = started.elapsed();
        assert_eq!(st, 201, "{media}");
        assert!(took < Duration::from_secs(3), "complete took {took:?}");
        let started = Instant::now();
        let r = s
            .client
            .delete(s.url(&format!("/api/v2/media/{}/", media["id"])))
            .header("authorization", s.auth("alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn a_dead_webhook_fills_a_bounded_queue_and_drops_the_rest() {
    let url = dead_receiver().await;
    let mut config = hook(url);
    config.queue_len = 16;
    let sink = Webhook::start(config);
    let event = PlatformEvent::media_created("alice", json!({"id": 1, "title": "x".repeat(1000)}));
    let started = Instant::now();
    for _ in 0..10_000 {
        sink.publish(std::slice::from_ref(&event)).await.unwrap();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "publishing took {took:?}");
    let stats = sink.stats();
    // At most the queue, plus the one event being delivered, is held; the rest was dropped.
    assert!(stats.queued <= 16, "{stats:?}");
    assert!(stats.dropped >= 10_000 - 17, "{stats:?}");
    assert_eq!(stats.delivered + stats.failed, 0, "{stats:?}");
    assert!(!sink.drain(Duration::from_millis(200)).await);
}
