//! `media-local sweep` on a data directory with expired uploads: the built binary, run as a user runs
//! it, prints its report as JSON and frees the bytes, and keeps completed media. The directory is
//! prepared by an in-process server run (stopped first: the database admits one process at a time).

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use media_shared::adapters::local::LocalMeta;
use media_shared::ports::{MediaStore, UploadStore};
use media_shared::wiring::Backend;
use serde_json::{json, Value};

/// Runs `media-local sweep` on `dir` with none of the caller's MEDIA_* settings; returns its report.
fn run_sweep(dir: &Path) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_media-local"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MEDIA_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("sweep")
        .env("MEDIA_DATA_DIR", dir)
        .output()
        .expect("media-local runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "media-local sweep failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the report goes to stdout (logs go to stderr), so that `media-local sweep | jq` works.
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {stdout}"))
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn sweep_command_frees_expired_uploads_and_prints_its_report() {
    // The command works on a data directory: always the embedded backend, whatever
    // MEDIA_TEST_BACKEND says for the HTTP suite.
    let mut s = TestServer::start_local_with(|c| c.limits.upload_ttl_secs = 1).await;
    let big = pdf(3_000_000);
    let total = big.len();
    // Half done: three chunks of a 3 MB PDF.
    let mut half: Option<String> = None;
    for i in 0..3 {
        let (start, end) = (i * 204_800, (i + 1) * 204_800);
        let (st, b) = s
            .chunk(
                "alice",
                half.as_deref(),
                Some(format!("bytes {start}-{}/{total}", end - 1)),
                big[start..end].to_vec(),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        half = Some(b["upload_id"].as_str().unwrap().to_string());
    }
    let half = half.unwrap();
    // Completed: its object and media must survive.
    let image = png(120, 80, 7);
    let done = s.upload("alice", &image, 204_800).await;
    let (st, media) = s.complete("alice", &done, &md5_hex(&image), None).await;
    assert_eq!(st, 201, "{media}");
    let media_id = media["id"].as_u64().unwrap();
    // Fully received, then a wrong md5: kept (completable until it expires), so unfinished.
    let other = png(60, 60, 8);
    let failed = s.upload("alice", &other, 204_800).await;
    let (st, b) = s.complete("alice", &failed, &md5_hex(b"nope"), None).await;
    assert_eq!(st, 400, "{b}");

    let Backend::Local { data_dir: dir } = s.config.backend.clone() else {
        unreachable!("started on the local backend")
    };
    let mut unfinished = vec![half.clone(), failed.clone()];
    unfinished.sort();
    assert_eq!(files(&dir.join("partial")), unfinished);
    s.running.take().unwrap().stop().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let report = run_sweep(&dir);
    assert_eq!(
        report,
        json!({"released": 2, "sessions_removed": 3, "skipped": 0, "failed": 0}),
        "both unfinished released; their sessions and the completed one's removed"
    );
    assert_eq!(files(&dir.join("partial")), Vec::<String>::new());
    // Nothing left to do the second time.
    assert_eq!(
        run_sweep(&dir),
        json!({"released": 0, "sessions_removed": 0, "skipped": 0, "failed": 0})
    );

    // The database after the command: sessions gone, the media and its bytes intact.
    let meta = LocalMeta::open(&dir.join("media.redb")).unwrap();
    for id in [&half, &done, &failed] {
        assert!(meta.get_upload(id).await.unwrap().is_none(), "session {id}");
    }
    let record = meta
        .get_media(media_id)
        .await
        .unwrap()
        .expect("the media record");
    let key = record.object_key.expect("the media's object key");
    let stored = std::fs::read(dir.join("objects").join(&key)).unwrap();
    assert_eq!(md5_hex(&stored), md5_hex(&image));
}
