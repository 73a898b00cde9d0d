//! Cleanup of expired uploads on AWS (issue 4), against moto on loopback: uploads made through the real
//! handlers (`routes::route`) with a TTL of a few seconds, left to expire, then freed by the scheduled
//! sweep and by DynamoDB stream records of TTL deletions (`fixtures/ttl_remove_event.json`, filled with
//! the real item read from the table, which is deleted first, as TTL does). Checked against the bucket
//! itself (ListObjectsV2, ListMultipartUploads) and the table (GetItem, Scan), not only the reports.
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-shared --test aws_cleanup -- --include-ignored
//! ```
//!
//! The tests that only read the fixture need no moto server; the others are ignored without
//! `--include-ignored` (see `media_testkit::moto`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;
use media_shared::adapters::aws::{items, staging_prefix, AwsClients, AwsConfig};
use media_shared::app::App;
use media_shared::cleanup::{self, CleanupEvent, SweepReport};
use media_shared::domain::upload::{UploadSession, UploadStatus};
use media_testkit::aws::{self, LambdaEnv};
use media_testkit::handlers::*;
use media_testkit::{md5_hex, pdf, CHUNK};
use serde_json::{json, Value};
use time::OffsetDateTime;

const MIB: usize = 1024 * 1024;
/// What the official client sends.
/// Short enough to wait for, long enough to build one upload through moto before it expires.
// Long enough for the slowest upload of a set to finish through moto on a loaded CI machine.
const TTL_SECS: u64 = 10;
const FIXTURE: &str = include_str!("fixtures/ttl_remove_event.json");

// ---------------------------------------------------------------------------------------------------
// Environment: a fresh bucket and table per test, the App built the way the Lambda functions build it.

struct Aws {
    app: App,
    clients: AwsClients,
    cfg: AwsConfig,
}

async fn fresh() -> Aws {
    let ttl = TTL_SECS.to_string();
    let LambdaEnv { app, clients, cfg } = aws::for_lambda(
        "the AWS cleanup tests",
        "media-cleanup",
        &[
            ("MEDIA_PART_SIZE", "5242880"),
            ("MEDIA_UPLOAD_TTL_SECS", ttl.as_str()),
        ],
    )
    .await;
    assert_eq!(cfg.part_size, 5 * MIB as u64);
    assert_eq!(app.limits.upload_ttl_secs, TTL_SECS);
    Aws { app, clients, cfg }
}

// ---------------------------------------------------------------------------------------------------
// Requests through the real handlers.

/// The same App with uploads that live an hour.
fn long_lived(app: &App) -> App {
    let mut long = app.clone();
    long.limits.upload_ttl_secs = 3600;
    long
}

async fn session(app: &App, id: &str) -> UploadSession {
    app.uploads
        .get_upload(id)
        .await
        .unwrap()
        .expect("the session exists")
}

// ---------------------------------------------------------------------------------------------------
// Storage as it really is.

async fn keys(aws: &Aws, prefix: &str) -> Vec<String> {
    media_testkit::aws::list_keys(&aws.clients.s3, &aws.cfg.bucket, prefix).await
}

async fn multipart_uploads(aws: &Aws) -> Vec<(String, String)> {
    media_testkit::aws::list_multipart_uploads(&aws.clients.s3, &aws.cfg.bucket).await
}

type Item = HashMap<String, AttributeValue>;

