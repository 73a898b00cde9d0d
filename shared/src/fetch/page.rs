//! The preview of a URL: its page fetched, read (`domain::preview`), and its oEmbed endpoint asked
//! for the embeddable HTML when the page points to one.

use crate::domain::preview::{self, LinkPreview, PageMeta};
use crate::domain::sniff::{sniff, ContentKind};
use crate::domain::{ApiError, Limits};

use super::{get, Policy};

/// oEmbed answers are small JSON documents; anything bigger is not one.
const MAX_OEMBED_BYTES: u64 = 256 * 1024;

const ACCEPT_HTML: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5";

/// Fetches `url` and builds its preview; fetch failures and refusals are field errors on `url`.
pub async fn link_preview(limits: &Limits, url: &str) -> Result<LinkPreview, ApiError> {
    let policy = Policy::new(&limits.fetch);
    let page = get(url, &policy, ACCEPT_HTML)
        .await
        .map_err(|e| e.on_field("url"))?;
    let meta = if is_html(page.content_type.as_deref(), &page.body) {
        Some(preview::parse_page(
            &String::from_utf8_lossy(&page.body),
            &page.url,
        ))
    } else if sniff(&page.body).is_some_and(|s| s.kind == ContentKind::Image) {
        // A link straight to an image previews as that image.
        Some(PageMeta {
            images: vec![page.url.to_string()],
            ..PageMeta::default()
        })
    } else {
        None
    };
    let oembed = match meta.as_ref().and_then(|m| m.oembed.as_deref()) {
        Some(endpoint) => {
            // The preview stands without the embed: a failing oEmbed endpoint is logged, not an error.
            match get(
                endpoint,
                &policy.clone().capped(MAX_OEMBED_BYTES),
                "application/json",
            )
            .await
            {
                Ok(answer) => preview::parse_oembed(&answer.body),
                Err(e) => {
                    tracing::info!(%endpoint, error = %e, "oEmbed endpoint failed; preview without embed");
                    None
                }
            }
        }
        None => None,
    };
    Ok(preview::link_preview(
        url.trim(),
        &page.url,
        meta.as_ref(),
        oembed.as_ref(),
    ))
}

/// HTML by its declared type, or by its first bytes when the server declared none.
fn is_html(content_type: Option<&str>, body: &[u8]) -> bool {
    match content_type {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            t.contains("html") || t.starts_with("text/plain") && looks_like_html(body)
        }
        None => looks_like_html(body),
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    body[start..].first() == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_by_type_or_by_content() {
        assert!(is_html(Some("text/html; charset=utf-8"), b""));
        assert!(is_html(Some("application/xhtml+xml"), b""));
        assert!(is_html(None, b"  \n<!doctype html>"));
        assert!(is_html(Some("text/plain"), b"<html>"));
        assert!(!is_html(Some("image/png"), b"<html>"));
        assert!(!is_html(None, b"%PDF-1.7"));
        assert!(!is_html(None, b""));
    }
}
