//! Who is calling. Entry points resolve the caller before the handler runs and put a `Caller` in the
//! request's extensions: the local server by verifying the token itself ([`Verifier`]), the Lambda
//! binaries by the rule in `crate::lambda` (the authorizer's claims; without them, this same
//! [`Verifier`] if a key source is configured). Handlers only read it.
//!
//! # Key sources
//! A token's header says how it is signed, and that picks the one source that may verify it:
//! - **HS256** (`MEDIA_JWT_SECRET`, or media-local's development secret): [`Hs256`], `exp` and `sub`
//!   required, `nbf` checked when present. Issuer and audience are not looked at: whoever holds the
//!   secret is trusted.
//! - **RS256/RS384/RS512, ES256/ES384** (`MEDIA_JWT_JWKS_URL`): [`IdpTokens`], the identity provider's
//!   tokens, checked as template.yaml's JWT authorizer checks them: a `kid` naming one of the
//!   provider's keys ([`super::jwks`]), `iss` equal to `MEDIA_JWT_ISSUER`, `aud` (or, without `aud`,
//!   `client_id`) one of `MEDIA_JWT_AUDIENCE`, `exp` in the future, `nbf` and `iat` not in it.
//!
//! A token of a kind no configured source verifies is refused, never passed to another source:
//! an HS256 token is never checked against a provider's public key (the "public key as HMAC secret"
//! confusion), and `alg: none` is not a JWT this service reads at all. docs/AUTH.md compares this with
//! what API Gateway's authorizer does.

use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::jwks::Jwks;
use super::Request;
use crate::config::{ConfigError, Env};
use crate::domain::ApiError;

/// Seconds of clock difference tolerated on `exp`, `nbf` and `iat`, for either kind of token.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
    /// A token was sent but is not acceptable; the reason is told to the client.
    Invalid(String),
}

/// The client's address, when the entry point knows it (click records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

pub fn caller(req: &Request) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

/// The user id (`sub`) of an authenticated request, or 401.
pub fn require_user(req: &Request) -> Result<String, ApiError> {
    required(&caller(req))
}

/// Anonymous is fine; a bad token is still a 401.
pub fn optional_user(req: &Request) -> Result<Option<String>, ApiError> {
    optional(&caller(req))
}

/// `require_user` for a caller resolved from a request's head (before its body is read).
pub fn required(caller: &Caller) -> Result<String, ApiError> {
    match caller {
        Caller::User(sub) => Ok(sub.clone()),
        Caller::Anonymous => Err(ApiError::Unauthorized(
            "authentication credentials were not provided".into(),
        )),
        Caller::Invalid(why) => Err(ApiError::Unauthorized(why.clone())),
    }
}

/// `optional_user` for a caller resolved from a request's head.
pub fn optional(caller: &Caller) -> Result<Option<String>, ApiError> {
    match caller {
        Caller::Anonymous => Ok(None),
        other => required(other).map(Some),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Defaulted so that a token without one is told the same as one with a blank one.
    #[serde(default)]
    sub: String,
    exp: u64,
}

/// HS256 verification for the local server and for functions without an authorizer (behind API
/// Gateway the authorizer does this).
pub struct Hs256 {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Hs256 {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token that says it is not valid yet is not valid yet (`nbf` is checked when present).
        validation.validate_nbf = true;
        Hs256 {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        match bearer(headers) {
            Ok(Some(token)) => self.verify(token),
            Ok(None) => Caller::Anonymous,
            Err(refused) => refused,
        }
    }

    fn verify(&self, token: &str) -> Caller {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => subject(data.claims.sub),
            Err(e) => {
                Caller::Invalid(why_refused(e.kind(), "the token is not signed with HS256").into())
            }
        }
    }

    /// A token for `sub` valid for `ttl_secs` (the local server prints one for a dev user).
    pub fn issue(&self, sub: &str, ttl_secs: u64) -> anyhow::Result<String> {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + ttl_secs;
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: sub.into(),
                exp,
            },
            &self.encoding,
        )?)
    }
}

/// The identity provider whose RS256/ES256 tokens this process verifies itself: its key set, and the
/// issuer and audiences template.yaml's JWT authorizer is given (`JwtIssuer`, `JwtAudience`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpConfig {
    pub jwks_url: String,
    /// Compared exactly, as API Gateway does: `https://idp.example/` and `https://idp.example` differ.
    pub issuer: String,
    pub audiences: Vec<String>,
}

