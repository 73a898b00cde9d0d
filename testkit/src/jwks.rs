//! An identity provider for tests: fixed signing keys (`fixtures/jwt/`, committed because making RSA
//! keys in a debug build is slow; test-only, never use them elsewhere), tokens signed with them, and
//! a loopback JWKS server that serves their public halves (derived from the private keys at run time,
//! so the set cannot drift from the fixtures), counts its fetches and can be told to rotate or fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The issuer and audience the tests configure (`MEDIA_JWT_ISSUER`, `MEDIA_JWT_AUDIENCE`), the
/// second audience standing for another accepted client.
pub const ISSUER: &str = "https://idp.test.example/";
pub const AUDIENCE: &str = "media-api";
pub const OTHER_AUDIENCE: &str = "media-web";

/// One of the fixture keys: its key id, algorithm, private half and public PEM.
pub struct TestKey {
    pub kid: &'static str,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub public_pem: &'static [u8],
}

impl TestKey {
    /// RSA 2048, RS256: the provider's first key.
    pub fn rsa_a() -> Self {
        Self::rsa(
            "rsa-a",
            include_str!("../fixtures/jwt/rsa-a.pem"),
            include_bytes!("../fixtures/jwt/rsa-a.pub.pem"),
        )
    }

    /// RSA 2048, RS256: the key the provider rotates to.
    pub fn rsa_b() -> Self {
        Self::rsa(
            "rsa-b",
            include_str!("../fixtures/jwt/rsa-b.pem"),
            include_bytes!("../fixtures/jwt/rsa-b.pub.pem"),
        )
    }

    /// EC P-256, ES256.
    pub fn ec_a() -> Self {
        TestKey {
            kid: "ec-a",
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&der(include_str!("../fixtures/jwt/ec-a.pem"))),
            public_pem: include_bytes!("../fixtures/jwt/ec-a.pub.pem"),
        }
    }

    fn rsa(kid: &'static str, pem: &str, public_pem: &'static [u8]) -> Self {
        TestKey {
            kid,
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(&der(pem)),
            public_pem,
        }
    }

    /// The public JWK, as a provider publishes it (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("public JWK");
        jwk.common.key_id = Some(self.kid.into());
        let mut v = serde_json::to_value(jwk).unwrap();
        v["use"] = json!("sig");
        v
    }

    /// A token with these claims, this key's `kid` and algorithm.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.into());
        self.sign_with(header, claims)
    }

    /// A token with a header of the test's making (another `kid`, none), signed with this key.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }
}

/// The DER inside a PEM file (RSA keys as PKCS#1, EC keys as PKCS#8: what jsonwebtoken's DER
/// constructors take; its PEM ones need a feature the service does not build).
fn der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM fixture")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The claims of a good token for `sub`: the tests' issuer and audience, valid for ten minutes.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600})
}

/// An unsigned token (`alg: none`), as an attacker would send it.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-a"})),
        b64(claims)
    )
}

/// The loopback JWKS server. Dropped, it stops serving.
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves the public halves of `keys`, answering each fetch after `delay` (so that concurrent
    /// fetches would overlap, if the client made them).
    pub async fn start(keys: &[&TestKey], delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let served = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (s, f, fail) = (served.clone(), fetches.clone(), failing.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (s, f, fail) = (s.clone(), f.clone(), fail.clone());
                tokio::spawn(async move {
                    // The request head is all a GET has; its content does not matter here.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let (status, body) = if fail.load(Ordering::SeqCst) {
                        ("503 Service Unavailable", "{}".to_string())
                    } else {
                        ("200 OK", s.lock().unwrap().to_string())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        let server = JwksServer {
            url,
            keys: served,
            fetches,
            failing,
            task,
        };
        server.serve(keys);
        server
    }

    /// From now on the set holds the public halves of `keys` (a rotation).
    pub fn serve(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() =
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    /// From now on every fetch is answered 503 (or served again).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many fetches the server has answered so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
