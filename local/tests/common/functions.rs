//! The third backend of the HTTP suite, `MEDIA_TEST_BACKEND=lambda`: the real function binaries behind
//! `cargo lambda watch`, on S3 + DynamoDB served by moto.
//!
//! `cargo lambda watch` plays API Gateway (the workspace router in Cargo.toml, i.e. the template's
//! paths, turned into HTTP API v2 events with base64 bodies) and the Lambda Runtime API. It runs with
//! `--only-lambda-apis`: instead of `cargo run`-ning each function on its first request, this harness
//! starts the debug binaries from this test's own target directory, with the environment watch would
//! give them plus the service's settings. So every test gets its own bucket, table and settings, and
//! no cargo build runs while the tests do (scripts/test.sh builds the binaries first; a binary older
//! than its sources stops the test with the command to run).
//!
//! Each function runs as `INSTANCES` processes polling the same queue, so requests to one function
//! can overlap as on Lambda and races meet in DynamoDB's conditional writes, not in one process.
//!
//! What is not like AWS: there is no JWT authorizer (the functions verify tokens themselves with
//! `MEDIA_JWT_SECRET`, see `media_shared::lambda`), no CORS (watch's own is turned off; on AWS the
//! HTTP API's configuration answers it), and a path or method the router does not know gets no answer
//! (API Gateway says 404 itself; watch queues it for a default function that never comes).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use media_local::config::LocalConfig;
use media_shared::adapters::aws::AwsConfig;
use media_shared::domain::image_metadata::MetadataPolicy;
use media_shared::domain::ThumbnailMode;

/// Processes per function.
const INSTANCES: usize = 2;

/// The watch server and the function processes of one test server.
pub struct Functions {
    pub port: u16,
    env: Vec<(String, String)>,
    /// The shell that owns the watch server: closing its stdin (also when this process dies) stops it.
    watch: Child,
    watch_stdin: Option<ChildStdin>,
    instances: Vec<Child>,
    log: tempfile::NamedTempFile,
}

impl Functions {
    /// The functions configured like `config` on the bucket and table of `aws`, on a free port.
    pub fn start(config: &LocalConfig, aws: &AwsConfig) -> Self {
        let env = service_env(config, aws);
        let mut last_error = String::new();
        // A free port can be taken by someone else before watch binds it: then try another.
        for _ in 0..5 {
            match Self::start_on(free_port(), env.clone()) {
                Ok(f) => return f,
                Err(e) => last_error = e,
            }
        }
        panic!("cargo lambda watch did not start: {last_error}");
    }

