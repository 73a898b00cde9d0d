//! The ports on one DynamoDB table: upload sessions, media, clicks and the media id counter, laid
//! out as `items` describes. Every session write is conditional on `version`, and a failed condition
//! is reported as `StoreError::Conflict` (read from the typed SDK error), which the API turns into a
//! 409.
//!
//! A user's quota item is changed by single-item conditional updates: `ADD` to the id set and the
//! byte count on the condition that both are still under the quota (racing creators are serialised
//! by DynamoDB), and `DELETE` from the set on the condition that the id is in it (so that freeing is
//! idempotent, whether the completion, the sweep or a TTL record gets there first or twice).
//!
//! A chunk that fills a part commits the session and the part's own item in one TransactWriteItems
//! (the session's Put conditional on its version, the part's Put not): one request, like every other
//! chunk's PutItem, and the part item is written only if the session's condition holds, so a losing
//! writer never records a part. Completion reads the part items back with BatchGetItem
//! (`recorded_parts`). `items` describes the layout, and why parts are items of their own.
//!
//! A chunk's commit recognises its own write: the SDK retries a write whose answer it lost (a 5xx or
//! a timeout after DynamoDB applied it), and the retry fails the version condition the first attempt
//! moved past. Taken for a lost race, that would answer 409 and delete the objects the committed
//! session refers to. So the conditional write asks for the item as stored when its condition fails
//! (`ReturnValuesOnConditionCheckFailure`, no extra request), and tells ours from another writer's:
//! the session item for an ordinary chunk (`own_commit`), the part item for one that fills a part
//! (whose session, with nothing staged, need not differ from a racing writer's of the same bytes).
//!
//! Nothing the whole service does lands on one item: media ids come from the counter item in blocks
//! per process (one write per `id_block` media), and the sweep finds expired sessions through a
//! sharded sparse index instead of a Scan (`items` describes both).

use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::items::{self, decode, n, s, Item};
use crate::domain::upload::{PartRecord, UploadSession, UploadStatus};
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
    /// Media ids reserved from the counter item and not handed out yet, shared by the clones of this
    /// value (one process); the lock also makes concurrent callers wait for one reservation, rather
    /// than each reserving a block of its own.
    ids: Arc<tokio::sync::Mutex<IdBlock>>,
    id_block: u64,
}

const QUOTA_LOCK_STRIPES: usize = 16;

/// BatchGetItem's limit of keys per request.
const MAX_BATCH_GET: usize = 100;

/// Media ids a process reserves at once when none is given (`AwsConfig::id_block`).
pub const DEFAULT_ID_BLOCK: u64 = 100;

/// The ids this process reserved and has not handed out yet: `next..=last` (empty when `next > last`).
#[derive(Debug)]
struct IdBlock {
    next: u64,
    last: u64,
}

/// Any SDK failure that is not a failed condition: kept as the typed error, with what we were doing.
fn backend<E, R>(what: &'static str) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| StoreError::Backend(anyhow::Error::new(e).context(what))
}

