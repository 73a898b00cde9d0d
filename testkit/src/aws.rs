//! Fresh AWS resources on the moto server of `scripts/start-moto.sh` (a bucket and a table with
//! unique names per test), clients that count the requests (and S3 the bytes) they send, and what the bucket and the
//! table really hold (listings read through the SDK, not through the adapters under test).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use media_shared::adapters::aws::{create_resources, AwsClients, AwsConfig, DynamoMeta, S3Blobs};
use media_shared::app::App;
use media_shared::domain::{Click, Limits};

use crate::MIB;

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

/// Remembers the method and path of every request a client sends (`PUT /bucket/key`), to tell
/// which key a request was about.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(pub Arc<std::sync::Mutex<Vec<String>>>);

impl RequestLog {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", req.method(), req.uri()));
        Ok(())
    }
}

/// Counts the requests a client sends (every attempt: retries cost again).
#[derive(Debug, Clone, Default)]
pub struct Requests(pub Arc<AtomicU64>);

impl Requests {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Lets the first DynamoDB request of one operation (`X-Amz-Target` ending in `.<operation>`) whose
/// body contains `marker` through to the table, then turns its answer into a 500: what a client sees
/// when DynamoDB applied a write and the answer was lost (a 5xx or a timeout after the apply). The
/// SDK retries it as it would any 500, so the retry meets the table as the first attempt left it.
#[derive(Debug, Clone)]
pub struct LoseAnswerOnce {
    operation: &'static str,
    marker: &'static str,
    /// Whether the request in flight is the one (requests of one test are sent one at a time).
    this_one: Arc<std::sync::atomic::AtomicBool>,
    /// Answers lost so far: 0 or 1.
    pub lost: Arc<AtomicU64>,
}

impl LoseAnswerOnce {
    pub fn new(operation: &'static str, marker: &'static str) -> Self {
        LoseAnswerOnce {
            operation,
            marker,
            this_one: Arc::default(),
            lost: Arc::default(),
        }
    }

    /// A client like `dynamodb` that loses that answer.
    pub fn client(&self, dynamodb: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            dynamodb
                .config()
                .to_builder()
                .interceptor(self.clone())
                .build(),
        )
    }
}

