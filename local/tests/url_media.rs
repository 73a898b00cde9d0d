//! Media from URLs (link previews, images downloaded from a URL, a url media's chosen preview image)
//! and thumbnails, over HTTP against the real server, which fetches from a web server the test runs
//! on loopback (`origin`): OpenGraph pages, YouTube- and Vimeo-shaped pages with oEmbed discovery, a
//! bare page, redirects (to the cloud metadata address among others), an oversized and a slow answer,
//! images and things that are not images.
//!
//! Loopback is private, so most tests switch `allow_private` on, as `MEDIA_FETCH_ALLOW_PRIVATE=1`
//! does; `loopback_is_refused_by_default` checks the default refuses the very same URLs.

mod common;

use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use image::{DynamicImage, GenericImageView};
use media_shared::domain::ThumbnailMode;
use media_testkit::{animated_gif, png_claiming, solid_png};
use serde_json::{json, Value};

/// Body cap of the fetcher in these tests, and the time cap.
const MAX_FETCH: u64 = 256 * 1024;
const TIMEOUT_SECS: u64 = 2;
const MAX_REDIRECTS: u32 = 3;

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn bytes(mime: &'static str, data: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, mime)], data).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

const OG_PAGE: &str = r#"<!doctype html><html><head>
<title>Tag title</title>
<meta property="og:title" content="Rust &amp; the web">
<meta property="og:description" content="A page with OpenGraph tags">
<meta property="og:image" content="/img/solid.png">
<meta property="og:image:width" content="1200">
<meta property="og:image:height" content="800">
<meta property="og:url" content="/og">
<meta property="og:type" content="article">
</head><body>hello</body></html>"#;

/// A page shaped like YouTube's watch page: og tags and oEmbed discovery.
fn video_page(provider: &str) -> String {
    format!(
        r#"<html><head><title>{provider} page</title>
<meta property="og:type" content="video.other">
<meta property="og:title" content="A {provider} clip">
<meta property="og:description" content="Watch it">
<meta property="og:image" content="/img/solid.png">
<link rel="alternate" type="application/json+oembed" href="/oembed/{provider}?url=x&amp;format=json" title="x">
<link rel="alternate" type="text/xml+oembed" href="/oembed/{provider}.xml">
</head><body></body></html>"#
    )
}

fn oembed_html(provider: &str) -> String {
    format!(
        r#"<iframe width="480" height="270" src="https://{provider}.example/embed/1" allowfullscreen></iframe>"#
    )
}

/// The web server URLs are fetched from, on a loopback port; answers its base URL.
async fn origin() -> String {
    let app = axum::Router::new()
        .route("/og", get(|| async { html(OG_PAGE.into()) }))
        .route("/watch", get(|| async { html(video_page("youtube")) }))
        .route(
            "/vimeo/76979871",
            get(|| async { html(video_page("vimeo")) }),
        )
        .route(
            "/oembed/{provider}",
            get(
                |axum::extract::Path(provider): axum::extract::Path<String>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    assert_eq!(q.get("format").map(String::as_str), Some("json"));
                    let body = json!({
                        "type": "video", "version": "1.0", "provider_name": provider,
                        "title": format!("{provider} oEmbed title"), "html": oembed_html(&provider),
                        "width": 480, "height": "270", "thumbnail_url": "/img/thumb.jpg",
                    });
                    bytes("application/json", body.to_string().into_bytes())
                },
            ),
        )
        .route(
            "/bare",
            get(|| async { html("<html><body><p>no metadata at all</p></body></html>".into()) }),
        )
        .route(
            "/titled",
            get(|| async {
                html("<html><head><title> Just a title </title></head></html>".into())
            }),
        )
        .route("/redirect/og", get(|| async { redirect("/redirect/og2") }))
        .route("/redirect/og2", get(|| async { redirect("/og") }))
        .route(
            "/redirect/metadata",
            get(|| async { redirect("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/redirect/mapped",
            get(|| async { redirect("http://[::ffff:169.254.169.254]/") }),
        )
        .route(
            "/redirect/zero",
            get(|| async { redirect("http://0.0.0.0/") }),
        )
        .route(
            "/redirect/ftp",
            get(|| async { redirect("ftp://example.com/") }),
        )
        .route(
            "/redirect/loop",
            get(|| async { redirect("/redirect/loop") }),
        )
        .route(
            "/big",
            get(|| async { html("<p>".repeat(MAX_FETCH as usize / 3 + 100)) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(TIMEOUT_SECS + 8)).await;
                html(OG_PAGE.into())
            }),
        )
        .route(
            "/img/solid.png",
            get(|| async { bytes("image/png", solid_png(1200, 800, [0x33, 0x66, 0xcc])) }),
        )
        .route(
            "/img/anim.gif",
            get(|| async { bytes("image/gif", animated_gif()) }),
        )
        .route(
            "/img/bomb.png",
            get(|| async {
                // A header claiming 100000 x 100000 pixels with nothing behind it: 40 GB to decode.
                bytes("image/png", png_claiming(100_000, 100_000))
            }),
        )
        // Served as an image, but the bytes say otherwise: the bytes decide.
        .route(
            "/img/liar.png",
            get(|| async { bytes("image/png", b"just some text, not a PNG".to_vec()) }),
        )
        .route(
            "/img/doc.pdf",
            get(|| async { bytes("application/pdf", pdf(2000)) }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// The server with loopback fetching allowed (as `MEDIA_FETCH_ALLOW_PRIVATE=1`) and short caps.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.fetch.allow_private = true;
        c.limits.fetch.max_bytes = MAX_FETCH;
        c.limits.fetch.timeout_secs = TIMEOUT_SECS;
        c.limits.fetch.max_redirects = MAX_REDIRECTS;
    })
    .await
}

async fn create(s: &TestServer, user: &str, body: Value) -> (u16, Value) {
    json_of(
        s.client
            .post(s.url("/api/v2/media/"))
            .header("authorization", s.auth(user))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put_image(s: &TestServer, user: &str, id: u64, image: &str) -> (u16, Value) {
    json_of(
        s.client
            .put(s.url(&format!("/api/v2/media/{id}/")))
            .header("authorization", s.auth(user))
            .json(&json!({ "image": image }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A 400 with the field error on `field` whose message contains `want`; never anything else.
fn assert_field_error(st: u16, b: &Value, field: &str, want: &str, what: &str) {
    assert_eq!(st, 400, "{what}: {b}");
    assert_eq!(field_error(b), field, "{what}: {b}");
    assert_eq!(
        b["errors"][0]["messages"][0]["code"], "invalid",
        "{what}: {b}"
    );
    let message = b["errors"][0]["messages"][0]["message"].as_str().unwrap();
    assert!(message.contains(want), "{what}: {message:?} lacks {want:?}");
}

/// The thumbnail's image, decoded from its URL, after checking the thumbnail's fields.
async fn thumbnail(s: &TestServer, media: &Value, size: (u32, u32), color: &str) -> DynamicImage {
    let t = &media["image_thumbnail"];
    assert_eq!(
        (
            t["width"].as_u64(),
            t["height"].as_u64(),
            t["color"].as_str()
        ),
        (Some(size.0.into()), Some(size.1.into()), Some(color)),
        "{media}"
    );
    let (st, jpeg) = s.fetch(t["url"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    let img = image::load_from_memory(&jpeg).expect("the thumbnail is an image");
    assert_eq!(img.dimensions(), size);
    img
}

fn close(px: [u8; 3], want: [u8; 3]) -> bool {
    px.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 4)
}

#[tokio::test]
async fn opengraph_page_gives_a_complete_link_preview() {
    let (o, s) = (origin().await, server().await);
    let url = format!("{o}/og");
    let (st, m) = create(&s, "alice", json!({"type": "url", "url": url})).await;
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_u64().unwrap();
    let added_at = m["added_at"].as_str().unwrap();
    let image = format!("{o}/img/solid.png");
    assert_eq!(
        m,
        json!({
            "id": id, "added_at": added_at, "type": "url", "title": "Rust & the web",
            "description": "A page with OpenGraph tags", "url": url, "image": image,
            "image_width": 1200, "image_height": 800, "image_mimetype": null,
            "image_thumbnail": null, "order": null, "size": null, "mimetype": null,
            "embed": {
                "id": id, "embed_type": "sc_link", "embed_id": md5_hex(url.as_bytes()), "url": url,
                "metadata": {
                    "url": format!("{o}/og"), "title": "Rust & the web",
                    "description": "A page with OpenGraph tags", "images": [image],
                    "type": "link", "html": null, "width": null, "height": null,
                },
            },
        })
    );
    assert_eq!(s.get_media("bob", id).await, (200, m));

    // Through two redirects: the preview is the final page's, the media keeps the submitted URL.
    let url = format!("{o}/redirect/og");
    let (st, m) = create(&s, "alice", json!({"type": "url", "url": url})).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["url"], url);
    assert_eq!(m["title"], "Rust & the web");
    assert_eq!(m["embed"]["url"], url);
    assert_eq!(m["embed"]["metadata"]["url"], format!("{o}/og"));
}

#[tokio::test]
async fn youtube_and_vimeo_shaped_pages_are_videos_with_oembed_html() {
    let (o, s) = (origin().await, server().await);
    for (path, provider) in [
        ("/watch?v=dQw4w9WgXcQ", "youtube"),
        ("/vimeo/76979871", "vimeo"),
    ] {
        let url = format!("{o}{path}");
        let (st, m) = create(&s, "alice", json!({"type": "url", "url": url})).await;
        assert_eq!(st, 201, "{path}: {m}");
        assert_eq!(m["type"], "url");
        assert_eq!(m["url"], url);
        assert_eq!(m["title"], format!("A {provider} clip"));
        assert_eq!(m["description"], "Watch it");
        assert_eq!(m["image"], format!("{o}/img/solid.png"));
        let e = &m["embed"];
        assert_eq!(
            (e["embed_type"].as_str(), e["url"].as_str()),
            (Some("sc_link"), Some(url.as_str()))
        );
        assert_eq!(e["embed_id"], md5_hex(url.as_bytes()));
        assert_eq!(
            e["metadata"],
            json!({
                "url": url, "title": format!("A {provider} clip"), "description": "Watch it",
                "images": [format!("{o}/img/solid.png"), format!("{o}/img/thumb.jpg")],
                "type": "video", "html": oembed_html(provider), "width": 480, "height": 270,
            }),
            "{path}"
        );
    }
}

#[tokio::test]
async fn pages_without_metadata_still_preview() {
    let (o, s) = (origin().await, server().await);
    let url = format!("{o}/bare");
    let (st, m) = create(&s, "alice", json!({"type": "url", "url": url})).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["title"], "127.0.0.1", "the host name is the last resort");
    assert_eq!(
        (m["description"].clone(), m["image"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(
        m["embed"]["metadata"],
        json!({"url": url, "title": "127.0.0.1", "description": null, "images": [],
               "type": "link", "html": null, "width": null, "height": null})
    );
    let (st, m) = create(
        &s,
        "alice",
        json!({"type": "url", "url": format!("{o}/titled")}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["title"], "Just a title");
    assert_eq!(m["embed"]["metadata"]["title"], "Just a title");
}

#[tokio::test]
async fn refused_and_failed_fetches_are_field_errors_on_url() {
    let (o, s) = (origin().await, server().await);
    for (url, want) in [
        (
            format!("{o}/redirect/metadata"),
            "169.254.169.254, a link-local address",
        ),
        (format!("{o}/redirect/mapped"), "a link-local address"),
        (
            format!("{o}/redirect/zero"),
            "an unspecified or broadcast address",
        ),
        (format!("{o}/redirect/ftp"), "only http and https"),
        (format!("{o}/redirect/loop"), "more than 3 redirects"),
        (format!("{o}/big"), "larger than the limit of 262144 bytes"),
        (format!("{o}/missing"), "answered 404"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "a link-local address",
        ),
        ("http://[fe80::1]/".into(), "a link-local address"),
        ("http://224.0.0.1/".into(), "a multicast address"),
        ("http://127.0.0.1:1/".into(), "the request failed"),
        (
            "http://no-such-host.invalid/".into(),
            "could not be resolved",
        ),
        ("ftp://example.com/".into(), "http or https"),
        ("".into(), "required"),
    ] {
        for kind in ["url", "image"] {
            let (st, b) = create(&s, "alice", json!({"type": kind, "url": url})).await;
            assert_field_error(st, &b, "url", want, &format!("{kind} {url}"));
        }
    }
    let started = Instant::now();
    let (st, b) = create(
        &s,
        "alice",
        json!({"type": "url", "url": format!("{o}/slow")}),
    )
    .await;
    assert_field_error(st, &b, "url", "within 2 seconds", "slow page");
    assert!(
        started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn loopback_is_refused_by_default() {
    let o = origin().await;
    let s = TestServer::start().await;
    assert!(!s.config.limits.fetch.allow_private);
    let port = o.rsplit(':').next().unwrap();
    for url in [
        format!("{o}/og"),
        format!("http://localhost:{port}/og"),
        format!("http://[::1]:{port}/og"),
        format!("http://[::ffff:127.0.0.1]:{port}/og"),
    ] {
        let (st, b) = create(&s, "alice", json!({"type": "url", "url": url})).await;
        assert_field_error(st, &b, "url", "a loopback address", &url);
        let (st, b) = create(&s, "alice", json!({"type": "image", "url": url})).await;
        assert_field_error(st, &b, "url", "a loopback address", &url);
    }
}

#[tokio::test]
async fn images_from_urls_are_stored_with_size_and_thumbnail() {
    let (o, s) = (origin().await, server().await);
    let url = format!("{o}/img/solid.png");
    let (st, m) = create(&s, "alice", json!({"type": "image", "url": url})).await;
    assert_eq!(st, 201, "{m}");
    let png = solid_png(1200, 800, [0x33, 0x66, 0xcc]);
    let id = m["id"].as_u64().unwrap();
    assert_eq!(
        (m["type"].as_str(), m["title"].as_str(), m["url"].clone()),
        (Some("image"), Some("solid.png"), Value::Null)
    );
    assert_eq!(
        (m["image_width"].as_u64(), m["image_height"].as_u64()),
        (Some(1200), Some(800))
    );
    assert_eq!(
        (m["image_mimetype"].as_str(), m["mimetype"].as_str()),
        (Some("image/png"), Some("image/png"))
    );
    assert_eq!(m["size"], png.len() as u64);
    assert_eq!(m["embed"], Value::Null);
    // Stored under a key of ours, not the URL's path, and served as the very bytes fetched.
    let stored = m["image"].as_str().unwrap();
    assert!(
        url_path(&m["image"]).contains(&format!("/media/fetched-{id}-"))
            && url_path(&m["image"]).ends_with(".png"),
        "{stored}"
    );
    assert_eq!(s.fetch(stored).await, (200, png));
    let t = thumbnail(&s, &m, (360, 240), "#3366cc").await;
    assert!(close(t.to_rgb8().get_pixel(180, 120).0, [0x33, 0x66, 0xcc]));
    assert_eq!(
        s.get_media("bob", id).await.1["image_thumbnail"]["color"],
        "#3366cc"
    );

    // An animated GIF: its first frame (red), kept at its size since it is small.
    let (st, m) = create(
        &s,
        "alice",
        json!({"type": "image", "url": format!("{o}/img/anim.gif")}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(
        (m["image_width"].as_u64(), m["image_mimetype"].as_str()),
        (Some(40), Some("image/gif"))
    );
    let t = thumbnail(&s, &m, (40, 20), "#ff0000").await;
    assert!(close(t.to_rgb8().get_pixel(20, 10).0, [255, 0, 0]));

    // A decompression bomb: the media exists (the header says what it claims), with no thumbnail.
    let (st, m) = create(
        &s,
        "alice",
        json!({"type": "image", "url": format!("{o}/img/bomb.png")}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(
        (m["image_width"].as_u64(), m["image_height"].as_u64()),
        (Some(100_000), Some(100_000))
    );
    assert_eq!(m["image_thumbnail"], Value::Null);
    assert_eq!(
        s.get_media("alice", m["id"].as_u64().unwrap()).await.0,
        200,
        "the server lives on"
    );

    for (path, want) in [
        ("/og", "does not serve an image"),
        ("/img/liar.png", "does not serve an image"),
        ("/img/doc.pdf", "does not serve an image"),
    ] {
        let (st, b) = create(
            &s,
            "alice",
            json!({"type": "image", "url": format!("{o}{path}")}),
        )
        .await;
        assert_field_error(st, &b, "url", want, path);
    }

    // Deleting removes the stored image and its thumbnail.
    let thumb_url = s.get_media("alice", id).await.1["image_thumbnail"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .client
        .delete(s.url(&format!("/api/v2/media/{id}/")))
        .header("authorization", s.auth("alice"));
    assert_eq!(json_of(r.send().await.unwrap()).await.0, 204);
    assert_eq!(s.fetch(stored).await.0, 404, "image removed");
    assert_eq!(s.fetch(&thumb_url).await.0, 404, "thumbnail removed");
}

#[tokio::test]
async fn uploaded_images_get_a_thumbnail_at_completion() {
    let s = server().await;
    let png = solid_png(1200, 800, [0x33, 0x66, 0xcc]);
    let id = s.upload("alice", &png, 204_800).await;
    let (st, m) = s.complete("alice", &id, &md5_hex(&png), None).await;
    assert_eq!(st, 201, "{m}");
    thumbnail(&s, &m, (360, 240), "#3366cc").await;
    let (_, again) = s.get_media("alice", m["id"].as_u64().unwrap()).await;
    assert_eq!(again["image_thumbnail"], m["image_thumbnail"]);
}

#[tokio::test]
async fn deferred_thumbnails_come_from_the_stream_and_never_resurrect_a_media() {
    let s = TestServer::start_with(|c| c.limits.thumbnails = ThumbnailMode::Deferred).await;
    let app = s.app();
    let png = solid_png(600, 900, [0x10, 0x20, 0x30]);
    let upload = s.upload("alice", &png, 204_800).await;
    let (st, m) = s.complete("alice", &upload, &md5_hex(&png), None).await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(
        m["image_thumbnail"],
        Value::Null,
        "completion does not wait for it"
    );
    let id = m["id"].as_u64().unwrap();
    // A stream batch as DynamoDB delivers it: an INSERT of the image media, and noise to ignore.
    let record = |event: &str, pk: String, media_type: &str| {
        json!({"eventID": "1", "eventName": event, "awsRegion": "us-east-1",
            "dynamodb": {"SequenceNumber": "7", "SizeBytes": 64, "NewImage": {
            "pk": {"S": pk}, "kind": {"S": "media"}, "media_type": {"S": media_type}}}})
    };
    let batch = json!({"Records": [
        record("INSERT", format!("media#{id}"), "image"),
        record("MODIFY", "media#999".into(), "image"),
        record("INSERT", "media#998".into(), "doc"),
    ]});
    let batch = serde_json::from_value(batch).expect("a DynamoDB stream event");
    let answer = media_shared::thumbnailer::handle_stream_event(app, &batch).await;
    assert_eq!(
        serde_json::to_value(answer).unwrap(),
        json!({"batchItemFailures": []})
    );
    let (_, got) = s.get_media("alice", id).await;
    let t = thumbnail(&s, &got, (240, 360), "#102030").await;
    assert!(close(t.to_rgb8().get_pixel(120, 180).0, [0x10, 0x20, 0x30]));
    let mut unchanged = got.clone();
    unchanged["image_thumbnail"] = Value::Null;
    if unchanged["image"] != m["image"] {
        // Presigned URLs differ per call; the stored object's path does not.
        assert_eq!(url_path(&unchanged["image"]), url_path(&m["image"]));
        unchanged["image"] = m["image"].clone();
    }
    assert_eq!(unchanged, m, "nothing but the thumbnail changed");

    // A media deleted before its stream record is handled stays deleted.
    let (st, m2) = create(&s, "alice", json!({"type": "share", "shared_object": 5})).await;
    assert_eq!(st, 201);
    let upload = s.upload("alice", &png, 204_800).await;
    let (_, img) = s.complete("alice", &upload, &md5_hex(&png), None).await;
    let id2 = img["id"].as_u64().unwrap();
    let r = s
        .client
        .delete(s.url(&format!("/api/v2/media/{id2}/")))
        .header("authorization", s.auth("alice"));
    assert_eq!(json_of(r.send().await.unwrap()).await.0, 204);
    media_shared::thumbnailer::make_for(app, id2).await.unwrap();
    assert_eq!(s.get_media("alice", id2).await.0, 404, "not resurrected");
    assert_eq!(
        s.get_media("alice", m2["id"].as_u64().unwrap()).await.0,
        200
    );
}

#[tokio::test]
async fn choosing_the_preview_image_of_a_url_media() {
    let (o, s) = (origin().await, server().await);
    let (st, m) = create(
        &s,
        "alice",
        json!({"type": "url", "url": format!("{o}/bare")}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_u64().unwrap();
    let (st, b) = put_image(&s, "mallory", id, &format!("{o}/img/solid.png")).await;
    assert_eq!((st, code(&b)), (403, "permission_denied"));
    for (image, want) in [
        (format!("{o}/img/liar.png"), "does not serve an image"),
        (format!("{o}/redirect/metadata"), "a link-local address"),
        ("ftp://example.com/a.png".to_string(), "http or https"),
    ] {
        let (st, b) = put_image(&s, "alice", id, &image).await;
        assert_field_error(st, &b, "image", want, &image);
    }

    let (st, u) = put_image(&s, "alice", id, &format!("{o}/img/solid.png")).await;
    assert_eq!(st, 200, "{u}");
    assert_eq!(
        (u["image_width"].as_u64(), u["image_height"].as_u64()),
        (Some(1200), Some(800))
    );
    assert_eq!(u["image_mimetype"], "image/png");
    let first = u["image"].as_str().unwrap().to_string();
    assert!(
        url_path(&u["image"]).contains(&format!("/previews/{id}-")),
        "{first}"
    );
    assert_eq!(
        s.fetch(&first).await,
        (200, solid_png(1200, 800, [0x33, 0x66, 0xcc]))
    );
    for field in ["id", "type", "url", "title", "embed", "added_at"] {
        assert_eq!(u[field], m[field], "{field} unchanged");
    }
    let (_, got) = s.get_media("bob", id).await;
    assert_eq!(url_path(&got["image"]), url_path(&u["image"]));

    // Choosing another replaces it; the previous stored image is gone.
    let (st, u2) = put_image(&s, "alice", id, &format!("{o}/img/anim.gif")).await;
    assert_eq!(st, 200, "{u2}");
    assert_eq!(
        (u2["image_width"].as_u64(), u2["image_mimetype"].as_str()),
        (Some(40), Some("image/gif"))
    );
    assert_eq!(
        s.fetch(&first).await.0,
        404,
        "previous preview image removed"
    );
}
