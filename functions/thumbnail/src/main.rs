//! The thumbnail function: DynamoDB stream batches of inserted image media, each given its thumbnail
//! by `media_shared::thumbnails::handle_stream_event` (the request that completed the upload never
//! waits for it).

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
        Ok::<Value, lambda_http::Error>(
            media_shared::thumbnails::handle_stream_event(app, &event.payload).await,
        )
    }))
    .await
}
