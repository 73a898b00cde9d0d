//! Properties of `domain::image_metadata` on generated and mutated files (PROPTEST_CASES, default
//! 2000): stripping never panics, never grows a file by more than the minimal EXIF it may write in
//! place of a bigger one, is idempotent (a retried completion writes the same bytes), and never lets
//! through a byte of what it drops; on well-formed files it keeps exactly the segments decoding needs,
//! in order.

use media_shared::domain::image_metadata::strip;
use media_testkit::photos::{
    jpeg_segment, phone_jpeg, phone_png, phone_webp, png_chunk, secrets_in, webp_chunk,
};
use proptest::prelude::*;

/// Planted in every segment or chunk that must be dropped; random payloads never hold it.
const TOKEN: &[u8] = b"\x00T0K3N-GPS\x00";

fn holds_token(data: &[u8]) -> bool {
    data.windows(TOKEN.len()).any(|w| w == TOKEN)
}

/// Strips, and checks what must hold of any input. Returns what is stored.
fn check(mime: &str, data: &[u8]) -> Vec<u8> {
    match strip(mime, data) {
        None => data.to_vec(),
        Some(out) => {
            assert!(
                out.len() <= data.len() + 4,
                "{mime}: {} bytes from {}",
                out.len(),
                data.len()
            );
            assert_eq!(strip(mime, &out), None, "{mime}: stripping is idempotent");
            out
        }
    }
}

/// A random payload with no 0xFF, so it can sit in a JPEG segment or scan without making markers.
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..0xFF, 0..max)
}

fn planted(mut p: Vec<u8>) -> Vec<u8> {
    let at = p.len() / 2;
    p.splice(at..at, TOKEN.iter().copied());
    p
}

#[derive(Debug, Clone)]
enum Part {
    /// Kept as it is (tables, frame and scan headers, JFIF, ICC).
    Keep(Vec<u8>),
    /// Dropped whole (EXIF without orientation, XMP, comments, text chunks...).
    Drop(Vec<u8>),
}

fn jpeg_part() -> impl Strategy<Value = Part> {
    prop_oneof![
        (
            prop::sample::select(vec![0xDBu8, 0xC4, 0xC0, 0xDD]),
            payload(40)
        )
            .prop_map(|(code, p)| Part::Keep(jpeg_segment(code, &p))),
        payload(30).prop_map(|p| {
            let mut icc = b"ICC_PROFILE\0".to_vec();
            icc.extend(p);
            Part::Keep(jpeg_segment(0xE2, &icc))
        }),
        // A scan: its header, then compressed data with stuffed zeros and restart markers.
        (
            payload(10),
            proptest::collection::vec((payload(20), 0u8..3), 0..4)
        )
            .prop_map(|(header, pieces)| {
                let mut s = jpeg_segment(0xDA, &header);
                for (p, sep) in pieces {
                    s.extend(p);
                    s.extend(match sep {
                        0 => vec![0xFF, 0x00],
                        1 => vec![0xFF, 0xD3],
                        _ => vec![],
                    });
                }
                Part::Keep(s)
            }),
        (
            prop::sample::select(vec![0xE1u8, 0xE3, 0xEC, 0xED, 0xEF, 0xFE]),
            payload(40)
        )
            .prop_map(|(code, p)| Part::Drop(jpeg_segment(code, &planted(p)))),
        payload(40).prop_map(|p| {
            let mut exif = b"Exif\0\0MM\0*\0\0\0\x08\0\0".to_vec();
            exif.extend(planted(p));
            Part::Drop(jpeg_segment(0xE1, &exif))
        }),
    ]
}

fn png_part() -> impl Strategy<Value = Part> {
    let any_payload = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (
            prop::sample::select(vec![
                *b"PLTE", *b"IDAT", *b"tRNS", *b"gAMA", *b"iCCP", *b"fdAT"
            ]),
            any_payload()
        )
            .prop_map(|(kind, p)| Part::Keep(png_chunk(&kind, &p))),
        (
            prop::sample::select(vec![
                *b"tEXt", *b"zTXt", *b"iTXt", *b"eXIf", *b"tIME", *b"prVt", *b"GPSX"
            ]),
            any_payload()
        )
            .prop_map(|(kind, p)| Part::Drop(png_chunk(&kind, &planted(p)))),
    ]
}

fn webp_part() -> impl Strategy<Value = Part> {
    let any_payload = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (
            prop::sample::select(vec![
                *b"ICCP", *b"ANIM", *b"ANMF", *b"ALPH", *b"VP8 ", *b"VP8L"
            ]),
            any_payload()
        )
            .prop_map(|(code, p)| Part::Keep(webp_chunk(&code, &p))),
        (
            prop::sample::select(vec![*b"EXIF", *b"XMP ", *b"ABCD", *b"VP8X"]),
            any_payload()
        )
            .prop_map(|(code, p)| Part::Drop(webp_chunk(&code, &planted(p)))),
    ]
}

