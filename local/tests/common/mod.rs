//! Test harness: the real server on a loopback port (in-process, fresh data directory), a reqwest
//! client, tokens, and the upload steps the official client performs.
//!
//! The same suite runs on three backends: by default on the embedded one; with `MEDIA_TEST_BACKEND=aws`
//! on S3 + DynamoDB through the real SDK, against the server `scripts/start-moto.sh` started (each
//! server gets its own fresh bucket and table); with `MEDIA_TEST_BACKEND=lambda` the same, but served
//! by the function binaries behind `cargo lambda watch` instead of media-local (see `functions`).
#![allow(dead_code)]

pub mod functions;
pub mod process;

use std::path::PathBuf;

use media_local::config::LocalConfig;
use media_local::server::{self, Running};
use media_shared::adapters::aws::AwsConfig;
use media_shared::api::auth::Hs256;
use media_shared::app::App;
use media_shared::domain::{Click, Limits};
use media_shared::wiring::{Backend, Stores};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use media_testkit::{jpeg_with_late_header, md5_hex, png, random_bytes};

pub const SECRET: &str = "test-secret";

pub struct TestServer {
    pub base: String,
    /// media-local, on the embedded or the AWS backend.
    pub running: Option<Running>,
    /// `MEDIA_TEST_BACKEND=lambda`: the functions, and the App and stores they share (the test's own
    /// view of the same bucket and table).
    pub lambda: Option<(functions::Functions, App, Stores)>,
    pub config: LocalConfig,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub fn config(dir: PathBuf) -> LocalConfig {
    LocalConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        jwt_secret: Some(SECRET.into()),
        idp: None,
        public_base_url: None,
        sweep_every_secs: 3600,
        cors_origins: media_shared::cors::Origins::Loopback,
        limits: Limits::default(),
        backend: test_backend(dir),
        connections: Default::default(),
        webhook: None,
        metrics_listen: None,
    }
}

/// `MEDIA_TEST_BACKEND=lambda`: the function binaries serve the suite (on the AWS backend's stores).
pub fn on_lambda() -> bool {
    std::env::var("MEDIA_TEST_BACKEND").as_deref() == Ok("lambda")
}

/// For the few checks the functions cannot take on this backend: says why on the test's output and
/// returns true when they must be skipped.
pub fn skip_on_lambda(why: &str) -> bool {
    if on_lambda() {
        eprintln!("skipped on the lambda backend: {why}");
    }
    on_lambda()
}

fn test_backend(data_dir: PathBuf) -> Backend {
    match std::env::var("MEDIA_TEST_BACKEND").as_deref() {
        Err(_) | Ok("local") => Backend::Local { data_dir },
        Ok(backend @ ("aws" | "lambda")) => {
            media_testkit::moto::require(&format!("tests with MEDIA_TEST_BACKEND={backend}"));
            let unique = uuid::Uuid::new_v4().simple().to_string();
            Backend::Aws {
                config: AwsConfig {
                    bucket: format!("media-test-{}", &unique[..20]),
                    table: format!("media-test-{}", &unique[..20]),
                    part_size: 5 * 1024 * 1024,
                    public_base_url: None,
                    force_path_style: true,
                    id_block: media_shared::adapters::aws::DEFAULT_ID_BLOCK,
                },
                create_resources: true,
            }
        }
        Ok(other) => panic!("MEDIA_TEST_BACKEND={other}: use local, aws or lambda"),
    }
}

