//! Freeing what expired and failed uploads hold. Shared by the local server's periodic sweep, the
//! `media-local sweep` command and the cleanup Lambda. Every step is idempotent and conditional on the
//! session's version, so two sweeps (or a sweep and a late client) never undo each other's work, and a
//! completed upload's object is never touched: only its session record goes.

use anyhow::Context;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::App;
use crate::domain::time_fmt::unix_millis;
use crate::domain::upload::{UploadSession, UploadStatus};
use crate::domain::StoreError;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unfinished or failed uploads whose bytes this sweep released (releasing is idempotent, so two
    /// overlapping sweeps may both count the same upload here).
    pub released: usize,
    /// Session records this sweep removed (released ones plus expired completed ones).
    pub sessions_removed: usize,
    /// Sessions left for a later sweep: changed by someone else meanwhile, or held by a live lease (a
    /// chunk or a completion in progress).
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
            if let Err(e) = clean(app, session, now, &mut report).await {
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
    now: OffsetDateTime,
    report: &mut SweepReport,
) -> anyhow::Result<()> {
    if session.lease_active(now) {
        report.skipped += 1;
        return Ok(());
    }
    if holds_unfinished_bytes(app, session).await? {
        app.blobs.discard(session).await?;
        report.released += 1;
    }
    // Conditional on the version we saw: a session a client moved on meanwhile is left alone. One the
    // TTL or another sweep already deleted is simply not there any more, which is fine.
    match app
        .uploads
        .delete_upload(&session.id, session.version)
        .await
    {
        Ok(true) => report.sessions_removed += 1,
        Ok(false) => {}
        Err(StoreError::Conflict) => report.skipped += 1,
        Err(StoreError::Backend(e)) => return Err(e),
    }
    Ok(())
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

/// The cleanup function's event: a DynamoDB stream batch, or anything else (the EventBridge schedule),
/// which runs a sweep. For a stream batch the answer lists the records to retry
/// (`ReportBatchItemFailures`); records that are not TTL removals of upload sessions are ignored.
pub async fn handle_event(app: &App, event: &Value, now: OffsetDateTime) -> anyhow::Result<Value> {
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        let report = sweep(app, now).await?;
        return Ok(serde_json::to_value(report)?);
    };
    let mut report = SweepReport::default();
    let (mut ignored, mut failures) = (0usize, Vec::new());
    for record in records {
        match ttl_removed_session(record) {
            Ok(Some(session)) => {
                if let Err(e) = clean(app, &session, now, &mut report).await {
                    tracing::warn!(upload_id = %session.id, error = format!("{e:#}"), "cleanup failed; the record will be retried");
                    let seq = record
                        .pointer("/dynamodb/SequenceNumber")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    failures.push(json!({"itemIdentifier": seq}));
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
        records = records.len(),
        released = report.released,
        sessions_removed = report.sessions_removed,
        ignored,
        failed = failures.len(),
        "stream batch cleaned"
    );
    Ok(json!({"batchItemFailures": failures}))
}

/// The upload session of a stream record that is a REMOVE done by the TTL service; `None` for any
/// other record (inserts, updates, a user's or the sweep's own deletes, media items).
pub fn ttl_removed_session(record: &Value) -> anyhow::Result<Option<UploadSession>> {
    let by_ttl = record.get("eventName").and_then(Value::as_str) == Some("REMOVE")
        && record.pointer("/userIdentity/type").and_then(Value::as_str) == Some("Service")
        && record
            .pointer("/userIdentity/principalId")
            .and_then(Value::as_str)
            == Some("dynamodb.amazonaws.com");
    if !by_ttl {
        return Ok(None);
    }
    let old = record
        .pointer("/dynamodb/OldImage")
        .context("a TTL REMOVE record without OldImage: the stream must carry old images")?;
    let is_upload = old
        .pointer("/pk/S")
        .and_then(Value::as_str)
        .is_some_and(|pk| pk.starts_with("upload#"));
    if !is_upload {
        return Ok(None);
    }
    let data = old
        .pointer("/data/S")
        .and_then(Value::as_str)
        .context("upload item without its data attribute")?;
    Ok(Some(
        serde_json::from_str(data).context("upload session in the old image")?,
    ))
}
