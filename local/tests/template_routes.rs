//! The routes the world sees in two places must agree: template.yaml's HttpApi events (what API
//! Gateway routes to which function on AWS) and the workspace router of `cargo lambda watch` in
//! Cargo.toml (the same functions on a laptop). Also checked against the template: which routes have
//! the JWT authorizer, which is what the functions' caller rule (`media_shared::lambda`) assumes.

use std::collections::{BTreeMap, BTreeSet};

use media_shared::api::routes::Endpoint;
use media_shared::lambda::behind_authorizer;
use serde_yaml_ng::Value;

/// (method, path, function binary)
type Route = (String, String, String);

fn read(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every HttpApi event of template.yaml, with whether its route runs the authorizer.
fn template_routes() -> BTreeMap<Route, bool> {
    let template: Value = serde_yaml_ng::from_str(&read("template.yaml")).unwrap();
    let default_authorizer = template["Resources"]["HttpApi"]["Properties"]["Auth"]
        ["DefaultAuthorizer"]
        .as_str()
        .expect("the HttpApi has a default authorizer");
    let mut routes = BTreeMap::new();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} names no Binary"));
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (event_name, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            let method = props["Method"].as_str().unwrap().to_uppercase();
            let path = props["Path"].as_str().unwrap().to_string();
            let authorizer = props["Auth"]["Authorizer"]
                .as_str()
                .unwrap_or(default_authorizer);
            let route = (method, path, binary.to_string());
            let authorized = authorizer != "NONE";
            assert!(
                routes.insert(route.clone(), authorized).is_none(),
                "{event_name:?}: {route:?} twice in the template"
            );
        }
    }
    routes
}

/// `[workspace.metadata.lambda.watch.router]` of the workspace's Cargo.toml, one entry per method.
fn watch_routes() -> BTreeSet<Route> {
    let manifest: toml_edit::DocumentMut = read("Cargo.toml").parse().unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("Cargo.toml has [workspace.metadata.lambda.watch.router]");
    let mut routes = BTreeSet::new();
    for (path, item) in router.iter() {
        // A plain string would send every method to one function, which API Gateway never does here.
        let entries = item
            .as_array()
            .unwrap_or_else(|| panic!("{path}: give a list of {{ method, function }}"));
        for entry in entries.iter() {
            let entry = entry.as_inline_table().expect("{ method, function }");
            let field = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_else(|| panic!("{path}: an entry without {k}"))
                    .to_string()
            };
            let route = (field("method"), path.to_string(), field("function"));
            assert!(
                routes.insert(route.clone()),
                "{route:?} twice in the router"
            );
        }
    }
    routes
}

/// The `[[bin]]` names of the function packages: what `cargo lambda watch` can start.
fn function_binaries() -> BTreeSet<String> {
    let dir = format!("{}/../functions", env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let manifest: toml_edit::DocumentMut =
            std::fs::read_to_string(entry.unwrap().path().join("Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        for bin in manifest["bin"].as_array_of_tables().unwrap().iter() {
            names.insert(bin["name"].as_str().unwrap().to_string());
        }
    }
    names
}

#[test]
fn the_watch_router_serves_exactly_the_templates_routes() {
    let template: BTreeSet<Route> = template_routes().into_keys().collect();
    let watch = watch_routes();
    assert_eq!(template.len(), 16, "{template:#?}");
    let missing: Vec<_> = template.difference(&watch).collect();
    let extra: Vec<_> = watch.difference(&template).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the watch router in Cargo.toml and template.yaml disagree\n\
         in the template, not the router: {missing:#?}\nin the router, not the template: {extra:#?}"
    );
    let binaries = function_binaries();
    for (_, _, function) in &watch {
        assert!(
            binaries.contains(function),
            "{function} is no binary in functions/"
        );
    }
    // Every route is there with and without its trailing slash, as clients send both.
    for (method, path, function) in &template {
        let other = match path.strip_suffix('/') {
            Some(bare) => bare.to_string(),
            None => format!("{path}/"),
        };
        assert!(
            template.contains(&(method.clone(), other.clone(), function.clone())),
            "{method} {path} without {other}"
        );
    }
}

#[test]
fn the_functions_know_which_routes_have_the_authorizer() {
    let endpoint = |binary: &str| match binary {
        "chunk" => Endpoint::Chunk,
        "complete" => Endpoint::Complete,
        "create" => Endpoint::Create,
        "get" => Endpoint::Get,
        "update" => Endpoint::Update,
        "delete" => Endpoint::Delete,
        "click" => Endpoint::Click,
        other => panic!("{other}: no endpoint"),
    };
    let routes = template_routes();
    assert!(routes.values().any(|a| *a) && routes.values().any(|a| !*a));
    for ((method, path, binary), authorized) in routes {
        assert_eq!(
            behind_authorizer(endpoint(&binary)),
            authorized,
            "{method} {path} ({binary}): the template and media_shared::lambda::behind_authorizer disagree"
        );
    }
}