/// A request no function is routed for gets no answer from watch: the timeout ends it, and any hang.
fn lambda_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut LocalConfig)) -> Self {
        Self::start_in_dir(false, tweak).await
    }

    /// `start_with` on the embedded backend whatever `MEDIA_TEST_BACKEND` says, for tests of what
    /// only it has (the data directory).
    pub async fn start_local_with(tweak: impl FnOnce(&mut LocalConfig)) -> Self {
        Self::start_in_dir(true, tweak).await
    }

    async fn start_in_dir(local: bool, tweak: impl FnOnce(&mut LocalConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path().to_path_buf());
        if local {
            cfg.backend = Backend::Local {
                data_dir: dir.path().to_path_buf(),
            };
        }
        tweak(&mut cfg);
        let mut s = Self::on(cfg).await;
        s._dir = Some(dir);
        s
    }

    async fn on(config: LocalConfig) -> Self {
        if let (true, Backend::Aws { config: aws, .. }) = (on_lambda(), &config.backend) {
            return Self::on_functions(config.clone(), aws.clone()).await;
        }
        let running = server::start(config.clone()).await.expect("server starts");
        TestServer {
            base: format!("http://{}", running.addr),
            running: Some(running),
            lambda: None,
            config,
            client: reqwest::Client::new(),
            _dir: None,
        }
    }

    async fn on_functions(config: LocalConfig, aws: AwsConfig) -> Self {
        let backend = Backend::Aws {
            config: aws.clone(),
            create_resources: true,
        };
        let wired = media_shared::wiring::build(&backend, config.limits.clone(), None)
            .await
            .expect("bucket and table");
        let functions = functions::Functions::start(&config, &aws);
        TestServer {
            base: format!("http://127.0.0.1:{}", functions.port),
            running: None,
            lambda: Some((functions, wired.app, wired.stores)),
            config,
            client: lambda_client(),
            _dir: None,
        }
    }

    /// Stops the server and starts a new one on the same data directory (and port). On the lambda
    /// backend: every function process and the watch server, i.e. a cold start of each function.
    pub async fn restart(mut self) -> Self {
        if let Some((functions, app, stores)) = self.lambda.take() {
            self.lambda = Some((functions.restart(), app, stores));
            // Its pooled connections went with the old watch server.
            self.client = lambda_client();
            return self;
        }
        let addr = self.running.as_ref().unwrap().addr;
        self.running.take().unwrap().stop().await;
        let mut cfg = self.config.clone();
        cfg.listen = addr;
        let mut next = Self::on(cfg).await;
        next._dir = self._dir.take();
        next
    }

    pub fn running(&self) -> &Running {
        self.running
            .as_ref()
            .expect("no media-local here: the lambda backend runs the functions")
    }

    /// The handlers' App on the stores this server uses.
    pub fn app(&self) -> &App {
        match &self.lambda {
            Some((_, app, _)) => app,
            None => &self.running().app,
        }
    }

    pub fn stores(&self) -> &Stores {
        match &self.lambda {
            Some((_, _, stores)) => stores,
            None => &self.running().stores,
        }
    }

    pub fn on_lambda(&self) -> bool {
        self.lambda.is_some()
    }

    /// Whether storage still holds bytes of this unfinished upload (partial file; or staged chunks,
    /// an open multipart upload or a single-part object in S3).
    pub async fn holds_bytes(&self, upload_id: &str) -> bool {
        match self.stores() {
            Stores::Local { blobs, .. } => blobs.has_partial(upload_id),
            Stores::Aws { clients, config } => {
                media_testkit::aws::holds_bytes(&clients.s3, &config.bucket, upload_id).await
            }
        }
    }

    /// Every recorded click, oldest first.
    pub async fn clicks(&self) -> Vec<Click> {
        let mut clicks: Vec<Click> = match self.stores() {
            Stores::Local { meta, .. } => meta.clicks().await.unwrap(),
            Stores::Aws { clients, config } => {
                media_testkit::aws::clicks(&clients.dynamodb, &config.table).await
            }
        };
        clicks.sort_by_key(|c| c.at);
        clicks
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, user: &str) -> String {
        match &self.running {
            Some(running) => running.token(user).unwrap(),
            // The functions verify with MEDIA_JWT_SECRET = the tests' secret.
            None => Hs256::new(
                self.config
                    .jwt_secret
                    .as_deref()
                    .unwrap_or(SECRET)
                    .as_bytes(),
            )
            .issue(user, 24 * 3600)
            .unwrap(),
        }
    }

    pub fn auth(&self, user: &str) -> String {
        format!("Bearer {}", self.token(user))
    }

    /// One chunk request as the official client sends it: upload_id first, then the file part `image`.
    pub async fn chunk(
        &self,
        user: &str,
        upload_id: Option<&str>,
        range: Option<String>,
        data: Vec<u8>,
    ) -> (u16, Value) {
        self.chunk_named(user, upload_id, range, data, "image", "photo.png")
            .await
    }

    pub async fn chunk_named(
        &self,
        user: &str,
        upload_id: Option<&str>,
        range: Option<String>,
        data: Vec<u8>,
        field: &str,
        filename: &str,
    ) -> (u16, Value) {
        let mut form = Form::new();
        if let Some(id) = upload_id {
            form = form.text("upload_id", id.to_string());
        }
        form = form.part(
            field.to_string(),
            Part::bytes(data)
                .file_name(filename.to_string())
                .mime_str("image/jpeg")
                .unwrap(),
        );
        let mut req = self
            .client
            .post(self.url("/api/v2/media/upload/chunk/"))
            .header("authorization", self.auth(user))
            .multipart(form);
        if let Some(r) = range {
            req = req.header("content-range", r);
        }
        json_of(req.send().await.unwrap()).await
    }

    /// Uploads `data` in chunks of `chunk` bytes with Content-Range headers; returns the upload id.
    pub async fn upload(&self, user: &str, data: &[u8], chunk: usize) -> String {
        let total = data.len();
        let mut id: Option<String> = None;
        for (i, piece) in data.chunks(chunk).enumerate() {
            let start = i * chunk;
            let range = format!("bytes {}-{}/{}", start, start + piece.len() - 1, total);
            let (status, body) = self
                .chunk(user, id.as_deref(), Some(range), piece.to_vec())
                .await;
            assert_eq!(status, 201, "chunk {i}: {body}");
            assert_eq!(body["offset"], (start + piece.len()) as u64);
            id = Some(body["upload_id"].as_str().unwrap().to_string());
        }
        id.unwrap()
    }

    pub async fn complete(
        &self,
        user: &str,
        id: &str,
        md5: &str,
        kind: Option<&str>,
    ) -> (u16, Value) {
        let mut form = vec![("upload_id", id.to_string()), ("md5", md5.to_string())];
        if let Some(k) = kind {
            form.push(("type", k.to_string()));
        }
        let req = self
            .client
            .post(self.url("/api/v2/media/upload/complete/"))
            .header("authorization", self.auth(user))
            .form(&form);
        json_of(req.send().await.unwrap()).await
    }

    pub async fn get_media(&self, user: &str, id: u64) -> (u16, Value) {
        let req = self
            .client
            .get(self.url(&format!("/api/v2/media/{id}/")))
            .header("authorization", self.auth(user));
        json_of(req.send().await.unwrap()).await
    }

    pub async fn fetch(&self, url: &str) -> (u16, Vec<u8>) {
        let r = self.client.get(url).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }
}

