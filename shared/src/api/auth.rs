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
    match caller(req) {
        Caller::User(sub) => Ok(sub),
        Caller::Anonymous => Err(ApiError::Unauthorized(
            "authentication credentials were not provided".into(),
        )),
        Caller::Invalid(why) => Err(ApiError::Unauthorized(why)),
    }
}

/// Anonymous is fine; a bad token is still a 401.
pub fn optional_user(req: &Request) -> Result<Option<String>, ApiError> {
    match caller(req) {
        Caller::User(sub) => Ok(Some(sub)),
        Caller::Anonymous => Ok(None),
        Caller::Invalid(why) => Err(ApiError::Unauthorized(why)),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
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
            Ok(data) if !data.claims.sub.is_empty() => Caller::User(data.claims.sub),
            Ok(_) => Caller::Invalid("the token has an empty subject".into()),
            Err(e) => Caller::Invalid(format!("invalid token: {e}")),
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
        let other = Hs256::new(b"other").issue("alice", 60).unwrap();
        assert!(matches!(
            auth.caller(&headers(&format!("Bearer {other}"))),
            Caller::Invalid(_)
        ));
    }
}
