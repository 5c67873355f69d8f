//! Timestamps for humans: ns since the Unix epoch to RFC 3339 UTC and back.

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `ns` (since the Unix epoch) as RFC 3339 UTC with nanoseconds,
/// e.g. `2024-08-08T04:55:10.123456789Z`; `-` for 0 (no timestamp).
pub fn utc(ns: u64) -> String {
    if ns == 0 {
        return "-".into();
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ns}ns"))
}

/// A time given as RFC 3339 (`2024-08-08T04:55:10Z`, `2024-08-08T06:55:10.5+02:00`) or as
/// whole ns since the Unix epoch.
pub fn parse_time(text: &str) -> Result<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .with_context(|| format!("`{text}` is too large for ns since the Unix epoch"));
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
        format!("`{text}` is neither RFC 3339 (2024-08-08T04:55:10Z) nor ns since the Unix epoch")
    })?;
    let ns = t.unix_timestamp_nanos();
    if ns < 0 {
        bail!("`{text}` is before 1970");
    }
    u64::try_from(ns).with_context(|| format!("`{text}` is beyond 2554"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_errors() {
        let ns = 1_723_092_910_123_456_789;
        assert_eq!(utc(ns), "2024-08-08T04:55:10.123456789Z");
        assert_eq!(parse_time(&utc(ns)).ok(), Some(ns));
        assert_eq!(parse_time("1723092910123456789").ok(), Some(ns));
        assert_eq!(
            parse_time("2024-08-08T06:55:10+02:00").ok(),
            Some(1_723_092_910_000_000_000)
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(utc(0), "-");
    }
}