async fn raw_item(aws: &Aws, pk: &str) -> Option<Item> {
    aws.clients
        .dynamodb
        .get_item()
        .table_name(&aws.cfg.table)
        .key("pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// (pk, version) of every item in the table.
async fn table_items(aws: &Aws) -> BTreeSet<(String, Option<String>)> {
    let mut out = BTreeSet::new();
    let mut start = None;
    loop {
        let page = aws
            .clients
            .dynamodb
            .scan()
            .table_name(&aws.cfg.table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in page.items() {
            out.insert((
                item["pk"].as_s().unwrap().clone(),
                item.get("version").map(|v| v.as_n().unwrap().clone()),
            ));
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

/// Everything that cleanup could change: objects, multipart uploads, table items.
type Snapshot = (
    Vec<String>,
    Vec<(String, String)>,
    BTreeSet<(String, Option<String>)>,
);

async fn snapshot(aws: &Aws) -> Snapshot {
    let mut k = keys(aws, "").await;
    k.sort();
    let mut m = multipart_uploads(aws).await;
    m.sort();
    (k, m, table_items(aws).await)
}

// ---------------------------------------------------------------------------------------------------
// DynamoDB stream records.

/// An SDK item as DynamoDB JSON, the way stream records carry images.
fn ddb_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attr_json(v)))
            .collect(),
    )
}

fn attr_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attr_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": ddb_json(m) }),
        other => panic!("no DynamoDB JSON for {other:?} in these tests"),
    }
}

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// The fixture's record with this item as its key and old image.
fn record_for(aws: Option<&Aws>, old_image: Value, seq: u64) -> Value {
    let mut r = fixture()["Records"][0].clone();
    r["eventID"] = json!(uuid::Uuid::new_v4().simple().to_string());
    r["dynamodb"]["Keys"] = json!({ "pk": old_image["pk"].clone() });
    r["dynamodb"]["SizeBytes"] = json!(old_image.to_string().len());
    r["dynamodb"]["OldImage"] = old_image;
    r["dynamodb"]["SequenceNumber"] = json!(format!(
        "{:028}",
        4_421_584_500_000_000_000_000_000u128 + seq as u128
    ));
    r["dynamodb"]["ApproximateCreationDateTime"] =
        json!(OffsetDateTime::now_utc().unix_timestamp());
    if let Some(aws) = aws {
        r["eventSourceARN"] = json!(format!(
            "arn:aws:dynamodb:us-east-1:123456789012:table/{}/stream/2026-01-01T00:00:00.000",
            aws.cfg.table
        ));
    }
    r
}

/// What TTL does to an expired session: reads nothing, deletes the item, and the stream carries its
/// old image. Returns that image.
async fn delete_as_ttl(aws: &Aws, upload_id: &str) -> Value {
    let pk = format!("upload#{upload_id}");
    let item = raw_item(aws, &pk).await.expect("the session item exists");
    aws.clients
        .dynamodb
        .delete_item()
        .table_name(&aws.cfg.table)
        .key("pk", AttributeValue::S(pk.clone()))
        .send()
        .await
        .unwrap();
    assert!(raw_item(aws, &pk).await.is_none());
    ddb_json(&item)
}

/// The cleanup function's handling of `event`, from its JSON to its JSON answer, as lambda_runtime
/// does it.
async fn invoke(app: &App, event: &Value) -> Value {
    let event: CleanupEvent = serde_json::from_value(event.clone()).expect("a cleanup event");
    let answer = cleanup::handle_event(app, &event, OffsetDateTime::now_utc())
        .await
        .unwrap();
    serde_json::to_value(answer).unwrap()
}

/// A stream record in its Lambda shape, typed.
fn typed(record: &Value) -> EventRecord {
    serde_json::from_value(record.clone()).expect("a DynamoDB stream record")
}

fn event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

fn no_failures(answer: &Value) {
    assert_eq!(answer, &json!({ "batchItemFailures": [] }), "{answer}");
}

// ---------------------------------------------------------------------------------------------------
// The five kinds of upload, made through the handlers.

struct Uploads {
    /// One chunk holding the whole small file: its only part written, never completed.
    fresh: String,
    /// Five 204800-byte chunks of a 12 MiB PDF: staged objects, below one part.
    staged: String,
    /// 8 MiB of a 12 MiB PDF merged into part 1 of an open multipart upload, plus one staged chunk.
    multipart: String,
    /// Completed: the media's object and record must survive.
    completed: String,
    media_id: u64,
    media_md5: String,
    /// Fully received, completed with a wrong md5 (kept, so unfinished).
    failed: String,
}

impl Uploads {
    fn unfinished(&self) -> [&str; 4] {
        [&self.fresh, &self.staged, &self.multipart, &self.failed]
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.fresh,
            &self.staged,
            &self.multipart,
            &self.completed,
            &self.failed,
        ]
    }
}

