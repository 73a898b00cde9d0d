//! The embedded-default server: every route of the API on one port, the stored files under `/files/`,
//! and a periodic sweep of expired uploads. The handlers are the same ones the Lambda binaries call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use media_shared::adapters::aws::put_bucket_cors;
use media_shared::api::auth::{ClientIp, Hs256};
use media_shared::api::{response, routes};
use media_shared::app::App;
use media_shared::cleanup;
use media_shared::domain::ApiError;
use media_shared::wiring::{self, Stores, Wired};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{LocalConfig, DEV_SECRET};
use crate::{cors, try_it};

/// Room for the multipart framing and form fields around the largest allowed chunk.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// How long the tokens the server issues itself (the dev token at start-up, tests) stay valid.
const ISSUED_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

struct Shared {
    app: App,
    auth: Arc<Hs256>,
    max_body: u64,
}

pub struct Running {
    pub addr: SocketAddr,
    pub app: App,
    pub stores: Stores,
    /// The key the server verifies tokens with.
    pub auth: Arc<Hs256>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Opens the stores, binds the port and serves until `Running::stop` (or the process ends).
pub async fn start(config: LocalConfig) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding MEDIA_LISTEN {}", config.listen))?;
    let addr = listener.local_addr()?;
    let base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let Wired { app, stores } = wiring::build(
        &config.backend,
        config.limits.clone(),
        Some(&format!("{base}/files")),
    )
    .await?;
    if let (
        wiring::Backend::Aws {
            create_resources: true,
            ..
        },
        Stores::Aws {
            clients,
            config: aws,
        },
    ) = (&config.backend, &stores)
    {
        // Pages on the allowed origins may fetch the objects, as template.yaml lets them.
        put_bucket_cors(&clients.s3, &aws.bucket, &config.cors_origins).await?;
    }
    let secret = config
        .jwt_secret
        .clone()
        .unwrap_or_else(|| DEV_SECRET.to_string());
    let auth = Arc::new(Hs256::new(secret.as_bytes()));
    let shared = Arc::new(Shared {
        app: app.clone(),
        auth: auth.clone(),
        max_body: config.limits.max_chunk_bytes + MULTIPART_OVERHEAD,
    });

    // When the server runs with the development secret, the try-it page comes with a token filled in.
    let dev_token = match &config.jwt_secret {
        None => Some(auth.issue("dev", ISSUED_TOKEN_TTL_SECS)?),
        Some(_) => None,
    };
    let mut router = axum::Router::new().merge(try_it::routes(dev_token));
    if let Stores::Local { blobs, .. } = &stores {
        // On AWS the media URLs point at S3 (presigned) or the configured public base URL instead.
        router = router.nest_service("/files", crate::files::router(blobs.clone()));
    }
    let router = router
        .fallback(api)
        .with_state(shared)
        .layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                // Stored files are served as what their sniffed extension says, never re-guessed by browsers.
                r.headers_mut().insert(
                    "x-content-type-options",
                    http::HeaderValue::from_static("nosniff"),
                );
                r
            },
        ));
    let router = cors::apply(router, config.cors_origins.clone());

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sweeper = tokio::spawn(sweep_forever(app.clone(), config.sweep_every_secs));
    let task = tokio::spawn(async move {
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "server stopped");
        }
        sweeper.abort();
    });
    Ok(Running {
        addr,
        app,
        stores,
        auth,
        stop: Some(stop_tx),
        task,
    })
}

impl Running {
    /// A token this server accepts for user `sub` (the dev token at start-up; tests).
    pub fn token(&self, sub: &str) -> anyhow::Result<String> {
        self.auth.issue(sub, ISSUED_TOKEN_TTL_SECS)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM).
    pub async fn wait_for_signal(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }
}

async fn sweep_forever(app: App, every_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs));
    loop {
        tick.tick().await;
        if let Err(e) = cleanup::sweep(&app, time::OffsetDateTime::now_utc()).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "sweep failed; retrying at the next tick"
            );
        }
    }
}

/// Every API path: read the body (bounded), resolve the caller, run the shared router.
async fn api(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (mut parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, shared.max_body).await {
        Ok(b) => b,
        Err(e) => return into_axum(response::error(&e)),
    };
    parts.extensions.insert(shared.auth.caller(&parts.headers));
    parts.extensions.insert(ClientIp(peer.ip()));
    let resp = routes::route(&shared.app, http::Request::from_parts(parts, body)).await;
    into_axum(resp)
}

fn into_axum(resp: http::Response<Bytes>) -> axum::response::Response {
    resp.map(Body::from)
}

/// Reads the body into one buffer sized from Content-Length, frame by frame, so a chunk is held once
/// (collecting frames and then concatenating them would hold it twice). Over `limit`: 413.
async fn read_body(
    mut body: Body,
    headers: &http::HeaderMap,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge {
        max: limit - MULTIPART_OVERHEAD,
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "body_read_failed",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
