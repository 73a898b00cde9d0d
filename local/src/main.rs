//! `media-local [serve]` runs the API on the embedded default; `media-local sweep` cleans expired
//! uploads once and exits.

use anyhow::Context;
use media_local::config::{Backend, LocalConfig};
use media_shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = LocalConfig::from_env(&ProcessEnv).context("invalid configuration")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => serve(config).await,
        Some("sweep") => {
            let app = match &config.backend {
                Backend::Local => media_local::server::open(&config, "http://unused")?.0,
                Backend::Aws {
                    config: aws,
                    create_resources,
                } => {
                    media_shared::wiring::aws_app_with(
                        config.limits.clone(),
                        aws,
                        *create_resources,
                    )
                    .await?
                    .0
                }
            };
            let report =
                media_shared::cleanup::sweep(&app, time::OffsetDateTime::now_utc()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Some(other) => anyhow::bail!(
            "unknown command {other:?}: use `media-local [serve]` or `media-local sweep`"
        ),
    }
}

async fn serve(config: LocalConfig) -> anyhow::Result<()> {
    let dev = config.jwt_secret.is_none();
    let running = media_local::server::start(config).await?;
    println!("media-local listening on http://{}", running.addr);
    if dev {
        println!(
            "MEDIA_JWT_SECRET is not set: using the development secret. A token for user \"dev\":"
        );
        println!("  export TOKEN={}", running.auth.token("dev")?);
    }
    running.wait_for_signal().await
}
