//! The built `get` binary, run the way Lambda runs it: it polls an emulated Lambda Runtime API (a
//! server in this test) for API Gateway v2 events and posts its answers back, reading the media from
//! S3 + DynamoDB served by moto, and writes its metrics to stdout as EMF. Run with
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test -p fn-get --test runtime -- --include-ignored
//! scripts/stop-moto.sh
//! ```
//!
//! Ignored without `--include-ignored`: it needs moto (see `media_testkit::moto`).

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use media_shared::api::routes::{dispatch, Endpoint};
use media_shared::{lambda, wiring};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const CREATE: &str = include_str!("../../../shared/tests/fixtures/apigw/create.json");
const GET: &str = include_str!("../../../shared/tests/fixtures/apigw/get.json");
const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:media-get";
/// Bounds every wait: the binary's start, each answer, the test's own requests.
const WAIT: Duration = Duration::from_secs(60);

/// What the function posted to the Runtime API.
#[derive(Debug)]
enum Posted {
    Response { request_id: String, body: String },
    Error { request_id: String, body: String },
    InitError { body: String },
}

/// The Runtime API's side: events still to hand out (each with its request id) and the channel the
/// function's answers go to. Once the events are used up, `next` waits forever, as on Lambda.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, String)>>>,
    posted: mpsc::UnboundedSender<Posted>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let event = api.events.lock().unwrap().pop_front();
    let Some((request_id, event)) = event else {
        std::future::pending::<()>().await;
        unreachable!("pending never resolves");
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(30);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        FUNCTION_ARN.parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-673f0a40-5e1d2c3b4a5968776f8e9d0c;Parent=9a9197af755a6419;Sampled=0"
            .parse()
            .unwrap(),
    );
    (StatusCode::OK, headers, event)
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = api.posted.send(Posted::Response { request_id, body });
    StatusCode::ACCEPTED
}

async fn error(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = api.posted.send(Posted::Error { request_id, body });
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<RuntimeApi>, body: String) -> StatusCode {
    let _ = api.posted.send(Posted::InitError { body });
    StatusCode::ACCEPTED
}

/// The Runtime API on a loopback port: its address, and the function's answers as they come.
async fn runtime_api(
    events: Vec<(String, String)>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Posted>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(events.into())),
        posted: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

/// The function process; killed when the test ends, however it ends.
struct Function(Child);

impl Function {
    /// Kills the process and returns what it wrote, for failure messages.
    fn stop(&mut self) -> String {
        use std::io::Read;
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut out = String::new();
        if let Some(mut s) = self.0.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.0.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next thing the function posts, failing if it exits or stays silent.
async fn answer(rx: &mut mpsc::UnboundedReceiver<Posted>, function: &mut Function) -> Posted {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(posted)) => return posted,
            Ok(None) => panic!("the Runtime API stopped"),
            Err(_) => {}
        }
        if let Some(status) = function.0.try_wait().unwrap() {
            panic!(
                "the function exited ({status}) without answering:\n{}",
                function.stop()
            );
        }
        if started.elapsed() > WAIT {
            panic!(
                "no answer from the function within {WAIT:?}:\n{}",
                function.stop()
            );
        }
    }
}

