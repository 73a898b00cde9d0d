//! The two timestamp shapes of API.md: media `added_at` with microseconds, upload `expires` with millis.

use time::OffsetDateTime;

pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

pub fn rfc3339_millis(t: OffsetDateTime) -> String {
    let s = rfc3339_micros(t);
    // "...SS.mmmuuuZ" -> "...SS.mmmZ"
    format!("{}Z", &s[..s.len() - 4])
}

/// Milliseconds since the epoch, the unit stored for upload times.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_unix_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = time::macros::datetime!(2026-11-22 10:11:12.345678 UTC);
        assert_eq!(rfc3339_micros(t), "2026-11-22T10:11:12.345678Z");
        assert_eq!(rfc3339_millis(t), "2026-11-22T10:11:12.345Z");
        assert_eq!(
            rfc3339_millis(from_unix_millis(unix_millis(t))),
            "2026-11-22T10:11:12.345Z"
        );
    }
}
