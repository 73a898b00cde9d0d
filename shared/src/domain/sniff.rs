//! What the bytes are, decided from the bytes alone: file names and part content types lie (resized
//! images arrive as `blob`), so the first chunk's magic bytes decide the MIME type and, for images,
//! the header gives the dimensions.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    Image,
    Document,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sniffed {
    pub mime: String,
    pub kind: ContentKind,
    /// Absent when the header that holds them lies beyond the bytes we had (found later at completion).
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Sniffed {
    /// The file extension used in object keys, so that stored objects are served with the right type.
    pub fn extension(&self) -> &'static str {
        extension_for(&self.mime)
    }
}

/// Identifies the content from its first bytes; `None` when the bytes match no known format.
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    let t = infer::get(head)?;
    let mime = t.mime_type().to_string();
    let kind = if t.matcher_type() == infer::MatcherType::Image {
        ContentKind::Image
    } else {
        ContentKind::Document
    };
    let (width, height) = match kind {
        ContentKind::Image => dimensions(head).map_or((None, None), |(w, h)| (Some(w), Some(h))),
        ContentKind::Document => (None, None),
    };
    Some(Sniffed {
        mime,
        kind,
        width,
        height,
    })
}

/// Width and height from an image header, if the bytes given contain it.
pub fn dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let size = imagesize::blob_size(head).ok()?;
    Some((
        u32::try_from(size.width).ok()?,
        u32::try_from(size.height).ok()?,
    ))
}

/// The MIME types we store and the extension of their keys, both ways.
const EXTENSIONS: [(&str, &str); 9] = [
    ("image/jpeg", "jpg"),
    ("image/png", "png"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/avif", "avif"),
    ("image/heif", "heif"),
    ("image/bmp", "bmp"),
    ("image/tiff", "tiff"),
    ("application/pdf", "pdf"),
];

pub fn extension_for(mime: &str) -> &'static str {
    EXTENSIONS
        .iter()
        .find(|(m, _)| *m == mime)
        .map_or("bin", |(_, ext)| ext)
}

/// The MIME type a key's extension stands for (objects stored without their headers).
pub fn mime_for_extension(extension: &str) -> &'static str {
    EXTENSIONS
        .iter()
        .find(|(_, e)| e.eq_ignore_ascii_case(extension))
        .map_or("application/octet-stream", |(m, _)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut v = vec![
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ];
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn png_header_gives_type_and_size() {
        let s = sniff(&png(1920, 1080)).unwrap();
        assert_eq!(
            s,
            Sniffed {
                mime: "image/png".into(),
                kind: ContentKind::Image,
                width: Some(1920),
                height: Some(1080)
            }
        );
        assert_eq!(s.extension(), "png");
    }

    #[test]
    fn gif_and_pdf() {
        let gif = b"GIF89a\x40\x01\xf0\x00\x00\x00\x00;";
        let s = sniff(gif).unwrap();
        assert_eq!(
            (s.mime.as_str(), s.width, s.height),
            ("image/gif", Some(320), Some(240))
        );
        let s = sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj").unwrap();
        assert_eq!(
            (s.mime.as_str(), s.kind),
            ("application/pdf", ContentKind::Document)
        );
    }

    #[test]
    fn unknown_bytes_are_not_identified() {
        assert!(sniff(b"hello, this is plain text").is_none());
        assert!(sniff(b"").is_none());
    }

    #[test]
    fn truncated_image_header_leaves_dimensions_open() {
        let s = sniff(&png(10, 10)[..14]);
        if let Some(s) = s {
            assert_eq!(s.width, None);
        }
    }
}
