//! The progress of an unfinished upload, kept in its partial file beside the bytes, so that a chunk
//! costs one disk flush instead of two (issue 12).
//!
//! Before: a chunk flushed its bytes (`fdatasync` of the partial file), then committed the session
//! (offset, MD5 state, last chunk) to redb, which flushes again: 2.5-4 ms each on this machine's
//! disk, whatever the size. Now the accepted session is written into the partial file too, after the
//! bytes, and one `fdatasync` makes both durable; the redb commit that follows is not flushed
//! (`Durability::None`, made durable by the next flushed commit of the process). After a crash,
//! `recover` brings redb's record up to the newest progress found in the partial file.
//!
//! Layout: the upload's bytes at their offsets in `[0, total)`, then, from `total` rounded up to
//! 4 KiB, two slots of 4 KiB. Each accepted session goes into the slot of its version's parity, so
//! the slot being written never holds the newest complete record: a torn write (power cut during the
//! flush) leaves the other slot, the previous chunk's, intact. A slot is `MAGIC`, the length and CRC32
//! of the JSON, and the JSON of the session. Completion cuts the slots off (`LocalBlobs::finish`
//! truncates to `total` and flushes, before the rename), so an object never contains them.
//!
//! The one flush covers the bytes and the record together, but the disk may have stored the record
//! and not (all of) the chunk's bytes when the power went before the flush returned (that chunk was
//! never acknowledged). `recover` therefore checks the last chunk of the record against its bytes in
//! the file (its MD5 state before the chunk, advanced over the bytes, must give the record's MD5
//! state) and, if they differ, rolls back to the state before that chunk: every earlier chunk's bytes
//! were flushed before this one was written (chunk writers of an upload take turns).

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::Context;

use crate::domain::upload::{UploadSession, UploadStatus};

const MAGIC: &[u8; 8] = b"MPROG\x00\x00\x01";
const SLOT: u64 = 4096;
const HEADER: usize = MAGIC.len() + 4 + 4;

/// Where the slots of an upload of `total` bytes start.
pub(super) fn slots_start(total: u64) -> u64 {
    total.div_ceil(SLOT) * SLOT
}

/// The bytes of a slot holding `session`; `None` if it does not fit (an unusually long file name):
/// then the chunk's commit is flushed in redb as before.
pub(super) fn encode(session: &UploadSession) -> anyhow::Result<Option<Vec<u8>>> {
    let json = serde_json::to_vec(session)?;
    if HEADER + json.len() > SLOT as usize {
        return Ok(None);
    }
    let mut slot = Vec::with_capacity(HEADER + json.len());
    slot.extend_from_slice(MAGIC);
    slot.extend_from_slice(&(json.len() as u32).to_le_bytes());
    slot.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    slot.extend_from_slice(&json);
    Ok(Some(slot))
}

/// Writes `slot` (from `encode`) into the slot of `session`'s version; not flushed here.
pub(super) fn write(file: &File, session: &UploadSession, slot: &[u8]) -> std::io::Result<()> {
    let at = slots_start(session.total) + (session.version % 2) * SLOT;
    file.write_all_at(slot, at)
}

/// The newest intact record of the partial file of an upload of `total` bytes, if any.
fn newest(file: &File, total: u64) -> anyhow::Result<Option<UploadSession>> {
    let mut found: Option<UploadSession> = None;
    for i in 0..2 {
        let mut buf = vec![0u8; SLOT as usize];
        let n = read_at_most(file, &mut buf, slots_start(total) + i * SLOT)?;
        if let Some(s) = decode(&buf[..n]) {
            if found.as_ref().is_none_or(|f| s.version > f.version) {
                found = Some(s);
            }
        }
    }
    Ok(found)
}

fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn decode(slot: &[u8]) -> Option<UploadSession> {
    if slot.len() < HEADER || &slot[..MAGIC.len()] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(slot[8..12].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(slot[12..16].try_into().ok()?);
    let json = slot.get(HEADER..HEADER + len)?;
    if crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// The session to put back in place of `stored` (redb's record after a crash), from the partial file
/// `file`: the newest record there if it is newer and its last chunk's bytes are on disk, the state
/// before that chunk if they are not; `None` if redb's record stands.
pub(super) fn recovered(
    file: &File,
    stored: &UploadSession,
) -> anyhow::Result<Option<UploadSession>> {
    if stored.status != UploadStatus::Receiving {
        return Ok(None);
    }
    let Some(mut newest) = newest(file, stored.total)? else {
        return Ok(None);
    };
    if newest.id != stored.id
        || newest.version <= stored.version
        || newest.status != UploadStatus::Receiving
        || newest.offset <= stored.offset
    {
        return Ok(None);
    }
    if let Some(last) = newest.last_chunk.clone() {
        let mut bytes = vec![0u8; usize::try_from(last.len)?];
        let n = read_at_most(file, &mut bytes, last.start).context("reading the last chunk")?;
        let on_disk = n == bytes.len() && newest.is_same_chunk(&last, &bytes)?;
        if !on_disk {
            // Its bytes did not all reach the disk: the chunk was never acknowledged.
            newest.offset = last.start;
            newest.md5 = last.md5_before;
            newest.last_chunk = None;
            if newest.offset <= stored.offset {
                return Ok(None);
            }
        }
    }
    Ok(Some(newest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::upload::ChunkPlan;
    use crate::domain::ContentRange;
    use time::OffsetDateTime;

    const TOTAL: u64 = 10_000;

    fn session() -> UploadSession {
        let now = OffsetDateTime::now_utc();
        let plan = ChunkPlan::first(
            Some(ContentRange::parse("bytes 0-3999/10000").unwrap()),
            4000,
        )
        .unwrap();
        let content = crate::domain::sniff::sniff(b"%PDF-1.4\n").unwrap();
        UploadSession::new("alice", now, 3600, &plan, content, Some("a.pdf".into()))
    }

    /// Accepts the chunk `[start, start + data.len())`: writes its bytes and its record like a chunk.
    fn chunk(file: &File, s: &mut UploadSession, data: &[u8]) {
        let plan = ChunkPlan {
            start: s.offset,
            len: data.len() as u64,
            total: TOTAL,
        };
        file.write_all_at(data, plan.start).unwrap();
        let md5 = s.md5.clone().advanced(data).unwrap();
        s.accept_chunk(&plan, md5, s.staging.clone());
        s.version += 1;
        write(file, s, &encode(s).unwrap().unwrap()).unwrap();
    }

    #[test]
    fn the_newest_intact_record_whose_bytes_are_on_disk_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.path().join("p"))
            .unwrap();
        let stored = session();
        let mut s = stored.clone();
        chunk(&file, &mut s, &[1u8; 4000]);
        let after_first = s.clone();
        chunk(&file, &mut s, &[2u8; 4000]);
        let got = recovered(&file, &stored).unwrap().unwrap();
        assert_eq!(got, s);
        assert_eq!(got.offset, 8000);
        // redb already has it: nothing to do.
        assert_eq!(recovered(&file, &s).unwrap(), None);

        // The newest record torn (power cut while its slot was written): the older slot stands.
        let at = slots_start(TOTAL) + (s.version % 2) * SLOT + 20;
        file.write_all_at(b"torn", at).unwrap();
        assert_eq!(recovered(&file, &stored).unwrap().unwrap(), after_first);

        // A record whose chunk's bytes did not reach the disk: back to the state before that chunk.
        chunk(&file, &mut s, &[3u8; 2000]);
        file.write_all_at(&[0u8; 10], 8500).unwrap();
        let got = recovered(&file, &stored).unwrap().unwrap();
        assert_eq!((got.offset, got.last_chunk.clone()), (8000, None));
        let mut expected = s.clone();
        expected.offset = 8000;
        expected.md5 = s.last_chunk.clone().unwrap().md5_before;
        expected.last_chunk = None;
        assert_eq!(got, expected);
        // The MD5 state rolled back is the one over the 8000 bytes that are on disk.
        let md5 = Default::default();
        let md5: crate::domain::md5_state::ResumableMd5 = md5;
        let on_disk = md5.advanced(&[[1u8; 4000], [2u8; 4000]].concat()).unwrap();
        assert_eq!(got.md5, on_disk);
    }

    #[test]
    fn no_record_or_a_foreign_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, vec![7u8; 4000]).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(recovered(&file, &session()).unwrap(), None);
        // Another upload's record (never written here, but the id is checked all the same).
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let mut other = session();
        chunk(&file, &mut other, &[7u8; 4000]);
        assert_eq!(recovered(&file, &session()).unwrap(), None);
    }
}
