//! Upload bytes in S3, merged from small chunks into multipart parts (DESIGN.md, "Facts that decide
//! the data path").
//!
//! Chunks arrive small (200 KB from the official client, at most about 4.5 MB through Lambda) but every
//! S3 part except the last must be at least 5 MiB, so a chunk can never be a part by itself. Each chunk
//! is therefore staged as its own object, and once the staged bytes reach the part size they are read
//! back once and written as one part: each byte is written twice and read once, instead of tusd's
//! rewrite of one growing object with every chunk. The last chunk finishes the last part, so completing
//! is only CompleteMultipartUpload.
//!
//! A file that fits in one part is a multipart upload of one part too, although one PutObject would
//! save a request: the object must not exist before completion has checked its MD5, because `media/`
//! is served by the CDN (`domain::keys`) and an unverified object there would be readable by anyone
//! holding its URL. A multipart upload is invisible until CompleteMultipartUpload. The object's headers
//! (`ObjectHeaders`: type, cache control, download name) are given to the request that creates it, so
//! it never exists without them.
//!
//! A photo (`image_metadata::applies`) is assembled elsewhere: its multipart upload is opened at a
//! private key under its staging prefix (`assembly_key`), because its metadata must be stripped before
//! anything under `media/` exists (issue 14: GPS positions). `finish` completes it there, reads it back
//! (at most `max_image_bytes`, admission's limit for images), strips it (`image_metadata`) and writes
//! the final object with one PutObject, with its headers. A retry after a crash anywhere in between
//! finds the final object (PutObject is atomic, so it is whole) or redoes the steps, which write the
//! same bytes; the assembled object goes with the staging prefix once the final one exists.
//!
//! # Keys
//! - `staging/<upload_id>/<offset>-<token>`: one staged chunk (or several compacted into one), under a
//!   random token of the attempt that wrote it. Never overwritten: two attempts at the same offset
//!   (a retry, a client sending twice, with the same bytes or not) write two objects, and the commit
//!   that wins says which one the upload is made of.
//! - the object key (`UploadSession::object_key`), or for a photo its assembly key (above): one
//!   multipart upload, opened with the session (`begin`, before the session is first stored, when
//!   nobody else knows the upload's id), so no attempt at a chunk ever opens one that nothing records. A crash between the two leaves an empty
//!   multipart upload (free, aborted by the lifecycle rule after a day) and no session. Its key is
//!   recorded in the session (`StagingState::multipart_key`) and used from then on, never worked out
//!   again: the rule that chose it may change under a deploy in the middle of the upload. A session of
//!   an earlier version, which did not record it, has it worked out once (`legacy_multipart_key`) by
//!   its next chunk, whose commit records it.
//!
//! # No lease: each attempt writes only what is its own
//! A chunk costs one GetItem, one PutObject and one conditional PutItem (the commit, on the version
//! it read; for the chunk that fills a part, a TransactWriteItems that also records the part). A
//! losing attempt has only written a staged object nobody refers to: it deletes it
//! (`abandon`, best effort); a crashed one leaves it to `finish`, `discard` (both delete the whole
//! staging prefix) or the bucket's lifecycle rule on `staging/`.
//!
//! Parts are the one place where attempts could collide: a part's number is fixed by its place in
//! the file, and an UploadPart of a losing attempt, with other bytes, would replace the winner's
//! part. So a part is uploaded only after the commit that records it has won, and only from what that
//! commit made immutable: the chunk that fills a part is staged like every other (so the part is
//! made of committed staged objects alone, its `sources`), the part's bytes are gathered and hashed
//! before the commit, and the commit records the part with the ETag it must get (S3's ETag of a part
//! is the quoted MD5 of its bytes, for unencrypted and SSE-S3 buckets). After the commit the winner
//! uploads it (`after_commit`); anyone else who ever uploads that part number (a repair) uploads the
//! same bytes, from the same sources.
//!
//! A crash between the commit and the UploadPart (or a failed UploadPart) leaves a recorded part that
//! is not in S3. Its record keeps its sources, which stay staged, until the upload completes: `finish`
//! completes with the recorded ETags and, if S3 refuses them (a part missing, or ETags that are not
//! MD5s in a KMS bucket), lists the parts, uploads again from its sources each one missing, and
//! completes with the listed ETags; only then is the staging prefix deleted. The part records are
//! items of their own (`UploadStore::commit_chunk`), not in the session, so keeping every part's
//! sources until completion costs the session nothing: parts are never confirmed along the way
//! (earlier versions listed the parts every few parts to forget sources and keep the session small).
//! Staged objects are deleted with the whole prefix at the end, not per part: one request per upload
//! instead of one per part, at the price of keeping the staged bytes until completion.
//!
//! Completion racing a chunk: completion needs every byte committed, and once they are, no chunk can
//! write anything (the only write left is the last chunk's own part upload after its commit, the
//! same bytes a repair would upload). An expired upload cannot be completed, so the sweep racing a
//! chunk in flight only frees bytes that can no longer become an object; a chunk committing on a
//! session the sweep has removed loses its commit and abandons its object.
//!
//! Expiry and the lifecycle rules (template.yaml): staged objects expire after 2 days and multipart
//! uploads are aborted 1 day after they were opened (rounded up to midnight UTC), while an upload can
//! only be completed before its session expires, 24 hours after it was created, and its multipart
//! upload is opened after that moment: the rules never take what a completable upload needs.
//!
//! Cost, per chunk of the official client's 204800 bytes (26 to a 5 MiB part): one PutObject, and per
//! part 25 GetObject and one UploadPart, so 2.0 S3 requests and 2.0 bytes written per byte; per upload
//! CreateMultipartUpload, CompleteMultipartUpload, one ListObjectsV2 and one DeleteObjects per 1000
//! staged objects; ListParts only to repair a part at completion.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError;
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
use crate::ports::{BlobStore, ChunkWrite};

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

