//! The embedded default: uploads and finished objects as files on disk, sessions and media in redb.
//! Needs nothing but a directory.

mod blobs;
mod group_commit;
mod meta;
mod progress;
mod upload_lock;

use std::io::ErrorKind;

use anyhow::Context;

pub use blobs::{LocalBlobs, StoredFile};
pub use meta::LocalMeta;

use crate::ports::UploadStore;

/// After a crash: brings the record of every upload still receiving up to the progress its partial
/// file holds (`progress`), flushed, since chunk commits are not flushed in redb (their partial file
/// holds them) and a crash may have lost the newest of them; and removes the partial files of uploads
/// whose session was lost (its creation is flushed with its first chunk's commit, `LocalMeta`, so a
/// crash in between leaves bytes that no session leads to). Call at start, before serving. Answers
/// how many records it moved on.
pub async fn recover(meta: &LocalMeta, blobs: &LocalBlobs) -> anyhow::Result<usize> {
    let sessions = meta.sessions()?;
    for id in blobs.partial_ids()? {
        if !sessions.iter().any(|s| s.id == id) {
            tracing::info!(upload_id = %id, "removing the partial file of an upload that has no session");
            blobs.remove_partial(&id).await?;
        }
    }
    let mut moved = 0;
    for stored in sessions
        .into_iter()
        .filter(|s| s.status == crate::domain::upload::UploadStatus::Receiving)
    {
        let path = blobs.partial(&stored.id);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        if let Some(session) = progress::recovered(&file, &stored)? {
            tracing::info!(
                upload_id = %stored.id,
                from = stored.offset,
                to = session.offset,
                "upload progress recovered from its partial file"
            );
            meta.put_upload(&session, Some(stored.version)).await?;
            moved += 1;
        }
    }
    Ok(moved)
}
