//! Size and content rules, with the defaults of API.md. Parsed from the environment in `config`.

use super::error::ApiError;
use super::image_metadata::MetadataPolicy;
use super::sniff::{ContentKind, Sniffed};

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_chunk_bytes: u64,
    pub max_image_bytes: u64,
    pub max_doc_bytes: u64,
    /// MIME types accepted, as detected from the bytes.
    pub allowed_mime: Vec<String>,
    pub upload_ttl_secs: u64,
    /// How long a chunk write may hold an upload before another request may take over (crash recovery).
    pub lease_secs: u64,
    /// Fetching pages and images from URLs (url media, images from URLs, preview images).
    pub fetch: FetchLimits,
    /// Where image thumbnails are made.
    pub thumbnails: ThumbnailMode,
    /// Memory the whole process may hold for decoding images at once (thumbnails); an image whose
    /// decoding needs more gets no thumbnail.
    pub decode_budget_bytes: u64,
    /// What one user may hold in unfinished uploads.
    pub user_quota: UserQuota,
    /// Whether uploaded photos lose their metadata (GPS positions) before they are stored.
    pub metadata: MetadataPolicy,
}

/// Per-user limits on unfinished uploads: how many, and the sum of their declared sizes. An upload
/// counts from its first chunk until it completes (its MD5 matched), fails, or expires and is swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserQuota {
    pub max_open: u64,
    pub max_bytes: u64,
}

impl Default for UserQuota {
    fn default() -> Self {
        // Room for a post's worth of photos being uploaded at once, or ten documents of the
        // largest size; far below what fills a disk (issue 11: 2,000 uploads in 5 s).
        UserQuota {
            max_open: 20,
            max_bytes: 512 * MIB,
        }
    }
}

/// What the server-side fetcher may do. Everything else it refuses: it must never become a proxy
/// into the network it runs in.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchLimits {
    /// Server-side fetching at all. Off, url media and images from URLs are refused with a 400
    /// before any name is resolved (operators who want no outbound traffic; the API fuzz run).
    pub enabled: bool,
    /// Private and loopback addresses become reachable (tests on loopback only). Link-local (cloud
    /// metadata), multicast and unspecified addresses stay refused whatever this says.
    pub allow_private: bool,
    /// Largest body read from any URL (images are further capped by `max_image_bytes`).
    pub max_bytes: u64,
    /// The whole fetch, redirects included, must finish within this.
    pub timeout_secs: u64,
    /// Redirects followed, each hop checked again like the first.
    pub max_redirects: u32,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            enabled: true,
            allow_private: false,
            max_bytes: 5 * MIB,
            timeout_secs: 10,
            max_redirects: 5,
        }
    }
}

/// `Inline`: the request that creates an image media makes its thumbnail (the local server).
/// `Deferred`: something else does it afterwards (on AWS the thumbnail function, from the table's
/// stream), so completing an upload never waits for image decoding. `Off`: no thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbnailMode {
    Inline,
    Deferred,
    Off,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_bytes: 4 * MIB,
            max_image_bytes: 5 * MIB,
            max_doc_bytes: 50 * MIB,
            allowed_mime: [
                "image/jpeg",
                "image/png",
                "image/gif",
                "image/webp",
                "application/pdf",
            ]
            .map(String::from)
            .to_vec(),
            upload_ttl_secs: 24 * 3600,
            lease_secs: 45,
            fetch: FetchLimits::default(),
            thumbnails: ThumbnailMode::Inline,
            // Fits the thumbnail function (1024 MB on Lambda) with room for the runtime, the file
            // and the SDK; enough for a 24-megapixel JPEG.
            decode_budget_bytes: 256 * MIB,
            user_quota: UserQuota::default(),
            metadata: MetadataPolicy::Strip,
        }
    }
}

impl Limits {
    /// The first chunk decides what the upload is; it must be allowed and its total must fit its kind.
    pub fn admit(&self, sniffed: Option<Sniffed>, total: u64) -> Result<Sniffed, ApiError> {
        let Some(s) = sniffed else {
            return Err(ApiError::bad_request(
                "unsupported_content",
                format!(
                    "the file's content is not of a recognised type; allowed: {}",
                    self.allowed_mime.join(", ")
                ),
            ));
        };
        if !self
            .allowed_mime
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&s.mime))
        {
            return Err(ApiError::bad_request(
                "unsupported_content",
                format!(
                    "content of type {} is not allowed; allowed: {}",
                    s.mime,
                    self.allowed_mime.join(", ")
                ),
            ));
        }
        let (max, what) = match s.kind {
            ContentKind::Image => (self.max_image_bytes, "images"),
            ContentKind::Document => (self.max_doc_bytes, "documents"),
        };
        if total > max {
            return Err(ApiError::bad_request(
                "file_too_large",
                format!("the file has {total} bytes; the limit for {what} is {max}"),
            ));
        }
        Ok(s)
    }

    pub fn check_chunk_len(&self, len: u64) -> Result<(), ApiError> {
        if len > self.max_chunk_bytes {
            return Err(ApiError::PayloadTooLarge {
                max: self.max_chunk_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mime: &str, kind: ContentKind) -> Sniffed {
        Sniffed {
            mime: mime.into(),
            kind,
            width: None,
            height: None,
        }
    }

    #[test]
    fn admits_by_kind_and_limit() {
        let l = Limits::default();
        assert!(l
            .admit(Some(s("image/png", ContentKind::Image)), 5 * MIB)
            .is_ok());
        assert_eq!(
            l.admit(Some(s("image/png", ContentKind::Image)), 5 * MIB + 1)
                .unwrap_err()
                .status(),
            400
        );
        assert!(l
            .admit(Some(s("application/pdf", ContentKind::Document)), 50 * MIB)
            .is_ok());
        assert!(l
            .admit(Some(s("application/zip", ContentKind::Document)), 10)
            .is_err());
        assert!(l.admit(None, 10).is_err());
        assert_eq!(l.check_chunk_len(4 * MIB + 1).unwrap_err().status(), 413);
        assert!(l.check_chunk_len(4 * MIB).is_ok());
    }
}