/// The get fixture for another media id.
fn get_event(id: u64) -> Value {
    let mut e: Value = serde_json::from_str(GET).unwrap();
    for field in ["/rawPath", "/requestContext/http/path"] {
        let path = e.pointer_mut(field).unwrap();
        *path = json!(path.as_str().unwrap().replace("/17/", &format!("/{id}/")));
    }
    e["pathParameters"]["id"] = json!(id.to_string());
    e
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
#[ignore = "needs moto (S3 + DynamoDB on loopback); scripts/test.sh runs it"]
async fn the_built_get_function_answers_api_gateway_events_through_the_runtime_api() {
    media_testkit::moto::require("the runtime test");

    // A fresh bucket + table holding one media, created through the create endpoint's handler.
    let bucket = unique("media-rt");
    let table = unique("media-rt");
    let env = [
        ("MEDIA_BUCKET", bucket.as_str()),
        ("MEDIA_TABLE", table.as_str()),
        ("MEDIA_S3_FORCE_PATH_STYLE", "1"),
        ("MEDIA_CREATE_RESOURCES", "1"),
    ];
    let app = tokio::time::timeout(WAIT, wiring::for_lambda(&env))
        .await
        .expect("moto answers")
        .expect("the AWS app")
        .app;
    let create = lambda_http::request::from_str(CREATE).expect("the create fixture");
    let created = tokio::time::timeout(
        WAIT,
        dispatch(
            Endpoint::Create,
            &app,
            lambda::into_api_request(create, &lambda::CallerRule::new(None, Endpoint::Create))
                .await,
        ),
    )
    .await
    .expect("create answers");
    assert_eq!(created.status(), 201, "{:?}", created.body());
    let media: Value = serde_json::from_slice(created.body()).unwrap();
    let id = media["id"].as_u64().expect("an integer id");
    assert_eq!(media["type"], "embed");

    // Three invocations for one cold start: the media, an unknown one, one without authorizer.
    let mut anonymous = get_event(id);
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let events = [
        ("0f5d7a8c-1b2e-4c3d-9e8f-7a6b5c4d3e21", get_event(id)),
        ("5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716", get_event(id + 1000)),
        ("a1b2c3d4-e5f6-4789-8abc-def012345678", anonymous),
    ];
    let (addr, mut posted) = runtime_api(
        events
            .iter()
            .map(|(rid, e)| (rid.to_string(), e.to_string()))
            .collect(),
    )
    .await;

    let child = Command::new(env!("CARGO_BIN_EXE_get"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "media-get")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/media-get")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/21/[$LATEST]0123456789abcdef0123456789abcdef",
        )
        .env("MEDIA_BUCKET", &bucket)
        .env("MEDIA_TABLE", &table)
        .env("MEDIA_S3_FORCE_PATH_STYLE", "1")
        .env("RUST_LOG", "info")
        .env_remove("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the get binary starts");
    let mut function = Function(child);

    let expected = [
        (200, media.clone()),
        (
            404,
            json!({"errors": [{"code": "not_found", "message": "media not found"}]}),
        ),
        // No authorizer ran and the function has no key of its own: the token is not trusted.
        (
            401,
            json!({"errors": [{"code": "not_authenticated", "message": "the token cannot be verified: no authorizer checked it and neither MEDIA_JWT_SECRET nor MEDIA_JWT_JWKS_URL is set"}]}),
        ),
    ];
    for ((want_id, _), (status, body)) in events.iter().zip(expected) {
        let (request_id, response) = match answer(&mut posted, &mut function).await {
            Posted::Response { request_id, body } => (request_id, body),
            Posted::Error { request_id, body } => panic!(
                "the function reported an error for {request_id}: {body}\n{}",
                function.stop()
            ),
            Posted::InitError { body } => {
                panic!("the function failed to start: {body}\n{}", function.stop())
            }
        };
        assert_eq!(request_id, *want_id);
        // The API Gateway v2 (payload 2.0) response format.
        let response: Value = serde_json::from_str(&response)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {response}"));
        assert_eq!(response["statusCode"], status, "{response:#}");
        assert_eq!(response["isBase64Encoded"], false, "{response:#}");
        assert_eq!(
            response["headers"]["content-type"], "application/json",
            "{response:#}"
        );
        let text = response["body"].as_str().expect("a text body");
        let got: Value = serde_json::from_str(text).expect("a JSON body");
        assert_eq!(got, body, "{response:#}");
    }

    // The process is still alive, waiting for the next event; nothing else was posted.
    assert!(
        function.0.try_wait().unwrap().is_none(),
        "{}",
        function.stop()
    );
    assert!(posted.try_recv().is_err());

    // Its metrics went to stdout as EMF, one document for each invocation that counted something
    // (the two refusals; a good read counts nothing), in the default namespace, by function name.
    let output = function.stop();
    let docs = media_testkit::emf::documents(&output, media_shared::metrics::DEFAULT_NAMESPACE);
    assert_eq!(docs.len(), 2, "{output}");
    let totals = media_testkit::emf::Totals::of(&docs);
    assert_eq!(totals.refused("media-get", "not_found"), 1.0, "{output}");
    assert_eq!(
        totals.refused("media-get", "not_authenticated"),
        1.0,
        "{output}"
    );
    assert!(totals.values.is_empty(), "{totals:?}");
}
