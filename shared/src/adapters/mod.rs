//! Implementations of the ports: `local` is the embedded default, `aws` runs on S3 and DynamoDB.

pub mod aws;
pub mod local;
