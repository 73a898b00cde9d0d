//! What a stored photo may carry besides its pixels: the container-level rules that take personal
//! metadata out of JPEG, PNG and WebP files (issue 14: phones write the GPS position into EXIF).
//!
//! The rewrite is lossless: segments and chunks are dropped or kept whole, nothing is decoded or
//! re-encoded, so the pixels a decoder produces are the same before and after. Kept, per format:
//! what decoding needs (JPEG tables and scans, PNG critical chunks, WebP bitstreams and animation
//! frames), what changes how the pixels look (ICC colour profiles, gamma, chromaticities, transparency,
//! Adobe's colour-transform marker): a profile describes the camera or editor's colour space, not the
//! person, and dropping it would change the colours shown. Dropped: EXIF (GPS, camera serial numbers,
//! dates, the embedded thumbnail, which may show the picture before it was cropped), XMP, IPTC and
//! Photoshop blocks, comments, PNG text and time chunks, unknown chunks, and anything after the end
//! of the image (Motion Photo videos and MPF secondary images are appended there, with their own
//! metadata).
//!
//! **Orientation is kept, not applied**: the only EXIF a stripped file carries is a minimal block with
//! the Orientation tag alone (when the photo had one other than 1, "as stored"). Applying it would
//! mean re-encoding (JPEG's lossless transforms only work on whole MCUs), so the pixels would change;
//! keeping it costs 26 bytes and browsers honour it (`image-orientation: from-image` is the default).
//! The Media's `image_width`/`image_height` therefore stay those of the stored pixel grid, as before.
//!
//! Hostile input never panics and never leaks: every length is checked against the bytes there are,
//! and where a file's structure breaks off (a segment running past the end, a chunk shorter than its
//! header says) the rest is dropped, because what follows cannot be told apart from metadata. Only the
//! compressed image data of a truncated file is kept as it is (a partly received image still shows
//! partly). The rewrite is idempotent: stripping a stripped file changes nothing, which is what makes a
//! retried completion write the same bytes.

mod jpeg;
mod orientation;
mod png;
mod webp;

/// Whether finished uploads are rewritten without their metadata (`MEDIA_STRIP_METADATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataPolicy {
    /// JPEG, PNG and WebP lose everything but what their pixels need (the default).
    Strip,
    /// Stored byte for byte as uploaded.
    Keep,
}

/// Whether files of this (sniffed) type are rewritten under `MetadataPolicy::Strip`. GIF carries no
/// camera metadata and is stored as uploaded.
pub fn applies(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/webp")
}

/// The file without its metadata, or `None` when there is nothing to take out (or the type is not one
/// of ours, see `applies`). The result is never longer than `data` by more than one minimal EXIF
/// block, and stripping it again gives `None`.
pub fn strip(mime: &str, data: &[u8]) -> Option<Vec<u8>> {
    let out = match mime {
        "image/jpeg" => jpeg::strip(data)?,
        "image/png" => png::strip(data)?,
        "image/webp" => webp::strip(data)?,
        _ => return None,
    };
    (out != data).then_some(out)
}

/// `strip` when `policy` says so and the type is one of ours.
pub fn apply(policy: MetadataPolicy, mime: &str, data: &[u8]) -> Option<Vec<u8>> {
    match policy {
        MetadataPolicy::Strip => strip(mime, data),
        MetadataPolicy::Keep => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jpeg_png_and_webp_are_rewritten() {
        assert!(applies("image/jpeg") && applies("image/png") && applies("image/webp"));
        assert!(!applies("image/gif") && !applies("application/pdf"));
        assert_eq!(strip("image/gif", b"GIF89a\x01\x00\x01\x00"), None);
        assert_eq!(strip("application/pdf", b"%PDF-1.4 Exif"), None);
        // Not what the type says (the sniffer would not have said so): left alone.
        assert_eq!(strip("image/jpeg", b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(strip("image/png", b"\xff\xd8\xff\xe1"), None);
        assert_eq!(strip("image/webp", b"RIFF"), None);
    }

    #[test]
    fn keep_never_rewrites() {
        let jpeg = b"\xff\xd8\xff\xfe\x00\x05abc\xff\xd9";
        assert!(apply(MetadataPolicy::Strip, "image/jpeg", jpeg).is_some());
        assert_eq!(apply(MetadataPolicy::Keep, "image/jpeg", jpeg), None);
    }
}