/// One staged object starting at `offset`, written by one attempt: `token` is its own, so that no
/// other attempt ever writes this key.
fn staged_key(upload_id: &str, offset: u64, token: &str) -> String {
    staged_object(upload_id, &format!("{offset}-{token}"))
}

/// The key of the staged object `name` (`StagedChunk::name`, a part's `sources`) of an upload.
fn staged_object(upload_id: &str, name: &str) -> String {
    format!("{}{name}", staging_prefix(upload_id))
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

/// Where `session`'s multipart upload is, once known: as `begin` (or the first chunk after a deploy,
/// `legacy_multipart_key`) recorded it; else at the object's final key, where every version opened
/// it before photos were assembled apart.
fn multipart_key(session: &UploadSession) -> String {
    session
        .staging
        .multipart_key
        .clone()
        .unwrap_or_else(|| session.object_key())
}

/// A fresh token for one attempt's staged object (64 random bits).
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// A staged object's name below the upload's staging prefix, as a part's `sources` keep it.
fn source_name(upload_id: &str, key: &str) -> String {
    key.strip_prefix(&staging_prefix(upload_id))
        .unwrap_or(key)
        .to_string()
}

/// ETags compared as values: S3 quotes them, some listings may not.
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// The ETag S3 gives a part of these bytes (unencrypted or SSE-S3): their quoted MD5.
fn md5_etag(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("\"{}\"", hex::encode(Md5::digest(body)))
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

    /// The objects `keys`, read in parallel (`READ_CONCURRENCY` at a time), in order.
    async fn read_all(&self, keys: &[String]) -> anyhow::Result<Vec<Bytes>> {
        let mut pieces: Vec<Option<Bytes>> = vec![None; keys.len()];
        for (batch_no, batch) in keys.chunks(READ_CONCURRENCY).enumerate() {
            let mut reads = JoinSet::new();
            for (i, key) in batch.iter().enumerate() {
                let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), key.clone());
                let index = batch_no * READ_CONCURRENCY + i;
                reads.spawn(async move { (index, Self::get(client, bucket, key).await) });
            }
            while let Some(done) = reads.join_next().await {
                let (index, bytes) = done.context("a staged chunk read panicked")?;
                pieces[index] = Some(bytes?);
            }
        }
        keys.iter()
            .zip(pieces)
            .map(|(key, piece)| piece.ok_or_else(|| anyhow!("staged chunk {key} was not read")))
            .collect()
    }

    /// The staged chunks (read back in parallel) followed by `data`, as one buffer. Without staged
    /// chunks, `data` itself: no copy.
    async fn gather(
        &self,
        upload_id: &str,
        staged: &[StagedChunk],
        data: Bytes,
    ) -> anyhow::Result<Bytes> {
        if staged.is_empty() {
            return Ok(data);
        }
        let keys: Vec<String> = staged
            .iter()
            .map(|c| staged_object(upload_id, &c.name))
            .collect();
        let pieces = self.read_all(&keys).await?;
        let total = staged.iter().map(|c| c.len).sum::<u64>() + data.len() as u64;
        let mut buf = BytesMut::with_capacity(usize::try_from(total)?);
        for (chunk, piece) in staged.iter().zip(pieces) {
            // A staged object of the wrong size means the state and the bucket disagree: never build
            // a part from it.
            ensure!(
                piece.len() as u64 == chunk.len,
                "staged chunk {} has {} bytes, expected {}",
                chunk.name,
                piece.len(),
                chunk.len
            );
            buf.extend_from_slice(&piece);
        }
        buf.extend_from_slice(&data);
        Ok(buf.freeze())
    }

    /// A recorded part's bytes, read again from its sources.
    async fn part_from_sources(&self, upload_id: &str, part: &PartRecord) -> anyhow::Result<Bytes> {
        ensure!(
            part.is_unconfirmed(),
            "part {} is missing and has no sources to write it again from",
            part.number
        );
        let prefix = staging_prefix(upload_id);
        let keys: Vec<String> = part
            .sources
            .iter()
            .map(|n| format!("{prefix}{n}"))
            .collect();
        let pieces = self.read_all(&keys).await?;
        let mut buf = BytesMut::with_capacity(usize::try_from(part.size)?);
        for piece in pieces {
            buf.extend_from_slice(&piece);
        }
        ensure!(
            buf.len() as u64 == part.size,
            "the sources of part {} hold {} bytes, expected {}",
            part.number,
            buf.len(),
            part.size
        );
        Ok(buf.freeze())
    }

    /// The parts S3 holds for the multipart upload, as number -> (ETag, size).
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> anyhow::Result<BTreeMap<u32, (String, u64)>> {
        let mut out = BTreeMap::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(sdk(format!("S3 ListParts {key}")))?;
            for p in page.parts() {
                let (Some(n), Some(etag)) = (p.part_number(), p.e_tag()) else {
                    continue;
                };
                let size = u64::try_from(p.size().unwrap_or(0))?;
                out.insert(u32::try_from(n)?, (etag.to_string(), size));
            }
            match page.next_part_number_marker {
                Some(m) if page.is_truncated == Some(true) => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// Makes sure every part in `parts` is stored with its recorded bytes: a part S3 lists with the
    /// recorded size and ETag is kept; any other is uploaded again from its sources and recorded (in
    /// `parts`, for the completion) with the ETag S3 answers. Safe to run by anyone at any time,
    /// racing anyone: a part is only ever uploaded from the sources its committed record names, so
    /// every upload of one part number writes the same bytes. (In a bucket whose ETags are not MD5s,
    /// SSE-KMS, every unconfirmed part is uploaded once more here: slower, never wrong.)
    async fn confirm_parts(
        &self,
        session: &UploadSession,
        upload_id: &str,
        // Where the multipart upload is (`multipart_key`).
        key: &str,
        parts: &mut [PartRecord],
    ) -> anyhow::Result<()> {
        let listed = self.list_parts(key, upload_id).await?;
        for part in parts.iter_mut() {
            match listed.get(&part.number) {
                Some((etag, size)) if *size == part.size && same_etag(etag, &part.etag) => {}
                Some((etag, _)) if !part.is_unconfirmed() => bail!(
                    "part {} of {key} has ETag {etag}, the session recorded {}, and no sources",
                    part.number,
                    part.etag
                ),
                _ => {
                    tracing::info!(
                        upload_id = %session.id,
                        part = part.number,
                        "writing a part its chunk's request did not get to write"
                    );
                    let body = self.part_from_sources(&session.id, part).await?;
                    part.etag = self.upload_part(key, upload_id, part.number, body).await?;
                }
            }
        }
        Ok(())
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

    /// CompleteMultipartUpload with the recorded parts; an upload an earlier attempt already completed
    /// (it crashed before recording it) is recognised by the object being there with the full size.
    /// If S3 refuses the recorded parts (one was never uploaded: its chunk's request died after its
    /// commit; or the bucket's ETags are not MD5s), the parts are confirmed and repaired from their
    /// sources (`confirm_parts`) and the upload is completed with the ETags S3 lists.
    async fn complete_multipart(
        &self,
        session: &UploadSession,
        parts: &[PartRecord],
        key: &str,
        upload_id: &str,
    ) -> anyhow::Result<()> {
        let recorded: u64 = parts.iter().map(|p| p.size).sum();
        ensure!(
            recorded == session.total,
            "the recorded parts of {key} hold {recorded} bytes, expected {}",
            session.total
        );
        let mut parts = parts.to_vec();
        let mut repaired = false;
        loop {
            match self.try_complete(key, upload_id, &parts).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload")
                        && self.head(key).await? == Some(session.total) =>
                {
                    return Ok(())
                }
                Err(e)
                    if !repaired
                        && e.as_service_error().and_then(|e| e.code()) != Some("NoSuchUpload") =>
                {
                    tracing::info!(upload_id = %session.id, error = %e, "completing with the listed parts");
                    self.confirm_parts(session, upload_id, key, &mut parts)
                        .await?;
                    repaired = true;
                }
                Err(e) => return Err(sdk(format!("S3 CompleteMultipartUpload {key}"))(e)),
            }
        }
    }

    async fn try_complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartRecord],
    ) -> Result<(), SdkError<CompleteMultipartUploadError, HttpResponse>> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.client
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
            .await
            .map(|_| ())
    }

    /// The photo assembled at `assembly` becomes `key`, stripped of its metadata if `metadata` says
    /// so, in one PutObject with its headers: `key` never holds anything else.
    async fn finish_assembled(
        &self,
        session: &UploadSession,
        parts: &[PartRecord],
        key: &str,
        metadata: MetadataPolicy,
    ) -> anyhow::Result<u64> {
        // Written by an earlier attempt that crashed before recording it (PutObject is atomic: the
        // object is there whole, or not at all).
        if let Some(size) = self.head(key).await? {
            // Unless the upload was opened there (or may have been: a session of an earlier version
            // without its key), where a crash between completing it and the PutObject below leaves
            // the photo as uploaded: stripped now (stripping again changes nothing).
            let at_final_key = session
                .staging
                .multipart_key
                .as_deref()
                .is_none_or(|k| k == key);
            if !at_final_key {
                return Ok(size);
            }
            let body = self.read_head(key, session.total + 1).await?;
            return match image_metadata::apply(metadata, &session.content.mime, &body) {
                Some(stripped) => {
                    let size = stripped.len() as u64;
                    self.put_finished(key, Bytes::from(stripped), &session.object_headers())
                        .await?;
                    Ok(size)
                }
                None => Ok(body.len() as u64),
            };
        }
        let Some(upload_id) = &session.staging.multipart_upload_id else {
            bail!("{key} was never assembled: the last chunk did not arrive");
        };
        let source = match &session.staging.multipart_key {
            Some(recorded) => recorded.clone(),
            None => self.legacy_multipart_key(session, upload_id).await?,
        };
        if source == key {
            // Opened at its final key by a version from before photos were assembled privately:
            // completed there, it is readable unstripped until the PutObject below replaces it.
            tracing::warn!(
                key,
                "completing a photo upload opened at its final key by an earlier version"
            );
        }
        let source = source.as_str();
        self.complete_multipart(session, parts, source, upload_id)
            .await?;
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

    /// Where the multipart upload `upload_id` of a session stored without its key (by an earlier
    /// version) was opened. Every version opened anything but a photo at its final key; a photo, the
    /// version before the key was recorded at its assembly key and versions before that at its final
    /// key. Asked rather than inferred from an error, because S3 compatibles differ on uploading to or
    /// completing an upload under another key (moto accepts both); one listing of one key, once per
    /// such photo upload (its next chunk's commit records the answer).
    async fn legacy_multipart_key(
        &self,
        session: &UploadSession,
        upload_id: &str,
    ) -> anyhow::Result<String> {
        let key = session.object_key();
        let assembly = assembly_key(session);
        if assembly == key
            || self
                .multipart_uploads(&key)
                .await?
                .iter()
                .any(|u| u == upload_id)
        {
            Ok(key)
        } else {
            Ok(assembly)
        }
    }

    /// After the object is whole, nothing of the upload may linger (and be billed until the bucket's
    /// lifecycle rules): every staged object, committed or left by attempts that lost or crashed, goes
    /// with the prefix. Multipart uploads nothing records do not arise (the only one is opened with the
    /// session, and no part is written before its commit), so none is looked for: that would cost a
    /// request per upload. Best effort: a failure leaves only garbage, which the lifecycle rules
    /// remove.
    async fn tidy_after_finish(&self, session: &UploadSession, key: &str) {
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
    /// Opens the upload's multipart upload, recorded in its session from the first version on.
    async fn begin(&self, session: &UploadSession) -> anyhow::Result<StagingState> {
        let mut staging = session.staging.clone();
        if staging.multipart_upload_id.is_none() {
            let key = assembly_key(session);
            staging.multipart_upload_id = Some(
                self.create_multipart(&key, &session.object_headers())
                    .await?,
            );
            staging.multipart_key = Some(key);
        }
        Ok(staging)
    }

    async fn write_chunk(
        &self,
        session: &UploadSession,
        plan: &ChunkPlan,
        data: Bytes,
    ) -> anyhow::Result<ChunkWrite> {
        ensure!(
            data.len() as u64 == plan.len,
            "the chunk has {} bytes but its plan says {}",
            data.len(),
            plan.len
        );
        let st = &session.staging;
        let mut write = ChunkWrite {
            staging: st.clone(),
            ..ChunkWrite::default()
        };
        let next = &mut write.staging;
        match (&st.multipart_upload_id, &st.multipart_key) {
            (Some(_), Some(_)) => {}
            // A session of an earlier version: where its upload is, worked out once and recorded by
            // this chunk's commit.
            (Some(id), None) => {
                next.multipart_key = Some(self.legacy_multipart_key(session, id).await?);
            }
            // Only sessions stored by a version that opened the multipart upload at the first merge
            // have none yet: an attempt that loses aborts its own (`abandon`), one that crashes
            // leaves an empty upload (no part is written before a commit) for the lifecycle rule.
            (None, _) => {
                let key = assembly_key(session);
                let id = self
                    .create_multipart(&key, &session.object_headers())
                    .await?;
                next.multipart_upload_id = Some(id);
                next.multipart_key = Some(key);
            }
        }
        let staged_bytes: u64 = st.staged.iter().map(|c| c.len).sum();
        let token = new_token();

        if plan.is_last() || staged_bytes + plan.len >= self.part_size_for(session.total) {
            // This chunk fills a part (or ends the file). Staged like every other, so that the part
            // is made of committed objects alone; its bytes are gathered and hashed now, and uploaded
            // by `after_commit` once the commit that records the part has won.
            let key = staged_key(&session.id, plan.start, &token);
            let (put, body) = tokio::join!(
                self.put_staged(&key, data.clone()),
                self.gather(&session.id, &st.staged, data)
            );
            put?;
            write.own_objects.push(key.clone());
            let body = body?;
            let etag = {
                let body = body.clone();
                tokio::task::spawn_blocking(move || md5_etag(&body))
                    .await
                    .context("hashing a part")?
            };
            // Recorded apart from the session, by the commit (`UploadStore::commit_chunk`).
            let number = next.part_count() + 1;
            let mut sources: Vec<String> = next.staged.iter().map(|c| c.name.clone()).collect();
            sources.push(source_name(&session.id, &key));
            next.staged.clear();
            next.parts_apart += 1;
            let part = PartRecord {
                number,
                etag,
                size: body.len() as u64,
                sources,
            };
            write.sealed_part = Some((part, body));
        } else if st.staged.len() + 1 >= MAX_STAGED {
            // Too many tiny chunks: fold them and this one into one staged object.
            let start = st.staged.first().map_or(plan.start, |c| c.offset);
            let end = plan.start + plan.len;
            let body = self.gather(&session.id, &st.staged, data).await?;
            let key = staged_key(&session.id, start, &token);
            self.put_staged(&key, body).await?;
            write.own_objects.push(key.clone());
            next.staged = vec![StagedChunk {
                name: source_name(&session.id, &key),
                offset: start,
                len: end - start,
            }];
        } else {
            let key = staged_key(&session.id, plan.start, &token);
            self.put_staged(&key, data).await?;
            write.own_objects.push(key.clone());
            next.staged.push(StagedChunk {
                name: source_name(&session.id, &key),
                offset: plan.start,
                len: plan.len,
            });
        }
        Ok(write)
    }

    /// The winner uploads the part its commit sealed. Staged objects stay until `finish` or
    /// `discard` (deleting them per part would cost a request per part; they are the sources a
    /// missing part is repaired from).
    async fn after_commit(
        &self,
        session: &UploadSession,
        _before: &StagingState,
        write: ChunkWrite,
    ) -> anyhow::Result<()> {
        let Some((part, body)) = write.sealed_part else {
            return Ok(());
        };
        let number = part.number;
        let upload_id = session
            .staging
            .multipart_upload_id
            .as_deref()
            .context("a sealed part without a multipart upload")?;
        let etag = self
            .upload_part(&multipart_key(session), upload_id, number, body)
            .await?;
        if !same_etag(&part.etag, &etag) {
            // Not an error: completion lists the parts when S3 refuses the recorded ETags.
            tracing::info!(upload_id = %session.id, part = number, etag, "S3's part ETag is not the MD5 of its bytes");
        }
        Ok(())
    }

    async fn abandon(&self, session: &UploadSession, write: ChunkWrite) -> anyhow::Result<()> {
        if let Some(id) = &write.staging.multipart_upload_id {
            if session.staging.multipart_upload_id.as_ref() != Some(id) {
                let key = write
                    .staging
                    .multipart_key
                    .clone()
                    .unwrap_or_else(|| assembly_key(session));
                self.abort(&key, id).await?;
            }
        }
        self.delete_keys(write.own_objects).await
    }

    async fn finish(
        &self,
        session: &UploadSession,
        parts: &[PartRecord],
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
        // A photo, or an upload opened anywhere but at its final key (a rule changed since `begin`):
        // completed where it is, then written to `key`.
        let assembled = assembly_key(session) != key
            || session
                .staging
                .multipart_key
                .as_deref()
                .is_some_and(|k| k != key);
        let size = if assembled {
            self.finish_assembled(session, parts, key, metadata).await?
        } else {
            match &session.staging.multipart_upload_id {
                // Written whole by PutObject with the last chunk: how versions before one-part
                // multipart uploads stored small files; sessions they left are still completed.
                None => match self.head(key).await? {
                    Some(size) if size == session.total => {}
                    Some(size) => bail!("{key} has {size} bytes, expected {}", session.total),
                    None => bail!("{key} was never written: the last chunk did not arrive"),
                },
                Some(upload_id) => {
                    self.complete_multipart(session, parts, key, upload_id)
                        .await?
                }
            }
            session.total
        };
        self.tidy_after_finish(session, key).await;
        Ok(size)
    }

    async fn discard(&self, session: &UploadSession) -> anyhow::Result<()> {
        let key = session.object_key();
        // A session of an earlier version without a recorded key: where that version opened it
        // (a photo of the version before that, at its final key, is left to the lifecycle rule).
        let multipart = session
            .staging
            .multipart_key
            .clone()
            .unwrap_or_else(|| assembly_key(session));
        let mut uploads: BTreeSet<String> = self
            .multipart_uploads(&multipart)
            .await?
            .into_iter()
            .collect();
        uploads.extend(session.staging.multipart_upload_id.clone());
        for upload_id in &uploads {
            self.abort(&multipart, upload_id).await?;
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
