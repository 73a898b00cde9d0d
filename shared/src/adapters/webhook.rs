//! The platform's events POSTed to an operator's webhook (`ports::EventSink`), media-local's
//! counterpart of the EventBridge bus: `MEDIA_WEBHOOK_URL`, signed with `MEDIA_WEBHOOK_SECRET`.
//!
//! # Never in the user's way
//!
//! `publish` only puts the event on a bounded queue (`QUEUE_LEN` events) and returns: a request never
//! waits for the receiver and never fails because of it. One background task delivers the queue in
//! order, one event at a time, each with a timeout per attempt and a few attempts with a doubling
//! backoff (a 5xx, 408, 429, a timeout or no connection is retried; any other 4xx is the receiver
//! refusing the event and is not). An event that exhausts its attempts is logged and dropped. While
//! the receiver is slow or down the queue fills up; then new events are dropped and logged: memory
//! stays bounded whatever the receiver does. Delivery is at least once as long as the process lives
//! and the queue has room (an answer lost after the receiver took the event means it comes again):
//! receivers deduplicate on the body's `id`.
//!
//! # What the receiver gets and how it checks it
//!
//! `POST` with `Content-Type: application/json`; the body is `PlatformEvent::envelope`: `version`,
//! `id` (one per event, the same on every attempt), `detail-type`, `source` (`media-upload`),
//! `time`, `detail`. Headers:
//!
//! - `X-Media-Event-Id`: the body's `id`;
//! - `X-Media-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the lowercase hex
//!   HMAC-SHA256, keyed with the secret, of the bytes `<t>` `.` `<body>`: the timestamp as written
//!   in the header, a full stop, and the exact body bytes as received (not re-serialised JSON).
//!   Each attempt is signed afresh with the time it is sent.
//!
//! The receiver recomputes the HMAC over the raw body, compares it in constant time, and refuses a
//! `t` more than a few minutes from its own clock (`SIGNATURE_TOLERANCE_SECS` is what [`verify`]
//! allows): a captured request cannot be replayed later, and one replayed within the window carries
//! an `id` already seen. For example in Python:
//!
//! ```text
//! t, v1 = (dict(p.split("=", 1) for p in header.split(",")).get(k) for k in ("t", "v1"))
//! mac = hmac.new(secret, t.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest(mac, v1) and abs(time.time() - int(t)) <= 300
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::{ConfigError, Env};
use crate::domain::events::PlatformEvent;
use crate::ports::{EventSink, Undelivered};

/// Events waiting for delivery at most; beyond, new ones are dropped (and logged). A few KB each.
pub const QUEUE_LEN: usize = 1000;
/// How far a signature's timestamp may be from the receiver's clock in [`verify`].
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
pub const SIGNATURE_HEADER: &str = "x-media-signature";
pub const EVENT_ID_HEADER: &str = "x-media-event-id";

type HmacSha256 = Hmac<Sha256>;

