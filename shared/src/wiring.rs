//! Building the `App` from configuration: the one place that knows which adapters make up each
//! backend. Every entry point goes through `build`: the local server and its `sweep` command (on the
//! backend `MEDIA_BACKEND` names), the Lambda functions (always on AWS, via `lambda_app`) and the tests.
//!
//! The local backend exists only with the crate's `local` feature (media-local and the test kit
//! enable it). `lambda_app` never reaches it even when the feature is on (a workspace build unifies
//! features across members), so its code is never linked into a function's bootstrap.

#[cfg(feature = "local")]
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "local")]
use anyhow::Context;

use crate::adapters::aws::{
    create_resources, AwsClients, AwsConfig, DynamoMeta, EventBus, S3Blobs,
};
#[cfg(feature = "local")]
use crate::adapters::local::{LocalBlobs, LocalMeta};
use crate::app::App;
use crate::config::{self, ConfigError, Env};
use crate::domain::Limits;
use crate::ports::{EventSink, NoEvents};

/// Where the service keeps its data: the embedded default, or S3 + DynamoDB (or servers speaking
/// their protocols, e.g. moto on loopback via `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// Files on disk and a redb database, under `MEDIA_DATA_DIR`.
    #[cfg(feature = "local")]
    Local { data_dir: PathBuf },
    Aws {
        config: AwsConfig,
        /// `MEDIA_CREATE_RESOURCES=1`: create a missing bucket and table (same keys, TTL and stream as
        /// the SAM template), so a fresh S3/DynamoDB-compatible server needs no other step. On AWS
        /// the SAM template owns them.
        create_resources: bool,
    },
}

impl Backend {
    /// The backend `MEDIA_BACKEND` names (`local`, the default, or `aws`) with its settings.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        match env.get("MEDIA_BACKEND").as_deref().map(str::trim) {
            None | Some("local") => Self::local_from_env(env),
            Some("aws") => Self::aws_from_env(env),
            Some(other) => Err(ConfigError {
                var: "MEDIA_BACKEND",
                message: format!("{other:?} is not a backend: use local or aws"),
            }),
        }
    }

    #[cfg(feature = "local")]
    fn local_from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Backend::Local {
            data_dir: env
                .get("MEDIA_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".media-data")),
        })
    }

    /// A build without the local backend says so, rather than start on AWS unasked.
    #[cfg(not(feature = "local"))]
    fn local_from_env(_env: &dyn Env) -> Result<Self, ConfigError> {
        Err(ConfigError {
            var: "MEDIA_BACKEND",
            message: "local (the default) is not in this build (media-shared without its `local` \
                      feature, as in the Lambda functions): set MEDIA_BACKEND=aws"
                .into(),
        })
    }

    /// The AWS backend whatever `MEDIA_BACKEND` says: a Lambda function has no disk to keep data on.
    pub fn aws_from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let (config, create_resources) = aws_settings(env)?;
        Ok(Backend::Aws {
            config,
            create_resources,
        })
    }
}

/// `AwsConfig` and `MEDIA_CREATE_RESOURCES`.
fn aws_settings(env: &dyn Env) -> Result<(AwsConfig, bool), ConfigError> {
    Ok((
        AwsConfig::from_env(env)?,
        config::bool_var(env, "MEDIA_CREATE_RESOURCES", false)?,
    ))
}

/// The functions run on AWS only: `MEDIA_BACKEND` unset or `aws`. Anything else (`local`, whose code
/// a function's build leaves out) stops the cold start with this error instead of being ignored.
fn lambda_backend(env: &dyn Env) -> Result<(), ConfigError> {
    match env.get("MEDIA_BACKEND").as_deref().map(str::trim) {
        None | Some("aws") => Ok(()),
        Some(other) => Err(ConfigError {
            var: "MEDIA_BACKEND",
            message: format!(
                "{other:?}: the Lambda functions run on AWS only (S3 and DynamoDB); unset it or \
                 set aws"
            ),
        }),
    }
}

/// The stores behind an `App`, for what is not a port: serving the local files, inspection in tests.
pub enum Stores {
    #[cfg(feature = "local")]
    Local {
        meta: LocalMeta,
        blobs: Arc<LocalBlobs>,
    },
    Aws {
        clients: AwsClients,
        config: AwsConfig,
    },
}

/// An `App` and the stores it was built on.
pub struct Wired {
    pub app: App,
    pub stores: Stores,
}

/// Builds the App on `backend`. `files_url` is where the process serves the local backend's files
/// (`http://127.0.0.1:8080/files`, the local server); `None` in a process that serves none (the
/// sweep command, the Lambda functions): its App makes no media URLs from local files. On AWS, media
/// URLs come from `AwsConfig` (public base URL or presigned) instead.
#[cfg_attr(not(feature = "local"), allow(unused_variables))]
pub async fn build(
    backend: &Backend,
    limits: Limits,
    files_url: Option<&str>,
) -> anyhow::Result<Wired> {
    match backend {
        #[cfg(feature = "local")]
        Backend::Local { data_dir } => build_local(data_dir, limits, files_url).await,
        Backend::Aws {
            config,
            create_resources,
        } => {
            let (app, clients) = build_aws(config, *create_resources, limits).await?;
            Ok(Wired {
                app,
                stores: Stores::Aws {
                    clients,
                    config: config.clone(),
                },
            })
        }
    }
}

