//! The one piece of EXIF a stripped photo keeps: its Orientation (TIFF tag 0x0112), read from an EXIF
//! block and written back as a block holding nothing else.

/// The TIFF tag of the orientation.
const ORIENTATION: u16 = 0x0112;
/// TIFF type SHORT.
const SHORT: u16 = 3;

/// The orientation in a TIFF structure (EXIF's payload), if it is one other than 1 ("as stored"):
/// only those need keeping. Every offset is checked; an IFD with a huge count stops at the end of the
/// bytes, so the work is bounded by the input's length.
pub fn read(tiff: &[u8]) -> Option<u16> {
    let big_endian = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let count = usize::from(u16_at(ifd)?);
    let first = ifd.checked_add(2)?;
    // Entries past the end are never looked at: the loop ends with the bytes, whatever `count` says.
    let available = tiff.len().saturating_sub(first) / 12;
    for n in 0..count.min(available) {
        let entry = first + n * 12;
        if u16_at(entry)? != ORIENTATION {
            continue;
        }
        if u16_at(entry + 2)? != SHORT || u32_at(entry + 4)? != 1 {
            return None;
        }
        let value = u16_at(entry + 8)?;
        return (2..=8).contains(&value).then_some(value);
    }
    None
}

/// The length of `tiff`'s result.
pub const TIFF_LEN: usize = 26;

/// A TIFF structure (big-endian) with one IFD holding only `orientation`.
pub fn tiff(orientation: u16) -> [u8; TIFF_LEN] {
    let mut t = [0u8; TIFF_LEN];
    t[..4].copy_from_slice(b"MM\0*");
    t[4..8].copy_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    t[8..10].copy_from_slice(&1u16.to_be_bytes()); // one entry
    t[10..12].copy_from_slice(&ORIENTATION.to_be_bytes());
    t[12..14].copy_from_slice(&SHORT.to_be_bytes());
    t[14..18].copy_from_slice(&1u32.to_be_bytes()); // count
    t[18..20].copy_from_slice(&orientation.to_be_bytes()); // value, left-justified
                                                           // t[20..22] padding of the value, t[22..26] no next IFD
    t
}

/// EXIF payloads in JPEG start with this; PNG's eXIf and WebP's EXIF should not, but some writers
/// put it there too.
pub const EXIF_PREFIX: &[u8] = b"Exif\0\0";

/// The orientation of an EXIF payload with or without the `Exif\0\0` prefix.
pub fn read_exif(payload: &[u8]) -> Option<u16> {
    read(payload.strip_prefix(EXIF_PREFIX).unwrap_or(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF with `entries` (tag, type, count, value) in IFD0 at offset 8.
    pub fn little_endian(entries: &[(u16, u16, u32, u32)]) -> Vec<u8> {
        let mut t = b"II*\0".to_vec();
        t.extend(8u32.to_le_bytes());
        t.extend(u16::try_from(entries.len()).unwrap().to_le_bytes());
        for (tag, ty, count, value) in entries {
            t.extend(tag.to_le_bytes());
            t.extend(ty.to_le_bytes());
            t.extend(count.to_le_bytes());
            t.extend(value.to_le_bytes());
        }
        t.extend(0u32.to_le_bytes());
        t
    }

    #[test]
    fn reads_what_it_writes() {
        for o in 2..=8 {
            assert_eq!(read(&tiff(o)), Some(o));
        }
        // "As stored" needs no keeping; values outside 1..=8 mean nothing.
        assert_eq!(read(&tiff(1)), None);
        assert_eq!(read(&tiff(0)), None);
        assert_eq!(read(&tiff(9)), None);
    }

    #[test]
    fn reads_little_endian_among_other_tags() {
        // Make, GPS IFD pointer, then Orientation 6 (rotate 90° clockwise to show).
        let t = little_endian(&[(0x010f, 2, 4, 0), (0x8825, 4, 1, 100), (0x0112, 3, 1, 6)]);
        assert_eq!(read(&t), Some(6));
        let mut prefixed = EXIF_PREFIX.to_vec();
        prefixed.extend(&t);
        assert_eq!(read_exif(&prefixed), Some(6));
        assert_eq!(read_exif(&t), Some(6));
    }

    #[test]
    fn hostile_structures_give_nothing() {
        // Wrong type or count for the tag.
        assert_eq!(read(&little_endian(&[(0x0112, 4, 1, 6)])), None);
        assert_eq!(read(&little_endian(&[(0x0112, 3, 2, 6)])), None);
        // Offsets past the end, a huge entry count, cut anywhere.
        let mut t = little_endian(&[(0x0112, 3, 1, 6)]);
        t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read(&t), None);
        let mut t = little_endian(&[(0x0100, 3, 1, 6)]);
        t[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(read(&t), None);
        let t = little_endian(&[(0x0112, 3, 1, 6)]);
        for cut in 0..t.len() {
            let r = read(&t[..cut]);
            assert!(r.is_none() || cut >= 20, "{cut}: {r:?}");
        }
        assert_eq!(read(b""), None);
        assert_eq!(read(b"XX*\0\0\0\0\x08"), None);
    }
}
