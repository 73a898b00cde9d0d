//! The embedded default: uploads and finished objects as files on disk, sessions and media in redb.
//! Needs nothing but a directory.

mod blobs;
mod group_commit;
mod meta;
mod upload_lock;

pub use blobs::{LocalBlobs, StoredFile};
pub use meta::LocalMeta;
