//! Every API path of the local server: from the raw request to the shared handler and back.
//!
//! The order is the point (issue 11):
//! 1. From the head alone: the route (404, 405) and the caller (401), so that nobody's body is read
//!    for a request that would be refused anyway (200 unauthenticated 4 MiB bodies held 890 MB).
//! 2. The body, bounded by its endpoint's maximum (413, from Content-Length before reading when it
//!    is declared) and by `MEDIA_BODY_TIMEOUT_SECS` (408).
//! 3. The handler, in a task of its own: a client that disconnects mid-request drops this function's
//!    future, not the handler's, so the storage sequence it started (read, write, commit, under the
//!    upload's chunk lock) always runs to its end and never leaves a half-written chunk behind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use media_shared::api::auth::{ClientIp, Verifier};
use media_shared::api::response;
use media_shared::api::routes::{self, Endpoint};
use media_shared::app::App;
use media_shared::domain::{ApiError, Limits};

/// Room for the multipart framing and form fields around the largest allowed chunk.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Every other endpoint takes a form or a JSON document: a megabyte is generous.
const FORM_BODY_MAX: u64 = 1024 * 1024;

/// What every API request needs, built once by the server.
pub struct ApiState {
    pub app: App,
    pub auth: Verifier,
    pub body_timeout: Duration,
}

pub async fn api(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (mut parts, body) = req.into_parts();
    let caller = state.auth.caller(&parts.headers).await;
    let endpoint = match routes::admit(&parts.method, parts.uri.path(), &caller) {
        Ok(e) => e,
        Err(refused) => return refuse(&state.app, refused.into_response()),
    };
    let (limit, limits) = (body_limit(endpoint, &state.app.limits), &state.app.limits);
    let too_large = || too_large(endpoint, limits);
    let read = tokio::time::timeout(
        state.body_timeout,
        read_body(body, &parts.headers, limit, too_large),
    );
    let body = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refuse(&state.app, response::error(&e)),
        Err(_) => {
            let e = ApiError::http(
                408,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    state.body_timeout.as_secs()
                ),
            );
            let mut resp = refuse(&state.app, response::error(&e));
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    parts.extensions.insert(caller);
    parts.extensions.insert(ClientIp(peer.ip()));
    let req = http::Request::from_parts(parts, body);
    let app = state.app.clone();
    let handler = tokio::spawn(async move { routes::dispatch(endpoint, &app, req).await });
    match handler.await {
        Ok(resp) => into_axum(resp),
        Err(e) => refuse(
            &state.app,
            response::error(&ApiError::Internal(
                anyhow::Error::new(e).context("the handler's task"),
            )),
        ),
    }
}

/// The largest body an endpoint takes: a chunk with its multipart framing, or a small form.
fn body_limit(endpoint: Endpoint, limits: &Limits) -> u64 {
    match endpoint {
        Endpoint::Chunk => limits.max_chunk_bytes + MULTIPART_OVERHEAD,
        _ => FORM_BODY_MAX,
    }
}

/// The 413 of an endpoint: a chunk's says what the chunk maximum is (API.md), others the body's.
fn too_large(endpoint: Endpoint, limits: &Limits) -> ApiError {
    match endpoint {
        Endpoint::Chunk => ApiError::PayloadTooLarge {
            max: limits.max_chunk_bytes,
        },
        _ => ApiError::http(
            413,
            "body_too_large",
            format!("the request body is larger than the maximum of {FORM_BODY_MAX} bytes"),
        ),
    }
}

/// An answer given before the handler ran, counted as the handlers' refusals are.
fn refuse(app: &App, resp: http::Response<Bytes>) -> axum::response::Response {
    routes::count_refusal(app, &resp);
    into_axum(resp)
}

fn into_axum(resp: http::Response<Bytes>) -> axum::response::Response {
    resp.map(Body::from)
}

/// Reads the body into one buffer sized from Content-Length, frame by frame, so a chunk is held once
/// (collecting frames and then concatenating them would hold it twice). Over `limit`: 413.
async fn read_body(
    mut body: Body,
    headers: &http::HeaderMap,
    limit: u64,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "body_read_failed",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
