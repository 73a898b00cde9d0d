//! The events function: media created and deleted, told to the platform from the table's stream.
//!
//! Why from the stream and not from the request that made the change: on Lambda, work spawned after
//! the response may be frozen with the process, so an event put from the request path either delays
//! the answer (waiting for EventBridge) or can be lost. A stream record exists exactly when the media
//! item was written or removed; Lambda hands it to this function outside any request, in order per
//! item, and retries it until it is published (then its on-failure destination keeps it). So every
//! `Media Created` / `Media Deleted` is published at least once, never before the fact is stored,
//! and the user's request never waits for it.
//!
//! Why a function of its own rather than in the thumbnail or cleanup function: those see other
//! records (image inserts only; TTL removals of sessions), and a bus that refuses events would make
//! them retry work that succeeded (thumbnails, cleanups), or the other way round. Here the filter
//! (template.yaml) lets through media INSERTs and REMOVEs only, and a failure retries publishing
//! and nothing else. `Upload Expired` is not published here: whether an upload expired unfinished is
//! decided by the cleanup code (`cleanup::clean`), which publishes it on both of its paths.

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::streams::DynamoDbEventResponse;

use crate::adapters::aws::items::{media_change, retry, MediaChange};
use crate::app::App;
use crate::domain::events::PlatformEvent;

/// Publishes the event of every media insert and removal in the batch, in the batch's order, on
/// `app.events`. On a failure the first record not published is reported (`ReportBatchItemFailures`):
/// Lambda retries from it, so nothing after it is skipped and nothing is published out of order
/// (records before it may be published again: at least once).
pub async fn handle_stream_event(app: &App, batch: &DynamoDbEvent) -> DynamoDbEventResponse {
    let mut events = Vec::new();
    // The record each event came from.
    let mut sources = Vec::new();
    let mut stopped_at = None;
    for (i, record) in batch.records.iter().enumerate() {
        let change = match media_change(record) {
            Ok(Some(change)) => change,
            Ok(None) => continue,
            // A record we cannot read will not become readable by retrying: log it and go on.
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "unreadable stream record");
                continue;
            }
        };
        let (media, make): (_, fn(&str, serde_json::Value) -> PlatformEvent) = match &change {
            MediaChange::Inserted(m) => (m, PlatformEvent::media_created),
            MediaChange::Removed(m) => (m, PlatformEvent::media_deleted),
        };
        match app.media_json(media).await {
            Ok(json) => {
                events.push(make(&media.owner, json));
                sources.push(i);
            }
            Err(e) => {
                tracing::warn!(media_id = media.id, error = %e, "no Media JSON; the record will be retried");
                stopped_at = Some(i);
                break;
            }
        }
    }
    let mut answer = DynamoDbEventResponse::default();
    let failed = match app.events.publish(&events).await {
        Ok(()) => stopped_at,
        Err(e) => {
            tracing::warn!(error = %e, "events not published; the records will be retried");
            sources
                .get(e.first)
                .or(sources.last())
                .copied()
                .or(stopped_at)
        }
    };
    if let Some(i) = failed {
        answer.batch_item_failures.push(retry(&batch.records[i]));
    }
    tracing::info!(
        records = batch.records.len(),
        events = events.len(),
        failed = answer.batch_item_failures.len(),
        "stream batch published"
    );
    answer
}
