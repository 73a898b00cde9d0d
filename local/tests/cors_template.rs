//! The CORS policy is written once in Rust (`media_shared::cors`) and copied where the world forces a
//! copy: template.yaml, where API Gateway and S3 apply it on AWS. This test keeps the copy in step: the
//! HTTP API's `CorsConfiguration` must be the API rule, the bucket's CORS rule the FILES rule, both with
//! the same max age and the origins of the one `CorsAllowedOrigins` parameter (same syntax as
//! `MEDIA_CORS_ORIGINS`). Change the policy in one place and this test names the other.

use std::collections::BTreeSet;

use media_shared::cors::{self, Origins, Rule};
use serde_yaml_ng::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A YAML list of strings as a lowercase set (HTTP names are case-insensitive; order is irrelevant).
fn names(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list: {v:?}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("{what}: {x:?}"))
                .to_ascii_lowercase()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_ascii_lowercase()).collect()
}

/// `!Ref CorsAllowedOrigins`, the one source of the origins on AWS.
fn assert_origins_parameter(v: &Value, what: &str) {
    let Value::Tagged(t) = v else {
        panic!("{what} must be !Ref CorsAllowedOrigins, not {v:?}");
    };
    assert_eq!(t.tag, "Ref", "{what}");
    assert_eq!(t.value.as_str(), Some("CorsAllowedOrigins"), "{what}");
}

fn assert_rule(what: &str, rule: &Rule, methods: &Value, headers: &Value, expose: Option<&Value>) {
    assert_eq!(
        names(methods, what),
        set(rule.methods),
        "{what}: methods differ from media_shared::cors"
    );
    assert_eq!(
        names(headers, what),
        set(rule.request_headers),
        "{what}: request headers differ from media_shared::cors"
    );
    let exposed = expose.map(|e| names(e, what)).unwrap_or_default();
    assert_eq!(
        exposed,
        set(rule.expose_headers),
        "{what}: exposed headers differ from media_shared::cors"
    );
}

#[test]
fn the_origins_come_from_one_parameter_in_the_local_syntax() {
    let t = template();
    let p = &t["Parameters"]["CorsAllowedOrigins"];
    assert_eq!(p["Type"].as_str(), Some("CommaDelimitedList"));
    // A default, if someone adds one, must be something the local server would accept too.
    if let Some(default) = p.get("Default") {
        let raw = default.as_str().expect("a string default");
        Origins::parse(raw).unwrap_or_else(|e| panic!("default {raw:?}: {e}"));
    }
}

#[test]
fn the_http_api_answers_preflights_with_the_api_rule() {
    let t = template();
    let c = &t["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    assert!(c.is_mapping(), "HttpApi has no CorsConfiguration");
    assert_origins_parameter(&c["AllowOrigins"], "HttpApi AllowOrigins");
    assert_rule(
        "HttpApi",
        &cors::API,
        &c["AllowMethods"],
        &c["AllowHeaders"],
        c.get("ExposeHeaders"),
    );
    assert_eq!(
        c["MaxAge"].as_u64(),
        Some(u64::from(cors::MAX_AGE_SECS)),
        "HttpApi MaxAge"
    );
    // Bearer tokens, no cookies: credentials mode stays off (and would forbid `*`).
    assert_ne!(
        c.get("AllowCredentials").and_then(Value::as_bool),
        Some(true)
    );
}

#[test]
fn no_route_takes_preflights_away_from_api_gateway() {
    // An OPTIONS or ANY route would receive preflights itself, behind the JWT authorizer (401).
    let t = template();
    let mut routes = 0;
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        let Some(events) = res["Properties"].get("Events").and_then(Value::as_mapping) else {
            continue;
        };
        for (event, e) in events {
            if e["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            routes += 1;
            let method = e["Properties"]["Method"]
                .as_str()
                .unwrap()
                .to_ascii_uppercase();
            assert!(
                method != "OPTIONS" && method != "ANY",
                "{name:?}/{event:?} routes {method}"
            );
            assert!(
                set(cors::API.methods).contains(&method.to_ascii_lowercase()),
                "{name:?}/{event:?}: {method} is not in the CORS API methods"
            );
        }
    }
    assert!(routes >= 7, "found only {routes} HttpApi routes");
}

#[test]
fn the_bucket_lets_pages_read_files_with_the_files_rule() {
    let t = template();
    let rules = t["Resources"]["MediaBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
        .as_sequence()
        .expect("MediaBucket has no CorsConfiguration.CorsRules");
    assert_eq!(rules.len(), 1, "one rule, the FILES rule");
    let r = &rules[0];
    assert_origins_parameter(&r["AllowedOrigins"], "MediaBucket AllowedOrigins");
    assert_rule(
        "MediaBucket",
        &cors::FILES,
        &r["AllowedMethods"],
        &r["AllowedHeaders"],
        r.get("ExposedHeaders"),
    );
    assert_eq!(
        r["MaxAge"].as_u64(),
        Some(u64::from(cors::MAX_AGE_SECS)),
        "MediaBucket MaxAge"
    );
}

#[test]
fn the_distribution_adds_the_files_rule_itself() {
    // Behind CloudFront the bucket's rule never applies (no Origin header reaches S3): the distribution's
    // response-headers policy must state the same FILES rule, and its behaviour must use it.
    let t = template();
    let policy = &t["Resources"]["MediaCorsPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
        ["CorsConfig"];
    assert!(policy.is_mapping(), "MediaCorsPolicy has no CorsConfig");
    assert_origins_parameter(
        &policy["AccessControlAllowOrigins"]["Items"],
        "MediaCorsPolicy origins",
    );
    // CloudFront lists OPTIONS among the methods it answers preflights for; the rule's methods are the rest.
    let mut methods = names(&policy["AccessControlAllowMethods"]["Items"], "methods");
    assert!(
        methods.remove("options"),
        "MediaCorsPolicy must allow OPTIONS"
    );
    assert_eq!(methods, set(cors::FILES.methods), "MediaCorsPolicy methods");
    assert_eq!(
        names(&policy["AccessControlAllowHeaders"]["Items"], "headers"),
        set(cors::FILES.request_headers),
        "MediaCorsPolicy request headers"
    );
    assert_eq!(
        names(&policy["AccessControlExposeHeaders"]["Items"], "exposed"),
        set(cors::FILES.expose_headers),
        "MediaCorsPolicy exposed headers"
    );
    assert_eq!(
        policy["AccessControlMaxAgeSec"].as_u64(),
        Some(u64::from(cors::MAX_AGE_SECS)),
        "MediaCorsPolicy max age"
    );
    assert_eq!(
        policy["AccessControlAllowCredentials"].as_bool(),
        Some(false)
    );
    let behaviour = &t["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]
        ["DefaultCacheBehavior"];
    let Value::Tagged(r) = &behaviour["ResponseHeadersPolicyId"] else {
        panic!("the distribution's behaviour has no ResponseHeadersPolicyId");
    };
    assert_eq!(r.tag, "Ref");
    assert_eq!(r.value.as_str(), Some("MediaCorsPolicy"));
    assert!(names(&behaviour["AllowedMethods"], "AllowedMethods").contains("options"));
}
