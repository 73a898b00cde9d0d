//! The thumbnail function: DynamoDB stream batches of inserted image media, each given its thumbnail
//! by `media_shared::thumbnailer::handle_stream_event` (the request that completed the upload never
//! waits for it).

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    media_shared::lambda::init_tracing();
    let app = media_shared::wiring::lambda_app(&media_shared::config::ProcessEnv).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let answer = media_shared::thumbnailer::handle_stream_event(app, &event.payload).await;
        app.metrics.flush();
        Ok::<_, Error>(answer)
    }))
    .await
}
