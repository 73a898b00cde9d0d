//! A crash or timeout between the byte write and the session commit, injected into the real handler on
//! both backends: the client's retries of the same chunk must converge to exactly the right file.
//!
//! Two failures are injected into the session store's commit of a chunk: the write is lost (the
//! process died before DynamoDB got it), or the write landed but the answer was lost (a timeout).
//!
//! The AWS case needs moto (see `media_testkit::moto`); scripts/test.sh runs it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use media_shared::adapters::local::{LocalBlobs, LocalMeta};
use media_shared::app::App;
use media_shared::domain::upload::{PartRecord, UploadSession};
use media_shared::domain::{Limits, StoreError, UserQuota};
use media_shared::ports::UploadStore;
use media_testkit::aws::TestEnv;
use media_testkit::handlers::{chunk, complete};
use media_testkit::{md5_hex, pdf};

const LOST: u8 = 1;
const LANDED_ANSWER_LOST: u8 = 2;

/// Delegates to the real store, but fails the next chunk commit in the armed way.
struct Flaky {
    inner: Arc<dyn UploadStore>,
    armed: AtomicU8,
}

impl Flaky {
    /// Runs the chunk commit `commit`, failing it in the armed way (once).
    async fn inject(
        &self,
        commit: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        match self.armed.swap(0, Ordering::SeqCst) {
            LOST => Err(StoreError::Backend(anyhow::anyhow!(
                "injected: the process died before the commit"
            ))),
            LANDED_ANSWER_LOST => {
                commit.await?;
                Err(StoreError::Backend(anyhow::anyhow!(
                    "injected: the commit timed out after landing"
                )))
            }
            _ => commit.await,
        }
    }
}