/// The whole file, and what stripping must leave of it.
fn assemble(head: &[u8], parts: &[Part], tail: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut file, mut kept) = (head.to_vec(), head.to_vec());
    for p in parts {
        match p {
            Part::Keep(b) => {
                file.extend(b);
                kept.extend(b);
            }
            Part::Drop(b) => file.extend(b),
        }
    }
    file.extend(tail);
    (file, kept)
}

fn riff(mut body: Vec<u8>) -> Vec<u8> {
    let mut f = b"RIFF".to_vec();
    f.extend(u32::try_from(body.len() + 4).unwrap().to_le_bytes());
    f.extend(b"WEBP");
    f.append(&mut body);
    f
}

/// A photo with a few bytes flipped, inserted or cut.
fn mutated(photo: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6).prop_map(move |edits| {
        let mut v = photo.clone();
        for (at, byte, kind) in edits {
            let at = if v.is_empty() { 0 } else { at % v.len() };
            match kind {
                0 if !v.is_empty() => v[at] = byte,
                1 => v.insert(at, byte),
                _ => v.truncate(at.max(1)),
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_behind_each_signature(which in 0usize..3, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (mime, magic): (&str, &[u8]) = [
            ("image/jpeg", &b"\xff\xd8"[..]),
            ("image/png", b"\x89PNG\r\n\x1a\n"),
            ("image/webp", b"RIFF\xff\xff\xff\xffWEBP"),
        ][which];
        let mut data = magic.to_vec();
        data.extend(body);
        check(mime, &data);
    }

    #[test]
    fn jpeg_keeps_exactly_the_image_segments(parts in proptest::collection::vec(jpeg_part(), 0..12), trailer in payload(20)) {
        let mut eoi_and_trailer = vec![0xFF, 0xD9];
        eoi_and_trailer.extend(planted(trailer));
        let (file, mut kept) = assemble(b"\xff\xd8", &parts, &eoi_and_trailer);
        kept.extend([0xFF, 0xD9]);
        let out = check("image/jpeg", &file);
        prop_assert!(!holds_token(&out));
        prop_assert_eq!(out, kept);
    }

    #[test]
    fn png_keeps_exactly_the_image_chunks(parts in proptest::collection::vec(png_part(), 0..12)) {
        let mut head = b"\x89PNG\r\n\x1a\n".to_vec();
        head.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        let mut tail = png_chunk(b"IEND", b"");
        let (file, mut kept) = assemble(&head, &parts, &tail);
        kept.append(&mut tail);
        let out = check("image/png", &file);
        prop_assert!(!holds_token(&out));
        prop_assert_eq!(out, kept);
    }

    #[test]
    fn webp_keeps_exactly_the_image_chunks(parts in proptest::collection::vec(webp_part(), 0..12), flags in any::<u8>()) {
        let vp8x = webp_chunk(b"VP8X", &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (body, kept) = assemble(&vp8x, &parts, b"");
        let out = check("image/webp", &riff(body));
        let mut kept = riff(kept);
        kept[20] &= !0x0C;
        prop_assert!(!holds_token(&out));
        prop_assert_eq!(out, kept);
    }

    #[test]
    fn cut_files_never_keep_a_dropped_byte(parts in proptest::collection::vec(jpeg_part(), 1..10), cut in any::<prop::sample::Index>()) {
        let (file, _) = assemble(b"\xff\xd8", &parts, b"");
        let file = &file[..cut.index(file.len()).max(2)];
        let out = check("image/jpeg", file);
        // The token may only survive where it was cut in half and so is no longer there.
        prop_assert!(!holds_token(&out));
    }

    #[test]
    fn mutated_phone_photos(jpeg in mutated(phone_jpeg(Some(6))), png in mutated(phone_png(Some(3))), webp in mutated(phone_webp(Some(8)))) {
        for (mime, data) in [("image/jpeg", jpeg), ("image/png", png), ("image/webp", webp)] {
            check(mime, &data);
        }
    }
}

#[test]
fn phone_photos_lose_every_secret() {
    for (mime, photo) in [
        ("image/jpeg", phone_jpeg(Some(6))),
        ("image/png", phone_png(Some(6))),
        ("image/webp", phone_webp(Some(6))),
    ] {
        let out = check(mime, &photo);
        assert_eq!(secrets_in(&out), Vec::<String>::new(), "{mime}");
    }
}
