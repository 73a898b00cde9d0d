//! A crash or timeout between the byte write and the session commit, injected into the real handler on
//! both backends: the client's retries of the same chunk must converge to exactly the right file.
//!
//! Two failures are injected into the session store's commit of a chunk: the write is lost (the
//! process died before DynamoDB got it), or the write landed but the answer was lost (a timeout).

mod aws_support;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use media_shared::adapters::local::{LocalBlobs, LocalMeta};
use media_shared::api::auth::Caller;
use media_shared::api::routes;
use media_shared::app::App;
use media_shared::domain::upload::UploadSession;
use media_shared::domain::{Limits, StoreError};
use media_shared::ports::UploadStore;
use serde_json::Value;

const LOST: u8 = 1;
const LANDED_ANSWER_LOST: u8 = 2;

/// Delegates to the real store, but fails the next chunk commit (a write that advances the offset
/// and gives the lease back) in the armed way.
struct Flaky {
    inner: Arc<dyn UploadStore>,
    armed: AtomicU8,
}

#[async_trait]
impl UploadStore for Flaky {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.inner.get_upload(id).await
    }

    async fn put_upload(&self, s: &UploadSession, expected: Option<u64>) -> Result<(), StoreError> {
        let is_chunk_commit = s.lease.is_none() && s.offset > 0;
        let mode = if is_chunk_commit {
            self.armed.swap(0, Ordering::SeqCst)
        } else {
            0
        };
        match mode {
            LOST => Err(StoreError::Backend(anyhow::anyhow!(
                "injected: the process died before the commit"
            ))),
            LANDED_ANSWER_LOST => {
                self.inner.put_upload(s, expected).await?;
                Err(StoreError::Backend(anyhow::anyhow!(
                    "injected: the commit timed out after landing"
                )))
            }
            _ => self.inner.put_upload(s, expected).await,
        }
    }

    async fn delete_upload(&self, id: &str, expected: u64) -> Result<bool, StoreError> {
        self.inner.delete_upload(id, expected).await
    }

    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError> {
        self.inner.list_expired(now_ms, limit).await
    }
}

fn limits() -> Limits {
    Limits {
        lease_secs: 1,
        max_chunk_bytes: 4 * 1024 * 1024,
        max_doc_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    }
}

async fn local_app() -> (App, Arc<Flaky>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMeta::open(&dir.path().join("db.redb")).unwrap();
    let flaky = Arc::new(Flaky {
        inner: Arc::new(meta.clone()),
        armed: AtomicU8::new(0),
    });
    let blobs = Arc::new(LocalBlobs::new(dir.path(), "http://files").unwrap());
    let app = App {
        limits: limits(),
        uploads: flaky.clone(),
        media: Arc::new(meta),
        blobs,
    };
    (app, flaky, dir)
}

async fn aws_app() -> (App, Arc<Flaky>, aws_support::TestEnv) {
    let env = aws_support::fresh().await;
    let flaky = Arc::new(Flaky {
        inner: Arc::new(env.meta.clone()),
        armed: AtomicU8::new(0),
    });
    let blobs = Arc::new(media_shared::adapters::aws::S3Blobs::new(
        env.clients.s3.clone(),
        &env.cfg,
    ));
    let app = App {
        limits: limits(),
        uploads: flaky.clone(),
        media: Arc::new(env.meta.clone()),
        blobs,
    };
    (app, flaky, env)
}

