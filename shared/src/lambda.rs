//! The Lambda glue: API Gateway HTTP API (v2) events in, the shared handlers' responses out.
//!
//! # Who is calling
//!
//! This is the one place that decides it for the function binaries:
//!
//! 1. **The JWT authorizer's claims** in the request context (production): API Gateway verified the
//!    token before the function ran, so the caller is the `sub` claim, and the function never sees an
//!    unauthenticated request on a route with the authorizer.
//! 2. **No claims, and `MEDIA_JWT_SECRET` or `MEDIA_JWT_JWKS_URL` set** (local development under
//!    `cargo lambda watch`, which has no authorizer): the function verifies the `Authorization: Bearer`
//!    token itself, exactly as media-local does ([`Verifier`]: HS256 with the secret, the identity
//!    provider's RS256/ES256 tokens with its key set, issuer and audiences). No header is anonymous; a
//!    bad token is a 401 with the reason.
//! 3. **No claims and no key source**: a token nobody verified is never trusted. On a route that has the
//!    authorizer on API Gateway (every endpoint but click, see [`behind_authorizer`]) an
//!    `Authorization` header is then a 401; without one the request is anonymous (and the handler's 401
//!    follows where a user is required). Click's route has no authorizer in production, so real users'
//!    tokens reach it unverified: there the header is ignored and the click is anonymous, as it always
//!    was on AWS (a 401 would refuse every signed-in user's click).
//!
//! local/tests/template_routes.rs checks [`behind_authorizer`] against template.yaml.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};

use crate::api::auth::{Caller, ClientIp, Hs256, IdpConfig, IdpTokens, Verifier};
use crate::api::routes::Endpoint;
use crate::api::{Request, Response};
use crate::app::App;
use crate::config::Env;

/// Whether API Gateway runs the JWT authorizer before this endpoint's function (template.yaml: every
/// route but click's, whose authentication is optional).
pub fn behind_authorizer(endpoint: Endpoint) -> bool {
    !matches!(endpoint, Endpoint::Click)
}

/// What the request context says about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorizer<'a> {
    /// No authorizer ran (click's route on AWS, everything under `cargo lambda watch`).
    Absent,
    /// The JWT authorizer ran and verified the token; its `sub` claim, if any.
    Verified { sub: Option<&'a str> },
}

/// How one function tells who is calling (the rule in the module doc).
pub struct CallerRule {
    /// `MEDIA_JWT_SECRET` and/or `MEDIA_JWT_JWKS_URL`, for when no authorizer ran; `None` in
    /// production.
    local: Option<Verifier>,
    authorized_route: bool,
}

impl CallerRule {
    /// The rule for `endpoint`'s function, with the key sources the environment configures
    /// (`MEDIA_JWT_SECRET`; `MEDIA_JWT_JWKS_URL` with its issuer and audiences, fetched here: a
    /// failure ends the cold start, as it stops media-local).
    pub async fn from_env(env: &dyn Env, endpoint: Endpoint) -> anyhow::Result<Self> {
        let secret = env.get("MEDIA_JWT_SECRET");
        let idp = match IdpConfig::from_env(env)? {
            Some(config) => Some(IdpTokens::start(&config).await?),
            None => None,
        };
        let local = (secret.is_some() || idp.is_some())
            .then(|| Verifier::new(secret.map(|s| Hs256::new(s.as_bytes())), idp));
        Ok(Self::with_verifier(local, endpoint))
    }

    /// The rule with only an HS256 key (or none).
    pub fn new(local_key: Option<&[u8]>, endpoint: Endpoint) -> Self {
        Self::with_verifier(
            local_key.map(|k| Verifier::new(Some(Hs256::new(k)), None)),
            endpoint,
        )
    }

    pub fn with_verifier(local: Option<Verifier>, endpoint: Endpoint) -> Self {
        CallerRule {
            local,
            authorized_route: behind_authorizer(endpoint),
        }
    }