impl IdpConfig {
    /// `MEDIA_JWT_JWKS_URL`, `MEDIA_JWT_ISSUER`, `MEDIA_JWT_AUDIENCE` (comma-separated, like the
    /// template's parameter). All three or none: a key set without an issuer and audience would accept
    /// the provider's tokens for every other application too.
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let (url, issuer, audience) = (
            env.get("MEDIA_JWT_JWKS_URL"),
            env.get("MEDIA_JWT_ISSUER"),
            env.get("MEDIA_JWT_AUDIENCE"),
        );
        let Some(url) = url else {
            if issuer.is_some() || audience.is_some() {
                return Err(ConfigError {
                    var: "MEDIA_JWT_JWKS_URL",
                    message:
                        "MEDIA_JWT_ISSUER and MEDIA_JWT_AUDIENCE need the identity provider's \
                              key set URL (its jwks_uri)"
                            .into(),
                });
            }
            return Ok(None);
        };
        let url = url.trim().to_string();
        if !matches!(url::Url::parse(&url), Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return Err(ConfigError {
                var: "MEDIA_JWT_JWKS_URL",
                message: format!("{url:?} is not an http(s) URL"),
            });
        }
        let issuer = issuer.ok_or_else(|| ConfigError {
            var: "MEDIA_JWT_ISSUER",
            message: "required with MEDIA_JWT_JWKS_URL: the exact `iss` of the provider's tokens"
                .into(),
        })?;
        let audiences: Vec<String> = audience
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if audiences.is_empty() {
            return Err(ConfigError {
                var: "MEDIA_JWT_AUDIENCE",
                message:
                    "required with MEDIA_JWT_JWKS_URL: the accepted `aud` values, comma-separated"
                        .into(),
            });
        }
        Ok(Some(IdpConfig {
            jwks_url: url,
            issuer: issuer.trim().to_string(),
            audiences,
        }))
    }
}

/// The identity provider's tokens, checked as the template's JWT authorizer checks them (module doc).
pub struct IdpTokens {
    keys: Jwks,
    issuer: String,
    audiences: Vec<String>,
}

/// The claims of a provider's token that this service reads (`exp`, `nbf`, `iss` are checked by
/// jsonwebtoken before these are looked at).
#[derive(Deserialize)]
struct IdpClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    iat: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl IdpTokens {
    /// Fetches the key set once (an error if that fails: see `jwks` for why that stops the process).
    pub async fn start(config: &IdpConfig) -> anyhow::Result<Self> {
        let keys = Jwks::fetch(&config.jwks_url).await?;
        Ok(Self::new(keys, config))
    }

    pub fn new(keys: Jwks, config: &IdpConfig) -> Self {
        IdpTokens {
            keys,
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
        }
    }

    async fn verify(&self, token: &str, header: &Header) -> Caller {
        let Some(kid) = header.kid.as_deref() else {
            return Caller::Invalid("the token has no key id (kid) in its header".into());
        };
        let Some(key) = self.keys.key(kid).await else {
            return Caller::Invalid(
                "the token's key id (kid) is not one of the identity provider's keys".into(),
            );
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false; // below: `client_id` stands in for a missing `aud`
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let claims = match jsonwebtoken::decode::<IdpClaims>(token, &key.key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                return Caller::Invalid(
                    why_refused(e.kind(), "the token's algorithm is not one its key is for").into(),
                )
            }
        };
        // API Gateway: `aud` must name one of the audiences; `client_id` is looked at only when
        // there is no `aud`.
        let audience_ok = match &claims.aud {
            Some(OneOrMany::One(a)) => self.audiences.contains(a),
            Some(OneOrMany::Many(all)) => all.iter().any(|a| self.audiences.contains(a)),
            None => claims
                .client_id
                .as_ref()
                .is_some_and(|c| self.audiences.contains(c)),
        };
        if !audience_ok {
            return Caller::Invalid(
                "the token is not meant for this API: its audience (aud, or client_id) is not accepted"
                    .into(),
            );
        }
        let now = jsonwebtoken::get_current_timestamp();
        if claims
            .iat
            .is_some_and(|iat| iat > (now + LEEWAY_SECS) as f64)
        {
            return Caller::Invalid("the token says it was issued in the future (iat)".into());
        }
        subject(claims.sub)
    }
}

/// Every way this process verifies a bearer token itself (media-local; the functions when no
/// authorizer ran). The rule of the module doc: the token's algorithm picks the one source.
#[derive(Clone)]
pub struct Verifier {
    hs256: Option<Arc<Hs256>>,
    idp: Option<Arc<IdpTokens>>,
}

impl Verifier {
    pub fn new(hs256: Option<Hs256>, idp: Option<IdpTokens>) -> Self {
        Verifier {
            hs256: hs256.map(Arc::new),
            idp: idp.map(Arc::new),
        }
    }

    /// The shared secret, to issue tokens with (the local server's dev token, tests).
    pub fn hs256(&self) -> Option<&Hs256> {
        self.hs256.as_deref()
    }

    pub async fn caller(&self, headers: &HeaderMap) -> Caller {
        match bearer(headers) {
            Ok(Some(token)) => self.verify(token).await,
            Ok(None) => Caller::Anonymous,
            Err(refused) => refused,
        }
    }

