//! SDK clients, built once per process.
//!
//! The HTTPS client is built explicitly with rustls on ring instead of the SDK's default features: the
//! default pulls in aws-lc-rs (a C/assembly build) and both hyper generations, which is most of the
//! cold build. Region, credentials and `AWS_ENDPOINT_URL` still come from the environment as usual.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::AwsConfig;

/// The two service clients; cheap to clone (they share one connection pool).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl AwsClients {
    /// Loads region, credentials and endpoint from the environment (`AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// the usual credential chain) and builds both clients on one rustls+ring HTTPS client.
    pub async fn from_env(cfg: &AwsConfig) -> Self {
        let sdk = sdk_config().await;
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.force_path_style)
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        }
    }
}

/// The SDK's settings from the environment, on one rustls+ring HTTPS client (see the module doc);
/// every service client of the process is built from it.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}
