//! The CORS policy, stated once: which origins may call the API from a browser, with which methods and
//! request headers, and how long a browser may cache a preflight's answer.
//!
//! Two places apply it. The local server answers preflights and decorates responses with it
//! (`media-local`'s `cors` module). On AWS the services do that themselves from `template.yaml`: the
//! HTTP API's `CorsConfiguration` (API Gateway answers preflights before the JWT authorizer runs) and the
//! bucket's `CorsConfiguration` for reading objects. The template cannot import Rust, so it holds a copy,
//! and `local/tests/cors_template.rs` fails when the copy and these constants differ. The origins are a
//! deployment setting on both: `MEDIA_CORS_ORIGINS` here, the `CorsAllowedOrigins` parameter there,
//! both in the same syntax (`*` or exact origins).
//!
//! No credentials mode: clients send `Authorization: Bearer`, which a page sets itself, never cookies, so
//! `Access-Control-Allow-Origin: *` is valid for the API and `Access-Control-Allow-Credentials` is never
//! sent.

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

use crate::config::{ConfigError, Env};

/// What a browser may do on one kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Methods a page may use (simple ones included: API Gateway and S3 list them explicitly too).
    pub methods: &'static [&'static str],
    /// Request headers a page may set, lowercase. `Authorization` cannot be covered by a `*` in
    /// `Access-Control-Allow-Headers`, which is one reason the list is explicit.
    pub request_headers: &'static [&'static str],
    /// Response headers a page may read beyond the CORS-safelisted ones, lowercase.
    pub expose_headers: &'static [&'static str],
}

/// The API: every route of docs/API.md. The official client sends `Content-Range` and `Authorization`
/// with its multipart chunks, and some HTTP libraries add `X-Requested-With`.
pub const API: Rule = Rule {
    methods: &["GET", "POST", "PUT", "PATCH", "DELETE"],
    request_headers: &[
        "authorization",
        "content-range",
        "content-type",
        "x-requested-with",
    ],
    expose_headers: &[],
};

/// Stored files (`/files/` locally, the bucket on AWS): read only. `Range` and the range response
/// headers let a viewer (e.g. pdf.js) fetch a document in pieces.
pub const FILES: Rule = Rule {
    methods: &["GET", "HEAD"],
    request_headers: &["range"],
    expose_headers: &["accept-ranges", "content-length", "content-range"],
};

/// How long a browser may reuse a preflight answer. Chromium caps the value at 7200 s (two hours), so
/// more would only be honoured by some browsers; fewer preflights make each chunk cheaper.
pub const MAX_AGE_SECS: u32 = 7200;

/// Origins allowed to read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `*`: any origin. Fine for an API authenticated by bearer tokens (a page needs the token, which
    /// another site does not have), but say so deliberately.
    Any,
    /// Exact origins (`scheme://host[:port]`, lowercase, as browsers send them).
    List(Vec<String>),
    /// The local server's default: pages served from loopback (`localhost`, `127.0.0.1`, `[::1]`) on
    /// any port, so a developer's web app and the try-it page on another port work out of the box,
    /// while sites on the internet do not get to use a development token.
    Loopback,
}

