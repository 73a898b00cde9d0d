//! The ports on AWS: upload sessions, media and clicks in one DynamoDB table (`DynamoMeta`, laid out
//! as `items` describes), bytes in one S3 bucket (`S3Blobs`). Built once per cold start by
//! `wiring::build` and borrowed by every request.
//!
//! The same code runs against S3- and DynamoDB-compatible servers on loopback (moto in the tests):
//! the SDK takes its endpoint from `AWS_ENDPOINT_URL`, and `force_path_style` keeps the bucket out of
//! the host name, which `127.0.0.1` could not carry.

mod client;
mod dynamo_meta;
mod event_bus;
pub mod items;
mod s3_blobs;
mod setup;

use crate::config::{bool_var, u64_var, url_var, ConfigError, Env};
use crate::domain::limits::MIB;

pub use client::{sdk_config, AwsClients};
pub use dynamo_meta::{DynamoMeta, DEFAULT_ID_BLOCK};
pub use event_bus::EventBus;
pub use s3_blobs::{staging_prefix, S3Blobs, MAX_STAGED};
pub use setup::{create_resources, put_bucket_cors};

/// The largest block of media ids a process may reserve at once.
pub const MAX_ID_BLOCK: u64 = 1_000_000;

/// S3's minimum size of every part of a multipart upload but the last.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part size we accept: a part is at most `part_size` plus one chunk, and S3 allows 5 GiB.
pub const MAX_PART_SIZE: u64 = 4 * 1024 * MIB;

/// Everything the AWS adapters need besides what the SDK reads from the environment itself
/// (region, credentials, endpoint URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub bucket: String,
    pub table: String,
    /// Bytes gathered from staged chunks before they are merged into one multipart part.
    pub part_size: u64,
    /// Public URL prefix of the bucket (e.g. a CloudFront domain); without one, URLs are presigned.
    pub public_base_url: Option<String>,
    /// Path-style S3 addressing (`http://host/bucket/key`), needed for servers on an IP address.
    pub force_path_style: bool,
    /// Media ids a process reserves from the table's counter at once (`DynamoMeta::with_id_block`).
    pub id_block: u64,
}

impl AwsConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let part_size = u64_var(env, "MEDIA_PART_SIZE", MIN_PART_SIZE, MIN_PART_SIZE)?;
        if part_size > MAX_PART_SIZE {
            return Err(ConfigError {
                var: "MEDIA_PART_SIZE",
                message: format!("{part_size} is above the maximum of {MAX_PART_SIZE}"),
            });
        }
        Ok(AwsConfig {
            bucket: required(env, "MEDIA_BUCKET")?,
            table: required(env, "MEDIA_TABLE")?,
            part_size,
            public_base_url: url_var(env, "MEDIA_PUBLIC_BASE_URL")?,
            force_path_style: bool_var(env, "MEDIA_S3_FORCE_PATH_STYLE", false)?,
            id_block: id_block(env)?,
        })
    }
}

fn id_block(env: &dyn Env) -> Result<u64, ConfigError> {
    let size = u64_var(env, "MEDIA_ID_BLOCK", DEFAULT_ID_BLOCK, 1)?;
    // Up to a million ids unused per process that ends: still gaps only, far from 2^53 (the largest
    // integer a JavaScript client reads exactly) at any realistic rate.
    if size > MAX_ID_BLOCK {
        return Err(ConfigError {
            var: "MEDIA_ID_BLOCK",
            message: format!("{size} is above the maximum of {MAX_ID_BLOCK}"),
        });
    }
    Ok(size)
}

fn required(env: &dyn Env, var: &'static str) -> Result<String, ConfigError> {
    match env.get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError {
            var,
            message: "is required but not set".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_env() {
        let c = AwsConfig::from_env(&[
            ("MEDIA_BUCKET", "b"),
            ("MEDIA_TABLE", "t"),
            ("MEDIA_S3_FORCE_PATH_STYLE", "true"),
            ("MEDIA_PUBLIC_BASE_URL", "https://cdn.example.com/"),
        ])
        .unwrap();
        assert_eq!(
            c,
            AwsConfig {
                bucket: "b".into(),
                table: "t".into(),
                part_size: 5 * MIB,
                public_base_url: Some("https://cdn.example.com".into()),
                force_path_style: true,
                id_block: 100,
            }
        );
    }

    #[test]
    fn bad_or_missing_values_name_the_variable() {
        let err = |env: &dyn Env| AwsConfig::from_env(env).unwrap_err().var;
        assert_eq!(err(&[("MEDIA_TABLE", "t")]), "MEDIA_BUCKET");
        assert_eq!(err(&[("MEDIA_BUCKET", "b")]), "MEDIA_TABLE");
        let base = [("MEDIA_BUCKET", "b"), ("MEDIA_TABLE", "t")];
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_PART_SIZE", "1048576")]),
            "MEDIA_PART_SIZE"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_PART_SIZE", "5MB")]),
            "MEDIA_PART_SIZE"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_PART_SIZE", "99999999999")]),
            "MEDIA_PART_SIZE"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_S3_FORCE_PATH_STYLE", "maybe")]),
            "MEDIA_S3_FORCE_PATH_STYLE"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_ID_BLOCK", "0")]),
            "MEDIA_ID_BLOCK"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_ID_BLOCK", "1000001")]),
            "MEDIA_ID_BLOCK"
        );
        assert_eq!(
            err(&[base[0], base[1], ("MEDIA_PUBLIC_BASE_URL", "cdn")]),
            "MEDIA_PUBLIC_BASE_URL"
        );
    }
}