    /// Stops every process and starts them again on the same port and settings: the next request to
    /// each function is a cold start, the data stays in S3 and DynamoDB.
    pub fn restart(mut self) -> Self {
        let (port, env) = (self.port, std::mem::take(&mut self.env));
        drop(self);
        let mut last_error = String::new();
        for _ in 0..50 {
            match Self::start_on(port, env.clone()) {
                Ok(f) => return f,
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cargo lambda watch did not start again on port {port}: {last_error}");
    }

    fn start_on(port: u16, env: Vec<(String, String)>) -> Result<Self, String> {
        let root = workspace_root();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut watch = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" lambda watch "$@" & pid=$!; read -r _; kill $pid; wait $pid"#)
            .arg(cargo_lambda())
            .args(["--only-lambda-apis", "--disable-cors", "--invoke-address"])
            .arg("127.0.0.1")
            .arg("--invoke-port")
            .arg(port.to_string())
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .map_err(|e| format!("starting cargo-lambda: {e}"))?;
        let watch_stdin = watch.stdin.take();
        let mut f = Functions {
            port,
            env,
            watch,
            watch_stdin,
            instances: Vec::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            let log = std::fs::read_to_string(f.log.path()).unwrap_or_default();
            if log.contains("Error") || log.contains("error:") || Instant::now() > deadline {
                return Err(format!("port {port}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Functions must find the Runtime API up, or their first poll fails and they exit.
        let bin_dir = binary_dir();
        for name in functions() {
            let binary = bin_dir.join(&name);
            check_fresh(&binary, &name, &root);
            for _ in 0..INSTANCES {
                let mut cmd = Command::new(&binary);
                for (k, _) in std::env::vars() {
                    // Only the settings of this test server, none from the caller's shell.
                    if k.starts_with("MEDIA_") {
                        cmd.env_remove(k);
                    }
                }
                cmd.envs(f.env.iter().map(|(k, v)| (k, v)))
                    .env("AWS_LAMBDA_FUNCTION_NAME", &name)
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        format!("http://127.0.0.1:{port}/.rt/{name}"),
                    )
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null());
                f.instances.push(
                    cmd.spawn()
                        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display())),
                );
            }
        }
        Ok(f)
    }
}

impl Functions {
    /// `cargo lambda invoke <function> --data-file <event>` against this watch server: the function's
    /// answer (for an HTTP function, the API Gateway response with `statusCode` and `body`).
    pub fn invoke(&self, function: &str, event: &Path) -> serde_json::Value {
        let out = Command::new(cargo_lambda())
            .args([
                "lambda",
                "invoke",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(self.port.to_string())
            .args(["--output-format", "json", "--data-file"])
            .arg(event)
            .arg(function)
            .current_dir(workspace_root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo lambda invoke {function} --data-file {}: {}\n{stdout}{}",
            event.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{function}: the answer is not JSON ({e}): {stdout}"))
    }
}

impl Drop for Functions {
    fn drop(&mut self) {
        for p in &mut self.instances {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(mut stdin) = self.watch_stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.watch.wait();
    }
}

/// What a function needs to serve like `config` on `aws`: the same variables template.yaml and the
/// README name. Parsed back and compared, so a setting a test changes cannot be silently lost.
fn service_env(config: &LocalConfig, aws: &AwsConfig) -> Vec<(String, String)> {
    let l = &config.limits;
    let mut env: Vec<(&str, String)> = vec![
        ("MEDIA_BUCKET", aws.bucket.clone()),
        ("MEDIA_TABLE", aws.table.clone()),
        ("MEDIA_PART_SIZE", aws.part_size.to_string()),
        ("MEDIA_S3_FORCE_PATH_STYLE", flag(aws.force_path_style)),
        ("MEDIA_MAX_CHUNK_BYTES", l.max_chunk_bytes.to_string()),
        ("MEDIA_MAX_IMAGE_BYTES", l.max_image_bytes.to_string()),
        ("MEDIA_MAX_DOC_BYTES", l.max_doc_bytes.to_string()),
        ("MEDIA_ALLOWED_MIME", l.allowed_mime.join(",")),
        ("MEDIA_UPLOAD_TTL_SECS", l.upload_ttl_secs.to_string()),
        ("MEDIA_LEASE_SECS", l.lease_secs.to_string()),
        ("MEDIA_FETCH_ENABLED", flag(l.fetch.enabled)),
        ("MEDIA_FETCH_ALLOW_PRIVATE", flag(l.fetch.allow_private)),
        ("MEDIA_FETCH_MAX_BYTES", l.fetch.max_bytes.to_string()),
        ("MEDIA_FETCH_TIMEOUT_SECS", l.fetch.timeout_secs.to_string()),
        (
            "MEDIA_FETCH_MAX_REDIRECTS",
            l.fetch.max_redirects.to_string(),
        ),
        (
            "MEDIA_THUMBNAILS",
            match l.thumbnails {
                ThumbnailMode::Inline => "inline",
                ThumbnailMode::Deferred => "deferred",
                ThumbnailMode::Off => "off",
            }
            .into(),
        ),
        (
            "MEDIA_DECODE_BUDGET_BYTES",
            l.decode_budget_bytes.to_string(),
        ),
        (
            "MEDIA_USER_MAX_OPEN_UPLOADS",
            l.user_quota.max_open.to_string(),
        ),
        (
            "MEDIA_USER_MAX_OPEN_BYTES",
            l.user_quota.max_bytes.to_string(),
        ),
        (
            "MEDIA_STRIP_METADATA",
            flag(l.metadata == MetadataPolicy::Strip),
        ),
    ];
    // Without it the functions trust no token at all (see media_shared::lambda).
    if let Some(secret) = &config.jwt_secret {
        env.push(("MEDIA_JWT_SECRET", secret.clone()));
    }
    // The identity provider's key set, issuer and audiences, as media-local has them.
    if let Some(idp) = &config.idp {
        env.push(("MEDIA_JWT_JWKS_URL", idp.jwks_url.clone()));
        env.push(("MEDIA_JWT_ISSUER", idp.issuer.clone()));
        env.push(("MEDIA_JWT_AUDIENCE", idp.audiences.join(",")));
    }
    if let Some(url) = aws
        .public_base_url
        .as_ref()
        .or(config.public_base_url.as_ref())
    {
        env.push(("MEDIA_PUBLIC_BASE_URL", url.clone()));
    }
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.into(), v)).collect();
    let read = Vars(&env);
    assert_eq!(
        media_shared::config::limits(&read).unwrap(),
        *l,
        "a limit of this test is not passed to the functions"
    );
    assert_eq!(
        media_shared::api::auth::IdpConfig::from_env(&read).unwrap(),
        config.idp,
        "the identity provider of this test is not passed to the functions"
    );
    let back = AwsConfig::from_env(&read).unwrap();
    assert_eq!(
        (&back.bucket, &back.table, back.part_size),
        (&aws.bucket, &aws.table, aws.part_size)
    );
    env
}

struct Vars<'a>(&'a [(String, String)]);

impl media_shared::config::Env for Vars<'_> {
    fn get(&self, var: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
    }
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.into()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// target/debug (or wherever this test was built): the test runs from target/debug/deps.
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `CARGO_LAMBDA`, else the one scripts/install-test-tools.sh installs, else the one on PATH.
fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        return p.into();
    }
    let venv = workspace_root().join(".venv-test/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    "cargo-lambda".into()
}

/// Every function binary: the `[[bin]]` names of the packages in functions/ (the HTTP ones are
/// reached through the watch router, the stream ones through `cargo lambda invoke`).
fn functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in std::fs::read_dir(workspace_root().join("functions")).unwrap() {
        let manifest: toml_edit::DocumentMut =
            std::fs::read_to_string(dir.unwrap().path().join("Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        for bin in manifest["bin"]
            .as_array_of_tables()
            .expect("[[bin]]")
            .iter()
        {
            names.insert(bin["name"].as_str().unwrap().to_string());
        }
    }
    names
}

/// A binary older than the code it is built from would test yesterday's functions.
fn check_fresh(binary: &Path, name: &str, root: &Path) {
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build the functions first with\n  cargo build --workspace --bins",
                binary.display()
            )
        });
    let sources = [
        root.join("shared/src"),
        root.join(format!("functions/{name}")),
        root.join("shared/Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    let newest = sources.iter().filter_map(|p| newest_in(p)).max();
    if let Some((changed, path)) = newest {
        assert!(
            changed <= built,
            "{} is older than {}: rebuild the functions with\n  cargo build --workspace --bins",
            binary.display(),
            path.display()
        );
    }
}

fn newest_in(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some((meta.modified().ok()?, path.to_path_buf()));
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest_in(&e.ok()?.path()))
        .max()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
