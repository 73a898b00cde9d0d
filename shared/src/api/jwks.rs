//! The identity provider's public signing keys (its JWKS, `MEDIA_JWT_JWKS_URL`), for the processes
//! that verify its RS256/ES256 tokens themselves: media-local, and the functions when no authorizer
//! ran (`auth::Verifier`). Behind API Gateway the authorizer does this with its own copy of the keys.
//!
//! # When the set is fetched
//! - **At start** ([`Jwks::fetch`]). A failure, or a set without one usable key, stops the process:
//!   until it has keys every signed-in request would be a 401 while the process looked healthy, and a
//!   wrong URL is far likelier than an outage at that very moment. Later failures never stop it.
//! - **When a token names a key id (`kid`) the set does not hold**: the provider has rotated its keys.
//!   At most one such refetch per [`MIN_REFETCH`] (the start does not count), so that a flood of
//!   tokens with made-up key ids costs the provider one request per interval, not one per token.
//!   Requests that miss while a fetch is under way wait for it and use its result (one mutex), so
//!   concurrent misses share one fetch.
//! - **When the set is older than [`MAX_AGE`]**, at the next token (same bound), so that a key the
//!   provider withdrew stops being accepted. API Gateway documents caching keys for up to two hours.
//!
//! A refetch that fails (network, status, body, no usable key) keeps the keys already held and is
//! logged; the next attempt waits for the interval like any other.
//!
//! # What a key is good for
//! Only public signature keys with a `kid` (tokens are matched to keys by it, as API Gateway does):
//! RSA for RS256/RS384/RS512, EC P-256 for ES256 and P-384 for ES384, narrowed to the key's own `alg`
//! when it names one. Keys marked for encryption (`use: enc`, or `key_ops` without `verify`),
//! symmetric (`oct`) keys and other types are skipped. So an HS256 token is never checked against a
//! key from here: the public-key-as-HMAC-secret confusion has nothing to work with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The least time between two refetches of the set (unknown key id, or set too old).
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// How long a fetched set is used before the next token triggers a refetch.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// A provider's key set is a few kilobytes; this bounds what a wrong URL can make us hold.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Connect and whole-request timeout of one fetch (requests that miss a key wait for it).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable key and the algorithms a token signed with it may name.
pub struct SigningKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

struct KeySet {
    by_kid: HashMap<String, Arc<SigningKey>>,
    fetched: Instant,
}

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// When the last refetch was attempted; held while one is under way.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
}

impl Jwks {
    /// Fetches the set at `url` once; an error (with the reason) if that fails or nothing in it is
    /// usable.
    pub async fn fetch(url: &str) -> anyhow::Result<Self> {
        Self::fetch_with(url, MIN_REFETCH).await
    }

    /// [`Jwks::fetch`] with another refetch interval (tests of the interval itself).
    pub async fn fetch_with(url: &str, min_refetch: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .context("building the JWKS client")?;
        let first = download(&client, url).await?;
        Ok(Jwks {
            url: url.to_string(),
            client,
            current: RwLock::new(Arc::new(first)),
            last_refetch: tokio::sync::Mutex::new(None),
            min_refetch,
        })
    }

    /// The key with id `kid`, refetching the set first if it lacks it or is too old and the interval
    /// allows. `None`: the provider does not publish (or no longer publishes) such a key.
    pub async fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        let set = self.current();
        let found = set.by_kid.get(kid).cloned();
        let stale = set.fetched.elapsed() >= MAX_AGE;
        if let (Some(key), false) = (&found, stale) {
            return Some(key.clone());
        }
        let mut last = match (found, self.last_refetch.try_lock()) {
            (_, Ok(guard)) => guard,
            // Stale but known, and a refetch is under way: no need to wait for it.
            (Some(key), Err(_)) => return Some(key),
            (None, Err(_)) => self.last_refetch.lock().await,
        };
        // A refetch that ran while this request waited may have brought the key.
        let set = self.current();
        if let Some(key) = set.by_kid.get(kid) {
            if set.fetched.elapsed() < MAX_AGE {
                return Some(key.clone());
            }
        }
        if last.is_none_or(|at| at.elapsed() >= self.min_refetch) {
            *last = Some(Instant::now());
            match download(&self.client, &self.url).await {
                Ok(fresh) => {
                    tracing::info!(
                        keys = fresh.by_kid.len(),
                        url = %self.url,
                        "fetched the identity provider's keys again"
                    );
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    url = %self.url,
                    "refetching the identity provider's keys failed; keeping the ones held"
                ),
            }
        }
        self.current().by_kid.get(kid).cloned()
    }

    fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn download(client: &reqwest::Client, url: &str) -> anyhow::Result<KeySet> {
    let mut resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .with_context(|| format!("fetching the key set {url}"))?;
    if !resp.status().is_success() {
        bail!("the key set {url} answered {}", resp.status());
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        bail!("the key set {url} is larger than {MAX_BODY_BYTES} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading the key set {url}"))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            bail!("the key set {url} is larger than {MAX_BODY_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    let by_kid = parse(&body).with_context(|| format!("the key set {url}"))?;
    Ok(KeySet {
        by_kid,
        fetched: Instant::now(),
    })
}

/// The usable keys of a JWKS document, by key id; an error if there is none. Keys this service
/// cannot use are skipped one by one (a provider may publish encryption keys next to signing keys).
pub fn parse(body: &[u8]) -> anyhow::Result<HashMap<String, Arc<SigningKey>>> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body)
        .context("not a JSON Web Key Set (an object with a `keys` array)")?;
    let mut by_kid = HashMap::new();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some((kid, key)) = usable(&jwk) {
            // The first of two keys with one id wins; a token cannot say which one it means.
            by_kid.entry(kid).or_insert_with(|| Arc::new(key));
        }
    }
    if by_kid.is_empty() {
        bail!("no usable signing key (RSA, or EC P-256/P-384, with a kid)");
    }
    Ok(by_kid)
}

