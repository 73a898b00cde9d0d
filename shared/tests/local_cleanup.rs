//! Cleanup of expired uploads on the local backend (issue 4): uploads made through the real handlers
//! (`routes::route`) over `LocalMeta` + `LocalBlobs` in a temporary directory, with a TTL of two seconds,
//! then freed by `cleanup::sweep`. Checked against the files on disk and the database, not only the
//! report.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use media_shared::adapters::local::{LocalBlobs, LocalMeta};
use media_shared::app::App;
use media_shared::cleanup::{self, SweepReport};
use media_shared::domain::upload::UploadStatus;
use media_shared::domain::Limits;
use media_shared::ports::UploadStore;
use media_shared::wiring::{self, Backend, Stores, Wired};
use media_testkit::handlers::*;
use media_testkit::{md5_hex, pdf, CHUNK};
use time::OffsetDateTime;

const FILES_URL: &str = "http://127.0.0.1:9/files";

struct Local {
    app: App,
    meta: LocalMeta,
    blobs: Arc<LocalBlobs>,
    dir: tempfile::TempDir,
}

/// The local backend's App as the server builds it (`wiring::build`), with a two-second upload TTL.
async fn fresh() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Local {
        data_dir: dir.path().to_path_buf(),
    };
    let limits = Limits {
        upload_ttl_secs: 2,
        ..Limits::default()
    };
    let Wired { app, stores } = wiring::build(&backend, limits, Some(FILES_URL))
        .await
        .unwrap();
    let Stores::Local { meta, blobs } = stores else {
        unreachable!("a local backend")
    };
    Local {
        app,
        meta,
        blobs,
        dir,
    }
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

struct Uploads {
    fresh: String,
    half: String,
    completed: String,
    media_id: u64,
    media_md5: String,
    failed: String,
}

async fn make_uploads(l: &Local, seed: u64) -> Uploads {
    let app = &l.app;
    let small = pdf(150_000, seed);
    let fresh = upload(app, &small, &[small.len()], small.len()).await;
    let big = pdf(12 * 1024 * 1024, seed + 1);
    let half = upload(app, &big, &[CHUNK], 5 * CHUNK).await;
    let doc = pdf(300_000, seed + 2);
    let completed = upload(app, &doc, &[CHUNK], doc.len()).await;
    let (status, media) = complete(app, &completed, &md5_hex(&doc)).await;
    assert_eq!(status, 201, "{media}");
    let failed = upload(app, &pdf(300_000, seed + 3), &[CHUNK], 300_000).await;
    let (status, body) = complete(app, &failed, &md5_hex(b"not it")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["code"], "md5_mismatch", "{body}");
    for id in [&fresh, &half] {
        assert!(l.blobs.has_partial(id), "{id} holds bytes");
    }
    Uploads {
        fresh,
        half,
        completed,
        media_id: media["id"].as_u64().unwrap(),
        media_md5: md5_hex(&doc),
        failed,
    }
}

async fn wait_until_expired(l: &Local, id: &str) {
    let s = l.app.uploads.get_upload(id).await.unwrap().unwrap();
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    tokio::time::sleep(Duration::from_millis(
        (s.expires_at_ms - now_ms).max(0) as u64 + 200,
    ))
    .await;
}

async fn assert_media_intact(l: &Local, u: &Uploads) {
    let (status, media) = get_media(&l.app, u.media_id).await;
    assert_eq!(status, 200, "{media}");
    let url = media["url"].as_str().unwrap();
    let key = url.strip_prefix(&format!("{FILES_URL}/")).unwrap();
    let bytes = std::fs::read(l.blobs.objects_dir().join(key)).unwrap();
    assert_eq!(md5_hex(&bytes), u.media_md5);
}

async fn assert_freed(l: &Local, u: &Uploads) {
    for id in [&u.fresh, &u.half, &u.failed, &u.completed] {
        assert!(!l.blobs.has_partial(id), "{id} still holds bytes");
        assert!(
            l.meta.get_upload(id).await.unwrap().is_none(),
            "session {id} left"
        );
    }
    assert_eq!(
        files(&l.dir.path().join("partial")),
        Vec::<String>::new(),
        "partial files left"
    );
}

#[tokio::test]
async fn sweep_frees_expired_uploads_and_keeps_media() {
    let l = fresh().await;
    let u = make_uploads(&l, 1).await;
    // A wrong md5 changed nothing: the upload holds its bytes until it expires and is swept.
    let failed = l.app.uploads.get_upload(&u.failed).await.unwrap().unwrap();
    assert!(matches!(failed.status, UploadStatus::Receiving));
    assert!(l.blobs.has_partial(&u.failed));
    wait_until_expired(&l, &u.failed).await;

    let report = cleanup::sweep(&l.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        report,
        SweepReport {
            released: 3,
            sessions_removed: 4,
            skipped: 0,
            failed: 0
        }
    );
    assert_freed(&l, &u).await;
    assert_media_intact(&l, &u).await;
    let objects = files(&l.blobs.objects_dir());
    assert_eq!(objects.len(), 1, "only the media's object: {objects:?}");

    // Again: nothing to do, nothing else deleted.
    let before = files(l.dir.path());
    let report = cleanup::sweep(&l.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report, SweepReport::default());
    assert_eq!(files(l.dir.path()), before);
    assert_media_intact(&l, &u).await;
}

