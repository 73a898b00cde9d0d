//! The Lambda glue: API Gateway HTTP API (v2) events in, the shared handlers' responses out. The user
//! comes from the JWT authorizer's claims in the request context: API Gateway has verified the token
//! before the function runs, so the function never sees an unauthenticated request on an authorized route.

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};

use crate::api::auth::{Caller, ClientIp};
use crate::api::{Request, Response};

/// Converts the runtime's request into the handlers' `http::Request<Bytes>` with `Caller` and `ClientIp`.
pub fn into_api_request(req: lambda_http::Request) -> Request {
    let (caller, ip) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let sub = ctx
                .authorizer
                .as_ref()
                .and_then(|a| a.jwt.as_ref())
                .and_then(|jwt| jwt.claims.get("sub"))
                .filter(|s| !s.is_empty());
            let caller = sub.map_or(Caller::Anonymous, |s| Caller::User(s.clone()));
            (
                caller,
                ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
            )
        }
        _ => (Caller::Anonymous, None),
    };
    let (mut parts, body) = req.into_parts();
    // A multipart chunk arrives base64-decoded as Binary; Vec -> Bytes takes the buffer without a copy.
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(s) => Bytes::from(s),
        Body::Binary(v) => Bytes::from(v),
        _ => Bytes::new(),
    };
    parts.extensions.insert(caller);
    if let Some(ip) = ip {
        parts.extensions.insert(ClientIp(ip));
    }
    http::Request::from_parts(parts, body)
}

/// The handlers' response as the runtime's: JSON bodies go back as text, empty ones as empty.
pub fn into_lambda_response(resp: Response) -> lambda_http::Response<Body> {
    resp.map(|b| {
        if b.is_empty() {
            Body::Empty
        } else {
            match String::from_utf8(b.to_vec()) {
                Ok(text) => Body::Text(text),
                Err(e) => Body::Binary(e.into_bytes()),
            }
        }
    })
}

/// The whole life of an endpoint's function: clients built once per cold start, then every request
/// through the shared handler.
pub async fn serve(endpoint: crate::api::routes::Endpoint) -> Result<(), lambda_http::Error> {
    init_tracing();
    let app = crate::wiring::for_lambda(&crate::config::ProcessEnv)
        .await?
        .app;
    let app = std::sync::Arc::new(app);
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let app = app.clone();
        async move {
            let resp = crate::api::routes::dispatch(endpoint, &app, into_api_request(req)).await;
            Ok::<_, std::convert::Infallible>(into_lambda_response(resp))
        }
    }))
    .await
}

/// JSON logs for CloudWatch, filtered by `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .without_time()
        .with_ansi(false)
        .try_init();
}
