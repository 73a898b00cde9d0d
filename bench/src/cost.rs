//! What uploading 1 GiB in 204800-byte chunks costs on AWS (us-east-1, list prices), itemised, from
//! what the counting proxy saw of one upload to the AWS backend on moto (`proxy::Call`), and the same
//! upload if staged bytes were rewritten per chunk as tusd's s3store `.part` object is.
//!
//! How each line is found:
//! - **API Gateway HTTP API**: one request per chunk and one completion, each metered in 512 KiB
//!   increments of its size (a chunk's multipart body is the chunk plus a form overhead).
//! - **Lambda (arm64)**: one invocation per API request; duration per chunk is the mean wall time of a
//!   chunk request measured by the uploader against media-local with the AWS adapters (the same
//!   handler code as the chunk function) through the proxy to moto, rounded up to a whole ms as
//!   Lambda bills it; memory from template.yaml. moto is not S3: its latencies (Python, loopback) are
//!   not S3's, so this line is an estimate of the order of magnitude, not a measurement of AWS.
//! - **S3 requests** by price class (PUT/COPY/POST/LIST; GET and the rest; DELETE and CANCEL free),
//!   from the operations seen.
//! - **S3 storage of staged chunks**: bytes times the time from their PUT to their DELETE (moto's pace;
//!   S3 Standard has no minimum duration). The uploaded object's own storage is the media's, not the
//!   upload's, and is left out.
//! - **DynamoDB on-demand**: write request units (one per started KiB of the larger of the item
//!   before and after, at least one; transactions twice) and read request units (one per started 4 KiB
//!   read strongly consistent, half eventually; at least one), from the item sizes in the requests and
//!   answers, by DynamoDB's size rules (`item_size`).
//!
//! From the measured upload to 1 GiB: a kind of request (S3 operation; DynamoDB operation and item
//! kind) seen at most twice happens once per upload; at most twice per part, once per part; more, once
//! per chunk; each is scaled by its ratio. Item sizes repeat the measured sequence and add its growth
//! per call, measured from one part's worth of calls to the last (`growth_per_access`: the session
//! item's list of staged chunks fills and empties with every part, which is no growth; before parts
//! were items of their own, the session grew with its part list).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::proxy::Call;

pub const GIB: u64 = 1 << 30;
const KIB: u64 = 1 << 10;

/// List prices, us-east-1, the only place they are written. Taken from the brief of issue 12 and checked
/// on 2026-12-02 against public pages found with the repository's search tool (no AWS pricing API is
/// reachable here): aws.amazon.com/lambda/pricing and third-party summaries of it for Lambda arm64;
/// API Gateway's pricing as quoted in AWS's whitepaper "Best practices for API Gateway private APIs
/// integration" (HTTP APIs metered in 512 KB increments) and pricing guides; DynamoDB on-demand after
/// the 50 % reduction of 1 November 2024 (airbyte.com's and jusdb.com's pricing summaries); S3 Standard
/// as on aws.amazon.com/s3/pricing (first 50 TB tier). Free tiers are left out.
pub const PRICES: Prices = Prices {
    as_of: "list prices, us-east-1, as of 2025-2026 (checked 2026-12-02)",
    http_api_per_million: 1.00,
    http_api_metering_bytes: 512 * KIB,
    lambda_arm_per_gb_second: 0.000_013_333_4,
    lambda_per_million_requests: 0.20,
    s3_put_class_per_1000: 0.005,
    s3_get_class_per_1000: 0.0004,
    s3_standard_per_gb_month: 0.023,
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
};

#[derive(Debug, Clone, Copy)]
pub struct Prices {
    pub as_of: &'static str,
    /// HTTP API, first 300 million requests a month.
    pub http_api_per_million: f64,
    pub http_api_metering_bytes: u64,
    pub lambda_arm_per_gb_second: f64,
    pub lambda_per_million_requests: f64,
    /// PUT, COPY, POST, LIST requests.
    pub s3_put_class_per_1000: f64,
    /// GET, SELECT and all other requests (HEAD included); DELETE and CANCEL are free.
    pub s3_get_class_per_1000: f64,
    pub s3_standard_per_gb_month: f64,
    pub dynamodb_per_million_wru: f64,
    pub dynamodb_per_million_rru: f64,
}

/// Seconds in the month S3 storage is priced by (730 hours, AWS's average month).
const MONTH_SECS: f64 = 730.0 * 3600.0;
/// Added to a chunk to get its request's metered size: the multipart boundaries and the form's other
/// fields (the uploader's `chunk_form`; a few hundred bytes) and the headers, rounded up.
const FORM_OVERHEAD: u64 = KIB;

// ---------------------------------------------------------------------------------------------
// S3 request classes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum S3Class {
    /// PUT, COPY, POST, LIST.
    PutCopyPostList,
    /// GET, HEAD and every other request.
    GetAndOther,
    /// DELETE and CANCEL (DeleteObject, AbortMultipartUpload).
    Free,
}

/// DeleteObjects: the SDK names it in `x-id` in some versions; otherwise it is `POST ?delete`.
fn is_delete_objects(op: &str) -> bool {
    op == "DeleteObjects"
        || op
            .strip_prefix("POST ?")
            .is_some_and(|q| q.split('&').any(|k| k == "delete"))
}