#[cfg(feature = "local")]
async fn build_local(
    data_dir: &std::path::Path,
    limits: Limits,
    files_url: Option<&str>,
) -> anyhow::Result<Wired> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating MEDIA_DATA_DIR {}", data_dir.display()))?;
    let meta = LocalMeta::open(&data_dir.join("media.redb"))?;
    let blobs = Arc::new(match files_url {
        Some(url) => LocalBlobs::new(data_dir, url)?,
        None => LocalBlobs::unserved(data_dir)?,
    });
    // Before any request: sessions whose progress a crash left only in their partial files.
    crate::adapters::local::recover(&meta, &blobs).await?;
    let app = App {
        limits,
        uploads: Arc::new(meta.clone()),
        media: Arc::new(meta.clone()),
        blobs: blobs.clone(),
        events: Arc::new(NoEvents),
        metrics: crate::metrics::discard(),
    };
    Ok(Wired {
        app,
        stores: Stores::Local { meta, blobs },
    })
}

/// The App on AWS and its clients; not yet a `Wired`, whose `Stores` may hold the local backend.
async fn build_aws(
    config: &AwsConfig,
    create: bool,
    limits: Limits,
) -> anyhow::Result<(App, AwsClients)> {
    let clients = AwsClients::from_env(config).await;
    if create {
        create_resources(&clients, config).await?;
    }
    let meta = Arc::new(
        DynamoMeta::new(clients.dynamodb.clone(), &config.table).with_id_block(config.id_block),
    );
    let blobs = Arc::new(S3Blobs::new(clients.s3.clone(), config));
    let app = App {
        limits,
        uploads: meta.clone(),
        media: meta,
        blobs,
        events: Arc::new(NoEvents),
        metrics: crate::metrics::discard(),
    };
    Ok((app, clients))
}

/// What a Lambda function runs on: the AWS backend and the limits, both from `env`, and its metrics
/// written as EMF to stdout (flushed by the Lambda glue at the end of each invocation). Straight to
/// `build_aws`, never through `build` or `Stores` (whose drop alone would link the local backend's
/// database into every bootstrap when a workspace build turns the `local` feature on).
pub async fn lambda_app(env: &dyn Env) -> anyhow::Result<App> {
    Ok(lambda_parts(env).await?.0)
}

/// `lambda_app` with its stores, for the tests that look behind the App.
pub async fn for_lambda(env: &dyn Env) -> anyhow::Result<Wired> {
    let (app, clients, config) = lambda_parts(env).await?;
    Ok(Wired {
        app,
        stores: Stores::Aws { clients, config },
    })
}

async fn lambda_parts(env: &dyn Env) -> anyhow::Result<(App, AwsClients, AwsConfig)> {
    let emf = crate::metrics::emf::Emf::from_env(env)?;
    lambda_backend(env)?;
    let (config, create) = aws_settings(env)?;
    let (mut app, clients) = build_aws(&config, create, config::limits(env)?).await?;
    app.metrics = Arc::new(emf);
    Ok((app, clients, config))
}

/// The EventBridge bus `MEDIA_EVENT_BUS` names (a name or an ARN), for the functions that publish the
/// platform's events (cleanup, events); unset or empty: `NoEvents`, publishing is off. The HTTP
/// functions never get one (`media_events` says why).
pub async fn event_bus(env: &dyn Env) -> Arc<dyn EventSink> {
    match env.get("MEDIA_EVENT_BUS").map(|b| b.trim().to_string()) {
        Some(bus) if !bus.is_empty() => Arc::new(EventBus::from_env(bus).await),
        _ => Arc::new(NoEvents),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_env() {
        assert_eq!(
            Backend::from_env(&[("MEDIA_DATA_DIR", "/d")]).unwrap(),
            Backend::Local {
                data_dir: "/d".into()
            }
        );
        let e = Backend::from_env(&[("MEDIA_BACKEND", "s3")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_BACKEND");
        let e = Backend::from_env(&[("MEDIA_BACKEND", "aws")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_BUCKET");
        let aws = [
            ("MEDIA_BACKEND", "aws"),
            ("MEDIA_BUCKET", "b"),
            ("MEDIA_TABLE", "t"),
            ("MEDIA_CREATE_RESOURCES", "1"),
        ];
        assert!(matches!(
            Backend::from_env(&aws).unwrap(),
            Backend::Aws {
                create_resources: true,
                ..
            }
        ));
    }

    #[test]
    fn the_functions_refuse_any_backend_but_aws() {
        assert!(lambda_backend(&[]).is_ok());
        assert!(lambda_backend(&[("MEDIA_BACKEND", "aws")]).is_ok());
        // A function's build has no local backend: a clear error at the cold start, not AWS unasked.
        let e = lambda_backend(&[("MEDIA_BACKEND", "local")]).unwrap_err();
        assert_eq!(e.var, "MEDIA_BACKEND");
        assert!(e.message.contains("AWS only"), "{}", e.message);
    }
}
