//! DELETE /api/v2/media/{id}/ on Lambda: AWS clients are built once per cold start, each request goes through the shared
//! handler (`media_shared::api::delete`).

use media_shared::api::{delete, routes::Endpoint};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // The handler by name: the bootstrap links this endpoint's code only (`lambda::serve`).
    media_shared::lambda::serve(Endpoint::Delete, |app, req| async move {
        delete::handle(&app, req).await
    })
    .await
}
