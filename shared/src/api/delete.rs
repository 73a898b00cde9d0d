//! DELETE /api/v2/media/{id}/: creator only; removes the stored bytes, then the record, so that a
//! failure half-way leaves a media a retried DELETE can still remove. Then the platform is told
//! (`Media Deleted`, through the request path's sink: media-local's webhook queue; on AWS the
//! events function publishes it from the table's stream).

use super::{creators_media, response, Request, Response};
use crate::app::App;
use crate::domain::events::PlatformEvent;
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
    // The Media as it was, for the platform; the URLs are derived from the keys, not the objects.
    match app.media_json(&media).await {
        Ok(json) => {
            app.announce(PlatformEvent::media_deleted(&media.owner, json))
                .await
        }
        Err(e) => tracing::warn!(media_id = media.id, error = %e, "no event for a deleted media"),
    }
    Ok(response::no_content())
}
