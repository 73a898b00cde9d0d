//! media-local's `/metrics`: off by default, never on the API's port, and when `MEDIA_METRICS_LISTEN`
//! gives it a listener, the Prometheus text there counts what the API did (the same events the
//! functions write as EMF). Not on the lambda backend: the functions have no `/metrics` (their
//! metrics are EMF, `shared/tests/lambda_events.rs`).

mod common;

use std::collections::BTreeMap;

use common::*;
use media_shared::metrics::Metric;

fn with_metrics(c: &mut media_local::config::LocalConfig) {
    c.metrics_listen = Some(([127, 0, 0, 1], 0).into());
}

fn metrics_url(s: &TestServer) -> String {
    let m = s.running().metrics.as_ref().expect("a metrics listener");
    format!("http://{}/metrics", m.addr)
}

/// The samples of a Prometheus text exposition (0.0.4): `name{labels}` -> value. Panics on any line
/// that is neither a `#` comment nor a sample, so a malformed exposition fails the test.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

async fn scrape(s: &TestServer) -> (String, BTreeMap<String, f64>) {
    let r = s.client.get(metrics_url(s)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_served_on_the_api_port() {
    if skip_on_lambda("media-local's /metrics") {
        return;
    }
    let s = TestServer::start().await;
    assert!(s.running().metrics.is_none());
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let s = TestServer::start_with(with_metrics).await;
    // Enabled, it has its own address; the API's port still has no such path, so a reverse proxy in
    // front of the API never publishes it.
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, _) = json_of(r).await;
    assert_eq!(status, 404);
    assert_eq!(scrape(&s).await.1["media_uploads_completed_total"], 0.0);
    // And the metrics address serves nothing else.
    let api_on_metrics = metrics_url(&s).replace("/metrics", "/api/v2/media/1/");
    let r = s.client.get(api_on_metrics).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_upload_over_http_is_counted_on_the_metrics_listener() {
    if skip_on_lambda("media-local's /metrics") {
        return;
    }
    let s = TestServer::start_with(with_metrics).await;
    let (_, before) = scrape(&s).await;
    assert_eq!(before["media_chunks_received_total"], 0.0);

    let file = png(120, 80, 7);
    let chunk = file.len() / 2 + 1;
    let id = s.upload("alice", &file, chunk).await;
    let (status, v) = s.complete("alice", &id, &"0".repeat(32), None).await;
    assert_eq!((status, code(&v)), (400, "md5_mismatch"));
    let (status, v) = s.complete("alice", &id, &md5_hex(&file), None).await;
    assert_eq!(status, 201, "{v}");
    // Refused by a handler, and refused from the head before any handler ran.
    let (status, _) = s.get_media("alice", 987_654).await;
    assert_eq!(status, 404);
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/chunk/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An upload abandoned after 1000 bytes, swept two days later by the server's App.
    let other = png(64, 64, 3);
    let range = format!("bytes 0-999/{}", other.len());
    let (status, _) = s
        .chunk("bob", None, Some(range), other[..1000].to_vec())
        .await;
    assert_eq!(status, 201);
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let report = media_shared::cleanup::sweep(s.app(), later).await.unwrap();
    assert_eq!(report.released, 1);

    let (text, m) = scrape(&s).await;
    // Every metric of the code's one list is there (the refusals once there is one to label).
    for metric in Metric::ALL {
        let name = media_local::metrics::prometheus_name(metric);
        assert!(
            text.contains(&format!("# TYPE {name}")),
            "{name} missing:\n{text}"
        );
    }
    let expect = [
        ("media_chunks_received_total", 3.0),
        ("media_bytes_received_total", (file.len() + 1000) as f64),
        ("media_uploads_completed_total", 1.0),
        ("media_md5_mismatches_total", 1.0),
        ("media_requests_refused_total{code=\"md5_mismatch\"}", 1.0),
        ("media_requests_refused_total{code=\"not_found\"}", 1.0),
        (
            "media_requests_refused_total{code=\"not_authenticated\"}",
            1.0,
        ),
        ("media_uploads_expired_total", 1.0),
        ("media_bytes_freed_total", 1000.0),
        // Thumbnails are made inline by media-local.
        ("media_thumbnails_made_total", 1.0),
        ("media_thumbnails_failed_total", 0.0),
        // The refused chunk never reached the chunk handler: three timed.
        ("media_chunk_handler_seconds_count", 3.0),
        ("media_chunk_handler_seconds_bucket{le=\"+Inf\"}", 3.0),
    ];
    for (series, want) in expect {
        assert_eq!(m.get(series), Some(&want), "{series}: {m:#?}");
    }
    let refusals = m
        .keys()
        .filter(|k| k.starts_with("media_requests_refused_total"))
        .count();
    assert_eq!(refusals, 3, "{m:#?}");
}
