//! The table's stream as it really is, through the template's event filters, into the functions'
//! handlers (issue 10). moto implements DynamoDB Streams: the records that completing an image upload
//! and deleting a session produce are read back with the DynamoDB Streams API, turned into the records
//! of Lambda's DynamoDB event (the same fields, plus `eventSourceARN`), and run through the
//! `FilterCriteria` patterns parsed from `template.yaml`. What passes a function's filter is handed to
//! its handler, as Lambda would.
//!
//! moto has no TTL process, so the TTL removal is the real REMOVE of a session with the TTL service's
//! `userIdentity` taken from the committed fixture (`fixtures/ttl_remove_event.json`). It reaches
//! cleanup; the same delete without it (a user's, or the sweep's own) and a media INSERT do not; the
//! media INSERT reaches the thumbnail function, whose write-back reaches nobody.
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p media-shared --test stream_events
//! ```
//!
//! The tests of the pattern matcher and of the template's patterns against the fixture need no moto.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use media_shared::adapters::aws::{items, staging_prefix, AwsClients, AwsConfig};
use media_shared::app::App;
use media_shared::cleanup::{self, CleanupEvent};
use media_shared::thumbnailer;
use media_shared::wiring::{self, Stores};
use media_testkit::handlers::*;
use media_testkit::{md5_hex, pdf, CHUNK};
use serde_json::{json, Value};
use time::OffsetDateTime;

const TEMPLATE: &str = include_str!("../../template.yaml");
const FIXTURE: &str = include_str!("fixtures/ttl_remove_event.json");
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Lambda's event filtering: the subset of its pattern syntax the template uses.

/// Whether `record` matches `pattern` the way Lambda's event filtering decides it: every key of the
/// pattern must be in the record; an object recurses; an array lists the values accepted (a record
/// value that is itself an array matches if any element does). Content filters (`prefix`, `exists`,
/// `anything-but`, `numeric`, ...) are not used by the template and stop the test rather than being
/// guessed at; so does anything that is not a valid pattern.
fn matches(pattern: &Value, record: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        panic!("a pattern is a JSON object, not {pattern}");
    };
    fields.iter().all(|(key, want)| {
        let Some(got) = record.get(key) else {
            return false;
        };
        match want {
            Value::Object(_) => got.is_object() && matches(want, got),
            Value::Array(accepted) => {
                for a in accepted {
                    assert!(
                        !a.is_object() && !a.is_array(),
                        "content filter {a} in a pattern: not supported by this matcher; extend it"
                    );
                }
                match got {
                    Value::Array(values) => values.iter().any(|v| accepted.contains(v)),
                    v => accepted.contains(v),
                }
            }
            other => panic!("pattern value for {key:?} must be an object or an array, not {other}"),
        }
    })
}

/// A record passes a function's filter criteria if it matches any of its patterns.
fn passes(patterns: &[Value], record: &Value) -> bool {
    patterns.iter().any(|p| matches(p, record))
}

/// Every DynamoDB event source's filter patterns in `template.yaml`, by the function's binary name.
/// A pattern that is not JSON fails here.
fn template_filters() -> BTreeMap<String, Vec<Value>> {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml");
    let resources = template["Resources"]
        .as_mapping()
        .expect("the template's Resources");
    let mut out = BTreeMap::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} names no binary"));
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values() {
            if event["Type"].as_str() != Some("DynamoDB") {
                continue;
            }
            let filters = event["Properties"]["FilterCriteria"]["Filters"]
                .as_sequence()
                .unwrap_or_else(|| panic!("the stream of {binary} has no FilterCriteria"));
            for filter in filters {
                let text = filter["Pattern"].as_str().expect("a Pattern string");
                let pattern: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{binary}'s pattern is not JSON ({e}): {text}"));
                out.entry(binary.to_string())
                    .or_insert_with(Vec::new)
                    .push(pattern);
            }
        }
    }
    out
}

