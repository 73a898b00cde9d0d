//! `MediaStore`: unique media ids, media records, and clicks.

use media_shared::domain::{Click, MediaRecord, MediaType};
use time::OffsetDateTime;

use super::Backend;

fn at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

/// Concurrent callers of one store (one process) get unique positive ids, and a call made after
/// them gets a larger one. Both backends give a fresh store 1 first (the local counter counts from 1,
/// the AWS one hands out its first block from 1); the contract allows gaps, so nothing more is
/// asked. On moto the callers really run together: the AWS adapter reserves blocks under its own
/// lock, so moto's non-atomic `ADD` (see `shared/tests/aws_scale.rs`, which tests several processes)
/// is never raced here.
pub async fn ids_are_unique_and_increasing_under_concurrency(b: &impl Backend) {
    let store = b.app().media.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.spawn(async move { store.next_media_id().await.unwrap() });
    }
    let ids: std::collections::BTreeSet<u64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 20, "an id handed out twice: {ids:?}");
    assert_eq!(ids.first(), Some(&1), "{ids:?}");
    let later = store.next_media_id().await.unwrap();
    assert!(later > *ids.last().unwrap(), "{later} after {ids:?}");
}

pub async fn media_round_trip_and_put_replaces(b: &impl Backend) {
    let store = &b.app().media;
    assert_eq!(store.get_media(7).await.unwrap(), None);
    let mut m = MediaRecord::new(7, "alice", MediaType::Image, at());
    m.title = Some("cat.png".into());
    m.object_key = Some("media/abc.png".into());
    m.size = Some(1234);
    store.put_media(&m).await.unwrap();
    assert_eq!(store.get_media(7).await.unwrap(), Some(m.clone()));
    m.title = Some("dog.png".into());
    store.put_media(&m).await.unwrap();
    assert_eq!(store.get_media(7).await.unwrap(), Some(m));
    assert_eq!(store.get_media(8).await.unwrap(), None);
}

pub async fn replace_writes_only_a_media_that_exists(b: &impl Backend) {
    let store = &b.app().media;
    let mut m = MediaRecord::new(3, "alice", MediaType::Image, at());
    // Never created: nothing is written.
    assert!(!store.replace_media(&m).await.unwrap());
    assert_eq!(store.get_media(3).await.unwrap(), None);

    store.put_media(&m).await.unwrap();
    m.title = Some("with a thumbnail".into());
    assert!(store.replace_media(&m).await.unwrap());
    assert_eq!(store.get_media(3).await.unwrap(), Some(m.clone()));

    // Deleted meanwhile: work done after the fact must not bring it back.
    store.delete_media(3).await.unwrap();
    m.title = Some("late".into());
    assert!(!store.replace_media(&m).await.unwrap());
    assert_eq!(store.get_media(3).await.unwrap(), None);
}

pub async fn deleting_a_missing_media_is_not_an_error(b: &impl Backend) {
    let store = &b.app().media;
    let m = MediaRecord::new(5, "alice", MediaType::Doc, at());
    store.put_media(&m).await.unwrap();
    let other = MediaRecord::new(6, "bob", MediaType::Doc, at());
    store.put_media(&other).await.unwrap();
    store.delete_media(5).await.unwrap();
    assert_eq!(store.get_media(5).await.unwrap(), None);
    store.delete_media(5).await.unwrap();
    store.delete_media(99).await.unwrap();
    assert_eq!(store.get_media(6).await.unwrap(), Some(other));
}

pub async fn every_click_is_recorded(b: &impl Backend) {
    let store = &b.app().media;
    let click = Click {
        media_id: 7,
        user: Some("bob".into()),
        ip: None,
        at: at(),
    };
    let anonymous = Click {
        media_id: 8,
        user: None,
        ip: Some("203.0.113.9".into()),
        at: at() + time::Duration::seconds(1),
    };
    // The same click twice is two clicks.
    store.record_click(&click).await.unwrap();
    store.record_click(&click).await.unwrap();
    store.record_click(&anonymous).await.unwrap();
    let mut clicks = b.clicks().await;
    clicks.sort_by_key(|c| (c.at, c.media_id));
    assert_eq!(clicks, vec![click.clone(), click, anonymous]);
}
