//! POST /api/v2/media/{id}/click/: records who clicked (or anonymous), from which address, when.

use serde_json::Value;
use time::OffsetDateTime;

use super::auth::{optional_user, ClientIp};
use super::form::json_object;
use super::{media_id_from_path, response, Request, Response};
use crate::app::App;
use crate::domain::{ApiError, Click};

pub async fn handle(app: &App, req: Request) -> Response {
    response::from_result(click(app, req).await)
}

async fn click(app: &App, req: Request) -> Result<Response, ApiError> {
    let user = optional_user(&req)?;
    let media = app
        .media_or_404(media_id_from_path(req.uri().path())?)
        .await?;
    let body = json_object(req.body())?;
    let ip = match body.get("ip") {
        None | Some(Value::Null) => req
            .extensions()
            .get::<ClientIp>()
            .map(|ip| ip.0.to_string()),
        Some(Value::String(s)) => {
            let ip: std::net::IpAddr = s
                .trim()
                .parse()
                .map_err(|_| ApiError::field("ip", "must be an IPv4 or IPv6 address"))?;
            Some(ip.to_string())
        }
        Some(_) => return Err(ApiError::field("ip", "must be an IPv4 or IPv6 address")),
    };
    app.media
        .record_click(&Click {
            media_id: media.id,
            user,
            ip,
            at: OffsetDateTime::now_utc(),
        })
        .await?;
    Ok(response::no_content())
}
