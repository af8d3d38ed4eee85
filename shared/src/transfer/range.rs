//! Byte ranges: planning a recording's chunks and checking what the server says it sent.

use std::fmt;

/// An inclusive byte range, as HTTP `Range` and `Content-Range` express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn header(&self) -> String {
        format!("bytes={}-{}", self.start, self.end)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}", self.start, self.end)
    }
}

/// Splits `[0, total)` into chunks of `chunk` bytes (the last may be shorter).
pub fn plan(total: u64, chunk: u64) -> Vec<ByteRange> {
    assert!(chunk > 0, "chunk size is validated to be at least 5 MiB");
    (0..total.div_ceil(chunk))
        .map(|i| ByteRange {
            start: i * chunk,
            end: ((i + 1) * chunk).min(total) - 1,
        })
        .collect()
}

/// A parsed `Content-Range: bytes a-b/total` (`total` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub range: ByteRange,
    pub total: Option<u64>,
}

pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange {
        range: ByteRange { start, end },
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plan_covers_every_byte_once_in_order(total in 0u64..50_000_000, chunk in 1u64..12_000_000) {
            let ranges = plan(total, chunk);
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() <= chunk && !r.is_empty());
                next = r.end + 1;
            }
            prop_assert_eq!(next, total);
        }

        #[test]
        fn content_range_round_trips(start in 0u64..1<<40, len in 1u64..1<<30, extra in 0u64..1<<20) {
            let r = ByteRange { start, end: start + len - 1 };
            let total = r.end + 1 + extra;
            let parsed = parse_content_range(&format!("bytes {}-{}/{}", r.start, r.end, total)).unwrap();
            prop_assert_eq!(parsed, ContentRange { range: r, total: Some(total) });
        }
    }

    #[test]
    fn rejects_malformed_content_ranges() {
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-/5",
            "bytes */10",
            "",
        ] {
            assert!(parse_content_range(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_content_range("bytes 0-9/*").unwrap().total, None);
    }
}
