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
//! The events function's filter is checked on the same records: media INSERTs and REMOVEs reach it,
//! session removals (by TTL, the sweep or a user) and the thumbnail's write-back do not; what it
//! publishes, and what the cleanup code publishes for expired uploads, is read back from moto's
//! EventBridge (a rule on a fresh bus sending `media-upload` events to an SQS queue, read with plain
//! HTTP: one SDK crate fewer to build).
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
use media_testkit::aws::LambdaEnv;
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

/// The cleanup and thumbnail functions' patterns; both must have some.
fn filters() -> (Vec<Value>, Vec<Value>) {
    let (cleanup, thumbnail, _) = all_filters();
    (cleanup, thumbnail)
}

/// The three stream consumers' patterns (cleanup, thumbnail, events); each must have some.
fn all_filters() -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut all = template_filters();
    let cleanup = all.remove("cleanup").expect("cleanup reads the stream");
    let thumbnail = all.remove("thumbnail").expect("thumbnail reads the stream");
    let events = all.remove("events").expect("events reads the stream");
    assert!(all.is_empty(), "other stream consumers: {all:?}");
    assert!(!cleanup.is_empty() && !thumbnail.is_empty() && !events.is_empty());
    (cleanup, thumbnail, events)
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

/// A TTL removal of a session is no media event: the events function never sees it (cleanup
/// publishes Upload Expired itself).
#[test]
fn the_events_filter_takes_no_session_removal() {
    let (_, _, events) = all_filters();
    assert!(!passes(&events, &fixture_record()));
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

/// The TTL removes an upload's part items with its session (`items`): those records reach no
/// function, cleanup included (it would be invoked for nothing).
#[test]
fn a_part_items_ttl_removal_reaches_no_function() {
    let (cleanup, thumbnail, events) = all_filters();
    let mut part = fixture_record();
    let pk = json!({"S": "part#d360f08dd4e54c8bb3d177dfe3041d6b#1"});
    part["dynamodb"]["Keys"] = json!({ "pk": pk });
    part["dynamodb"]["OldImage"] = json!({
        "pk": pk,
        "data": {"S": r#"{"number":1,"etag":"\"16298819ed18b92548b603969853efaf\"","size":5242880,"sources":["0-0123456789abcdef"]}"#},
        "kind": {"S": "part"},
        "expires_at": {"N": "1795239910"},
    });
    assert!(passes(&cleanup, &fixture_record()));
    assert!(!passes(&cleanup, &part));
    assert!(!passes(&thumbnail, &part));
    assert!(!passes(&events, &part));
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
    let LambdaEnv {
        app,
        clients,
        cfg: config,
    } = media_testkit::aws::for_lambda(
        "the stream tests",
        "media-stream",
        // As template.yaml sets it for the functions: thumbnails come from the stream.
        &[("MEDIA_THUMBNAILS", "deferred")],
    )
    .await;
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
        app,
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

// ---------------------------------------------------------------------------------------------------
// The platform's events on moto's EventBridge.

/// A fresh bus on moto whose rule sends every `media-upload` event to a fresh SQS queue.
struct Bus {
    name: String,
    client: aws_sdk_eventbridge::Client,
    queue_url: String,
    http: reqwest::Client,
    endpoint: String,
}

impl Bus {
    async fn new() -> Bus {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("media-events-{}", &tag[..16]);
        let sdk = media_shared::adapters::aws::sdk_config().await;
        let client = aws_sdk_eventbridge::Client::new(&sdk);
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto's endpoint");
        let mut bus = Bus {
            name: name.clone(),
            client,
            queue_url: String::new(),
            http: reqwest::Client::new(),
            endpoint,
        };
        let created = bus.sqs("CreateQueue", json!({ "QueueName": name })).await;
        bus.queue_url = created["QueueUrl"].as_str().unwrap().to_string();
        let attrs = bus
            .sqs(
                "GetQueueAttributes",
                json!({"QueueUrl": bus.queue_url, "AttributeNames": ["QueueArn"]}),
            )
            .await;
        let queue_arn = attrs["Attributes"]["QueueArn"]
            .as_str()
            .unwrap()
            .to_string();
        bus.client
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .unwrap();
        bus.client
            .put_rule()
            .name(&name)
            .event_bus_name(&name)
            .event_pattern(r#"{"source": ["media-upload"]}"#)
            .send()
            .await
            .unwrap();
        bus.client
            .put_targets()
            .rule(&name)
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        bus
    }

    /// `app` publishing on this bus.
    fn publishing(&self, app: &App) -> App {
        let mut app = app.clone();
        app.events = std::sync::Arc::new(media_shared::adapters::aws::EventBus::new(
            self.client.clone(),
            &self.name,
        ));
        app
    }

    /// One call of SQS's JSON protocol; moto picks the service from the credential scope.
    async fn sqs(&self, action: &str, body: Value) -> Value {
        let r = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "SQS {action}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Every event the rule delivered so far (each message once: it is deleted after reading).
    async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs(
                    "ReceiveMessage",
                    json!({"QueueUrl": self.queue_url, "MaxNumberOfMessages": 10}),
                )
                .await;
            let messages = got["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push(serde_json::from_str(m["Body"].as_str().unwrap()).unwrap());
                self.sqs(
                    "DeleteMessage",
                    json!({"QueueUrl": self.queue_url, "ReceiptHandle": m["ReceiptHandle"]}),
                )
                .await;
            }
        }
    }
}

async fn invoke_events(app: &App, records: Vec<Value>) -> Value {
    let event = serde_json::from_value(json!({ "Records": records })).expect("a stream batch");
    serde_json::to_value(media_shared::media_events::handle_stream_event(app, &event).await)
        .unwrap()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let d = &e["detail"];
            let what = d.get("upload_id").unwrap_or(&d["id"]);
            format!("{} {what}", e["detail-type"].as_str().unwrap())
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB + EventBridge + SQS on loopback); scripts/test.sh runs it"]
async fn moto_events_reach_the_bus_once_per_fact() {
    let (cleanup_filter, _, events_filter) = all_filters();
    let mut m = moto().await;
    let bus = Bus::new().await;
    // As deployed: the HTTP functions publish nothing themselves (`m.app` has no sink); the events
    // and cleanup functions publish on the bus.
    let publishing = bus.publishing(&m.app);

    // Created: an uploaded image, and an embed.
    let image = png(64, 48);
    let done = upload(&m.app, &image, &[CHUNK], image.len()).await;
    let (status, photo) = complete(&m.app, &done, &md5_hex(&image)).await;
    assert_eq!(status, 201, "{photo}");
    let photo_id = photo["id"].as_u64().unwrap();
    let (status, embed) = call(
        &m.app,
        request(
            "POST",
            "/api/v2/media/",
            "application/json",
            br#"{"type": "embed", "embed": {"embed_type": "video", "embed_id": "v1"}}"#.to_vec(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{embed}");
    let embed_id = embed["id"].as_u64().unwrap();
    // Deleted: the image.
    let (status, _) = call(
        &m.app,
        request("DELETE", &format!("/api/v2/media/{photo_id}/"), "", vec![]),
    )
    .await;
    assert_eq!(status, 204);
    // Expired by TTL: an unfinished upload whose session TTL removes.
    let doc = pdf(12 * MIB, 61);
    let by_ttl = upload(&m.app, &doc, &[CHUNK], CHUNK).await;
    m.clients
        .dynamodb
        .delete_item()
        .table_name(&m.cfg.table)
        .key(
            items::PK,
            aws_sdk_dynamodb::types::AttributeValue::S(items::upload_pk(&by_ttl)),
        )
        .send()
        .await
        .unwrap();

    let records = m.new_records().await;
    let names = describe(&records.iter().collect::<Vec<_>>());
    let to_events: Vec<Value> = records
        .iter()
        .filter(|r| passes(&events_filter, r))
        .cloned()
        .collect();
    assert_eq!(
        describe(&to_events.iter().collect::<Vec<_>>()),
        vec![
            format!("INSERT {}", items::media_pk(photo_id)),
            format!("INSERT {}", items::media_pk(embed_id)),
            format!("REMOVE {}", items::media_pk(photo_id)),
        ],
        "all records: {names:?}"
    );
    let answer = invoke_events(&publishing, to_events.clone()).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "{answer}");

    // The TTL removal, as cleanup gets it.
    let removal = records
        .iter()
        .find(|r| r["eventName"] == "REMOVE" && pk_of(r) == items::upload_pk(&by_ttl))
        .unwrap();
    let mut ttl = removal.clone();
    ttl["userIdentity"] = fixture_record()["userIdentity"].clone();
    assert!(passes(&cleanup_filter, &ttl) && !passes(&events_filter, &ttl));
    let answer = invoke_cleanup(&publishing, vec![ttl]).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "{answer}");

    // Expired and swept (not TTL): another unfinished upload, swept an hour after its expiry, with the
    // completed upload's session (no news: its media was announced).
    let by_sweep = upload(&m.app, &doc, &[CHUNK], CHUNK).await;
    let later = OffsetDateTime::now_utc()
        + time::Duration::seconds(m.app.limits.upload_ttl_secs as i64 + 3600);
    let report = cleanup::sweep(&publishing, later).await.unwrap();
    assert_eq!((report.released, report.failed), (1, 0), "{report:?}");
    // The sweep's own deletes are on the stream too, and reach neither cleanup nor events.
    for r in m.new_records().await {
        assert!(!passes(&events_filter, &r), "{r}");
        assert!(!passes(&cleanup_filter, &r), "{r}");
    }

    let got = bus.events().await;
    assert_eq!(
        kinds(&got),
        vec![
            format!("Media Created {photo_id}"),
            format!("Media Created {embed_id}"),
            format!("Media Deleted {photo_id}"),
            format!("Upload Expired \"{by_ttl}\""),
            format!("Upload Expired \"{by_sweep}\""),
        ],
        "{got:#?}"
    );
    for e in &got {
        assert_eq!(e["source"], "media-upload", "{e}");
        assert_eq!(e["detail"]["owner"], USER, "{e}");
    }
    // The detail is the Media JSON the API answered (its URLs are presigned afresh, so compared
    // without them), plus its owner.
    let without_urls = |v: &Value| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        for k in ["image", "url", "owner"] {
            o.remove(k);
        }
        v
    };
    assert_eq!(without_urls(&got[0]["detail"]), without_urls(&photo));
    assert!(got[0]["detail"]["image"]
        .as_str()
        .unwrap()
        .contains("/media/"));
    assert_eq!(without_urls(&got[1]["detail"]), without_urls(&embed));
    assert_eq!(without_urls(&got[2]["detail"]), without_urls(&photo));
    for (e, id) in [(&got[3], &by_ttl), (&got[4], &by_sweep)] {
        let d = &e["detail"];
        assert_eq!(
            (&d["upload_id"], &d["size"], &d["received"]),
            (&json!(id), &json!(doc.len()), &json!(CHUNK)),
            "{e}"
        );
    }
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB + EventBridge on loopback); scripts/test.sh runs it"]
async fn moto_a_bus_that_refuses_has_the_records_retried_from_the_first() {
    let (_, _, events_filter) = all_filters();
    let mut m = moto().await;
    let bus = Bus::new().await;
    let (status, first) = call(
        &m.app,
        request(
            "POST",
            "/api/v2/media/",
            "application/json",
            br#"{"type": "embed", "embed": {"embed_type": "video", "embed_id": "v2"}}"#.to_vec(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let records: Vec<Value> = m
        .new_records()
        .await
        .into_iter()
        .filter(|r| passes(&events_filter, r))
        .collect();
    assert_eq!(records.len(), 1);
    // A bus that does not exist: PutEvents fails, the record is reported for a retry.
    let mut gone = m.app.clone();
    gone.events = std::sync::Arc::new(media_shared::adapters::aws::EventBus::new(
        bus.client.clone(),
        "no-such-bus",
    ));
    let answer = invoke_events(&gone, records.clone()).await;
    let seq = records[0]["dynamodb"]["SequenceNumber"].clone();
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": seq }] }),
        "{answer}"
    );
    assert_eq!(bus.events().await, Vec::<Value>::new());
    // The retry, once the bus is there, publishes it.
    let answer = invoke_events(&bus.publishing(&m.app), records).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "{answer}");
    let first_id = first["id"].as_u64().unwrap();
    assert_eq!(
        kinds(&bus.events().await),
        vec![format!("Media Created {first_id}")]
    );
}
