//! The ports on one DynamoDB table: upload sessions, media, clicks and the media id counter, laid
//! out as `items` describes. Every session write is conditional on `version`, and a failed condition
//! is reported as `StoreError::Conflict` (read from the typed SDK error), which the API turns into a
//! 409.
//!
//! A user's quota item is changed by single-item conditional updates: `ADD` to the id set and the
//! byte count on the condition that both are still under the quota (racing creators are serialised
//! by DynamoDB), and `DELETE` from the set on the condition that the id is in it (so that freeing is
//! idempotent, whether the completion, the sweep or a TTL record gets there first or twice).

use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::items::{self, decode, n, s, Item};
use crate::domain::upload::UploadSession;
use crate::domain::{Click, MediaRecord, StoreError, UserQuota};
use crate::ports::{MediaStore, UploadStore};

#[derive(Clone, Debug)]
pub struct DynamoMeta {
    client: Client,
    table: String,
    /// Quota changes of one user, serialised within this process (striped by user). DynamoDB makes
    /// each conditional update atomic, which is what holds across processes; servers that emulate
    /// it (moto, which the tests use) check the condition and write without a lock, so concurrent
    /// requests in one process could pass a quota together there. One Lambda process handles one
    /// request at a time; `media-local` on this backend handles many.
    quota_locks: Arc<[tokio::sync::Mutex<()>]>,
}

const QUOTA_LOCK_STRIPES: usize = 16;

/// Any SDK failure that is not a failed condition: kept as the typed error, with what we were doing.
fn backend<E, R>(what: &'static str) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| StoreError::Backend(anyhow::Error::new(e).context(what))
}

impl DynamoMeta {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoMeta {
            client,
            table: table.to_string(),
            quota_locks: (0..QUOTA_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    async fn quota_lock(&self, user: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        self.quota_locks[h.finish() as usize % QUOTA_LOCK_STRIPES]
            .lock()
            .await
    }

    /// A strongly consistent read: the version we read is the one our next conditional write expects.
    async fn get_item(&self, pk: AttributeValue) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(items::PK, pk)
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("DynamoDB GetItem"))?;
        Ok(out.item)
    }
}

