//! POST /api/v2/media/upload/chunk/ on Lambda: AWS clients are built once per cold start, each request goes through the shared
//! handler (`media_shared::api::chunk`).

use media_shared::api::{chunk, routes::Endpoint};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // The handler by name: the bootstrap links this endpoint's code only (`lambda::serve`).
    media_shared::lambda::serve(Endpoint::Chunk, |app, req| async move {
        chunk::handle(&app, req).await
    })
    .await
}
