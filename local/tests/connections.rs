//! The local server against clients that misbehave at the connection level (issue 11): disconnecting
//! mid-request, sending headers or bodies slowly or never, holding connections open, and sending
//! bodies nobody asked for. Raw TCP, so that the client does exactly what the test says.

mod common;
use std::time::{Duration, Instant};

/// On AWS, API Gateway holds the connections; these are the local server's own.
const LOCAL_SERVER_ONLY: &str = "connection handling is the local server's (API Gateway's on AWS)";

use common::*;
use media_local::connections::ConnectionLimits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.running().addr).await.unwrap()
}

/// A multipart chunk request, as bytes on the wire.
fn chunk_request(
    s: &TestServer,
    user: &str,
    upload_id: Option<&str>,
    range: &str,
    data: &[u8],
) -> Vec<u8> {
    let boundary = "----hardening-boundary";
    let mut body = Vec::new();
    if let Some(id) = upload_id {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\n{id}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.pdf\"\r\nContent-Type: application/pdf\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /api/v2/media/upload/chunk/ HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Range: {range}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        s.running().addr,
        s.auth(user),
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

fn complete_request(s: &TestServer, user: &str, id: &str, md5: &str) -> Vec<u8> {
    let body = format!("upload_id={id}&md5={md5}");
    format!(
        "POST /api/v2/media/upload/complete/ HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        s.running().addr,
        s.auth(user),
        body.len()
    )
    .into_bytes()
}

/// Reads one response (head and a Content-Length body); `None` if the server closed the connection
/// or said nothing within `wait`.
async fn response(stream: &mut TcpStream, wait: Duration) -> Option<(u16, String, Value)> {
    let read = async {
        let mut buf = Vec::new();
        let mut byte = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = stream.read(&mut byte).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&byte[..n]);
                }
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let body = &buf[end + 4..end + 4 + len];
                let json = serde_json::from_slice(body).unwrap_or(Value::Null);
                return Some((status, head, json));
            }
            let n = stream.read(&mut byte).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&byte[..n]);
        }
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Whether the server closed the connection (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read).await.is_ok()
}

