//! Reading back the CloudWatch Embedded Metric Format documents the functions write: each one
//! checked against the format (as CloudWatch Logs would read it) and the values added up, so that a
//! test can compare them with what it did.
//!
//! Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::BTreeMap;

use media_shared::metrics::Metric;
use serde_json::Value;

/// The units CloudWatch accepts.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The EMF documents among the lines of a process's output (JSON objects with `_aws`; log lines
/// and anything else are skipped), each checked with [`check`].
pub fn documents(output: &str, namespace: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("_aws").is_some())
        .inspect(|d| check(d, namespace))
        .collect()
}

/// Panics, saying what is wrong, unless `doc` is a valid EMF document in `namespace` whose metrics
/// are this service's ([`Metric`]) with their units and dimensions, and whose dimension values are
/// no ids.
pub fn check(doc: &Value, namespace: &str) {
    let members = doc
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {doc}"));
    let aws = &doc["_aws"];
    let ts = aws["Timestamp"]
        .as_i64()
        .unwrap_or_else(|| panic!("_aws.Timestamp is not an integer: {doc}"));
    // Milliseconds since the epoch (after 2020), not seconds.
    assert!(ts > 1_577_836_800_000, "Timestamp {ts} is not in ms: {doc}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("_aws.CloudWatchMetrics is not a non-empty array: {doc}"));
    for directive in directives {
        assert_eq!(directive["Namespace"], namespace, "{doc}");
        let sets = directive["Dimensions"]
            .as_array()
            .unwrap_or_else(|| panic!("Dimensions is not an array: {doc}"));
        let mut names = Vec::new();
        for set in sets {
            let set = set
                .as_array()
                .unwrap_or_else(|| panic!("a dimension set is not an array: {doc}"));
            assert!(set.len() <= 30, "{doc}");
            for dim in set {
                let dim = dim
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {dim} is not a string: {doc}"));
                let value = members
                    .get(dim)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("dimension {dim} has no string member: {doc}"));
                assert!(!value.is_empty() && value.len() <= 1024, "{dim}: {doc}");
                assert!(!looks_like_an_id(value), "{dim}={value} is an id: {doc}");
                names.push(dim.to_string());
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .filter(|m| !m.is_empty() && m.len() <= 100)
            .unwrap_or_else(|| panic!("Metrics is not an array of 1 to 100: {doc}"));
        for m in metrics {
            let name = m["Name"]
                .as_str()
                .unwrap_or_else(|| panic!("a metric without Name: {doc}"));
            let unit = m["Unit"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no Unit: {doc}"));
            assert!(UNITS.contains(&unit), "{name}: unit {unit}: {doc}");
            let ours = Metric::ALL
                .into_iter()
                .find(|x| x.name() == name)
                .unwrap_or_else(|| panic!("{name} is not one of media_shared::metrics: {doc}"));
            assert_eq!(unit, ours.unit().as_str(), "{name}: {doc}");
            assert!(
                sets.iter().all(|s| s == &Value::from(ours.dimensions())),
                "{name} with dimensions {sets:?}, not {:?}: {doc}",
                ours.dimensions()
            );
            let values = values_of(&doc[name]);
            assert!(
                !values.is_empty() && values.len() <= 100,
                "{name} has no value as a top-level member: {doc}"
            );
        }
    }
}

/// 32 hexadecimal digits (an upload id) or a long run of digits (a media id would be short, but
/// nothing of ours is a number either).
fn looks_like_an_id(v: &str) -> bool {
    (v.len() >= 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

fn values_of(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => n.as_f64().into_iter().collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    }
}

/// What documents add up to, by function.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// (FunctionName, metric) -> every value, in order.
    pub values: BTreeMap<(String, String), Vec<f64>>,
    /// (FunctionName, ErrorCode) -> RequestsRefused.
    pub refused: BTreeMap<(String, String), f64>,
}

impl Totals {
    pub fn of(docs: &[Value]) -> Self {
        let mut t = Totals::default();
        for doc in docs {
            let function = doc["FunctionName"].as_str().unwrap_or_default().to_string();
            for directive in doc["_aws"]["CloudWatchMetrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for m in directive["Metrics"].as_array().into_iter().flatten() {
                    let name = m["Name"].as_str().unwrap_or_default();
                    let values = values_of(&doc[name]);
                    if name == Metric::RequestsRefused.name() {
                        let code = doc["ErrorCode"].as_str().unwrap_or_default().to_string();
                        *t.refused.entry((function.clone(), code)).or_default() +=
                            values.iter().sum::<f64>();
                    } else {
                        t.values
                            .entry((function.clone(), name.to_string()))
                            .or_default()
                            .extend(values);
                    }
                }
            }
        }
        t
    }

    /// The sum of `metric` for `function` (0 when it was never written).
    pub fn sum(&self, function: &str, metric: Metric) -> f64 {
        self.samples(function, metric).iter().sum()
    }

    /// Every value of `metric` for `function`.
    pub fn samples(&self, function: &str, metric: Metric) -> &[f64] {
        self.values
            .get(&(function.to_string(), metric.name().to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Requests `function` refused with `code`.
    pub fn refused(&self, function: &str, code: &str) -> f64 {
        self.refused
            .get(&(function.to_string(), code.to_string()))
            .copied()
            .unwrap_or(0.0)
    }
}
