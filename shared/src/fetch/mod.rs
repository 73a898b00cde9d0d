//! Fetching pages and images from URLs that users give, without letting the server become a proxy
//! into its own network.
//!
//! Every hop (the first request and each redirect) is checked the same way: http or https only, the
//! host resolved here and every address it resolves to checked (`address`), and the connection pinned
//! to those checked addresses, so a second DNS answer cannot swap in another one. Redirects are
//! followed by hand (the client's own policy is off) and no proxy from the environment is used. The
//! body is read up to a cap and the whole fetch, redirects included, runs under one time limit.

pub mod address;
pub mod image;
pub mod page;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use url::{Host, Url};

use crate::domain::{ApiError, FetchLimits};

/// A plain User-Agent: some sites answer unknown clients with an error page.
pub const USER_AGENT: &str = concat!(
    "media-upload/",
    env!("CARGO_PKG_VERSION"),
    " (link preview)"
);

/// What one fetch may do; `max_bytes` is already the tighter of the fetch cap and the caller's own.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    pub allow_private: bool,
    pub max_bytes: u64,
    pub timeout: Duration,
    pub max_redirects: u32,
}

impl Policy {
    pub fn new(limits: &FetchLimits) -> Self {
        Policy {
            enabled: limits.enabled,
            allow_private: limits.allow_private,
            max_bytes: limits.max_bytes,
            timeout: Duration::from_secs(limits.timeout_secs),
            max_redirects: limits.max_redirects,
        }
    }

    /// The same policy with a smaller body cap (images: the image size limit).
    pub fn capped(mut self, max_bytes: u64) -> Self {
        self.max_bytes = self.max_bytes.min(max_bytes);
        self
    }
}

/// A successful (2xx) answer, read completely.
#[derive(Debug)]
pub struct Fetched {
    /// Where the body came from, after redirects: relative links in a page resolve against it.
    pub url: Url,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Why a fetch failed. All of these are the user's URL's fault (or its server's), so they become a
/// 400 on the field that held the URL, never a 500.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching URLs is disabled on this server")]
    Disabled,
    #[error("{0:?} is not a valid URL")]
    BadUrl(String),
    #[error("only http and https URLs can be fetched, not {0}:")]
    Scheme(String),
    #[error("{host} resolves to {ip}, {} address, which is not allowed", .why.describe())]
    Refused {
        host: String,
        ip: IpAddr,
        why: address::Refusal,
    },
    #[error("the host {0} could not be resolved")]
    Unresolved(String),
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("the content is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no complete answer within {0} seconds")]
    Timeout(u64),
    #[error("the request failed: {0}")]
    Network(String),
}

impl FetchError {
    /// The API error on `field` (`url`, or `image` for a preview image).
    pub fn on_field(&self, field: &str) -> ApiError {
        ApiError::field(field, format!("could not fetch the URL: {self}"))
    }
}

/// GETs `url` under `policy`, following redirects, and returns the body of the final 2xx answer.
pub async fn get(url: &str, policy: &Policy, accept: &str) -> Result<Fetched, FetchError> {
    if !policy.enabled {
        return Err(FetchError::Disabled);
    }
    let start = Url::parse(url.trim()).map_err(|_| FetchError::BadUrl(url.to_string()))?;
    let secs = policy.timeout.as_secs().max(1);
    match tokio::time::timeout(policy.timeout, follow(start, policy, accept)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(secs)),
    }
}

async fn follow(mut url: Url, policy: &Policy, accept: &str) -> Result<Fetched, FetchError> {
    let mut hops = 0u32;
    loop {
        let client = pinned_client(&url, policy).await?;
        let response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        if status.is_redirection() {
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Err(FetchError::Status(status.as_u16()));
            };
            if hops >= policy.max_redirects {
                return Err(FetchError::TooManyRedirects(policy.max_redirects));
            }
            hops += 1;
            url = url
                .join(location)
                .map_err(|_| FetchError::BadUrl(location.to_string()))?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(response, policy.max_bytes).await?;
        return Ok(Fetched {
            url,
            content_type,
            body,
        });
    }
}

