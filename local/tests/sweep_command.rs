//! `media-local sweep` on a data directory with expired uploads: the built binary, run as a user runs
//! it, prints its report as JSON and frees the bytes, and keeps completed media. The directory is
//! prepared by an in-process server run (stopped first: the database admits one process at a time).
//! Next to a running server, the command has the server do the sweep (issue 11); and whatever goes
//! wrong, no command shows a stack backtrace.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use media_shared::adapters::local::LocalMeta;
use media_shared::ports::{MediaStore, UploadStore};
use media_shared::wiring::Backend;
use serde_json::{json, Value};

/// `media-local` with none of the caller's MEDIA_* settings, and backtraces asked for: none may show.
fn media_local() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_media-local"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MEDIA_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1");
    cmd
}

/// Runs `media-local sweep` on `dir`; returns its report.
fn run_sweep(dir: &Path) -> Value {
    let out = media_local()
        .arg("sweep")
        .env("MEDIA_DATA_DIR", dir)
        .output()
        .expect("media-local runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "media-local sweep failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the report goes to stdout (logs go to stderr), so that `media-local sweep | jq` works.
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {stdout}"))
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn sweep_command_frees_expired_uploads_and_prints_its_report() {
    // The command works on a data directory: always the embedded backend, whatever
    // MEDIA_TEST_BACKEND says for the HTTP suite.
    let mut s = TestServer::start_local_with(|c| c.limits.upload_ttl_secs = 1).await;
    let big = pdf(3_000_000);
    let total = big.len();
    // Half done: three chunks of a 3 MB PDF.
    let mut half: Option<String> = None;
    for i in 0..3 {
        let (start, end) = (i * 204_800, (i + 1) * 204_800);
        let (st, b) = s
            .chunk(
                "alice",
                half.as_deref(),
                Some(format!("bytes {start}-{}/{total}", end - 1)),
                big[start..end].to_vec(),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        half = Some(b["upload_id"].as_str().unwrap().to_string());
    }
    let half = half.unwrap();
    // Completed: its object and media must survive.
    let image = png(120, 80, 7);
    let done = s.upload("alice", &image, 204_800).await;
    let (st, media) = s.complete("alice", &done, &md5_hex(&image), None).await;
    assert_eq!(st, 201, "{media}");
    let media_id = media["id"].as_u64().unwrap();
    // Fully received, then a wrong md5: kept (completable until it expires), so unfinished.
    let other = png(60, 60, 8);
    let failed = s.upload("alice", &other, 204_800).await;
    let (st, b) = s.complete("alice", &failed, &md5_hex(b"nope"), None).await;
    assert_eq!(st, 400, "{b}");

    let Backend::Local { data_dir: dir } = s.config.backend.clone() else {
        unreachable!("started on the local backend")
    };
    let mut unfinished = vec![half.clone(), failed.clone()];
    unfinished.sort();
    assert_eq!(files(&dir.join("partial")), unfinished);
    s.running.take().unwrap().stop().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let report = run_sweep(&dir);
    assert_eq!(
        report,
        json!({"released": 2, "sessions_removed": 3, "skipped": 0, "failed": 0}),
        "both unfinished released; their sessions and the completed one's removed"
    );
    assert_eq!(files(&dir.join("partial")), Vec::<String>::new());
    // Nothing left to do the second time.
    assert_eq!(
        run_sweep(&dir),
        json!({"released": 0, "sessions_removed": 0, "skipped": 0, "failed": 0})
    );

    // The database after the command: sessions gone, the media and its bytes intact.
    let meta = LocalMeta::open(&dir.join("media.redb")).unwrap();
    for id in [&half, &done, &failed] {
        assert!(meta.get_upload(id).await.unwrap().is_none(), "session {id}");
    }
    let record = meta
        .get_media(media_id)
        .await
        .unwrap()
        .expect("the media record");
    let key = record.object_key.expect("the media's object key");
    let stored = std::fs::read(dir.join("objects").join(&key)).unwrap();
    assert_eq!(md5_hex(&stored), md5_hex(&image));
}

/// The sweep command next to a running server on the same data directory: the server sweeps when
/// asked, the command prints its report, and the server carries on. Stopped (cleanly or by kill -9,
/// which leaves its `server.json` behind), the command sweeps by itself again.
#[tokio::test]
async fn the_sweep_command_works_while_the_server_runs() {
    use common::process::ServerProcess;
    let mut server =
        ServerProcess::start(&[("MEDIA_UPLOAD_TTL_SECS", "1"), ("MEDIA_SWEEP_SECS", "3600")]).await;
    let dir = server.data_dir().to_path_buf();
    let client = reqwest::Client::new();
    let token = server.token("alice");
    let start_upload = |name: &'static str| {
        let (client, base, token) = (client.clone(), server.base.clone(), token.clone());
        async move {
            let data = pdf(3000);
            let form = reqwest::multipart::Form::new().part(
                "image",
                reqwest::multipart::Part::bytes(data[..1000].to_vec()).file_name(name),
            );
            let r = client
                .post(format!("{base}/api/v2/media/upload/chunk/"))
                .bearer_auth(&token)
                .header("content-range", "bytes 0-999/3000")
                .multipart(form)
                .send()
                .await
                .unwrap();
            let (st, b) = json_of(r).await;
            assert_eq!(st, 201, "{b}");
            b["upload_id"].as_str().unwrap().to_string()
        }
    };
    let first = start_upload("a.pdf").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(files(&dir.join("partial")), vec![first.clone()]);

    let report = run_sweep(&dir);
    assert_eq!(
        report,
        json!({"released": 1, "sessions_removed": 1, "skipped": 0, "failed": 0})
    );
    assert_eq!(files(&dir.join("partial")), Vec::<String>::new());
    // The server is still there, and knows the upload is gone.
    let second = start_upload("b.pdf").await;
    assert_ne!(second, first);

    // Stopped cleanly: no state file left, the command opens the database itself.
    let status = server.terminate().await;
    assert!(status.success(), "{status}");
    assert!(!dir.join("server.json").exists());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(run_sweep(&dir)["released"], 1);
}

#[tokio::test]
async fn after_kill_9_the_left_over_state_file_is_no_obstacle() {
    use common::process::ServerProcess;
    let mut server = ServerProcess::start(&[("MEDIA_SWEEP_SECS", "3600")]).await;
    let dir = server.data_dir().to_path_buf();
    assert!(dir.join("server.json").exists());
    server.process.start_kill().unwrap();
    server.process.wait().await.unwrap();
    assert!(dir.join("server.json").exists(), "kill -9 leaves it");
    assert_eq!(
        run_sweep(&dir),
        json!({"released": 0, "sessions_removed": 0, "skipped": 0, "failed": 0})
    );
}

/// Failures are one line of words on stderr and a non-zero exit, never a stack backtrace, even with
/// RUST_BACKTRACE=1 (which `media_local()` sets).
#[test]
fn no_command_shows_a_backtrace() {
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "sweep",
            vec![(
                "MEDIA_DATA_DIR",
                not_a_dir.path().join("x").display().to_string(),
            )],
        ),
        (
            "serve",
            vec![("MEDIA_LISTEN", "not-an-address".to_string())],
        ),
        ("sweep", vec![("MEDIA_MAX_CHUNK_BYTES", "lots".to_string())]),
    ];
    for (command, env) in cases {
        let out = media_local()
            .arg(command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} {env:?} succeeded");
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "{command} {env:?} showed a backtrace:\n{stderr}"
        );
        assert!(
            stderr.lines().any(|l| l.starts_with("error: ")),
            "{command} {env:?}: {stderr}"
        );
    }
}
