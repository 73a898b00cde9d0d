//! `media-local sweep` next to a running server.
//!
//! The embedded database admits one process at a time, so a sweep command cannot open it while the
//! server runs (issue 11: "Database already open. Cannot acquire lock."). The running server does the
//! sweep instead when asked: at start-up it writes `server.json` into its data directory (readable by
//! its owner only) with its address and a random token, and answers `POST /_local/sweep` from a
//! loopback address that presents the token. The command finds the file, asks, and prints the report;
//! with no server running (no file, or nobody answering at its address) it opens the database itself.
//! A request without the token, or from another host, is an unknown route like any other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use media_shared::api::response;
use media_shared::app::App;
use media_shared::cleanup::{self, SweepReport};
use media_shared::domain::ApiError;
use serde::{Deserialize, Serialize};

/// The file a running server leaves in its data directory.
pub const STATE_FILE: &str = "server.json";
/// The path of the sweep on the server.
pub const SWEEP_PATH: &str = "/_local/sweep";
const TOKEN_HEADER: &str = "x-media-control-token";

/// What `server.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerState {
    /// Where the server listens (as bound: may be an unspecified address such as 0.0.0.0).
    pub address: SocketAddr,
    pub token: String,
    pub pid: u32,
}

impl ServerState {
    /// The address to reach the server at from this host.
    fn loopback(&self) -> SocketAddr {
        let ip = match self.address.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.address.port())
    }
}

/// The state file of a running server; removed again when the server stops.
pub struct Published {
    path: PathBuf,
    token: String,
}

impl Published {
    /// Writes `server.json` for a server listening on `address` (owner-only, replaced atomically).
    pub fn write(data_dir: &Path, address: SocketAddr) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let state = ServerState {
            address,
            token: token.clone(),
            pid: std::process::id(),
        };
        let path = data_dir.join(STATE_FILE);
        let tmp = data_dir.join(format!("{STATE_FILE}.{}", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(serde_json::to_string(&state)?.as_bytes())?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(Published { path, token })
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        // Only ours: the database lock means no other server used this directory meanwhile.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Control {
    app: App,
    token: String,
}

/// `POST /_local/sweep` for the holder of `token` on this host.
pub fn routes(app: App, token: &str) -> axum::Router {
    let state = Arc::new(Control {
        app,
        token: token.to_string(),
    });
    axum::Router::new()
        .route(SWEEP_PATH, axum::routing::post(sweep))
        .with_state(state)
}

async fn sweep(
    State(control): State<Arc<Control>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    let presented = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !peer.ip().is_loopback() || !same(presented, control.token.as_bytes()) {
        return into_axum(response::error(&ApiError::NotFound("route")));
    }
    match cleanup::sweep(&control.app, time::OffsetDateTime::now_utc()).await {
        Ok(report) => into_axum(response::json(
            200,
            &serde_json::to_value(report).unwrap_or_default(),
        )),
        Err(e) => into_axum(response::error(&ApiError::Internal(e))),
    }
}

/// Compares without stopping at the first difference (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn into_axum(resp: http::Response<bytes::Bytes>) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body).into_response()
}

/// The state of the server running on `data_dir`, if one left its file there.
pub fn running_server(data_dir: &Path) -> anyhow::Result<Option<ServerState>> {
    let path = data_dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Asks the server to sweep. `Ok(None)`: no server of this directory answers at its address (one that
/// died without removing its file), so the caller may open the database itself.
pub async fn ask_sweep(state: &ServerState) -> anyhow::Result<Option<SweepReport>> {
    let url = format!("http://{}{SWEEP_PATH}", state.loopback());
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(600))
        .build()?;
    let sent = client
        .post(&url)
        .header(TOKEN_HEADER, &state.token)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("asking the server at {url} to sweep")),
    };
    let status = resp.status();
    if status == http::StatusCode::NOT_FOUND {
        // Something else listens there now (the server died and its port was reused), or a server
        // that does not know this token: not the server holding this directory.
        return Ok(None);
    }
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the server at {url} answered {status}: {body}");
    }
    let report = serde_json::from_str(&body)
        .with_context(|| format!("the server's sweep report is not one: {body}"))?;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn the_state_file_is_the_owners_and_goes_with_the_server() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let published = Published::write(dir.path(), addr).unwrap();
        let state = running_server(dir.path()).unwrap().unwrap();
        assert_eq!(state.token, published.token());
        assert_eq!(state.loopback(), "127.0.0.1:8080".parse().unwrap());
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(published);
        assert!(running_server(dir.path()).unwrap().is_none());
    }
}