    /// The caller of a request, from what its context says and its headers.
    pub async fn caller(&self, authorizer: Authorizer<'_>, headers: &HeaderMap) -> Caller {
        if let Authorizer::Verified { sub } = authorizer {
            // A verified token without a subject (or a blank one) names nobody: anonymous, so 401
            // where a user is needed.
            return match sub.filter(|s| !s.trim().is_empty()) {
                Some(sub) => Caller::User(sub.to_string()),
                None => Caller::Anonymous,
            };
        }
        if let Some(verifier) = &self.local {
            return verifier.caller(headers).await;
        }
        if self.authorized_route && headers.contains_key(http::header::AUTHORIZATION) {
            return Caller::Invalid(
                "the token cannot be verified: no authorizer checked it and neither MEDIA_JWT_SECRET nor \
                 MEDIA_JWT_JWKS_URL is set"
                    .into(),
            );
        }
        Caller::Anonymous
    }
}

/// Converts the runtime's request into the handlers' `http::Request<Bytes>` with `Caller` (decided by
/// `rule`) and `ClientIp`.
pub async fn into_api_request(req: lambda_http::Request, rule: &CallerRule) -> Request {
    let (caller, ip) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let authorizer = match ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()) {
                Some(jwt) => Authorizer::Verified {
                    sub: jwt.claims.get("sub").map(String::as_str),
                },
                None => Authorizer::Absent,
            };
            (
                rule.caller(authorizer, req.headers()).await,
                ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
            )
        }
        _ => (rule.caller(Authorizer::Absent, req.headers()).await, None),
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
/// through `handler`, the endpoint's own (`|app, req| async move { api::chunk::handle(&app, req).await }`).
/// The function's `main` names it rather than `dispatch` picking it by `endpoint` at run time, so that
/// a bootstrap links one handler's code, not all seven (image decoding, URL fetching, photo
/// stripping stay out of the functions that never run them).
pub async fn serve<H, F>(endpoint: Endpoint, handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Arc<App>, Request) -> F + Copy + Send + 'static,
    F: Future<Output = Response> + Send,
{
    init_tracing();
    let env = crate::config::ProcessEnv;
    // MEDIA_CREATE_RESOURCES (read by the wiring) is only for local S3/DynamoDB servers
    // (scripts/watch-functions.sh); the template never sets it.
    let app = Arc::new(crate::wiring::lambda_app(&env).await?);
    let rule = Arc::new(CallerRule::from_env(&env, endpoint).await?);
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let (app, rule) = (app.clone(), rule.clone());
        async move {
            let req = into_api_request(req, &rule).await;
            let resp = handler(app.clone(), req).await;
            crate::api::routes::count_refusal(&app, &resp);
            Ok::<_, std::convert::Infallible>(answer(&app, resp))
        }
    }))
    .await
}

/// One invocation of an endpoint's function, the handler picked by `dispatch` (for the tests, which
/// drive the glue without a Runtime API; `serve` does the same with its named handler): the event
/// through the shared handler, then the metrics it recorded written out (EMF on stdout), before the
/// answer goes back: Lambda may freeze the process as soon as it has the answer.
pub async fn invoke(
    endpoint: Endpoint,
    app: &App,
    rule: &CallerRule,
    req: lambda_http::Request,
) -> lambda_http::Response<Body> {
    let req = into_api_request(req, rule).await;
    let resp = crate::api::routes::dispatch(endpoint, app, req).await;
    answer(app, resp)
}

/// After the handler (and its refusal counted): the metrics flushed, the answer in Lambda's terms.
fn answer(app: &App, resp: Response) -> lambda_http::Response<Body> {
    app.metrics.flush();
    into_lambda_response(resp)
}

