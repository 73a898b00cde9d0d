//! `UploadStore`'s per-user quotas of unfinished uploads: creating an upload counts it (how many,
//! and their declared bytes) in the same conditional write that checks the quota, so racing creators
//! cannot pass it together; a refused creation leaves no session; freeing is idempotent.
//!
//! On moto the racing creators are kept apart by `DynamoMeta`'s in-process serialisation: moto checks
//! a condition and writes without a lock, so it cannot show DynamoDB's per-item atomicity, which is
//! what holds across processes. The sequential checks are the conditions themselves, as evaluated
//! by the store.

use std::sync::Arc;

use media_shared::domain::upload::{ChunkPlan, UploadSession};
use media_shared::domain::{ContentKind, Sniffed, StoreError, UserQuota};
use media_shared::ports::UploadStore;
use time::OffsetDateTime;

use super::Backend;

fn session(owner: &str, total: u64) -> UploadSession {
    let plan = ChunkPlan {
        start: 0,
        len: total.min(1000),
        total,
    };
    let content = Sniffed {
        mime: "application/pdf".into(),
        kind: ContentKind::Document,
        width: None,
        height: None,
    };
    UploadSession::new(owner, OffsetDateTime::now_utc(), 3600, &plan, content, None)
}

const FIVE: UserQuota = UserQuota {
    max_open: 5,
    max_bytes: 1_000_000,
};

fn refused(r: Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::QuotaExceeded(_)))
}

pub async fn racing_creators_cannot_pass_the_quota_together(b: &impl Backend) {
    let store: Arc<dyn UploadStore> = b.app().uploads.clone();
    let tries: Vec<_> = (0..20)
        .map(|_| {
            let (store, s) = (store.clone(), session("alice", 1000));
            tokio::spawn(async move {
                let r = store.create_upload(&s, &FIVE).await;
                (s, r)
            })
        })
        .collect();
    let (mut passed, mut over) = (Vec::new(), Vec::new());
    for t in tries {
        match t.await.unwrap() {
            (s, Ok(())) => passed.push(s),
            (s, Err(StoreError::QuotaExceeded(q))) => {
                assert_eq!(q, FIVE, "the refusal names the quota");
                over.push(s)
            }
            (_, Err(e)) => panic!("unexpected: {e:#}"),
        }
    }
    assert_eq!(
        (passed.len(), over.len()),
        (5, 15),
        "exactly the quota passes"
    );
    for s in &passed {
        assert!(store.get_upload(&s.id).await.unwrap().is_some());
    }
    for s in &over {
        assert!(
            store.get_upload(&s.id).await.unwrap().is_none(),
            "a refused creation leaves no session"
        );
    }
    // Another user has a quota of their own.
    store
        .create_upload(&session("bob", 1000), &FIVE)
        .await
        .unwrap();
}

pub async fn freeing_makes_room_once(b: &impl Backend) {
    let store = &b.app().uploads;
    let mut open = Vec::new();
    for _ in 0..5 {
        let s = session("alice", 1000);
        store.create_upload(&s, &FIVE).await.unwrap();
        open.push(s);
    }
    assert!(refused(
        store.create_upload(&session("alice", 1000), &FIVE).await
    ));
    assert!(store.release_quota(&open[0]).await.unwrap());
    // Freed once: a second release of the same upload frees nothing more.
    assert!(!store.release_quota(&open[0]).await.unwrap());
    // Never counted: nothing to free.
    assert!(!store.release_quota(&session("alice", 1000)).await.unwrap());
    store
        .create_upload(&session("alice", 1000), &FIVE)
        .await
        .unwrap();
    assert!(refused(
        store.create_upload(&session("alice", 1000), &FIVE).await
    ));
}

pub async fn declared_bytes_count_against_the_quota(b: &impl Backend) {
    let store = &b.app().uploads;
    let bytes = UserQuota {
        max_open: 100,
        max_bytes: 1000,
    };
    let a = session("carol", 400);
    store.create_upload(&a, &bytes).await.unwrap();
    store
        .create_upload(&session("carol", 400), &bytes)
        .await
        .unwrap();
    assert!(refused(
        store.create_upload(&session("carol", 400), &bytes).await
    ));
    // A single upload over the whole quota is refused, and leaves nothing.
    let huge = session("dave", 1001);
    assert!(refused(store.create_upload(&huge, &bytes).await));
    assert!(store.get_upload(&huge.id).await.unwrap().is_none());
    assert!(store.release_quota(&a).await.unwrap());
    store
        .create_upload(&session("carol", 600), &bytes)
        .await
        .unwrap();
}

pub async fn creating_an_existing_id_is_a_conflict_and_counts_nothing(b: &impl Backend) {
    let store = &b.app().uploads;
    let s = session("erin", 10);
    store.create_upload(&s, &FIVE).await.unwrap();
    assert!(matches!(
        store.create_upload(&s, &FIVE).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.release_quota(&s).await.unwrap());
    assert!(!store.release_quota(&s).await.unwrap());
}
