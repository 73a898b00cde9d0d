//! `Content-Range: bytes START-END/TOTAL` with an inclusive END, as the official client sends it.

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// Inclusive, as on the wire.
    pub end: u64,
    pub total: u64,
}

impl ContentRange {
    /// Parses the header value. Every way it can be wrong is a 400 naming the problem.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_content_range",
                format!("Content-Range {value:?}: {why}"),
            )
        };
        let rest = value
            .trim()
            .strip_prefix("bytes")
            .filter(|r| r.starts_with([' ', '\t']))
            .ok_or_else(|| bad("expected `bytes START-END/TOTAL`"))?
            .trim_start();
        let (range, total) = rest.split_once('/').ok_or_else(|| bad("missing /TOTAL"))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| bad("missing START-END"))?;
        let number = |s: &str, what: &str| -> Result<u64, ApiError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("{what} is not a number")));
            }
            s.parse::<u64>()
                .map_err(|_| bad(&format!("{what} is too large")))
        };
        let range = ContentRange {
            start: number(start, "START")?,
            end: number(end, "END")?,
            total: number(total, "TOTAL")?,
        };
        if range.end < range.start {
            return Err(bad("END is before START"));
        }
        if range.end >= range.total {
            return Err(bad("END is past the end of the file"));
        }
        Ok(range)
    }

    /// The number of bytes the range covers (END is inclusive).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_official_clients_header() {
        let r = ContentRange::parse("bytes 1433600-1638399/2124437").unwrap();
        assert_eq!(
            r,
            ContentRange {
                start: 1433600,
                end: 1638399,
                total: 2124437
            }
        );
        assert_eq!(r.len(), 204800);
    }

    #[test]
    fn single_byte_and_last_byte_ranges() {
        assert_eq!(ContentRange::parse("bytes 0-0/1").unwrap().len(), 1);
        let r = ContentRange::parse("bytes 9-9/10").unwrap();
        assert_eq!((r.start, r.end, r.total), (9, 9, 10));
        let max = u64::MAX;
        let r = ContentRange::parse(&format!("bytes 0-{}/{}", max - 1, max)).unwrap();
        assert_eq!(r.len(), max);
    }

    #[test]
    fn tolerates_surrounding_whitespace() {
        assert!(ContentRange::parse("  bytes   0-9/10 ").is_ok());
    }

    #[test]
    fn rejects_malformed_values() {
        for v in [
            "",
            "bytes",
            "bytes ",
            "bytes=0-9/10",
            "bytes0-9/10",
            "items 0-9/10",
            "bytes 0-9",
            "bytes 0/10",
            "bytes -9/10",
            "bytes 0-/10",
            "bytes 0-9/",
            "bytes 0-9/*",
            "bytes */10",
            "bytes +0-9/10",
            "bytes 0-9/-10",
            "bytes 0x0-9/10",
            "bytes 0 - 9/10",
            "bytes 0-9/10/11",
        ] {
            let e = ContentRange::parse(v).expect_err(v);
            assert_eq!(e.status(), 400, "{v}");
        }
    }

    #[test]
    fn rejects_inconsistent_ranges() {
        for v in [
            "bytes 10-9/20",
            "bytes 0-10/10",
            "bytes 5-5/0",
            "bytes 0-0/0",
        ] {
            assert!(ContentRange::parse(v).is_err(), "{v}");
        }
    }

    #[test]
    fn rejects_numbers_too_big_for_u64() {
        let e = ContentRange::parse("bytes 0-1/18446744073709551616").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        assert!(ContentRange::parse("bytes 99999999999999999999-1/2").is_err());
    }
}
