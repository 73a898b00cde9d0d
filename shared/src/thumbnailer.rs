//! Making and storing the thumbnails of image media (`domain::thumbnail` renders them).
//!
//! Where it happens is a setting (`Limits::thumbnails`): inline, by the request that creates the
//! media (the local server), or deferred, by the thumbnail function fed with the table's stream of
//! inserted image media (AWS), so that completing an upload never waits for image decoding. A
//! thumbnail that cannot be made (not decodable, a decompression bomb, no room in the decoding budget
//! in time) is logged and the media stays without one: a thumbnail is never a reason to fail.
//!
//! Every decode runs within the process's decoding budget (`decode_budget`): the image's header says
//! what decoding it will hold, that much is reserved first, and the reservation travels with the
//! blocking task so that it is held exactly as long as the memory is.

use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::streams::DynamoDbEventResponse;
use bytes::Bytes;

use crate::adapters::aws::items::{inserted_image_media, retry};
use crate::app::App;
use crate::decode_budget::DecodeBudget;
use crate::domain::keys;
use crate::domain::thumbnail::{self, Rendered, ThumbnailError};
use crate::domain::{MediaRecord, StoredThumbnail};
use crate::metrics::Event;

/// How long a request waits for room in the decoding budget before it gives up on the thumbnail.
const BUDGET_WAIT: Duration = Duration::from_secs(10);

/// Renders the thumbnail of `bytes` (the media's image) and stores it; sets `media.thumbnail`.
/// Errors are storage failures only; an image that gives no thumbnail is not one.
pub async fn attach(app: &App, media: &mut MediaRecord, bytes: Bytes) -> anyhow::Result<()> {
    // Named after the image's key (unique), so a retry overwrites the same thumbnail.
    let Some(image_key) = media.object_key.clone() else {
        return Ok(());
    };
    let budget = DecodeBudget::for_process(app.limits.decode_budget_bytes);
    let rendered = render_within(budget, bytes).await?;
    let Rendered {
        jpeg,
        width,
        height,
        color,
    } = match rendered {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(media_id = media.id, error = %e, "no thumbnail for this image");
            app.metrics.record(Event::ThumbnailFailed);
            return Ok(());
        }
    };
    let key = keys::thumbnail(&image_key);
    let stored = app
        .blobs
        .put_object(&key, Bytes::from(jpeg), thumbnail::MIME)
        .await;
    app.metrics.record(match stored {
        Ok(()) => Event::ThumbnailMade,
        Err(_) => Event::ThumbnailFailed,
    });
    stored?;
    media.thumbnail = Some(StoredThumbnail {
        key,
        width,
        height,
        color,
    });
    Ok(())
}

/// Probes the image, reserves what decoding it needs, and renders it on a blocking thread.
pub async fn render_within(
    budget: &DecodeBudget,
    bytes: Bytes,
) -> anyhow::Result<Result<Rendered, ThumbnailError>> {
    let probe = match thumbnail::probe(&bytes) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let grant = match budget.reserve(probe.cost(), BUDGET_WAIT).await {
        Ok(g) => g,
        Err(e @ crate::decode_budget::Refusal::TooBig { .. }) => {
            return Ok(Err(ThumbnailError::TooBig(e.to_string())))
        }
        Err(e) => return Ok(Err(ThumbnailError::Busy(e.to_string()))),
    };
    tokio::task::spawn_blocking(move || {
        let _held_while_decoding = grant;
        thumbnail::render(&bytes, &probe)
    })
    .await
    .context("thumbnail rendering task")
}

/// `attach` for an image already in the blob store (an uploaded file at completion).
pub async fn attach_stored(app: &App, media: &mut MediaRecord) -> anyhow::Result<()> {
    let Some(key) = media.object_key.clone() else {
        return Ok(());
    };
    // Images are at most `max_image_bytes`; one byte more tells a truncated read from a whole one.
    let bytes = app
        .blobs
        .read_head(&key, app.limits.max_image_bytes + 1)
        .await?;
    if bytes.len() as u64 > app.limits.max_image_bytes {
        tracing::warn!(
            media_id = media.id,
            "image larger than the image limit; no thumbnail"
        );
        app.metrics.record(Event::ThumbnailFailed);
        return Ok(());
    }
    attach(app, media, bytes).await
}

/// The deferred path: makes the thumbnail of media `id` if it is an image without one, and writes
/// the media back only if it still exists (a media deleted meanwhile stays deleted, and its
/// just-stored thumbnail goes too).
pub async fn make_for(app: &App, id: u64) -> anyhow::Result<()> {
    let Some(mut media) = app.media.get_media(id).await? else {
        return Ok(());
    };
    if !media.media_type.is_image() || media.thumbnail.is_some() {
        return Ok(());
    }
    attach_stored(app, &mut media).await?;
    let Some(thumb) = media.thumbnail.clone() else {
        return Ok(());
    };
    if !app.media.replace_media(&media).await? {
        app.blobs.delete_object(&thumb.key).await?;
    }
    Ok(())
}

/// The thumbnail function's event: a DynamoDB stream batch. Inserted image media get their
/// thumbnail; every other record is ignored. Records whose storage calls failed are reported for a
/// retry (`ReportBatchItemFailures`).
pub async fn handle_stream_event(app: &App, batch: &DynamoDbEvent) -> DynamoDbEventResponse {
    let mut answer = DynamoDbEventResponse::default();
    for record in &batch.records {
        let Some(id) = inserted_image_media(record) else {
            continue;
        };
        if let Err(e) = make_for(app, id).await {
            tracing::warn!(
                media_id = id,
                error = format!("{e:#}"),
                "thumbnail failed; the record will be retried"
            );
            answer.batch_item_failures.push(retry(record));
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::dynamodb::EventRecord;
    use serde_json::json;

    fn record(event: &str, pk: &str, media_type: &str) -> EventRecord {
        serde_json::from_value(json!({
            "eventID": "1", "eventName": event, "awsRegion": "us-east-1",
            "dynamodb": {"SequenceNumber": "1", "SizeBytes": 1, "NewImage": {
            "pk": {"S": pk}, "kind": {"S": "media"}, "media_type": {"S": media_type}, "data": {"S": "{}"}}}}))
        .unwrap()
    }

    #[test]
    fn only_inserted_image_media_are_picked() {
        assert_eq!(
            inserted_image_media(&record("INSERT", "media#17", "image")),
            Some(17)
        );
        assert_eq!(
            inserted_image_media(&record("INSERT", "media#18", "eimage")),
            Some(18)
        );
        assert_eq!(
            inserted_image_media(&record("MODIFY", "media#17", "image")),
            None
        );
        assert_eq!(
            inserted_image_media(&record("INSERT", "media#17", "doc")),
            None
        );
        assert_eq!(
            inserted_image_media(&record("INSERT", "upload#ab", "image")),
            None
        );
        let remove = json!({"eventID": "1", "eventName": "REMOVE", "awsRegion": "us-east-1",
            "dynamodb": {"SizeBytes": 1}});
        assert_eq!(
            inserted_image_media(&serde_json::from_value(remove).unwrap()),
            None
        );
    }
}