#[tokio::test]
async fn live_uploads_survive_the_sweep() {
    let l = fresh().await;
    let u = make_uploads(&l, 10).await;
    wait_until_expired(&l, &u.failed).await;
    let mut long = l.app.clone();
    long.limits.upload_ttl_secs = 3600;
    let big = pdf(2_000_000, 20);
    let live = upload(&long, &big, &[CHUNK], 2 * CHUNK).await;
    let report = cleanup::sweep(&l.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report.sessions_removed, 4);
    assert!(l.blobs.has_partial(&live));
    let (status, body) = chunk(
        &long,
        Some(&live),
        &big[2 * CHUNK..3 * CHUNK],
        2 * CHUNK,
        big.len(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn concurrent_sweeps_are_safe() {
    let l = fresh().await;
    let u = make_uploads(&l, 30).await;
    wait_until_expired(&l, &u.failed).await;
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(cleanup::sweep(&l.app, now), cleanup::sweep(&l.app, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!("concurrent sweeps: {a:?} {b:?}");
    // Each of the three unfinished sessions is claimed by exactly one of them (a conditional write),
    // which frees and removes it; the other, if it listed the session at all, loses the claim and
    // skips it. The completed session's record is removed once: the second delete finds it gone.
    assert_eq!(a.released + b.released, 3, "{a:?} {b:?}");
    assert_eq!(a.sessions_removed + b.sessions_removed, 4, "{a:?} {b:?}");
    assert!(a.skipped + b.skipped <= 3, "{a:?} {b:?}");
    assert_freed(&l, &u).await;
    assert_media_intact(&l, &u).await;
}

/// One session whose bytes cannot be freed (here: its partial file is a directory, so removing it
/// fails; on S3 e.g. an object DeleteObjects refuses) must not keep every other expired upload from
/// being cleaned: sessions are listed in a stable order, so stopping at the first error would let the
/// same poisoned session stop every later sweep too. It is counted as failed and retried next time.
#[tokio::test]
async fn one_failing_session_does_not_stop_the_sweep() {
    let l = fresh().await;
    let big = pdf(2_000_000, 40);
    let mut ids = [
        upload(&l.app, &big, &[CHUNK], CHUNK).await,
        upload(&l.app, &big, &[CHUNK], CHUNK).await,
    ];
    ids.sort();
    // The first one in listing order is the poisoned one.
    let partial = l.dir.path().join("partial").join(&ids[0]);
    std::fs::remove_file(&partial).unwrap();
    std::fs::create_dir(&partial).unwrap();
    wait_until_expired(&l, &ids[1]).await;

    let result = cleanup::sweep(&l.app, OffsetDateTime::now_utc()).await;
    assert!(
        !l.blobs.has_partial(&ids[1]),
        "the healthy upload was not freed; sweep returned {result:?}"
    );
    let report = result.unwrap();
    assert_eq!(
        (report.failed, report.released, report.sessions_removed),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(l.meta.get_upload(&ids[1]).await.unwrap().is_none());
    // The poisoned one stays for a later sweep.
    assert!(l.meta.get_upload(&ids[0]).await.unwrap().is_some());
}

/// A session whose lease is live is being written or completed right now: the sweep leaves it for
/// later, even past its expiry, and cleans it once the lease is gone.
#[tokio::test]
async fn a_session_with_a_live_lease_is_left_for_a_later_sweep() {
    let l = fresh().await;
    let big = pdf(1_000_000, 41);
    let id = upload(&l.app, &big, &[CHUNK], CHUNK).await;
    wait_until_expired(&l, &id).await;
    let mut session = l.meta.get_upload(&id).await.unwrap().unwrap();
    session.take_lease(OffsetDateTime::now_utc(), 60).unwrap();
    l.app.save_upload(&mut session).await.unwrap();

    let report = cleanup::sweep(&l.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        (report.skipped, report.released, report.sessions_removed),
        (1, 0, 0),
        "{report:?}"
    );
    assert!(l.blobs.has_partial(&id));

    session.lease = None;
    l.app.save_upload(&mut session).await.unwrap();
    let report = cleanup::sweep(&l.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        (report.skipped, report.released, report.sessions_removed),
        (0, 1, 1),
        "{report:?}"
    );
    assert!(!l.blobs.has_partial(&id));
}
