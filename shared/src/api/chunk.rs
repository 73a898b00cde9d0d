//! POST /api/v2/media/upload/chunk/: one chunk of a file, the first one creating the upload.
//!
//! The sequence keeps every crash recoverable: (1) take the session's write lease with a conditional
//! write, (2) write the bytes, (3) commit offset + MD5 state + staging state conditional on our version.
//! A crash after (2) leaves the committed offset where it was, so the client's retry of the same chunk
//! rewrites the same range once the lease has run out. A retry after (3), when only the answer was
//! lost, finds its range just behind the offset: the same bytes are answered 201 again.

use std::time::Instant;

use time::OffsetDateTime;

use super::auth::require_user;
use super::form::{multipart_parts, Fields};
use super::multipart::Part;
use super::{response, Request, Response};
use crate::app::App;
use crate::domain::sniff::sniff;
use crate::domain::time_fmt::rfc3339_millis;
use crate::domain::upload::{ChunkPlan, LastChunk, UploadSession};
use crate::domain::{ApiError, ContentRange};
use crate::metrics::Event;

/// Names the file part may have; the official client always uses `image`, even for PDFs.
const FILE_FIELDS: [&str; 3] = ["image", "document", "file"];

pub async fn handle(app: &App, req: Request) -> Response {
    let started = Instant::now();
    let resp = response::from_result(chunk(app, req).await);
    app.metrics.record(Event::ChunkHandled {
        elapsed: started.elapsed(),
    });
    resp
}

async fn chunk(app: &App, req: Request) -> Result<Response, ApiError> {
    let user = require_user(&req)?;
    let range = match req.headers().get("content-range") {
        None => None,
        Some(v) => Some(ContentRange::parse(v.to_str().map_err(|_| {
            ApiError::bad_request("invalid_content_range", "Content-Range is not ASCII")
        })?)?),
    };
    let parts = multipart_parts(&req)?;
    let file = parts
        .iter()
        .find(|p| FILE_FIELDS.contains(&p.name.as_str()))
        .ok_or_else(|| {
            ApiError::bad_request("missing_file", "no file part named image, document or file")
        })?;
    let len = file.data.len() as u64;
    app.limits.check_chunk_len(len)?;
    let now = OffsetDateTime::now_utc();

    let (mut session, plan) = match Fields::from_parts(&parts).get("upload_id") {
        None => start(app, &user, range, file, now).await?,
        Some(id) => {
            let session = app.own_upload(id, &user).await?;
            if let Some(last) = session.repeated_chunk(range.as_ref(), len, now) {
                return repeated(&session, last.clone(), file.data.clone()).await;
            }
            resume(app, session, range, len, now).await?
        }
    };

    let before = session.staging.clone();
    // The MD5 moves forward on a blocking thread while the bytes are written: one waits on the CPU,
    // the other on storage, so a chunk costs the longer of the two rather than their sum.
    let hashing = {
        let (md5, data) = (session.md5.clone(), file.data.clone());
        tokio::task::spawn_blocking(move || md5.advanced(&data))
    };
    let written = app
        .blobs
        .write_chunk(&session, &plan, file.data.clone())
        .await;
    let md5 = hashing
        .await
        .map_err(|e| anyhow::Error::from(e).context("hashing the chunk"))
        .and_then(|r| r);
    let (staging, md5) = match (written, md5) {
        (Ok(staging), Ok(md5)) => (staging, md5),
        (Err(e), _) | (_, Err(e)) => {
            release_lease(app, &mut session).await;
            return Err(ApiError::Internal(e.context("writing the chunk")));
        }
    };
    session.accept_chunk(&plan, md5, staging);
    app.save_upload(&mut session).await?;
    app.metrics.record(Event::ChunkStored { bytes: len });
    if let Err(e) = app.blobs.after_commit(&before, &session.staging).await {
        // Only garbage is left behind; cleanup by prefix and the bucket lifecycle remove it later.
        tracing::warn!(upload_id = %session.id, error = format!("{e:#}"), "could not free staged chunks");
    }

    Ok(accepted(&session))
}

/// The first chunk: identify the content, check it may be uploaded, create the session holding the
/// lease and count it against the user's quota of unfinished uploads (429 beyond it).
async fn start(
    app: &App,
    user: &str,
    range: Option<ContentRange>,
    file: &Part,
    now: OffsetDateTime,
) -> Result<(UploadSession, ChunkPlan), ApiError> {
    let plan = ChunkPlan::first(range, file.data.len() as u64)?;
    let sniffed = sniff(&file.data);
    let content = app.limits.admit(sniffed, plan.total)?;
    let filename = file.filename.clone().filter(|f| !f.trim().is_empty());
    let mut session = UploadSession::new(
        user,
        now,
        app.limits.upload_ttl_secs,
        &plan,
        content,
        filename,
    );
    session.take_lease(now, app.limits.lease_secs)?;
    app.uploads
        .create_upload(&session, &app.limits.user_quota)
        .await?;
    Ok((session, plan))
}

/// A later chunk: the caller's upload, receiving, at this offset, and nobody else writing it.
async fn resume(
    app: &App,
    mut session: UploadSession,
    range: Option<ContentRange>,
    len: u64,
    now: OffsetDateTime,
) -> Result<(UploadSession, ChunkPlan), ApiError> {
    let plan = session.plan_chunk(range, len, now)?;
    session.take_lease(now, app.limits.lease_secs)?;
    app.save_upload(&mut session).await?;
    Ok((session, plan))
}

/// The chunk accepted last, sent again (its answer was lost): the same bytes get the answer they
/// got then, with nothing written; other bytes in its place are an offset mismatch, as any chunk
/// that does not start at the offset is.
async fn repeated(
    session: &UploadSession,
    last: LastChunk,
    data: bytes::Bytes,
) -> Result<Response, ApiError> {
    let check = {
        let session = session.clone();
        tokio::task::spawn_blocking(move || session.is_same_chunk(&last, &data))
    };
    let same = check
        .await
        .map_err(|e| anyhow::Error::from(e).context("comparing a repeated chunk"))??;
    if !same {
        return Err(ApiError::OffsetMismatch {
            offset: session.offset,
        });
    }
    Ok(accepted(session))
}

fn accepted(session: &UploadSession) -> Response {
    response::json(
        201,
        &serde_json::json!({"upload_id": session.id, "offset": session.offset, "expires": rfc3339_millis(session.expires())}),
    )
}

/// After a failed write, give the lease back so that the client's retry need not wait for it to expire.
async fn release_lease(app: &App, session: &mut UploadSession) {
    session.lease = None;
    if let Err(e) = app.save_upload(session).await {
        tracing::warn!(upload_id = %session.id, error = %e, "could not release the chunk lease");
    }
}
