//! template.yaml serves the bucket through CloudFront: a distribution reading the private bucket with
//! Origin Access Control, HTTPS only, no compression; a bucket policy that lets only that distribution
//! read only the prefixes holding finished objects (the same list as `domain::keys`); and the functions'
//! `MEDIA_PUBLIC_BASE_URL` wired to the distribution's domain unless `PublicBaseUrl` is given, unset
//! (presigned URLs) only with `MediaUrls=presigned`. The conditions are evaluated for each choice of
//! parameters, so the test reads what the template does, not how it is spelled. (scripts/test.sh also
//! runs cfn-lint on the template.)

use media_shared::domain::keys::FINISHED_PREFIXES;
use serde_json::{json, Map, Value};
use serde_yaml_ng::value::TaggedValue;

/// The template as JSON, CloudFormation's short tags in their long form (`!Ref X` -> `{"Ref": "X"}`,
/// `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` -> `{"Fn::Sub": s}`, ...).
fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    long_form(yaml)
}

fn long_form(v: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Tagged(t) => {
            let TaggedValue { tag, value } = *t;
            let name = tag.to_string();
            let name = name.trim_start_matches('!');
            let value = long_form(value);
            match name {
                "Ref" | "Condition" => json!({ name: value }),
                "GetAtt" => {
                    let parts: Vec<Value> = match value {
                        Value::String(s) => {
                            let (res, att) = s.split_once('.').unwrap();
                            vec![json!(res), json!(att)]
                        }
                        Value::Array(a) => a,
                        other => panic!("!GetAtt {other}"),
                    };
                    json!({ "Fn::GetAtt": parts })
                }
                other => json!({ format!("Fn::{other}"): value }),
            }
        }
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), long_form(v)))
                .collect::<Map<_, _>>(),
        ),
        Y::Sequence(s) => Value::Array(s.into_iter().map(long_form).collect()),
        Y::String(s) => Value::String(s),
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap(),
        Y::Null => Value::Null,
    }
}

/// Resolves `Fn::If` / `Condition` / `Fn::Equals` / `Fn::Not` / `Fn::And` / `Fn::Or` and `Ref`s to
/// parameters (their defaults, overridden by `params`); leaves every other intrinsic as it is.
/// `Ref: AWS::NoValue` becomes `null`.
struct Eval<'a> {
    t: &'a Value,
    params: &'a [(&'a str, &'a str)],
}

impl Eval<'_> {
    fn param(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.params.iter().find(|(k, _)| *k == name) {
            return Some(json!(v));
        }
        let p = self.t["Parameters"].get(name)?;
        Some(match &p["Default"] {
            Value::Number(n) => json!(n.to_string()),
            other => other.clone(),
        })
    }

    fn condition(&self, name: &str) -> bool {
        let c = &self.t["Conditions"][name];
        assert!(!c.is_null(), "no condition {name}");
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> bool {
        match self.value(v) {
            Value::Bool(b) => b,
            other => panic!("not a condition: {other}"),
        }
    }

    fn value(&self, v: &Value) -> Value {
        let Value::Object(o) = v else {
            return match v {
                Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
                other => other.clone(),
            };
        };
        if o.len() == 1 {
            let (k, arg) = o.iter().next().unwrap();
            match k.as_str() {
                "Ref" if arg == "AWS::NoValue" => return Value::Null,
                "Ref" => {
                    if let Some(p) = self.param(arg.as_str().unwrap()) {
                        return p;
                    }
                }
                "Condition" => return json!(self.condition(arg.as_str().unwrap())),
                "Fn::If" => {
                    let a = arg.as_array().unwrap();
                    let branch = if self.condition(a[0].as_str().unwrap()) {
                        &a[1]
                    } else {
                        &a[2]
                    };
                    return self.value(branch);
                }
                "Fn::Equals" => {
                    let a = arg.as_array().unwrap();
                    return json!(self.value(&a[0]) == self.value(&a[1]));
                }
                "Fn::Not" => return json!(!self.truth(&arg[0])),
                "Fn::And" => {
                    return json!(arg.as_array().unwrap().iter().all(|c| self.truth(c)));
                }
                "Fn::Or" => {
                    return json!(arg.as_array().unwrap().iter().any(|c| self.truth(c)));
                }
                _ => {}
            }
        }
        Value::Object(o.iter().map(|(k, v)| (k.clone(), self.value(v))).collect())
    }

    /// Whether the resource exists with these parameters.
    fn exists(&self, resource: &str) -> bool {
        let r = &self.t["Resources"][resource];
        assert!(!r.is_null(), "no resource {resource}");
        r["Condition"].as_str().is_none_or(|c| self.condition(c))
    }
}

