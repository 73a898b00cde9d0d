//! The two places where the whole service could meet on one DynamoDB key or read the whole table
//! (issue 12, "Scale"), against moto on loopback through the real SDK:
//!
//! - media ids come from one counter item in blocks per process: several `DynamoMeta` values (as
//!   many processes), each with many concurrent callers, hand out unique positive ids with one
//!   counter write per block;
//! - the sweep finds expired sessions through the sparse index of unfinished ones: with many
//!   completed media and sessions in the table, what it reads is what it removes.
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo nextest run -p media-shared --test aws_scale --run-ignored all
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use media_shared::adapters::aws::{items, DynamoMeta};
use media_shared::app::App;
use media_shared::cleanup::{self, SweepReport};
use media_shared::domain::upload::{ChunkPlan, UploadSession, UploadStatus};
use media_shared::domain::{Click, ContentKind, MediaRecord, MediaType, Sniffed};
use media_shared::ports::{MediaStore, UploadStore};
use media_testkit::aws::{self, TestEnv};
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------------------
// Media ids.

/// Sends the counter's `UpdateItem`s one at a time, across every client built with it, and counts
/// them. DynamoDB applies the updates of one item one after the other, which is what makes `ADD`
/// atomic; moto applies an `ADD` as a read and a write in whichever request thread runs it, without
/// a lock, so two concurrent `ADD`s there can both answer the same value (see
/// `testkit/src/contract/mod.rs`). Only the HTTP exchange of those requests is serialised, as
/// DynamoDB serialises them; the code under test (callers within a process waiting for one
/// reservation, the arithmetic of blocks, processes racing for blocks) runs concurrently.
///
/// Without the gate moto's race shows here: with 20 processes reserving blocks of 1, four runs of
/// four handed out an id twice; with it, none did. And the test catches our own mistakes with the
/// gate on: a block starting one id early hands out an id twice, and callers that each reserve a
/// block instead of waiting for one reservation make 320 counter writes instead of 224.
#[derive(Debug, Clone)]
struct CounterGate {
    inner: SharedHttpClient,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
    updates: Arc<AtomicU64>,
}

#[derive(Debug)]
struct GatedConnector {
    inner: SharedHttpConnector,
    gate: CounterGate,
}

impl HttpClient for CounterGate {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(GatedConnector {
            inner: self.inner.http_connector(settings, components),
            gate: self.clone(),
        })
    }
}

impl HttpConnector for GatedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let is_update = request
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".UpdateItem"));
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        HttpConnectorFuture::new(async move {
            if !is_update {
                return inner.call(request).await;
            }
            let _one = gate.one_at_a_time.lock().await;
            gate.updates.fetch_add(1, Ordering::SeqCst);
            inner.call(request).await
        })
    }
}

/// A DynamoDB client like the environment's, whose counter updates pass `gate`.
fn gated_client(env: &TestEnv, gate: &CounterGate) -> aws_sdk_dynamodb::Client {
    let conf = env
        .clients
        .dynamodb
        .config()
        .to_builder()
        .http_client(gate.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn new_gate(env: &TestEnv) -> CounterGate {
    let inner = env
        .clients
        .dynamodb
        .config()
        .http_client()
        .expect("the SDK's default HTTP client");
    CounterGate {
        inner,
        one_at_a_time: Arc::default(),
        updates: Arc::default(),
    }
}

const PROCESSES: u64 = 16;
const CALLERS: u64 = 10;
const CALLS: u64 = 4;
/// Small, so that every process reserves many blocks while the others do too.
const BLOCK: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto (DynamoDB on loopback); scripts/test.sh runs it"]
async fn concurrent_allocators_hand_out_unique_positive_ids() {
    let env = aws::fresh().await;
    let gate = new_gate(&env);
    let mut tasks = tokio::task::JoinSet::new();
    for process in 0..PROCESSES {
        // One `DynamoMeta` value per process: its clones share its block, as a process's do.
        let meta = DynamoMeta::new(gated_client(&env, &gate), &env.cfg.table).with_id_block(BLOCK);
        for _ in 0..CALLERS {
            let meta = meta.clone();
            tasks.spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..CALLS {
                    mine.push(meta.next_media_id().await.unwrap());
                    tokio::task::yield_now().await;
                }
                (process, mine)
            });
        }
    }
    let results = tasks.join_all().await;

    let per_process = CALLERS * CALLS;
    let mut all = BTreeSet::new();
    let mut by_process: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (process, ids) in results {
        // One caller's ids come from its process's blocks in order: they increase.
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for id in &ids {
            assert!(*id > 0, "id 0 handed out");
            assert!(all.insert(*id), "id {id} handed out twice");
        }
        by_process.entry(process).or_default().extend(ids);
    }
    assert_eq!(all.len() as u64, PROCESSES * per_process);

    // One counter write per block, not per id: a process that handed out `per_process` ids reserved
    // exactly the blocks it needed (its callers waited for one reservation instead of each making
    // their own), so the counter moved by exactly those blocks and nothing beyond them was used.
    let blocks_each = per_process.div_ceil(BLOCK);
    assert_eq!(
        gate.updates.load(Ordering::SeqCst),
        PROCESSES * blocks_each,
        "counter writes"
    );
    let reserved = PROCESSES * blocks_each * BLOCK;
    let highest = *all.last().unwrap();
    assert!(
        highest <= reserved && highest > reserved - BLOCK,
        "the highest id {highest} is in the last block reserved, ending at {reserved}"
    );
    // Each process's ids lie in whole blocks of its own: its ids, grouped by block, fill the
    // block's start (only its last block may be partly unused: the gap a crash would leave).
    for (process, ids) in &by_process {
        let blocks: BTreeSet<u64> = ids.iter().map(|id| (id - 1) / BLOCK).collect();
        assert_eq!(
            blocks.len() as u64,
            blocks_each,
            "process {process}: {ids:?}"
        );
    }

    // A new process starts above every block reserved so far.
    let later = DynamoMeta::new(gated_client(&env, &gate), &env.cfg.table).with_id_block(BLOCK);
    assert_eq!(later.next_media_id().await.unwrap(), reserved + 1);
}

