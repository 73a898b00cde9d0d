//! media-local's metrics sink: the events the functions write as EMF (`media_shared::metrics`), kept
//! as Prometheus counters and served in the Prometheus text format (0.0.4) at `/metrics`.
//!
//! # Who may read them: off by default, on an address of its own
//!
//! The counters tell how much is uploaded, how often and what is refused: traffic volumes an
//! operator may not want to publish. So there is no `/metrics` on the API's port at all (a 404 like
//! any unknown path), and nothing is counted unless `MEDIA_METRICS_LISTEN` names an address for a
//! second listener that serves only `/metrics`. A separate address rather than a loopback check on
//! the API's port: behind a reverse proxy on the same host every API request comes from loopback,
//! so such a check would publish the counters to whoever the proxy serves; a listener the proxy
//! does not forward to cannot. It has no authentication: bind it to loopback
//! (`127.0.0.1:9464`) or to a network only the scraper reaches.
//!
//! Names: `media_` + the CloudWatch name in snake case, counters ending in `_total`
//! (`ChunksReceived` -> `media_chunks_received_total`, `RequestsRefused` with a `code` label);
//! `ChunkHandlerTime` is the histogram `media_chunk_handler_seconds` (Prometheus counts time in
//! seconds, CloudWatch here in milliseconds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use media_shared::metrics::{Event, Metric, Recorder};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

/// The path the metrics listener answers.
pub const PATH: &str = "/metrics";

type CodeLabel = [(&'static str, &'static str); 1];

pub struct Prometheus {
    registry: Registry,
    counters: BTreeMap<Metric, Counter>,
    refused: Family<CodeLabel, Counter>,
    chunk_seconds: Histogram,
}

impl Default for Prometheus {
    fn default() -> Self {
        Self::new()
    }
}

impl Prometheus {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut counters = BTreeMap::new();
        let refused = Family::<CodeLabel, Counter>::default();
        // 5 ms to about 10 s: a chunk's write to disk or S3, and the lease's range beyond.
        let chunk_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        for metric in Metric::ALL {
            let name = prometheus_name(metric);
            match metric {
                Metric::RequestsRefused => registry.register(name, metric.help(), refused.clone()),
                Metric::ChunkHandlerTime => registry.register_with_unit(
                    name,
                    metric.help(),
                    Unit::Seconds,
                    chunk_seconds.clone(),
                ),
                _ => {
                    let counter = Counter::default();
                    registry.register(name, metric.help(), counter.clone());
                    counters.insert(metric, counter);
                }
            }
        }
        Prometheus {
            registry,
            counters,
            refused,
            chunk_seconds,
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// `media_` and the CloudWatch name in snake case (the encoder adds `_total` to counters); the
/// chunk timing without its `Time` (the encoder adds `_seconds`).
pub fn prometheus_name(metric: Metric) -> String {
    let name = match metric {
        Metric::ChunkHandlerTime => "ChunkHandler",
        m => m.name(),
    };
    let mut out = String::from("media");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl Recorder for Prometheus {
    fn record(&self, event: Event) {
        for (metric, value) in event.values() {
            match (metric, event) {
                (Metric::RequestsRefused, Event::Refused { code }) => {
                    self.refused.get_or_create(&[("code", code)]).inc();
                }
                (Metric::ChunkHandlerTime, _) => self.chunk_seconds.observe(value / 1000.0),
                _ => {
                    if let Some(c) = self.counters.get(&metric) {
                        c.inc_by(value as u64);
                    }
                }
            }
        }
    }
}

/// The metrics listener, stopped when dropped (with the server's `Running`).
pub struct MetricsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `PATH` from `sink` there (and nothing else).
pub async fn start(addr: SocketAddr, sink: Arc<Prometheus>) -> anyhow::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding MEDIA_METRICS_LISTEN {addr}"))?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route(PATH, get(scrape))
        .with_state(sink);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(MetricsServer { addr, task })
}

async fn scrape(State(sink): State<Arc<Prometheus>>) -> impl axum::response::IntoResponse {
    (
        [(http::header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        sink.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            prometheus_name(Metric::ChunksReceived),
            "media_chunks_received"
        );
        assert_eq!(
            prometheus_name(Metric::Md5Mismatches),
            "media_md5_mismatches"
        );
        assert_eq!(
            prometheus_name(Metric::ChunkHandlerTime),
            "media_chunk_handler"
        );
    }

    #[test]
    fn events_become_counters() {
        let p = Prometheus::new();
        p.record(Event::ChunkStored { bytes: 10 });
        p.record(Event::Refused { code: "not_found" });
        p.record(Event::ChunkHandled {
            elapsed: std::time::Duration::from_millis(3),
        });
        let text = p.render();
        assert!(text.contains("\nmedia_chunks_received_total 1\n"), "{text}");
        assert!(text.contains("\nmedia_bytes_received_total 10\n"), "{text}");
        assert!(
            text.contains("media_requests_refused_total{code=\"not_found\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("media_chunk_handler_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("media_chunk_handler_seconds_count 1\n"),
            "{text}"
        );
    }
}