impl Origins {
    /// `MEDIA_CORS_ORIGINS`: `*`, or comma-separated origins; unset: loopback origins.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        match env.get("MEDIA_CORS_ORIGINS") {
            None => Ok(Origins::Loopback),
            Some(raw) => Origins::parse(&raw).map_err(|message| ConfigError {
                var: "MEDIA_CORS_ORIGINS",
                message,
            }),
        }
    }

    /// The syntax both API Gateway and S3 accept: `*`, or a list of exact origins.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let entries: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries == ["*"] {
            return Ok(Origins::Any);
        }
        if entries.is_empty() {
            return Err(format!(
                "{raw:?} names no origin: use * or origins like https://community.example"
            ));
        }
        let mut list = Vec::with_capacity(entries.len());
        for e in entries {
            list.push(parse_origin(e).ok_or_else(|| {
                format!(
                    "{e:?} is not an origin: write scheme://host[:port] with no path or trailing slash \
                     (e.g. https://community.example), or * alone for any origin"
                )
            })?);
        }
        Ok(Origins::List(list))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or `None` if it is refused.
    pub fn allow(&self, origin: &str) -> Option<HeaderValue> {
        let allowed = match self {
            Origins::Any => return Some(HeaderValue::from_static("*")),
            Origins::List(list) => list.iter().any(|o| o == origin),
            Origins::Loopback => is_loopback_origin(origin),
        };
        allowed
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }

    /// The origins as patterns with at most one `*` each, the form S3's `AllowedOrigins` take
    /// (loopback on any port becomes `http://localhost:*` and the like).
    pub fn patterns(&self) -> Vec<String> {
        match self {
            Origins::Any => vec!["*".into()],
            Origins::List(list) => list.clone(),
            Origins::Loopback => ["http", "https"]
                .iter()
                .flat_map(|scheme| {
                    LOOPBACK_HOSTS.iter().flat_map(move |host| {
                        [format!("{scheme}://{host}"), format!("{scheme}://{host}:*")]
                    })
                })
                .collect(),
        }
    }

    /// Whether answers depend on the request's `Origin` (then caches must key on it: `Vary: Origin`).
    fn varies(&self) -> bool {
        !matches!(self, Origins::Any)
    }
}

/// `scheme://host[:port]`, lowercased; `None` for anything else (paths, `null`, wildcards, userinfo).
fn parse_origin(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let (host_ok, after) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        let ok = !addr.is_empty()
            && addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok, after)
    } else {
        let (host, after) = rest.split_at(rest.find(':').unwrap_or(rest.len()));
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        (ok, after)
    };
    (host_ok && (after.is_empty() || valid_port(after))).then_some(lower)
}

/// `:` followed by a port number.
fn valid_port(after_host: &str) -> bool {
    after_host.strip_prefix(':').is_some_and(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    })
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    LOOPBACK_HOSTS.iter().any(|host| {
        rest.strip_prefix(host)
            .is_some_and(|after| after.is_empty() || valid_port(after))
    })
}

/// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`. Plain `OPTIONS` requests
/// are not, and go to the router like any other method.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of a preflight's answer, or `None` if the origin is refused. The lists are the rule's,
/// whatever was asked: the browser compares them with the request it wants to make.
pub fn preflight_headers(origins: &Origins, rule: &Rule, headers: &HeaderMap) -> Option<HeaderMap> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let allow = origins.allow(origin)?;
    let mut out = HeaderMap::new();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        list_value(rule.methods),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        list_value(rule.request_headers),
    );
    out.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS.into());
    if origins.varies() {
        out.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    Some(out)
}

/// Adds what an actual response (errors included) needs: the allowed origin and the readable headers
/// for an allowed `Origin`; `Vary: Origin` whenever the answer depends on it, so that a shared cache
/// never hands one origin's answer to another.
pub fn decorate(origins: &Origins, rule: &Rule, request: &HeaderMap, response: &mut HeaderMap) {
    if origins.varies() {
        response.append(header::VARY, HeaderValue::from_static("origin"));
    }
    let Some(allow) = request
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(|o| origins.allow(o))
    else {
        return;
    };
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if !rule.expose_headers.is_empty() {
        response.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            list_value(rule.expose_headers),
        );
    }
}