/// What a process reserved and did not hand out before it ended is skipped, never handed out again.
#[tokio::test]
#[ignore = "needs moto (DynamoDB on loopback); scripts/test.sh runs it"]
async fn ids_of_an_ended_process_are_gaps_not_duplicates() {
    let env = aws::fresh().await;
    let first = DynamoMeta::new(env.clients.dynamodb.clone(), &env.cfg.table).with_id_block(10);
    assert_eq!(first.next_media_id().await.unwrap(), 1);
    assert_eq!(first.next_media_id().await.unwrap(), 2);
    drop(first); // 3..=10 die with it
    let second = DynamoMeta::new(env.clients.dynamodb.clone(), &env.cfg.table).with_id_block(10);
    assert_eq!(second.next_media_id().await.unwrap(), 11);
    // A clone is the same process: it shares the block.
    let clone = second.clone();
    assert_eq!(clone.next_media_id().await.unwrap(), 12);
    assert_eq!(second.next_media_id().await.unwrap(), 13);
    // The counter holds the end of the last block reserved.
    let counter = env
        .clients
        .dynamodb
        .get_item()
        .table_name(&env.cfg.table)
        .key(items::PK, AttributeValue::S(items::MEDIA_COUNTER_PK.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        counter.item().unwrap()[items::COUNTER],
        AttributeValue::N("20".into())
    );
}

// ---------------------------------------------------------------------------------------------------
// The sweep's reads.

/// Sums what the Queries and Scans of a client examined (`ScannedCount`: items read before any
/// filter, which is what a read costs) and how many requests it sent, by operation.
#[derive(Debug, Clone, Default)]
struct Reads {
    scanned: Arc<AtomicU64>,
    requests: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Intercept for Reads {
    fn name(&self) -> &'static str {
        "Reads"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Ok(out)) = context.output_or_error() {
            let (op, scanned) = if let Some(q) = out.downcast_ref::<QueryOutput>() {
                ("Query", q.scanned_count())
            } else if let Some(s) = out.downcast_ref::<ScanOutput>() {
                ("Scan", s.scanned_count())
            } else {
                ("other", 0)
            };
            self.scanned.fetch_add(scanned as u64, Ordering::SeqCst);
            *self.requests.lock().unwrap().entry(op.into()).or_default() += 1;
        }
        Ok(())
    }
}

