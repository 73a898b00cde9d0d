//! Implementations of the ports: `local` is the embedded default, `aws` runs on S3 and DynamoDB
//! (and publishes events on EventBridge); `webhook` delivers events to an operator's URL
//! (media-local, on either backend). `local` exists only with the crate's `local` feature (media-local
//! and the test kit enable it, the Lambda functions do not).

pub mod aws;
#[cfg(feature = "local")]
pub mod local;
pub mod webhook;
