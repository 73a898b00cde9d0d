//! The CORS policy of `media_shared::cors` on the local server, as the outermost layer: preflights are
//! answered here, before routing, authentication or reading a body (a browser never sends credentials
//! with them, just as API Gateway answers them before its JWT authorizer); every other response, errors
//! and stored files included, leaves through here and gets the headers for the caller's origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use media_shared::api::response;
use media_shared::cors::{self, Origins, Rule};
use serde_json::json;

/// `router` with the policy applied to every route, those added later by other layers excepted.
pub fn apply(router: axum::Router, origins: Origins) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(origins),
        enforce,
    ))
}

/// Which rule a path falls under: stored files are read-only, everything else is the API.
fn rule_for(path: &str) -> &'static Rule {
    if path.starts_with("/files/") {
        &cors::FILES
    } else {
        &cors::API
    }
}

async fn enforce(State(origins): State<Arc<Origins>>, req: Request, next: Next) -> Response {
    let rule = rule_for(req.uri().path());
    if cors::is_preflight(req.method(), req.headers()) {
        return preflight(&origins, rule, &req);
    }
    let request_headers = req.headers().clone();
    let mut resp = next.run(req).await;
    cors::decorate(&origins, rule, &request_headers, resp.headers_mut());
    resp
}

/// 204 with the rule for an allowed origin; 403 with no CORS header otherwise (the browser then refuses
/// the actual request, which is never sent). Refusals are routine (any site can try), so not logged
/// above debug.
fn preflight(origins: &Origins, rule: &Rule, req: &Request) -> Response {
    match cors::preflight_headers(origins, rule, req.headers()) {
        Some(headers) => {
            let mut resp = Response::new(axum::body::Body::empty());
            *resp.status_mut() = http::StatusCode::NO_CONTENT;
            *resp.headers_mut() = headers;
            resp
        }
        None => {
            let origin = req
                .headers()
                .get(http::header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .unwrap_or("?");
            tracing::debug!(origin, path = req.uri().path(), "CORS preflight refused");
            let mut resp = response::json(
                403,
                &json!({"errors": [{
                    "code": "cors_origin_not_allowed",
                    "message": format!("origin {origin} may not call this server from a browser: add it to MEDIA_CORS_ORIGINS"),
                }]}),
            );
            // Only a list of origins refuses any, and then the answer depends on the origin.
            resp.headers_mut()
                .insert(http::header::VARY, http::HeaderValue::from_static("origin"));
            resp.map(axum::body::Body::from)
        }
    }
}
