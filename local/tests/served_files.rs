//! Stored objects are served with headers that fit what they are, the same on both backends: the
//! sniffed type, a year of immutable caching, and for documents a download under the original name,
//! made safe whatever the name. On the embedded backend that is `/files/` (checked with ETag, Range and
//! conditional requests too); with `MEDIA_TEST_BACKEND=aws` it is the object metadata S3 (moto) stores
//! and returns to a GET of the media's URL. With a public base URL every URL in a Media lies under it
//! and none is presigned.

mod common;

use axum::routing::get as route_get;
use common::*;
use media_shared::wiring::{Backend, Stores};
use serde_json::{json, Value};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn is_local(s: &TestServer) -> bool {
    matches!(s.stores(), Stores::Local { .. })
}

/// One chunk carrying the whole file, whose part header is `Content-Disposition: form-data;
/// name="document"; <filename_params>` exactly as given (a client can send any bytes there).
async fn upload_whole(s: &TestServer, data: &[u8], filename_params: &str) -> String {
    let boundary = "----served-files-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; {filename_params}\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (st, b) = json_of(
        s.client
            .post(s.url("/api/v2/media/upload/chunk/"))
            .header("authorization", s.auth("alice"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    b["upload_id"].as_str().unwrap().to_string()
}

/// Uploads and completes; the Media.
async fn media_of(s: &TestServer, data: &[u8], filename_params: &str) -> Value {
    let id = upload_whole(s, data, filename_params).await;
    let (st, media) = s.complete("alice", &id, &md5_hex(data), None).await;
    assert_eq!(st, 201, "{media}");
    media
}

async fn get(s: &TestServer, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s.client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The response's Content-Disposition after checking the body is the document.
async fn served_disposition(s: &TestServer, media: &Value, doc: &[u8]) -> String {
    let r = get(s, media["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("application/pdf"));
    assert_eq!(header(&r, "cache-control"), Some(IMMUTABLE));
    let d = header(&r, "content-disposition")
        .expect("a document has a Content-Disposition")
        .to_string();
    assert_eq!(md5_hex(&r.bytes().await.unwrap()), md5_hex(doc));
    d
}

#[tokio::test]
async fn images_are_served_inline_with_their_type_and_a_year_of_caching() {
    let s = TestServer::start().await;
    let image = png(400, 300, 11);
    let id = s.upload("alice", &image, 204_800).await;
    let (st, media) = s.complete("alice", &id, &md5_hex(&image), None).await;
    assert_eq!(st, 201, "{media}");
    for (url, mime) in [
        (&media["image"], "image/png"),
        (&media["image_thumbnail"]["url"], "image/jpeg"),
    ] {
        let r = get(&s, url.as_str().unwrap(), &[]).await;
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(header(&r, "content-type"), Some(mime), "{url}");
        assert_eq!(header(&r, "cache-control"), Some(IMMUTABLE), "{url}");
        assert_eq!(header(&r, "content-disposition"), None, "{url}");
    }
}

#[tokio::test]
async fn documents_download_under_their_original_name() {
    let s = TestServer::start().await;
    let doc = pdf(30_000);

    let media = media_of(&s, &doc, "filename=\"report.pdf\"").await;
    assert_eq!(
        served_disposition(&s, &media, &doc).await,
        "attachment; filename=\"report.pdf\""
    );

    // A browser sends a non-ASCII name as raw UTF-8: an ASCII fallback plus the exact name (RFC 5987).
    let media = media_of(&s, &doc, "filename=\"Übersicht – Q3 (final).pdf\"").await;
    assert_eq!(media["title"], "Übersicht – Q3 (final).pdf");
    assert_eq!(
        served_disposition(&s, &media, &doc).await,
        "attachment; filename=\"_bersicht _ Q3 (final).pdf\"; \
         filename*=UTF-8''%C3%9Cbersicht%20%E2%80%93%20Q3%20%28final%29.pdf"
    );

    // A hostile name: a path, a quote that would end the value, CR LF that would start a new header,
    // a right-to-left override that disguises an .exe, and the wrong extension.
    let hostile = "filename*=UTF-8''..%2F..%2Fevil%22%3B%20x%3D%22%0D%0ASet-Cookie%3A%20a%3Db%E2%80%AEfdp.exe";
    let media = media_of(&s, &doc, hostile).await;
    assert_eq!(
        media["title"],
        "../../evil\"; x=\"\r\nSet-Cookie: a=b\u{202e}fdp.exe"
    );
    let d = served_disposition(&s, &media, &doc).await;
    assert_eq!(
        d,
        "attachment; filename=\"evil'; x='__Set-Cookie: a=b_fdp.exe.pdf\""
    );

    // A name with nothing usable left: a plain attachment, still never the key.
    let media = media_of(&s, &doc, "filename=\"..\"").await;
    assert_eq!(served_disposition(&s, &media, &doc).await, "attachment");
}

#[tokio::test]
async fn ranges_etags_and_conditions_are_honoured_like_s3() {
    let s = TestServer::start().await;
    let doc = pdf(10_000);
    let media = media_of(&s, &doc, "filename=\"r.pdf\"").await;
    let url = media["url"].as_str().unwrap();
    let len = doc.len();

    for (range, start, end) in [
        ("bytes=100-199", 100, 199),
        ("bytes=9990-", 9990, len - 1),
        ("bytes=-25", len - 25, len - 1),
        ("bytes=0-99999", 0, len - 1),
    ] {
        let r = get(&s, url, &[("range", range)]).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            Some(&*format!("bytes {start}-{end}/{len}")),
            "{range}"
        );
        assert_eq!(
            header(&r, "content-length"),
            Some(&*(end - start + 1).to_string())
        );
        assert_eq!(
            header(&r, "content-disposition"),
            Some("attachment; filename=\"r.pdf\"")
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &doc[start..=end], "{range}");
    }
    if !is_local(&s) {
        // The rest is S3's own behaviour (moto's answers are XML, and a multipart object's ETag is
        // not its MD5); what is checked below is media-local matching S3.
        return;
    }

    let whole = get(&s, url, &[]).await;
    let etag = header(&whole, "etag").unwrap().to_string();
    let modified = header(&whole, "last-modified").unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", md5_hex(&doc)), "the content's MD5");
    assert_eq!(header(&whole, "accept-ranges"), Some("bytes"));
    assert_eq!(header(&whole, "content-length"), Some(&*len.to_string()));

    // Beyond the end: 416 with the size, and the JSON error envelope.
    let r = get(&s, url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        header(&r, "content-range"),
        Some(&*format!("bytes */{len}"))
    );
    let (_, b) = json_of(r).await;
    assert_eq!(code(&b), "range_not_satisfiable");

    // Several ranges, nonsense, or a stale If-Range: the whole object, as S3 answers.
    for headers in [
        vec![("range", "bytes=0-1,5-6")],
        vec![("range", "bytes=oops")],
        vec![("range", "bytes=0-1"), ("if-range", "\"stale\"")],
    ] {
        let r = get(&s, url, &headers).await;
        assert_eq!(r.status(), 200, "{headers:?}");
        assert_eq!(r.bytes().await.unwrap().len(), len);
    }
    let r = get(&s, url, &[("range", "bytes=0-1"), ("if-range", &etag)]).await;
    assert_eq!(r.status(), 206);

    // Revalidation: 304 with the validators and no body; failed preconditions: 412.
    for headers in [
        vec![("if-none-match", etag.as_str())],
        vec![("if-none-match", "\"other\", W/\"x\", *")],
        vec![("if-modified-since", modified.as_str())],
    ] {
        let r = get(&s, url, &headers).await;
        assert_eq!(r.status(), 304, "{headers:?}");
        assert_eq!(header(&r, "etag"), Some(etag.as_str()));
        assert_eq!(header(&r, "cache-control"), Some(IMMUTABLE));
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = get(&s, url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status(), 200);
    let r = get(&s, url, &[("if-match", etag.as_str())]).await;
    assert_eq!(r.status(), 200);
    for headers in [
        vec![("if-match", "\"other\"")],
        vec![("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    ] {
        let (st, b) = json_of(get(&s, url, &headers).await).await;
        assert_eq!((st, code(&b)), (412, "precondition_failed"), "{headers:?}");
    }

    // HEAD: the same headers, no body.
    let r = s.client.head(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), Some(&*len.to_string()));
    assert_eq!(header(&r, "etag"), Some(etag.as_str()));
    assert!(r.bytes().await.unwrap().is_empty());

    // Only stored keys exist under /files.
    for path in [
        "/files/",
        "/files/media",
        "/files/../media.redb",
        "/files/%2e%2e/media.redb",
        "/files/media/nothing.pdf",
    ] {
        let (st, b) = json_of(s.client.get(s.url(path)).send().await.unwrap()).await;
        assert_eq!((st, code(&b)), (404, "not_found"), "{path}");
    }
    let (st, b) = json_of(s.client.delete(url).send().await.unwrap()).await;
    assert_eq!((st, code(&b)), (405, "method_not_allowed"));
}

#[tokio::test]
async fn deleting_a_media_removes_every_object_it_stored() {
    let s = TestServer::start().await;
    let image = png(64, 48, 12);
    let id = s.upload("alice", &image, 204_800).await;
    let (_, media) = s.complete("alice", &id, &md5_hex(&image), None).await;
    let urls = [
        media["image"].as_str().unwrap().to_string(),
        media["image_thumbnail"]["url"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    for url in &urls {
        assert_eq!(s.fetch(url).await.0, 200);
    }
    let r = s
        .client
        .delete(s.url(&format!("/api/v2/media/{}/", media["id"])))
        .header("authorization", s.auth("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for url in &urls {
        assert_eq!(s.fetch(url).await.0, 404, "{url}");
    }
    if let Backend::Local { data_dir } = &s.config.backend {
        // Nothing is left next to the objects either (their stored headers).
        let left: Vec<_> = walk(&data_dir.join("headers"));
        assert_eq!(left, Vec::<String>::new());
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// A web server on loopback with a page and an image, for media made from URLs.
async fn origin() -> String {
    let png = png(50, 40, 13);
    let app = axum::Router::new()
        .route(
            "/page",
            route_get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><head><title>A page</title></head><body>hi</body></html>",
                )
            }),
        )
        .route(
            "/img.png",
            route_get(move || {
                let png = png.clone();
                async move { ([("content-type", "image/png")], png) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Every string in `v` that looks like a URL.
fn urls_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            out.push(s.clone())
        }
        Value::Array(a) => a.iter().for_each(|x| urls_in(x, out)),
        Value::Object(o) => o.values().for_each(|x| urls_in(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn with_a_public_base_url_every_stored_object_url_is_under_it_and_none_is_presigned() {
    const BASE: &str = "https://media.example.test";
    let s = TestServer::start_with(|c| {
        c.limits.fetch.allow_private = true;
        match &mut c.backend {
            Backend::Local { .. } => c.public_base_url = Some(BASE.into()),
            Backend::Aws { config, .. } => config.public_base_url = Some(BASE.into()),
        }
    })
    .await;
    let o = origin().await;
    let create = |body: Value| {
        let req = s
            .client
            .post(s.url("/api/v2/media/"))
            .header("authorization", s.auth("alice"))
            .json(&body);
        async move { json_of(req.send().await.unwrap()).await }
    };

    let image = png(300, 200, 14);
    let id = s.upload("alice", &image, 204_800).await;
    let (_, uploaded_image) = s.complete("alice", &id, &md5_hex(&image), None).await;
    let uploaded_doc = media_of(&s, &pdf(5000), "filename=\"a.pdf\"").await;
    let (st, fetched_image) = create(json!({"type": "image", "url": format!("{o}/img.png")})).await;
    assert_eq!(st, 201, "{fetched_image}");
    let (st, link) = create(json!({"type": "url", "url": format!("{o}/page")})).await;
    assert_eq!(st, 201, "{link}");
    let (st, link) = json_of(
        s.client
            .put(s.url(&format!("/api/v2/media/{}/", link["id"])))
            .header("authorization", s.auth("alice"))
            .json(&json!({"image": format!("{o}/img.png")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200, "{link}");

    // The object URLs of each media, and for the link only its stored preview image (its `url` and
    // embed are the page's own).
    let mut urls = Vec::new();
    for m in [&uploaded_image, &uploaded_doc, &fetched_image] {
        urls_in(m, &mut urls);
    }
    urls.push(link["image"].as_str().unwrap().to_string());
    assert_eq!(
        urls.len(),
        6,
        "image + thumbnail, doc, image + thumbnail, preview: {urls:?}"
    );
    // With the base URL, media-local serves the files below `/files`; S3 keys sit at the root.
    let prefix = if is_local(&s) {
        format!("{BASE}/files/")
    } else {
        format!("{BASE}/")
    };
    for url in &urls {
        assert!(url.starts_with(&prefix), "{url} is not under {prefix}");
        let parsed = reqwest::Url::parse(url).unwrap();
        assert_eq!(parsed.query(), None, "{url} carries a query (presigned?)");
        assert!(!url.contains("X-Amz-"), "{url} is presigned");
        let key = &parsed.path()[prefix.len() - BASE.len()..];
        assert!(
            ["media/", "thumbnails/", "previews/"]
                .iter()
                .any(|p| key.starts_with(p)),
            "{url}: {key} is not under a finished prefix"
        );
    }
    // The GET answers the same.
    let (_, again) = s
        .get_media("bob", uploaded_doc["id"].as_u64().unwrap())
        .await;
    assert_eq!(again["url"], uploaded_doc["url"]);
}