#[async_trait]
impl UploadStore for Flaky {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.inner.get_upload(id).await
    }

    async fn put_upload(&self, s: &UploadSession, expected: Option<u64>) -> Result<(), StoreError> {
        self.inner.put_upload(s, expected).await
    }

    async fn commit_chunk(
        &self,
        s: &UploadSession,
        expected: u64,
        sealed: Option<&PartRecord>,
    ) -> Result<(), StoreError> {
        self.inject(self.inner.commit_chunk(s, expected, sealed))
            .await
    }

    /// The local backend's chunk commit (its session is kept beside the bytes, so not flushed).
    async fn put_upload_deferred(
        &self,
        s: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let is_chunk_commit = s.lease.is_none() && s.offset > 0;
        if is_chunk_commit {
            self.inject(self.inner.put_upload_deferred(s, expected))
                .await
        } else {
            self.inner.put_upload_deferred(s, expected).await
        }
    }

    async fn recorded_parts(&self, s: &UploadSession) -> Result<Vec<PartRecord>, StoreError> {
        self.inner.recorded_parts(s).await
    }

    async fn create_upload(&self, s: &UploadSession, quota: &UserQuota) -> Result<(), StoreError> {
        self.inner.create_upload(s, quota).await
    }

    async fn release_quota(&self, s: &UploadSession) -> Result<bool, StoreError> {
        self.inner.release_quota(s).await
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

/// Completion's lease. Chunks take none: the retry after a crash must not have to wait for anything.
const LEASE_SECS: u64 = 3;

fn limits() -> Limits {
    Limits {
        lease_secs: LEASE_SECS,
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
        events: Arc::new(media_shared::ports::NoEvents),
        metrics: media_shared::metrics::discard(),
    };
    (app, flaky, dir)
}

async fn aws_app() -> (App, Arc<Flaky>, TestEnv) {
    let env = media_testkit::aws::fresh().await;
    let flaky = Arc::new(Flaky {
        inner: Arc::new(env.meta.clone()),
        armed: AtomicU8::new(0),
    });
    let app = App {
        limits: limits(),
        uploads: flaky.clone(),
        media: Arc::new(env.meta.clone()),
        blobs: env.blobs.clone(),
        events: Arc::new(media_shared::ports::NoEvents),
        metrics: media_shared::metrics::discard(),
    };
    (app, flaky, env)
}

/// Uploads `data` in `size`-byte chunks, injecting `mode` into the commit of chunk number `victim`,
/// retrying the way a client does (400 with an offset: resume there). The retry is never told to
/// wait (409): no lease of the crashed request stands in its way.
async fn upload_through_a_crash(
    app: &App,
    flaky: &Flaky,
    data: &[u8],
    size: usize,
    victim: usize,
    mode: u8,
) -> String {
    let total = data.len();
    let (st, b) = chunk(app, None, &data[..size], 0, total).await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    let mut offset = size;
    let mut injected = false;
    while offset < total {
        let end = (offset + size).min(total);
        if offset / size == victim && !injected {
            injected = true;
            flaky.armed.store(mode, Ordering::SeqCst);
            let (st, b) = chunk(app, Some(&id), &data[offset..end], offset, total).await;
            assert_eq!(
                (st, b["errors"][0]["code"].as_str()),
                (500, Some("internal_error")),
                "{b}"
            );
        }
        let (st, b) = chunk(app, Some(&id), &data[offset..end], offset, total).await;
        match st {
            201 => offset = end,
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
    id
}

async fn complete_and_check(
    app: &App,
    id: &str,
    data: &[u8],
    read: impl std::future::Future<Output = Vec<u8>>,
) {
    let md5 = md5_hex(data);
    let (st, media) = complete(app, id, &md5).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(media["size"], data.len() as u64);
    let stored = read.await;
    assert_eq!(
        md5_hex(&stored),
        md5,
        "the stored file is exactly the uploaded one"
    );
}

#[tokio::test]
async fn local_commit_lost_then_retried() {
    for mode in [LOST, LANDED_ANSWER_LOST] {
        let (app, flaky, dir) = local_app().await;
        let data = pdf(3 * 204_800 + 1234, 1);
        let id = upload_through_a_crash(&app, &flaky, &data, 204_800, 2, mode).await;
        let path = dir.path().join("objects/media").join(format!("{id}.pdf"));
        complete_and_check(&app, &id, &data, async { std::fs::read(&path).unwrap() }).await;
    }
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn aws_commit_lost_at_a_part_merge_then_retried() {
    for mode in [LOST, LANDED_ANSWER_LOST] {
        let (app, flaky, env) = aws_app().await;
        // 2 MiB chunks, 5 MiB parts: chunk 2 (4-6 MiB) merges the staged chunks into part 1, and the
        // last chunk finishes part 2. Crash at the merge.
        let data = pdf(7 * 1024 * 1024 + 4321, 2);
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

/// A photo's completion on the local backend writes a stripped copy, renames it into place, then
/// removes the partial file (`LocalBlobs::finish`). A crash between any two of those steps is
/// finished by the retried completion, which writes the same bytes (stripping is deterministic).
#[tokio::test]
async fn local_photo_completion_crashed_between_its_steps_is_finished_by_the_retry() {
    use media_shared::domain::image_metadata::{strip, MetadataPolicy};
    use media_testkit::photos::phone_jpeg;

    let (app, _flaky, dir) = local_app().await;
    let photo = phone_jpeg(Some(6));
    let id = media_testkit::handlers::upload(&app, &photo, &[1000], photo.len()).await;
    let s = app.uploads.get_upload(&id).await.unwrap().unwrap();
    let key = s.object_key();
    let partial = dir.path().join("partial").join(&id);
    let stripped_copy = dir.path().join("partial").join(format!("{id}.stripped"));
    let object = dir.path().join("objects").join(&key);
    let received = std::fs::read(&partial).unwrap();
    let expected = strip("image/jpeg", &photo).unwrap();

    // Crashed while writing the stripped copy: a torn one is left beside the partial file.
    std::fs::write(&stripped_copy, &expected[..100]).unwrap();
    let size = app
        .blobs
        .finish(&s, &[], &key, MetadataPolicy::Strip)
        .await
        .unwrap();
    assert_eq!(size, expected.len() as u64);
    assert!(std::fs::read(&object).unwrap() == expected);
    assert!(!stripped_copy.exists() && !partial.exists());

    // Crashed after the rename, before the partial file was removed.
    std::fs::write(&partial, &received).unwrap();
    let again = app.blobs.finish(&s, &[], &key, MetadataPolicy::Strip).await;
    assert_eq!(again.unwrap(), size);
    assert!(std::fs::read(&object).unwrap() == expected);
    assert!(!stripped_copy.exists() && !partial.exists());

    // Crashed after everything: the object is found there.
    let again = app.blobs.finish(&s, &[], &key, MetadataPolicy::Strip).await;
    assert_eq!(again.unwrap(), size);
}