async fn make_uploads(aws: &Aws, seed: u64) -> Uploads {
    let app = &aws.app;
    let small = pdf(150_000, seed);
    let fresh = upload(app, &small, &[small.len()], small.len()).await;
    let s = session(app, &fresh).await;
    let mpu = s
        .staging
        .multipart_upload_id
        .clone()
        .expect("a one-part upload");
    assert!(multipart_uploads(aws)
        .await
        .contains(&(s.object_key(), mpu)));
    assert_eq!(keys(aws, &s.object_key()).await, Vec::<String>::new());

    let big = pdf(12 * MIB, seed + 1);
    let staged = upload(app, &big, &[CHUNK], 5 * CHUNK).await;
    let s = session(app, &staged).await;
    assert_eq!(s.staging.staged.len(), 5);
    // Its multipart upload is opened with the session, and holds no part yet.
    assert!(s.staging.multipart_upload_id.is_some() && s.staging.part_count() == 0);
    assert_eq!(keys(aws, &staging_prefix(&staged)).await.len(), 5);

    let big = pdf(12 * MIB, seed + 2);
    let multipart = upload(app, &big, &[4 * MIB, 4 * MIB, CHUNK], 8 * MIB + CHUNK).await;
    let s = session(app, &multipart).await;
    assert_eq!(s.staging.part_count(), 1, "{:?}", s.staging);
    assert_eq!(s.staging.staged.len(), 1, "{:?}", s.staging);
    let mpu = s
        .staging
        .multipart_upload_id
        .clone()
        .expect("a multipart upload is open");
    assert!(multipart_uploads(aws)
        .await
        .contains(&(s.object_key(), mpu)));
    // The staged chunks of a part stay until the upload is finished or freed (they are the sources
    // a part lost after its commit is written again from): the two of part 1 and the staged one.
    assert_eq!(keys(aws, &staging_prefix(&multipart)).await.len(), 3);

    let doc = pdf(300_000, seed + 3);
    let completed = upload(app, &doc, &[CHUNK], doc.len()).await;
    let (status, media) = complete(app, &completed, &md5_hex(&doc)).await;
    assert_eq!(status, 201, "{media}");
    let media_id = media["id"].as_u64().unwrap();

    let doc2 = pdf(300_000, seed + 4);
    let failed = upload(app, &doc2, &[CHUNK], doc2.len()).await;
    let (status, body) = complete(app, &failed, &md5_hex(b"something else")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["code"], "md5_mismatch", "{body}");
    // Kept as it was: completable with the right md5 until it expires, then swept like any other.
    assert!(matches!(
        session(app, &failed).await.status,
        UploadStatus::Receiving
    ));

    Uploads {
        fresh,
        staged,
        multipart,
        completed,
        media_id,
        media_md5: md5_hex(&doc),
        failed,
    }
}

/// Sleeps until every listed session is past its `expires` by the API's own clock.
async fn wait_until_expired(aws: &Aws, ids: &[&str]) {
    let mut last = 0;
    for id in ids {
        last = last.max(session(&aws.app, id).await.expires_at_ms);
    }
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let wait = (last - now_ms).max(0) as u64 + 300;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    // Expired for the API too: no more chunks.
    let s = session(&aws.app, ids[0]).await;
    assert!(s.is_expired(OffsetDateTime::now_utc()));
}

/// Nothing of these uploads is left anywhere: no multipart upload, no staged object, no object at
/// their key, no session item.
async fn assert_freed(aws: &Aws, keys_by_id: &HashMap<String, String>, ids: &[&str]) {
    let mpus = multipart_uploads(aws).await;
    for id in ids {
        let key = &keys_by_id[*id];
        assert!(
            !mpus.iter().any(|(k, _)| k == key),
            "multipart upload left for {id}: {mpus:?}"
        );
        assert_eq!(
            keys(aws, &staging_prefix(id)).await,
            Vec::<String>::new(),
            "staged chunks of {id}"
        );
        assert_eq!(
            keys(aws, key).await,
            Vec::<String>::new(),
            "object left at {key}"
        );
        assert!(
            raw_item(aws, &format!("upload#{id}")).await.is_none(),
            "session {id} left"
        );
    }
}

