//! GET /api/v2/media/{id}/ on Lambda: AWS clients are built once per cold start, each request goes through the shared
//! handler (`media_shared::api::get`).

use media_shared::api::{get, routes::Endpoint};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // The handler by name: the bootstrap links this endpoint's code only (`lambda::serve`).
    media_shared::lambda::serve(Endpoint::Get, |app, req| async move {
        get::handle(&app, req).await
    })
    .await
}
