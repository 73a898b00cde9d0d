//! Upload bytes in S3, merged from small chunks into multipart parts (DESIGN.md, "Facts that decide
//! the data path").
//!
//! Chunks arrive small (200 KB from the official client, at most about 4.5 MB through Lambda) but every
//! S3 part except the last must be at least 5 MiB, so a chunk can never be a part by itself. Each chunk
//! is therefore staged as its own object (`staging/<upload_id>/<offset>`), and once the staged bytes
//! reach the part size they are read back once and written as one part: each byte is written twice and
//! read once, instead of tusd's rewrite of one growing object with every chunk. The last chunk finishes
//! the last part, so completing is only CompleteMultipartUpload.
//!
//! A file that fits in one part is a multipart upload of one part too, although one PutObject at its
//! last chunk would save a request: the object must not exist before completion has checked its MD5,
//! because `media/` is served by the CDN (`domain::keys`) and an unverified object there would be
//! readable by anyone holding its URL. A multipart upload is invisible until CompleteMultipartUpload.
//! The object's headers (`ObjectHeaders`: type, cache control, download name) are given to the request
//! that creates it, so it never exists without them.
//!
//! A photo (`image_metadata::applies`) is assembled elsewhere: its multipart upload is opened at a
//! private key under its staging prefix (`assembly_key`), because its metadata must be stripped before
//! anything under `media/` exists (issue 14: GPS positions). `finish` completes it there, reads it back
//! (at most `max_image_bytes`, admission's limit for images), strips it (`image_metadata`) and writes
//! the final object with one PutObject, with its headers. A retry after a crash anywhere in between
//! finds the final object (PutObject is atomic, so it is whole) or redoes the steps, which write the
//! same bytes; the assembled object goes with the staging prefix once the final one exists.
//!
//! Crash safety comes from never destroying what the committed session refers to: `write_chunk` only
//! writes objects whose names are fixed by the chunk's offset (a retry overwrites the same object or
//! part number) and that the committed session cannot refer to yet; staged chunks are deleted in
//! `after_commit`, once the session that no longer needs them is stored.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::AwsConfig;
use crate::domain::image_metadata::{self, MetadataPolicy};
use crate::domain::upload::{
    ChunkPlan, PartRecord, StagedChunk, StagingState, UploadSession, UploadStatus,
};
use crate::domain::ObjectHeaders;
use crate::ports::BlobStore;

/// S3 allows at most 10,000 parts; part sizes grow for files that would need more.
const MAX_PARTS: u64 = 10_000;
/// More staged chunks than this are compacted into one staged object, so that the session item (at
/// most 400 KB in DynamoDB) stays small even if a client sends tiny chunks. With the official client's
/// 200 KB chunks and 5 MiB parts at most 26 chunks are ever staged, so this never happens there.
pub const MAX_STAGED: usize = 256;
/// Staged chunks read back in parallel when merging.
const READ_CONCURRENCY: usize = 16;
/// DeleteObjects takes at most 1000 keys.
const DELETE_BATCH: usize = 1000;
/// The validity asked for a presigned URL: the longest S3 allows (SigV4: 7 days). What a URL really
/// gets is less: one signed with temporary credentials stops working when they expire, whatever it
/// asks, and on Lambda those are the function's role session, whose remaining life is not documented
/// (AWS: services that assume a role "don't necessarily comply with the role's session duration
/// settings") and is hours at most, possibly minutes. Hence presigned URLs only for private deployments
/// whose clients fetch the Media again before showing it; template.yaml serves through CloudFront.
const PRESIGN_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
    part_size: u64,
    public_base_url: Option<String>,
}

/// The SDK error, kept typed for `{:#}` and downcasting, with what we were doing.
fn sdk<E, R>(what: String) -> impl FnOnce(SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| anyhow::Error::new(e).context(what)
}

/// The prefix under which all staged chunks of one upload live; discard deletes by this prefix.
pub fn staging_prefix(upload_id: &str) -> String {
    format!("staging/{upload_id}/")
}

/// One staged chunk. Zero-padded so that keys sort by offset and a retry of the same offset hits the
/// same key.
fn staged_key(upload_id: &str, offset: u64) -> String {
    format!("{}{offset:020}", staging_prefix(upload_id))
}

