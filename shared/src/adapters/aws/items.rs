//! The table's item layout, written once: every key format and attribute name, how a record becomes
//! an item (`DynamoMeta`'s writes), and how an item comes back, from a read or from a stream record's
//! image (the cleanup and thumbnail functions). One table, string partition key `pk`:
//!
//! | pk               | attributes                                                                     |
//! |------------------|--------------------------------------------------------------------------------|
//! | `upload#<id>`    | `data` (session JSON), `version`, `expires_at` (TTL, s), `expires_ms`, `kind`; |
//! |                  | `expiry_shard` while unfinished (not `Completed`)                              |
//! | `part#<id>#<n>`  | `data` (part JSON: number, ETag, size, sources), `kind` = `part`, `expires_at` |
//! |                  | (the session's TTL)                                                            |
//! | `media#<id>`     | `data` (media JSON), `kind`, `media_type`                                      |
//! | `click#<uuid>`   | `data` (click JSON), `media_id`, `kind`                                        |
//! | `counter#media`  | `n`: the last media id reserved (processes take blocks of ids from it)         |
//! | `quota#<user>`   | `open_ids` (string set of the user's unfinished upload ids), `open_bytes`, `kind` |
//!
//! Records are stored whole as JSON so that the domain types stay the schema; only what a condition,
//! a filter or TTL needs is lifted into top-level attributes: `version` (conditional writes),
//! `expires_at` (the table's TTL attribute), `expiry_shard` and `expires_ms` (the key of the sweep's
//! index), `kind` and `media_type` (the thumbnail function's stream filter in template.yaml, which must
//! agree with this; the events function's filter selects media inserts and removals by `kind`).
//!
//! A part is an item of its own, written once, by the same transaction as the commit of the chunk
//! that fills it (`DynamoMeta::commit_chunk`), so that the session item, rewritten by every chunk,
//! stays small and of one size whatever the file's (DynamoDB bills a write per started KiB of the
//! item, and caps an item at 400 KB). Its key does not start with `upload#`, and it has a `kind` of
//! its own and no `expiry_shard`: no stream filter or reader that looks for sessions (the cleanup
//! function's TTL records, `ttl_removed_session`) and not the sweep's index ever sees one as a
//! session. Part items are only read by completion (`recorded_parts`) and are never deleted by us:
//! they carry the session's TTL attribute, so the table's TTL removes them with it, for free (a
//! delete by request would cost a write per part).
//!
//! The sweep's index, `EXPIRY_INDEX` (declared in template.yaml and `setup`), is sparse: partition key
//! `expiry_shard`, sort key `expires_ms`, keys only. Only unfinished sessions carry `expiry_shard`, so
//! the index holds exactly the sessions a sweep may have to free, and a completed session leaves it
//! with the write that completes it (its record goes later, by TTL). Chunk writes change neither key
//! attribute, so they cost the index nothing; it is written when a session is created, completed and
//! deleted. The shard spreads those writes over `EXPIRY_SHARDS` index partitions: with one constant
//! key every session creation in the service would land on one index partition, whose writes cannot be
//! split by a sort key that only grows (expiry = now + TTL), capping the service near 1000 sessions
//! per second; a sweep pays one small Query per shard instead.

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::streams::DynamoDbBatchItemFailure;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::upload::{PartRecord, UploadSession, UploadStatus};
use crate::domain::{Click, MediaRecord, MediaType, StoreError};

/// An item as the SDK reads and writes it.
pub type Item = HashMap<String, AttributeValue>;

/// The partition key, a string.
pub const PK: &str = "pk";
/// The record as JSON.
pub const DATA: &str = "data";
/// A session's version, the condition of every write to it.
pub const VERSION: &str = "version";
/// The table's TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// A session's expiry in epoch milliseconds, for the sweep's scan.
pub const EXPIRES_MS: &str = "expires_ms";
/// An unfinished session's shard of the sweep's index, `0..EXPIRY_SHARDS`; absent once completed.
pub const EXPIRY_SHARD: &str = "expiry_shard";
/// `upload`, `part`, `media`, `click` or `quota`.
pub const KIND: &str = "kind";
/// A media's type as the API names it (`image`, `doc`, ...).
pub const MEDIA_TYPE: &str = "media_type";
/// A click's media.
pub const MEDIA_ID: &str = "media_id";
/// The media counter's value.
pub const COUNTER: &str = "n";
/// A user's unfinished uploads (a string set; absent when there are none) and their declared bytes.
pub const OPEN_IDS: &str = "open_ids";
pub const OPEN_BYTES: &str = "open_bytes";

