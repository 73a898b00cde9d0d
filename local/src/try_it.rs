//! The try-it page at `/`: plain HTML, JavaScript and CSS under `local/try-it/`, compiled into the
//! binary, so trying the API from a browser needs nothing but `media-local`. The page talks to the API
//! by XHR like any other web client (same origin here, or another server's API base URL by CORS).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use media_shared::api::response;
use media_shared::domain::ApiError;

const INDEX_HTML: &str = include_str!("../try-it/index.html");
const APP_JS: &str = include_str!("../try-it/app.js");
const STYLE_CSS: &str = include_str!("../try-it/style.css");
const SPARK_MD5_JS: &str = include_str!("../try-it/vendor/spark-md5.min.js");
const SPARK_MD5_LICENSE: &str = include_str!("../try-it/vendor/spark-md5.LICENSE");

/// The page may run only its own scripts and styles, and talk to any API base URL the user types in.
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src * data: blob:; \
     connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its assets. `dev_token` (a token for user `dev`, when the server runs with the
/// development secret) is written into the page so that it works at once; anyone can mint such tokens
/// from the published development secret, so the page reveals nothing.
pub fn routes<S: Clone + Send + Sync + 'static>(dev_token: Option<String>) -> Router<S> {
    let page = render(dev_token.as_deref());
    Router::new()
        .route(
            "/",
            only_get(move || {
                let page = page.clone();
                async move { asset("text/html; charset=utf-8", page, Some(PAGE_CSP)) }
            }),
        )
        .route(
            "/try-it/app.js",
            only_get(|| async { asset("text/javascript; charset=utf-8", APP_JS.into(), None) }),
        )
        .route(
            "/try-it/style.css",
            only_get(|| async { asset("text/css; charset=utf-8", STYLE_CSS.into(), None) }),
        )
        .route(
            "/try-it/vendor/spark-md5.min.js",
            only_get(|| async {
                asset("text/javascript; charset=utf-8", SPARK_MD5_JS.into(), None)
            }),
        )
        .route(
            "/try-it/vendor/spark-md5.LICENSE",
            only_get(|| async {
                asset("text/plain; charset=utf-8", SPARK_MD5_LICENSE.into(), None)
            }),
        )
}

/// GET (and HEAD); other methods get the API's JSON 405 rather than axum's empty one.
fn only_get<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler).fallback(|| async {
        let mut resp = response::error(&ApiError::MethodNotAllowed);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        resp.map(axum::body::Body::from)
    })
}

/// The page with its configuration block filled in. `<` is escaped so that no value can close the
/// `<script>` element it sits in.
fn render(dev_token: Option<&str>) -> String {
    let config = serde_json::json!({ "dev_token": dev_token })
        .to_string()
        .replace('<', "\\u003c");
    INDEX_HTML.replace("{{CONFIG}}", &config)
}

/// The files are small and change with the binary: revalidated every time rather than cached stale.
fn asset(content_type: &'static str, body: String, csp: Option<&'static str>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(csp) = csp {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_configuration_safely() {
        let page = render(Some("a.b</script><script>alert(1)</script>"));
        assert!(page
            .contains(r#"{"dev_token":"a.b\u003c/script>\u003cscript>alert(1)\u003c/script>"}"#));
        assert!(!page.contains("{{CONFIG}}"));
        assert!(render(None).contains(r#"{"dev_token":null}"#));
    }

    #[test]
    fn the_page_names_the_assets_served_with_it() {
        for path in [
            "/try-it/style.css",
            "/try-it/app.js",
            "/try-it/vendor/spark-md5.min.js",
            "/try-it/vendor/spark-md5.LICENSE",
        ] {
            assert!(INDEX_HTML.contains(path), "{path} is not named by the page");
        }
    }
}