/// The price class of an S3 request, by the operation the proxy named (`x-id`, else method + query).
pub fn s3_class(op: &str) -> S3Class {
    match op {
        "DeleteObject" | "AbortMultipartUpload" => S3Class::Free,
        // Multi-object delete is a POST; the pricing page does not say whether it is billed as the free
        // DELETEs it does, so it is billed as a POST, the dearer reading (once per part here).
        op if is_delete_objects(op) => S3Class::PutCopyPostList,
        "PutObject"
        | "CopyObject"
        | "UploadPart"
        | "UploadPartCopy"
        | "CreateMultipartUpload"
        | "CompleteMultipartUpload"
        | "ListParts"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListMultipartUploads"
        | "ListObjectVersions"
        | "ListBuckets" => S3Class::PutCopyPostList,
        "GetObject" | "HeadObject" | "HeadBucket" | "GetObjectAttributes" => S3Class::GetAndOther,
        other => {
            let (method, query) = other.split_once(' ').unwrap_or((other, ""));
            match method {
                "DELETE" => S3Class::Free,
                "PUT" | "POST" => S3Class::PutCopyPostList,
                // ListObjects(V2), ListMultipartUploads, ListParts.
                "GET"
                    if ["list-type", "uploads", "uploadId", "prefix"]
                        .iter()
                        .any(|k| query.contains(k)) =>
                {
                    S3Class::PutCopyPostList
                }
                _ => S3Class::GetAndOther,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DynamoDB item sizes and request units

/// The size DynamoDB bills for one attribute value in its JSON wire form (`{"S": "..."}`): strings
/// and binaries their bytes, numbers one byte per two significant digits plus one, booleans and null
/// one byte, sets the sum of their elements, lists and maps 3 bytes plus one byte and the size of each
/// element (a map's element counts its name too).
pub fn value_size(v: &Value) -> u64 {
    let Some((kind, x)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strs = || x.as_array().into_iter().flatten().filter_map(Value::as_str);
    match kind.as_str() {
        "S" => x.as_str().map_or(0, |s| s.len() as u64),
        "N" => x.as_str().map_or(0, number_size),
        "B" => x.as_str().map_or(0, base64_len),
        "BOOL" | "NULL" => 1,
        "SS" => strs().map(|s| s.len() as u64).sum(),
        "NS" => strs().map(number_size).sum(),
        "BS" => strs().map(base64_len).sum(),
        "L" => {
            3 + x
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<u64>()
        }
        "M" => {
            3 + x
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// An item's size: each attribute's name and value.
pub fn item_size(item: &Map<String, Value>) -> u64 {
    item.iter()
        .map(|(k, v)| k.len() as u64 + value_size(v))
        .sum()
}

/// A number's size: one byte per two significant digits (leading and trailing zeros trimmed) plus one.
fn number_size(n: &str) -> u64 {
    let mantissa = n.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

/// The decoded length of a base64 text.
fn base64_len(b: &str) -> u64 {
    let padding = b.bytes().rev().take_while(|&c| c == b'=').count() as u64;
    (b.len() as u64 / 4 * 3).saturating_sub(padding)
}

/// Write request units of a write that touches an item of `bytes` (the larger of before and after).
pub fn write_units(bytes: u64) -> f64 {
    bytes.div_ceil(KIB).max(1) as f64
}

/// Read request units of a read of `bytes` (a GetItem's item; all items of a Query or Scan page).
pub fn read_units(bytes: u64, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4 * KIB).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    Write,
    Read { consistent: bool },
}

/// One billed item access of a DynamoDB request.
#[derive(Debug, Clone)]
struct DdbAccess {
    /// The operation and the kind of item (`PutItem upload`), for grouping.
    group: String,
    access: Access,
    /// The size the units are computed from.
    bytes: u64,
    /// 2 in transactions.
    factor: f64,
}

impl DdbAccess {
    fn units(&self, bytes: u64) -> f64 {
        self.factor
            * match self.access {
                Access::Write => write_units(bytes),
                Access::Read { consistent } => read_units(bytes, consistent),
            }
    }
}

/// The kind of item: the partition key's prefix before `#` (`upload`, `media`, `quota`, ...).
fn item_kind(key_or_item: Option<&Value>) -> String {
    let pk = key_or_item
        .and_then(|i| i.get("pk"))
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    pk.split('#').next().unwrap_or(pk).to_string()
}

/// The item's identity for remembering sizes: table and key attributes.
fn identity(table: &str, key_or_item: Option<&Value>) -> String {
    let key = key_or_item
        .and_then(|i| i.get("pk"))
        .map(Value::to_string)
        .unwrap_or_default();
    format!("{table} {key}")
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

/// The billed accesses of one DynamoDB request. `known` remembers the last seen size of each item, for
/// the "larger of before and after" rule of writes whose request does not carry the old item.
fn dynamodb_accesses(
    op: &str,
    request: &Value,
    answer: &Value,
    known: &mut HashMap<String, u64>,
) -> Vec<DdbAccess> {
    let table = request
        .get("TableName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let consistent = request
        .get("ConsistentRead")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let access = |group_kind: String, access, bytes, factor| DdbAccess {
        group: format!("{op} {group_kind}"),
        access,
        bytes,
        factor,
    };
    match op {
        "PutItem" => {
            let item = request.get("Item");
            let id = identity(table, item);
            let new = obj(item).map_or(0, item_size);
            let old = obj(answer.get("Attributes"))
                .map(item_size)
                .or_else(|| known.get(&id).copied())
                .unwrap_or(0);
            known.insert(id, new);
            vec![access(item_kind(item), Access::Write, new.max(old), 1.0)]
        }
        "UpdateItem" | "DeleteItem" => {
            let key = request.get("Key");
            let id = identity(table, key);
            // The answer's attributes when asked for (ALL_OLD/ALL_NEW), else the last size seen, else
            // a lower bound: the key and the values the request writes.
            let seen = obj(answer.get("Attributes"))
                .map(item_size)
                .or_else(|| known.get(&id).copied());
            let lower = obj(key).map_or(0, item_size)
                + obj(request.get("ExpressionAttributeValues"))
                    .map_or(0, |m| m.values().map(value_size).sum());
            let bytes = seen.unwrap_or(0).max(lower);
            if op == "DeleteItem" {
                known.remove(&id);
            }
            vec![access(item_kind(key), Access::Write, bytes, 1.0)]
        }
        "GetItem" => {
            let item = answer.get("Item");
            let bytes = obj(item).map_or(0, item_size);
            if item.is_some() {
                known.insert(identity(table, request.get("Key")), bytes);
            }
            vec![access(
                item_kind(request.get("Key")),
                Access::Read { consistent },
                bytes,
                1.0,
            )]
        }
        "Query" | "Scan" => {
            let items = answer.get("Items").and_then(Value::as_array);
            let bytes = items
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .map(item_size)
                .sum();
            let kind = items
                .and_then(|i| i.first())
                .map_or("?".into(), |i| item_kind(Some(i)));
            vec![access(kind, Access::Read { consistent }, bytes, 1.0)]
        }
        "TransactWriteItems" => request
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_object()?.iter().next())
            .map(|(kind, w)| {
                let target = w.get("Item").or_else(|| w.get("Key"));
                let t = w.get("TableName").and_then(Value::as_str).unwrap_or("");
                let id = identity(t, target);
                let new = obj(w.get("Item")).map_or(0, item_size);
                let lower = obj(target).map_or(0, item_size)
                    + obj(w.get("ExpressionAttributeValues"))
                        .map_or(0, |m| m.values().map(value_size).sum());
                let bytes = new.max(lower).max(known.get(&id).copied().unwrap_or(0));
                match kind.as_str() {
                    "Put" => {
                        known.insert(id, new);
                    }
                    "Delete" => {
                        known.remove(&id);
                    }
                    _ => {}
                }
                access(
                    format!("{} {kind}", item_kind(target)),
                    Access::Write,
                    bytes,
                    2.0,
                )
            })
            .collect(),
        // One read per item returned, each rounded up on its own (completion reads the part items).
        "BatchGetItem" => {
            let consistent = request
                .get("RequestItems")
                .and_then(Value::as_object)
                .is_some_and(|t| {
                    t.values()
                        .any(|k| k.get("ConsistentRead").and_then(Value::as_bool) == Some(true))
                });
            answer
                .get("Responses")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|tables| tables.values())
                .filter_map(Value::as_array)
                .flatten()
                .map(|item| {
                    let bytes = obj(Some(item)).map_or(0, item_size);
                    access(
                        item_kind(Some(item)),
                        Access::Read { consistent },
                        bytes,
                        1.0,
                    )
                })
                .collect()
        }
        // Control-plane calls (CreateTable, DescribeTable, ...) are not billed by request units.
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The measured upload, and its projection to 1 GiB

/// What one measured upload gives the model.
pub struct Measured<'a> {
    /// Bytes uploaded.
    pub size: u64,
    pub chunk: u64,
    pub part_size: u64,
    /// Chunk requests answered (retries included).
    pub chunk_requests: u64,
    /// Mean wall time of a chunk request, ms.
    pub chunk_ms: f64,
    /// The completion request, ms.
    pub complete_ms: f64,
    pub calls: &'a [Call],
}

/// The functions' memory (MB) from template.yaml.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub chunk_mb: u64,
    pub complete_mb: u64,
}

/// A function's MemorySize in template.yaml: its own, else the Globals'.
pub fn template_memory_mb(template: &str, resource: &str) -> anyhow::Result<u64> {
    let t: serde_yaml_ng::Value = serde_yaml_ng::from_str(template)?;
    let own = t
        .get("Resources")
        .and_then(|r| r.get(resource))
        .and_then(|r| r.get("Properties"))
        .and_then(|p| p.get("MemorySize"));
    let global = t
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("MemorySize"));
    own.or(global)
        .and_then(serde_yaml_ng::Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("template.yaml gives {resource} no MemorySize"))
}

impl Memory {
    pub fn from_template() -> anyhow::Result<Memory> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
        Ok(Memory {
            chunk_mb: template_memory_mb(&text, "ChunkFunction")?,
            complete_mb: template_memory_mb(&text, "CompleteFunction")?,
        })
    }
}

/// What an upload uses of each priced thing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Metered API Gateway requests.
    pub api_requests: f64,
    pub chunk_invocations: f64,
    pub chunk_billed_ms: f64,
    pub complete_invocations: f64,
    pub complete_billed_ms: f64,
    pub s3_put_class: f64,
    pub s3_get_class: f64,
    pub s3_free: f64,
    /// Staged bytes times seconds stored.
    pub staged_byte_seconds: f64,
    pub wru: f64,
    pub rru: f64,
    pub dynamodb_requests: f64,
    /// Write units per chunk over the first and over the last part's worth of chunks (every write
    /// group, per-part ones spread over their part's chunks): how the session item's growth shows.
    pub wru_per_chunk_first_last: (f64, f64),
    /// Bytes written to and read from S3 (moved between Lambda and S3).
    pub s3_bytes_written: f64,
    pub s3_bytes_read: f64,
}

/// How often a kind of request seen `n` times in the measured upload happens in the projected one.
#[derive(Debug, Clone, Copy)]
struct Scale {
    parts: f64,
    chunks: f64,
    measured_parts: u64,
}

impl Scale {
    fn new(m: &Measured, target: u64) -> Scale {
        let measured_parts = m.size.div_ceil(m.part_size);
        Scale {
            parts: target.div_ceil(m.part_size) as f64 / measured_parts as f64,
            chunks: target.div_ceil(m.chunk) as f64 / m.size.div_ceil(m.chunk) as f64,
            measured_parts,
        }
    }

    /// Per upload (at most twice), per part (at most twice per part), else per chunk.
    fn ratio(&self, n: u64) -> f64 {
        if n <= 2 {
            1.0
        } else if n <= 2 * self.measured_parts {
            self.parts
        } else {
            self.chunks
        }
    }
}

/// How much an item grows per access, from the sizes `ys` of one group in order. Sizes that go up and
/// down within each part (the session's list of staged chunks fills and empties with every part) are
/// not growth: with at least three whole periods of `period` accesses (a part's worth), the growth
/// is the mean of the last whole period against the mean of the second (the first holds the
/// creation's write and the first chunk's, which carry less than any later one); with fewer, the
/// least-squares slope. Never negative.
fn growth_per_access(ys: &[f64], period: usize) -> f64 {
    let n = ys.len();
    if period >= 1 && n >= 3 * period {
        let mean = |w: &[f64]| w.iter().sum::<f64>() / w.len() as f64;
        let last = (n / period - 1) * period;
        let (second, last_mean) = (
            mean(&ys[period..2 * period]),
            mean(&ys[last..last + period]),
        );
        return ((last_mean - second) / (last - period) as f64).max(0.0);
    }
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx > 0.0 {
        (sxy / sxx).max(0.0)
    } else {
        0.0
    }
}

/// The request units of `accesses` (one group, in order) repeated to `count` accesses: the measured
/// sizes in their order, raised by their growth per access (`growth_per_access`, over periods of
/// `period` accesses) at each repetition.
fn projected_units(accesses: &[DdbAccess], count: u64, period: usize) -> f64 {
    let n = accesses.len();
    if n == 0 {
        return 0.0;
    }
    let ys: Vec<f64> = accesses.iter().map(|a| a.bytes as f64).collect();
    let slope = growth_per_access(&ys, period);
    (0..count)
        .map(|k| {
            let a = &accesses[k as usize % n];
            let rounds = (k / n as u64) as f64;
            let bytes = a.bytes as f64 + slope * (rounds * n as f64);
            a.units(bytes.round() as u64)
        })
        .sum()
}

/// S3 objects that were PUT and later deleted within the measured upload: their byte-seconds, and
/// their paths (the staging traffic the tusd variant replaces).
fn staged_objects(calls: &[Call]) -> (f64, std::collections::HashSet<String>) {
    let mut live: HashMap<String, (u64, f64)> = HashMap::new();
    let mut byte_seconds = 0.0;
    let mut staged = std::collections::HashSet::new();
    for c in calls.iter().filter(|c| !c.dynamodb && c.status < 300) {
        let t = c.at.as_secs_f64();
        match c.op.as_str() {
            op if is_delete_objects(op) => {
                let body = String::from_utf8_lossy(&c.request);
                for key in body
                    .split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split('<').next())
                {
                    let path = format!("{}/{}", c.path.trim_end_matches('/'), xml_unescape(key));
                    if let Some((bytes, since)) = live.remove(&path) {
                        byte_seconds += bytes as f64 * (t - since);
                        staged.insert(path);
                    }
                }
            }
            "PutObject" => {
                live.insert(c.path.clone(), (c.put_bytes, t));
            }
            "DeleteObject" => {
                if let Some((bytes, since)) = live.remove(&c.path) {
                    byte_seconds += bytes as f64 * (t - since);
                    staged.insert(c.path.clone());
                }
            }
            _ => {}
        }
    }
    (byte_seconds, staged)
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// API Gateway requests metered for one request of `bytes`.
pub fn metered_requests(bytes: u64, p: &Prices) -> f64 {
    bytes.div_ceil(p.http_api_metering_bytes).max(1) as f64
}

/// The measured upload, projected to `target` bytes, as this service stages chunks.
pub fn project(m: &Measured, target: u64, p: &Prices) -> Usage {
    let scale = Scale::new(m, target);
    let chunks = target.div_ceil(m.chunk) as f64;
    let retries = m.chunk_requests as f64 / m.size.div_ceil(m.chunk) as f64;
    let chunk_requests = chunks * retries.max(1.0);
    let mut u = Usage {
        api_requests: chunk_requests * metered_requests(m.chunk + FORM_OVERHEAD, p) + 1.0,
        chunk_invocations: chunk_requests,
        chunk_billed_ms: m.chunk_ms.ceil(),
        complete_invocations: 1.0,
        complete_billed_ms: m.complete_ms.ceil(),
        ..Usage::default()
    };

    // S3, by operation.
    let mut s3: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for c in m.calls.iter().filter(|c| !c.dynamodb) {
        let e = s3.entry(c.op.as_str()).or_default();
        e.0 += 1;
        e.1 += c.put_bytes;
        e.2 += c.get_bytes;
    }
    for (op, (n, put, get)) in s3 {
        let r = scale.ratio(n);
        add_s3(&mut u, s3_class(op), n as f64 * r);
        u.s3_bytes_written += put as f64 * r;
        u.s3_bytes_read += get as f64 * r;
    }
    // Staged chunks live for a part's worth of chunks, whatever the file's size.
    u.staged_byte_seconds = staged_objects(m.calls).0 * scale.chunks;

    // DynamoDB, by operation and item kind.
    let mut known = HashMap::new();
    let mut groups: BTreeMap<String, Vec<DdbAccess>> = BTreeMap::new();
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for c in m.calls.iter().filter(|c| c.dynamodb) {
        let request: Value = serde_json::from_slice(&c.request).unwrap_or(Value::Null);
        let answer: Value = serde_json::from_slice(&c.answer).unwrap_or(Value::Null);
        let accesses = dynamodb_accesses(&c.op, &request, &answer, &mut known);
        if let Some(first) = accesses.first() {
            *requests.entry(first.group.clone()).or_default() += 1;
        }
        for a in accesses {
            groups.entry(a.group.clone()).or_default().push(a);
        }
    }
    // A group's accesses per part's worth of bytes uploaded: its period (`growth_per_access`).
    let period = |n: usize| (n as f64 * m.part_size as f64 / m.size as f64).round() as usize;
    for accesses in groups.values() {
        let r = scale.ratio(accesses.len() as u64);
        let count = (accesses.len() as f64 * r).round() as u64;
        let units = projected_units(accesses, count, period(accesses.len()));
        match accesses[0].access {
            Access::Write => u.wru += units,
            Access::Read { .. } => u.rru += units,
        }
    }
    u.dynamodb_requests = requests.values().map(|&n| n as f64 * scale.ratio(n)).sum();
    // Per chunk in the first and in the last part's worth of chunks: each write group's projected
    // units over that stretch (a part's worth of its accesses), per chunk.
    let chunks_per_part = m.part_size.div_ceil(m.chunk).max(1);
    let (mut first, mut last) = (0.0, 0.0);
    for accesses in groups.values() {
        if !matches!(accesses[0].access, Access::Write) {
            continue;
        }
        let n = accesses.len() as u64;
        let r = scale.ratio(n);
        let count = ((n as f64 * r).round() as u64).max(1);
        let p = period(accesses.len());
        // Accesses of this group in a part's worth of chunks: all of them, or one per part.
        let stretch = if r == scale.chunks {
            chunks_per_part.min(count)
        } else if r == scale.parts {
            1
        } else {
            continue; // once per upload
        };
        let units = |k: u64| projected_units(accesses, k, p);
        first += units(stretch) / chunks_per_part as f64;
        last += (units(count) - units(count - stretch)) / chunks_per_part as f64;
    }
    u.wru_per_chunk_first_last = (first, last);
    u
}

fn add_s3(u: &mut Usage, class: S3Class, n: f64) {
    match class {
        S3Class::PutCopyPostList => u.s3_put_class += n,
        S3Class::GetAndOther => u.s3_get_class += n,
        S3Class::Free => u.s3_free += n,
    }
}

/// The same upload with tusd's staging: everything but the staged objects' traffic as measured, and
/// instead one `.part` object per part, downloaded, deleted and uploaded again with each chunk
/// appended until it reaches the part size; then it is uploaded as the part (which the measured
/// upload also does, so UploadPart stays as measured). Lambda time is kept as measured: a lower bound,
/// since moving the larger `.part` takes time too.
pub fn project_tusd(m: &Measured, target: u64, p: &Prices) -> Usage {
    let ours = project(m, target, p);
    let scale = Scale::new(m, target);
    let (_, staged) = staged_objects(m.calls);
    let mut u = ours.clone();
    // Take the staged objects' traffic out.
    let mut s3: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for c in m.calls.iter().filter(|c| !c.dynamodb) {
        // The staged objects' PUTs, GETs and DELETEs, and the batch deletes that removed them.
        let staging = staged.contains(&c.path) || (is_delete_objects(&c.op) && !staged.is_empty());
        if staging {
            let e = s3.entry(c.op.as_str()).or_default();
            e.0 += 1;
            e.1 += c.put_bytes;
            e.2 += c.get_bytes;
        }
    }
    for (op, (n, put, get)) in s3 {
        let r = scale.ratio(n);
        add_s3(&mut u, s3_class(op), -(n as f64) * r);
        u.s3_bytes_written -= put as f64 * r;
        u.s3_bytes_read -= get as f64 * r;
    }
    u.staged_byte_seconds = 0.0;
    // And tusd's in: the `.part` lives from one chunk to the next.
    let interval = m.chunk_ms / 1000.0;
    let mut part: u64 = 0;
    let mut left = target;
    while left > 0 {
        let chunk = left.min(m.chunk);
        left -= chunk;
        if part > 0 {
            // Download the incomplete part, then delete it.
            u.s3_get_class += 1.0;
            u.s3_bytes_read += part as f64;
            u.s3_free += 1.0;
        }
        part += chunk;
        if part >= m.part_size || left == 0 {
            // Uploaded as a part: counted in the measured traffic.
            part = 0;
        } else {
            u.s3_put_class += 1.0;
            u.s3_bytes_written += part as f64;
            u.staged_byte_seconds += part as f64 * interval;
        }
    }
    u
}

// ---------------------------------------------------------------------------------------------
// Prices times usage

/// One line of the bill.
#[derive(Debug, Clone)]
pub struct Line {
    pub item: &'static str,
    pub quantity: f64,
    pub unit: &'static str,
    pub usd: f64,
}

pub fn bill(u: &Usage, mem: Memory, p: &Prices) -> Vec<Line> {
    let gb_s = |inv: f64, ms: f64, mb: u64| inv * ms / 1000.0 * mb as f64 / 1024.0;
    let chunk_gb_s = gb_s(u.chunk_invocations, u.chunk_billed_ms, mem.chunk_mb);
    let complete_gb_s = gb_s(
        u.complete_invocations,
        u.complete_billed_ms,
        mem.complete_mb,
    );
    let gb_months = u.staged_byte_seconds / GIB as f64 / MONTH_SECS;
    vec![
        Line {
            item: "API Gateway HTTP API requests (512 KiB increments)",
            quantity: u.api_requests,
            unit: "requests",
            usd: u.api_requests / 1e6 * p.http_api_per_million,
        },
        Line {
            item: "Lambda requests (chunk + complete)",
            quantity: u.chunk_invocations + u.complete_invocations,
            unit: "invocations",
            usd: (u.chunk_invocations + u.complete_invocations) / 1e6
                * p.lambda_per_million_requests,
        },
        Line {
            item: "Lambda arm64 duration, chunk function",
            quantity: chunk_gb_s,
            unit: "GB-s",
            usd: chunk_gb_s * p.lambda_arm_per_gb_second,
        },
        Line {
            item: "Lambda arm64 duration, complete function",
            quantity: complete_gb_s,
            unit: "GB-s",
            usd: complete_gb_s * p.lambda_arm_per_gb_second,
        },
        Line {
            item: "S3 PUT, COPY, POST, LIST requests",
            quantity: u.s3_put_class,
            unit: "requests",
            usd: u.s3_put_class / 1000.0 * p.s3_put_class_per_1000,
        },
        Line {
            item: "S3 GET and other requests",
            quantity: u.s3_get_class,
            unit: "requests",
            usd: u.s3_get_class / 1000.0 * p.s3_get_class_per_1000,
        },
        Line {
            item: "S3 DELETE requests (free)",
            quantity: u.s3_free,
            unit: "requests",
            usd: 0.0,
        },
        Line {
            item: "S3 Standard storage of staged bytes",
            quantity: gb_months,
            unit: "GB-months",
            usd: gb_months * p.s3_standard_per_gb_month,
        },
        Line {
            item: "DynamoDB on-demand writes",
            quantity: u.wru,
            unit: "WRU",
            usd: u.wru / 1e6 * p.dynamodb_per_million_wru,
        },
        Line {
            item: "DynamoDB on-demand reads",
            quantity: u.rru,
            unit: "RRU",
            usd: u.rru / 1e6 * p.dynamodb_per_million_rru,
        },
    ]
}

pub fn total(lines: &[Line]) -> f64 {
    lines.iter().map(|l| l.usd).sum()
}

// ---------------------------------------------------------------------------------------------
// The report's section

/// Appends the cost section to the benchmark's report.
pub fn render(d: &mut String, m: &Measured) {
    let p = &PRICES;
    let _ = writeln!(
        d,
        "### Cost of uploading 1 GiB in {}-byte chunks on AWS\n",
        m.chunk
    );
    let mem = match Memory::from_template() {
        Ok(mem) => mem,
        Err(e) => {
            let _ = writeln!(d, "Not computed: {e:#}.\n");
            return;
        }
    };
    let ours = project(m, GIB, p);
    let tusd = project_tusd(m, GIB, p);
    let (ours_bill, tusd_bill) = (bill(&ours, mem, p), bill(&tusd, mem, p));
    let _ = writeln!(
        d,
        "From the calls counted above, projected to 1 GiB ({} chunks) by `bench/src/cost.rs` (its module \
         comment has the rules); {}. Lambda time: the mean wall time of a chunk request, {:.1} ms, and the \
         completion, {:.1} ms, measured by the uploader against media-local with the AWS adapters (the same \
         handler code as the functions) through the proxy to **moto, which is not S3**: S3's and DynamoDB's \
         latencies differ, so the duration lines are an order of magnitude. Memory from template.yaml: \
         chunk {} MB, complete {} MB. DynamoDB units from the item sizes in the requests and answers \
         ({:.0} requests). The tusd column replaces the staged objects' traffic with one `.part` per part \
         downloaded and uploaded again with each chunk appended; its Lambda time is kept equal (a lower \
         bound). Free tiers, data transfer (S3 to Lambda in one region is free) and the media's own \
         storage are left out.\n",
        GIB.div_ceil(m.chunk),
        p.as_of,
        m.chunk_ms,
        m.complete_ms,
        mem.chunk_mb,
        mem.complete_mb,
        ours.dynamodb_requests
    );
    let _ = writeln!(
        d,
        "| item | unit | this service: quantity | USD | tusd-style `.part`: quantity | USD |"
    );
    let _ = writeln!(d, "|---|---|---:|---:|---:|---:|");
    for (o, t) in ours_bill.iter().zip(&tusd_bill) {
        let _ = writeln!(
            d,
            "| {} | {} | {} | {:.6} | {} | {:.6} |",
            o.item,
            o.unit,
            quantity(o.quantity),
            o.usd,
            quantity(t.quantity),
            t.usd
        );
    }
    let _ = writeln!(
        d,
        "| **total** | | | **{:.4}** | | **{:.4}** |",
        total(&ours_bill),
        total(&tusd_bill)
    );
    let _ = writeln!(
        d,
        "\nBytes moved between Lambda and S3 per byte uploaded: this service {:.2} written + {:.2} read, \
         tusd-style {:.2} written + {:.2} read.\n",
        ours.s3_bytes_written / GIB as f64,
        ours.s3_bytes_read / GIB as f64,
        tusd.s3_bytes_written / GIB as f64,
        tusd.s3_bytes_read / GIB as f64
    );
    let _ = writeln!(
        d,
        "DynamoDB write units per chunk (session writes, and part writes spread over their part's \
         chunks), projected: {:.1} over the first part's chunks, {:.1} over the last part's chunks of \
         1 GiB; {:.1} on average.\n",
        ours.wru_per_chunk_first_last.0,
        ours.wru_per_chunk_first_last.1,
        ours.wru / GIB.div_ceil(m.chunk) as f64
    );
}

fn quantity(q: f64) -> String {
    if q >= 100.0 || q == q.trunc() {
        format!("{q:.0}")
    } else if q >= 0.01 {
        format!("{q:.2}")
    } else {
        format!("{q:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        // Names count; strings and binaries by bytes; numbers by significant digits.
        let item = json!({
            "pk": {"S": "upload#42"},          // 2 + 9
            "n": {"N": "12300"},               // 1 + (3 digits -> 2) + 1
            "b": {"B": "AAECAw=="},            // 1 + 4
            "ok": {"BOOL": true},              // 2 + 1
            "l": {"L": [{"S": "ab"}, {"N": "7"}]}, // 1 + 3 + (1+2) + (1+2)
            "m": {"M": {"k": {"S": "v"}}},     // 1 + 3 + (1+1+1)
            "ss": {"SS": ["a", "bcd"]},        // 2 + 4
        });
        let size = item_size(item.as_object().unwrap());
        assert_eq!(size, 11 + 4 + 5 + 3 + 10 + 7 + 6);
        assert_eq!(number_size("0.000120"), 2);
        assert_eq!(number_size("-1234567"), 5);
    }

    #[test]
    fn units_round_up_per_started_kib_or_4_kib() {
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
    }

    #[test]
    fn a_put_that_replaces_a_bigger_item_pays_for_the_bigger_one() {
        let mut known = HashMap::new();
        let big = json!({"TableName": "t", "Item": {"pk": {"S": "upload#1"}, "data": {"S": "x".repeat(3000)}}});
        let small =
            json!({"TableName": "t", "Item": {"pk": {"S": "upload#1"}, "data": {"S": "x"}}});
        let a = dynamodb_accesses("PutItem", &big, &Value::Null, &mut known);
        assert_eq!(a[0].units(a[0].bytes), 3.0);
        assert_eq!(a[0].group, "PutItem upload");
        let a = dynamodb_accesses("PutItem", &small, &Value::Null, &mut known);
        assert_eq!(a[0].units(a[0].bytes), 3.0);
    }

    #[test]
    fn s3_requests_fall_in_their_price_classes() {
        assert_eq!(s3_class("PutObject"), S3Class::PutCopyPostList);
        assert_eq!(s3_class("UploadPart"), S3Class::PutCopyPostList);
        assert_eq!(
            s3_class("CompleteMultipartUpload"),
            S3Class::PutCopyPostList
        );
        assert_eq!(s3_class("GET ?list-type&prefix"), S3Class::PutCopyPostList);
        assert_eq!(s3_class("GetObject"), S3Class::GetAndOther);
        assert_eq!(s3_class("HEAD"), S3Class::GetAndOther);
        assert_eq!(s3_class("DeleteObject"), S3Class::Free);
        assert_eq!(s3_class("DELETE ?uploadId"), S3Class::Free);
        assert_eq!(s3_class("POST ?delete"), S3Class::PutCopyPostList);
        // CompleteMultipartUpload and CreateMultipartUpload as the proxy names them.
        assert_eq!(s3_class("POST ?uploadId"), S3Class::PutCopyPostList);
        assert_eq!(s3_class("POST ?uploads"), S3Class::PutCopyPostList);
    }

    #[test]
    fn template_memory_is_the_functions_own_else_the_globals() {
        let t = "Globals:\n  Function:\n    MemorySize: 256\nResources:\n  ChunkFunction:\n    \
                 Properties:\n      MemorySize: 512\n      Role: !Ref Thing\n  CompleteFunction:\n    \
                 Properties: {}\n";
        assert_eq!(template_memory_mb(t, "ChunkFunction").unwrap(), 512);
        assert_eq!(template_memory_mb(t, "CompleteFunction").unwrap(), 256);
        // The real template names both functions.
        Memory::from_template().unwrap();
    }

    /// Hand-computed bill of a made-up usage: each line's unit (per million, per thousand, GB-s from
    /// MB and ms, GB-months from byte-seconds) is checked by its own figure.
    #[test]
    fn the_bill_multiplies_each_quantity_by_its_units_price() {
        let u = Usage {
            api_requests: 2_000_000.0,
            chunk_invocations: 1000.0,
            chunk_billed_ms: 100.0,
            complete_invocations: 0.0,
            complete_billed_ms: 0.0,
            s3_put_class: 3000.0,
            s3_get_class: 5000.0,
            s3_free: 7.0,
            // One GiB for 730 hours: one GB-month.
            staged_byte_seconds: GIB as f64 * MONTH_SECS,
            wru: 1_000_000.0,
            rru: 4_000_000.0,
            ..Usage::default()
        };
        let mem = Memory {
            chunk_mb: 512,
            complete_mb: 256,
        };
        let lines = bill(&u, mem, &PRICES);
        let usd = |name: &str| {
            lines
                .iter()
                .find(|l| l.item.starts_with(name))
                .unwrap_or_else(|| panic!("no line {name}"))
                .usd
        };
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
        close(usd("API Gateway"), 2.0);
        close(usd("Lambda requests"), 0.0002);
        // 1000 x 0.1 s x 0.5 GB = 50 GB-s.
        close(usd("Lambda arm64 duration, chunk"), 50.0 * 0.000_013_333_4);
        close(usd("S3 PUT"), 0.015);
        close(usd("S3 GET"), 0.002);
        close(usd("S3 DELETE"), 0.0);
        close(usd("S3 Standard storage"), 0.023);
        close(usd("DynamoDB on-demand writes"), 0.625);
        close(usd("DynamoDB on-demand reads"), 0.5);
    }

    #[test]
    fn api_requests_are_metered_per_started_512_kib() {
        assert_eq!(metered_requests(204_800 + FORM_OVERHEAD, &PRICES), 1.0);
        assert_eq!(metered_requests(512 * 1024, &PRICES), 1.0);
        assert_eq!(metered_requests(600 * 1024, &PRICES), 2.0);
    }

    fn call(at_ms: u64, op: &str, path: &str, put: u64, get: u64, request: &str) -> Call {
        Call {
            at: std::time::Duration::from_millis(at_ms),
            dynamodb: false,
            op: op.into(),
            path: path.into(),
            status: 200,
            put_bytes: put,
            get_bytes: get,
            request: bytes::Bytes::from(request.to_string()),
            answer: bytes::Bytes::new(),
        }
    }

    fn ddb(at_ms: u64, op: &str, request: Value, answer: Value) -> Call {
        Call {
            dynamodb: true,
            request: bytes::Bytes::from(request.to_string()),
            answer: bytes::Bytes::from(answer.to_string()),
            ..call(at_ms, op, "/", 0, 0, "")
        }
    }

    /// A made-up upload of 9 chunks of 100 bytes in parts of 300: each chunk staged, then read back
    /// and deleted when its part is written; one session item growing by 600 bytes per chunk.
    fn measured_calls() -> Vec<Call> {
        let mut calls = vec![call(0, "CreateMultipartUpload", "/b/o", 0, 0, "")];
        let mut t = 0;
        for part in 0..3u64 {
            for i in 0..3u64 {
                let off = (part * 3 + i) * 100;
                t += 1000;
                calls.push(call(t, "PutObject", &format!("/b/s/{off}"), 100, 0, ""));
                let data = "x".repeat(600 * (off as usize / 100 + 1));
                let item = json!({"pk": {"S": "upload#1"}, "data": {"S": data}});
                calls.push(ddb(
                    t,
                    "GetItem",
                    json!({"TableName": "t", "Key": {"pk": {"S": "upload#1"}}, "ConsistentRead": true}),
                    json!({"Item": item}),
                ));
                calls.push(ddb(
                    t,
                    "PutItem",
                    json!({"TableName": "t", "Item": item}),
                    json!({}),
                ));
            }
            let mut keys = String::from("<Delete>");
            for i in 0..3u64 {
                let off = (part * 3 + i) * 100;
                calls.push(call(t, "GetObject", &format!("/b/s/{off}"), 0, 100, ""));
                keys += &format!("<Object><Key>s/{off}</Key></Object>");
            }
            keys += "</Delete>";
            calls.push(call(t, "UploadPart", "/b/o", 300, 0, ""));
            t += 500;
            calls.push(call(t, "POST ?delete", "/b", 0, 0, &keys));
        }
        calls.push(call(t, "CompleteMultipartUpload", "/b/o", 0, 0, ""));
        calls
    }

    #[test]
    fn a_size_that_cycles_with_each_part_is_not_growth() {
        // Three parts of four accesses: the staged list fills and empties, nothing grows.
        let cycle: Vec<f64> = (0..12).map(|i| 1000.0 * f64::from(i % 4 + 1)).collect();
        assert_eq!(growth_per_access(&cycle, 4), 0.0);
        // A smaller first write (the creation's) is no growth either.
        let mut created = cycle.clone();
        created[0] = 10.0;
        assert_eq!(growth_per_access(&created, 4), 0.0);
        // Measured over a part and a half, the same cycle would read as growth.
        assert!(growth_per_access(&cycle[..6], 4) > 0.0);
        // Growth from part to part (a part list in the item) is kept.
        let growing: Vec<f64> = cycle
            .iter()
            .enumerate()
            .map(|(i, y)| y + 100.0 * i as f64)
            .collect();
        assert!((growth_per_access(&growing, 4) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn staged_bytes_are_billed_for_their_lifetime() {
        let calls = measured_calls();
        let (byte_seconds, staged) = staged_objects(&calls);
        // Per part: chunks put 2.5 s, 1.5 s and 0.5 s before their delete.
        let expected = 3.0 * 100.0 * (2.5 + 1.5 + 0.5);
        assert!((byte_seconds - expected).abs() < 1e-9, "{byte_seconds}");
        assert_eq!(staged.len(), 9);
    }

    #[test]
    fn the_projection_scales_per_chunk_and_per_part_requests_and_grows_items() {
        let calls = measured_calls();
        let m = Measured {
            size: 900,
            chunk: 100,
            part_size: 300,
            chunk_requests: 9,
            chunk_ms: 1000.0,
            complete_ms: 10.0,
            calls: &calls,
        };
        let u = project(&m, 1800, &PRICES);
        // 18 chunk requests + completion.
        assert_eq!(u.api_requests, 19.0);
        assert_eq!(u.chunk_invocations, 18.0);
        // Per upload: Create + Complete; per part (3 -> 6): UploadPart and DeleteObjects; per chunk
        // (9 -> 18): PutObject.
        assert_eq!(u.s3_put_class, 2.0 + 6.0 + 6.0 + 18.0);
        assert_eq!(u.s3_get_class, 18.0);
        assert_eq!(u.s3_free, 0.0);
        assert_eq!(u.s3_bytes_written, 18.0 * 100.0 + 6.0 * 300.0);
        assert_eq!(u.staged_byte_seconds, 2.0 * 3.0 * 100.0 * 4.5);
        // Items of 614 bytes ("pk" + "upload#1" + "data" + 600), 600 more per chunk, to the 18th.
        let sizes: Vec<u64> = (0..18).map(|k| 614 + 600 * k).collect();
        let wru: f64 = sizes.iter().map(|&s| write_units(s)).sum();
        let rru: f64 = sizes.iter().map(|&s| read_units(s, true)).sum();
        assert_eq!(u.wru, wru);
        assert_eq!(u.rru, rru);
        // Per chunk over the first part (3 chunks) and over the last.
        let per_chunk = |s: &[u64]| s.iter().map(|&s| write_units(s)).sum::<f64>() / 3.0;
        assert_eq!(
            u.wru_per_chunk_first_last,
            (per_chunk(&sizes[..3]), per_chunk(&sizes[15..]))
        );
        assert_eq!(u.dynamodb_requests, 36.0);

        // tusd, per part: `.part` of 100 put; downloaded, deleted, 200 put; downloaded, deleted, and
        // the part uploaded.
        let t = project_tusd(&m, 1800, &PRICES);
        assert_eq!(t.s3_put_class, 2.0 + 6.0 + 6.0 * 2.0);
        assert_eq!(t.s3_get_class, 6.0 * 2.0);
        assert_eq!(t.s3_free, 6.0 * 2.0);
        assert_eq!(t.s3_bytes_written, 6.0 * (100.0 + 200.0 + 300.0));
        assert_eq!(t.s3_bytes_read, 6.0 * (100.0 + 200.0));
        assert_eq!(t.staged_byte_seconds, 6.0 * (100.0 + 200.0) * 1.0);
        assert_eq!(t.wru, u.wru);
        assert_eq!(t.api_requests, u.api_requests);
    }
}
