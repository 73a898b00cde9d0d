//! Property-based fuzzing of the three parsers that read untrusted bytes: Content-Range, multipart
//! bodies and content sniffing. Each replays its committed corpus (tests/corpus/<parser>/: the
//! official client's shapes and the edge cases found so far), then runs a bounded number of generated
//! and mutated inputs (PROPTEST_CASES, default 2000). Nothing may panic, and parsed results must be
//! consistent with the input. cargo-fuzz would need a nightly toolchain, which this project does not
//! assume; failures proptest finds are kept in parser_properties.proptest-regressions and replayed first.

use bytes::Bytes;
use media_shared::api::multipart;
use media_shared::domain::sniff::sniff;
use media_shared::domain::ContentRange;
use proptest::prelude::*;

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {name} corpus is empty");
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A corpus entry with a few bytes flipped, cut or inserted.
fn mutated(name: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(name);
    (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut v = seeds[i].clone();
            for (at, byte, kind) in edits {
                let at = if v.is_empty() { 0 } else { at % v.len() };
                match kind {
                    0 if !v.is_empty() => v[at] = byte,
                    1 => v.insert(at, byte),
                    _ => v.truncate(at),
                }
            }
            v
        })
}

fn check_content_range(input: &str) {
    if let Ok(r) = ContentRange::parse(input) {
        assert!(r.start <= r.end && r.end < r.total, "{input:?} gave {r:?}");
        assert_eq!(r.len(), r.end - r.start + 1);
    }
}

fn check_multipart(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    if let Ok(parts) = multipart::parse(&body, "B") {
        for p in parts {
            // Every part's data is a view into the body, never a copy.
            let start = p.data.as_ptr() as usize;
            assert!(
                p.data.is_empty()
                    || (start >= body.as_ptr() as usize
                        && start + p.data.len() <= body.as_ptr() as usize + body.len())
            );
        }
    }
}

fn check_sniff(head: &[u8]) {
    if let Some(s) = sniff(head) {
        assert!(s.mime.contains('/'));
        assert_eq!(s.width.is_some(), s.height.is_some());
    }
}

#[test]
fn corpus_replays_without_panic() {
    for c in corpus("content_range") {
        check_content_range(&String::from_utf8_lossy(&c));
    }
    for c in corpus("multipart") {
        check_multipart(&c);
    }
    for c in corpus("sniff") {
        check_sniff(&c);
    }
    // The official client's shapes parse.
    assert!(ContentRange::parse("bytes 1433600-1638399/2124437").is_ok());
    let official = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/multipart/official"),
    )
    .unwrap();
    let official = Bytes::from(official);
    let parts = multipart::parse(&official, "B").unwrap();
    assert_eq!(
        parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["upload_id", "image"]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000), ..ProptestConfig::default() })]

    #[test]
    fn content_range_never_panics(input in "\\PC{0,60}") {
        check_content_range(&input);
    }

    #[test]
    fn content_range_near_misses(s in any::<u64>(), e in any::<u64>(), t in any::<u64>(), sep in prop::sample::select(vec![" ", "  ", "=", "\t", ""])) {
        let input = format!("bytes{sep}{s}-{e}/{t}");
        check_content_range(&input);
        let ok = ContentRange::parse(&input).is_ok();
        prop_assert_eq!(ok, !sep.is_empty() && sep != "=" && s <= e && e < t);
    }

    #[test]
    fn content_range_mutations(input in mutated("content_range")) {
        check_content_range(&String::from_utf8_lossy(&input));
    }

    #[test]
    fn multipart_mutations_never_panic(body in mutated("multipart")) {
        check_multipart(&body);
    }

    #[test]
    fn multipart_random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_multipart(&body);
    }

    /// Any list of fields and files written the way browsers write them parses back to the same parts.
    #[test]
    fn multipart_round_trip(parts in proptest::collection::vec(("[a-z_]{1,10}", proptest::option::of("[a-zA-Z0-9 ._-]{0,20}"), proptest::collection::vec(any::<u8>(), 0..200)), 0..6)) {
        let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, filename, data) in &parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(f) => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes()),
                None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        // Random data may contain the delimiter itself; browsers pick boundaries that do not occur.
        prop_assume!(!parts.iter().any(|(_, _, d)| d.windows(boundary.len() + 2).any(|w| w == format!("--{boundary}").as_bytes())));
        let parsed = multipart::parse(&body, boundary).unwrap();
        prop_assert_eq!(parsed.len(), parts.len());
        for (p, (name, filename, data)) in parsed.iter().zip(&parts) {
            prop_assert_eq!(&p.name, name);
            prop_assert_eq!(p.filename.as_ref(), filename.as_ref());
            prop_assert_eq!(&p.data[..], &data[..]);
        }
    }

    #[test]
    fn sniff_mutations_never_panic(head in mutated("sniff")) {
        check_sniff(&head);
    }

    #[test]
    fn sniff_random_bytes_never_panic(head in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_sniff(&head);
    }
}
