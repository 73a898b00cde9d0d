//! GET /api/v2/media/{id}/

use super::auth::require_user;
use super::{media_id_from_path, response, Request, Response};
use crate::app::App;
use crate::domain::ApiError;

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(get(app, req).await)
}

async fn get(app: &App, req: Request) -> Result<Response, ApiError> {
    require_user(&req)?;
    let media = app
        .media_or_404(media_id_from_path(req.uri().path())?)
        .await?;
    Ok(response::json(200, &app.media_json(&media).await?))
}
