//! POST /api/v2/media/upload/complete/: check the MD5 carried forward through the chunks, turn the
//! received bytes into the final object and record the Media.
//!
//! Completion is two steps so that a crash in between can never make two media for one upload:
//! first the session moves to `Completing` with a reserved media id (a conditional write, which also
//! stops a concurrent complete), then object + media record are written and the session becomes
//! `Completed`. A retry finds `Completing` and finishes with the same id. Only the last write must be
//! durable before the answer; on the local store the steps before it are not flushed on their own
//! (`save_deferred`), which took a small upload's completion from five disk flushes to two (the
//! object's rename and the last commit).
//!
//! The md5 is that of the uploaded bytes. What is stored and served may be fewer bytes: photos lose
//! their metadata on the way (`domain::image_metadata`, `MEDIA_STRIP_METADATA`), and the Media's `size`
//! is the served file's.
//!
//! A wrong md5 changes nothing: the answer is a 400 and the client may complete again with the right
//! one; an upload never completed is freed by the sweep when it expires.

use time::OffsetDateTime;

use super::auth::require_user;
use super::form::fields;
use super::{response, Request, Response};
use crate::app::App;
use crate::domain::sniff::dimensions;
use crate::domain::upload::{Md5Error, UploadSession, UploadStatus};
use crate::domain::{ApiError, MediaRecord, MediaType, ThumbnailMode};
use crate::metrics::Event;
use crate::thumbnailer;

/// How far into a finished image to look for its dimensions when the first chunk did not hold them.
const HEADER_PROBE_BYTES: u64 = 1024 * 1024;

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(complete(app, req).await)
}

