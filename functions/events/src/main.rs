//! The events function: the table's stream of media inserts and removals, published as `Media
//! Created` / `Media Deleted` on the bus `MEDIA_EVENT_BUS` names, by
//! `media_shared::media_events::handle_stream_event`.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use media_shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    media_shared::lambda::init_tracing();
    let mut app = media_shared::wiring::lambda_app(&ProcessEnv).await?;
    app.events = media_shared::wiring::event_bus(&ProcessEnv).await;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(media_shared::media_events::handle_stream_event(app, &event.payload).await)
    }))
    .await
}
