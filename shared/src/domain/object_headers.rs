//! The HTTP headers a stored object is served with, decided once for both backends: S3 keeps them as
//! the object's metadata (set by the request that creates the object, so the object never exists
//! without them) and returns them to CloudFront and presigned GETs; media-local keeps them next to the
//! file and its `/files/` route sends them.
//!
//! - `Content-Type`: the type sniffed from the bytes, never the client's claim.
//! - `Cache-Control: public, max-age=31536000, immutable`: every key is used for one content only
//!   (`keys`), so caches may keep an object for a year without asking again.
//! - `Content-Disposition` for documents: `attachment` with the original file name, so a PDF downloads
//!   as `report.pdf` and not as a random key, and a document is never rendered in the serving origin.
//!   Images are shown inline and get none.

use serde::{Deserialize, Serialize};

use super::sniff::{extension_for, ContentKind, Sniffed};

/// For objects whose key is never reused (every object this service stores, see `keys`).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The longest file name put in a header, in characters (file systems allow about 255 bytes).
const MAX_NAME_CHARS: usize = 150;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: String,
    pub cache_control: String,
    pub content_disposition: Option<String>,
}

impl ObjectHeaders {
    /// An object shown inline: images, thumbnails, preview images.
    pub fn inline(mime: &str) -> Self {
        ObjectHeaders {
            content_type: mime.to_string(),
            cache_control: IMMUTABLE.to_string(),
            content_disposition: None,
        }
    }

    /// The object of an uploaded file: documents download under their original name.
    pub fn for_upload(content: &Sniffed, original_name: Option<&str>) -> Self {
        let mut headers = Self::inline(&content.mime);
        if content.kind == ContentKind::Document {
            headers.content_disposition = Some(content_disposition(
                original_name,
                extension_for(&content.mime),
            ));
        }
        headers
    }
}

/// The one builder of `Content-Disposition`: `attachment`, with the original name made safe
/// (`download_name`) as an ASCII `filename` (RFC 6266) and, when that had to lose characters, the exact
/// name as `filename*=UTF-8''…` (RFC 5987), which every current browser prefers. Always plain ASCII
/// with no quote, backslash or control character inside the quoted part, so it is a valid header
/// value and cannot be split or extended by a hostile name.
pub fn content_disposition(original_name: Option<&str>, extension: &str) -> String {
    let Some(name) = original_name.and_then(|n| download_name(n, extension)) else {
        return "attachment".to_string();
    };
    // Outside the RFC 5987 form only printable ASCII survives; `%` too is replaced, since some
    // clients percent-decode the plain `filename` (RFC 6266, appendix D).
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%') => c,
            _ => '_',
        })
        .collect();
    if fallback == name {
        format!("attachment; filename=\"{name}\"")
    } else {
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            ext_value(&name)
        )
    }
}