/// The two stream consumers' patterns; both must have some.
fn filters() -> (Vec<Value>, Vec<Value>) {
    let mut all = template_filters();
    let cleanup = all.remove("cleanup").expect("cleanup reads the stream");
    let thumbnail = all.remove("thumbnail").expect("thumbnail reads the stream");
    assert!(all.is_empty(), "other stream consumers: {all:?}");
    assert!(!cleanup.is_empty() && !thumbnail.is_empty());
    (cleanup, thumbnail)
}

fn fixture_record() -> Value {
    let f: Value = serde_json::from_str(FIXTURE).unwrap();
    f["Records"][0].clone()
}

#[test]
fn the_matcher_is_strict() {
    let ttl = fixture_record();
    let p = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
    assert!(matches(&p(r#"{"eventName": ["REMOVE"]}"#), &ttl));
    assert!(matches(
        &p(r#"{"eventName": ["INSERT", "REMOVE"], "userIdentity": {"type": ["Service"]}}"#),
        &ttl
    ));
    // A misspelt value, a misspelt key, a wrong level, a missing field: no match.
    assert!(!matches(&p(r#"{"eventName": ["REMOVED"]}"#), &ttl));
    assert!(!matches(
        &p(r#"{"userIdentity": {"principalID": ["dynamodb.amazonaws.com"]}}"#),
        &ttl
    ));
    assert!(!matches(
        &p(r#"{"principalId": ["dynamodb.amazonaws.com"]}"#),
        &ttl
    ));
    assert!(!matches(
        &p(r#"{"dynamodb": {"NewImage": {"kind": {"S": ["upload"]}}}}"#),
        &ttl
    ));
    // Nested values and arrays in the record.
    assert!(matches(
        &p(r#"{"dynamodb": {"OldImage": {"kind": {"S": ["media", "upload"]}}}}"#),
        &ttl
    ));
    assert!(matches(&p(r#"{"a": ["x"]}"#), &json!({"a": ["y", "x"]})));
    // What the matcher does not know stops the test instead of matching or not by accident.
    for bad in [
        r#"{"eventName": [{"prefix": "REM"}]}"#,
        r#"{"eventName": "REMOVE"}"#,
    ] {
        let pattern = p(bad);
        let outcome = std::panic::catch_unwind(|| matches(&pattern, &ttl));
        assert!(outcome.is_err(), "{bad} was not refused");
    }
}

/// The template's filters against the committed fixture: its TTL removal is for cleanup only.
#[test]
fn the_template_filters_send_a_ttl_removal_to_cleanup_only() {
    let (cleanup, thumbnail) = filters();
    let ttl = fixture_record();
    assert!(passes(&cleanup, &ttl));
    assert!(!passes(&thumbnail, &ttl));
    let mut by_user = ttl.clone();
    by_user.as_object_mut().unwrap().remove("userIdentity");
    assert!(!passes(&cleanup, &by_user), "a user's delete");
}

// ---------------------------------------------------------------------------------------------------
// The stream on moto.

struct Moto {
    app: App,
    clients: AwsClients,
    cfg: AwsConfig,
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Where the next read of the (single) shard starts.
    iterator: Option<String>,
}

async fn moto() -> Moto {
    media_testkit::moto::require("the stream tests");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let bucket = format!("media-stream-{}", &tag[..20]);
    let table = format!("media-stream-{tag}");
    let env = [
        ("MEDIA_BUCKET", bucket.as_str()),
        ("MEDIA_TABLE", table.as_str()),
        ("MEDIA_S3_FORCE_PATH_STYLE", "1"),
        ("MEDIA_CREATE_RESOURCES", "1"),
        // As template.yaml sets it for the functions: thumbnails come from the stream.
        ("MEDIA_THUMBNAILS", "deferred"),
    ];
    let wired = wiring::for_lambda(&env).await.expect("the AWS app");
    let Stores::Aws { clients, config } = wired.stores else {
        unreachable!("the functions run on AWS")
    };
    // The stream `create_resources` enabled, as the template does.
    let stream_arn = clients
        .dynamodb
        .describe_table()
        .table_name(&config.table)
        .send()
        .await
        .unwrap()
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the table has a stream");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .load()
        .await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let shards = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .map(|d| d.shards.unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(shards.len(), 1, "one shard on a fresh table: {shards:?}");
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(shards[0].shard_id().unwrap())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    Moto {
        app: wired.app,
        clients,
        cfg: config,
        streams,
        stream_arn,
        iterator,
    }
}

impl Moto {
    /// The records written since the last call, in the shape Lambda hands them to a function.
    async fn new_records(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let page = self
                .streams
                .get_records()
                .shard_iterator(self.iterator.take().expect("an open shard"))
                .send()
                .await
                .unwrap();
            self.iterator = page.next_shard_iterator;
            let records = page.records.unwrap_or_default();
            if records.is_empty() {
                return out;
            }
            out.extend(records.iter().map(|r| lambda_record(r, &self.stream_arn)));
        }
    }
}

/// A record of the DynamoDB Streams API as a record of Lambda's DynamoDB event: the same fields under
/// the same names, plus the stream's ARN. Nothing is added that the stream did not say.
fn lambda_record(r: &Record, stream_arn: &str) -> Value {
    let s = r.dynamodb().expect("a stream record's dynamodb part");
    let mut change = serde_json::Map::new();
    if let Some(t) = s.approximate_creation_date_time() {
        change.insert(
            "ApproximateCreationDateTime".into(),
            json!(t.as_secs_f64().floor()),
        );
    }
    for (name, image) in [
        ("Keys", s.keys()),
        ("NewImage", s.new_image()),
        ("OldImage", s.old_image()),
    ] {
        if let Some(image) = image {
            change.insert(name.into(), image_json(image));
        }
    }
    if let Some(seq) = s.sequence_number() {
        change.insert("SequenceNumber".into(), json!(seq));
    }
    if let Some(size) = s.size_bytes() {
        change.insert("SizeBytes".into(), json!(size));
    }
    if let Some(view) = s.stream_view_type() {
        change.insert("StreamViewType".into(), json!(view.as_str()));
    }
    let mut record = json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source(),
        "awsRegion": r.aws_region(),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    });
    if let Some(who) = r.user_identity() {
        record["userIdentity"] = json!({"type": who.r#type(), "principalId": who.principal_id()});
    }
    record
}

fn image_json(image: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        image
            .iter()
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
        AttributeValue::M(m) => json!({ "M": image_json(m) }),
        other => panic!("the table holds no attribute like {other:?}"),
    }
}

fn pk_of(record: &Value) -> &str {
    record["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap()
}

fn describe(records: &[&Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r["eventName"].as_str().unwrap(), pk_of(r)))
        .collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, 0x80])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn staged_keys(m: &Moto, upload_id: &str) -> usize {
    m.clients
        .s3
        .list_objects_v2()
        .bucket(&m.cfg.bucket)
        .prefix(staging_prefix(upload_id))
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0) as usize
}

/// The cleanup function's handling of a batch, from JSON to JSON as lambda_runtime does it.
async fn invoke_cleanup(app: &App, records: Vec<Value>) -> Value {
    let event: CleanupEvent =
        serde_json::from_value(json!({ "Records": records })).expect("a stream batch");
    let answer = cleanup::handle_event(app, &event, OffsetDateTime::now_utc())
        .await
        .unwrap();
    serde_json::to_value(answer).unwrap()
}

async fn invoke_thumbnail(app: &App, records: Vec<Value>) -> Value {
    let event = serde_json::from_value(json!({ "Records": records })).expect("a stream batch");
    serde_json::to_value(thumbnailer::handle_stream_event(app, &event).await).unwrap()
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn moto_stream_records_reach_the_functions_their_filters_let_through() {
    let (cleanup_filter, thumbnail_filter) = filters();
    let mut m = moto().await;

    // An unfinished upload holding a staged chunk, and a completed image upload (a media INSERT;
    // thumbnails deferred, so the completion stores none).
    let doc = pdf(12 * MIB, 60);
    let half = upload(&m.app, &doc, &[CHUNK], CHUNK).await;
    assert_eq!(staged_keys(&m, &half).await, 1);
    let image = png(640, 480);
    let done = upload(&m.app, &image, &[CHUNK], image.len()).await;
    let (status, media) = complete(&m.app, &done, &md5_hex(&image)).await;
    assert_eq!(status, 201, "{media}");
    assert_eq!(media["image_thumbnail"], Value::Null, "{media}");
    let media_id = media["id"].as_u64().unwrap();
    // An ordinary delete of the unfinished session: what a user or the sweep does, not TTL.
    m.clients
        .dynamodb
        .delete_item()
        .table_name(&m.cfg.table)
        .key(
            items::PK,
            aws_sdk_dynamodb::types::AttributeValue::S(items::upload_pk(&half)),
        )
        .send()
        .await
        .unwrap();

    let records = m.new_records().await;
    let names: Vec<String> = describe(&records.iter().collect::<Vec<_>>());
    eprintln!("records on the stream: {names:?}");
    let media_pk = items::media_pk(media_id);
    let half_pk = items::upload_pk(&half);
    let insert = records
        .iter()
        .find(|r| r["eventName"] == "INSERT" && pk_of(r) == media_pk)
        .unwrap_or_else(|| panic!("no INSERT of {media_pk}: {names:?}"));
    let removal = records
        .iter()
        .find(|r| r["eventName"] == "REMOVE" && pk_of(r) == half_pk)
        .unwrap_or_else(|| panic!("no REMOVE of {half_pk}: {names:?}"));
    assert!(
        removal["dynamodb"]["OldImage"]["data"]["S"].is_string(),
        "the stream carries old images: {removal}"
    );

    // What the template lets through: to cleanup, nothing (no record on this stream comes from the
    // TTL service: not the ordinary delete, not the media INSERT); to thumbnail, the media INSERT.
    let to_cleanup: Vec<&Value> = records
        .iter()
        .filter(|r| passes(&cleanup_filter, r))
        .collect();
    let to_thumbnail: Vec<&Value> = records
        .iter()
        .filter(|r| passes(&thumbnail_filter, r))
        .collect();
    assert_eq!(describe(&to_cleanup), Vec::<String>::new());
    assert_eq!(describe(&to_thumbnail), vec![format!("INSERT {media_pk}")]);
    assert!(!passes(&cleanup_filter, removal), "an ordinary delete");
    assert!(!passes(&cleanup_filter, insert), "a media INSERT");
    assert_eq!(
        staged_keys(&m, &half).await,
        1,
        "nothing reached cleanup: the staged chunk is still there"
    );

    // The same REMOVE as TTL makes it: the fixture's userIdentity on the real record.
    let mut ttl = removal.clone();
    ttl["userIdentity"] = fixture_record()["userIdentity"].clone();
    assert!(passes(&cleanup_filter, &ttl));
    assert!(!passes(&thumbnail_filter, &ttl));
    let answer = invoke_cleanup(&m.app, vec![ttl]).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "{answer}");
    assert_eq!(
        staged_keys(&m, &half).await,
        0,
        "the TTL removal freed the session's bytes"
    );

    // The media INSERT, through the thumbnail function.
    let answer = invoke_thumbnail(&m.app, to_thumbnail.into_iter().cloned().collect()).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "{answer}");
    let stored = m
        .app
        .media
        .get_media(media_id)
        .await
        .unwrap()
        .expect("the media");
    let thumb = stored.thumbnail.expect("a thumbnail from the stream");
    assert_eq!((thumb.width, thumb.height), (360, 270));

    // Its write-back is on the stream too, and passes no filter: the function never feeds itself.
    let after = m.new_records().await;
    let names = describe(&after.iter().collect::<Vec<_>>());
    assert!(
        names.contains(&format!("MODIFY {media_pk}")),
        "the thumbnail's write-back: {names:?}"
    );
    for r in &after {
        assert!(!passes(&cleanup_filter, r), "{r}");
        assert!(!passes(&thumbnail_filter, r), "{r}");
    }
}