/// A client for one hop that can only reach the addresses checked for this URL's host.
async fn pinned_client(url: &Url, policy: &Policy) -> Result<reqwest::Client, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(url.scheme().to_string()));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl(url.to_string()))?;
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would connect on our behalf to addresses we never checked.
        .no_proxy()
        // No per-hop timeout: `get` bounds the whole fetch, body and redirects included.
        .user_agent(USER_AGENT);
    let builder = match url.host() {
        None => return Err(FetchError::BadUrl(url.to_string())),
        // Literal addresses are connected to as they are: check them, nothing to pin.
        Some(Host::Ipv4(ip)) => {
            allowed(&ip.to_string(), IpAddr::V4(ip), policy)?;
            builder
        }
        Some(Host::Ipv6(ip)) => {
            allowed(&ip.to_string(), IpAddr::V6(ip), policy)?;
            builder
        }
        Some(Host::Domain(host)) => {
            let addrs = resolve(host, port).await?;
            for a in &addrs {
                allowed(host, a.ip(), policy)?;
            }
            builder.resolve_to_addrs(host, &addrs)
        }
    };
    builder
        .build()
        .map_err(|e| FetchError::Network(e.to_string()))
}

/// Every address of `host`. A host with one refused address among good ones is refused as a whole:
/// which one the client would pick is not ours to guess.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| FetchError::Unresolved(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Unresolved(host.to_string()));
    }
    Ok(addrs)
}

fn allowed(host: &str, ip: IpAddr, policy: &Policy) -> Result<(), FetchError> {
    address::check(ip, policy.allow_private).map_err(|why| FetchError::Refused {
        host: host.to_string(),
        ip,
        why,
    })
}

/// The body, refused as soon as it grows past `max` (a declared length beyond it is refused before
/// reading anything).
async fn read_capped(mut response: reqwest::Response, max: u64) -> Result<Bytes, FetchError> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The innermost cause reads best ("connection refused"), the outer ones repeat the URL.
fn network(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Network("timed out".into());
    }
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    FetchError::Network(cause.to_string())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn disabled_fetching_refuses_before_resolving() {
        let policy = super::Policy::new(&crate::domain::FetchLimits {
            enabled: false,
            ..Default::default()
        });
        let e = super::get("http://example.invalid/", &policy, "*/*")
            .await
            .unwrap_err();
        assert!(matches!(e, super::FetchError::Disabled), "{e}");
        assert_eq!(e.on_field("url").status(), 400);
    }

    use super::*;

    fn policy() -> Policy {
        Policy::new(&FetchLimits::default())
    }

    #[tokio::test]
    async fn refuses_before_connecting() {
        for (url, want) in [
            ("ftp://example.com/x", "only http and https"),
            ("file:///etc/passwd", "only http and https"),
            ("http://127.0.0.1:1/", "a loopback address"),
            ("http://[::1]:1/", "a loopback address"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "a link-local address",
            ),
            ("http://[::ffff:a9fe:a9fe]/", "a link-local address"),
            ("http://10.0.0.1/", "a private address"),
            ("http://0.0.0.0:1/", "an unspecified or broadcast address"),
            ("http://localhost:1/", "not allowed"),
            ("not a url", "not a valid URL"),
        ] {
            let e = get(url, &policy(), "*/*").await.unwrap_err();
            assert!(e.to_string().contains(want), "{url}: {e}");
            let body = e.on_field("url").body();
            assert_eq!(body["errors"][0]["field"], "url");
        }
    }

    #[tokio::test]
    async fn link_local_stays_refused_with_the_switch_on() {
        let mut p = policy();
        p.allow_private = true;
        let e = get("http://169.254.169.254/", &p, "*/*").await.unwrap_err();
        assert!(matches!(e, FetchError::Refused { .. }), "{e}");
        let e = get("http://[fe80::1]/", &p, "*/*").await.unwrap_err();
        assert!(matches!(e, FetchError::Refused { .. }), "{e}");
    }

    #[test]
    fn capped_takes_the_smaller_limit() {
        assert_eq!(policy().capped(10).max_bytes, 10);
        assert_eq!(policy().capped(u64::MAX).max_bytes, 5 * 1024 * 1024);
    }
}
