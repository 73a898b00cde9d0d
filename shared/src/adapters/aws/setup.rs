//! Creating the bucket and the table when they are missing: for tests against moto and for trying the
//! service on an AWS account without deploying the SAM template (which declares the same resources).
//! Every step checks first or accepts "already exists", so running it again changes nothing.

use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CorsConfiguration, CorsRule, CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter,
};

use super::{items, AwsClients, AwsConfig};
use crate::cors::{self, Origins};

/// Backstop for what the sweep misses, the same rules as template.yaml: S3 itself aborts multipart
/// uploads and removes staged chunks older than this. Both must stay above the upload TTL (24 h by
/// default), or live uploads break; S3 also rounds each up to the next midnight UTC.
const ABORT_UPLOADS_DAYS: i32 = 1;
const EXPIRE_STAGING_DAYS: i32 = 2;

/// Creates the bucket (with its lifecycle rules) and the table (with stream, TTL and the sweep's index)
/// if missing.
pub async fn create_resources(clients: &AwsClients, cfg: &AwsConfig) -> anyhow::Result<()> {
    create_bucket(&clients.s3, &cfg.bucket).await?;
    create_table(&clients.dynamodb, &cfg.table).await
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    let mut req = s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that must not be named as a location constraint.
    if let Some(region) = s3.config().region().map(|r| r.as_ref().to_string()) {
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
    }
    match req.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("S3 CreateBucket {bucket}"))),
    }
    let abort_uploads = LifecycleRule::builder()
        .id("abort-incomplete-uploads")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_UPLOADS_DAYS)
                .build(),
        )
        .build()?;
    let expire_staging = LifecycleRule::builder()
        .id("expire-staged-chunks")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("staging/").build())
        .expiration(
            LifecycleExpiration::builder()
                .days(EXPIRE_STAGING_DAYS)
                .build(),
        )
        .build()?;
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(abort_uploads)
                .rules(expire_staging)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("S3 PutBucketLifecycleConfiguration {bucket}"))?;
    Ok(())
}

/// The bucket's CORS rule for pages reading objects (presigned URLs) by fetch/XHR: the FILES rule of
/// `crate::cors`, as template.yaml declares it, for the given origins. Replaces any earlier rule.
pub async fn put_bucket_cors(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    origins: &Origins,
) -> anyhow::Result<()> {
    let rule = cors::FILES;
    let mut b = CorsRule::builder()
        .id("read-from-web-apps")
        .max_age_seconds(cors::MAX_AGE_SECS as i32);
    for m in rule.methods {
        b = b.allowed_methods(*m);
    }
    for h in rule.request_headers {
        b = b.allowed_headers(*h);
    }
    for h in rule.expose_headers {
        b = b.expose_headers(*h);
    }
    for o in origins.patterns() {
        b = b.allowed_origins(o);
    }
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(b.build()?)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("S3 PutBucketCors {bucket}"))?;
    Ok(())
}

async fn create_table(db: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    let exists = match db.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("DynamoDB DescribeTable {table}")))
        }
    };
    if !exists {
        let mut all_attributes = vec![AttributeDefinition::builder()
            .attribute_name(items::PK)
            .attribute_type(ScalarAttributeType::S)
            .build()?];
        all_attributes.extend(expiry_index_attributes()?);
        let res = db
            .create_table()
            .table_name(table)
            .set_attribute_definitions(Some(all_attributes))
            .global_secondary_indexes(expiry_index()?)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(items::PK)
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            // The cleanup function listens to TTL deletions on the stream (old images), the
            // thumbnail function to inserted image media (new images); as in template.yaml.
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()?,
            )
            .send()
            .await;
        match res {
            Ok(_) => {}
            // Created concurrently by another caller.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("DynamoDB CreateTable {table}")))
            }
        }
    }
    wait_active(db, table).await?;
    add_expiry_index(db, table).await?;

    let ttl = db
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .with_context(|| format!("DynamoDB DescribeTimeToLive {table}"))?;
    let enabled = ttl.time_to_live_description().is_some_and(|d| {
        matches!(
            d.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && d.attribute_name() == Some(items::EXPIRES_AT)
    });
    if !enabled {
        db.update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(items::EXPIRES_AT)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("DynamoDB UpdateTimeToLive {table}"))?;
    }
    Ok(())
}

/// The key attributes of the sweep's index (`items::EXPIRY_INDEX`), as template.yaml declares them.
fn expiry_index_attributes() -> anyhow::Result<Vec<AttributeDefinition>> {
    Ok(vec![
        AttributeDefinition::builder()
            .attribute_name(items::EXPIRY_SHARD)
            .attribute_type(ScalarAttributeType::N)
            .build()?,
        AttributeDefinition::builder()
            .attribute_name(items::EXPIRES_MS)
            .attribute_type(ScalarAttributeType::N)
            .build()?,
    ])
}

/// The sparse index of unfinished sessions by expiry, keys only (the sweep reads each session again,
/// strongly consistently), as template.yaml declares it.
fn expiry_index() -> anyhow::Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(items::EXPIRY_INDEX)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(items::EXPIRY_SHARD)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(items::EXPIRES_MS)
                .key_type(KeyType::Range)
                .build()?,
        )
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()?)
}

/// A table made before the index existed gets it (DynamoDB backfills it from the items: sessions
/// written since carry the shard; older ones are left to TTL). Waits until the index is usable.
async fn add_expiry_index(db: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    let has_index = |t: &aws_sdk_dynamodb::types::TableDescription| {
        t.global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(items::EXPIRY_INDEX))
            .map(|i| i.index_status().cloned())
    };
    let out = db
        .describe_table()
        .table_name(table)
        .send()
        .await
        .with_context(|| format!("DynamoDB DescribeTable {table}"))?;
    if out.table().and_then(has_index).is_none() {
        let index = expiry_index()?;
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(index.index_name)
            .set_key_schema(Some(index.key_schema))
            .set_projection(index.projection)
            .build()?;
        db.update_table()
            .table_name(table)
            .set_attribute_definitions(Some(expiry_index_attributes()?))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await
            .with_context(|| format!("DynamoDB UpdateTable {table}: adding the sweep's index"))?;
    }
    for _ in 0..1200 {
        let out = db
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("DynamoDB DescribeTable {table}"))?;
        // moto reports no index status; AWS reports CREATING, then ACTIVE.
        match out.table().and_then(has_index) {
            Some(None | Some(IndexStatus::Active)) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    bail!(
        "the index {} of {table} did not become active within ten minutes",
        items::EXPIRY_INDEX
    )
}

/// A new table takes a few seconds to become usable on AWS (moto: none).
async fn wait_active(db: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    for _ in 0..120 {
        let out = db
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("DynamoDB DescribeTable {table}"))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("DynamoDB table {table} did not become active within a minute")
}
