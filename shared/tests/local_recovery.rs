//! Crashes of the local backend where chunk commits are not flushed in redb (issue 12): a chunk's
//! session is flushed with its bytes in the partial file (`adapters::local::progress`), and the local
//! stores, built at start, bring redb's record up to it (`adapters::local::recover`).
//!
//! A crash is played by putting back in redb the record as it was after the first chunk (the last
//! flushed commit of the upload: what a power cut leaves of redb) and opening the stores again, as
//! the server does at start. The `kill -9` test of the real server (`local/tests/hardening.rs`) covers
//! the same with a real process death.

use std::os::unix::fs::FileExt;
use std::path::Path;

use media_shared::domain::upload::UploadSession;
use media_shared::domain::Limits;
use media_shared::ports::UploadStore;
use media_shared::wiring::{self, Backend, Stores, Wired};
use media_testkit::handlers::{chunk, complete};
use media_testkit::{md5_hex, pdf};

const CHUNK: usize = 204_800;

async fn open(dir: &Path) -> Wired {
    let limits = Limits {
        max_doc_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let backend = Backend::Local {
        data_dir: dir.to_path_buf(),
    };
    wiring::build(&backend, limits, Some("http://files"))
        .await
        .unwrap()
}

fn meta(w: &Wired) -> media_shared::adapters::local::LocalMeta {
    match &w.stores {
        Stores::Local { meta, .. } => meta.clone(),
        _ => unreachable!("a local backend"),
    }
}

/// Sends chunks `from..to` of `data` (the first creates the upload); answers the upload id.
async fn send(w: &Wired, id: Option<&str>, data: &[u8], from: usize, to: usize) -> String {
    let mut id = id.map(str::to_string);
    for i in from..to {
        let (start, end) = (i * CHUNK, ((i + 1) * CHUNK).min(data.len()));
        let (st, b) = chunk(&w.app, id.as_deref(), &data[start..end], start, data.len()).await;
        assert_eq!(st, 201, "chunk {i}: {b}");
        assert_eq!(b["offset"], end as u64);
        id = Some(b["upload_id"].as_str().unwrap().to_string());
    }
    id.unwrap()
}

/// Uploads chunks 0..4 of a 5-chunk file, then "crashes": redb keeps only the record after chunk 0.
async fn crash_after_four_chunks(dir: &Path, data: &[u8]) -> String {
    let w = open(dir).await;
    let id = send(&w, None, data, 0, 1).await;
    let after_first: UploadSession = meta(&w).get_upload(&id).await.unwrap().unwrap();
    send(&w, Some(&id), data, 1, 4).await;
    let now = meta(&w).get_upload(&id).await.unwrap().unwrap();
    assert_eq!(now.offset, 4 * CHUNK as u64);
    meta(&w)
        .put_upload(&after_first, Some(now.version))
        .await
        .unwrap();
    id
}

async fn finish_and_check(w: &Wired, id: &str, data: &[u8], dir: &Path) {
    let (st, media) = complete(&w.app, id, &md5_hex(data)).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(media["size"], data.len() as u64);
    let stored = std::fs::read(dir.join("objects/media").join(format!("{id}.pdf"))).unwrap();
    assert_eq!(
        stored.len(),
        data.len(),
        "no progress record left in the object"
    );
    assert_eq!(md5_hex(&stored), md5_hex(data));
}

#[tokio::test]
async fn acknowledged_chunks_whose_commits_redb_lost_are_recovered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = pdf(4 * CHUNK + 1234, 3);
    let id = crash_after_four_chunks(dir.path(), &data).await;

    let w = open(dir.path()).await;
    let s = meta(&w).get_upload(&id).await.unwrap().unwrap();
    assert_eq!(
        s.offset,
        4 * CHUNK as u64,
        "every acknowledged chunk is there"
    );
    send(&w, Some(&id), &data, 4, 5).await;
    finish_and_check(&w, &id, &data, dir.path()).await;
}

#[tokio::test]
async fn a_chunk_whose_bytes_missed_the_disk_is_rolled_back_and_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = pdf(4 * CHUNK + 1234, 4);
    let id = crash_after_four_chunks(dir.path(), &data).await;
    // Power cut during the last flush: its record reached the disk, part of its bytes did not.
    let partial = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("partial").join(&id))
        .unwrap();
    partial
        .write_all_at(&[0u8; 4096], 3 * CHUNK as u64 + 8192)
        .unwrap();
    drop(partial);

    let w = open(dir.path()).await;
    let s = meta(&w).get_upload(&id).await.unwrap().unwrap();
    assert_eq!(
        s.offset,
        3 * CHUNK as u64,
        "back to the last chunk that is whole"
    );
    // The client is told where to go on, and sends the rest again.
    let (st, b) = chunk(&w.app, Some(&id), &data[4 * CHUNK..], 4 * CHUNK, data.len()).await;
    assert_eq!(
        (st, b["offset"].as_u64()),
        (400, Some(3 * CHUNK as u64)),
        "{b}"
    );
    send(&w, Some(&id), &data, 3, 5).await;
    finish_and_check(&w, &id, &data, dir.path()).await;
}

#[tokio::test]
async fn a_partial_file_without_a_session_is_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = pdf(3 * CHUNK, 5);
    let w = open(dir.path()).await;
    let kept = send(&w, None, &data, 0, 2).await;
    drop(w);
    // The upload's creation is flushed with its first chunk's commit; a crash in between leaves this.
    let orphan = dir
        .path()
        .join("partial")
        .join("0123456789abcdef0123456789abcdef");
    std::fs::write(&orphan, &data[..CHUNK]).unwrap();

    let w = open(dir.path()).await;
    assert!(!orphan.exists());
    assert!(dir.path().join("partial").join(&kept).exists());
    send(&w, Some(&kept), &data, 2, 3).await;
    finish_and_check(&w, &kept, &data, dir.path()).await;
}
