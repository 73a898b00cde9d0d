//! Concurrency and crashes: 16 clients racing for one chunk, 16 uploads interleaved, and `kill -9` of
//! the real server binary in the middle of uploads. Every file must complete with the right MD5 and
//! no acknowledged chunk may be lost.

mod common;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn sixteen_clients_sending_the_same_chunk_one_write_wins() {
    // (Exactly one write is shown by the offsets: each 201 says `end`, and the file is intact.)
    let s = Arc::new(TestServer::start().await);
    let data = pdf(3 * 204_800);
    let total = data.len();
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-204799/{total}")),
            data[..204_800].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    for start in [204_800, 409_600] {
        let end = (start + 204_800).min(total);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (s, id, piece) = (s.clone(), id.clone(), data[start..end].to_vec());
                tokio::spawn(async move {
                    s.chunk(
                        "alice",
                        Some(&id),
                        Some(format!("bytes {start}-{}/{total}", end - 1)),
                        piece,
                    )
                    .await
                })
            })
            .collect();
        // One write wins; the same chunk arriving after it is a retry of the accepted chunk and
        // gets the same 201 without a second write (the MD5 at completion shows the bytes are
        // there once).
        let mut won = 0;
        for t in tasks {
            let (st, b) = t.await.unwrap();
            match st {
                201 => {
                    won += 1;
                    assert_eq!(b["offset"], end as u64);
                }
                409 => assert_eq!(code(&b), "conflict"),
                400 => assert_eq!(
                    (code(&b), b["offset"].as_u64()),
                    ("offset_mismatch", Some(end as u64))
                ),
                other => panic!("{other}: {b}"),
            }
        }
        assert!(won >= 1, "one write wins at offset {start}");
    }
    let (st, media) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 201, "{media}");
    assert_eq!(s.fetch(media["url"].as_str().unwrap()).await.1, data);
}

#[tokio::test]
async fn sixteen_uploads_interleaved_all_complete_intact() {
    let s = Arc::new(TestServer::start().await);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let data = if i % 2 == 0 {
                    png(100 + i as u32, 80, i)
                } else {
                    pdf(300_000 + i as usize * 1000)
                };
                let user = format!("user{}", i % 3);
                let id = s.upload(&user, &data, 16_384).await;
                let (st, media) = s.complete(&user, &id, &md5_hex(&data), None).await;
                assert_eq!(st, 201, "{media}");
                let url = media["image"]
                    .as_str()
                    .or(media["url"].as_str())
                    .unwrap()
                    .to_string();
                assert_eq!(
                    md5_hex(&s.fetch(&url).await.1),
                    md5_hex(&data),
                    "upload {i}"
                );
                media["id"].as_u64().unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16, "every upload got its own media id");
}

/// The real binary as a child process on a fixed port and data directory.
struct Child {
    process: tokio::process::Child,
}

async fn spawn_server(dir: &std::path::Path, port: u16) -> Child {
    let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_media-local"))
        .env("MEDIA_LISTEN", format!("127.0.0.1:{port}"))
        .env("MEDIA_DATA_DIR", dir)
        .env("MEDIA_JWT_SECRET", SECRET)
        .env("MEDIA_MAX_DOC_BYTES", "100000000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Child { process };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not start");
}

/// One client: sends its file chunk by chunk, retrying through server deaths. Returns the upload id.
async fn resilient_client(
    base: String,
    token: String,
    data: Arc<Vec<u8>>,
    chunk: usize,
    acked_lost: Arc<std::sync::Mutex<Vec<String>>>,
    interrupted: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let total = data.len();
    let (mut id, mut offset, mut acked) = (None::<String>, 0usize, 0usize);
    while offset < total {
        let end = (offset + chunk).min(total);
        let mut form = reqwest::multipart::Form::new();
        if let Some(id) = &id {
            form = form.text("upload_id", id.clone());
        }
        form = form.part(
            "image",
            reqwest::multipart::Part::bytes(data[offset..end].to_vec()).file_name("big.pdf"),
        );
        let sent = client
            .post(format!("{base}/api/v2/media/upload/chunk/"))
            .bearer_auth(&token)
            .header(
                "content-range",
                format!("bytes {offset}-{}/{total}", end - 1),
            )
            .multipart(form)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // The server died under us: try the same chunk again once it is back.
            Err(_) => {
                interrupted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let Ok(body) = resp.json::<Value>().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match status {
            201 => {
                id = Some(body["upload_id"].as_str().unwrap().to_string());
                offset = body["offset"].as_u64().unwrap() as usize;
                acked = offset;
            }
            400 if body["offset"].is_u64() && id.is_some() => {
                let server = body["offset"].as_u64().unwrap() as usize;
                if server < acked {
                    acked_lost
                        .lock()
                        .unwrap()
                        .push(format!("acknowledged {acked}, server has {server}"));
                }
                offset = server;
            }
            409 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("chunk at {offset}: {other} {body}"),
        }
    }
    id.unwrap()
}

#[tokio::test]
async fn kill_9_during_uploads_loses_no_acknowledged_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let token = media_shared::api::auth::Hs256::new(SECRET.as_bytes())
        .issue("alice", 3600)
        .unwrap();
    let mut server = spawn_server(dir.path(), port).await;
    let lost = Arc::new(std::sync::Mutex::new(Vec::new()));
    let interrupted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let files: Vec<Arc<Vec<u8>>> = (0..6)
        .map(|i| Arc::new(pdf(6_000_000 + i * 1_000)))
        .collect();
    let clients: Vec<_> = files
        .iter()
        .map(|data| {
            tokio::spawn(resilient_client(
                base.clone(),
                token.clone(),
                data.clone(),
                512 * 1024,
                lost.clone(),
                interrupted.clone(),
            ))
        })
        .collect();

    // Kill -9 three times while the clients are busy (between and during chunk writes), restarting
    // on the same port and data each time.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        server.process.start_kill().unwrap();
        server.process.wait().await.unwrap();
        server = spawn_server(dir.path(), port).await;
    }
    let mut ids = Vec::new();
    for c in clients {
        ids.push(
            tokio::time::timeout(Duration::from_secs(120), c)
                .await
                .expect("clients finish")
                .unwrap(),
        );
    }
    assert!(
        lost.lock().unwrap().is_empty(),
        "acknowledged chunks were lost: {:?}",
        lost.lock().unwrap()
    );
    let interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        interrupted > 0,
        "the kills must land while requests are in flight"
    );
    eprintln!("{interrupted} requests died with the server and were retried");

    let client = reqwest::Client::new();
    for (id, data) in ids.iter().zip(&files) {
        let form = [("upload_id", id.clone()), ("md5", md5_hex(data))];
        let r = client
            .post(format!("{base}/api/v2/media/upload/complete/"))
            .bearer_auth(&token)
            .form(&form)
            .send()
            .await
            .unwrap();
        let (st, media) = json_of(r).await;
        assert_eq!(st, 201, "{media}");
        let served = client
            .get(media["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(md5_hex(&served), md5_hex(data));
    }
    server.process.start_kill().unwrap();
}
