//! The whole-object checksum of an archive: CRC-64/NVME, as S3 computes it for a multipart
//! upload created with `ChecksumType=FULL_OBJECT`.
//!
//! Why CRC64NVME and not SHA-256 per part: S3 checks part and object integrity on its own
//! servers either way, but a SHA-256 per ciphertext part is a second full SHA-256 pass on the
//! Lambda's CPU (the plaintext SHA-256 for the manifest is the first), about half of the
//! pipeline's per-byte work. CRC64NVME costs a few percent of that, and its full-object form
//! lets S3 itself reject a completion whose parts do not add up to the object we encrypted.
//! Cryptographic integrity of the archive comes from the ESDK message (AES-GCM tags per frame,
//! key commitment) and the plaintext SHA-256 in the manifest, not from this value.
//!
//! Part CRCs combine into the object's CRC without the bytes (`crc_fast::checksum_combine`),
//! so the checkpoint keeps only each part's CRC and size.

use base64::Engine as _;
use crc_fast::CrcAlgorithm;

/// A CRC-64/NVME value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc64Nvme(pub u64);

impl Crc64Nvme {
    pub fn of(bytes: &[u8]) -> Crc64Nvme {
        Crc64Nvme(crc_fast::checksum(CrcAlgorithm::Crc64Nvme, bytes))
    }

    /// The CRC of `self`'s bytes followed by `next_len` bytes whose CRC is `next` (`self` may
    /// be the CRC of nothing, which is 0).
    pub fn then(self, next: Crc64Nvme, next_len: u64) -> Crc64Nvme {
        if next_len == 0 {
            return self;
        }
        Crc64Nvme(crc_fast::checksum_combine(
            CrcAlgorithm::Crc64Nvme,
            self.0,
            next.0,
            next_len,
        ))
    }

    /// The CRC of parts given in order as (CRC, length).
    pub fn of_parts(parts: impl IntoIterator<Item = (Crc64Nvme, u64)>) -> Crc64Nvme {
        parts
            .into_iter()
            .fold(Crc64Nvme::of(&[]), |acc, (crc, len)| acc.then(crc, len))
    }

    /// S3's spelling: base64 of the big-endian value.
    pub fn to_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.to_be_bytes())
    }

    pub fn from_base64(b64: &str) -> Option<Crc64Nvme> {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let bytes: [u8; 8] = raw.as_slice().try_into().ok()?;
        Some(Crc64Nvme(u64::from_be_bytes(bytes)))
    }
}

impl std::fmt::Display for Crc64Nvme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_value() {
        // CRC-64/NVME of "123456789" (the catalogue's check value).
        assert_eq!(Crc64Nvme::of(b"123456789").0, 0xae8b_1486_0a79_9888);
    }

    #[test]
    fn parts_combine_into_the_whole_objects_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, rest) = data.split_at(40_000);
        let (b, c) = rest.split_at(33_333);
        let parts = [a, b, c].map(|p| (Crc64Nvme::of(p), p.len() as u64));
        assert_eq!(Crc64Nvme::of_parts(parts), Crc64Nvme::of(&data));
        // Nothing followed by a part is the part.
        assert_eq!(Crc64Nvme::of(&[]).then(parts[0].0, parts[0].1), parts[0].0);
        assert_eq!(Crc64Nvme::of_parts([]), Crc64Nvme::of(&[]));
        // Order matters: the same parts swapped are another object.
        let swapped = [b, a, c].map(|p| (Crc64Nvme::of(p), p.len() as u64));
        assert_ne!(Crc64Nvme::of_parts(swapped), Crc64Nvme::of(&data));
    }

    #[test]
    fn base64_round_trips_and_rejects_other_lengths() {
        let c = Crc64Nvme::of(b"archive");
        assert_eq!(Crc64Nvme::from_base64(&c.to_base64()), Some(c));
        // A SHA-256 (32 bytes) is not a CRC64.
        let sha = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        assert_eq!(Crc64Nvme::from_base64(&sha), None);
    }
}