/// JSON logs for CloudWatch, filtered by `RUST_LOG` (default info): a default level and
/// `target=level` directives (`warn,media_shared=debug`), as tracing-subscriber's `Targets` reads
/// them. Not its `EnvFilter` (media-local's), whose span and field filters bring a regex engine into
/// every bootstrap (about 0.24 MB); an empty `RUST_LOG`, or one `Targets` cannot read, means info.
pub fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;

    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .without_time()
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    const ENDPOINTS: [Endpoint; 7] = [
        Endpoint::Chunk,
        Endpoint::Complete,
        Endpoint::Create,
        Endpoint::Get,
        Endpoint::Update,
        Endpoint::Delete,
        Endpoint::Click,
    ];

    #[tokio::test]
    async fn the_authorizers_claims_decide_whenever_they_are_there() {
        let forged = Hs256::new(b"other").issue("mallory", 60).unwrap();
        for endpoint in ENDPOINTS {
            for rule in [
                CallerRule::new(None, endpoint),
                CallerRule::new(Some(b"key"), endpoint),
            ] {
                // The header is what API Gateway verified; the function does not look at it again.
                let verified = |sub| Authorizer::Verified { sub };
                assert_eq!(
                    rule.caller(verified(Some("alice")), &bearer(&forged)).await,
                    Caller::User("alice".into())
                );
                // A verified token without a subject is nobody, whatever the header says.
                assert_eq!(
                    rule.caller(verified(None), &bearer(&forged)).await,
                    Caller::Anonymous
                );
                for blank in ["", " ", "\t\n"] {
                    assert_eq!(
                        rule.caller(verified(Some(blank)), &bearer(&forged)).await,
                        Caller::Anonymous,
                        "{blank:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn without_claims_or_key_an_unverified_token_is_never_a_user() {
        let forged = Hs256::new(b"anything").issue("alice", 60).unwrap();
        for endpoint in ENDPOINTS {
            let rule = CallerRule::new(None, endpoint);
            let caller = rule.caller(Authorizer::Absent, &bearer(&forged)).await;
            if endpoint == Endpoint::Click {
                assert_eq!(caller, Caller::Anonymous, "{endpoint:?}");
            } else {
                assert!(
                    matches!(caller, Caller::Invalid(_)),
                    "{endpoint:?}: {caller:?}"
                );
            }
            assert_eq!(
                rule.caller(Authorizer::Absent, &HeaderMap::new()).await,
                Caller::Anonymous
            );
        }
    }

    #[tokio::test]
    async fn without_claims_the_configured_key_verifies_the_token_as_media_local_does() {
        let key = Hs256::new(b"key");
        let genuine = key.issue("alice", 60).unwrap();
        let forged = Hs256::new(b"other").issue("alice", 60).unwrap();
        for endpoint in ENDPOINTS {
            let rule = CallerRule::new(Some(b"key"), endpoint);
            for headers in [bearer(&genuine), bearer(&forged), HeaderMap::new()] {
                assert_eq!(
                    rule.caller(Authorizer::Absent, &headers).await,
                    key.caller(&headers)
                );
            }
            assert_eq!(
                rule.caller(Authorizer::Absent, &bearer(&genuine)).await,
                Caller::User("alice".into())
            );
            assert!(matches!(
                rule.caller(Authorizer::Absent, &bearer(&forged)).await,
                Caller::Invalid(_)
            ));
        }
    }

    #[tokio::test]
    async fn the_key_comes_from_media_jwt_secret() {
        let token = Hs256::new(b"s3cret").issue("alice", 60).unwrap();
        let rule = CallerRule::from_env(&[("MEDIA_JWT_SECRET", "s3cret")], Endpoint::Get)
            .await
            .unwrap();
        assert_eq!(
            rule.caller(Authorizer::Absent, &bearer(&token)).await,
            Caller::User("alice".into())
        );
        let rule = CallerRule::from_env(&[("OTHER", "s3cret")], Endpoint::Get)
            .await
            .unwrap();
        assert!(matches!(
            rule.caller(Authorizer::Absent, &bearer(&token)).await,
            Caller::Invalid(_)
        ));
    }
}
