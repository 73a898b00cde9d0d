//! Pure rules of the service: no I/O, no AWS types. Everything here is unit-tested on its own.

pub mod content_range;
pub mod error;
pub mod image_metadata;
pub mod keys;
pub mod limits;
pub mod md5_state;
pub mod media;
pub mod object_headers;
pub mod preview;
pub mod sniff;
pub mod thumbnail;
pub mod time_fmt;
pub mod upload;

pub use content_range::ContentRange;
pub use error::{ApiError, StoreError};
pub use limits::{FetchLimits, Limits, ThumbnailMode, UserQuota};
pub use md5_state::ResumableMd5;
pub use media::{Click, MediaRecord, MediaType, StoredThumbnail};
pub use object_headers::ObjectHeaders;
pub use sniff::{ContentKind, Sniffed};
pub use upload::{ChunkPlan, UploadSession, UploadStatus};
