//! `media-local [serve]` runs the API on the embedded default (or on AWS with `MEDIA_BACKEND=aws`);
//! `media-local sweep` cleans expired uploads once (through the running server, if one uses the data
//! directory); `media-local upload FILE` uploads a file like the official client, with progress and
//! resume.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use media_local::config::LocalConfig;
use media_local::control;
use media_local::uploader::{self, Outcome, UploadOptions};
use media_shared::adapters::webhook::Webhook;
use media_shared::cleanup::SweepReport;
use media_shared::config::ProcessEnv;
use media_shared::wiring;

#[derive(Parser)]
#[command(
    name = "media-local",
    version,
    about = "The media upload service on the embedded default"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default); configuration from MEDIA_* variables, see the README.
    Serve,
    /// Free the storage of expired uploads once and print what was removed.
    Sweep,
    /// Upload a file in chunks, with progress; run it again to resume an interrupted upload.
    Upload {
        file: PathBuf,
        /// Base URL of the service.
        #[arg(long, env = "MEDIA_API_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token (the server prints a development one at start-up).
        #[arg(long, env = "TOKEN", hide_env_values = true)]
        token: String,
        /// Bytes per chunk (the official client sends 204800).
        #[arg(long, default_value_t = 204_800)]
        chunk_size: usize,
        /// Media type to ask for at completion: image, eimage or doc (default: from the content).
        #[arg(long = "type")]
        media_type: Option<String>,
    },
}

fn main() -> ExitCode {
    // A failure is told in one line of words, never with a stack backtrace (whatever RUST_BACKTRACE
    // says): these are commands for people running a server, not for debugging this program.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("media-local: internal error: {info}");
    }));
    media_local::allocator::bound_large_blocks();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config()?).await,
        Command::Sweep => {
            let report = sweep(&config()?).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Upload {
            file,
            url,
            token,
            chunk_size,
            media_type,
        } => {
            let opts = UploadOptions {
                file,
                api: url,
                token,
                chunk_size,
                media_type,
                progress: true,
                max_chunks: None,
                state_dir: None,
            };
            match uploader::upload(&reqwest::Client::new(), &opts).await? {
                Outcome::Completed {
                    media,
                    resumed_from,
                    ..
                } => {
                    if resumed_from > 0 {
                        eprintln!("resumed at byte {resumed_from}");
                    }
                    println!("{}", serde_json::to_string_pretty(&media)?);
                }
                Outcome::Interrupted { offset, .. } => {
                    eprintln!("interrupted at byte {offset}; run again to resume")
                }
            }
            Ok(())
        }
    }
}

/// One sweep: by the server running on this data directory if there is one (it holds the embedded
/// database), else here.
async fn sweep(config: &LocalConfig) -> anyhow::Result<SweepReport> {
    if let wiring::Backend::Local { data_dir } = &config.backend {
        if let Some(server) = control::running_server(data_dir)? {
            if let Some(report) = control::ask_sweep(&server).await? {
                return Ok(report);
            }
            tracing::info!(
                address = %server.address,
                "no server answers at the address in {}; sweeping here",
                control::STATE_FILE
            );
        }
    }
    // The sweep serves no files, so its App is built without a files URL.
    let mut app = wiring::build(&config.backend, config.limits.clone(), None)
        .await
        .map_err(|e| match &config.backend {
            wiring::Backend::Local { data_dir } => e.context(format!(
                "opening the data directory {} (if a media-local server uses it, it must be one \
                 that leaves {} there: a current version)",
                data_dir.display(),
                control::STATE_FILE
            )),
            wiring::Backend::Aws { .. } => e,
        })?
        .app;
    let webhook = config
        .webhook
        .clone()
        .map(|hook| std::sync::Arc::new(Webhook::start(hook)));
    if let Some(hook) = &webhook {
        app.events = hook.clone();
    }
    let report = media_shared::cleanup::sweep(&app, time::OffsetDateTime::now_utc()).await;
    // This process ends here: its expiry events get a little time to reach the webhook.
    if let Some(hook) = webhook {
        if !hook.drain(std::time::Duration::from_secs(30)).await {
            tracing::warn!(stats = ?hook.stats(), "exiting with webhook events undelivered");
        }
    }
    report
}

fn config() -> anyhow::Result<LocalConfig> {
    LocalConfig::from_env(&ProcessEnv).context("invalid configuration")
}

async fn serve(config: LocalConfig) -> anyhow::Result<()> {
    let dev = config.jwt_secret.is_none() && config.idp.is_none();
    let running = media_local::server::start(config).await?;
    println!("media-local listening on http://{}", running.addr);
    println!("try it in a browser: http://{}/", running.addr);
    if dev {
        println!(
            "MEDIA_JWT_SECRET is not set: using the development secret. A token for user \"dev\":"
        );
        println!("  export TOKEN={}", running.token("dev")?);
    }
    running.wait_for_signal().await
}
