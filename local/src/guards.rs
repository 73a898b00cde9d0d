//! What every request of the local server passes, whatever its route: a head within bounds, and an
//! error answer in the JSON envelope of docs/API.md.
//!
//! hyper answers a head it cannot buffer with a bare 414 or 431 and no body; these limits sit below
//! its ceilings (`crate::connections`), so that a long URL or too many headers get the same JSON as
//! every other error. Only a head beyond hyper's own buffer (64 KiB) or header count (128) still gets
//! hyper's bare answer: it never reaches any code of ours.
//!
//! Layers below (the file server, axum's own rejections) may answer an error with an empty body; the
//! error gets the envelope on its way out, with the status's own code.

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use media_shared::api::response;
use media_shared::domain::ApiError;

/// Longest request target (path and query) answered; beyond it 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most headers and most header bytes (names and values) answered; beyond either 431.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// `router` with both guards around every route.
pub fn apply(router: axum::Router) -> axum::Router {
    router
        .layer(axum::middleware::map_response(envelope_empty_errors))
        .layer(axum::middleware::from_fn(head_within_bounds))
}

async fn head_within_bounds(req: Request, next: Next) -> Response {
    if let Err(e) = check_head(req.uri(), req.headers()) {
        return into_axum(&e);
    }
    next.run(req).await
}

fn check_head(uri: &http::Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::http(
            414,
            "uri_too_long",
            format!("the request's URL is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::http(
            431,
            "headers_too_large",
            format!(
                "the request has more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of them"
            ),
        ));
    }
    Ok(())
}

async fn envelope_empty_errors(resp: Response) -> Response {
    let status = resp.status();
    let empty = resp.body().size_hint().exact() == Some(0);
    if !(status.is_client_error() || status.is_server_error())
        || !empty
        || resp.headers().contains_key(header::CONTENT_TYPE)
    {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let mut json = into_axum(&error_for(status));
    // Keep what the status needs (Allow on a 405, Content-Range on a 416, ...), with the JSON's type
    // and length.
    parts.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in json.headers() {
        parts.headers.insert(k.clone(), v.clone());
    }
    *json.headers_mut() = parts.headers;
    json
}

/// The error a bare status stands for, in our words.
fn error_for(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no file at this path".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "method not allowed for this path".to_string(),
        ),
        other => (
            "http_error",
            other
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_lowercase(),
        ),
    };
    ApiError::http(status.as_u16(), code, message)
}

fn into_axum(e: &ApiError) -> Response {
    let resp = response::error(e);
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_over_the_limits_are_refused() {
        let ok: http::Uri = "/api/v2/media/1/".parse().unwrap();
        assert!(check_head(&ok, &HeaderMap::new()).is_ok());
        let long: http::Uri = format!("/files/{}", "a".repeat(MAX_URI_BYTES))
            .parse()
            .unwrap();
        assert_eq!(
            check_head(&long, &HeaderMap::new()).unwrap_err().status(),
            414
        );
        let mut many = HeaderMap::new();
        for i in 0..=MAX_HEADERS {
            many.insert(
                http::HeaderName::try_from(format!("x-h{i}")).unwrap(),
                "v".parse().unwrap(),
            );
        }
        assert_eq!(check_head(&ok, &many).unwrap_err().status(), 431);
        let mut big = HeaderMap::new();
        big.insert("x-big", "v".repeat(MAX_HEADER_BYTES).parse().unwrap());
        assert_eq!(check_head(&ok, &big).unwrap_err().status(), 431);
    }
}