/// Where and how to deliver.
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub secret: String,
    /// Events held at most (`QUEUE_LEN`).
    pub queue_len: usize,
    /// Attempts per event, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub first_backoff: Duration,
    /// How long one attempt may take, connecting included.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_str())
            .field("secret", &"<hidden>")
            .field("queue_len", &self.queue_len)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl WebhookConfig {
    /// The defaults for `url` and `secret`: 1000 queued events, 4 attempts 1 s, 2 s, 4 s apart,
    /// 10 s each.
    pub fn new(url: url::Url, secret: impl Into<String>) -> Self {
        WebhookConfig {
            url,
            secret: secret.into(),
            queue_len: QUEUE_LEN,
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    /// `MEDIA_WEBHOOK_URL` (an http or https URL; unset or empty: no webhook) and
    /// `MEDIA_WEBHOOK_SECRET` (required with it, at least 16 characters: an unsigned event is one
    /// the receiver cannot trust).
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let Some(raw) = env
            .get("MEDIA_WEBHOOK_URL")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let url = url::Url::parse(&raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError {
                var: "MEDIA_WEBHOOK_URL",
                message: format!("{raw:?} is not an http:// or https:// URL"),
            })?;
        let secret = env.get("MEDIA_WEBHOOK_SECRET").unwrap_or_default();
        if secret.chars().count() < 16 {
            return Err(ConfigError {
                var: "MEDIA_WEBHOOK_SECRET",
                message: "required with MEDIA_WEBHOOK_URL, at least 16 characters (the key of the \
                          events' HMAC-SHA256 signature)"
                    .into(),
            });
        }
        Ok(Some(Self::new(url, secret)))
    }
}

/// What the webhook did so far (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Events waiting in the queue now.
    pub queued: usize,
    /// Events the receiver took (a 2xx answer).
    pub delivered: u64,
    /// Events given up after their attempts, or refused by the receiver.
    pub failed: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    /// Queued or being delivered.
    pending: AtomicUsize,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// One event, serialised once: every attempt sends the same bytes.
struct Queued {
    id: String,
    detail_type: &'static str,
    body: Bytes,
}

/// The sink; cheap to share (`Arc`). Its delivery task ends when the sink is dropped and the queue
/// is empty.
pub struct Webhook {
    tx: mpsc::Sender<Queued>,
    counters: Arc<Counters>,
}

impl Webhook {
    /// Starts the delivery task (on the current tokio runtime).
    pub fn start(config: WebhookConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_len.max(1));
        let counters = Arc::new(Counters::default());
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // The body goes where the operator said, never to wherever an answer points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("media-local")
            .build()
            .expect("a reqwest client with rustls");
        tokio::spawn(deliver_all(rx, client, config, counters.clone()));
        Webhook { tx, counters }
    }

    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            queued: self.tx.max_capacity() - self.tx.capacity(),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Waits until every event handed over so far is delivered or given up, for at most `limit`
    /// (a one-shot process such as `media-local sweep` before it exits). Answers whether it got there.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.counters.pending.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

#[async_trait]
impl EventSink for Webhook {
    /// Queues the events and returns at once; a full queue drops (and logs) what does not fit.
    async fn publish(&self, events: &[PlatformEvent]) -> Result<(), Undelivered> {
        for event in events {
            let id = uuid::Uuid::new_v4().to_string();
            let body = event.envelope(&id, time::OffsetDateTime::now_utc());
            let queued = Queued {
                id,
                detail_type: event.detail_type(),
                body: Bytes::from(body.to_string()),
            };
            self.counters.pending.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.tx.try_send(queued) {
                self.counters.pending.fetch_sub(1, Ordering::AcqRel);
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let q = e.into_inner();
                tracing::warn!(
                    event_id = q.id,
                    detail_type = q.detail_type,
                    dropped,
                    "webhook queue full: event dropped"
                );
            }
        }
        Ok(())
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Queued>,
    client: reqwest::Client,
    config: WebhookConfig,
    counters: Arc<Counters>,
) {
    while let Some(event) = rx.recv().await {
        let outcome = deliver(&client, &config, &event).await;
        match outcome {
            Ok(()) => counters.delivered.fetch_add(1, Ordering::Relaxed),
            Err(reason) => {
                tracing::error!(
                    event_id = event.id,
                    detail_type = event.detail_type,
                    reason,
                    "webhook event given up"
                );
                counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        counters.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One event, attempt after attempt, until the receiver takes it, refuses it, or the attempts run out.
async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    event: &Queued,
) -> Result<(), String> {
    let mut backoff = config.first_backoff;
    let mut last = String::new();
    for attempt in 1..=config.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let sent = client
            .post(config.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, &event.id)
            .header(
                SIGNATURE_HEADER,
                sign(config.secret.as_bytes(), now, &event.body),
            )
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status();
                last = format!("answered {status}");
                let retry = status.is_server_error()
                    || status == http::StatusCode::REQUEST_TIMEOUT
                    || status == http::StatusCode::TOO_MANY_REQUESTS;
                if !retry {
                    return Err(format!("{last}: refused, not retried"));
                }
            }
            Err(e) => last = format!("{e}"),
        }
        tracing::warn!(
            event_id = event.id,
            attempt,
            reason = last,
            "webhook delivery failed"
        );
    }
    Err(format!("{} attempts, last: {last}", config.attempts.max(1)))
}

/// The `X-Media-Signature` value for `body` sent at `unix_secs` (the module doc's scheme).
pub fn sign(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac(secret, unix_secs, body))
    )
}