impl Intercept for LoseAnswerOnce {
    fn name(&self) -> &'static str {
        "LoseAnswerOnce"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let this_one = self.lost.load(Ordering::SeqCst) == 0
            && req
                .headers()
                .get("x-amz-target")
                .is_some_and(|t| t.ends_with(&format!(".{}", self.operation)))
            && req
                .body()
                .bytes()
                .is_some_and(|b| String::from_utf8_lossy(b).contains(self.marker));
        self.this_one.store(this_one, Ordering::SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.this_one.swap(false, Ordering::SeqCst) {
            assert!(
                context.response().status().is_success(),
                "the write whose answer is to be lost was not applied"
            );
            *context.response_mut().status_mut() = 500u16.try_into().expect("a status");
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

pub struct TestEnv {
    pub cfg: AwsConfig,
    pub clients: AwsClients,
    pub meta: DynamoMeta,
    /// The adapter under test, on the counting S3 client.
    pub blobs: Arc<S3Blobs>,
    /// `meta` and `blobs` as the handlers see them, with the default limits. Composed here rather than
    /// by `wiring::build`, so that the S3 client is the counting one.
    pub app: App,
    /// Body bytes of every PUT `blobs` sent.
    pub put_bytes: Arc<AtomicU64>,
    /// Requests `blobs` sent to S3.
    pub s3_requests: Requests,
    /// Each of them, as method and URI.
    pub s3_log: RequestLog,
    /// Requests `meta` sent to DynamoDB.
    pub dynamodb_requests: Requests,
}

/// A fresh bucket and table with unique names, created through `create_resources`.
pub async fn fresh() -> TestEnv {
    fresh_with(None).await
}

pub async fn fresh_with(public_base_url: Option<&str>) -> TestEnv {
    fresh_env(public_base_url, 5 * MIB as u64).await
}

/// With parts of `part_size` bytes: below S3's 5 MiB, the parts are recorded and uploaded, but
/// completing them fails (moto enforces the minimum, EntityTooSmall).
pub async fn fresh_with_part_size(part_size: u64) -> TestEnv {
    fresh_env(None, part_size).await
}

async fn fresh_env(public_base_url: Option<&str>, part_size: u64) -> TestEnv {
    crate::moto::require("the AWS adapter tests");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cfg = AwsConfig {
        bucket: format!("media-test-{}", &tag[..20]),
        table: format!("media-test-{tag}"),
        part_size,
        public_base_url: public_base_url.map(str::to_string),
        force_path_style: true,
        id_block: media_shared::adapters::aws::DEFAULT_ID_BLOCK,
    };
    let clients = AwsClients::from_env(&cfg).await;
    create_resources(&clients, &cfg).await.unwrap();
    // Again: creating must be idempotent.
    create_resources(&clients, &cfg).await.unwrap();
    let counter = PutBytes::default();
    let (s3_requests, dynamodb_requests) = (Requests::default(), Requests::default());
    let s3_log = RequestLog::default();
    let counting = clients
        .s3
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .interceptor(s3_requests.clone())
        .interceptor(s3_log.clone())
        .build();
    let counting_dynamodb = clients
        .dynamodb
        .config()
        .to_builder()
        .interceptor(dynamodb_requests.clone())
        .build();
    let meta = DynamoMeta::new(
        aws_sdk_dynamodb::Client::from_conf(counting_dynamodb),
        &cfg.table,
    );
    let blobs = Arc::new(S3Blobs::new(aws_sdk_s3::Client::from_conf(counting), &cfg));
    let app = App {
        limits: Limits::default(),
        uploads: Arc::new(meta.clone()),
        media: Arc::new(meta.clone()),
        blobs: blobs.clone(),
        events: Arc::new(media_shared::ports::NoEvents),
        metrics: media_shared::metrics::discard(),
    };
    TestEnv {
        meta,
        blobs,
        app,
        put_bytes: counter.0,
        s3_requests,
        s3_log,
        dynamodb_requests,
        cfg,
        clients,
    }
}

/// Environment variables as a list (the functions read them from the process).
struct Vars<'a>(Vec<(&'a str, &'a str)>);

impl media_shared::config::Env for Vars<'_> {
    fn get(&self, var: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    }
}

/// The App of a Lambda function, on a fresh bucket and table in moto.
pub struct LambdaEnv {
    pub app: App,
    pub clients: AwsClients,
    pub cfg: AwsConfig,
}

/// Builds the App exactly as the functions do (`wiring::for_lambda`, from environment variables) on a
/// fresh bucket and table named `<prefix>-<tag>`, created by the app itself (`MEDIA_CREATE_RESOURCES`,
/// path-style S3 as moto needs), with `env` added (the settings template.yaml gives the function).
/// `what` names the tests for the message when moto is not running.
pub async fn for_lambda(what: &str, prefix: &str, env: &[(&str, &str)]) -> LambdaEnv {
    crate::moto::require(what);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // Bucket names stop at 63 characters.
    let bucket = format!("{prefix}-{}", &tag[..20]);
    let table = format!("{prefix}-{tag}");
    let mut all = vec![
        ("MEDIA_BUCKET", bucket.as_str()),
        ("MEDIA_TABLE", table.as_str()),
        ("MEDIA_S3_FORCE_PATH_STYLE", "1"),
        ("MEDIA_CREATE_RESOURCES", "1"),
    ];
    all.extend_from_slice(env);
    let wired = media_shared::wiring::for_lambda(&Vars(all))
        .await
        .expect("the AWS app");
    let media_shared::wiring::Stores::Aws { clients, config } = wired.stores else {
        unreachable!("the functions run on AWS")
    };
    assert_eq!(
        (config.bucket.as_str(), config.table.as_str()),
        (&*bucket, &*table)
    );
    LambdaEnv {
        app: wired.app,
        clients,
        cfg: config,
    }
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

/// The bytes of the object `key`, which must exist.
pub async fn get_object(env: &TestEnv, key: &str) -> Vec<u8> {
    object(&env.clients.s3, &env.cfg.bucket, key)
        .await
        .unwrap_or_else(|| panic!("no object {key}"))
}

/// The bytes of the object `key` in `bucket`; `None` if there is none.
pub async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(e) => panic!("GetObject {key}: {e:?}"),
    }
}

/// Whether the bucket holds bytes of this unfinished upload: staged chunks, an open multipart upload
/// or an object at its key (a single-part upload's last chunk is written there).
pub async fn holds_bytes(s3: &aws_sdk_s3::Client, bucket: &str, upload_id: &str) -> bool {
    !list_keys(s3, bucket, &format!("staging/{upload_id}/"))
        .await
        .is_empty()
        || !list_keys(s3, bucket, &format!("media/{upload_id}"))
            .await
            .is_empty()
        || list_multipart_uploads(s3, bucket)
            .await
            .iter()
            .any(|(key, _)| {
                key.starts_with(&format!("media/{upload_id}"))
                    || key.starts_with(&format!("staging/{upload_id}/"))
            })
}

/// Every click recorded in `table`, read from the items themselves.
pub async fn clicks(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Click> {
    let out = dynamodb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(out.last_evaluated_key.is_none(), "more items than one page");
    out.items()
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("click#"))
        })
        .map(|i| serde_json::from_str(i["data"].as_s().unwrap()).unwrap())
        .collect()
}
