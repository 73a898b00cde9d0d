//! Building responses: every body is JSON, errors use the envelope of `ApiError::body`.

use bytes::Bytes;
use http::{header, StatusCode};
use serde_json::Value;

use super::Response;
use crate::domain::ApiError;

pub fn json(status: u16, value: &Value) -> Response {
    let mut r = http::Response::new(Bytes::from(value.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub fn no_content() -> Response {
    let mut r = http::Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// The `code` of the error a response carries, attached by `error` so that the entry points can
/// count refusals by code without reading the body back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The error as a response; server-side failures are logged with their cause, which clients never see.
pub fn error(e: &ApiError) -> Response {
    if let ApiError::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "request failed");
    }
    let mut r = json(e.status(), &e.body());
    r.extensions_mut().insert(ErrorCode(e.code()));
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    r
}

pub fn from_result(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| error(&e))
}
