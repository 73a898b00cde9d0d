//! Driving the real handlers without HTTP, as the official client would: chunks with Content-Range
//! and `upload_id` first, then completion. Shared by the cleanup tests of both backends, the AWS
//! adapter tests and the port contract suite, so that every test that writes chunks goes through the
//! handler's own sequence (read, write, MD5, commit conditional on the version read, after_commit).

use bytes::Bytes;
use media_shared::api::auth::Caller;
use media_shared::api::routes;
use media_shared::app::App;
use media_shared::domain::upload::{ChunkPlan, StagingState, UploadSession};
use media_shared::domain::{ContentKind, Sniffed};
use media_shared::ports::ChunkWrite;
use serde_json::Value;
use time::OffsetDateTime;

use crate::CHUNK;

/// The user every request here is made as.
pub const USER: &str = "alice";

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

/// A new session for a PDF of `total` bytes owned by [`USER`], stored the way the first chunk's
/// request stores it before writing any byte: the state a crash during the first chunk leaves.
pub async fn new_session(app: &App, total: u64) -> UploadSession {
    let plan = ChunkPlan {
        start: 0,
        len: total.min(CHUNK as u64),
        total,
    };
    let pdf = Sniffed {
        mime: "application/pdf".into(),
        kind: ContentKind::Document,
        width: None,
        height: None,
    };
    let mut s = UploadSession::new(
        USER,
        OffsetDateTime::now_utc(),
        3600,
        &plan,
        pdf,
        Some("file.pdf".into()),
    );
    s.staging = app.blobs.begin(&s).await.unwrap();
    app.uploads.put_upload(&s, None).await.unwrap();
    s
}

/// The next chunk of `session` through the real chunk handler; `session` becomes the committed one.
pub async fn send_chunk(app: &App, session: &mut UploadSession, data: &[u8]) {
    let (start, total) = (session.offset as usize, session.total as usize);
    let (status, body) = chunk(app, Some(&session.id), data, start, total).await;
    assert_eq!(status, 201, "chunk at {start}: {body}");
    assert_eq!(body["offset"], (start + data.len()) as u64, "{body}");
    *session = app
        .uploads
        .get_upload(&session.id)
        .await
        .unwrap()
        .expect("the session exists");
}

/// Writes the next chunk's bytes only, without committing: what a request that crashed between
/// writing and committing leaves behind. Returns the staging state it would have committed.
pub async fn write_only(app: &App, session: &UploadSession, data: &[u8]) -> StagingState {
    write_attempt(app, session, data).await.staging
}

/// The next chunk's write as the handler makes it, without committing.
pub async fn write_attempt(app: &App, session: &UploadSession, data: &[u8]) -> ChunkWrite {
    let plan = ChunkPlan {
        start: session.offset,
        len: data.len() as u64,
        total: session.total,
    };
    app.blobs
        .write_chunk(session, &plan, Bytes::copy_from_slice(data))
        .await
        .unwrap()
}

/// The next chunk written and committed, but not finished after its commit (`after_commit` never
/// runs): what a request that crashed right after its commit leaves behind. `session` becomes the
/// committed one.
pub async fn commit_only(app: &App, session: &mut UploadSession, data: &[u8]) {
    let write = write_attempt(app, session, data).await;
    let plan = ChunkPlan {
        start: session.offset,
        len: data.len() as u64,
        total: session.total,
    };
    let md5 = session.md5.clone().advanced(data).unwrap();
    let read = session.version;
    session.accept_chunk(&plan, md5, write.staging);
    session.version = read + 1;
    let sealed = write.sealed_part.as_ref().map(|(part, _)| part);
    app.uploads
        .commit_chunk(session, read, sealed)
        .await
        .unwrap();
}

/// Finishes `session`'s object as completion does: with the parts its store recorded.
pub async fn finish_object(
    app: &App,
    session: &UploadSession,
    key: &str,
    metadata: media_shared::domain::image_metadata::MetadataPolicy,
) -> anyhow::Result<u64> {
    let parts = app.uploads.recorded_parts(session).await?;
    app.blobs.finish(session, &parts, key, metadata).await
}