/// Parameter values, by name.
type Params<'a> = [(&'a str, &'a str)];

fn resource<'a>(t: &'a Value, name: &str, kind: &str) -> &'a Value {
    let r = &t["Resources"][name];
    assert_eq!(r["Type"], kind, "{name}");
    &r["Properties"]
}

#[test]
fn the_distribution_reads_the_private_bucket_with_origin_access_control_over_https_only() {
    let t = template();
    let bucket = resource(&t, "MediaBucket", "AWS::S3::Bucket");
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][setting], true,
            "{setting}"
        );
    }

    let oac = &resource(
        &t,
        "MediaOriginAccessControl",
        "AWS::CloudFront::OriginAccessControl",
    )["OriginAccessControlConfig"];
    assert_eq!(oac["OriginAccessControlOriginType"], "s3");
    assert_eq!(oac["SigningBehavior"], "always");
    assert_eq!(oac["SigningProtocol"], "sigv4");

    let d =
        &resource(&t, "MediaDistribution", "AWS::CloudFront::Distribution")["DistributionConfig"];
    assert_eq!(d["Enabled"], true);
    let origins = d["Origins"].as_array().unwrap();
    assert_eq!(origins.len(), 1, "the bucket is the only origin");
    let origin = &origins[0];
    assert_eq!(
        origin["DomainName"],
        json!({"Fn::GetAtt": ["MediaBucket", "RegionalDomainName"]})
    );
    assert_eq!(
        origin["OriginAccessControlId"],
        json!({"Fn::GetAtt": ["MediaOriginAccessControl", "Id"]})
    );
    // No legacy origin access identity next to the OAC, and no path that could widen what is read.
    assert_eq!(origin["S3OriginConfig"]["OriginAccessIdentity"], "");
    assert!(origin.get("OriginPath").is_none());

    assert!(
        d.get("CacheBehaviors").is_none(),
        "one behaviour for every path"
    );
    let b = &d["DefaultCacheBehavior"];
    assert_eq!(b["TargetOriginId"], origin["Id"]);
    assert_eq!(b["ViewerProtocolPolicy"], "https-only");
    assert_eq!(b["Compress"], false);
    // Read-only: OPTIONS only so that CloudFront answers CORS preflights (cors_template.rs).
    assert_eq!(b["AllowedMethods"], json!(["GET", "HEAD", "OPTIONS"]));
    assert_eq!(b["CachePolicyId"], json!({"Ref": "MediaCachePolicy"}));

    let p = &resource(&t, "MediaCachePolicy", "AWS::CloudFront::CachePolicy")["CachePolicyConfig"];
    let key = &p["ParametersInCacheKeyAndForwardedToOrigin"];
    assert_eq!(key["EnableAcceptEncodingGzip"], false);
    assert_eq!(key["EnableAcceptEncodingBrotli"], false);
    assert_eq!(key["HeadersConfig"]["HeaderBehavior"], "none");
    assert_eq!(key["CookiesConfig"]["CookieBehavior"], "none");
    assert_eq!(key["QueryStringsConfig"]["QueryStringBehavior"], "none");
    assert_eq!(p["MaxTTL"], json!({"Ref": "CdnMaxTtlSecs"}));
}