pub const KIND_UPLOAD: &str = "upload";
pub const KIND_PART: &str = "part";
pub const KIND_MEDIA: &str = "media";
pub const KIND_CLICK: &str = "click";
pub const KIND_QUOTA: &str = "quota";

/// The global secondary index of unfinished sessions by expiry (keys only).
pub const EXPIRY_INDEX: &str = "unfinished-by-expiry";
/// How many partition key values the index spreads sessions over. May grow (the sweep queries every
/// shard below it), never shrink while sessions with a higher shard exist (they would only go by TTL).
pub const EXPIRY_SHARDS: u32 = 16;

/// The one item holding the last media id reserved.
pub const MEDIA_COUNTER_PK: &str = "counter#media";

/// Key prefixes, one per kind of item.
pub const UPLOAD_PREFIX: &str = "upload#";
pub const PART_PREFIX: &str = "part#";
pub const MEDIA_PREFIX: &str = "media#";
pub const CLICK_PREFIX: &str = "click#";
pub const QUOTA_PREFIX: &str = "quota#";

pub fn upload_pk(id: &str) -> String {
    format!("{UPLOAD_PREFIX}{id}")
}

/// Part `number` of upload `upload_id`.
pub fn part_pk(upload_id: &str, number: u32) -> String {
    format!("{PART_PREFIX}{upload_id}#{number}")
}

pub fn quota_pk(user: &str) -> String {
    format!("{QUOTA_PREFIX}{user}")
}

pub fn media_pk(id: u64) -> String {
    format!("{MEDIA_PREFIX}{id}")
}

/// A fresh key: clicks never contend with each other.
pub fn new_click_pk() -> String {
    format!("{CLICK_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// The index shard of a session: a stable hash of its id, so that its writes always agree.
pub fn expiry_shard(upload_id: &str) -> u32 {
    // FNV-1a: stable across processes and Rust versions (std's hasher is neither promised).
    let h = upload_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (h % u64::from(EXPIRY_SHARDS)) as u32
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    let json = serde_json::to_string(v).context("encoding a record as JSON")?;
    Ok(AttributeValue::S(json))
}

/// The record an item holds.
pub fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let data = item
        .get(DATA)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| anyhow!("item without a string attribute `{DATA}`"))?;
    Ok(serde_json::from_str(data).context("decoding a stored record")?)
}

pub fn session_item(session: &UploadSession) -> Result<Item, StoreError> {
    let mut item = HashMap::from([
        (PK.to_string(), s(upload_pk(&session.id))),
        (DATA.to_string(), encode(session)?),
        (VERSION.to_string(), n(session.version)),
        // DynamoDB TTL wants epoch seconds; it deletes late (up to days), so expiry itself is decided
        // by `expires_ms` and the sweep, and TTL only keeps the table from growing.
        (
            EXPIRES_AT.to_string(),
            n(session.expires_at_ms.div_euclid(1000)),
        ),
        (EXPIRES_MS.to_string(), n(session.expires_at_ms)),
        (KIND.to_string(), s(KIND_UPLOAD)),
    ]);
    // In the sweep's index only while there is something to free: the whole item is written each
    // time, so a completing write leaves the attribute out and the session leaves the index.
    if !matches!(session.status, UploadStatus::Completed { .. }) {
        item.insert(EXPIRY_SHARD.to_string(), n(expiry_shard(&session.id)));
    }
    Ok(item)
}

/// A part of `session`'s upload, removed by the table's TTL when the session is.
pub fn part_item(session: &UploadSession, part: &PartRecord) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        (PK.to_string(), s(part_pk(&session.id, part.number))),
        (DATA.to_string(), encode(part)?),
        (KIND.to_string(), s(KIND_PART)),
        (
            EXPIRES_AT.to_string(),
            n(session.expires_at_ms.div_euclid(1000)),
        ),
    ]))
}

