//! The cleanup function: DynamoDB stream batches (sessions removed by TTL) and the scheduled sweep,
//! both handled by `media_shared::cleanup::handle_event`.

use lambda_http::{lambda_runtime, service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    media_shared::lambda::init_tracing();
    let app = media_shared::wiring::for_lambda(&media_shared::config::ProcessEnv)
        .await?
        .app;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        media_shared::cleanup::handle_event(app, &event.payload, time::OffsetDateTime::now_utc())
            .await
            .map_err(lambda_http::Error::from)
    }))
    .await
}
