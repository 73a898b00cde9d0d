//! The alarms and the dashboard of template.yaml watch real things: every dimension names a resource
//! of the template (a queue, a function, the HTTP API), every function and both dead-letter queues are
//! watched, and every metric of the `MetricsNamespace` parameter is one the code writes
//! (`media_shared::metrics::Metric`, the one list of names), with its dimensions. Rename a metric or
//! a resource in one place and this test names the other.

use std::collections::BTreeSet;

use media_shared::metrics::{Metric, DEFAULT_NAMESPACE};
use serde_json::Value as Json;
use serde_yaml_ng::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

/// The resource a `!Ref X` or `!GetAtt X.Attr` names.
fn named_resource(v: &Value) -> Option<String> {
    if let Some(r) = tagged(v, "Ref") {
        return r.as_str().map(str::to_string);
    }
    let att = tagged(v, "GetAtt")?.as_str()?;
    Some(att.split('.').next()?.to_string())
}

fn is_metrics_namespace(v: &Value) -> bool {
    tagged(v, "Ref").and_then(Value::as_str) == Some("MetricsNamespace")
}

fn ours(name: &str) -> Metric {
    Metric::ALL
        .into_iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("{name} is not a metric the code writes (media_shared::metrics)"))
}

/// (alarm, namespace, metric name, dimensions) of every metric an alarm reads, alone or in its
/// metric math.
fn alarm_metrics(t: &Value) -> Vec<(String, &Value, String, &Value)> {
    let mut out = Vec::new();
    for (name, alarm) in of_type(t, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        if let Some(metric) = p.get("MetricName") {
            out.push((
                name.clone(),
                &p["Namespace"],
                metric.as_str().unwrap().to_string(),
                &p["Dimensions"],
            ));
        }
        for q in p
            .get("Metrics")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(stat) = q.get("MetricStat") {
                let m = &stat["Metric"];
                out.push((
                    name.clone(),
                    &m["Namespace"],
                    m["MetricName"].as_str().unwrap().to_string(),
                    &m["Dimensions"],
                ));
            }
        }
    }
    out
}

#[test]
fn the_namespace_is_the_codes_and_reaches_the_functions() {
    let t = template();
    let p = &t["Parameters"]["MetricsNamespace"];
    assert_eq!(p["Default"].as_str(), Some(DEFAULT_NAMESPACE));
    let env = &t["Globals"]["Function"]["Environment"]["Variables"]["MEDIA_METRICS_NAMESPACE"];
    assert!(is_metrics_namespace(env), "{env:?}");
}

#[test]
fn every_alarm_dimension_names_a_resource_of_the_template() {
    let t = template();
    let defined: BTreeSet<String> = resources(&t).into_iter().map(|(k, _)| k).collect();
    let metrics = alarm_metrics(&t);
    assert!(metrics.len() >= 4, "{metrics:?}");
    for (alarm, namespace, metric, dims) in metrics {
        let dims = dims
            .as_sequence()
            .unwrap_or_else(|| panic!("{alarm} {metric}: no dimensions (the whole account's)"));
        assert!(!dims.is_empty(), "{alarm} {metric}");
        let mut names = Vec::new();
        for d in dims {
            let target = named_resource(&d["Value"]).unwrap_or_else(|| {
                panic!("{alarm} {metric}: {:?} is not !Ref/!GetAtt", d["Value"])
            });
            assert!(
                defined.contains(&target),
                "{alarm} {metric}: no resource {target}"
            );
            names.push(d["Name"].as_str().unwrap().to_string());
        }
        if is_metrics_namespace(namespace) {
            let m = ours(&metric);
            for n in &names {
                assert!(
                    m.dimensions().contains(&n.as_str()),
                    "{alarm}: {metric} has no dimension {n}"
                );
            }
        }
    }
}

