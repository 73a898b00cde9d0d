//! Helpers for the AWS adapter tests: a fresh bucket + table per test on the moto server started by
//! `scripts/start-moto.sh`, an S3 client that counts the bytes it sends, and the chunk loop the way the
//! chunk handler drives the ports (write_chunk -> accept_chunk -> conditional commit -> after_commit).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use bytes::Bytes;
use media_shared::adapters::aws::{create_resources, AwsClients, AwsConfig, DynamoMeta, S3Blobs};
use media_shared::domain::upload::{ChunkPlan, StagingState, UploadSession};
use media_shared::domain::{ContentKind, Sniffed};
use media_shared::ports::{BlobStore, UploadStore};
use time::OffsetDateTime;

pub const MIB: usize = 1024 * 1024;
/// What the official client sends.
pub const CHUNK: usize = 204_800;

/// Counts the body bytes of every PUT the S3 client sends (PutObject and UploadPart; retries count
/// again, as they cost again).
#[derive(Debug, Clone, Default)]
pub struct PutBytes(pub Arc<AtomicU64>);

impl Intercept for PutBytes {
    fn name(&self) -> &'static str {
        "PutBytes"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        if req.method() == "PUT" {
            // With a trailing checksum the body is aws-chunked; the decoded length is the payload.
            let headers = req.headers();
            let len = headers
                .get("x-amz-decoded-content-length")
                .or_else(|| headers.get("content-length"))
                .and_then(|v| v.parse::<u64>().ok())
                .or_else(|| req.body().content_length())
                .unwrap_or(0);
            self.0.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub struct TestEnv {
    pub cfg: AwsConfig,
    pub clients: AwsClients,
    pub meta: DynamoMeta,
    pub blobs: S3Blobs,
    pub put_bytes: Arc<AtomicU64>,
}

/// A fresh bucket and table with unique names, created through `create_resources`.
pub async fn fresh() -> TestEnv {
    fresh_with(None).await
}

pub async fn fresh_with(public_base_url: Option<&str>) -> TestEnv {
    assert!(
        std::env::var_os("MEDIA_TEST_AWS").is_some()
            && std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "the AWS adapter tests need a moto server: run them as\n  \
         eval \"$(scripts/start-moto.sh)\" && cargo test -p media-shared --test aws_adapters"
    );
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cfg = AwsConfig {
        bucket: format!("media-test-{}", &tag[..20]),
        table: format!("media-test-{tag}"),
        part_size: 5 * MIB as u64,
        public_base_url: public_base_url.map(str::to_string),
        force_path_style: true,
    };
    let clients = AwsClients::from_env(&cfg).await;
    create_resources(&clients, &cfg).await.unwrap();
    // Again: creating must be idempotent.
    create_resources(&clients, &cfg).await.unwrap();
    let counter = PutBytes::default();
    let counting = clients
        .s3
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .build();
    TestEnv {
        meta: DynamoMeta::new(clients.dynamodb.clone(), &cfg.table),
        blobs: S3Blobs::new(aws_sdk_s3::Client::from_conf(counting), &cfg),
        put_bytes: counter.0,
        cfg,
        clients,
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

pub fn pdf() -> Sniffed {
    Sniffed {
        mime: "application/pdf".into(),
        kind: ContentKind::Document,
        width: None,
        height: None,
    }
}

/// A new session for a file of `total` bytes, stored the way the first chunk stores it.
pub async fn new_session(env: &TestEnv, total: u64) -> UploadSession {
    let plan = ChunkPlan {
        start: 0,
        len: total.min(CHUNK as u64),
        total,
    };
    let s = UploadSession::new(
        "alice",
        OffsetDateTime::now_utc(),
        3600,
        &plan,
        pdf(),
        Some("file.pdf".into()),
    );
    env.meta.put_upload(&s, None).await.unwrap();
    s
}

pub fn plan(session: &UploadSession, len: usize) -> ChunkPlan {
    ChunkPlan {
        start: session.offset,
        len: len as u64,
        total: session.total,
    }
}

/// Writes the bytes only (step 2 of the handler), without committing: what a crashed request leaves.
pub async fn write_only(env: &TestEnv, session: &UploadSession, chunk: &[u8]) -> StagingState {
    env.blobs
        .write_chunk(
            session,
            &plan(session, chunk.len()),
            Bytes::copy_from_slice(chunk),
        )
        .await
        .unwrap()
}

/// One chunk the way the handler does it: write, accept, commit conditional on the version, free.
pub async fn send_chunk(env: &TestEnv, session: &mut UploadSession, chunk: &[u8]) {
    let p = plan(session, chunk.len());
    let before = session.staging.clone();
    let staging = env
        .blobs
        .write_chunk(session, &p, Bytes::copy_from_slice(chunk))
        .await
        .unwrap();
    let md5 = session.md5.clone().advanced(chunk).unwrap();
    session.accept_chunk(&p, md5, staging);
    let expected = session.version;
    session.version += 1;
    env.meta.put_upload(session, Some(expected)).await.unwrap();
    env.blobs
        .after_commit(&before, &session.staging)
        .await
        .unwrap();
}

/// Every key in the bucket under `prefix`.
pub async fn keys(env: &TestEnv, prefix: &str) -> Vec<String> {
    list_keys(&env.clients.s3, &env.cfg.bucket, prefix).await
}

/// Every key in `bucket` under `prefix`, across pages.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        match page.next_continuation_token {
            Some(t) if page.is_truncated == Some(true) => token = Some(t),
            _ => return out,
        }
    }
}

/// Every multipart upload in progress in the bucket, as (key, upload id).
pub async fn multipart_uploads(env: &TestEnv) -> Vec<(String, String)> {
    list_multipart_uploads(&env.clients.s3, &env.cfg.bucket).await
}

/// Every multipart upload in progress in `bucket`, as (key, upload id); one page is all a test makes.
pub async fn list_multipart_uploads(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Vec<(String, String)> {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert_ne!(out.is_truncated(), Some(true), "more uploads than one page");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_string(),
                u.upload_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub async fn get_object(env: &TestEnv, key: &str) -> Vec<u8> {
    let out = env
        .clients
        .s3
        .get_object()
        .bucket(&env.cfg.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}