/// The key id and verification key of a JWK this service can use for signatures (module doc).
fn usable(jwk: &Jwk) -> Option<(String, SigningKey)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(named) => {
            let named: Algorithm = named.to_string().parse().ok()?;
            if !family.contains(&named) {
                return None;
            }
            vec![named]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, SigningKey { key, algorithms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The public halves of testkit/fixtures/jwt/rsa-a.pem and ec-a.pem; no signing here.
    const RSA: &str = r#"{"kty":"RSA","n":"piiPtamulrfYG8CJexlMbZZ_Jb9uZkVp_f7mf56-6E6Wbu4e6KYO1Zy24D9CCB7eFCOyVKwFsS2ddTO67jpl8c4B7xRLoYHUAszcUtcd3QfvK0t8uMDqKQfNQu6SMD1btv9ovlOTsJ0lAeWF5nEyTRst1lRIF7scGVjWZl9z1j11uSKlHjBf323OQeQEQZQ29gnc0t0Q5lmpnM49aZXo3gOWlXsV9CSCb0r1x4AvbYcn7BDHpqu5RRCh0SbkapKc_6dOQvou0rNcVfh3NZb4clliJGhiPxOLyg6vVOxSQrmBlezbIAN0lSPmTfkygWB2up1xKMd4ZXdaj17SBM8hfQ","e":"AQAB"}"#;
    const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"rZwbZyjtUflVZnwT96iSzEo7fGrfC061hmJj0OTh5s4","y":"IIsFs1QS16w5Xk4Iddkl8z5EVBAHxNx3UapYmrath7Q"}"#;

    fn with(base: &str, extra: &str) -> String {
        format!("{},{extra}}}", base.trim_end_matches('}'))
    }

    fn set(keys: &[String]) -> Vec<u8> {
        format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
    }

    #[test]
    fn keeps_signature_keys_with_an_id_and_narrows_them_to_their_alg() {
        let keys = parse(&set(&[
            with(RSA, r#""kid":"r","use":"sig""#),
            with(EC, r#""kid":"e","alg":"ES256""#),
            with(RSA, r#""kid":"r512","alg":"RS512""#),
        ]))
        .unwrap();
        assert_eq!(
            keys["r"].algorithms,
            [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]
        );
        assert_eq!(keys["e"].algorithms, [Algorithm::ES256]);
        assert_eq!(keys["r512"].algorithms, [Algorithm::RS512]);
    }

    #[test]
    fn skips_what_cannot_verify_a_signature_and_refuses_a_set_of_nothing_usable() {
        let unusable = [
            RSA.to_string(),                                        // no kid
            with(RSA, r#""kid":"enc","use":"enc""#),                // encryption key
            with(RSA, r#""kid":"ops","key_ops":["encrypt"]"#),      // not for verifying
            with(RSA, r#""kid":"hs","alg":"HS256""#),               // RSA key claiming HMAC
            with(EC, r#""kid":"es384","alg":"ES384""#),             // P-256 key claiming ES384
            r#"{"kty":"oct","kid":"secret","k":"c2VjcmV0"}"#.into(), // symmetric: never from here
            r#"{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#.into(),
            r#"{"kty":"RSA","kid":"broken"}"#.into(),               // not a JWK at all
        ];
        let e = parse(&set(&unusable)).err().expect("nothing usable");
        assert!(format!("{e:#}").contains("no usable signing key"), "{e:#}");
        let mut mixed = unusable.to_vec();
        mixed.push(with(EC, r#""kid":"good""#));
        let keys = parse(&set(&mixed)).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
        assert!(parse(b"<html>").is_err());
        assert!(parse(br#"{"keys":{}}"#).is_err());
    }
}