#[test]
fn every_function_and_dead_letter_queue_is_watched() {
    let t = template();
    let metrics = alarm_metrics(&t);
    let watched = |namespace: &str, metric: &str| -> BTreeSet<String> {
        metrics
            .iter()
            .filter(|(_, ns, m, _)| ns.as_str() == Some(namespace) && m == metric)
            .flat_map(|(_, _, _, dims)| dims.as_sequence().unwrap().iter())
            .filter_map(|d| named_resource(&d["Value"]))
            .collect()
    };
    let functions: BTreeSet<String> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    // Nine always, and the events function when the stack has an event bus (its alarms carry the
    // same condition).
    assert_eq!(functions.len(), 10);
    assert_eq!(
        t["Resources"]["EventsFunction"]["Condition"].as_str(),
        Some("HasEventBus")
    );
    assert_eq!(watched("AWS/Lambda", "Errors"), functions);
    assert_eq!(watched("AWS/Lambda", "Throttles"), functions);
    let queues: BTreeSet<String> = of_type(&t, "AWS::SQS::Queue")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        queues,
        [
            "CleanupDeadLetterQueue",
            "EventsDeadLetterQueue",
            "ThumbnailDeadLetterQueue"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        watched("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        queues
    );
    // The 5xx rate: 5xx over Count of the one HTTP API.
    let api: BTreeSet<String> = ["HttpApi".to_string()].into();
    assert_eq!(watched("AWS/ApiGateway", "5xx"), api);
    assert_eq!(watched("AWS/ApiGateway", "Count"), api);
}

#[test]
fn every_alarm_notifies_the_optional_topic() {
    let t = template();
    assert_eq!(
        t["Parameters"]["AlarmTopicArn"]["Default"].as_str(),
        Some("")
    );
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 5);
    for (name, alarm) in alarms {
        for key in ["AlarmActions", "OKActions"] {
            let actions = &alarm["Properties"][key];
            let branches = tagged(actions, "If")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{name} {key}: not !If [HasAlarmTopic, ...]"));
            assert_eq!(branches[0].as_str(), Some("HasAlarmTopic"), "{name}");
            let topic = branches[1].as_sequence().unwrap();
            assert_eq!(
                tagged(&topic[0], "Ref").and_then(Value::as_str),
                Some("AlarmTopicArn")
            );
            assert_eq!(
                tagged(&branches[2], "Ref").and_then(Value::as_str),
                Some("AWS::NoValue")
            );
        }
    }
}

/// The dashboard's body with every `${X}` of its `!Sub` checked to name a parameter, a resource or a
/// pseudo parameter, and replaced: the namespace parameter by `@NS@`, a resource by `@X@`.
fn dashboard_body(t: &Value) -> Json {
    let (_, dash) = of_type(t, "AWS::CloudWatch::Dashboard")
        .into_iter()
        .next()
        .expect("a dashboard");
    let body = tagged(&dash["Properties"]["DashboardBody"], "Sub")
        .and_then(Value::as_str)
        .expect("DashboardBody: !Sub text");
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("an unclosed ${") + i;
        let name = &rest[i + 2..end];
        let base = name.split('.').next().unwrap();
        if name == "MetricsNamespace" {
            out.push_str("@NS@");
        } else if name.starts_with("AWS::") || t["Parameters"].get(base).is_some() {
            out.push('x');
        } else {
            assert!(
                t["Resources"].get(base).is_some(),
                "the dashboard names no resource {name}"
            );
            out.push_str(&format!("@{base}@"));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}\n{out}"))
}

#[test]
fn the_dashboard_shows_the_metrics_the_code_writes() {
    let t = template();
    let body = dashboard_body(&t);
    let functions: BTreeSet<String> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(k, _)| format!("@{k}@"))
        .collect();
    let mut shown = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let line = line.as_array().unwrap();
            if let Some(expr) = line[0].get("expression").and_then(Json::as_str) {
                // SEARCH('{@NS@,FunctionName,ErrorCode} MetricName="RequestsRefused"', ...)
                if let Some(schema) = expr.strip_prefix("SEARCH('{@NS@,") {
                    let dims: Vec<&str> = schema[..schema.find('}').unwrap()].split(',').collect();
                    let name = expr
                        .split("MetricName=\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap();
                    let metric = ours(name);
                    assert_eq!(dims, metric.dimensions(), "{expr}");
                    shown.insert(metric);
                }
                continue;
            }
            let strings: Vec<&str> = line.iter().filter_map(Json::as_str).collect();
            if strings[0] != "@NS@" {
                continue;
            }
            let metric = ours(strings[1]);
            let dims: Vec<&str> = strings[2..].iter().step_by(2).copied().collect();
            assert_eq!(dims, metric.dimensions(), "{line:?}");
            assert!(
                functions.contains(strings[3]),
                "{line:?}: not a function of the template"
            );
            shown.insert(metric);
        }
    }
    // Every metric the code writes is on the dashboard.
    assert_eq!(shown, Metric::ALL.into_iter().collect::<BTreeSet<_>>());
}