/// The completed media is intact: its record through the handler, its bytes through its URL.
async fn assert_media_intact(aws: &Aws, u: &Uploads, key: &str) {
    let (status, media) = get_media(&aws.app, u.media_id).await;
    assert_eq!(status, 200, "{media}");
    let url = media["url"].as_str().expect("a document has a url");
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(md5_hex(&bytes), u.media_md5);
    assert_eq!(keys(aws, key).await, vec![key.to_string()]);
    assert!(raw_item(aws, &format!("media#{}", u.media_id))
        .await
        .is_some());
}

async fn object_keys(aws: &Aws, u: &Uploads) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in u.all() {
        out.insert(id.to_string(), session(&aws.app, id).await.object_key());
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Tests.

/// Two sets of the five kinds: one freed by the sweep, one by TTL REMOVE records on the stream; then
/// both paths again, which must change nothing.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn sweep_and_ttl_stream_free_expired_uploads_and_keep_media() {
    let aws = fresh().await;
    let swept = make_uploads(&aws, 10).await;
    let streamed = make_uploads(&aws, 20).await;
    let mut object_key = object_keys(&aws, &swept).await;
    object_key.extend(object_keys(&aws, &streamed).await);
    wait_until_expired(&aws, &[&streamed.failed, &swept.failed]).await;

    // The API itself refuses expired uploads.
    let (status, body) = chunk(
        &aws.app,
        Some(&streamed.staged),
        &[0u8; 10],
        5 * CHUNK,
        12 * MIB,
    )
    .await;
    assert_eq!(status, 410, "{body}");

    // TTL removes the stream set's items; the stream carries their old images.
    let mut records = Vec::new();
    for (i, id) in streamed.all().into_iter().enumerate() {
        let old = delete_as_ttl(&aws, id).await;
        assert_eq!(old["pk"]["S"], format!("upload#{id}"));
        records.push(record_for(Some(&aws), old, i as u64));
    }
    let ttl_event = event(records);

    // The sweep frees what it finds in the table: the swept set only, and of it the unfinished
    // sessions (the index it reads holds no other). The completed session holds nothing to free: its
    // record is left to TTL, whose stream record is harmless (below).
    let report = cleanup::sweep(&aws.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        report,
        SweepReport {
            released: 4,
            sessions_removed: 4,
            skipped: 0,
            failed: 0
        }
    );
    assert_freed(&aws, &object_key, &swept.unfinished()).await;
    assert!(raw_item(&aws, &format!("upload#{}", swept.completed))
        .await
        .is_some());
    assert_media_intact(&aws, &swept, &object_key[&swept.completed]).await;

    // The stream set still holds its bytes: only the stream records can free them.
    assert_eq!(keys(&aws, &staging_prefix(&streamed.staged)).await.len(), 5);
    assert_eq!(
        keys(&aws, &staging_prefix(&streamed.multipart)).await.len(),
        3
    );
    assert!(multipart_uploads(&aws)
        .await
        .iter()
        .any(|(k, _)| *k == object_key[&streamed.multipart]));
    assert!(multipart_uploads(&aws)
        .await
        .iter()
        .any(|(k, _)| *k == object_key[&streamed.fresh]));

    let answer = invoke(&aws.app, &ttl_event).await;
    no_failures(&answer);
    assert_freed(&aws, &object_key, &streamed.unfinished()).await;
    assert_media_intact(&aws, &streamed, &object_key[&streamed.completed]).await;
    assert_media_intact(&aws, &swept, &object_key[&swept.completed]).await;
    assert_eq!(
        multipart_uploads(&aws).await,
        vec![],
        "no multipart upload left in the bucket"
    );
    assert_eq!(keys(&aws, "staging/").await, Vec::<String>::new());

    // Again: nothing left to do, nothing else deleted.
    let before = snapshot(&aws).await;
    assert_eq!(
        before.0.len(),
        2,
        "only the two media objects remain: {:?}",
        before.0
    );
    let report = cleanup::sweep(&aws.app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report, SweepReport::default());
    let answer = invoke(&aws.app, &ttl_event).await;
    no_failures(&answer);
    assert_eq!(snapshot(&aws).await, before);
    assert_media_intact(&aws, &streamed, &object_key[&streamed.completed]).await;
}

