//! `UploadStore`: sessions written conditionally on the version the writer read, so that ordering and
//! mutual exclusion between chunk requests live in the store, not in a process's memory.

use std::collections::BTreeSet;

use media_shared::domain::upload::{ChunkPlan, UploadSession, UploadStatus};
use media_shared::domain::{Click, ContentKind, MediaRecord, MediaType, Sniffed, StoreError};
use time::OffsetDateTime;

use super::Backend;

/// A new session, not stored yet.
fn session(total: u64) -> UploadSession {
    let plan = ChunkPlan {
        start: 0,
        len: total.min(1000),
        total,
    };
    let pdf = Sniffed {
        mime: "application/pdf".into(),
        kind: ContentKind::Document,
        width: None,
        height: None,
    };
    UploadSession::new(
        "alice",
        OffsetDateTime::now_utc(),
        3600,
        &plan,
        pdf,
        Some("file.pdf".into()),
    )
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict))
}

pub async fn a_stored_session_reads_back_the_same(b: &impl Backend) {
    let store = &b.app().uploads;
    let s = session(1000);
    assert_eq!(store.get_upload(&s.id).await.unwrap(), None);
    store.put_upload(&s, None).await.unwrap();
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_upload("0123").await.unwrap(), None);
}

pub async fn creating_fails_if_the_id_exists_and_writes_nothing(b: &impl Backend) {
    let store = &b.app().uploads;
    let s = session(1000);
    store.put_upload(&s, None).await.unwrap();
    let mut again = s.clone();
    again.offset = 500;
    assert!(is_conflict(store.put_upload(&again, None).await));
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s));
}

pub async fn writes_are_conditional_on_the_version_read(b: &impl Backend) {
    let store = &b.app().uploads;
    let mut s = session(1000);
    store.put_upload(&s, None).await.unwrap();

    s.offset = 10;
    s.version = 1;
    store.put_upload(&s, Some(0)).await.unwrap();
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s.clone()));

    // A second writer that read version 0 loses, and writes nothing.
    let mut stale = s.clone();
    stale.offset = 99;
    assert!(is_conflict(store.put_upload(&stale, Some(0)).await));
    // So does one expecting a version that was never stored.
    assert!(is_conflict(store.put_upload(&stale, Some(7)).await));
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s));

    // Expecting a version of a session that does not exist creates nothing.
    let absent = session(1000);
    assert!(is_conflict(store.put_upload(&absent, Some(0)).await));
    assert_eq!(store.get_upload(&absent.id).await.unwrap(), None);
}

pub async fn one_of_concurrent_writers_wins(b: &impl Backend) {
    let store = b.app().uploads.clone();
    let s = session(1000);
    store.put_upload(&s, None).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for offset in 1..=8u64 {
        let (store, mut mine) = (store.clone(), s.clone());
        mine.offset = offset;
        mine.version = 1;
        tasks.spawn(async move {
            let r = store.put_upload(&mine, Some(0)).await;
            (offset, r)
        });
    }
    let mut winners = Vec::new();
    for (offset, r) in tasks.join_all().await {
        match r {
            Ok(()) => winners.push(offset),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("writer {offset}: {e:#}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = store.get_upload(&s.id).await.unwrap().unwrap();
    assert_eq!((stored.offset, stored.version), (winners[0], 1));
}

pub async fn deletes_are_conditional_and_tolerate_a_missing_session(b: &impl Backend) {
    let store = &b.app().uploads;
    let mut s = session(1000);
    store.put_upload(&s, None).await.unwrap();
    s.version = 1;
    store.put_upload(&s, Some(0)).await.unwrap();

    assert!(is_conflict(store.delete_upload(&s.id, 0).await));
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s.clone()));

    assert!(store.delete_upload(&s.id, 1).await.unwrap(), "removed now");
    assert_eq!(store.get_upload(&s.id).await.unwrap(), None);
    // TTL or another sweep got there first: not an error, and not this call's removal.
    assert!(!store.delete_upload(&s.id, 1).await.unwrap());
    assert!(!store.delete_upload(&session(5).id, 0).await.unwrap());
}

pub async fn expired_sessions_are_listed_up_to_the_limit(b: &impl Backend) {
    let app = b.app();
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut expired = BTreeSet::new();
    for i in 0..5 {
        let mut s = session(1000);
        s.expires_at_ms = now_ms - 1000 * (i + 1);
        app.uploads.put_upload(&s, None).await.unwrap();
        expired.insert(s.id);
    }
    // Expiring at `now_ms` is not before it; the others are live.
    let mut at_now = session(1000);
    at_now.expires_at_ms = now_ms;
    app.uploads.put_upload(&at_now, None).await.unwrap();
    let live = session(1000);
    app.uploads.put_upload(&live, None).await.unwrap();
    // An expired completed session holds nothing to free: a backend may list it or not.
    let mut completed = session(1000);
    completed.expires_at_ms = now_ms - 500;
    app.uploads.put_upload(&completed, None).await.unwrap();
    completed.status = UploadStatus::Completed {
        media_id: 1,
        md5: "0".repeat(32),
    };
    completed.version += 1;
    app.uploads.put_upload(&completed, Some(0)).await.unwrap();
    // Whatever else the store holds must not be mistaken for sessions.
    let now = OffsetDateTime::now_utc();
    app.media
        .put_media(&MediaRecord::new(1, "alice", MediaType::Doc, now))
        .await
        .unwrap();
    app.media.next_media_id().await.unwrap();
    app.media
        .record_click(&Click {
            media_id: 1,
            user: None,
            ip: None,
            at: now,
        })
        .await
        .unwrap();

    let mut listed: BTreeSet<String> = app
        .uploads
        .list_expired(now_ms, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    listed.remove(&completed.id);
    assert_eq!(listed, expired);
    let some = app.uploads.list_expired(now_ms, 2).await.unwrap();
    assert_eq!(some.len(), 2);
    assert!(some
        .iter()
        .all(|s| expired.contains(&s.id) || s.id == completed.id));
    assert!(app
        .uploads
        .list_expired(now_ms - 10_000, 100)
        .await
        .unwrap()
        .is_empty());
}