/// Status and JSON body; every response of the API must be JSON (204s have an empty body).
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    if status == 204 {
        assert!(bytes.is_empty(), "204 with a body");
        return (status, Value::Null);
    }
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// The path of a URL in a JSON string (presigned S3 URLs carry a query string).
pub fn url_path(v: &Value) -> String {
    reqwest::Url::parse(v.as_str().unwrap_or_else(|| panic!("not a URL: {v}")))
        .unwrap()
        .path()
        .to_string()
}

/// A media (or any JSON) with the signatures of presigned S3 URLs taken out: two reads of the same
/// media on S3 sign its URLs at their own second, so only the rest must be equal.
pub fn unsigned(v: &Value) -> Value {
    match v {
        Value::String(s) if s.contains("X-Amz-Signature=") => {
            Value::String(s.split('?').next().unwrap().to_string())
        }
        Value::Array(items) => Value::Array(items.iter().map(unsigned).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), unsigned(v))).collect())
        }
        other => other.clone(),
    }
}

/// The first error code of an error envelope.
pub fn code(v: &Value) -> &str {
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

pub fn field_error(v: &Value) -> &str {
    v["errors"][0]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("no field error in {v}"))
}

/// A PDF of `len` bytes; the seed is fixed, so documents of the same size are the same file.
pub fn pdf(len: usize) -> Vec<u8> {
    media_testkit::pdf(len, 3)
}