fn list_value(items: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&items.join(", ")).expect("static header names are valid header values")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        h
    }

    #[test]
    fn origins_parse_like_the_template_parameter() {
        assert_eq!(Origins::parse("*").unwrap(), Origins::Any);
        assert_eq!(Origins::parse(" * ").unwrap(), Origins::Any);
        assert_eq!(
            Origins::parse("https://Community.Example, http://127.0.0.1:5173,http://[::1]:3000")
                .unwrap(),
            Origins::List(vec![
                "https://community.example".into(),
                "http://127.0.0.1:5173".into(),
                "http://[::1]:3000".into()
            ])
        );
        for bad in [
            "",
            ",",
            "community.example",
            "https://community.example/",
            "https://community.example/app",
            "null",
            "*,https://a.example",
            "https://*.example.com",
            "http://localhost:port",
            "http://localhost:99999",
            "https://user@community.example",
            "ftp://community.example",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = Origins::from_env(&[("MEDIA_CORS_ORIGINS", "https://a.example/")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_CORS_ORIGINS");
        assert_eq!(
            Origins::from_env(&[("OTHER", "x")]).unwrap(),
            Origins::Loopback
        );
    }

    #[test]
    fn the_default_allows_loopback_pages_on_any_port_and_nothing_else() {
        let o = Origins::Loopback;
        for ok in [
            "http://localhost:5173",
            "http://127.0.0.1:9999",
            "http://[::1]:8080",
            "http://localhost",
            "https://localhost:8443",
        ] {
            assert_eq!(o.allow(ok).unwrap(), ok, "{ok}");
        }
        for refused in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "http://localhost:",
            "http://127.0.0.2:80",
            "null",
        ] {
            assert!(o.allow(refused).is_none(), "{refused}");
        }
        let patterns = o.patterns();
        assert!(patterns.contains(&"http://127.0.0.1:*".to_string()));
        assert!(patterns.contains(&"http://localhost".to_string()));
        assert_eq!(Origins::Any.patterns(), ["*"]);
    }

    #[test]
    fn preflights_carry_the_rule_and_refuse_unknown_origins() {
        let o = Origins::parse("http://127.0.0.1:9999").unwrap();
        let h = preflight_headers(&o, &API, &req("http://127.0.0.1:9999")).unwrap();
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:9999");
        assert_eq!(
            h["access-control-allow-methods"],
            "GET, POST, PUT, PATCH, DELETE"
        );
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization, content-range, content-type, x-requested-with"
        );
        assert_eq!(h["access-control-max-age"], "7200");
        assert_eq!(h["vary"], "origin");
        assert!(preflight_headers(&o, &API, &req("http://127.0.0.1:9998")).is_none());
        let any = preflight_headers(&Origins::Any, &FILES, &req("https://x.example")).unwrap();
        assert_eq!(any["access-control-allow-origin"], "*");
        assert_eq!(any["access-control-allow-methods"], "GET, HEAD");
        assert!(!any.contains_key("vary"));
        assert!(is_preflight(&Method::OPTIONS, &req("https://x.example")));
        let mut plain = req("https://x.example");
        plain.remove(header::ACCESS_CONTROL_REQUEST_METHOD);
        assert!(!is_preflight(&Method::OPTIONS, &plain));
        assert!(!is_preflight(&Method::POST, &req("https://x.example")));
    }

    #[test]
    fn actual_responses_name_the_allowed_origin_and_vary_on_it() {
        let o = Origins::parse("https://a.example").unwrap();
        let mut resp = HeaderMap::new();
        resp.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        decorate(&o, &FILES, &req("https://a.example"), &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "https://a.example");
        assert_eq!(
            resp["access-control-expose-headers"],
            "accept-ranges, content-length, content-range"
        );
        let vary: Vec<_> = resp.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);

        let mut refused = HeaderMap::new();
        decorate(&o, &API, &req("https://b.example"), &mut refused);
        assert!(!refused.contains_key("access-control-allow-origin"));
        assert_eq!(refused["vary"], "origin");

        let mut any = HeaderMap::new();
        decorate(&Origins::Any, &API, &req("https://b.example"), &mut any);
        assert_eq!(any["access-control-allow-origin"], "*");
        assert!(!any.contains_key("vary") && !any.contains_key("access-control-expose-headers"));
    }
}
