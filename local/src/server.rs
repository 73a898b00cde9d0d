//! The embedded-default server: every route of the API on one port, the stored files under `/files/`,
//! and a periodic sweep of expired uploads. The handlers are the same ones the Lambda binaries call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use media_shared::adapters::aws::put_bucket_cors;
use media_shared::adapters::webhook::Webhook;
use media_shared::api::auth::{Hs256, IdpTokens, Verifier};
use media_shared::app::App;
use media_shared::cleanup;
use media_shared::wiring::{self, Stores, Wired};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api_entry::{api, ApiState};
use crate::config::{LocalConfig, DEV_SECRET};
use crate::{connections, control, cors, guards, try_it};

/// How long the tokens the server issues itself (the dev token at start-up, tests) stay valid.
const ISSUED_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct Running {
    pub addr: SocketAddr,
    pub app: App,
    pub stores: Stores,
    /// The key sources the server verifies tokens with.
    pub auth: Verifier,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// `server.json` in the data directory, for `media-local sweep` (embedded backend only).
    _control: Option<control::Published>,
    /// The `/metrics` listener (`MEDIA_METRICS_LISTEN`), stopped with the server.
    pub metrics: Option<crate::metrics::MetricsServer>,
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
    let Wired { mut app, stores } = wiring::build(
        &config.backend,
        config.limits.clone(),
        Some(&format!("{base}/files")),
    )
    .await?;
    // Before anything clones the App: the handlers, the sweep and the control route all count.
    let metrics = match config.metrics_listen {
        Some(at) => {
            let sink = Arc::new(crate::metrics::Prometheus::new());
            app.metrics = sink.clone();
            Some(crate::metrics::start(at, sink).await?)
        }
        None => None,
    };
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
    if let Some(hook) = &config.webhook {
        // The platform's events, queued for the webhook: handlers and the sweep never wait for it.
        app.events = Arc::new(Webhook::start(hook.clone()));
    }
    let auth = verifier(&config).await?;
    let shared = Arc::new(ApiState {
        app: app.clone(),
        auth: auth.clone(),
        body_timeout: config.connections.body_timeout,
    });

    // When the server runs with the development secret, the try-it page comes with a token filled in.
    let dev_token = match (&config.jwt_secret, auth.hs256()) {
        (None, Some(dev)) => Some(dev.issue("dev", ISSUED_TOKEN_TTL_SECS)?),
        _ => None,
    };
    let mut router = axum::Router::new().merge(try_it::routes(dev_token));
    if let Stores::Local { blobs, .. } = &stores {
        // On AWS the media URLs point at S3 (presigned) or the configured public base URL instead.
        router = router.nest_service("/files", crate::files::router(blobs.clone()));
    }
    // The sweep command cannot open the embedded database while this server holds it: it asks the
    // server instead (`control`). S3 and DynamoDB take any number of processes.
    let control = match &config.backend {
        wiring::Backend::Local { data_dir } => Some(control::Published::write(data_dir, addr)?),
        wiring::Backend::Aws { .. } => None,
    };
    let mut router = router.fallback(api).with_state(shared);
    if let Some(published) = &control {
        router = router.merge(control::routes(app.clone(), published.token()));
    }
    let router = router.layer(axum::middleware::map_response(
        |mut r: axum::response::Response| async move {
            // Stored files are served as what their sniffed extension says, never re-guessed by browsers.
            r.headers_mut().insert(
                "x-content-type-options",
                http::HeaderValue::from_static("nosniff"),
            );
            r
        },
    ));
    let router = guards::apply(router);
    let router = cors::apply(router, config.cors_origins.clone());

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sweeper = tokio::spawn(sweep_forever(app.clone(), config.sweep_every_secs));
    let limits = config.connections.clone();
    let task = tokio::spawn(async move {
        connections::serve(listener, router, limits, async move {
            let _ = stop_rx.await;
        })
        .await;
        sweeper.abort();
    });
    Ok(Running {
        addr,
        app,
        stores,
        auth,
        stop: Some(stop_tx),
        task,
        _control: control,
        metrics,
    })
}

impl Running {
    /// A token this server accepts for user `sub` (the dev token at start-up; tests), if it has an
    /// HS256 secret.
    pub fn token(&self, sub: &str) -> anyhow::Result<String> {
        self.auth
            .hs256()
            .context(
                "this server accepts only the identity provider's tokens (no MEDIA_JWT_SECRET)",
            )?
            .issue(sub, ISSUED_TOKEN_TTL_SECS)
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

/// The key sources of the configuration: the secret (the development one when neither it nor an
/// identity provider is configured) and the provider's key set, fetched now; a failure stops the
/// start (`media_shared::api::jwks` says why).
async fn verifier(config: &LocalConfig) -> anyhow::Result<Verifier> {
    let secret = match (&config.jwt_secret, &config.idp) {
        (Some(secret), _) => Some(secret.as_str()),
        (None, None) => Some(DEV_SECRET),
        (None, Some(_)) => None,
    };
    let idp =
        match &config.idp {
            Some(idp) => Some(IdpTokens::start(idp).await.context(
                "MEDIA_JWT_JWKS_URL: the identity provider's keys could not be fetched",
            )?),
            None => None,
        };
    Ok(Verifier::new(secret.map(|s| Hs256::new(s.as_bytes())), idp))
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
