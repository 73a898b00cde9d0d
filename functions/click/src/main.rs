//! POST /api/v2/media/{id}/click/ on Lambda: AWS clients are built once per cold start, each request goes through the shared
//! handler (`media_shared::api::click`).

use media_shared::api::{click, routes::Endpoint};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // The handler by name: the bootstrap links this endpoint's code only (`lambda::serve`).
    media_shared::lambda::serve(Endpoint::Click, |app, req| async move {
        click::handle(&app, req).await
    })
    .await
}
