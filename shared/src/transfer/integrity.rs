//! Integrity evidence from the source, beyond our own hashes (which only prove we stored what we
//! received): a whole-object checksum the media host sends (`x-amz-checksum-sha256`, asked for
//! with `x-amz-checksum-mode: ENABLED`; `Content-MD5`; an `ETag` that is a plain MD5, as S3
//! gives for single-part objects), and the CRC-32 every Ogg page carries (Opus and Vorbis).
//! A mismatch means the bytes changed between the source and us: the transfer starts over.
//! The manifest names the evidence each archive had, including none.

use base64::Engine as _;

/// What the media host stated about the whole object's bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceChecksums {
    /// Base64 SHA-256 of the whole object (`x-amz-checksum-sha256`, not a composite `-N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Hex MD5 of the whole object (`Content-MD5` of a whole-body answer, or a plain-MD5 `ETag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Which header the MD5 came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_from: Option<String>,
}

impl SourceChecksums {
    /// Reads what a media response says about the whole object. `whole` is true when the
    /// response body is the whole object (so `Content-MD5` describes it).
    pub fn from_headers(headers: &reqwest::header::HeaderMap, whole: bool) -> SourceChecksums {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let sha256 = text("x-amz-checksum-sha256")
            .filter(|v| !v.contains('-'))
            .filter(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .is_ok_and(|d| d.len() == 32)
            })
            // S3 answers a ranged GET with the checksum of the whole object only when the range
            // is the whole object; a partial body's header would be another object's checksum.
            .filter(|_| whole);
        let content_md5 = text("content-md5")
            .filter(|_| whole)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .filter(|d| d.len() == 16)
            .map(hex::encode);
        let etag_md5 = text("etag")
            .map(|v| {
                v.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        let (md5, md5_from) = match (content_md5, etag_md5) {
            (Some(m), _) => (Some(m), Some("content-md5".to_string())),
            (None, Some(m)) => (Some(m), Some("etag-md5".to_string())),
            (None, None) => (None, None),
        };
        SourceChecksums {
            sha256,
            md5,
            md5_from,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.md5.is_none()
    }
}

/// CRC-32 of Ogg pages (polynomial 0x04C11DB7, no reflection, initial 0, no final xor).
fn ogg_crc(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
            }
            *e = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, b| {
        (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize]
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Ogg page at byte {offset} fails its CRC-32")]
pub struct OggCrcMismatch {
    pub offset: u64,
}

/// Checks the CRC of every Ogg page as the stream goes by. Pages straddle chunks, so the tail
/// of one chunk is kept for the next. A checker started mid-stream (a resumed transfer) first
/// looks for a page start ("OggS") and checks from there.
#[derive(Debug, Default)]
pub struct OggPageChecker {
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    offset: u64,
    synced: bool,
    pub pages: u64,
}

impl OggPageChecker {
    /// A checker for a stream whose first byte is at `offset` (0: the whole stream).
    pub fn starting_at(offset: u64) -> OggPageChecker {
        OggPageChecker {
            offset,
            synced: offset == 0,
            ..Default::default()
        }
    }

    pub fn update(&mut self, chunk: &[u8]) -> Result<(), OggCrcMismatch> {
        self.pending.extend_from_slice(chunk);
        let mut at = 0usize;
        loop {
            let buf = &self.pending[at..];
            if !self.synced {
                match buf.windows(4).position(|w| w == b"OggS") {
                    Some(p) => {
                        at += p;
                        self.synced = true;
                        continue;
                    }
                    None => {
                        // Keep three bytes: a capture pattern may straddle the boundary.
                        at += buf.len().saturating_sub(3);
                        break;
                    }
                }
            }
            if buf.len() < 27 {
                break;
            }
            if &buf[..4] != b"OggS" {
                return Err(OggCrcMismatch {
                    offset: self.offset + at as u64,
                });
            }
            let segments = buf[26] as usize;
            if buf.len() < 27 + segments {
                break;
            }
            let body: usize = buf[27..27 + segments].iter().map(|s| *s as usize).sum();
            let len = 27 + segments + body;
            if buf.len() < len {
                break;
            }
            let stated = u32::from_le_bytes([buf[22], buf[23], buf[24], buf[25]]);
            let mut page = buf[..len].to_vec();
            page[22..26].fill(0);
            if ogg_crc(&page) != stated {
                return Err(OggCrcMismatch {
                    offset: self.offset + at as u64,
                });
            }
            self.pages += 1;
            at += len;
        }
        self.pending.drain(..at);
        self.offset += at as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\0".to_vec();
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.push(1);
        p.push(payload.len() as u8);
        p.extend_from_slice(payload);
        let crc = ogg_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn every_page_is_checked_across_chunk_boundaries_and_a_flip_is_found() {
        let stream: Vec<u8> = (0..20).flat_map(|i| page(i, &[i as u8; 200])).collect();
        for split in [1usize, 7, 100, 229, 1000] {
            let mut c = OggPageChecker::starting_at(0);
            for chunk in stream.chunks(split) {
                c.update(chunk).unwrap();
            }
            assert_eq!(c.pages, 20);
            let mut bad = stream.clone();
            bad[1500] ^= 1;
            let mut c = OggPageChecker::starting_at(0);
            let r: Result<(), _> = bad.chunks(split).try_for_each(|ch| c.update(ch));
            assert!(r.is_err(), "split {split}");
        }
    }

    #[test]
    fn a_resumed_checker_syncs_on_the_next_page() {
        let stream: Vec<u8> = (0..5).flat_map(|i| page(i, &[1u8; 100])).collect();
        let mut c = OggPageChecker::starting_at(50);
        c.update(&stream[50..]).unwrap();
        assert_eq!(c.pages, 4);
    }

    #[test]
    fn checksums_are_read_from_s3_style_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "etag",
            "\"0123456789abcdef0123456789abcdef\"".parse().unwrap(),
        );
        let c = SourceChecksums::from_headers(&h, false);
        assert_eq!(c.md5.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(c.md5_from.as_deref(), Some("etag-md5"));
        h.insert("etag", "\"abc-2\"".parse().unwrap());
        assert!(SourceChecksums::from_headers(&h, false).is_empty());
        h.insert(
            "x-amz-checksum-sha256",
            base64::engine::general_purpose::STANDARD
                .encode([9u8; 32])
                .parse()
                .unwrap(),
        );
        assert!(SourceChecksums::from_headers(&h, false).sha256.is_none());
        assert!(SourceChecksums::from_headers(&h, true).sha256.is_some());
    }
}
