//! DELETE /api/v2/media/{id}/: creator only; removes the stored bytes, then the record, so that a
//! failure half-way leaves a media a retried DELETE can still remove.

use super::{creators_media, response, Request, Response};
use crate::app::App;
use crate::domain::ApiError;

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(delete(app, req).await)
}

async fn delete(app: &App, req: Request) -> Result<Response, ApiError> {
    let media = creators_media(app, &req).await?;
    for key in media.stored_keys() {
        app.blobs.delete_object(key).await?;
    }
    app.media.delete_media(media.id).await?;
    Ok(response::no_content())
}
