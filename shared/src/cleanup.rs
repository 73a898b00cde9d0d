//! Freeing what expired and failed uploads hold. Shared by the local server's periodic sweep, the
//! `media-local sweep` command and the cleanup Lambda. Every step is idempotent and conditional on the
//! session's version, so two sweeps (or a sweep and a late client) never undo each other's work, and a
//! completed upload's object is never touched: only its session record goes. Before an unfinished
//! upload's bytes are freed, the sweep claims its session with a conditional write (`claim`), so that
//! a completion racing the expiry either wins and keeps its bytes, or loses its own write.
//!
//! An unfinished upload that expires is an `Upload Expired` event for the platform, published here,
//! where that is decided, on both paths that remove sessions: the sweep (local server, the cleanup
//! function's schedule) and the cleanup function's TTL removals. The process's `App::events` says
//! where it goes (EventBridge in the cleanup function, media-local's webhook, or nowhere).

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::streams::DynamoDbEventResponse;
use time::OffsetDateTime;

use crate::adapters::aws::items::{retry, ttl_removed_session};
use crate::app::App;
use crate::domain::events::PlatformEvent;
use crate::domain::time_fmt::unix_millis;
use crate::domain::upload::{UploadSession, UploadStatus};
use crate::domain::StoreError;
use crate::metrics::Event;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepReport {
    /// Unfinished or failed uploads whose bytes this sweep released. A stored session is released by
    /// one sweep only, the one whose claim on it won (`claim`); the TTL stream's removals need none.
    pub released: usize,
    /// Session records this sweep removed (released ones plus expired completed ones).
    pub sessions_removed: usize,
    /// Sessions left for a later sweep (or already another's): changed by someone else meanwhile
    /// (a completion, a chunk, an overlapping sweep's claim), or held by a live lease.
    pub skipped: usize,
    /// Sessions whose cleanup failed (logged with the reason); the next sweep tries them again.
    pub failed: usize,
}

/// Cleans every session past its `expires` time, in batches, until none is left. One session that
/// cannot be cleaned (a storage error) is logged and counted, never a reason to stop: the sessions
/// behind it in the listing would otherwise never be cleaned.
pub async fn sweep(app: &App, now: OffsetDateTime) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    loop {
        let batch = app.uploads.list_expired(unix_millis(now), 100).await?;
        let before = report;
        for session in &batch {
            if let Err(e) = clean(app, session, Found::Stored, now, &mut report).await {
                report.failed += 1;
                tracing::warn!(upload_id = %session.id, error = format!("{e:#}"), "could not clean an expired upload");
            }
        }
        // Stop when the store has no more, or when a batch removed nothing (all skipped or failed:
        // listing again would return the same sessions).
        if batch.len() < 100 || report.sessions_removed == before.sessions_removed {
            break;
        }
    }
    if report != SweepReport::default() {
        tracing::info!(
            released = report.released,
            sessions_removed = report.sessions_removed,
            skipped = report.skipped,
            failed = report.failed,
            "sweep done"
        );
    }
    Ok(report)
}