fn mac(secret: &[u8], unix_secs: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// What a receiver does with `X-Media-Signature` (for Rust receivers and the tests): `Ok` if it
/// signs exactly `body` with `secret` and its time is within `SIGNATURE_TOLERANCE_SECS` of
/// `now_unix_secs`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix_secs: i64,
) -> Result<(), &'static str> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("malformed signature header");
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&v1)
        .map_err(|_| "signature does not match")?;
    if (now_unix_secs - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err("signature too old (or from the future): a replay?");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently: python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec-0123456789abcdef",
    /// b"1764685244." + b"{\"id\":\"e1\"}", hashlib.sha256).hexdigest())'
    const VECTOR: &str =
        "t=1764685244,v1=76dc32ca3e22090aeca1f0f398b156d6676b44cdcc7ce8465c19006d8e290294";

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        let secret = b"whsec-0123456789abcdef";
        let body = br#"{"id":"e1"}"#;
        assert_eq!(sign(secret, 1764685244, body), VECTOR);
        assert_eq!(verify(secret, VECTOR, body, 1764685244 + 10), Ok(()));
    }

    #[test]
    fn verify_refuses_other_bodies_keys_times_and_garbage() {
        let secret = b"whsec-0123456789abcdef";
        let body = br#"{"id":"e1"}"#;
        let now = 1764685244;
        assert!(verify(secret, VECTOR, br#"{"id":"e2"}"#, now).is_err());
        assert!(verify(b"another-secret-0000", VECTOR, body, now).is_err());
        assert!(verify(secret, VECTOR, body, now + SIGNATURE_TOLERANCE_SECS + 1).is_err());
        assert!(verify(secret, VECTOR, body, now - SIGNATURE_TOLERANCE_SECS - 1).is_err());
        // The timestamp is signed: moving it forward breaks the signature.
        let moved = VECTOR.replace("t=1764685244", "t=1764685999");
        assert!(verify(secret, &moved, body, 1764685999).is_err());
        for garbage in ["", "t=1", "v1=00", "t=x,v1=zz", "t=1764685244,v1="] {
            assert!(verify(secret, garbage, body, now).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn configuration() {
        assert!(WebhookConfig::from_env(&[("OTHER", "x")])
            .unwrap()
            .is_none());
        assert!(WebhookConfig::from_env(&[("MEDIA_WEBHOOK_URL", " ")])
            .unwrap()
            .is_none());
        let e = WebhookConfig::from_env(&[("MEDIA_WEBHOOK_URL", "http://127.0.0.1:9/hook")])
            .unwrap_err();
        assert_eq!(e.var, "MEDIA_WEBHOOK_SECRET");
        let e = WebhookConfig::from_env(&[
            ("MEDIA_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("MEDIA_WEBHOOK_SECRET", "short"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "MEDIA_WEBHOOK_SECRET");
        for bad in ["ftp://h/x", "not a url", "/relative"] {
            let e = WebhookConfig::from_env(&[
                ("MEDIA_WEBHOOK_URL", bad),
                ("MEDIA_WEBHOOK_SECRET", "0123456789abcdef"),
            ])
            .unwrap_err();
            assert_eq!(e.var, "MEDIA_WEBHOOK_URL", "{bad}");
        }
        let c = WebhookConfig::from_env(&[
            ("MEDIA_WEBHOOK_URL", "https://hooks.example/media"),
            ("MEDIA_WEBHOOK_SECRET", "0123456789abcdef"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.url.as_str(), "https://hooks.example/media");
        assert_eq!(c.queue_len, QUEUE_LEN);
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "{c:?}");
    }
}