#[test]
fn only_that_distribution_may_read_and_only_finished_prefixes() {
    let t = template();
    let policy = resource(&t, "MediaBucketPolicy", "AWS::S3::BucketPolicy");
    assert_eq!(policy["Bucket"], json!({"Ref": "MediaBucket"}));
    let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
    let allows: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .collect();
    assert_eq!(allows.len(), 1, "one grant: {allows:?}");
    let grant = allows[0];
    assert_eq!(
        grant["Principal"],
        json!({"Service": "cloudfront.amazonaws.com"})
    );
    let actions = match &grant["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("Action {other}"),
    };
    assert_eq!(actions, vec!["s3:GetObject"]);

    let mut resources: Vec<Value> = grant["Resource"].as_array().unwrap().clone();
    let mut finished: Vec<Value> = FINISHED_PREFIXES
        .iter()
        .map(|p| json!({"Fn::Sub": format!("${{MediaBucket.Arn}}/{p}*")}))
        .collect();
    resources.sort_by_key(|v| v.to_string());
    finished.sort_by_key(|v| v.to_string());
    assert_eq!(
        resources, finished,
        "the readable prefixes are domain::keys::FINISHED_PREFIXES"
    );
    assert!(
        !FINISHED_PREFIXES.iter().any(|p| "staging/".starts_with(p)),
        "staged chunks are never readable"
    );

    // This stack's distribution, and no other CloudFront distribution of any account.
    assert_eq!(
        grant["Condition"],
        json!({"StringEquals": {"AWS:SourceArn": {"Fn::Sub":
            "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${MediaDistribution}"}}})
    );
}

#[test]
fn functions_get_the_distribution_domain_unless_a_base_url_is_given_and_presigned_only_when_asked()
{
    let t = template();
    let wiring = &t["Globals"]["Function"]["Environment"]["Variables"]["MEDIA_PUBLIC_BASE_URL"];
    assert!(!wiring.is_null());
    // No function sets its own: every function answers with the same URLs.
    let functions: Vec<(&String, &Value)> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect();
    assert!(functions.len() >= 9);
    for (name, f) in &functions {
        let own = &f["Properties"]["Environment"]["Variables"]["MEDIA_PUBLIC_BASE_URL"];
        assert!(own.is_null(), "{name} sets its own MEDIA_PUBLIC_BASE_URL");
    }

    let distribution_domain = json!({"Fn::Sub": "https://${MediaDistribution.DomainName}"});
    let cases: [(&Params, Value, bool); 4] = [
        // The defaults: the distribution, and its own domain.
        (&[], distribution_domain.clone(), true),
        (
            &[("PublicBaseUrl", "https://media.example.com")],
            json!("https://media.example.com"),
            true,
        ),
        (
            &[
                ("PublicBaseUrl", "https://media.example.com"),
                (
                    "PublicDomainCertificateArn",
                    "arn:aws:acm:us-east-1:1:certificate/x",
                ),
            ],
            json!("https://media.example.com"),
            true,
        ),
        // The explicit opt-in: no distribution, no base URL, so URLs are presigned.
        (&[("MediaUrls", "presigned")], Value::Null, false),
    ];
    for (params, want, distribution) in cases {
        let e = Eval { t: &t, params };
        assert_eq!(e.value(wiring), want, "{params:?}");
        for r in [
            "MediaDistribution",
            "MediaOriginAccessControl",
            "MediaCachePolicy",
            "MediaBucketPolicy",
        ] {
            assert_eq!(e.exists(r), distribution, "{r} with {params:?}");
        }
    }

    // With a certificate the base URL's domain becomes the distribution's alternate name.
    let params = [
        ("PublicBaseUrl", "https://media.example.com"),
        (
            "PublicDomainCertificateArn",
            "arn:aws:acm:us-east-1:1:certificate/x",
        ),
    ];
    let e = Eval {
        t: &t,
        params: &params,
    };
    let d = e.value(&t["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]);
    let alias = &d["Aliases"][0]["Fn::Select"];
    assert_eq!(alias[0], 2);
    assert_eq!(
        alias[1]["Fn::Split"],
        json!(["/", "https://media.example.com"])
    );
    assert_eq!(
        d["ViewerCertificate"]["AcmCertificateArn"],
        "arn:aws:acm:us-east-1:1:certificate/x"
    );
    assert_eq!(d["ViewerCertificate"]["SslSupportMethod"], "sni-only");
    let e = Eval { t: &t, params: &[] };
    let d = e.value(&t["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]);
    assert_eq!(d["Aliases"], Value::Null);
    assert_eq!(d["ViewerCertificate"]["CloudFrontDefaultCertificate"], true);
}
