//! Building the `App` from configuration: the one place that knows which adapters make up each
//! backend. Every entry point goes through `build`: the local server and its `sweep` command (on the
//! backend `MEDIA_BACKEND` names), the Lambda functions (always on AWS, via `for_lambda`) and the tests.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::adapters::aws::{
    create_resources, AwsClients, AwsConfig, DynamoMeta, EventBus, S3Blobs,
};
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
            None | Some("local") => Ok(Backend::Local {
                data_dir: env
                    .get("MEDIA_DATA_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(".media-data")),
            }),
            Some("aws") => Self::aws_from_env(env),
            Some(other) => Err(ConfigError {
                var: "MEDIA_BACKEND",
                message: format!("{other:?} is not a backend: use local or aws"),
            }),
        }
    }

    /// The AWS backend whatever `MEDIA_BACKEND` says: a Lambda function has no disk to keep data on.
    pub fn aws_from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Backend::Aws {
            config: AwsConfig::from_env(env)?,
            create_resources: config::bool_var(env, "MEDIA_CREATE_RESOURCES", false)?,
        })
    }
}

/// The stores behind an `App`, for what is not a port: serving the local files, inspection in tests.
pub enum Stores {
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
pub async fn build(
    backend: &Backend,
    limits: Limits,
    files_url: Option<&str>,
) -> anyhow::Result<Wired> {
    match backend {
        Backend::Local { data_dir } => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating MEDIA_DATA_DIR {}", data_dir.display()))?;
            let meta = LocalMeta::open(&data_dir.join("media.redb"))?;
            let blobs = Arc::new(match files_url {
                Some(url) => LocalBlobs::new(data_dir, url)?,
                None => LocalBlobs::unserved(data_dir)?,
            });
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
        Backend::Aws {
            config,
            create_resources: create,
        } => {
            let clients = AwsClients::from_env(config).await;
            if *create {
                create_resources(&clients, config).await?;
            }
            let meta = Arc::new(
                DynamoMeta::new(clients.dynamodb.clone(), &config.table)
                    .with_id_block(config.id_block),
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

/// What a Lambda function runs on: the AWS backend and the limits, both from `env`, and its metrics
/// written as EMF to stdout (flushed by the Lambda glue at the end of each invocation).
pub async fn for_lambda(env: &dyn Env) -> anyhow::Result<Wired> {
    let emf = crate::metrics::emf::Emf::from_env(env)?;
    let mut wired = build(&Backend::aws_from_env(env)?, config::limits(env)?, None).await?;
    wired.app.metrics = Arc::new(emf);
    Ok(wired)
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
        // The functions are on AWS even where MEDIA_BACKEND says otherwise (or nothing).
        let lambda = [
            ("MEDIA_BACKEND", "local"),
            ("MEDIA_BUCKET", "b"),
            ("MEDIA_TABLE", "t"),
        ];
        assert!(matches!(
            Backend::aws_from_env(&lambda).unwrap(),
            Backend::Aws {
                create_resources: false,
                ..
            }
        ));
    }
}