/// Releases one expired session's storage and removes its record. Releasing comes first: a crash in
/// between leaves a session that the next sweep finds again, never bytes nobody can find.
pub async fn clean(
    app: &App,
    session: &UploadSession,
    found: Found,
    now: OffsetDateTime,
    report: &mut SweepReport,
) -> anyhow::Result<()> {
    if session.lease_active(now) {
        report.skipped += 1;
        return Ok(());
    }
    // A chunk that read the session before it expired may still be writing; where the backend makes
    // chunk writers take turns (the local one: one file per upload), the sweep takes its turn too, so
    // that no chunk writes the file again after it was freed. Elsewhere the chunk's commit, conditional
    // on the version, loses against the removal below, or wins and the delete below is skipped: the
    // session is expired either way, never completed, and the next sweep frees what it holds.
    let _exclusive = app.blobs.exclusive(&session.id).await;
    let unfinished = holds_unfinished_bytes(app, session).await?;
    // The version the record's removal below is conditional on: the claim's, when there is one.
    let mut version = session.version;
    if unfinished {
        if found == Found::Stored {
            match claim(app, session).await? {
                Some(claimed) => version = claimed,
                None => {
                    report.skipped += 1;
                    return Ok(());
                }
            }
        }
        app.blobs.discard(session).await?;
        report.released += 1;
        app.metrics.record(Event::UploadExpired {
            bytes_freed: session.offset,
        });
    }
    // An expired upload no longer counts against its owner's quota. Freed before the record goes, so
    // that a crash in between leaves a session the next sweep finds and frees again (freeing is
    // idempotent, and usually already done when the upload completed).
    app.uploads.release_quota(session).await?;
    // The platform hears of it before the record goes, for the same reason: a failed publish leaves
    // a session the next sweep finds (or a stream record Lambda retries), so the event is sent at
    // least once. A completed upload expiring is no news: its media was announced when it was made.
    if unfinished {
        app.events
            .publish(&[PlatformEvent::upload_expired(session)])
            .await?;
    }
    // Conditional on the version we saw: a session a client moved on meanwhile is left alone. One the
    // TTL or another sweep already deleted is simply not there any more, which is fine.
    match app.uploads.delete_upload(&session.id, version).await {
        Ok(true) => report.sessions_removed += 1,
        Ok(false) => {}
        Err(StoreError::Conflict) => report.skipped += 1,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Where the session being cleaned was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Still stored (the sweep's listing): a client may move it on until it is claimed.
    Stored,
    /// Already removed from the store (a TTL removal's old image): nobody can write it any more,
    /// since every write of a session is conditional on the version stored.
    Removed,
}

/// Takes a stored session out of the client's hands before its bytes are freed: one write,
/// conditional on the version the sweep read, that marks it failed. Without it, a completion that
/// passed its expiry check just before the expiry and moved the session on (to `Completing`, with its
/// lease) after the sweep's read would have its bytes discarded under it. With it, whichever write
/// comes second loses its condition: the completion (then its client retries, and meets a failed or
/// removed upload) or the claim (then the session is left to a later sweep). `None` when the claim
/// lost; otherwise the version the record now has.
async fn claim(app: &App, session: &UploadSession) -> Result<Option<u64>, StoreError> {
    let mut claimed = session.clone();
    claimed.status = UploadStatus::Failed {
        reason: "it expired before it was completed".into(),
    };
    claimed.version = session.version + 1;
    match app
        .uploads
        .put_upload(&claimed, Some(session.version))
        .await
    {
        Ok(()) => Ok(Some(claimed.version)),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the session's bytes are not (part of) a media. A session caught in `Completing` may already
/// have its finished object and media record (the crash came before the last write): then the object
/// belongs to that media and must stay.
async fn holds_unfinished_bytes(app: &App, session: &UploadSession) -> anyhow::Result<bool> {
    Ok(match &session.status {
        UploadStatus::Completed { .. } => false,
        UploadStatus::Completing { media_id, .. } => {
            app.media.get_media(*media_id).await?.is_none()
        }
        UploadStatus::Receiving | UploadStatus::Failed { .. } => true,
    })
}

/// What the cleanup function is invoked with: a batch of the table's stream (sessions removed by TTL),
/// or anything else (the EventBridge schedule), which runs a sweep.
#[derive(Debug, Clone)]
pub enum CleanupEvent {
    Stream(DynamoDbEvent),
    Schedule,
}

/// An event with `Records` must be a stream batch: one that does not read as one fails the
/// invocation (Lambda retries it, then sends it to the on-failure destination) rather than being
/// mistaken for the schedule and dropped.
impl<'de> serde::Deserialize<'de> for CleanupEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if value.get("Records").is_none() {
            return Ok(CleanupEvent::Schedule);
        }
        serde_json::from_value(value)
            .map(CleanupEvent::Stream)
            .map_err(serde::de::Error::custom)
    }
}

/// The cleanup function's answer: the records to retry for a stream batch
/// (`ReportBatchItemFailures`), the sweep's report for the schedule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum CleanupAnswer {
    Stream(DynamoDbEventResponse),
    Sweep(SweepReport),
}

pub async fn handle_event(
    app: &App,
    event: &CleanupEvent,
    now: OffsetDateTime,
) -> anyhow::Result<CleanupAnswer> {
    match event {
        CleanupEvent::Stream(batch) => {
            Ok(CleanupAnswer::Stream(handle_stream(app, batch, now).await))
        }
        CleanupEvent::Schedule => Ok(CleanupAnswer::Sweep(sweep(app, now).await?)),
    }
}

/// Cleans the session of every TTL removal in the batch; other records are ignored.
pub async fn handle_stream(
    app: &App,
    batch: &DynamoDbEvent,
    now: OffsetDateTime,
) -> DynamoDbEventResponse {
    let mut report = SweepReport::default();
    let mut ignored = 0usize;
    let mut answer = DynamoDbEventResponse::default();
    for record in &batch.records {
        match ttl_removed_session(record) {
            Ok(Some(session)) => {
                if let Err(e) = clean(app, &session, Found::Removed, now, &mut report).await {
                    tracing::warn!(upload_id = %session.id, error = format!("{e:#}"), "cleanup failed; the record will be retried");
                    answer.batch_item_failures.push(retry(record));
                }
            }
            Ok(None) => ignored += 1,
            // A record we cannot read will not become readable by retrying: log it and move on; the
            // scheduled sweep and the bucket lifecycle are the backstops.
            Err(e) => {
                ignored += 1;
                tracing::error!(error = format!("{e:#}"), "unreadable stream record");
            }
        }
    }
    tracing::info!(
        records = batch.records.len(),
        released = report.released,
        sessions_removed = report.sessions_removed,
        ignored,
        failed = answer.batch_item_failures.len(),
        "stream batch cleaned"
    );
    answer
}
