//! CORS as a browser meets it, over HTTP (the browser tests in `browser-tests/` then show that Chromium
//! accepts these answers): preflights for every route before any auth, allowed origins on every actual
//! response (errors and stored files included), refusals without any CORS header; and the try-it page.

mod common;

use common::{code, md5_hex, png, skip_on_lambda, TestServer};
use media_shared::cors::{self, Origins};
use reqwest::Method;

const WEB_APP: &str = "http://127.0.0.1:9999";

async fn cors_server() -> TestServer {
    TestServer::start_with(|c| c.cors_origins = Origins::parse(WEB_APP).unwrap()).await
}

/// Every path of docs/API.md, with and without the trailing slash, and the method a page would use.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v2/media/upload/chunk/"),
    ("POST", "/api/v2/media/upload/chunk"),
    ("POST", "/api/v2/media/upload/complete/"),
    ("POST", "/api/v2/media/upload/complete"),
    ("POST", "/api/v2/media/"),
    ("POST", "/api/v2/media"),
    ("GET", "/api/v2/media/17/"),
    ("PUT", "/api/v2/media/17/"),
    ("PATCH", "/api/v2/media/17"),
    ("DELETE", "/api/v2/media/17/"),
    ("POST", "/api/v2/media/17/click/"),
    ("POST", "/api/v2/media/17/click"),
];

async fn preflight(s: &TestServer, origin: &str, method: &str, path: &str) -> reqwest::Response {
    s.client
        .request(Method::OPTIONS, s.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-range,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn preflights_are_answered_for_every_route_without_credentials() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = cors_server().await;
    for (method, path) in ROUTES {
        let r = preflight(&s, WEB_APP, method, path).await;
        assert_eq!(r.status(), 204, "{method} {path}");
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(WEB_APP),
            "{path}"
        );
        let methods = header(&r, "access-control-allow-methods").unwrap();
        assert!(
            methods.split(", ").any(|m| m == *method),
            "{method} {path}: {methods}"
        );
        let headers = header(&r, "access-control-allow-headers").unwrap();
        for h in [
            "authorization",
            "content-range",
            "content-type",
            "x-requested-with",
        ] {
            assert!(headers.split(", ").any(|x| x == h), "{h} in {headers}");
        }
        assert_eq!(
            header(&r, "access-control-max-age"),
            Some(cors::MAX_AGE_SECS.to_string().as_str())
        );
        assert_eq!(header(&r, "vary"), Some("origin"));
        assert!(header(&r, "access-control-allow-credentials").is_none());
    }
    // Stored files: read-only, with the range headers a viewer needs.
    let r = preflight(&s, WEB_APP, "GET", "/files/media/x.png").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        Some("GET, HEAD")
    );
    assert_eq!(header(&r, "access-control-allow-headers"), Some("range"));
}

#[tokio::test]
async fn a_preflight_is_answered_before_any_body_is_read() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    // A preflight that announces a (small, allowed) body it never sends: a server that read bodies
    // before answering would wait here instead, as it does for a POST.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = cors_server().await;
    let mut tcp = tokio::net::TcpStream::connect(s.running().addr)
        .await
        .unwrap();
    let request = format!(
        "OPTIONS /api/v2/media/upload/chunk/ HTTP/1.1\r\nHost: x\r\nOrigin: {WEB_APP}\r\n\
         Access-Control-Request-Method: POST\r\nContent-Length: 1000\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {WEB_APP}")),
        "{head}"
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_header_at_all() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = cors_server().await;
    for origin in ["http://127.0.0.1:9998", "https://evil.example", "null"] {
        let r = preflight(&s, origin, "POST", "/api/v2/media/upload/chunk/").await;
        assert_eq!(r.status(), 403, "{origin}");
        assert!(
            !r.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{origin}: {:?}",
            r.headers()
        );
        assert_eq!(header(&r, "vary"), Some("origin"));
        let (_, body) = common::json_of(r).await;
        assert_eq!(code(&body), "cors_origin_not_allowed");
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("MEDIA_CORS_ORIGINS"));

        // The actual request is answered as usual (a browser will not let the page read it).
        let r = s
            .client
            .get(s.url("/api/v2/media/1/"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(header(&r, "access-control-allow-origin").is_none());
        assert_eq!(header(&r, "vary"), Some("origin"));
    }
    // A plain OPTIONS (no Access-Control-Request-Method) is not a preflight: the API's own 405.
    let r = s
        .client
        .request(Method::OPTIONS, s.url("/api/v2/media/upload/chunk/"))
        .header("origin", WEB_APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));
}

