//! A counting HTTP proxy on loopback between media-local (its `AWS_ENDPOINT_URL`) and moto. It
//! forwards every request unchanged (Host included, so signatures stay valid) and counts S3
//! requests per operation, DynamoDB requests per `X-Amz-Target`, the body bytes of S3 PUTs (the
//! decoded length of aws-chunked bodies) and the body bytes of S3 GET answers. It also keeps a log of
//! every call (`Call`) for the cost model (`cost.rs`): item sizes come from DynamoDB's JSON bodies,
//! staged objects' lifetimes from the times of their PUT and DELETE.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;

#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// S3 requests by operation (the SDK's `x-id`, else method and query keys).
    pub s3: BTreeMap<String, u64>,
    /// DynamoDB requests by `X-Amz-Target` operation.
    pub dynamodb: BTreeMap<String, u64>,
    pub s3_put_bytes: u64,
    pub s3_get_bytes: u64,
    pub errors: u64,
    /// Every forwarded call, in the order their answers came.
    pub calls: Vec<Call>,
}

/// One forwarded call, as the cost model needs it.
#[derive(Debug, Clone)]
pub struct Call {
    /// When its answer came, since the proxy started.
    pub at: Duration,
    pub dynamodb: bool,
    /// As counted in `Counts` (DynamoDB: the `X-Amz-Target` operation; S3: `x-id` or method + query).
    pub op: String,
    /// The path without the query (S3 path style: `/bucket/key`).
    pub path: String,
    pub status: u16,
    /// S3 PUT body bytes (decoded length), 0 otherwise.
    pub put_bytes: u64,
    /// S3 GET answer bytes, 0 otherwise.
    pub get_bytes: u64,
    /// The request body of DynamoDB calls and S3 POSTs (DeleteObjects' key list); empty otherwise.
    pub request: Bytes,
    /// The answer body of DynamoDB calls; empty otherwise.
    pub answer: Bytes,
}

impl Counts {
    pub fn s3_total(&self) -> u64 {
        self.s3.values().sum()
    }
    pub fn dynamodb_total(&self) -> u64 {
        self.dynamodb.values().sum()
    }
    /// What happened since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Counts {
            s3: diff(&self.s3, &before.s3),
            dynamodb: diff(&self.dynamodb, &before.dynamodb),
            s3_put_bytes: self.s3_put_bytes - before.s3_put_bytes,
            s3_get_bytes: self.s3_get_bytes - before.s3_get_bytes,
            errors: self.errors - before.errors,
            calls: self.calls[before.calls.len().min(self.calls.len())..].to_vec(),
        }
    }
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    counts: Mutex<Counts>,
    started: Instant,
}

pub struct Running {
    pub url: String,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn counts(&self) -> Counts {
        match self.proxy.counts.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the proxy on a free loopback port, forwarding to `upstream` (e.g. `http://127.0.0.1:5000`).
pub async fn start(upstream: &str) -> anyhow::Result<Running> {
    let url = reqwest::Url::parse(upstream).with_context(|| format!("parsing {upstream}"))?;
    anyhow::ensure!(
        matches!(url.host_str(), Some("127.0.0.1") | Some("localhost")),
        "the AWS endpoint {upstream} is not on loopback"
    );
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the proxy's HTTP client")?,
        counts: Mutex::new(Counts::default()),
        started: Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the counting proxy")?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("counting proxy stopped: {e}");
        }
    });
    Ok(Running {
        url: format!("http://{addr}"),
        proxy,
        task,
    })
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "upgrade",
];

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    match try_forward(&p, req).await {
        Ok(r) => r,
        Err(e) => {
            if let Ok(mut c) = p.counts.lock() {
                c.errors += 1;
            }
            let mut r = Response::new(Body::from(format!("counting proxy: {e:#}")));
            *r.status_mut() = http::StatusCode::BAD_GATEWAY;
            r
        }
    }
}

async fn try_forward(p: &Proxy, req: Request) -> anyhow::Result<Response> {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .context("reading the request body")?;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let target = header("x-amz-target");
    let is_put = parts.method == http::Method::PUT;
    let is_get = parts.method == http::Method::GET;
    let keep_request = target.is_some() || parts.method == http::Method::POST;
    let put_bytes = header("x-amz-decoded-content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(body.len() as u64);
    let op = match &target {
        Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
        None => s3_operation(&parts.method, parts.uri.query()),
    };

    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = p
        .client
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    let request = if keep_request {
        body.clone()
    } else {
        Bytes::new()
    };
    let resp = out
        .body(body)
        .send()
        .await
        .context("forwarding to the AWS endpoint")?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let answer = resp.bytes().await.context("reading the upstream answer")?;

    let call = Call {
        at: p.started.elapsed(),
        dynamodb: target.is_some(),
        op: op.clone(),
        path: parts.uri.path().to_string(),
        status: status.as_u16(),
        put_bytes: if target.is_none() && is_put {
            put_bytes
        } else {
            0
        },
        get_bytes: if target.is_none() && is_get {
            answer.len() as u64
        } else {
            0
        },
        request,
        answer: if target.is_some() {
            answer.clone()
        } else {
            Bytes::new()
        },
    };
    if let Ok(mut c) = p.counts.lock() {
        if target.is_some() {
            *c.dynamodb.entry(op).or_default() += 1;
        } else {
            *c.s3.entry(op).or_default() += 1;
            if is_put {
                c.s3_put_bytes += put_bytes;
            }
            if is_get {
                c.s3_get_bytes += answer.len() as u64;
            }
        }
        c.calls.push(call);
    }

    let mut r = Response::new(Body::from(answer));
    *r.status_mut() = status;
    // A HEAD answer has no body; its Content-Length is the object's size and must pass through.
    let is_head = parts.method == http::Method::HEAD;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) || (is_head && name == http::header::CONTENT_LENGTH)
        {
            r.headers_mut().append(name, value.clone());
        }
    }
    Ok(r)
}

/// The SDK names the operation in `x-id`; otherwise the method and the query's keys say it.
fn s3_operation(method: &http::Method, query: Option<&str>) -> String {
    let pairs: Vec<(String, String)> = query.map(form_pairs).unwrap_or_default();
    if let Some((_, id)) = pairs.iter().find(|(k, _)| k == "x-id") {
        return id.clone();
    }
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    if keys.is_empty() {
        method.to_string()
    } else {
        format!("{method} ?{}", keys.join("&"))
    }
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}