#[async_trait]
impl UploadStore for DynamoMeta {
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.get_item(s(items::upload_pk(id)))
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn put_upload(
        &self,
        session: &UploadSession,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::session_item(session)?));
        let req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", items::VERSION)
                .expression_attribute_values(":expected", n(v)),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(backend("DynamoDB PutItem of an upload session")(e)),
        }
    }

    /// The session first, then the count: a crash in between leaves an uncounted session, never a
    /// count without a session. Over the quota, the session just written is removed again.
    async fn create_upload(
        &self,
        session: &UploadSession,
        quota: &UserQuota,
    ) -> Result<(), StoreError> {
        let Some(room) = quota.max_bytes.checked_sub(session.total) else {
            return Err(StoreError::QuotaExceeded(*quota));
        };
        self.put_upload(session, None).await?;
        let _serialised = self.quota_lock(&session.owner).await;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(items::PK, s(items::quota_pk(&session.owner)))
            .update_expression("ADD #ids :id, #bytes :total SET #kind = :kind")
            .condition_expression(
                "(attribute_not_exists(#ids) OR size(#ids) < :max_open) \
                 AND (attribute_not_exists(#bytes) OR #bytes <= :room)",
            )
            .expression_attribute_names("#ids", items::OPEN_IDS)
            .expression_attribute_names("#bytes", items::OPEN_BYTES)
            .expression_attribute_names("#kind", items::KIND)
            .expression_attribute_values(":id", AttributeValue::Ss(vec![session.id.clone()]))
            .expression_attribute_values(":total", n(session.total))
            .expression_attribute_values(":kind", s(items::KIND_QUOTA))
            .expression_attribute_values(":max_open", n(quota.max_open))
            .expression_attribute_values(":room", n(room))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.delete_upload(&session.id, session.version).await?;
                Err(StoreError::QuotaExceeded(*quota))
            }
            Err(e) => {
                // Not counted: the session must not stay either (it could never be freed twice,
                // but it would be a free upload); a failed delete leaves it to expire uncounted.
                if let Err(d) = self.delete_upload(&session.id, session.version).await {
                    tracing::warn!(upload_id = %session.id, error = %d, "could not remove an uncounted session");
                }
                Err(backend("DynamoDB UpdateItem of a user's quota")(e))
            }
        }
    }

    async fn release_quota(&self, session: &UploadSession) -> Result<bool, StoreError> {
        let _serialised = self.quota_lock(&session.owner).await;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(items::PK, s(items::quota_pk(&session.owner)))
            .update_expression("DELETE #ids :id ADD #bytes :minus")
            .condition_expression("contains(#ids, :id_s)")
            .expression_attribute_names("#ids", items::OPEN_IDS)
            .expression_attribute_names("#bytes", items::OPEN_BYTES)
            .expression_attribute_values(":id", AttributeValue::Ss(vec![session.id.clone()]))
            .expression_attribute_values(":id_s", s(session.id.clone()))
            .expression_attribute_values(":minus", AttributeValue::N(format!("-{}", session.total)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("DynamoDB UpdateItem freeing a user's quota")(e)),
        }
    }

    async fn delete_upload(&self, id: &str, expected: u64) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(items::PK, s(items::upload_pk(id)))
            .condition_expression("attribute_not_exists(pk) OR #v = :expected")
            .expression_attribute_names("#v", items::VERSION)
            .expression_attribute_values(":expected", n(expected))
            // The old item comes back only if this call deleted it: sweeps count what they removed.
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.attributes().is_some_and(|a| !a.is_empty())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(backend("DynamoDB DeleteItem of an upload session")(e)),
        }
    }

    /// A filtered Scan reads the whole table, which is fine for a sweep over a table of this size.
    /// The scale-up path is a sparse GSI keyed on an attribute only unfinished sessions carry (e.g.
    /// a constant shard key plus `expires_ms` as sort key): a Query then reads only expired sessions.
    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#k = :upload AND #e < :now")
                .expression_attribute_names("#k", items::KIND)
                .expression_attribute_names("#e", items::EXPIRES_MS)
                .expression_attribute_values(":upload", s(items::KIND_UPLOAD))
                .expression_attribute_values(":now", n(now_ms))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend("DynamoDB Scan for expired uploads"))?;
            for item in page.items() {
                if out.len() >= limit {
                    break;
                }
                out.push(decode(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MediaStore for DynamoMeta {
    /// `ADD` on one counter item is atomic in DynamoDB: every caller gets its own, larger number.
    async fn next_media_id(&self) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(items::PK, s(items::MEDIA_COUNTER_PK))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", items::COUNTER)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(backend("DynamoDB UpdateItem of the media counter"))?;
        let raw = out
            .attributes()
            .and_then(|a| a.get(items::COUNTER))
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| anyhow!("the media counter update returned no number"))?;
        let id = raw
            .parse()
            .with_context(|| format!("the media counter holds {raw:?}"))?;
        Ok(id)
    }

    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::media_item(media)?))
            .send()
            .await
            .map_err(backend("DynamoDB PutItem of a media"))?;
        Ok(())
    }

    async fn replace_media(&self, media: &MediaRecord) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::media_item(media)?))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("DynamoDB PutItem replacing a media")(e)),
        }
    }

    async fn get_media(&self, id: u64) -> Result<Option<MediaRecord>, StoreError> {
        self.get_item(s(items::media_pk(id)))
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn delete_media(&self, id: u64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(items::PK, s(items::media_pk(id)))
            .send()
            .await
            .map_err(backend("DynamoDB DeleteItem of a media"))?;
        Ok(())
    }

    /// One item per click under a random key: clicks never contend with each other.
    async fn record_click(&self, click: &Click) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::click_item(click)?))
            .send()
            .await
            .map_err(backend("DynamoDB PutItem of a click"))?;
        Ok(())
    }
}
