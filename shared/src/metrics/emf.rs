//! The Lambda functions' sink: CloudWatch Embedded Metric Format. Events are added up in memory
//! during an invocation; `flush` (called by the Lambda glue once the invocation is answered) writes
//! them as one JSON document on one stdout line, which CloudWatch Logs extracts into metrics by
//! itself. No API call, so recording never slows a request down or fails it, and nothing is
//! written for an invocation that recorded nothing (no zero-valued metrics to pay for).
//!
//! A document's dimension values are its top-level members, so one document holds one error code:
//! an invocation that refused requests with several codes (never an HTTP function's: one request
//! per invocation) writes one more document per further code.
//!
//! Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::{
    Event, Metric, Recorder, Unit, DEFAULT_NAMESPACE, ERROR_CODE_DIMENSION, FUNCTION_DIMENSION,
};
use crate::config::{ConfigError, Env};

/// EMF takes at most 100 values of one metric in a document; more samples than that in one
/// invocation (none of ours has them) are dropped rather than making the document invalid.
const MAX_VALUES: usize = 100;

type Output = Box<dyn Fn(&str) + Send + Sync>;

pub struct Emf {
    namespace: String,
    function_name: String,
    pending: Mutex<Pending>,
    out: Output,
}

/// What an invocation recorded so far.
#[derive(Default)]
struct Pending {
    /// Counters and byte amounts, summed.
    sums: BTreeMap<Metric, f64>,
    /// `RequestsRefused` by error code.
    refused: BTreeMap<&'static str, f64>,
    /// Timings, each value kept (CloudWatch builds the percentiles).
    samples: BTreeMap<Metric, Vec<f64>>,
}

impl Emf {
    /// Documents go to stdout, where Lambda sends them to CloudWatch Logs.
    pub fn new(namespace: impl Into<String>, function_name: impl Into<String>) -> Self {
        Emf {
            namespace: namespace.into(),
            function_name: function_name.into(),
            pending: Mutex::default(),
            out: Box::new(stdout_line),
        }
    }

    /// `MEDIA_METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]) and the function's name from
    /// `AWS_LAMBDA_FUNCTION_NAME`, which Lambda (and `cargo lambda watch`) set.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let namespace = namespace(env)?;
        let function = env
            .get("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|| "media".into());
        Ok(Emf::new(namespace, function))
    }

    /// Each document goes to `out` instead of stdout, one JSON text per call (tests).
    pub fn with_output(mut self, out: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.out = Box::new(out);
        self
    }

    /// The documents of what was recorded since the last call, which is forgotten.
    pub fn take_documents(&self, timestamp_ms: i64) -> Vec<Value> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.documents(pending, timestamp_ms)
    }

    fn documents(&self, pending: Pending, timestamp_ms: i64) -> Vec<Value> {
        let mut members = Map::new();
        let mut metrics = Vec::new();
        for (metric, sum) in pending.sums {
            members.insert(metric.name().into(), json!(sum));
            metrics.push(definition(metric));
        }
        for (metric, mut values) in pending.samples {
            values.truncate(MAX_VALUES);
            let value = match values.as_slice() {
                [one] => json!(one),
                _ => json!(values),
            };
            members.insert(metric.name().into(), value);
            metrics.push(definition(metric));
        }
        let mut directives = Vec::new();
        if !metrics.is_empty() {
            directives.push(self.directive(&[FUNCTION_DIMENSION], metrics));
        }
        let mut refused = pending.refused.into_iter();
        let refusal_directive = || {
            self.directive(
                Metric::RequestsRefused.dimensions(),
                vec![definition(Metric::RequestsRefused)],
            )
        };
        if let Some((code, n)) = refused.next() {
            members.insert(ERROR_CODE_DIMENSION.into(), json!(code));
            members.insert(Metric::RequestsRefused.name().into(), json!(n));
            directives.push(refusal_directive());
        }
        let mut docs = Vec::new();
        if !directives.is_empty() {
            docs.push(self.document(members, directives, timestamp_ms));
        }
        for (code, n) in refused {
            let mut members = Map::new();
            members.insert(ERROR_CODE_DIMENSION.into(), json!(code));
            members.insert(Metric::RequestsRefused.name().into(), json!(n));
            docs.push(self.document(members, vec![refusal_directive()], timestamp_ms));
        }
        docs
    }

    fn directive(&self, dimensions: &[&str], metrics: Vec<Value>) -> Value {
        json!({"Namespace": self.namespace, "Dimensions": [dimensions], "Metrics": metrics})
    }

    fn document(&self, mut members: Map<String, Value>, directives: Vec<Value>, ts: i64) -> Value {
        members.insert(FUNCTION_DIMENSION.into(), json!(self.function_name));
        members.insert(
            "_aws".into(),
            json!({"Timestamp": ts, "CloudWatchMetrics": directives}),
        );
        Value::Object(members)
    }
}

fn definition(metric: Metric) -> Value {
    json!({"Name": metric.name(), "Unit": metric.unit().as_str()})
}

