//! The command-line uploader against the real server: a whole upload, an interrupted one resumed
//! from the offset the server reports (also across a server restart), and the CLI binary itself.

mod common;
use common::*;
use media_local::uploader::{upload, Outcome, UploadOptions};

fn options(
    s: &TestServer,
    file: &std::path::Path,
    state: &std::path::Path,
    chunk: usize,
) -> UploadOptions {
    UploadOptions {
        file: file.to_path_buf(),
        api: s.base.clone(),
        token: s.token("alice"),
        chunk_size: chunk,
        media_type: None,
        progress: false,
        max_chunks: None,
        state_dir: Some(state.to_path_buf()),
    }
}

#[tokio::test]
async fn uploads_a_file_and_resumes_an_interrupted_one_across_a_restart() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pdf(1_000_000);
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &data).unwrap();
    let client = reqwest::Client::new();

    let mut opts = options(&s, &file, dir.path(), 100_000);
    opts.max_chunks = Some(3);
    let Outcome::Interrupted { offset, upload_id } = upload(&client, &opts).await.unwrap() else {
        panic!("expected an interruption")
    };
    assert_eq!(offset, 300_000);

    let s = s.restart().await;
    let mut opts = options(&s, &file, dir.path(), 100_000);
    opts.token = s.token("alice");
    let Outcome::Completed {
        media,
        upload_id: id,
        resumed_from,
        chunks,
        ..
    } = upload(&client, &opts).await.unwrap()
    else {
        panic!("expected completion")
    };
    assert_eq!(id, upload_id, "the same upload went on");
    assert_eq!(resumed_from, 300_000);
    assert_eq!(chunks, 7, "only the missing chunks were sent");
    assert_eq!(
        (media["type"].as_str(), media["title"].as_str()),
        (Some("doc"), Some("report.pdf"))
    );
    let (_, served) = s.fetch(media["url"].as_str().unwrap()).await;
    assert_eq!(md5_hex(&served), md5_hex(&data));

    // Uploading the same file again starts a new upload: the finished one was forgotten.
    let Outcome::Completed {
        resumed_from,
        chunks,
        ..
    } = upload(&client, &opts).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((resumed_from, chunks), (0, 10));
}

#[tokio::test]
async fn a_remembered_upload_that_expired_starts_over() {
    let s = TestServer::start_with(|c| c.limits.upload_ttl_secs = 1).await;
    let dir = tempfile::tempdir().unwrap();
    let data = png(120, 120, 9);
    let file = dir.path().join("photo.png");
    std::fs::write(&file, &data).unwrap();
    let client = reqwest::Client::new();
    let mut opts = options(&s, &file, dir.path(), 10_000);
    opts.max_chunks = Some(1);
    assert!(matches!(
        upload(&client, &opts).await.unwrap(),
        Outcome::Interrupted { .. }
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    opts.max_chunks = None;
    let Outcome::Completed {
        media,
        resumed_from,
        ..
    } = upload(&client, &opts).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(resumed_from, 0);
    assert_eq!(media["image_width"], 120);
}

#[tokio::test]
async fn the_cli_prints_the_media() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = png(50, 40, 10);
    let file = dir.path().join("photo.png");
    std::fs::write(&file, &data).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_media-local"))
        .args([
            "upload",
            file.to_str().unwrap(),
            "--url",
            &s.base,
            "--chunk-size",
            "5000",
            "--type",
            "eimage",
        ])
        .env("TOKEN", s.token("alice"))
        .env("TMPDIR", dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let media: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (media["type"].as_str(), media["image_width"].as_u64()),
        (Some("eimage"), Some(50))
    );
    let (_, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(served, data);
}
