//! `/files/<key>`: the stored objects of the embedded backend, served the way S3 serves them to
//! CloudFront and presigned GETs, so that a client meets the same headers on both backends:
//!
//! - the headers stored with the object (`ObjectHeaders`: sniffed type, `Cache-Control`, and for
//!   documents `Content-Disposition` with the original name), a strong `ETag` (the content's MD5, as
//!   S3 gives for objects written in one piece) and `Last-Modified`;
//! - conditional requests in RFC 9110's order: `If-Match` / `If-Unmodified-Since` that fail are 412,
//!   `If-None-Match` / `If-Modified-Since` that match are 304;
//! - one byte range (`Range: bytes=a-b`, `a-`, `-n`) is 206 with `Content-Range`, a range that starts
//!   beyond the end is 416, and, as S3 does, a request for several ranges gets the whole object;
//!   `If-Range` with a stale validator gets the whole object too.
//!
//! Keys come from the URL path as they are (our keys need no percent-encoding); anything that is not a
//! stored key, `..` included, is 404. Bodies are streamed from the file, never read whole.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use media_shared::adapters::local::{LocalBlobs, StoredFile};
use media_shared::api::response;
use media_shared::domain::ApiError;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// The router to nest at `/files`.
pub fn router(blobs: Arc<LocalBlobs>) -> axum::Router {
    axum::Router::new()
        .route(
            "/{*key}",
            get(serve).fallback(|| async { error(ApiError::MethodNotAllowed) }),
        )
        .fallback(|| async { error(ApiError::NotFound("file")) })
        .with_state(blobs)
}

async fn serve(
    State(blobs): State<Arc<LocalBlobs>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let stored = match blobs.stored(&key).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(ApiError::NotFound("file")),
        Err(e) => return error(ApiError::Internal(e)),
    };
    match answer(&stored, &headers) {
        Answer::Full => {
            let len = stored.len;
            body(stored, StatusCode::OK, 0, len).await
        }
        Answer::Partial { start, end } => {
            let len = stored.len;
            let mut r = body(stored, StatusCode::PARTIAL_CONTENT, start, end - start + 1).await;
            set(
                &mut r,
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{len}"),
            );
            r
        }
        Answer::NotModified => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            validators(&mut r, &stored);
            r
        }
        Answer::Failed(e) => {
            let len = stored.len;
            let unsatisfiable = matches!(e, ApiError::RangeNotSatisfiable { .. });
            let mut r = error(e);
            if unsatisfiable {
                set(&mut r, header::CONTENT_RANGE, format!("bytes */{len}"));
            }
            r
        }
    }
}

#[derive(Debug)]
enum Answer {
    Full,
    Partial { start: u64, end: u64 },
    NotModified,
    Failed(ApiError),
}

/// What the request's conditions and range make of the stored object.
fn answer(stored: &StoredFile, req: &HeaderMap) -> Answer {
    let etag = etag(stored);
    let modified = whole_seconds(stored.modified);
    let text = |name| req.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let date = |name| text(name).and_then(|v| httpdate::parse_http_date(v).ok());

    if let Some(list) = text(header::IF_MATCH) {
        if !etag_listed(list, &etag, false) {
            return Answer::Failed(ApiError::PreconditionFailed);
        }
    } else if date(header::IF_UNMODIFIED_SINCE).is_some_and(|d| modified > d) {
        return Answer::Failed(ApiError::PreconditionFailed);
    }
    if let Some(list) = text(header::IF_NONE_MATCH) {
        if etag_listed(list, &etag, true) {
            return Answer::NotModified;
        }
    } else if date(header::IF_MODIFIED_SINCE).is_some_and(|d| modified <= d) {
        return Answer::NotModified;
    }
    let range_applies = match text(header::IF_RANGE) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => etag_listed(v, &etag, false),
        Some(v) => httpdate::parse_http_date(v).is_ok_and(|d| d == modified),
    };
    if !range_applies {
        return Answer::Full;
    }
    match byte_range(text(header::RANGE), stored.len) {
        Range::Whole => Answer::Full,
        Range::Bytes { start, end } => Answer::Partial { start, end },
        Range::Unsatisfiable => Answer::Failed(ApiError::RangeNotSatisfiable { len: stored.len }),
    }
}

/// The object's strong ETag: its MD5 like S3's, or for objects stored without one (older data
/// directories) modification time and size, as nginx makes them.
fn etag(stored: &StoredFile) -> String {
    match &stored.md5 {
        Some(md5) => format!("\"{md5}\""),
        None => {
            let secs = stored
                .modified
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            format!("\"{secs:x}-{:x}\"", stored.len)
        }
    }
}