/// The name a document is saved under: the client's file name without any path, control or invisible
/// formatting characters (a right-to-left override makes `report\u{202e}fdp.exe` look like
/// `reportexe.pdf`), quotes, or leading and trailing dots and spaces; at most `MAX_NAME_CHARS` long;
/// and ending with the extension of what the bytes really are, so `invoice.exe` holding a PDF saves as
/// `invoice.exe.pdf`. `None` when nothing usable is left.
pub fn download_name(raw: &str, extension: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = base
        .chars()
        .map(|c| match c {
            c if c.is_control() || is_invisible_format(c) => '_',
            '"' => '\'',
            c => c,
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let name = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if name.chars().all(|c| c == '_') {
        return None;
    }
    let suffix = format!(".{extension}");
    let known = extension != "bin";
    if known && !name.to_lowercase().ends_with(&suffix) {
        Some(format!("{name}{suffix}"))
    } else {
        Some(name.to_string())
    }
}

/// Unicode characters that change how a name is displayed without being seen: bidirectional
/// overrides and isolates, zero-width characters, line and paragraph separators, the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}')
}

/// RFC 5987 `value-chars`: `attr-char`s as they are, every other UTF-8 byte as `%XX`.
fn ext_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdf(name: Option<&str>) -> String {
        content_disposition(name, "pdf")
    }

    #[test]
    fn plain_names_are_quoted_as_they_are() {
        assert_eq!(
            pdf(Some("report.pdf")),
            r#"attachment; filename="report.pdf""#
        );
        assert_eq!(
            pdf(Some("Q3 report (final).PDF")),
            r#"attachment; filename="Q3 report (final).PDF""#
        );
        assert_eq!(pdf(None), "attachment");
    }

    #[test]
    fn non_ascii_names_get_an_ascii_fallback_and_the_exact_name_encoded() {
        assert_eq!(
            pdf(Some("Übersicht café.pdf")),
            "attachment; filename=\"_bersicht caf_.pdf\"; filename*=UTF-8''%C3%9Cbersicht%20caf%C3%A9.pdf"
        );
        assert_eq!(
            pdf(Some("報告.pdf")),
            "attachment; filename=\"__.pdf\"; filename*=UTF-8''%E5%A0%B1%E5%91%8A.pdf"
        );
        assert_eq!(
            pdf(Some("100% done.pdf")),
            "attachment; filename=\"100_ done.pdf\"; filename*=UTF-8''100%25%20done.pdf"
        );
    }

    #[test]
    fn hostile_names_are_neutralised() {
        let h = pdf(Some(
            "a\"; filename=\"evil.html\r\nSet-Cookie: x=1\\..\\..\\x\u{202e}fdp.exe",
        ));
        // One path component only (the last), no CR/LF, no quote but the delimiters, no override.
        assert_eq!(h, "attachment; filename=\"x_fdp.exe.pdf\"");
        let h = pdf(Some("evil\"\r\nSet-Cookie: a=b.pdf"));
        assert_eq!(
            h, "attachment; filename=\"evil'__Set-Cookie: a=b.pdf\"",
            "{h}"
        );
        assert!(h.bytes().all(|b| (b' '..=b'~').contains(&b)), "{h}");
        assert!(http::HeaderValue::from_str(&h).is_ok());
        // Nothing left: no file name at all rather than an empty one.
        assert_eq!(pdf(Some("../..")), "attachment");
        assert_eq!(pdf(Some("\u{202e}\r\n")), "attachment");
        assert_eq!(pdf(Some(" . ")), "attachment");
    }

    #[test]
    fn the_saved_name_ends_with_what_the_bytes_are() {
        assert_eq!(
            download_name("invoice.exe", "pdf").as_deref(),
            Some("invoice.exe.pdf")
        );
        assert_eq!(
            download_name("C:\\Users\\me\\scan.PDF", "pdf").as_deref(),
            Some("scan.PDF")
        );
        assert_eq!(
            download_name(".hidden.pdf", "pdf").as_deref(),
            Some("hidden.pdf")
        );
        assert_eq!(
            download_name("data.docx", "bin").as_deref(),
            Some("data.docx")
        );
        let long = "x".repeat(1000) + ".pdf";
        let name = download_name(&long, "pdf").unwrap();
        assert_eq!(name.chars().count(), MAX_NAME_CHARS + 4);
        assert!(name.ends_with(".pdf"));
    }

    #[test]
    fn every_header_value_is_valid_whatever_the_name() {
        for name in [
            "a\u{0}b",
            "\u{7f}\u{85}\u{2028}",
            "tab\tname.pdf",
            "emoji 📄.pdf",
            "\\\\server\\share\\x.pdf",
            "%22.pdf",
        ] {
            let h = pdf(Some(name));
            assert!(http::HeaderValue::from_str(&h).is_ok(), "{name:?}: {h}");
            let quoted = h.split('"').nth(1).unwrap_or("");
            assert!(!quoted.contains(['\\', '%']), "{name:?}: {h}");
        }
    }

    #[test]
    fn images_are_inline_and_documents_attachments() {
        let img = Sniffed {
            mime: "image/png".into(),
            kind: ContentKind::Image,
            width: None,
            height: None,
        };
        let h = ObjectHeaders::for_upload(&img, Some("photo.png"));
        assert_eq!(h.content_type, "image/png");
        assert_eq!(h.cache_control, IMMUTABLE);
        assert_eq!(h.content_disposition, None);
        let doc = Sniffed {
            mime: "application/pdf".into(),
            kind: ContentKind::Document,
            width: None,
            height: None,
        };
        let h = ObjectHeaders::for_upload(&doc, Some("r.pdf"));
        assert_eq!(h.content_type, "application/pdf");
        assert_eq!(
            h.content_disposition.as_deref(),
            Some(r#"attachment; filename="r.pdf""#)
        );
    }
}