/// Only TTL removals of upload sessions are acted on: a user's delete, inserts, updates and other
/// items leave every byte where it is.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn stream_records_other_than_ttl_removals_of_sessions_are_ignored() {
    let aws = fresh().await;
    let big = pdf(12 * MIB, 30);
    let deleted_by_user = upload(&aws.app, &big, &[CHUNK], 3 * CHUNK).await;
    let modified = upload(&aws.app, &big, &[4 * MIB, 4 * MIB, CHUNK], 8 * MIB + CHUNK).await;
    let doc = pdf(100_000, 31);
    let done = upload(&aws.app, &doc, &[CHUNK], doc.len()).await;
    let (status, media) = complete(&aws.app, &done, &md5_hex(&doc)).await;
    assert_eq!(status, 201, "{media}");
    let media_id = media["id"].as_u64().unwrap();
    wait_until_expired(&aws, &[&deleted_by_user, &modified, &done]).await;

    // A REMOVE by a user (or by the sweep itself): no userIdentity.
    let old = delete_as_ttl(&aws, &deleted_by_user).await;
    let mut user_remove = record_for(Some(&aws), old, 1);
    user_remove.as_object_mut().unwrap().remove("userIdentity");
    // MODIFY and INSERT of a live item, even by the TTL principal.
    let item = ddb_json(&raw_item(&aws, &format!("upload#{modified}")).await.unwrap());
    let mut modify = record_for(Some(&aws), item.clone(), 2);
    modify["eventName"] = json!("MODIFY");
    let mut insert = record_for(Some(&aws), item, 3);
    insert["eventName"] = json!("INSERT");
    insert["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("OldImage");
    // A media item removed by TTL.
    let media_item = ddb_json(&raw_item(&aws, &format!("media#{media_id}")).await.unwrap());
    let media_remove = record_for(Some(&aws), media_item, 4);

    let before = snapshot(&aws).await;
    assert_eq!(
        before.1.len(),
        2,
        "the multipart uploads of the two unfinished uploads: {:?}",
        before.1
    );
    assert_eq!(keys(&aws, &staging_prefix(&deleted_by_user)).await.len(), 3);
    let answer = invoke(
        &aws.app,
        &event(vec![user_remove, modify, insert, media_remove]),
    )
    .await;
    no_failures(&answer);
    assert_eq!(
        snapshot(&aws).await,
        before,
        "an ignored record changed storage"
    );
    assert_eq!(get_media(&aws.app, media_id).await.0, 200);

    // The fixture as it is: a TTL removal of an upload this bucket never had. Nothing to free, nothing
    // to fail on, nothing else touched.
    let answer = invoke(&aws.app, &fixture()).await;
    no_failures(&answer);
    assert_eq!(snapshot(&aws).await, before);
}

/// The EventBridge schedule's event runs the sweep and answers with its report.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn schedule_event_runs_the_sweep() {
    let aws = fresh().await;
    let big = pdf(12 * MIB, 40);
    let staged = upload(&aws.app, &big, &[CHUNK], 4 * CHUNK).await;
    let multipart = upload(&aws.app, &big, &[4 * MIB, 2 * MIB], 6 * MIB).await;
    let keys_by_id: HashMap<String, String> = [&staged, &multipart]
        .into_iter()
        .map(|id| (id.clone(), format!("media/{id}.pdf")))
        .collect();
    // Each opened with its session.
    assert_eq!(multipart_uploads(&aws).await.len(), 2);
    wait_until_expired(&aws, &[&staged, &multipart]).await;

    let schedule = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-01T00:15:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/media-CleanupFunctionSweep"],
        "detail": {}
    });
    let answer = invoke(&aws.app, &schedule).await;
    assert_eq!(
        answer,
        json!({"released": 2, "sessions_removed": 2, "skipped": 0, "failed": 0})
    );
    assert_freed(&aws, &keys_by_id, &[&staged, &multipart]).await;
    let answer = invoke(&aws.app, &schedule).await;
    assert_eq!(
        answer,
        json!({"released": 0, "sessions_removed": 0, "skipped": 0, "failed": 0})
    );
}

