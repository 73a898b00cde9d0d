//! Freeing what expired and failed uploads hold. Shared by the local server's periodic sweep, the
//! `media-local sweep` command and the cleanup Lambda. Every step is idempotent and conditional on the
//! session's version, so two sweeps (or a sweep and a late client) never undo each other's work, and a
//! completed upload's object is never touched: only its session record goes.

use time::OffsetDateTime;

use crate::api::App;
use crate::domain::time_fmt::unix_millis;
use crate::domain::upload::{UploadSession, UploadStatus};
use crate::domain::StoreError;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unfinished or failed uploads whose bytes were released.
    pub released: usize,
    /// Session records removed (released ones plus expired completed ones).
    pub sessions_removed: usize,
    /// Sessions changed by someone else during the sweep; left for the next one.
    pub skipped: usize,
}

/// Cleans every session past its `expires` time, in batches, until none is left.
pub async fn sweep(app: &App, now: OffsetDateTime) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    loop {
        let batch = app.uploads.list_expired(unix_millis(now), 100).await?;
        let before = report;
        for session in &batch {
            clean(app, session, &mut report).await?;
        }
        // Stop when a batch changed nothing (all skipped) or the store has no more.
        if batch.len() < 100 || report.sessions_removed == before.sessions_removed {
            break;
        }
    }
    if report != SweepReport::default() {
        tracing::info!(
            released = report.released,
            sessions_removed = report.sessions_removed,
            skipped = report.skipped,
            "sweep done"
        );
    }
    Ok(report)
}

/// Releases one expired session's storage and removes its record.
pub async fn clean(
    app: &App,
    session: &UploadSession,
    report: &mut SweepReport,
) -> anyhow::Result<()> {
    if !matches!(session.status, UploadStatus::Completed { .. }) {
        app.blobs.discard(session).await?;
        report.released += 1;
    }
    match app
        .uploads
        .delete_upload(&session.id, session.version)
        .await
    {
        Ok(()) => report.sessions_removed += 1,
        Err(StoreError::Conflict) => report.skipped += 1,
        Err(StoreError::Backend(e)) => return Err(e),
    }
    Ok(())
}