impl Reads {
    fn scanned(&self) -> u64 {
        self.scanned.load(Ordering::SeqCst)
    }
    fn requests(&self, op: &str) -> u64 {
        self.requests.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A new receiving session of a 1000-byte PDF, written through the store (version 0), expiring at
/// `expires_at_ms`.
async fn put_session(store: &DynamoMeta, expires_at_ms: i64) -> UploadSession {
    let plan = ChunkPlan {
        start: 0,
        len: 1000,
        total: 1000,
    };
    let pdf = Sniffed {
        mime: "application/pdf".into(),
        kind: ContentKind::Document,
        width: None,
        height: None,
    };
    let mut s = UploadSession::new(
        "alice",
        OffsetDateTime::now_utc(),
        3600,
        &plan,
        pdf,
        Some("file.pdf".into()),
    );
    s.expires_at_ms = expires_at_ms;
    store.put_upload(&s, None).await.unwrap();
    s
}

/// Marks a stored session completed, as the complete handler's last write does.
async fn complete(store: &DynamoMeta, s: &mut UploadSession, media_id: u64) {
    let expected = s.version;
    s.version += 1;
    s.status = UploadStatus::Completed {
        media_id,
        md5: "0".repeat(32),
    };
    store.put_upload(s, Some(expected)).await.unwrap();
}

/// The upload ids the sweep's index holds now (moto's index is consistent at once).
async fn indexed(env: &TestEnv) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in 0..items::EXPIRY_SHARDS {
        let page = env
            .clients
            .dynamodb
            .query()
            .table_name(&env.cfg.table)
            .index_name(items::EXPIRY_INDEX)
            .key_condition_expression("#sh = :shard")
            .expression_attribute_names("#sh", items::EXPIRY_SHARD)
            .expression_attribute_values(":shard", AttributeValue::N(shard.to_string()))
            .send()
            .await
            .unwrap();
        assert!(page.last_evaluated_key.is_none(), "more than one page");
        for item in page.items() {
            let pk = item[items::PK].as_s().unwrap();
            out.insert(pk.strip_prefix(items::UPLOAD_PREFIX).unwrap().to_string());
        }
    }
    out
}

const COMPLETED: usize = 300;
const EXPIRED: usize = 12;

#[tokio::test]
#[ignore = "needs moto (DynamoDB on loopback); scripts/test.sh runs it"]
async fn a_sweep_reads_what_it_removes_and_finished_sessions_leave_the_index() {
    let env = aws::fresh().await;
    let reads = Reads::default();
    let conf = env
        .clients
        .dynamodb
        .config()
        .to_builder()
        .interceptor(reads.clone())
        .build();
    let meta = DynamoMeta::new(aws_sdk_dynamodb::Client::from_conf(conf), &env.cfg.table);
    let app = App {
        uploads: Arc::new(meta.clone()),
        media: Arc::new(meta.clone()),
        ..env.app.clone()
    };
    let past = now_ms() - 60_000;

    // A table that has served many uploads: completed sessions, expired too (TTL has not come
    // yet), their media, and clicks. None of them is the sweep's business.
    let mut completed = BTreeSet::new();
    for i in 0..COMPLETED {
        let mut s = put_session(&meta, past).await;
        let id = meta.next_media_id().await.unwrap();
        complete(&meta, &mut s, id).await;
        meta.put_media(&MediaRecord::new(
            id,
            &s.owner,
            MediaType::Doc,
            OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
        if i % 10 == 0 {
            meta.record_click(&Click {
                media_id: id,
                user: None,
                ip: None,
                at: OffsetDateTime::now_utc(),
            })
            .await
            .unwrap();
        }
        completed.insert(s.id);
    }
    // Unfinished ones: some expired, some live.
    let mut expired = BTreeSet::new();
    for _ in 0..EXPIRED {
        expired.insert(put_session(&meta, past).await.id);
    }
    let mut live = BTreeSet::new();
    for _ in 0..5 {
        live.insert(put_session(&meta, now_ms() + 3_600_000).await.id);
    }

    // Only unfinished sessions are in the index: completing took each out.
    let unfinished: BTreeSet<String> = expired.union(&live).cloned().collect();
    assert_eq!(indexed(&env).await, unfinished);

    let scanned_before = reads.scanned();
    let queries_before = reads.requests("Query");
    let report = cleanup::sweep(&app, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let scanned = reads.scanned() - scanned_before;
    eprintln!(
        "sweep: {EXPIRED} removed, {scanned} items examined, {} Queries, {} Scans; \
         {} items in the table",
        reads.requests("Query") - queries_before,
        reads.requests("Scan"),
        COMPLETED * 2 + COMPLETED / 10 + 1 + EXPIRED + 5,
    );
    // What the sweep read is what it removed: no Scan, and no entry examined beyond the expired
    // sessions (the live ones sort after `now` and are never reached).
    assert_eq!(reads.requests("Scan"), 0);
    assert_eq!(scanned, EXPIRED as u64);
    assert_eq!(
        report,
        SweepReport {
            released: EXPIRED,
            sessions_removed: EXPIRED,
            skipped: 0,
            failed: 0,
        }
    );
    // One Query per shard (the sweep lists once: a short batch says there is no more).
    assert_eq!(
        reads.requests("Query") - queries_before,
        u64::from(items::EXPIRY_SHARDS)
    );

    // Removed sessions are gone from the table and the index; completed ones are left to TTL.
    assert_eq!(indexed(&env).await, live);
    for id in &expired {
        assert_eq!(meta.get_upload(id).await.unwrap(), None);
    }
    let one_completed = completed.iter().next().unwrap();
    assert!(meta.get_upload(one_completed).await.unwrap().is_some());
    assert!(meta.list_expired(now_ms(), 100).await.unwrap().is_empty());
}

/// The listing answers sessions as they are now, not as the (eventually consistent) index saw
/// them: an entry whose session completed or was deleted since is not listed, and a listed session
/// carries its current version (the one the sweep's conditional delete expects).
#[tokio::test]
#[ignore = "needs moto (DynamoDB on loopback); scripts/test.sh runs it"]
async fn listed_sessions_are_read_again_as_they_are_now() {
    let env = aws::fresh().await;
    let meta = &env.meta;
    let past = now_ms() - 60_000;
    let mut moved_on = put_session(meta, past).await;
    let gone = put_session(meta, past).await;
    let mut completed = put_session(meta, past).await;

    // Stale index entries, as an index that has not caught up yet would hold: written directly to
    // the items, with the index keys left in place.
    let table = &env.cfg.table;
    let stale = |s: &UploadSession| {
        let mut item = items::session_item(s).unwrap();
        item.insert(
            items::EXPIRY_SHARD.into(),
            AttributeValue::N(items::expiry_shard(&s.id).to_string()),
        );
        item
    };
    moved_on.version += 1;
    moved_on.offset = 500;
    completed.version += 1;
    completed.status = UploadStatus::Completed {
        media_id: 9,
        md5: "0".repeat(32),
    };
    for s in [&moved_on, &completed] {
        env.clients
            .dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(stale(s)))
            .send()
            .await
            .unwrap();
    }
    meta.delete_upload(&gone.id, gone.version).await.unwrap();

    let listed = meta.list_expired(now_ms(), 100).await.unwrap();
    assert_eq!(listed, vec![moved_on]);
}

// ---------------------------------------------------------------------------------------------------
// The index as deployed.

const TEMPLATE: &str = include_str!("../../template.yaml");

/// template.yaml declares the index the adapter queries, under the names `items` gives, keys only,
/// and lets the cleanup function query it.
#[test]
fn the_template_declares_the_sweeps_index() {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml");
    let table = &template["Resources"]["MediaTable"]["Properties"];
    let attributes: BTreeMap<&str, &str> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap(),
                a["AttributeType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attributes[items::EXPIRY_SHARD], "N");
    assert_eq!(attributes[items::EXPIRES_MS], "N");
    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    let index = indexes
        .iter()
        .find(|i| i["IndexName"].as_str() == Some(items::EXPIRY_INDEX))
        .expect("the sweep's index in template.yaml");
    let keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [(items::EXPIRY_SHARD, "HASH"), (items::EXPIRES_MS, "RANGE")]
    );
    assert_eq!(
        index["Projection"]["ProjectionType"].as_str(),
        Some("KEYS_ONLY")
    );
    let cleanup = serde_yaml_ng::to_string(
        &template["Resources"]["CleanupFunction"]["Properties"]["Policies"],
    )
    .unwrap();
    assert!(
        cleanup.contains(&format!(
            "${{MediaTable.Arn}}/index/{}",
            items::EXPIRY_INDEX
        )),
        "the cleanup function may not query the index: {cleanup}"
    );
    assert!(cleanup.contains("dynamodb:BatchGetItem"), "{cleanup}");
}

/// A table made before the index existed gets it from `create_resources`, and the sweep finds the
/// sessions written since.
#[tokio::test]
#[ignore = "needs moto (DynamoDB on loopback); scripts/test.sh runs it"]
async fn create_resources_adds_the_index_to_an_older_table() {
    let env = aws::fresh().await;
    let db = &env.clients.dynamodb;
    let old_table = format!("{}-old", env.cfg.table);
    db.create_table()
        .table_name(&old_table)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name(items::PK)
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name(items::PK)
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let cfg = media_shared::adapters::aws::AwsConfig {
        table: old_table.clone(),
        ..env.cfg.clone()
    };
    media_shared::adapters::aws::create_resources(&env.clients, &cfg)
        .await
        .unwrap();
    // Again: nothing left to add.
    media_shared::adapters::aws::create_resources(&env.clients, &cfg)
        .await
        .unwrap();
    let meta = DynamoMeta::new(db.clone(), &old_table);
    let s = put_session(&meta, now_ms() - 1000).await;
    let listed = meta.list_expired(now_ms(), 100).await.unwrap();
    assert_eq!(listed, vec![s]);
}
