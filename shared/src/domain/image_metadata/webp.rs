//! WebP: a RIFF container (`RIFF`, a 32-bit little-endian size of what follows, `WEBP`) of chunks
//! (four-letter code, 32-bit little-endian size, data padded to an even length). The extended format
//! starts with VP8X, whose flags say whether EXIF, XMP, an ICC profile, alpha or animation follow.
//!
//! Kept: VP8X (its EXIF and XMP flags cleared), ICCP, ANIM, ANMF, ALPH, VP8 and VP8L. An EXIF chunk
//! with an orientation becomes a minimal EXIF chunk holding just that (with its VP8X flag set; a file
//! without VP8X cannot carry one, and decoders would ignore it there). Dropped: EXIF, XMP, unknown
//! chunks (the container says decoders ignore them), and anything past the RIFF size.

use super::orientation::{self, TIFF_LEN};

/// VP8X flag bits (first byte of its data).
const EXIF_FLAG: u8 = 0x08;
const XMP_FLAG: u8 = 0x04;

/// Compressed image data: kept as it is even when the file ends inside it.
fn is_image_data(code: &[u8]) -> bool {
    matches!(code, b"VP8 " | b"VP8L" | b"ALPH" | b"ANMF")
}

/// `None` unless `data` is a RIFF WEBP file.
pub fn strip(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WEBP" {
        return None;
    }
    let riff_size = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    // What the RIFF size covers; a file shorter than it says ends where its bytes end.
    let riff_end = usize::try_from(riff_size)
        .ok()
        .and_then(|s| s.checked_add(8))
        .map_or(data.len(), |end| end.min(data.len()));
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..12]);
    let mut at = 12;
    let mut flags_at = None;
    let mut orientation = None;
    while let Some(header) = data.get(at..at + 8).filter(|_| at + 8 <= riff_end) {
        let code = &header[..4];
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(8)?.checked_add(len))
            .filter(|end| *end <= riff_end);
        let Some(body_end) = body_end else {
            if is_image_data(code) {
                out.extend_from_slice(&data[at..riff_end]);
            }
            break;
        };
        // The padding byte of an odd-sized chunk; a file may end without it.
        let end = (body_end + (body_end - at) % 2).min(riff_end);
        let body = &data[at + 8..body_end];
        match code {
            b"VP8X" if flags_at.is_none() && !body.is_empty() => {
                flags_at = Some(out.len() + 8);
                out.extend_from_slice(&data[at..end]);
            }
            b"EXIF" => {
                if let Some(o) = flags_at
                    .and(orientation.is_none().then_some(()))
                    .and_then(|()| orientation::read_exif(body))
                {
                    out.extend_from_slice(b"EXIF");
                    out.extend_from_slice(&(TIFF_LEN as u32).to_le_bytes());
                    out.extend_from_slice(&orientation::tiff(o));
                    orientation = Some(o);
                }
            }
            b"ICCP" | b"ANIM" | b"ANMF" | b"ALPH" | b"VP8 " | b"VP8L" => {
                out.extend_from_slice(&data[at..end]);
            }
            _ => {}
        }
        at = end;
    }
    if let Some(i) = flags_at {
        out[i] &= !(EXIF_FLAG | XMP_FLAG);
        if orientation.is_some() {
            out[i] |= EXIF_FLAG;
        }
    }
    let size = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
    out[4..8].copy_from_slice(&size.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::strip as strip_any;
    use super::*;

    fn chunk(code: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = code.to_vec();
        c.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
        c.extend(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn webp(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend(u32::try_from(body.len() + 4).unwrap().to_le_bytes());
        f.extend(b"WEBP");
        f.extend(body);
        f
    }

    fn vp8x(flags: u8) -> Vec<u8> {
        chunk(b"VP8X", &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn drops_exif_and_xmp_and_fixes_the_flags() {
        let icc = chunk(b"ICCP", b"profile");
        let vp8l = chunk(b"VP8L", b"\x2f lossless bits");
        let file = webp(&[
            vp8x(0x20 | EXIF_FLAG | XMP_FLAG),
            icc.clone(),
            vp8l.clone(),
            chunk(b"EXIF", b"MM\0*\0\0\0\x08\0\0 GPS"),
            chunk(b"XMP ", b"<x:xmpmeta>GPS</x:xmpmeta>"),
            chunk(b"ABCD", b"unknown"),
        ]);
        let mut file = file;
        file.extend(b"past the RIFF size");
        let out = strip_any("image/webp", &file).unwrap();
        assert_eq!(out, webp(&[vp8x(0x20), icc, vp8l]));
        assert_eq!(strip_any("image/webp", &out), None, "idempotent");
    }

    #[test]
    fn orientation_is_kept_with_its_flag() {
        let vp8 = chunk(b"VP8 ", b"lossy bits.");
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(orientation::tiff(5));
        exif.extend(b" GPS");
        let file = webp(&[vp8x(EXIF_FLAG), vp8.clone(), chunk(b"EXIF", &exif)]);
        let out = strip_any("image/webp", &file).unwrap();
        let expected = webp(&[
            vp8x(EXIF_FLAG),
            vp8.clone(),
            chunk(b"EXIF", &orientation::tiff(5)),
        ]);
        assert_eq!(out, expected);
        assert_eq!(strip_any("image/webp", &out), None, "idempotent");
        // Without VP8X (the simple format) no EXIF can stay.
        let file = webp(&[vp8.clone(), chunk(b"EXIF", &exif)]);
        assert_eq!(strip_any("image/webp", &file).unwrap(), webp(&[vp8]));
    }

    #[test]
    fn broken_structures_are_cut_where_they_break() {
        let vp8l = chunk(b"VP8L", b"\x2f bits");
        // An EXIF chunk longer than the file.
        let mut file = webp(&[vp8x(EXIF_FLAG), vp8l.clone()]);
        file.extend(b"EXIF\xff\xff\xff\x7fGPS");
        file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(strip(&file).unwrap(), webp(&[vp8x(0), vp8l.clone()]));
        // Image data cut off: kept.
        let mut file = webp(&[vp8x(0)]);
        file.extend(&vp8l[..vp8l.len() - 2]);
        let size = u32::try_from(file.len() - 8).unwrap();
        file[4..8].copy_from_slice(&size.to_le_bytes());
        assert_eq!(strip_any("image/webp", &file), None);
        // A RIFF size smaller than the chunks: what lies past it is dropped.
        let mut file = webp(&[vp8x(0), vp8l.clone()]);
        file[4..8].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(strip(&file).unwrap(), webp(&[]));
        assert_eq!(strip(b"RIFF\0\0\0\0WEBP").unwrap(), webp(&[]));
    }
}