pub fn media_item(media: &MediaRecord) -> Result<Item, StoreError> {
    let media_type = serde_json::to_value(media.media_type).context("encoding a media type")?;
    Ok(HashMap::from([
        (PK.to_string(), s(media_pk(media.id))),
        (DATA.to_string(), encode(media)?),
        (KIND.to_string(), s(KIND_MEDIA)),
        // Lifted out of `data` for the stream filter of the thumbnail function.
        (
            MEDIA_TYPE.to_string(),
            s(media_type.as_str().unwrap_or_default()),
        ),
    ]))
}

pub fn click_item(click: &Click) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        (PK.to_string(), s(new_click_pk())),
        (DATA.to_string(), encode(click)?),
        (MEDIA_ID.to_string(), n(click.media_id)),
        (KIND.to_string(), s(KIND_CLICK)),
    ]))
}

// ---------------------------------------------------------------------------------------------------
// Items as the table's stream carries them (Lambda's DynamoDB event records).

/// A string attribute of a stream image.
fn image_s<'a>(image: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// Whether the record is a deletion by the table's TTL (rather than by a user, the sweep or the
/// handlers): DynamoDB marks those with its own service principal.
pub fn is_ttl_removal(record: &EventRecord) -> bool {
    record.event_name == "REMOVE"
        && record
            .user_identity
            .as_ref()
            .is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com")
}

/// The upload session of a stream record that is a REMOVE done by the TTL service; `None` for any
/// other record (inserts, updates, a user's or the sweep's own deletes, media items). An error for a
/// TTL removal that cannot be read (no old image, or not a session in it).
pub fn ttl_removed_session(record: &EventRecord) -> anyhow::Result<Option<UploadSession>> {
    if !is_ttl_removal(record) {
        return Ok(None);
    }
    let old = &record.change.old_image;
    if old.is_empty() {
        anyhow::bail!("a TTL REMOVE record without OldImage: the stream must carry old images");
    }
    let is_upload = image_s(old, PK).is_some_and(|pk| pk.starts_with(UPLOAD_PREFIX));
    if !is_upload {
        return Ok(None);
    }
    let data = image_s(old, DATA).context("upload item without its data attribute")?;
    Ok(Some(
        serde_json::from_str(data).context("upload session in the old image")?,
    ))
}

/// The id of the media a stream record inserted, if it is an image media (the event source filter
/// already selects these; checked again so that a wider filter changes nothing).
pub fn inserted_image_media(record: &EventRecord) -> Option<u64> {
    if record.event_name != "INSERT" {
        return None;
    }
    let new = &record.change.new_image;
    let media_type: MediaType =
        serde_json::from_value(serde_json::Value::from(image_s(new, MEDIA_TYPE)?)).ok()?;
    let id = image_s(new, PK)?.strip_prefix(MEDIA_PREFIX)?.parse().ok()?;
    media_type.is_image().then_some(id)
}

/// A media record's arrival or departure, as the events function reads it from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaChange {
    /// Written for the first time (an INSERT; later writes, such as a deferred thumbnail, are MODIFYs).
    Inserted(MediaRecord),
    /// Removed (a user's DELETE), as it was.
    Removed(MediaRecord),
}

/// The media a stream record inserted or removed; `None` for every other record (MODIFYs, other
/// kinds of item). An error for a media record whose image is missing or cannot be read.
pub fn media_change(record: &EventRecord) -> anyhow::Result<Option<MediaChange>> {
    let (image, change): (_, fn(MediaRecord) -> MediaChange) = match record.event_name.as_str() {
        "INSERT" => (&record.change.new_image, MediaChange::Inserted),
        "REMOVE" => (&record.change.old_image, MediaChange::Removed),
        _ => return Ok(None),
    };
    let key = image_s(&record.change.keys, PK).or_else(|| image_s(image, PK));
    if !key.is_some_and(|pk| pk.starts_with(MEDIA_PREFIX)) {
        return Ok(None);
    }
    if image.is_empty() {
        anyhow::bail!(
            "a media {} record without its image: the stream must carry new and old images",
            record.event_name
        );
    }
    let data = image_s(image, DATA).context("media item without its data attribute")?;
    let media = serde_json::from_str(data).context("media record in the stream image")?;
    Ok(Some(change(media)))
}

/// The batch response's entry asking Lambda to retry `record` (and the records after it in its
/// shard): its sequence number.
pub fn retry(record: &EventRecord) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(record.change.sequence_number.clone().unwrap_or_default());
    failure
}
