//! POST /api/v2/media/upload/chunk/: one chunk of a file, the first one creating the upload.
//!
//! A chunk is (1) read the session, (2) write the bytes, (3) commit offset + MD5 state + staging state
//! conditional on the version read in (1), with the record of the part the chunk fills, if it fills
//! one, in the same write (`UploadStore::commit_chunk`): one read and one write, no lease. Where the
//! backend keeps the accepted session beside the bytes, flushed with them (the local one:
//! `BlobStore::persist_progress`), the commit in (3) is not flushed again. Two
//! requests racing for the same offset (a retry, a client sending twice, with the same bytes or not)
//! may both write; exactly one commit wins and the other is answered 409, so exactly one version of
//! the chunk is ever accepted. That is safe because no attempt ever writes where a committed session's
//! bytes are: the S3 backend stages each attempt under a key of its own and uploads a part only after
//! the commit recording it has won (`adapters::aws::s3_blobs`); the local backend writes every chunk
//! into one file, so its writers of one upload take turns on an in-process lock from (1) to (3)
//! (`BlobStore::exclusive`: one process holds the database, and a lock needs to survive no crash).
//!
//! Every crash stays recoverable. A crash after (2) leaves the committed offset where it was: the
//! client's retry writes the chunk again (its own new objects, or the same range of the local file)
//! and commits, at once, with no lease to wait out; what the crashed attempt wrote is garbage that
//! completion, the sweep or the bucket's lifecycle removes. A retry after (3), when only the answer was
//! lost, finds its range just behind the offset: the same bytes are answered 201 again (`repeated`).
//! Two first chunks never race: each creates an upload of its own, whose id nobody knows before the
//! answer. Completion never races a chunk's write either: it needs every byte committed, after which no
//! chunk writes (a chunk sent again then is `repeated`, or an offset mismatch). The sweep frees only
//! expired uploads, which can no longer be completed, so a chunk it races can only lose its commit
//! (and abandon what it wrote) or commit bytes that the next sweep frees.
//!
//! The first chunk creates the session before writing any byte (with what the backend opens for it,
//! `BlobStore::begin`: S3's multipart upload), so a crash never leaves bytes that no session leads to
//! (the local store flushes the creation with the first chunk's commit, and removes at start a partial
//! file whose session a crash lost: `adapters::local::recover`), and a user over quota costs no chunk
//! write.

use std::time::Instant;

use time::OffsetDateTime;

use super::auth::require_user;
use super::form::{multipart_parts, Fields};
use super::multipart::Part;
use super::{response, Request, Response};
use crate::app::App;
use crate::domain::sniff::sniff;
use crate::domain::time_fmt::rfc3339_millis;
use crate::domain::upload::{parse_upload_id, ChunkPlan, LastChunk, UploadSession};
use crate::domain::{ApiError, ContentRange, StoreError};
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

    let (session, plan, _exclusive) = match Fields::from_parts(&parts).get("upload_id") {
        None => {
            let (session, plan) = start(app, &user, range, file, now).await?;
            (session, plan, None)
        }
        Some(id) => {
            // Held until the commit, where the backend needs it (the local one).
            let exclusive = app.blobs.exclusive(&parse_upload_id(id)?).await;
            let session = app.own_upload(id, &user).await?;
            if let Some(last) = session.repeated_chunk(range.as_ref(), len, now) {
                return repeated(&session, last.clone(), file.data.clone()).await;
            }
            let plan = resume(&session, range, len, now)?;
            (session, plan, exclusive)
        }
    };
    write_and_commit(app, session, &plan, file.data.clone()).await
}