#[tokio::test]
async fn errors_and_successes_carry_the_allowed_origin() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = cors_server().await;
    let post_chunk = |auth: Option<String>, range: &str, body: Vec<u8>| {
        let mut req = s
            .client
            .post(s.url("/api/v2/media/upload/chunk/"))
            .header("origin", WEB_APP)
            .header("content-range", range)
            .multipart(reqwest::multipart::Form::new().part(
                "image",
                reqwest::multipart::Part::bytes(body).file_name("a.png"),
            ));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    // 401: no token.
    let r = post_chunk(None, "bytes 0-9/10", vec![0; 10]).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));
    // 413: refused while reading the body, before any handler.
    let big = vec![0u8; (s.config.limits.max_chunk_bytes + 128 * 1024) as usize];
    let r = post_chunk(Some(s.auth("u")), "bytes 0-1/2", big)
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));
    // 404: no such route.
    let r = s
        .client
        .get(s.url("/nope"))
        .header("origin", WEB_APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));

    // 201 and the stored file itself.
    let data = png(64, 48, 1);
    let id = s.upload("u", &data, 4096).await;
    let r = s
        .client
        .post(s.url("/api/v2/media/upload/complete/"))
        .header("origin", WEB_APP)
        .header("authorization", s.auth("u"))
        .form(&[("upload_id", id.as_str()), ("md5", &md5_hex(&data))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));
    let (_, media) = common::json_of(r).await;
    // The embedded backend serves files itself; on AWS the bucket's CORS rule (the one template.yaml
    // declares, put by MEDIA_CREATE_RESOURCES) answers, here from moto.
    let image = media["image"].as_str().unwrap();
    {
        let r = s
            .client
            .get(image)
            .header("origin", WEB_APP)
            .header("range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(header(&r, "access-control-allow-origin"), Some(WEB_APP));
        assert_eq!(
            header(&r, "access-control-expose-headers"),
            Some("accept-ranges, content-length, content-range")
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..10]);
    }
}

#[tokio::test]
async fn any_origin_is_answered_with_a_star_and_no_vary() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = TestServer::start_with(|c| c.cors_origins = Origins::Any).await;
    let r = preflight(&s, "https://community.example", "POST", "/api/v2/media/").await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert!(header(&r, "vary").is_none());
    let r = s
        .client
        .get(s.url("/api/v2/media/1/"))
        .header("origin", "https://community.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn the_default_lets_loopback_pages_in() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = TestServer::start().await;
    let r = preflight(&s, "http://localhost:5173", "POST", "/api/v2/media/").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    let r = preflight(&s, "https://community.example", "POST", "/api/v2/media/").await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_try_it_page_is_served_with_its_assets() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = TestServer::start().await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert!(header(&r, "content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    let html = r.text().await.unwrap();
    // A server with its own secret hands out no token.
    assert!(html.contains(r#"{"dev_token":null}"#), "{html}");
    for (path, kind, needle) in [
        ("/try-it/app.js", "text/javascript", "upload/chunk/"),
        ("/try-it/style.css", "text/css", "progress"),
        (
            "/try-it/vendor/spark-md5.min.js",
            "text/javascript",
            "SparkMD5",
        ),
        (
            "/try-it/vendor/spark-md5.LICENSE",
            "text/plain",
            "PUBLIC LICENSE",
        ),
    ] {
        assert!(html.contains(path), "the page names {path}");
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(header(&r, "content-type").unwrap().starts_with(kind));
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let r = s.client.post(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&common::json_of(r).await.1), "method_not_allowed");
}

#[tokio::test]
async fn with_the_development_secret_the_page_carries_a_working_token() {
    if skip_on_lambda("CORS and the try-it page are media-local's; on AWS, API Gateway and CloudFront answer CORS") {
        return;
    }
    let s = TestServer::start_with(|c| c.jwt_secret = None).await;
    let html = s
        .client
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = html
        .split(r#"{"dev_token":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no token in {html}"));
    let r = s
        .client
        .get(s.url("/api/v2/media/424242/"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    // Authenticated (404 for the unknown media), not 401.
    assert_eq!(r.status(), 404);
}