/// Two sweeps at once (two scheduled invocations overlapping) both succeed and leave nothing behind.
#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn concurrent_sweeps_are_safe() {
    let aws = fresh().await;
    let u = make_uploads(&aws, 50).await;
    let object_key = object_keys(&aws, &u).await;
    wait_until_expired(&aws, &[&u.failed]).await;
    // A live upload (an hour to go) next to the expired ones.
    let long = long_lived(&aws.app);
    let big = pdf(12 * MIB, 57);
    let live = upload(&long, &big, &[CHUNK], 2 * CHUNK).await;

    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(cleanup::sweep(&aws.app, now), cleanup::sweep(&aws.app, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each unfinished session is claimed by exactly one of them (a conditional write), which frees
    // and removes it; the other, if it listed the session at all, loses the claim and skips it.
    // The completed session is not theirs to remove (TTL's).
    assert_eq!(a.released + b.released, 4, "{a:?} {b:?}");
    assert_eq!(a.sessions_removed + b.sessions_removed, 4, "{a:?} {b:?}");
    assert!(a.skipped + b.skipped <= 4, "{a:?} {b:?}");
    eprintln!("concurrent sweeps: {a:?} {b:?}");

    assert_freed(&aws, &object_key, &u.unfinished()).await;
    assert_media_intact(&aws, &u, &object_key[&u.completed]).await;
    // The live upload is untouched and can go on.
    assert_eq!(keys(&aws, &staging_prefix(&live)).await.len(), 2);
    let s = session(&aws.app, &live).await;
    assert_eq!(s.offset, 2 * CHUNK as u64);
    let (status, body) = chunk(
        &long,
        Some(&live),
        &big[2 * CHUNK..3 * CHUNK],
        2 * CHUNK,
        big.len(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        cleanup::sweep(&aws.app, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        SweepReport::default()
    );
}

// ---------------------------------------------------------------------------------------------------
// The fixture itself (no moto needed).

#[test]
fn fixture_has_the_shape_of_a_ttl_removal() {
    let f = fixture();
    let records = f["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["eventName"], "REMOVE");
    assert_eq!(r["eventVersion"], "1.1");
    assert_eq!(r["eventSource"], "aws:dynamodb");
    assert_eq!(
        r["userIdentity"],
        json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
    );
    assert_eq!(r["dynamodb"]["StreamViewType"], "OLD_IMAGE");
    assert!(r["dynamodb"]["SequenceNumber"].is_string());
    assert!(r["dynamodb"]["ApproximateCreationDateTime"].is_number());
    assert!(r["eventSourceARN"].as_str().unwrap().contains(":table/"));
    assert_eq!(r["dynamodb"]["Keys"]["pk"], r["dynamodb"]["OldImage"]["pk"]);

    // Its old image is a real session item: the cleanup reads it as one.
    let session = items::ttl_removed_session(&typed(r))
        .unwrap()
        .expect("a TTL removal of a session");
    assert_eq!(
        format!("upload#{}", session.id),
        r["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap()
    );
    assert_eq!(
        r["dynamodb"]["OldImage"]["version"]["N"],
        session.version.to_string()
    );
}

#[test]
fn only_ttl_removals_of_sessions_are_read_as_sessions() {
    let r = fixture()["Records"][0].clone();
    let read = |r: &Value| items::ttl_removed_session(&typed(r)).unwrap();
    assert!(read(&r).is_some());

    let mut user = r.clone();
    user.as_object_mut().unwrap().remove("userIdentity");
    assert!(read(&user).is_none(), "a user's delete");
    let mut other = r.clone();
    other["userIdentity"]["principalId"] = json!("AROAEXAMPLE:someone");
    assert!(read(&other).is_none(), "another principal");
    for name in ["INSERT", "MODIFY"] {
        let mut x = r.clone();
        x["eventName"] = json!(name);
        assert!(read(&x).is_none(), "{name}");
    }
    let mut media = r.clone();
    media["dynamodb"]["OldImage"]["pk"] = json!({"S": "media#17"});
    assert!(read(&media).is_none(), "a media item");

    // A TTL removal without its old image cannot be acted on: an error, logged, not retried.
    let mut bare = r.clone();
    bare["dynamodb"].as_object_mut().unwrap().remove("OldImage");
    assert!(items::ttl_removed_session(&typed(&bare)).is_err());
}
