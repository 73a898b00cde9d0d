//! Driving the real handlers without HTTP, as the official client would: chunks with Content-Range
//! and `upload_id` first, then completion. Shared by the cleanup tests of both backends.
#![allow(dead_code)]

use bytes::Bytes;
use md5::Digest;
use media_shared::api::auth::Caller;
use media_shared::api::routes;
use media_shared::app::App;
use serde_json::Value;

pub const USER: &str = "alice";
/// What the official client sends.
pub const CHUNK: usize = 204_800;

pub fn pdf(len: usize, seed: u8) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut body = vec![0u8; len - v.len() - 6];
    rand::rngs::StdRng::seed_from_u64(seed.into()).fill_bytes(&mut body);
    v.extend(body);
    v.extend_from_slice(b"%%EOF\n");
    v
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

pub fn request(
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> http::Request<Bytes> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Bytes::from(body))
        .unwrap();
    req.extensions_mut().insert(Caller::User(USER.into()));
    req
}

pub async fn call(app: &App, req: http::Request<Bytes>) -> (u16, Value) {
    let resp = routes::route(app, req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body();
    if body.is_empty() {
        return (status, Value::Null);
    }
    (status, serde_json::from_slice(&body).unwrap())
}

/// One chunk as the official client sends it: `upload_id` first, then the file part `image`.
pub async fn chunk(
    app: &App,
    id: Option<&str>,
    data: &[u8],
    start: usize,
    total: usize,
) -> (u16, Value) {
    let boundary = format!("----cleanup{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(data.len() + 512);
    if let Some(id) = id {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\n{id}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"doc.pdf\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = request(
        "POST",
        "/api/v2/media/upload/chunk/",
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    );
    let range = format!("bytes {}-{}/{}", start, start + data.len() - 1, total);
    req.headers_mut()
        .insert("content-range", range.parse().unwrap());
    call(app, req).await
}

/// Sends `data` in chunks of the given sizes (the last size repeats) until at least `upto` bytes are
/// in; returns the upload id.
pub async fn upload(app: &App, data: &[u8], sizes: &[usize], upto: usize) -> String {
    let mut id: Option<String> = None;
    let (mut offset, mut i) = (0, 0);
    while offset < upto {
        let len = sizes[i.min(sizes.len() - 1)].min(data.len() - offset);
        let (status, body) = chunk(
            app,
            id.as_deref(),
            &data[offset..offset + len],
            offset,
            data.len(),
        )
        .await;
        assert_eq!(status, 201, "chunk at {offset}: {body}");
        offset += len;
        assert_eq!(body["offset"], offset as u64, "{body}");
        id = Some(body["upload_id"].as_str().unwrap().to_string());
        i += 1;
    }
    id.unwrap()
}

pub async fn complete(app: &App, id: &str, md5: &str) -> (u16, Value) {
    let body = format!("upload_id={id}&md5={md5}").into_bytes();
    let req = request(
        "POST",
        "/api/v2/media/upload/complete/",
        "application/x-www-form-urlencoded",
        body,
    );
    call(app, req).await
}

pub async fn get_media(app: &App, id: u64) -> (u16, Value) {
    call(
        app,
        request("GET", &format!("/api/v2/media/{id}/"), "", Vec::new()),
    )
    .await
}
