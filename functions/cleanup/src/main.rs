//! The cleanup function: DynamoDB stream batches (sessions removed by TTL) and the scheduled sweep,
//! both handled by `media_shared::cleanup::handle_event`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use media_shared::cleanup::{self, CleanupEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    media_shared::lambda::init_tracing();
    let mut app = media_shared::wiring::lambda_app(&media_shared::config::ProcessEnv).await?;
    // Expired uploads are told to the platform (`Upload Expired`) on MEDIA_EVENT_BUS, if set.
    app.events = media_shared::wiring::event_bus(&media_shared::config::ProcessEnv).await;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CleanupEvent>| async move {
            let now = time::OffsetDateTime::now_utc();
            let answer = cleanup::handle_event(app, &event.payload, now).await;
            app.metrics.flush();
            answer.map_err(Error::from)
        },
    ))
    .await
}