/// What a chunk's commit whose condition failed tells from the session item as stored then
/// (`stored`, returned with the failure at no cost): whether the write refused was in fact already
/// applied, by an earlier attempt of this same request that the SDK retried because its answer was
/// lost (a 5xx or a timeout after DynamoDB applied it).
///
/// - The stored item is exactly `ours`: the commit is ours, and won. The session of a chunk that seals
///   no part lists, last among its staged chunks, the object this attempt staged under a random token
///   of its own (`S3Blobs::write_chunk`), so no other writer's commit can be this item; and a session
///   that equal to ours refers to exactly the objects ours does, so abandoning them (what a lost race
///   does) is never right.
/// - Gone, or at `expected + 1` but not ours: another writer won from the version we read (a write
///   conditional on `expected` applies once), so ours never was: a lost race.
/// - Further on than `expected + 1`: commits followed one that may have been ours (a client that sent
///   the chunk again and moved on, answered `repeated`, while our retry waited), and what the stored
///   session refers to cannot be told from it alone. Unknown, not lost: the caller then leaves what it
///   wrote, for completion, the sweep or the lifecycle rule.
fn own_commit(
    id: &str,
    stored: Option<&Item>,
    ours: &Item,
    expected: u64,
) -> Result<(), StoreError> {
    let Some(stored) = stored else {
        return Err(StoreError::Conflict);
    };
    if stored == ours {
        tracing::info!(upload_id = %id, version = expected + 1, "a chunk's commit refused on retry was its own, already applied");
        return Ok(());
    }
    let version = stored
        .get(items::VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match version {
        Some(v) if v <= expected + 1 => Err(StoreError::Conflict),
        _ => Err(StoreError::Backend(anyhow!(
            "upload {id} moved from version {expected} to {version:?} while its commit was retried: \
             whether this chunk is part of it is unknown"
        ))),
    }
}

impl DynamoMeta {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoMeta {
            client,
            table: table.to_string(),
            quota_locks: (0..QUOTA_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            ids: Arc::new(tokio::sync::Mutex::new(IdBlock { next: 1, last: 0 })),
            id_block: DEFAULT_ID_BLOCK,
        }
    }

    /// Media ids are reserved `size` at a time (at least 1): one counter write per `size` media.
    pub fn with_id_block(mut self, size: u64) -> Self {
        self.id_block = size.max(1);
        self
    }

    /// Reserves the next `id_block` ids with one atomic `ADD` on the counter item: every process
    /// gets a range no other process gets, above every range reserved before it.
    async fn reserve_ids(&self) -> Result<IdBlock, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(items::PK, s(items::MEDIA_COUNTER_PK))
            .update_expression("ADD #n :block")
            .expression_attribute_names("#n", items::COUNTER)
            .expression_attribute_values(":block", n(self.id_block))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(backend("DynamoDB UpdateItem of the media counter"))?;
        let raw = out
            .attributes()
            .and_then(|a| a.get(items::COUNTER))
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| anyhow!("the media counter update returned no number"))?;
        let last: u64 = raw
            .parse()
            .with_context(|| format!("the media counter holds {raw:?}"))?;
        // Below the block size the counter was not ours to count (negative or reset): ids 0 or
        // below, or ids handed out before, could follow.
        if last < self.id_block {
            return Err(anyhow!(
                "the media counter holds {last} after adding {}",
                self.id_block
            )
            .into());
        }
        Ok(IdBlock {
            next: last - self.id_block + 1,
            last,
        })
    }

    async fn quota_lock(&self, user: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        self.quota_locks[h.finish() as usize % QUOTA_LOCK_STRIPES]
            .lock()
            .await
    }

    /// Strongly consistent reads of the items with these keys (at most 100, BatchGetItem's limit),
    /// in no particular order; keys without an item are left out. Keys DynamoDB leaves unprocessed
    /// (throttling) are asked for again.
    async fn get_items(&self, mut keys: Vec<AttributeValue>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        while !keys.is_empty() {
            let ask = KeysAndAttributes::builder()
                .set_keys(Some(
                    keys.drain(..)
                        .map(|k| Item::from([(items::PK.to_string(), k)]))
                        .collect(),
                ))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(anyhow::Error::new(e)))?;
            let page = self
                .client
                .batch_get_item()
                .request_items(&self.table, ask)
                .send()
                .await
                .map_err(backend("DynamoDB BatchGetItem"))?;
            if let Some(mut found) = page.responses {
                out.extend(found.remove(&self.table).unwrap_or_default());
            }
            if let Some(left) = page
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
            {
                keys = left
                    .keys
                    .into_iter()
                    .filter_map(|mut k| k.remove(items::PK))
                    .collect();
                if !keys.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        Ok(out)
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
            // Not written: the version moved on, or a chunk's transaction (`commit_chunk`) held
            // the session at that moment (DynamoDB then refuses the PutItem).
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.is_conditional_check_failed_exception()
                        || e.is_transaction_conflict_exception()
                }) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(backend("DynamoDB PutItem of an upload session")(e)),
        }
    }

    async fn commit_chunk(
        &self,
        session: &UploadSession,
        expected: u64,
        sealed: Option<&PartRecord>,
    ) -> Result<(), StoreError> {
        let ours = items::session_item(session)?;
        let Some(part) = sealed else {
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(ours.clone()))
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", items::VERSION)
                .expression_attribute_values(":expected", n(expected))
                // Free: the item is read for the condition anyway (`own_commit`).
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match res {
                Ok(_) => Ok(()),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        own_commit(&session.id, failed.item(), &ours, expected)
                    }
                    // Refused while a chunk's transaction held the session: not written.
                    Some(e) if e.is_transaction_conflict_exception() => Err(StoreError::Conflict),
                    _ => Err(backend("DynamoDB PutItem of a chunk's commit")(e)),
                },
            };
        };
        let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.into());
        let session_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(ours))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", items::VERSION)
            .expression_attribute_values(":expected", n(expected))
            .build()
            .map_err(built)?;
        // Part n is written only by the commit that moves the count from n-1 to n, so it never
        // exists before: the condition costs nothing and tells a retry its own part (below).
        let our_part = items::part_item(session, part)?;
        let part_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(our_part.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(built)?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(session_put).build())
            .transact_items(TransactWriteItem::builder().put(part_put).build())
            // The SDK retries a request whose answer it did not get; with a token, a retry of a
            // transaction that was applied answers success (for 10 minutes) instead of a failed
            // condition, which the handler would take for a lost race and abandon committed objects.
            // Where the token is not honoured (past 10 minutes, or moto), the part item still is.
            .client_request_token(uuid::Uuid::new_v4().simple().to_string())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                // Cancelled: nothing was written by this request.
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons().iter().all(|r| {
                        matches!(
                            r.code(),
                            None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict")
                        )
                    }) =>
                {
                    // Our part, as stored: an earlier attempt of this request was applied (the
                    // part's sources name the object this attempt staged under a random token of
                    // its own, and only a winning commit writes a part), whatever came after it.
                    if c.cancellation_reasons().get(1).and_then(|r| r.item()) == Some(&our_part) {
                        tracing::info!(upload_id = %session.id, part = part.number, "a chunk's commit refused on retry was its own, already applied");
                        return Ok(());
                    }
                    // Lost to another commit (the version moved on, or the session is gone) or to
                    // a transaction on the session still in flight.
                    Err(StoreError::Conflict)
                }
                _ => Err(backend(
                    "DynamoDB TransactWriteItems of a chunk's commit and its part",
                )(e)),
            },
        }
    }

    async fn recorded_parts(&self, session: &UploadSession) -> Result<Vec<PartRecord>, StoreError> {
        let numbers: Vec<u32> = session.staging.numbers_apart().collect();
        let mut apart: Vec<PartRecord> = Vec::with_capacity(numbers.len());
        for batch in numbers.chunks(MAX_BATCH_GET) {
            let keys = batch
                .iter()
                .map(|&number| s(items::part_pk(&session.id, number)))
                .collect();
            for item in self.get_items(keys).await? {
                apart.push(decode(&item)?);
            }
        }
        apart.sort_by_key(|p| p.number);
        // Every part the session counts was committed with it: one missing is a broken table,
        // never a reason to complete without it.
        if !apart.iter().map(|p| p.number).eq(numbers.iter().copied()) {
            return Err(anyhow!(
                "upload {} counts parts {:?} recorded apart, the table holds {:?}",
                session.id,
                session.staging.numbers_apart(),
                apart.iter().map(|p| p.number).collect::<Vec<_>>()
            )
            .into());
        }
        let mut parts = session.staging.parts.clone();
        parts.extend(apart);
        Ok(parts)
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

    /// A Query per shard of the sparse index of unfinished sessions (`items::EXPIRY_INDEX`), for
    /// expiries before `now_ms`: a sweep reads the sessions it is about to free and nothing of the
    /// completed media, clicks and quotas around them. The index is eventually consistent and keeps
    /// keys only, so every session found is read again, strongly consistently (`BatchGetItem`), and
    /// answered as it stands now: one gone or completed meanwhile is left out, and the version the
    /// sweep's conditional delete expects is the current one (a lease taken since is seen).
    async fn list_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadSession>, StoreError> {
        let mut out = Vec::new();
        for shard in 0..items::EXPIRY_SHARDS {
            let mut start: Option<Item> = None;
            while out.len() < limit {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(items::EXPIRY_INDEX)
                    .key_condition_expression("#sh = :shard AND #e < :now")
                    .expression_attribute_names("#sh", items::EXPIRY_SHARD)
                    .expression_attribute_names("#e", items::EXPIRES_MS)
                    .expression_attribute_values(":shard", n(shard))
                    .expression_attribute_values(":now", n(now_ms))
                    .limit((limit - out.len()).min(MAX_BATCH_GET) as i32)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(backend("DynamoDB Query of expired uploads"))?;
                let keys: Vec<AttributeValue> = page
                    .items()
                    .iter()
                    .filter_map(|i| i.get(items::PK).cloned())
                    .collect();
                for item in self.get_items(keys).await? {
                    let session: UploadSession = decode(&item)?;
                    let unfinished = !matches!(session.status, UploadStatus::Completed { .. });
                    if unfinished && session.expires_at_ms < now_ms && out.len() < limit {
                        out.push(session);
                    }
                }
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MediaStore for DynamoMeta {
    /// From this process's block of ids, reserving the next block when it is used up: the counter
    /// item takes one write per block, not one per media, so it stays far below one partition's
    /// write rate (1000/s) whatever the service's rate of creations. Ids are unique (blocks never
    /// overlap: `ADD` is atomic), increasing within a process and roughly increasing across
    /// processes (each hands out its own block). What a process has not handed out when it ends (a
    /// crash, a Lambda environment shut down) is never handed out: gaps, never duplicates.
    async fn next_media_id(&self) -> Result<u64, StoreError> {
        let mut block = self.ids.lock().await;
        if block.next > block.last {
            *block = self.reserve_ids().await?;
        }
        let id = block.next;
        block.next += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(version: u64, data: &str) -> Item {
        Item::from([
            (items::VERSION.to_string(), n(version)),
            (items::DATA.to_string(), s(data)),
        ])
    }

    #[test]
    fn a_refused_commit_is_ours_only_if_the_stored_item_is_exactly_ours() {
        let ours = item(8, "staged 4096-ours");
        // Our earlier attempt applied it.
        assert!(own_commit("u", Some(&ours), &ours, 7).is_ok());
        // Another writer won from the version we read: ours was never applied.
        let theirs = item(8, "staged 4096-theirs");
        assert!(matches!(
            own_commit("u", Some(&theirs), &ours, 7),
            Err(StoreError::Conflict)
        ));
        // Removed (the sweep): nothing to keep.
        assert!(matches!(
            own_commit("u", None, &ours, 7),
            Err(StoreError::Conflict)
        ));
        // Moved on past ours, which may be in it: unknown, so what we wrote is left alone.
        let later = item(9, "staged 4096-ours 8192-next");
        assert!(matches!(
            own_commit("u", Some(&later), &ours, 7),
            Err(StoreError::Backend(_))
        ));
    }
}
