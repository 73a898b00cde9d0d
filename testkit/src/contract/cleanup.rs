//! `cleanup::clean` over the ports: the sweep frees an expired upload's bytes only after taking the
//! session out of the client's hands, so that a completion racing it keeps what it completes.

use media_shared::cleanup::{self, Found, SweepReport};
use media_shared::domain::image_metadata::MetadataPolicy;
use media_shared::domain::time_fmt::unix_millis;
use media_shared::domain::upload::{Lease, UploadSession, UploadStatus};
use media_shared::domain::{MediaType, StoreError};
use time::OffsetDateTime;

use super::Backend;
use crate::handlers::{finish_object, new_session, send_chunk};
use crate::{md5_hex, random_bytes, CHUNK};

/// An upload of `data` with every chunk received, then made to have expired a second ago: what a
/// sweep lists. Returns the stored session (the sweep's read).
async fn expired_upload(b: &impl Backend, data: &[u8]) -> UploadSession {
    let app = b.app();
    let mut s = new_session(app, data.len() as u64).await;
    for chunk in data.chunks(CHUNK) {
        send_chunk(app, &mut s, chunk).await;
    }
    let mut expired = app.uploads.get_upload(&s.id).await.unwrap().unwrap();
    expired.expires_at_ms = unix_millis(OffsetDateTime::now_utc()) - 1000;
    expired.version += 1;
    app.uploads
        .put_upload(&expired, Some(expired.version - 1))
        .await
        .unwrap();
    expired
}

/// What a sweep does with the one session it listed.
async fn sweep_one(b: &impl Backend, listed: &UploadSession) -> SweepReport {
    let mut report = SweepReport::default();
    cleanup::clean(
        b.app(),
        listed,
        Found::Stored,
        OffsetDateTime::now_utc(),
        &mut report,
    )
    .await
    .unwrap();
    report
}

/// What the complete handler writes when the MD5 matched: `Completing`, under its lease, conditional
/// on the version it read.
async fn start_completing(
    b: &impl Backend,
    read: &UploadSession,
) -> Result<UploadSession, StoreError> {
    let mut completing = read.clone();
    completing.status = UploadStatus::Completing {
        media_id: b.app().media.next_media_id().await.unwrap(),
        media_type: MediaType::Doc,
    };
    completing.lease = Some(Lease {
        token: "completion".into(),
        until_ms: unix_millis(OffsetDateTime::now_utc()) + 60_000,
    });
    completing.version = read.version + 1;
    b.app()
        .uploads
        .put_upload(&completing, Some(read.version))
        .await
        .map(|()| completing)
}

/// The race the claim closes: the completion checked the expiry just before it passed and wrote
/// `Completing` after the sweep had read the session. The sweep must leave the bytes alone (before
/// the claim it discarded them, and the completion then failed on bytes that were gone).
pub async fn a_completion_that_moved_on_after_the_sweeps_read_keeps_its_bytes(b: &impl Backend) {
    let app = b.app();
    let data = random_bytes(3 * CHUNK + 100, 21);
    let listed = expired_upload(b, &data).await;
    let staged = b.staged(&listed.id).await;
    assert_ne!(staged, Vec::<String>::new());

    let completing = start_completing(b, &listed).await.unwrap();
    let report = sweep_one(b, &listed).await;
    assert_eq!(
        report,
        SweepReport {
            skipped: 1,
            ..SweepReport::default()
        }
    );
    assert_eq!(
        b.staged(&listed.id).await,
        staged,
        "bytes freed under a completion"
    );
    assert_eq!(
        app.uploads.get_upload(&listed.id).await.unwrap(),
        Some(completing.clone())
    );

    // The completion goes on to finish the object from the bytes it was promised.
    let key = completing.object_key();
    finish_object(app, &completing, &key, MetadataPolicy::Keep)
        .await
        .unwrap();
    let stored = b.object(&key).await.expect("the finished object");
    assert_eq!(md5_hex(&stored), md5_hex(&data));
}

/// The other order: the sweep claims first, so a completion that read the session before the claim
/// loses its write and nothing is served from freed bytes; the sweep frees everything.
pub async fn a_completion_after_the_sweeps_claim_loses_its_write(b: &impl Backend) {
    let app = b.app();
    let data = random_bytes(2 * CHUNK + 7, 22);
    let listed = expired_upload(b, &data).await;

    let report = sweep_one(b, &listed).await;
    assert_eq!(
        (report.released, report.sessions_removed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(b.staged(&listed.id).await, Vec::<String>::new());
    assert!(matches!(
        start_completing(b, &listed).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(app.uploads.get_upload(&listed.id).await.unwrap(), None);
}