/// Where the multipart upload of `session` is assembled: a photo, whose metadata `finish` strips, under
/// its staging prefix (never served, removed with the staged chunks); anything else at its final key,
/// so that completing stays one CompleteMultipartUpload whatever the file's size. Decided by the
/// sniffed type alone, which every chunk and the completion agree on (the setting may change between
/// them: a photo stored as uploaded is then copied from here once).
fn assembly_key(session: &UploadSession) -> String {
    if image_metadata::applies(&session.content.mime) {
        format!(
            "{}assembled.{}",
            staging_prefix(&session.id),
            session.content.extension()
        )
    } else {
        session.object_key()
    }
}

/// Compacted staged chunks covering `[start, end)`. Distinct from every key the committed session can
/// refer to (its compacted objects end at or before the committed offset, this one after it).
fn compacted_key(upload_id: &str, start: u64, end: u64) -> String {
    format!("{}{start:020}-{end:020}", staging_prefix(upload_id))
}

impl S3Blobs {
    pub fn new(client: Client, cfg: &AwsConfig) -> Self {
        S3Blobs {
            client,
            bucket: cfg.bucket.clone(),
            part_size: cfg.part_size,
            public_base_url: cfg
                .public_base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The part size for a file of `total` bytes: the configured one, or larger if the file would
    /// otherwise need more than 10,000 parts. Fixed by `total`, so every chunk of an upload agrees.
    fn part_size_for(&self, total: u64) -> u64 {
        self.part_size.max(total.div_ceil(MAX_PARTS - 1))
    }

    /// A staged chunk: never served, so no headers.
    async fn put_staged(&self, key: &str, body: Bytes) -> anyhow::Result<()> {
        self.put(key, body, None).await
    }

    /// A finished object, created with the headers it is served with.
    async fn put_finished(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> anyhow::Result<()> {
        self.put(key, body, Some(headers)).await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: Option<&ObjectHeaders>,
    ) -> anyhow::Result<()> {
        let len = body.len();
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        if let Some(h) = headers {
            req = req
                .content_type(&h.content_type)
                .cache_control(&h.cache_control)
                .set_content_disposition(h.content_disposition.clone());
        }
        req.send()
            .await
            .map_err(sdk(format!("S3 PutObject {key} ({len} bytes)")))?;
        Ok(())
    }

    async fn get(client: Client, bucket: String, key: String) -> anyhow::Result<Bytes> {
        let out = client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(sdk(format!("S3 GetObject {key}")))?;
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading S3 object {key}"))?;
        Ok(body.into_bytes())
    }

    /// The staged chunks (read back in parallel) followed by `data`, as one buffer. Without staged
    /// chunks, `data` itself: no copy.
    async fn gather(&self, staged: &[StagedChunk], data: Bytes) -> anyhow::Result<Bytes> {
        if staged.is_empty() {
            return Ok(data);
        }
        let mut pieces: Vec<Option<Bytes>> = vec![None; staged.len()];
        for (batch_no, batch) in staged.chunks(READ_CONCURRENCY).enumerate() {
            let mut reads = JoinSet::new();
            for (i, chunk) in batch.iter().enumerate() {
                let (client, bucket, key) =
                    (self.client.clone(), self.bucket.clone(), chunk.key.clone());
                let index = batch_no * READ_CONCURRENCY + i;
                reads.spawn(async move { (index, Self::get(client, bucket, key).await) });
            }
            while let Some(done) = reads.join_next().await {
                let (index, bytes) = done.context("a staged chunk read panicked")?;
                pieces[index] = Some(bytes?);
            }
        }
        let total = staged.iter().map(|c| c.len).sum::<u64>() + data.len() as u64;
        let mut buf = BytesMut::with_capacity(usize::try_from(total)?);
        for (chunk, piece) in staged.iter().zip(pieces) {
            let piece = piece.ok_or_else(|| anyhow!("staged chunk {} was not read", chunk.key))?;
            // A staged object of the wrong size means the state and the bucket disagree: never build
            // a part from it.
            ensure!(
                piece.len() as u64 == chunk.len,
                "staged chunk {} has {} bytes, expected {}",
                chunk.key,
                piece.len(),
                chunk.len
            );
            buf.extend_from_slice(&piece);
        }
        buf.extend_from_slice(&data);
        Ok(buf.freeze())
    }

    async fn create_multipart(&self, key: &str, headers: &ObjectHeaders) -> anyhow::Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_disposition(headers.content_disposition.clone())
            .send()
            .await
            .map_err(sdk(format!("S3 CreateMultipartUpload {key}")))?;
        out.upload_id
            .ok_or_else(|| anyhow!("CreateMultipartUpload {key} returned no upload id"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> anyhow::Result<String> {
        let len = body.len();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(i32::try_from(number)?)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(sdk(format!(
                "S3 UploadPart {number} of {key} ({len} bytes)"
            )))?;
        out.e_tag
            .ok_or_else(|| anyhow!("UploadPart {number} of {key} returned no ETag"))
    }

    /// The object's size, or `None` if there is none.
    async fn head(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length.unwrap_or(0).try_into()?)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(sdk(format!("S3 HeadObject {key}"))(e)),
        }
    }

    /// Every multipart upload in progress for exactly `key`, recorded or not.
    /// CompleteMultipartUpload with the recorded parts; an upload an earlier attempt already completed
    /// (it crashed before recording it) is recognised by the object being there with the full size.
    async fn complete_multipart(
        &self,
        session: &UploadSession,
        key: &str,
        upload_id: &str,
    ) -> anyhow::Result<()> {
        let st = &session.staging;
        let recorded: u64 = st.parts.iter().map(|p| p.size).sum();
        ensure!(
            recorded == session.total,
            "the recorded parts of {key} hold {recorded} bytes, expected {}",
            session.total
        );
        let parts = st
            .parts
            .iter()
            .map(|p| {
                Ok(CompletedPart::builder()
                    .part_number(i32::try_from(p.number)?)
                    .e_tag(&p.etag)
                    .build())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload")
                    && self.head(key).await? == Some(session.total) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk(format!("S3 CompleteMultipartUpload {key}"))(e)),
        }
    }

    /// The photo assembled at `assembly` becomes `key`, stripped of its metadata if `metadata` says
    /// so, in one PutObject with its headers: `key` never holds anything else.
    async fn finish_assembled(
        &self,
        session: &UploadSession,
        key: &str,
        assembly: &str,
        metadata: MetadataPolicy,
    ) -> anyhow::Result<u64> {
        // Written by an earlier attempt that crashed before recording it (PutObject is atomic: the
        // object is there whole, or not at all).
        if let Some(size) = self.head(key).await? {
            return Ok(size);
        }
        let Some(upload_id) = &session.staging.multipart_upload_id else {
            bail!("{assembly} was never assembled: the last chunk did not arrive");
        };
        // A photo whose upload began before photos were assembled privately (a deploy in the middle
        // of it) has its multipart upload at the final key: completed there, it is readable
        // unstripped until the PutObject below replaces it. Asked first rather than inferred from an
        // error, because S3 compatibles differ on completing an upload under another key (moto
        // completes it at its own key); one listing of one key per photo.
        let source = if self.multipart_uploads(key).await?.contains(upload_id) {
            tracing::warn!(
                key,
                "completing a photo upload opened at its final key by an earlier version"
            );
            key
        } else {
            assembly
        };
        self.complete_multipart(session, source, upload_id).await?;
        // One byte more than the upload tells a wrong object from a whole one; images are at most
        // `max_image_bytes` (admission), so this is bounded.
        let body = self.read_head(source, session.total + 1).await?;
        ensure!(
            body.len() as u64 == session.total,
            "{source} has {} bytes, expected {}",
            body.len(),
            session.total
        );
        let body = match image_metadata::apply(metadata, &session.content.mime, &body) {
            Some(stripped) => Bytes::from(stripped),
            None => body,
        };
        let size = body.len() as u64;
        self.put_finished(key, body, &session.object_headers())
            .await?;
        Ok(size)
    }

    /// After the object is whole, nothing of the upload may linger (and be billed until the bucket's
    /// lifecycle rules): multipart uploads opened by writes that crashed before their commit, and staged
    /// chunks whose merge committed but whose `after_commit` never ran (the commit's answer was lost).
    /// Best effort: a failure here leaves only garbage, which the lifecycle rules remove.
    /// `key` is where the multipart uploads were opened (`assembly_key`).
    async fn tidy_after_finish(&self, session: &UploadSession, key: &str) {
        let strays = match self.multipart_uploads(key).await {
            Ok(strays) => strays,
            Err(e) => {
                tracing::warn!(
                    key,
                    error = format!("{e:#}"),
                    "could not list stray multipart uploads"
                );
                Vec::new()
            }
        };
        for stray in strays {
            if let Err(e) = self.abort(key, &stray).await {
                tracing::warn!(
                    key,
                    error = format!("{e:#}"),
                    "could not abort a stray multipart upload"
                );
            }
        }
        if let Err(e) = self.delete_prefix(&staging_prefix(&session.id)).await {
            tracing::warn!(
                key,
                error = format!("{e:#}"),
                "could not delete leftover staged chunks"
            );
        }
    }

    async fn multipart_uploads(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(sdk(format!("S3 ListMultipartUploads {key}")))?;
            ids.extend(
                out.uploads()
                    .iter()
                    .filter(|u| u.key() == Some(key))
                    .filter_map(|u| u.upload_id().map(str::to_string)),
            );
            if out.is_truncated() != Some(true) {
                return Ok(ids);
            }
            key_marker = out.next_key_marker;
            id_marker = out.next_upload_id_marker;
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(ids);
            }
        }
    }

    /// Aborting an upload that is already gone (aborted or completed before) is success.
    async fn abort(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_upload()) => Ok(()),
            Err(e) => Err(sdk(format!("S3 AbortMultipartUpload {key}"))(e)),
        }
    }

    async fn delete_keys(&self, keys: Vec<String>) -> anyhow::Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(sdk(format!("S3 DeleteObjects ({} keys)", batch.len())))?;
            if let Some(err) = out.errors().first() {
                bail!(
                    "S3 DeleteObjects could not delete {} of {} keys, e.g. {:?}: {:?} {:?}",
                    out.errors().len(),
                    batch.len(),
                    err.key(),
                    err.code(),
                    err.message()
                );
            }
        }
        Ok(())
    }

    /// Deletes every object under `prefix`, whatever any record says is there.
    async fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(sdk(format!("S3 ListObjectsV2 {prefix}")))?;
            let keys: Vec<String> = out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect();
            if !keys.is_empty() {
                self.delete_keys(keys).await?;
            }
            match out.next_continuation_token {
                Some(t) if out.is_truncated == Some(true) => token = Some(t),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<StagingState> {
        ensure!(
            data.len() as u64 == plan.len,
            "the chunk has {} bytes but its plan says {}",
            data.len(),
            plan.len
        );
        let st = &session.staging;
        let staged_bytes: u64 = st.staged.iter().map(|c| c.len).sum();
        let mut next = st.clone();

        if plan.is_last() || staged_bytes + plan.len >= self.part_size_for(session.total) {
            // Merge: the staged chunks and this one become one part (for a small file, its only
            // one). The staged objects stay until `after_commit`: the committed session still
            // refers to them.
            let body = self.gather(&st.staged, data).await?;
            let key = assembly_key(session);
            next.staged.clear();
            let upload_id = match &st.multipart_upload_id {
                Some(id) => id.clone(),
                // A crash before the commit leaves this upload unrecorded; `discard` finds it by
                // listing, and `finish` aborts it once another one completed.
                None => {
                    self.create_multipart(&key, &session.object_headers())
                        .await?
                }
            };
            let number = u32::try_from(st.parts.len() + 1)?;
            let size = body.len() as u64;
            let etag = self.upload_part(&key, &upload_id, number, body).await?;
            next.multipart_upload_id = Some(upload_id);
            next.parts.push(PartRecord { number, etag, size });
        } else if st.staged.len() + 1 >= MAX_STAGED {
            // Too many tiny chunks: fold them and this one into one staged object.
            let start = st.staged.first().map_or(plan.start, |c| c.offset);
            let end = plan.start + plan.len;
            let body = self.gather(&st.staged, data).await?;
            let key = compacted_key(&session.id, start, end);
            self.put_staged(&key, body).await?;
            next.staged = vec![StagedChunk {
                key,
                offset: start,
                len: end - start,
            }];
        } else {
            let key = staged_key(&session.id, plan.start);
            self.put_staged(&key, data).await?;
            next.staged.push(StagedChunk {
                key,
                offset: plan.start,
                len: plan.len,
            });
        }
        Ok(next)
    }

    async fn after_commit(
        &self,
        before: &StagingState,
        after: &StagingState,
    ) -> anyhow::Result<()> {
        let kept: BTreeSet<&str> = after.staged.iter().map(|c| c.key.as_str()).collect();
        let freed: Vec<String> = before
            .staged
            .iter()
            .filter(|c| !kept.contains(c.key.as_str()))
            .map(|c| c.key.clone())
            .collect();
        if freed.is_empty() {
            return Ok(());
        }
        self.delete_keys(freed).await
    }

    async fn finish(
        &self,
        session: &UploadSession,
        key: &str,
        metadata: MetadataPolicy,
    ) -> anyhow::Result<u64> {
        // The bytes were written to `object_key()` (or assembled for it) as they arrived; a
        // multipart upload cannot move.
        ensure!(
            key == session.object_key(),
            "S3 uploads are written to {}, not {key}",
            session.object_key()
        );
        let assembly = assembly_key(session);
        let size = if assembly != key {
            self.finish_assembled(session, key, &assembly, metadata)
                .await?
        } else {
            match &session.staging.multipart_upload_id {
                // Written whole by PutObject with the last chunk: how versions before one-part
                // multipart uploads stored small files; sessions they left are still completed.
                None => match self.head(key).await? {
                    Some(size) if size == session.total => {}
                    Some(size) => bail!("{key} has {size} bytes, expected {}", session.total),
                    None => bail!("{key} was never written: the last chunk did not arrive"),
                },
                Some(upload_id) => self.complete_multipart(session, key, upload_id).await?,
            }
            session.total
        };
        self.tidy_after_finish(session, &assembly).await;
        Ok(size)
    }

    async fn discard(&self, session: &UploadSession) -> anyhow::Result<()> {
        let key = session.object_key();
        let assembly = assembly_key(session);
        let mut uploads: BTreeSet<String> = self
            .multipart_uploads(&assembly)
            .await?
            .into_iter()
            .collect();
        uploads.extend(session.staging.multipart_upload_id.clone());
        for upload_id in &uploads {
            self.abort(&assembly, upload_id).await?;
        }
        self.delete_prefix(&staging_prefix(&session.id)).await?;
        // A session that reached `Completing` may already have produced the object that a media
        // record points to: never delete that one, whatever happens to the session.
        if !matches!(
            session.status,
            UploadStatus::Completing { .. } | UploadStatus::Completed { .. }
        ) {
            self.delete_object(&key).await?;
        }
        Ok(())
    }

    async fn read_head(&self, key: &str, len: u64) -> anyhow::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", len - 1))
            .send()
            .await
            .map_err(sdk(format!("S3 GetObject {key} (first {len} bytes)")))?;
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading S3 object {key}"))?
            .into_bytes();
        // Servers ignoring the range would hand us the whole object; never return more than asked.
        Ok(body.slice(..body.len().min(usize::try_from(len).unwrap_or(usize::MAX))))
    }

    async fn put_object(&self, key: &str, data: Bytes, mime: &str) -> anyhow::Result<()> {
        self.put_finished(key, data, &ObjectHeaders::inline(mime))
            .await
    }

    async fn delete_object(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk(format!("S3 DeleteObject {key}")))?;
        Ok(())
    }

    async fn object_url(&self, key: &str) -> anyhow::Result<String> {
        if let Some(base) = &self.public_base_url {
            return Ok(format!("{base}/{key}"));
        }
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(PresigningConfig::expires_in(PRESIGN_VALIDITY)?)
            .await
            .map_err(sdk(format!("presigning a GET of {key}")))?;
        Ok(presigned.uri().to_string())
    }
}
