//! Test harness: the real server on a loopback port (in-process, fresh data directory), a reqwest
//! client, tokens, and the upload steps the official client performs.
//!
//! The same suite runs on both backends: by default on the embedded one; with `MEDIA_TEST_BACKEND=aws`
//! on S3 + DynamoDB through the real SDK, against the server `scripts/start-moto.sh` started (each
//! server gets its own fresh bucket and table).
#![allow(dead_code)]

use std::path::PathBuf;

use md5::{Digest, Md5};
use media_local::config::LocalConfig;
use media_local::server::{self, Running};
use media_shared::adapters::aws::AwsConfig;
use media_shared::domain::{Click, Limits};
use media_shared::wiring::{Backend, Stores};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

pub const SECRET: &str = "test-secret";

pub struct TestServer {
    pub base: String,
    pub running: Option<Running>,
    pub config: LocalConfig,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

pub fn config(dir: PathBuf) -> LocalConfig {
    LocalConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        jwt_secret: Some(SECRET.into()),
        public_base_url: None,
        sweep_every_secs: 3600,
        limits: Limits::default(),
        backend: test_backend(dir),
    }
}

fn test_backend(data_dir: PathBuf) -> Backend {
    match std::env::var("MEDIA_TEST_BACKEND").as_deref() {
        Err(_) | Ok("local") => Backend::Local { data_dir },
        Ok("aws") => {
            assert!(
                std::env::var("MEDIA_TEST_AWS").is_ok(),
                "MEDIA_TEST_BACKEND=aws needs the local S3/DynamoDB server: run through scripts/test.sh, or eval \"$(scripts/start-moto.sh)\" first"
            );
            let unique = uuid::Uuid::new_v4().simple().to_string();
            Backend::Aws {
                config: AwsConfig {
                    bucket: format!("media-test-{}", &unique[..20]),
                    table: format!("media-test-{}", &unique[..20]),
                    part_size: 5 * 1024 * 1024,
                    public_base_url: None,
                    force_path_style: true,
                },
                create_resources: true,
            }
        }
        Ok(other) => panic!("MEDIA_TEST_BACKEND={other}: use local or aws"),
    }
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
        let running = server::start(config.clone()).await.expect("server starts");
        TestServer {
            base: format!("http://{}", running.addr),
            running: Some(running),
            config,
            client: reqwest::Client::new(),
            _dir: None,
        }
    }

    /// Stops the server and starts a new one on the same data directory (and port).
    pub async fn restart(mut self) -> Self {
        let addr = self.running.as_ref().unwrap().addr;
        self.running.take().unwrap().stop().await;
        let mut cfg = self.config.clone();
        cfg.listen = addr;
        let mut next = Self::on(cfg).await;
        next._dir = self._dir.take();
        next
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Whether storage still holds bytes of this unfinished upload (partial file; or staged chunks,
    /// an open multipart upload or a single-part object in S3).
    pub async fn holds_bytes(&self, upload_id: &str) -> bool {
        match &self.running().stores {
            Stores::Local { blobs, .. } => blobs.has_partial(upload_id),
            Stores::Aws { clients, config } => {
                let list = |prefix: String| {
                    clients
                        .s3
                        .list_objects_v2()
                        .bucket(&config.bucket)
                        .prefix(prefix)
                        .send()
                };
                let staged = list(format!("staging/{upload_id}/"))
                    .await
                    .unwrap()
                    .key_count()
                    .unwrap_or(0);
                let objects = list(format!("media/{upload_id}"))
                    .await
                    .unwrap()
                    .key_count()
                    .unwrap_or(0);
                let mpus = clients
                    .s3
                    .list_multipart_uploads()
                    .bucket(&config.bucket)
                    .prefix(format!("media/{upload_id}"))
                    .send()
                    .await
                    .unwrap();
                staged + objects > 0 || !mpus.uploads().is_empty()
            }
        }
    }

    /// Every recorded click, oldest first.
    pub async fn clicks(&self) -> Vec<Click> {
        let mut clicks: Vec<Click> = match &self.running().stores {
            Stores::Local { meta, .. } => meta.clicks().await.unwrap(),
            Stores::Aws { clients, config } => {
                let out = clients
                    .dynamodb
                    .scan()
                    .table_name(&config.table)
                    .consistent_read(true)
                    .send()
                    .await
                    .unwrap();
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
        };
        clicks.sort_by_key(|c| c.at);
        clicks
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, user: &str) -> String {
        self.running().token(user).unwrap()
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

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The path of a URL in a JSON string (presigned S3 URLs carry a query string).
pub fn url_path(v: &Value) -> String {
    reqwest::Url::parse(v.as_str().unwrap_or_else(|| panic!("not a URL: {v}")))
        .unwrap()
        .path()
        .to_string()
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

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG of random RGB pixels (stored, uncompressed deflate), so its size is ~3*w*h bytes.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    let pixels = random_bytes((width * 3 * height) as usize, seed);
    for row in pixels.chunks((width * 3) as usize) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}

/// A JPEG whose frame header (with the dimensions) lies after `padding` bytes of APP segments, i.e.
/// beyond the first 204800-byte chunk when padding is large.
pub fn jpeg_with_late_header(width: u16, height: u16, padding: usize) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    let mut left = padding;
    while left > 0 {
        let n = left.min(65000);
        v.extend_from_slice(&[0xff, 0xe1]);
        v.extend_from_slice(&((n + 2) as u16).to_be_bytes());
        v.extend(std::iter::repeat_n(0x41, n));
        left -= n;
    }
    v.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08]);
    v.extend_from_slice(&height.to_be_bytes());
    v.extend_from_slice(&width.to_be_bytes());
    v.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v.extend_from_slice(&[0xff, 0xd9]);
    v
}

pub fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    v.extend(random_bytes(len.saturating_sub(v.len() + 6), 3));
    v.extend_from_slice(b"%%EOF\n");
    v
}