impl Recorder for Emf {
    fn record(&self, event: Event) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (metric, value) in event.values() {
            match (metric, event) {
                (Metric::RequestsRefused, Event::Refused { code }) => {
                    *p.refused.entry(code).or_default() += value;
                }
                _ if metric.unit() == Unit::Milliseconds => {
                    p.samples.entry(metric).or_default().push(value)
                }
                _ => *p.sums.entry(metric).or_default() += value,
            }
        }
    }

    fn flush(&self) {
        let now = time::OffsetDateTime::now_utc();
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        for doc in self.take_documents(ms) {
            (self.out)(&doc.to_string());
        }
    }
}

/// One document per line, written at once so that it never interleaves with a log line.
fn stdout_line(doc: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
    let _ = out.flush();
}

/// `MEDIA_METRICS_NAMESPACE`, checked against CloudWatch's rules for a namespace (1 to 255
/// characters out of letters, digits and `.-_/#: `, not starting with the reserved `AWS/`): a bad
/// one would make CloudWatch drop every document silently.
pub fn namespace(env: &dyn Env) -> Result<String, ConfigError> {
    let Some(raw) = env.get("MEDIA_METRICS_NAMESPACE") else {
        return Ok(DEFAULT_NAMESPACE.into());
    };
    let ns = raw.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if ns.len() > 255 || !ns.chars().all(allowed) || ns.starts_with("AWS/") {
        return Err(ConfigError {
            var: "MEDIA_METRICS_NAMESPACE",
            message: format!(
                "{raw:?} is not a CloudWatch namespace (at most 255 letters, digits and .-_/#: , not starting with AWS/)"
            ),
        });
    }
    Ok(ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nothing_recorded_writes_nothing() {
        let emf = Emf::new("Ns", "fn");
        assert!(emf.take_documents(1).is_empty());
    }

    #[test]
    fn one_document_with_the_values_as_members() {
        let emf = Emf::new("Ns", "media-chunk");
        emf.record(Event::ChunkStored { bytes: 100 });
        emf.record(Event::ChunkStored { bytes: 50 });
        emf.record(Event::ChunkHandled {
            elapsed: Duration::from_millis(12),
        });
        emf.record(Event::Refused {
            code: "offset_mismatch",
        });
        let docs = emf.take_documents(1_700_000_000_000);
        assert_eq!(docs.len(), 1, "{docs:#?}");
        let d = &docs[0];
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(d["FunctionName"], "media-chunk");
        assert_eq!(d["ChunksReceived"], 2.0);
        assert_eq!(d["BytesReceived"], 150.0);
        assert_eq!(d["ChunkHandlerTime"], 12.0);
        assert_eq!(d["ErrorCode"], "offset_mismatch");
        assert_eq!(d["RequestsRefused"], 1.0);
        let directives = d["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[0]["Namespace"], "Ns");
        assert_eq!(directives[0]["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directives[1]["Dimensions"],
            json!([["FunctionName", "ErrorCode"]])
        );
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "RequestsRefused", "Unit": "Count"}])
        );
        // Taken: the next invocation starts from nothing.
        assert!(emf.take_documents(2).is_empty());
    }

    #[test]
    fn a_further_error_code_gets_a_document_of_its_own() {
        let emf = Emf::new("Ns", "fn");
        emf.record(Event::Refused { code: "a" });
        emf.record(Event::Refused { code: "b" });
        emf.record(Event::Refused { code: "a" });
        let docs = emf.take_documents(1);
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (&docs[0]["ErrorCode"], &docs[0]["RequestsRefused"]),
            (&json!("a"), &json!(2.0))
        );
        assert_eq!(
            (&docs[1]["ErrorCode"], &docs[1]["RequestsRefused"]),
            (&json!("b"), &json!(1.0))
        );
        assert_eq!(docs[1]["FunctionName"], "fn");
    }

    #[test]
    fn several_timings_are_an_array() {
        let emf = Emf::new("Ns", "fn");
        for ms in [1, 2, 3] {
            emf.record(Event::ChunkHandled {
                elapsed: Duration::from_millis(ms),
            });
        }
        assert_eq!(
            emf.take_documents(1)[0]["ChunkHandlerTime"],
            json!([1.0, 2.0, 3.0])
        );
    }

    #[test]
    fn flush_writes_one_line_per_document() {
        let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let emf = Emf::new("Ns", "fn").with_output(move |l| sink.lock().unwrap().push(l.into()));
        emf.flush();
        emf.record(Event::UploadCompleted);
        emf.flush();
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\n'));
        let doc: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(doc["UploadsCompleted"], 1.0);
    }

    #[test]
    fn the_namespace_from_the_environment() {
        assert_eq!(namespace(&[("X", "y")]).unwrap(), DEFAULT_NAMESPACE);
        assert_eq!(
            namespace(&[("MEDIA_METRICS_NAMESPACE", "Prod/Media")]).unwrap(),
            "Prod/Media"
        );
        for bad in ["AWS/Lambda", "a\"b", &"x".repeat(256)] {
            let e = namespace(&[("MEDIA_METRICS_NAMESPACE", bad)]).unwrap_err();
            assert_eq!(e.var, "MEDIA_METRICS_NAMESPACE");
        }
    }
}
