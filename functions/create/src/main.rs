//! POST /api/v2/media/ on Lambda: AWS clients are built once per cold start, each request goes through the shared
//! handler (`media_shared::api::create`).

use media_shared::api::{create, routes::Endpoint};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // The handler by name: the bootstrap links this endpoint's code only (`lambda::serve`).
    media_shared::lambda::serve(Endpoint::Create, |app, req| async move {
        create::handle(&app, req).await
    })
    .await
}