/// Steps (2) and (3) against the session as read.
async fn write_and_commit(
    app: &App,
    read: UploadSession,
    plan: &ChunkPlan,
    data: bytes::Bytes,
) -> Result<Response, ApiError> {
    let (session, write, recoverable) = match app.blobs.write_hashed(&read, plan, &data).await {
        Some(Ok(done)) => (done.session, done.write, done.recoverable),
        Some(Err(e)) => return Err(ApiError::Internal(e.context("writing the chunk"))),
        None => hash_while_writing(app, &read, plan, data).await?,
    };
    let sealed = write.sealed_part.as_ref().map(|(part, _)| part);
    let committed = match sealed {
        // Kept beside the bytes and flushed with them: the commit needs no flush of its own. (Such a
        // backend seals no parts; a sealed part always goes through `commit_chunk`.)
        None if recoverable => {
            app.uploads
                .put_upload_deferred(&session, Some(read.version))
                .await
        }
        _ => {
            app.uploads
                .commit_chunk(&session, read.version, sealed)
                .await
        }
    };
    match committed {
        Ok(()) => app.metrics.record(Event::ChunkStored { bytes: plan.len }),
        Err(StoreError::Conflict) => {
            // Another request moved the upload on (or the sweep removed it) since we read it: what
            // this attempt wrote is its own, and nothing refers to it.
            abandon(app, &read, write).await;
            return Err(StoreError::Conflict.into());
        }
        // Whether the commit landed is unknown: leave what was written (it may be referred to now).
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = app.blobs.after_commit(&session, &read.staging, write).await {
        // The chunk is committed; what is left undone is repaired when the upload completes.
        tracing::warn!(upload_id = %session.id, error = format!("{e:#}"), "could not finish the chunk's write after its commit");
    }
    Ok(accepted(&session))
}

/// Step (2) where the backend writes remotely: the MD5 moves forward on a blocking thread while the
/// bytes are written (one waits on the CPU, the other on storage, so a chunk costs the longer of the
/// two rather than their sum), then the chunk is made durable (`BlobStore::persist_progress`: with
/// its session where the backend keeps it beside the bytes, then the commit needs no flush).
async fn hash_while_writing(
    app: &App,
    read: &UploadSession,
    plan: &ChunkPlan,
    data: bytes::Bytes,
) -> Result<(UploadSession, crate::ports::ChunkWrite, bool), ApiError> {
    let hashing = {
        let (md5, data) = (read.md5.clone(), data.clone());
        tokio::task::spawn_blocking(move || md5.advanced(&data))
    };
    let written = app.blobs.write_chunk(read, plan, data).await;
    let md5 = hashing
        .await
        .map_err(|e| anyhow::Error::from(e).context("hashing the chunk"))
        .and_then(|r| r);
    let (write, md5) = match (written, md5) {
        (Ok(write), Ok(md5)) => (write, md5),
        (Err(e), _) => return Err(ApiError::Internal(e.context("writing the chunk"))),
        (Ok(write), Err(e)) => {
            abandon(app, read, write).await;
            return Err(ApiError::Internal(e.context("hashing the chunk")));
        }
    };
    let session = read.accepted(plan, md5, write.staging.clone());
    match app.blobs.persist_progress(&session, plan).await {
        Ok(recoverable) => Ok((session, write, recoverable)),
        Err(e) => {
            abandon(app, read, write).await;
            Err(ApiError::Internal(e.context("flushing the chunk")))
        }
    }
}

/// Best effort: what a losing or failed attempt leaves is garbage for completion, the sweep or the
/// bucket's lifecycle.
async fn abandon(app: &App, read: &UploadSession, write: crate::ports::ChunkWrite) {
    if let Err(e) = app.blobs.abandon(read, write).await {
        tracing::warn!(upload_id = %read.id, error = format!("{e:#}"), "could not remove what a lost chunk attempt wrote");
    }
}

/// The first chunk: identify the content, check it may be uploaded, create the session and count it
/// against the user's quota of unfinished uploads (429 beyond it). Nobody else knows its id until this
/// request answers, so nobody races its first commit.
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
    session.staging = app.blobs.begin(&session).await?;
    if let Err(e) = app
        .uploads
        .create_upload(&session, &app.limits.user_quota)
        .await
    {
        // Over the quota (or failed): nothing must stay open for a session that does not exist.
        if let Err(d) = app.blobs.discard(&session).await {
            tracing::warn!(upload_id = %session.id, error = format!("{d:#}"), "could not free a refused upload");
        }
        return Err(e.into());
    }
    Ok((session, plan))
}

/// A later chunk: the caller's upload, receiving, at this offset. A lease only a request of an older
/// version can have taken (chunks take none now; completion's upload is no longer receiving) is
/// respected until it runs out.
fn resume(
    session: &UploadSession,
    range: Option<ContentRange>,
    len: u64,
    now: OffsetDateTime,
) -> Result<ChunkPlan, ApiError> {
    let plan = session.plan_chunk(range, len, now)?;
    if session.lease_active(now) {
        return Err(ApiError::Conflict(
            "a chunk of this upload is being written right now; retry shortly".into(),
        ));
    }
    Ok(plan)
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
