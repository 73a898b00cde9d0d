//! Building the handlers' `App` from configuration, so that every entry point (the Lambda functions,
//! `media-local` with `MEDIA_BACKEND=aws`, the tests) wires the AWS adapters the same way.

use std::sync::Arc;

use crate::adapters::aws::{create_resources, AwsClients, AwsConfig, DynamoMeta, S3Blobs};
use crate::api::App;
use crate::config::{self, Env};
use crate::domain::Limits;

/// The App on S3 and DynamoDB, configured from the environment (the Lambda functions). With `create`
/// the bucket and table are created if missing (local S3/DynamoDB-compatible servers; on AWS the SAM
/// template owns them).
pub async fn aws_app(env: &dyn Env, create: bool) -> anyhow::Result<(App, AwsClients, AwsConfig)> {
    let cfg = AwsConfig::from_env(env)?;
    let (app, clients) = aws_app_with(config::limits(env)?, &cfg, create).await?;
    Ok((app, clients, cfg))
}

/// The App on S3 and DynamoDB for already parsed settings.
pub async fn aws_app_with(
    limits: Limits,
    cfg: &AwsConfig,
    create: bool,
) -> anyhow::Result<(App, AwsClients)> {
    let clients = AwsClients::from_env(cfg).await;
    if create {
        create_resources(&clients, cfg).await?;
    }
    let meta = Arc::new(DynamoMeta::new(clients.dynamodb.clone(), &cfg.table));
    let blobs = Arc::new(S3Blobs::new(clients.s3.clone(), cfg));
    let app = App {
        limits,
        uploads: meta.clone(),
        media: meta,
        blobs,
    };
    Ok((app, clients))
}
