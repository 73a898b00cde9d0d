//! Who is calling. Entry points resolve the caller before the handler runs and put a `Caller` in the
//! request's extensions: the local server by verifying the HS256 token itself, the Lambda binaries by
//! the rule in `crate::lambda` (the authorizer's claims; without them, this same HS256 check if a key
//! is configured). Handlers only read it.

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Request;
use crate::domain::ApiError;

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
        validation.leeway = 5;
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
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Caller::Invalid("the Authorization header must be `Bearer <token>`".into());
        };
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if !data.claims.sub.trim().is_empty() => Caller::User(data.claims.sub),
            Ok(_) => Caller::Invalid(NO_SUBJECT.into()),
            Err(e) => Caller::Invalid(why_refused(e.kind()).into()),
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

const NO_SUBJECT: &str = "the token has no subject (sub)";

/// What a client is told about a refused token: our words for the case, never the library's (its
/// messages name its internals and change between versions).
fn why_refused(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm => "the token is not signed with HS256",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "the token has no expiry (exp)",
        ErrorKind::MissingRequiredClaim(c) if c == "sub" => NO_SUBJECT,
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
