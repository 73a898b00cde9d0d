//! Every endpoint on one router, for the local server (on AWS, API Gateway routes to one function each).
//! Paths are accepted with and without the trailing slash.

use http::Method;

use super::{
    auth, chunk, click, complete, create, delete, get, response, update, Request, Response,
};
use crate::app::App;
use crate::domain::ApiError;
use crate::metrics::Event;

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

/// Runs one endpoint's handler (what a Lambda function does with every request it gets), counting
/// an error answer by its code.
pub async fn dispatch(endpoint: Endpoint, app: &App, req: Request) -> Response {
    let resp = match endpoint {
        Endpoint::Chunk => chunk::handle(app, req).await,
        Endpoint::Complete => complete::handle(app, req).await,
        Endpoint::Create => create::handle(app, req).await,
        Endpoint::Get => get::handle(app, req).await,
        Endpoint::Update => update::handle(app, req).await,
        Endpoint::Delete => delete::handle(app, req).await,
        Endpoint::Click => click::handle(app, req).await,
    };
    count_refusal(app, &resp);
    resp
}

/// Counts `resp` in `RequestsRefused` if it is an error answer (made by `response::error`). The one
/// rule for both entry points: `dispatch` applies it to every handler's answer, media-local's entry
/// also to what it refuses before a handler runs.
pub fn count_refusal(app: &App, resp: &Response) {
    if let Some(response::ErrorCode(code)) = resp.extensions().get() {
        app.metrics.record(Event::Refused { code });
    }
}

impl Endpoint {
    /// Whether the endpoint needs an authenticated caller (click also takes anonymous ones).
    pub fn requires_user(self) -> bool {
        !matches!(self, Endpoint::Click)
    }
}

/// The endpoint a method and path name: 404 for an unknown path, 405 (with `Allow`) for a known
/// path and another method.
pub fn resolve(method: &Method, path: &str) -> Result<Endpoint, Refused> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    match (segments.as_slice(), method.clone()) {
        (["", "api", "v2", "media", "upload", "chunk"], Method::POST) => Ok(Endpoint::Chunk),
        (["", "api", "v2", "media", "upload", "complete"], Method::POST) => Ok(Endpoint::Complete),
        (["", "api", "v2", "media"], Method::POST) => Ok(Endpoint::Create),
        (["", "api", "v2", "media", _], Method::GET) => Ok(Endpoint::Get),
        (["", "api", "v2", "media", _], Method::PUT | Method::PATCH) => Ok(Endpoint::Update),
        (["", "api", "v2", "media", _], Method::DELETE) => Ok(Endpoint::Delete),
        (["", "api", "v2", "media", _, "click"], Method::POST) => Ok(Endpoint::Click),
        (
            ["", "api", "v2", "media", "upload", "chunk" | "complete"] | ["", "api", "v2", "media"],
            _,
        )
        | (["", "api", "v2", "media", _, "click"], _) => Err(Refused::Method { allow: "POST" }),
        (["", "api", "v2", "media", _], _) => Err(Refused::Method {
            allow: "GET, PUT, PATCH, DELETE",
        }),
        _ => Err(Refused::Error(ApiError::NotFound("route"))),
    }
}

/// Everything that can be answered from the request's head alone, so that an entry point reads a
/// body only for a request that will use it: the route (404, 405), and the caller (401 for an
/// endpoint that needs a user and has none, and for a bad token anywhere).
pub fn admit(method: &Method, path: &str, caller: &auth::Caller) -> Result<Endpoint, Refused> {
    let endpoint = resolve(method, path)?;
    let who = if endpoint.requires_user() {
        auth::required(caller).map(|_| ())
    } else {
        auth::optional(caller).map(|_| ())
    };
    who.map_err(Refused::Error)?;
    Ok(endpoint)
}

/// Every endpoint on one router: the head decides the endpoint, its handler the rest.
pub async fn route(app: &App, req: Request) -> Response {
    match resolve(req.method(), req.uri().path()) {
        Ok(endpoint) => dispatch(endpoint, app, req).await,
        Err(refused) => {
            let resp = refused.into_response();
            count_refusal(app, &resp);
            resp
        }
    }
}

/// A request refused from its head alone.
#[derive(Debug)]
pub enum Refused {
    Error(ApiError),
    /// 405, with the methods the path takes.
    Method {
        allow: &'static str,
    },
}

impl Refused {
    pub fn into_response(self) -> Response {
        match self {
            Refused::Error(e) => response::error(&e),
            Refused::Method { allow } => method_not_allowed(allow),
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = response::error(&ApiError::MethodNotAllowed);
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::Caller;

    fn status(r: Result<Endpoint, Refused>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(refused) => refused.into_response().status().as_u16(),
        }
    }

    #[test]
    fn admission_from_the_head() {
        let user = Caller::User("alice".into());
        let bad = Caller::Invalid("the token has expired".into());
        let post = Method::POST;
        let chunk = "/api/v2/media/upload/chunk/";
        assert_eq!(admit(&post, chunk, &user).unwrap(), Endpoint::Chunk);
        assert_eq!(status(admit(&post, chunk, &Caller::Anonymous)), 401);
        assert_eq!(status(admit(&post, chunk, &bad)), 401);
        // Click takes anonymous callers, not bad tokens.
        let click = "/api/v2/media/3/click/";
        assert_eq!(
            admit(&post, click, &Caller::Anonymous).unwrap(),
            Endpoint::Click
        );
        assert_eq!(status(admit(&post, click, &bad)), 401);
        // The route comes first: an unknown path or method is that, whoever asks.
        assert_eq!(
            status(admit(&post, "/api/v2/other/", &Caller::Anonymous)),
            404
        );
        let r = admit(&Method::POST, "/api/v2/media/3/", &Caller::Anonymous);
        let resp = r.unwrap_err().into_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, PUT, PATCH, DELETE");
    }
}
