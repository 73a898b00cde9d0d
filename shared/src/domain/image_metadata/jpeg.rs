//! JPEG: a sequence of marker segments (`FF xx`, a 16-bit length that counts itself, the payload), the
//! compressed scans after each SOS, and EOI. Metadata lives in APPn segments and COM.
//!
//! Kept: every segment decoding needs (tables, frame and scan headers, restart intervals: anything
//! that is not APPn or COM), APP0 `JFIF` (the pixel aspect ratio), APP2 `ICC_PROFILE` (colours) and
//! APP14 `Adobe` (whether the data is YCbCr, RGB or YCCK: dropping it changes the pixels of CMYK and
//! RGB JPEGs). The first APP1 `Exif` with an orientation becomes a minimal APP1 holding just that.
//! Dropped: every other APPn (EXIF without orientation, XMP, JFXX thumbnails, MPF, FlashPix, IPTC,
//! Photoshop, maker blocks), COM, bytes between segments that are no marker (decoders skip them too),
//! and everything after EOI.

use memchr::memchr;

use super::orientation::{self, EXIF_PREFIX, TIFF_LEN};

const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
const COM: u8 = 0xFE;

/// `None` unless `data` starts with SOI.
pub fn strip(data: &[u8]) -> Option<Vec<u8>> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..2]);
    let mut at = 2;
    let mut orientation_kept = false;
    // The next marker: non-marker bytes are skipped (libjpeg warns and does the same), and so are
    // fill bytes (any number of FF before the marker's code).
    while let Some(ff) = memchr(0xFF, &data[at..]) {
        at += ff;
        while data.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let Some(&code) = data.get(at + 1) else {
            break;
        };
        match code {
            // A stuffed zero outside a scan: not a marker.
            0x00 => {
                at += 2;
                continue;
            }
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                break;
            }
            // Markers without a length: RSTn, TEM, a stray SOI.
            0xD0..=0xD8 | 0x01 => {
                out.extend_from_slice(&[0xFF, code]);
                at += 2;
                continue;
            }
            _ => {}
        }
        let Some(len) = data.get(at + 2..at + 4) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        // A length below its own two bytes, or past the end: the structure breaks off here.
        let end = at + 2 + len;
        if len < 2 || end > data.len() {
            break;
        }
        let segment = &data[at..end];
        let payload = &data[at + 4..end];
        match code {
            0xE0 if payload.starts_with(b"JFIF\0") => out.extend_from_slice(segment),
            0xE2 if payload.starts_with(b"ICC_PROFILE\0") => out.extend_from_slice(segment),
            0xEE if payload.starts_with(b"Adobe") => out.extend_from_slice(segment),
            0xE1 if !orientation_kept && payload.starts_with(EXIF_PREFIX) => {
                if let Some(o) = orientation::read(&payload[EXIF_PREFIX.len()..]) {
                    let len = u16::try_from(2 + EXIF_PREFIX.len() + TIFF_LEN).unwrap_or(u16::MAX);
                    out.extend_from_slice(&[0xFF, 0xE1]);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(EXIF_PREFIX);
                    out.extend_from_slice(&orientation::tiff(o));
                    orientation_kept = true;
                }
            }
            0xE0..=0xEF | COM => {}
            SOS => {
                out.extend_from_slice(segment);
                // The compressed data runs to the next marker that is neither a stuffed zero nor a
                // restart marker; to the end of the file if it was cut off.
                let mut scan_end = end;
                loop {
                    match memchr(0xFF, &data[scan_end..]) {
                        None => {
                            scan_end = data.len();
                            break;
                        }
                        Some(ff) => {
                            scan_end += ff;
                            match data.get(scan_end + 1) {
                                Some(0x00 | 0xD0..=0xD7) => scan_end += 2,
                                _ => break,
                            }
                        }
                    }
                }
                out.extend_from_slice(&data[end..scan_end]);
                at = scan_end;
                continue;
            }
            _ => out.extend_from_slice(segment),
        }
        at = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::strip as strip_any;
    use super::*;

    fn segment(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, code];
        s.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        s.extend(payload);
        s
    }

    fn exif(orientation: Option<u16>, extra: &[u8]) -> Vec<u8> {
        let mut p = EXIF_PREFIX.to_vec();
        match orientation {
            Some(o) => p.extend(orientation::tiff(o)),
            None => p.extend(b"MM\0*\0\0\0\x08\0\0"),
        }
        p.extend(extra);
        segment(0xE1, &p)
    }

    /// The parts of a baseline JPEG decoding needs, with a scan holding stuffed zeros and a restart.
    fn image_parts() -> Vec<Vec<u8>> {
        vec![
            segment(0xDB, &[0; 65]),
            segment(0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]),
            segment(0xC4, &[0; 20]),
            segment(SOS, &[1, 1, 0, 0, 63, 0]),
            vec![0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56],
        ]
    }

    fn jpeg(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8];
        for p in parts {
            f.extend(p);
        }
        f
    }

    #[test]
    fn drops_gps_exif_xmp_comments_and_trailers_and_keeps_what_decoding_needs() {
        let jfif = segment(0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0");
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01profile");
        let adobe = segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01");
        let mut parts = vec![
            jfif.clone(),
            exif(None, b"GPS 48.8582N 2.2945E"),
            segment(
                0xE1,
                b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS</x:xmpmeta>",
            ),
            segment(0xE0, b"JFXX\0\x10thumb"),
            icc.clone(),
            segment(0xE2, b"MPF\0II*\0"),
            segment(0xED, b"Photoshop 3.0\08BIM"),
            adobe.clone(),
            segment(COM, b"shot at home"),
        ];
        parts.extend(image_parts());
        let mut file = jpeg(&parts);
        file.extend([0xFF, EOI]);
        file.extend(b"MotionPhoto_Data....mp4 with GPS");

        let out = strip_any("image/jpeg", &file).unwrap();
        let mut expected = vec![0xFF, 0xD8];
        expected.extend(jfif);
        expected.extend(icc);
        expected.extend(adobe);
        for p in image_parts() {
            expected.extend(p);
        }
        expected.extend([0xFF, EOI]);
        assert_eq!(out, expected);
        assert_eq!(strip_any("image/jpeg", &out), None, "idempotent");
    }

    #[test]
    fn orientation_is_kept_alone_where_the_exif_was() {
        let mut parts = vec![exif(Some(6), b"GPSLatitude 48.85")];
        parts.extend(image_parts());
        let out = strip_any("image/jpeg", &jpeg(&parts)).unwrap();
        let kept = exif(Some(6), b"");
        assert_eq!(&out[2..2 + kept.len()], &kept[..]);
        assert_eq!(kept.len(), 2 + 2 + 6 + TIFF_LEN);
        assert!(!out.windows(3).any(|w| w == b"GPS"));
        assert_eq!(strip_any("image/jpeg", &out), None, "idempotent");
        // A second EXIF block, or one saying "as stored", adds nothing.
        let mut parts = vec![exif(Some(1), b""), exif(Some(3), b""), exif(Some(8), b"")];
        parts.extend(image_parts());
        let out = strip_any("image/jpeg", &jpeg(&parts)).unwrap();
        let mut expected = jpeg(&[exif(Some(3), b"")]);
        for p in image_parts() {
            expected.extend(p);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn metadata_between_scans_of_a_progressive_jpeg_is_dropped_too() {
        let mut parts = image_parts();
        parts.push(segment(COM, b"between scans"));
        parts.push(segment(0xE1, b"Exif\0\0MM\0*"));
        parts.extend(image_parts()[2..].to_vec());
        parts.push(vec![0xFF, EOI]);
        let out = strip_any("image/jpeg", &jpeg(&parts)).unwrap();
        let mut expected = image_parts();
        expected.extend(image_parts()[2..].to_vec());
        expected.push(vec![0xFF, EOI]);
        assert_eq!(out, jpeg(&expected));
    }

    #[test]
    fn a_clean_file_is_left_alone() {
        let mut parts = vec![segment(0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0")];
        parts.extend(image_parts());
        parts.push(vec![0xFF, EOI]);
        assert_eq!(strip_any("image/jpeg", &jpeg(&parts)), None);
    }

    #[test]
    fn broken_structures_are_cut_where_they_break() {
        // A segment whose length runs past the end: nothing of it is kept.
        let mut file = jpeg(&[segment(0xDB, &[0; 65])]);
        file.extend([0xFF, 0xE1, 0xFF, 0xF0]);
        file.extend(b"Exif\0\0 GPS ...");
        assert_eq!(strip(&file).unwrap(), jpeg(&[segment(0xDB, &[0; 65])]));
        // Lengths below 2, a marker cut after its code, a lone FF, garbage between segments.
        for tail in [
            &[0xFF, 0xE1, 0, 1][..],
            &[0xFF, 0xE1, 0],
            &[0xFF],
            &[0xFF, 0xFF],
        ] {
            let mut f = jpeg(&[segment(0xDB, &[0; 65])]);
            f.extend(tail);
            assert_eq!(strip(&f).unwrap(), jpeg(&[segment(0xDB, &[0; 65])]));
        }
        let mut f = jpeg(&[]);
        f.extend(b"garbage");
        f.extend(segment(0xDB, &[1; 4]));
        assert_eq!(strip(&f).unwrap(), jpeg(&[segment(0xDB, &[1; 4])]));
        // A scan cut off: its data is kept as it is (a partly received photo still shows partly).
        let mut parts = image_parts();
        parts.push(vec![0x77, 0x88]);
        let cut = jpeg(&parts);
        assert_eq!(strip_any("image/jpeg", &cut), None);
        assert_eq!(strip(&[0xFF, 0xD8]).unwrap(), vec![0xFF, 0xD8]);
    }
}
