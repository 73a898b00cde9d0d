//! Implementations of the ports: `local` is the embedded default, `aws` runs on S3 and DynamoDB
//! (and publishes events on EventBridge); `webhook` delivers events to an operator's URL
//! (media-local, on either backend).

pub mod aws;
pub mod local;
pub mod webhook;