fn chunk_request(
    upload_id: Option<&str>,
    start: usize,
    data: &[u8],
    total: usize,
) -> http::Request<Bytes> {
    let mut body = Vec::new();
    if let Some(id) = upload_id {
        body.extend_from_slice(
            format!("--B\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\n{id}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"doc.pdf\"\r\nContent-Type: application/pdf\r\n\r\n");
    body.extend_from_slice(data);
    body.extend_from_slice(b"\r\n--B--\r\n");
    let mut req = http::Request::post("/api/v2/media/upload/chunk/")
        .header("content-type", "multipart/form-data; boundary=B")
        .header(
            "content-range",
            format!("bytes {start}-{}/{total}", start + data.len() - 1),
        )
        .body(Bytes::from(body))
        .unwrap();
    req.extensions_mut().insert(Caller::User("alice".into()));
    req
}

async fn send(app: &App, req: http::Request<Bytes>) -> (u16, Value) {
    let resp = routes::route(app, req).await;
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend(aws_support::random_bytes(len - v.len()));
    v
}

/// Uploads `data` in `chunk`-byte chunks, injecting `mode` into the commit of chunk number `victim`,
/// retrying the way a client does (409: wait and resend; 400 with an offset: resume there).
async fn upload_through_a_crash(
    app: &App,
    flaky: &Flaky,
    data: &[u8],
    chunk: usize,
    victim: usize,
    mode: u8,
) -> String {
    let total = data.len();
    let (st, b) = send(app, chunk_request(None, 0, &data[..chunk], total)).await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    let mut offset = chunk;
    let (mut injected, mut saw_conflict) = (false, false);
    while offset < total {
        let end = (offset + chunk).min(total);
        if offset / chunk == victim && !injected {
            injected = true;
            flaky.armed.store(mode, Ordering::SeqCst);
            let (st, b) = send(
                app,
                chunk_request(Some(&id), offset, &data[offset..end], total),
            )
            .await;
            assert_eq!(
                (st, b["errors"][0]["code"].as_str()),
                (500, Some("internal_error")),
                "{b}"
            );
        }
        let (st, b) = send(
            app,
            chunk_request(Some(&id), offset, &data[offset..end], total),
        )
        .await;
        match st {
            201 => offset = end,
            // The crashed request still holds the lease: wait for it to run out and resend.
            409 => {
                assert_eq!(mode, LOST, "{b}");
                saw_conflict = true;
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
            // The commit landed: the server says where to go on.
            400 => {
                assert_eq!(mode, LANDED_ANSWER_LOST, "{b}");
                assert_eq!(b["offset"].as_u64(), Some(end as u64), "{b}");
                offset = end;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert!(injected);
    assert!(
        mode != LOST || saw_conflict,
        "the retry met the crashed request's lease"
    );
    id
}

async fn complete_and_check(
    app: &App,
    id: &str,
    data: &[u8],
    read: impl std::future::Future<Output = Vec<u8>>,
) {
    let md5 = hex::encode(Md5::digest(data));
    let mut req = http::Request::post("/api/v2/media/upload/complete/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(format!("upload_id={id}&md5={md5}")))
        .unwrap();
    req.extensions_mut().insert(Caller::User("alice".into()));
    let (st, media) = send(app, req).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(media["size"], data.len() as u64);
    let stored = read.await;
    assert_eq!(
        hex::encode(Md5::digest(&stored)),
        md5,
        "the stored file is exactly the uploaded one"
    );
}

#[tokio::test]
async fn local_commit_lost_then_retried() {
    for mode in [LOST, LANDED_ANSWER_LOST] {
        let (app, flaky, dir) = local_app().await;
        let data = pdf(3 * 204_800 + 1234);
        let id = upload_through_a_crash(&app, &flaky, &data, 204_800, 2, mode).await;
        let path = dir.path().join("objects/media").join(format!("{id}.pdf"));
        complete_and_check(&app, &id, &data, async { std::fs::read(&path).unwrap() }).await;
    }
}

#[tokio::test]
async fn aws_commit_lost_at_a_part_merge_then_retried() {
    for mode in [LOST, LANDED_ANSWER_LOST] {
        let (app, flaky, env) = aws_app().await;
        // 2 MiB chunks, 5 MiB parts: chunk 2 (4-6 MiB) merges the staged chunks into part 1, and the
        // last chunk finishes part 2. Crash at the merge.
        let data = pdf(7 * 1024 * 1024 + 4321);
        let id = upload_through_a_crash(&app, &flaky, &data, 2 * 1024 * 1024, 2, mode).await;
        let key = format!("media/{id}.pdf");
        let read = async {
            let out = env
                .clients
                .s3
                .get_object()
                .bucket(&env.cfg.bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes().to_vec()
        };
        complete_and_check(&app, &id, &data, read).await;
        let mpus = env
            .clients
            .s3
            .list_multipart_uploads()
            .bucket(&env.cfg.bucket)
            .send()
            .await
            .unwrap();
        assert!(
            mpus.uploads().is_empty(),
            "no multipart upload is left open"
        );
        let staged = env
            .clients
            .s3
            .list_objects_v2()
            .bucket(&env.cfg.bucket)
            .prefix("staging/")
            .send()
            .await
            .unwrap();
        assert_eq!(staged.key_count(), Some(0), "no staged chunk is left");
    }
}
