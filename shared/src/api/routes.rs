//! Every endpoint on one router, for the local server (on AWS, API Gateway routes to one function each).
//! Paths are accepted with and without the trailing slash.

use http::Method;

use super::{chunk, click, complete, create, delete, get, response, update, Request, Response};
use crate::app::App;
use crate::domain::ApiError;

/// The endpoints, one Lambda function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chunk,
    Complete,
    Create,
    Get,
    Update,
    Delete,
    Click,
}

/// Runs one endpoint's handler (what a Lambda function does with every request it gets).
pub async fn dispatch(endpoint: Endpoint, app: &App, req: Request) -> Response {
    match endpoint {
        Endpoint::Chunk => chunk::handle(app, req).await,
        Endpoint::Complete => complete::handle(app, req).await,
        Endpoint::Create => create::handle(app, req).await,
        Endpoint::Get => get::handle(app, req).await,
        Endpoint::Update => update::handle(app, req).await,
        Endpoint::Delete => delete::handle(app, req).await,
        Endpoint::Click => click::handle(app, req).await,
    }
}

pub async fn route(app: &App, req: Request) -> Response {
    let path = req.uri().path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let method = req.method().clone();
    match (segments.as_slice(), method) {
        (["", "api", "v2", "media", "upload", "chunk"], Method::POST) => {
            chunk::handle(app, req).await
        }
        (["", "api", "v2", "media", "upload", "complete"], Method::POST) => {
            complete::handle(app, req).await
        }
        (["", "api", "v2", "media"], Method::POST) => create::handle(app, req).await,
        (["", "api", "v2", "media", _], Method::GET) => get::handle(app, req).await,
        (["", "api", "v2", "media", _], Method::PUT | Method::PATCH) => {
            update::handle(app, req).await
        }
        (["", "api", "v2", "media", _], Method::DELETE) => delete::handle(app, req).await,
        (["", "api", "v2", "media", _, "click"], Method::POST) => click::handle(app, req).await,
        (
            ["", "api", "v2", "media", "upload", "chunk" | "complete"] | ["", "api", "v2", "media"],
            _,
        )
        | (["", "api", "v2", "media", _, "click"], _) => method_not_allowed("POST"),
        (["", "api", "v2", "media", _], _) => method_not_allowed("GET, PUT, PATCH, DELETE"),
        _ => response::error(&ApiError::NotFound("route")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = response::error(&ApiError::MethodNotAllowed);
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}
