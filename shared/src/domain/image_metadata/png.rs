//! PNG: the signature, then chunks (32-bit big-endian length, four-letter type, data, CRC).
//!
//! Kept, by name: the critical chunks (IHDR, PLTE, IDAT, IEND), and the ancillary ones that change how the pixels look or move: transparency,
//! gamma, chromaticities, sRGB, ICC profile, significant bits, background, pixel size, histogram and
//! suggested palettes, HDR colour information (cICP, mDCv, cLLi), and APNG's animation chunks (acTL,
//! fcTL, fdAT: without them an animation would stop at its first frame). An eXIf with an orientation
//! becomes a minimal eXIf holding just that. Dropped: tEXt, zTXt, iTXt (XMP lives in iTXt), eXIf,
//! tIME, any other ancillary chunk (private ones included: decoders ignore what they do not know, so
//! the pixels cannot depend on them), and everything after IEND.

use super::orientation::{self, TIFF_LEN};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The chunks kept: what decoding needs, and what changes what is shown. An unknown critical chunk
/// is dropped as well (a decoder must refuse a file holding one, so no pixels depend on it).
const KEPT: [&[u8; 4]; 20] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"bKGD", b"pHYs", b"hIST", b"sPLT", b"cICP", b"mDCv", b"cLLi", b"acTL", b"fcTL", b"fdAT",
];

/// Compressed image data: kept as it is even when the file ends inside it.
fn is_image_data(kind: &[u8]) -> bool {
    kind == b"IDAT" || kind == b"fdAT"
}

/// `None` unless `data` starts with the PNG signature.
pub fn strip(data: &[u8]) -> Option<Vec<u8>> {
    if !data.starts_with(SIGNATURE) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(SIGNATURE);
    let mut at = SIGNATURE.len();
    let mut orientation_kept = false;
    while let Some(header) = data.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = &header[4..8];
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(12)?.checked_add(len));
        let Some(end) = end.filter(|end| *end <= data.len()) else {
            // Cut off: the compressed image data of a partly received file is kept as it is,
            // anything else dropped with the rest of the file.
            if is_image_data(kind) {
                out.extend_from_slice(&data[at..]);
            }
            break;
        };
        let chunk = &data[at..end];
        if kind == b"eXIf" {
            if let Some(o) = (!orientation_kept)
                .then(|| orientation::read_exif(&chunk[8..chunk.len() - 4]))
                .flatten()
            {
                push_chunk(&mut out, b"eXIf", &orientation::tiff(o));
                orientation_kept = true;
            }
        } else if KEPT.iter().any(|k| k[..] == *kind) {
            out.extend_from_slice(chunk);
        }
        if kind == b"IEND" {
            break;
        }
        at = end;
    }
    Some(out)
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8; TIFF_LEN]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&(TIFF_LEN as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::strip as strip_any;
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        c.extend(crc.finalize().to_be_bytes());
        c
    }

    fn png(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut f = SIGNATURE.to_vec();
        for c in chunks {
            f.extend(c);
        }
        f
    }

    fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]),
            chunk(b"IDAT", b"\x78\x9c compressed"),
            chunk(b"IEND", b""),
        )
    }

    #[test]
    fn drops_text_exif_and_time_and_keeps_colour_and_animation() {
        let (ihdr, idat, iend) = image();
        let kept = [
            chunk(b"iCCP", b"ICC Profile\0\0zlib"),
            chunk(b"gAMA", &[0, 0, 0xB1, 0x8F]),
            chunk(b"acTL", &[0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(orientation::tiff(1));
        let file = png(&[
            ihdr.clone(),
            kept[0].clone(),
            chunk(b"tEXt", b"Comment\0at home"),
            chunk(
                b"iTXt",
                b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta>GPS</x:xmpmeta>",
            ),
            chunk(b"zTXt", b"Author\0\0zlib"),
            chunk(b"eXIf", &exif),
            chunk(b"tIME", &[7, 234, 12, 2, 10, 0, 0]),
            kept[1].clone(),
            chunk(b"prVt", b"private"),
            chunk(b"GPSX", b"unknown critical"),
            kept[2].clone(),
            idat.clone(),
            iend.clone(),
            b"trailing GPS".to_vec(),
        ]);
        let out = strip_any("image/png", &file).unwrap();
        let expected = png(&[
            ihdr,
            kept[0].clone(),
            kept[1].clone(),
            kept[2].clone(),
            idat,
            iend,
        ]);
        assert_eq!(out, expected);
        assert_eq!(strip_any("image/png", &out), None, "idempotent");
    }

    #[test]
    fn orientation_is_kept_as_a_minimal_exif_chunk() {
        let (ihdr, idat, iend) = image();
        // Little-endian, with the orientation after a GPS pointer.
        let mut tiff = b"II*\0\x08\0\0\0\x02\0".to_vec();
        tiff.extend([0x25, 0x88, 4, 0, 1, 0, 0, 0, 50, 0, 0, 0]);
        tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        tiff.extend([0; 4]);
        tiff.extend(b"GPS data");
        let file = png(&[
            ihdr.clone(),
            chunk(b"eXIf", &tiff),
            idat.clone(),
            iend.clone(),
        ]);
        let out = strip_any("image/png", &file).unwrap();
        let expected = png(&[ihdr, chunk(b"eXIf", &orientation::tiff(8)), idat, iend]);
        assert_eq!(out, expected);
        assert_eq!(strip_any("image/png", &out), None, "idempotent");
    }

    #[test]
    fn broken_structures_are_cut_where_they_break() {
        let (ihdr, idat, _) = image();
        // A text chunk longer than the file: dropped with the rest.
        let mut file = png(std::slice::from_ref(&ihdr));
        file.extend(&chunk(b"tEXt", b"GPS 48.8N")[..10]);
        assert_eq!(strip(&file).unwrap(), png(std::slice::from_ref(&ihdr)));
        let mut file = png(std::slice::from_ref(&ihdr));
        file.extend(u32::MAX.to_be_bytes());
        file.extend(b"tEXt GPS");
        assert_eq!(strip(&file).unwrap(), png(std::slice::from_ref(&ihdr)));
        // Image data cut off: kept as it is; so nothing changes.
        let mut file = png(std::slice::from_ref(&ihdr));
        file.extend(&idat[..idat.len() - 3]);
        assert_eq!(strip_any("image/png", &file), None);
        // A chunk header cut short: dropped.
        let mut file = png(std::slice::from_ref(&ihdr));
        file.extend(b"\0\0\0");
        assert_eq!(strip(&file).unwrap(), png(&[ihdr]));
    }
}