    async fn verify(&self, token: &str) -> Caller {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return Caller::Invalid(unreadable(token)),
        };
        match (header.alg.family(), &self.hs256, &self.idp) {
            (AlgorithmFamily::Hmac, Some(key), _) => key.verify(token),
            (AlgorithmFamily::Hmac, None, _) => Caller::Invalid(
                "the token is signed with a shared secret (HS256), which this server does not accept: \
                 use a token from the identity provider"
                    .into(),
            ),
            (AlgorithmFamily::Rsa | AlgorithmFamily::Ec, _, Some(idp)) => {
                idp.verify(token, &header).await
            }
            (AlgorithmFamily::Rsa | AlgorithmFamily::Ec, _, None) => Caller::Invalid(
                "the token is signed by an identity provider, but this server has no key set to \
                 check it with (MEDIA_JWT_JWKS_URL)"
                    .into(),
            ),
            (_, _, _) => Caller::Invalid(format!(
                "the token's algorithm ({:?}) is not accepted",
                header.alg
            )),
        }
    }
}

/// The bearer token of a request: `Ok(None)` without an Authorization header, `Err` with the refusal
/// when the header is not `Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Caller> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    match value.to_str().ok().and_then(bearer_token) {
        Some(token) => Ok(Some(token)),
        None => Err(Caller::Invalid(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// A verified token's subject: a blank one names nobody.
fn subject(sub: String) -> Caller {
    if sub.trim().is_empty() {
        Caller::Invalid(NO_SUBJECT.into())
    } else {
        Caller::User(sub)
    }
}

/// Why a token whose header jsonwebtoken cannot read is refused: an algorithm it does not know
/// (`none` above all) is named, anything else is not a JWT.
fn unreadable(token: &str) -> String {
    use base64::Engine;
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|v| v.get("alg")?.as_str().map(String::from));
    match alg {
        Some(alg) => format!("the token's algorithm ({alg:?}) is not accepted"),
        None => "the token is not a valid JWT".into(),
    }
}

const NO_SUBJECT: &str = "the token has no subject (sub)";

/// What a client is told about a refused token: our words for the case, never the library's (its
/// messages name its internals and change between versions). `wrong_algorithm` depends on the
/// key source.
fn why_refused(
    kind: &jsonwebtoken::errors::ErrorKind,
    wrong_algorithm: &'static str,
) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm => wrong_algorithm,
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not the one this API trusts",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "the token has no expiry (exp)",
        ErrorKind::MissingRequiredClaim(c) if c == "sub" => NO_SUBJECT,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => "the token has no issuer (iss)",
        _ => "the token is not a valid JWT",
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn verifies_tokens() {
        let auth = Hs256::new(b"secret");
        let token = auth.issue("alice", 60).unwrap();
        assert_eq!(
            auth.caller(&headers(&format!("Bearer {token}"))),
            Caller::User("alice".into())
        );
        assert_eq!(
            auth.caller(&headers(&format!("bearer  {token} "))),
            Caller::User("alice".into())
        );
        assert_eq!(auth.caller(&HeaderMap::new()), Caller::Anonymous);
        assert!(matches!(
            auth.caller(&headers(&format!("Token {token}"))),
            Caller::Invalid(_)
        ));
        assert!(matches!(
            auth.caller(&headers("Bearer abc.def.ghi")),
            Caller::Invalid(_)
        ));
        let signed = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"secret"),
            )
            .unwrap()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let refused = |token: String| match auth.caller(&headers(&format!("Bearer {token}"))) {
            Caller::Invalid(why) => why,
            other => panic!("accepted: {other:?}"),
        };
        // Not valid before an hour from now: refused, in our words.
        let early =
            signed(serde_json::json!({"sub": "alice", "exp": now + 7200, "nbf": now + 3600}));
        assert_eq!(refused(early), "the token is not valid yet");
        let late = signed(serde_json::json!({"sub": "alice", "exp": now - 600}));
        assert_eq!(refused(late), "the token has expired");
        for blank in ["", " ", "\t \n"] {
            let t = signed(serde_json::json!({"sub": blank, "exp": now + 60}));
            assert_eq!(refused(t), NO_SUBJECT, "{blank:?}");
        }
        let no_sub = signed(serde_json::json!({"exp": now + 60}));
        assert_eq!(refused(no_sub), NO_SUBJECT);
        assert_eq!(
            refused("abc.def.ghi".into()),
            "the token is not a valid JWT"
        );
        let other = Hs256::new(b"other").issue("alice", 60).unwrap();
        assert_eq!(
            refused(other.clone()),
            "the token's signature does not verify"
        );
        assert!(matches!(
            auth.caller(&headers(&format!("Bearer {other}"))),
            Caller::Invalid(_)
        ));
    }
}
