//! docs/openapi.yaml against the implementation: every documented operation is routed, every other
//! method on a documented path is 405, and real responses carry exactly the documented properties.
//! (scripts/test.sh also fuzzes the server with schemathesis against the same document.)

mod common;
use common::*;
use serde_json::Value;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn every_documented_operation_is_served_and_no_other() {
    let s = TestServer::start().await;
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 5);
    let undocumented_too = !skip_on_lambda(
        "undocumented methods are answered by API Gateway (404), not by a function",
    );
    for (path, item) in paths {
        let concrete = path.replace("{id}", "1");
        for method in METHODS {
            let documented = item.get(method).is_some();
            if !documented && !undocumented_too {
                continue;
            }
            let r = s
                .client
                .request(method.to_uppercase().parse().unwrap(), s.url(&concrete))
                .header("authorization", s.auth("alice"));
            let (status, body) = json_of(r.send().await.unwrap()).await;
            if documented {
                assert_ne!(status, 405, "{method} {path} is documented but not allowed");
                let not_routed = status == 404 && body["errors"][0]["message"] == "route not found";
                assert!(!not_routed, "{method} {path} is documented but not routed");
                let statuses = item[method]["responses"].as_object().unwrap();
                assert!(
                    statuses.contains_key(&status.to_string()),
                    "{method} {path} answered {status}, not documented: {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is not documented but answered {status}"
                );
            }
        }
    }
}

fn documented_properties(doc: &Value, schema: &str) -> (Vec<String>, Vec<String>) {
    let s = &doc["components"]["schemas"][schema];
    let mut props: Vec<String> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut required: Vec<String> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    props.sort();
    required.sort();
    (props, required)
}

#[tokio::test]
async fn real_responses_have_the_documented_properties() {
    let s = TestServer::start().await;
    let doc = document();
    let image = png(20, 10, 1);
    let (st, chunk) = s.chunk("alice", None, None, image.clone()).await;
    assert_eq!(st, 201);
    let (props, _) = documented_properties(&doc, "ChunkMedia");
    let mut keys: Vec<String> = chunk.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, props);

    let (_, media) = s
        .complete(
            "alice",
            chunk["upload_id"].as_str().unwrap(),
            &md5_hex(&image),
            None,
        )
        .await;
    let (props, required) = documented_properties(&doc, "Media");
    let mut keys: Vec<String> = media.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys, props,
        "the Media object has exactly the documented properties"
    );
    assert!(required.iter().all(|r| keys.contains(r)));
    let types = doc["components"]["schemas"]["Media"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap();
    assert!(types.contains(&media["type"]));
}