/// HTTP dates have whole seconds; comparisons with them must too.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Whether `etag` is in the `If-Match` / `If-None-Match` / `If-Range` list `list` (`*` matches any).
/// `weak`: the weak comparison (a `W/` prefix is ignored), for `If-None-Match`; else `W/` never matches.
fn etag_listed(list: &str, etag: &str, weak: bool) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        match tag.strip_prefix("W/") {
            Some(t) => weak && t == etag,
            None => tag == etag,
        }
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    /// Inclusive, within the object.
    Bytes {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// One `bytes` range of an object of `len` bytes. What cannot be parsed, other units and several
/// ranges are answered with the whole object (RFC 9110 lets a server ignore Range; S3 does so for
/// several ranges).
fn byte_range(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| {
        let (unit, spec) = h.trim().split_once('=')?;
        unit.trim().eq_ignore_ascii_case("bytes").then_some(spec)
    }) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Range::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    if first.is_empty() {
        // `-n`: the last n bytes.
        let Some(n) = number(last) else {
            return Range::Whole;
        };
        if n == 0 || len == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Bytes {
            start: len - n.min(len),
            end: len - 1,
        };
    }
    // `a-` and `a-b`.
    let Some(start) = number(first) else {
        return Range::Whole;
    };
    let end = match last {
        "" => None,
        l => match number(l) {
            Some(end) if end >= start => Some(end),
            _ => return Range::Whole,
        },
    };
    if start >= len {
        return Range::Unsatisfiable;
    }
    Range::Bytes {
        start,
        end: end.map_or(len - 1, |end| end.min(len - 1)),
    }
}

/// A response streaming `len` bytes of the object from `start`, with every header it is served with.
async fn body(stored: StoredFile, status: StatusCode, start: u64, len: u64) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    validators(&mut r, &stored);
    let h = &stored.headers;
    set(&mut r, header::CONTENT_TYPE, h.content_type.clone());
    if let Some(d) = &h.content_disposition {
        set(&mut r, header::CONTENT_DISPOSITION, d.clone());
    }
    set(&mut r, header::CONTENT_LENGTH, len.to_string());
    r.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut file = tokio::fs::File::from_std(stored.file);
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        return error(ApiError::Internal(e.into()));
    }
    // 64 KiB reads: the default 4 KiB makes a large file cost many small frames.
    *r.body_mut() = Body::from_stream(ReaderStream::with_capacity(file.take(len), 64 * 1024));
    r
}

/// What a 304 repeats of the 200 it stands for.
fn validators(r: &mut Response, stored: &StoredFile) {
    set(r, header::ETAG, etag(stored));
    set(
        r,
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(stored.modified),
    );
    set(
        r,
        header::CACHE_CONTROL,
        stored.headers.cache_control.clone(),
    );
}

/// Stored header values are ours and ASCII (`object_headers`); one that is not valid is left out
/// rather than failing the response.
fn set(r: &mut Response, name: header::HeaderName, value: String) {
    match HeaderValue::try_from(value) {
        Ok(v) => {
            r.headers_mut().insert(name, v);
        }
        Err(e) => tracing::warn!(header = %name, error = %e, "stored header value not sent"),
    }
}

fn error(e: ApiError) -> Response {
    response::error(&e).map(Body::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(h: &str, len: u64) -> Range {
        byte_range(Some(h), len)
    }

    fn bytes(start: u64, end: u64) -> Range {
        Range::Bytes { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(r("bytes=0-0", 10), bytes(0, 0));
        assert_eq!(r("bytes=2-5", 10), bytes(2, 5));
        assert_eq!(r("bytes=2-", 10), bytes(2, 9));
        assert_eq!(r("bytes=5-100", 10), bytes(5, 9));
        assert_eq!(r("bytes=-3", 10), bytes(7, 9));
        assert_eq!(r("bytes=-30", 10), bytes(0, 9));
        assert_eq!(r("Bytes = 1-2", 10), bytes(1, 2));
    }

    #[test]
    fn ranges_outside_the_object_are_unsatisfiable() {
        assert_eq!(r("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Range::Unsatisfiable);
    }

    #[test]
    fn what_cannot_be_served_as_one_range_is_the_whole_object() {
        assert_eq!(byte_range(None, 10), Range::Whole);
        for h in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=99999999999999999999999-",
            "",
        ] {
            assert_eq!(r(h, 10), Range::Whole, "{h}");
        }
    }

    #[test]
    fn etag_lists() {
        let e = "\"abc\"";
        assert!(etag_listed("\"abc\"", e, false));
        assert!(etag_listed("\"x\", \"abc\"", e, false));
        assert!(etag_listed("*", e, false));
        assert!(!etag_listed("\"x\"", e, false));
        assert!(!etag_listed("W/\"abc\"", e, false));
        assert!(etag_listed("W/\"abc\"", e, true));
    }
}