async fn complete(app: &App, req: Request) -> Result<Response, ApiError> {
    let user = require_user(&req)?;
    let fields = fields(&req)?;
    let (upload_id, md5) = match (fields.required("upload_id"), fields.required("md5")) {
        (Ok(u), Ok(m)) => (u, m),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let requested_type = fields.get("type");
    let mut session = app.own_upload(upload_id, &user).await?;
    let now = OffsetDateTime::now_utc();

    match session.status.clone() {
        UploadStatus::Completed {
            media_id,
            md5: done,
        } => {
            // A client retrying after a timeout gets the same media again.
            if !md5.trim().eq_ignore_ascii_case(&done) {
                return Err(ApiError::bad_request(
                    "upload_completed",
                    "this upload was completed with a different md5",
                ));
            }
            let media = app.media_or_404(media_id).await?;
            return Ok(response::json(200, &app.media_json(&media).await?));
        }
        UploadStatus::Completing {
            media_id,
            media_type,
        } => {
            verify_md5(app, &session, md5)?;
            // Resuming a completion that crashed (or one still running: then 409).
            session.take_lease(now, app.limits.lease_secs)?;
            save_deferred(app, &mut session).await?;
            // The crashed request may not have got as far as freeing its quota (idempotent).
            release_quota(app, &session).await;
            let media = finish(app, &mut session, media_id, media_type, now).await?;
            return Ok(response::json(201, &app.announce_created(&media).await?));
        }
        UploadStatus::Receiving | UploadStatus::Failed { .. } => {}
    }

    session.check_completable(now)?;
    if session.lease_active(now) {
        return Err(ApiError::Conflict(
            "a chunk of this upload is being written right now; retry shortly".into(),
        ));
    }
    // A wrong `type` is the client's mistake about the request, not about the bytes: no need to fail.
    let media_type =
        MediaType::for_upload(requested_type, session.content.kind, &session.content.mime)?;
    // A malformed md5 is a field error and a wrong one a 400; neither changes the upload, which
    // stays completable with the md5 of its bytes until it expires (django-chunked-upload does the
    // same: "bad md5 -> 400, then complete -> 200").
    verify_md5(app, &session, md5)?;
    let media_id = app.media.next_media_id().await?;
    session.status = UploadStatus::Completing {
        media_id,
        media_type,
    };
    // The lease marks the completion as in progress: a concurrent complete gets 409, and the expiry
    // sweep leaves the session alone until it is done (or its lease runs out after a crash).
    session.take_lease(now, app.limits.lease_secs)?;
    save_deferred(app, &mut session).await?;
    release_quota(app, &session).await;
    let media = finish(app, &mut session, media_id, media_type, now).await?;
    Ok(response::json(201, &app.announce_created(&media).await?))
}

/// `App::save_upload` of a step before completion's last write, which may be answered before it is
/// durable (`UploadStore::put_upload_deferred`): the last write, flushed, carries it on the local
/// store, whose commits become durable in order. A crash before it loses at most these steps: the
/// session is back to receiving (or completing), no media was stored, and a retry completes it,
/// finding the object already in place (`BlobStore::finish` is idempotent). Nothing is answered
/// before the last write is durable.
async fn save_deferred(app: &App, session: &mut UploadSession) -> Result<(), ApiError> {
    let expected = session.version;
    session.version += 1;
    if let Err(e) = app
        .uploads
        .put_upload_deferred(session, Some(expected))
        .await
    {
        session.version = expected;
        return Err(e.into());
    }
    Ok(())
}

/// `UploadSession::verify_md5`, counting a mismatch (a malformed md5 is only a field error).
fn verify_md5(app: &App, session: &UploadSession, md5: &str) -> Result<String, ApiError> {
    session.verify_md5(md5).map_err(|e| {
        if matches!(e, Md5Error::Mismatch { .. }) {
            app.metrics.record(Event::Md5Mismatch);
        }
        e.into()
    })
}

/// The upload is no longer unfinished: it stops counting against its owner's quota. A failure here
/// only delays that until the sweep removes the session, which frees it again.
async fn release_quota(app: &App, session: &UploadSession) {
    if let Err(e) = app.uploads.release_quota(session).await {
        tracing::warn!(upload_id = %session.id, error = %e, "could not free the upload's quota");
    }
}

/// Object, media record, then the session's final state; each step is safe to repeat.
async fn finish(
    app: &App,
    session: &mut UploadSession,
    media_id: u64,
    media_type: MediaType,
    now: OffsetDateTime,
) -> Result<MediaRecord, ApiError> {
    let key = session.object_key();
    // The size of what is served: a photo's metadata may have been stripped (`image_metadata`); its
    // pixels, and so its width and height, are the ones uploaded.
    let parts = app.uploads.recorded_parts(session).await?;
    let size = app
        .blobs
        .finish(session, &parts, &key, app.limits.metadata)
        .await?;

    let c = &session.content;
    let mut media = MediaRecord::new(media_id, &session.owner, media_type, now);
    media.title = session.filename.clone();
    media.size = Some(size);
    media.mimetype = Some(c.mime.clone());
    media.upload_id = Some(session.id.clone());
    if media_type.is_image() {
        let (mut width, mut height) = (c.width, c.height);
        if width.is_none() {
            // The header lay beyond the first chunk: read the start of the object, never the whole file.
            let head = app.blobs.read_head(&key, HEADER_PROBE_BYTES).await?;
            (width, height) = dimensions(&head).map_or((None, None), |(w, h)| (Some(w), Some(h)));
        }
        media.image_width = width;
        media.image_height = height;
        media.image_mimetype = Some(c.mime.clone());
    }
    media.object_key = Some(key);
    if media_type.is_image() && app.limits.thumbnails == ThumbnailMode::Inline {
        // Deferred mode leaves this to the thumbnail function, fed by the insert below.
        if let Err(e) = thumbnailer::attach_stored(app, &mut media).await {
            tracing::warn!(media_id, error = format!("{e:#}"), "thumbnail not stored");
        }
    }
    // Deferred: the session's final state below is flushed, and carries it (`save_deferred`).
    app.media.put_media_deferred(&media).await?;

    session.status = UploadStatus::Completed {
        media_id,
        md5: session.md5.hex_digest()?,
    };
    session.lease = None;
    session.staging = Default::default();
    app.save_upload(session).await?;
    app.metrics.record(Event::UploadCompleted);
    Ok(media)
}