/// Sends `request`, waits until `taken(session)` says the server is inside the storage sequence,
/// then resets the connection (SO_LINGER 0: an RST, as a client killed mid-request sends).
async fn reset_when(
    s: &TestServer,
    request: Vec<u8>,
    id: &str,
    taken: impl Fn(&media_shared::domain::UploadSession) -> bool,
) {
    let mut stream = connect(s).await;
    stream.write_all(&request).await.unwrap();
    let start = Instant::now();
    loop {
        let session = s
            .running()
            .app
            .uploads
            .get_upload(id)
            .await
            .unwrap()
            .unwrap();
        if taken(&session) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the request never got that far"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stream.set_zero_linger().unwrap();
    drop(stream);
}

const FREED_WITHIN: Duration = Duration::from_secs(5);

/// Sends `request`, waits `delay`, then resets the connection as `reset_when` does.
async fn reset_after(s: &TestServer, request: Vec<u8>, delay: Duration) {
    let mut stream = connect(s).await;
    stream.write_all(&request).await.unwrap();
    tokio::time::sleep(delay).await;
    stream.set_zero_linger().unwrap();
    drop(stream);
}

/// Retries `request` until it succeeds; fails if that takes `FREED_WITHIN` or more: far below the
/// lease (45 s) a request that went away could leave behind, and above what the request still
/// running in the server takes on moto on a loaded machine (a retried chunk may also lose its commit
/// to it: 409, then it finds its chunk accepted).
async fn retry_within_a_second(s: &TestServer, request: &[u8], ok: &[u16]) -> Value {
    let start = Instant::now();
    loop {
        let mut stream = connect(s).await;
        stream.write_all(request).await.unwrap();
        let (status, _, body) = response(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer");
        if ok.contains(&status) {
            return body;
        }
        assert_eq!(
            status, 409,
            "only the running request may stand in the way: {body}"
        );
        assert!(
            start.elapsed() < FREED_WITHIN,
            "the upload stayed locked after its client went away: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_reset_mid_chunk_and_mid_completion_leaves_the_upload_free() {
    if skip_on_lambda(LOCAL_SERVER_ONLY) {
        return;
    }
    let s = TestServer::start().await;
    // A 3.4 MB chunk takes long enough to be reset while it is hashed and written. Chunks take no
    // lease (their commit is conditional on the version they read), so nothing of the running request
    // is visible in the session: reset it shortly after it was sent.
    let data = png(1200, 1000, 5);
    let total = data.len();
    let first = 200_000;
    let (st, b) = s
        .chunk(
            "alice",
            None,
            Some(format!("bytes 0-{}/{total}", first - 1)),
            data[..first].to_vec(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();

    let range = format!("bytes {first}-{}/{total}", total - 1);
    let chunk = chunk_request(&s, "alice", Some(&id), &range, &data[first..]);
    reset_after(&s, chunk.clone(), Duration::from_millis(5)).await;
    let b = retry_within_a_second(&s, &chunk, &[201]).await;
    assert_eq!(b["offset"], total as u64, "{b}");

    // Completing makes the thumbnail of a 1200 x 1000 image while it holds the upload.
    let complete = complete_request(&s, "alice", &id, &md5_hex(&data));
    reset_when(&s, complete.clone(), &id, |u| {
        matches!(
            u.status,
            media_shared::domain::UploadStatus::Completing { .. }
        )
    })
    .await;
    let media = retry_within_a_second(&s, &complete, &[200, 201]).await;
    let (_, served) = s.fetch(media["image"].as_str().unwrap()).await;
    assert_eq!(md5_hex(&served), md5_hex(&data));
}

#[tokio::test]
async fn refusals_are_answered_from_the_head_without_waiting_for_the_body() {
    if skip_on_lambda(LOCAL_SERVER_ONLY) {
        return;
    }
    let s = TestServer::start().await;
    let addr = s.running().addr;
    let token = s.auth("alice");
    // Each request announces 4 MiB and sends none of it: only an answer given before reading the
    // body can arrive.
    let cases = [
        (
            "POST",
            "/api/v2/media/upload/chunk/",
            None,
            401,
            "not_authenticated",
        ),
        (
            "POST",
            "/api/v2/media/upload/chunk/",
            Some("Bearer nonsense"),
            401,
            "not_authenticated",
        ),
        (
            "POST",
            "/api/v2/nothing/",
            Some(token.as_str()),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v2/media/17/",
            Some(token.as_str()),
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/api/v2/media/upload/chunk/",
            Some(token.as_str()),
            413,
            "chunk_too_large",
        ),
    ];
    for (method, path, auth, status, code_) in cases {
        let length = if status == 413 { 5 << 20 } else { 4 << 20 };
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n"
        );
        let mut stream = connect(&s).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        let (st, _, body) = response(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("{method} {path}: no answer before the body"));
        assert_eq!(
            (st, code(&body)),
            (status, code_),
            "{method} {path}: {body}"
        );
    }
    // A form endpoint takes a small body; a large one is refused in its own words.
    let head = format!(
        "POST /api/v2/media/upload/complete/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\nContent-Length: {}\r\n\r\n",
        4 << 20
    );
    let mut stream = connect(&s).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let (st, _, body) = response(&mut stream, Duration::from_secs(2)).await.unwrap();
    assert_eq!((st, code(&body)), (413, "body_too_large"), "{body}");
}

fn quick(s: &mut media_local::config::LocalConfig) {
    s.connections = ConnectionLimits {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
    };
}

#[tokio::test]
async fn slow_headers_idle_connections_and_slow_bodies_time_out() {
    if skip_on_lambda(LOCAL_SERVER_ONLY) {
        return;
    }
    let s = TestServer::start_with(quick).await;
    let addr = s.running().addr;

    // Headers that never end: closed once the head's second is up.
    let mut slow = connect(&s).await;
    let start = Instant::now();
    slow.write_all(format!("GET /api/v2/media/1/ HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut idle = connect(&s).await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(4)).await,
        "slow header stayed open"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    // A connection that sends nothing at all: closed after the idle time, not the header time.
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)).await,
        "idle connection stayed open"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );

    // A keep-alive connection after its answer: idle too.
    let mut kept = connect(&s).await;
    kept.write_all(
        format!(
            "GET /api/v2/media/1/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\r\n",
            s.auth("alice")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (st, _, _) = response(&mut kept, Duration::from_secs(2)).await.unwrap();
    assert_eq!(st, 404);
    assert!(
        closed_within(&mut kept, Duration::from_secs(4)).await,
        "kept-alive connection stayed open"
    );

    // A body that stops coming: 408 in the envelope.
    let mut body = connect(&s).await;
    body.write_all(
        format!("POST /api/v2/media/upload/complete/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nupload_id=", s.auth("alice"))
            .as_bytes(),
    )
    .await
    .unwrap();
    let (st, _, b) = response(&mut body, Duration::from_secs(4))
        .await
        .expect("an answer");
    assert_eq!((st, code(&b)), (408, "request_timeout"), "{b}");

    // A slow but steady client is not cut off by the idle clock while its request is handled.
    let data = pdf(3000);
    let id = s.upload("alice", &data, 3000).await;
    let (st, _) = s.complete("alice", &id, &md5_hex(&data), None).await;
    assert_eq!(st, 201);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    if skip_on_lambda(LOCAL_SERVER_ONLY) {
        return;
    }
    let s = TestServer::start_with(|c| {
        c.connections = ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        }
    })
    .await;
    let addr = s.running().addr;
    let get = format!(
        "GET /api/v2/media/1/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\r\n",
        s.auth("alice")
    );
    let mut a = connect(&s).await;
    let _b = connect(&s).await;
    a.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(
        response(&mut a, Duration::from_secs(2)).await.unwrap().0,
        404
    );
    // Two connections are open: a third is not served...
    let mut c = connect(&s).await;
    c.write_all(get.as_bytes()).await.unwrap();
    assert!(
        response(&mut c, Duration::from_millis(700)).await.is_none(),
        "served beyond the cap"
    );
    // ...until one of them goes.
    drop(a);
    let (st, _, _) = response(&mut c, Duration::from_secs(3))
        .await
        .expect("served once a slot freed");
    assert_eq!(st, 404);
}

#[tokio::test]
async fn errors_of_the_server_itself_are_json() {
    if skip_on_lambda(LOCAL_SERVER_ONLY) {
        return;
    }
    let s = TestServer::start().await;
    let addr = s.running().addr;
    let send = |req: String| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(req.as_bytes()).await.unwrap();
        response(&mut stream, Duration::from_secs(2))
            .await
            .expect("an answer")
    };
    // A URL and headers over our limits (under hyper's own): the envelope, not a bare status.
    let long = "a".repeat(10_000);
    let (st, head, b) = send(format!(
        "GET /api/v2/media/{long}/ HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    ))
    .await;
    assert_eq!((st, code(&b)), (414, "uri_too_long"), "{head}");
    let many: String = (0..110).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (st, _, b) = send(format!(
        "GET /api/v2/media/1/ HTTP/1.1\r\nHost: {addr}\r\n{many}\r\n"
    ))
    .await;
    assert_eq!((st, code(&b)), (431, "headers_too_large"));
    // The file server's own 404 and 405 (files are served by this server on the embedded backend).
    if !matches!(
        s.running().stores,
        media_shared::wiring::Stores::Local { .. }
    ) {
        return;
    }
    let (st, head, b) = send(format!(
        "GET /files/media/nothing.png HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    ))
    .await;
    assert_eq!((st, code(&b)), (404, "not_found"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let (st, _, b) = send(format!(
        "POST /files/media/nothing.png HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    assert_eq!((st, code(&b)), (405, "method_not_allowed"), "{b}");
}
