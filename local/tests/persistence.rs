//! Data survives a restart; the sweep frees what expired uploads hold.

mod common;
use common::*;

#[tokio::test]
async fn an_upload_continues_after_a_restart_and_media_survive_it() {
    let s = TestServer::start().await;
    let data = png(200, 200, 31);
    let total = data.len();
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-49999/{total}")),
            data[..50_000].to_vec(),
        )
        .await;
    assert_eq!(st, 201);
    let id = b["upload_id"].as_str().unwrap().to_string();
    let s = s.restart().await;
    let (st, b) = s
        .chunk(
            "alice",
            Some(&id),
            Some(format!("bytes 50000-{}/{total}", total - 1)),
            data[50_000..].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, media) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 201, "{media}");
    let s = s.restart().await;
    let (st, got) = s.get_media("alice", media["id"].as_u64().unwrap()).await;
    assert_eq!((st, unsigned(&got)), (200, unsigned(&media)));
    assert_eq!(s.fetch(got["image"].as_str().unwrap()).await.1, data);
}

#[tokio::test]
async fn the_sweep_releases_expired_uploads_and_keeps_completed_media() {
    let s = TestServer::start_with(|c| c.limits.upload_ttl_secs = 3).await;
    let half = png(100, 100, 32);
    let (_, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-999/{}", half.len())),
            half[..1000].to_vec(),
        )
        .await;
    let pending = b["upload_id"].as_str().unwrap().to_string();
    let done = png(10, 10, 33);
    let (_, b) = s.chunk("alice", None, None, done.clone()).await;
    let (st, media) = s
        .complete(
            "alice",
            b["upload_id"].as_str().unwrap(),
            &md5_hex(&done),
            None,
        )
        .await;
    assert_eq!(st, 201);
    assert!(s.holds_bytes(&pending).await);

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let report = media_shared::cleanup::sweep(s.app(), time_now())
        .await
        .unwrap();
    // The local store removes the completed session's record too; on DynamoDB the sweep's index
    // holds unfinished sessions only, and TTL removes completed ones.
    let completed_removed = matches!(s.stores(), media_shared::wiring::Stores::Local { .. });
    assert_eq!(
        (report.released, report.sessions_removed),
        (1, 1 + usize::from(completed_removed)),
        "{report:?}"
    );
    assert!(!s.holds_bytes(&pending).await);
    // The session is gone; the completed media and its bytes stay.
    let (st, _) = s
        .chunk(
            "alice",
            Some(&pending),
            Some(format!("bytes 1000-1999/{}", half.len())),
            half[1000..2000].to_vec(),
        )
        .await;
    assert_eq!(st, 404);
    let (st, got) = s.get_media("alice", media["id"].as_u64().unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(s.fetch(got["image"].as_str().unwrap()).await.1, done);
    // A second sweep finds nothing to do.
    let again = media_shared::cleanup::sweep(s.app(), time_now())
        .await
        .unwrap();
    assert_eq!((again.released, again.sessions_removed), (0, 0));
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
