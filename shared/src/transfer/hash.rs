//! SHA-256 whose state can be saved in a checkpoint and restored in another process.
//!
//! Hand-written on top of `sha2::compress256` because no maintained SHA-256 crate exposes a
//! serializable mid-stream state; the compression function (SHA-NI accelerated) is still the
//! crate's, only the block buffering and padding are ours, and they are tested against
//! `sha2::Sha256` below.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::{typenum::U64, GenericArray};

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A 64-byte slice as a block; `GenericArray::clone_from_slice` copies byte by byte, which
/// halves hashing speed.
fn block(chunk: &[u8]) -> GenericArray<u8, U64> {
    let bytes: [u8; 64] = chunk
        .try_into()
        .expect("chunks_exact(64) yields 64-byte slices");
    GenericArray::from(bytes)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumableSha256 {
    state: [u32; 8],
    buffer: Vec<u8>,
    length: u64,
}

/// The serialized form: hex state words, hex buffer (< 64 bytes), byte count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sha256State {
    pub state: String,
    pub buffer: String,
    pub length: u64,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        ResumableSha256 {
            state: H0,
            buffer: Vec::with_capacity(64),
            length: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if !self.buffer.is_empty() {
            let take = (64 - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == 64 {
                let block = GenericArray::clone_from_slice(&self.buffer);
                sha2::compress256(&mut self.state, &[block]);
                self.buffer.clear();
            }
        }
        let whole = data.len() / 64 * 64;
        // compress256 takes GenericArray blocks; copying 64 KiB at a time into one reused,
        // cache-resident buffer costs far less than the hashing and needs no unsafe cast.
        let mut blocks: Vec<GenericArray<u8, U64>> = Vec::with_capacity(1024);
        for batch in data[..whole].chunks(64 * 1024) {
            blocks.clear();
            blocks.extend(batch.chunks_exact(64).map(block));
            sha2::compress256(&mut self.state, &blocks);
        }
        self.buffer.extend_from_slice(&data[whole..]);
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bit_len = self.length.wrapping_mul(8);
        let mut tail = std::mem::take(&mut self.buffer);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bit_len.to_be_bytes());
        let blocks: Vec<GenericArray<u8, U64>> = tail
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut self.state, &blocks);
        let mut out = [0u8; 32];
        for (i, w) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    pub fn save(&self) -> Sha256State {
        let mut words = String::with_capacity(64);
        for w in self.state {
            words.push_str(&format!("{w:08x}"));
        }
        Sha256State {
            state: words,
            buffer: hex::encode(&self.buffer),
            length: self.length,
        }
    }

    pub fn restore(saved: &Sha256State) -> Option<ResumableSha256> {
        if saved.state.len() != 64 {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, w) in state.iter_mut().enumerate() {
            *w = u32::from_str_radix(saved.state.get(i * 8..i * 8 + 8)?, 16).ok()?;
        }
        let buffer = hex::decode(&saved.buffer).ok()?;
        if buffer.len() >= 64 || saved.length % 64 != buffer.len() as u64 {
            return None;
        }
        Some(ResumableSha256 {
            state,
            buffer,
            length: saved.length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    proptest! {
        #[test]
        fn matches_sha2_for_any_split_and_survives_save_restore(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 0usize..2000)
        {
            let cut = cut.min(data.len());
            let mut h = ResumableSha256::new();
            h.update(&data[..cut]);
            let saved = h.save();
            let json = serde_json::to_string(&saved).unwrap();
            let mut h2 = ResumableSha256::restore(&serde_json::from_str(&json).unwrap()).unwrap();
            h2.update(&data[cut..]);
            let expected: [u8; 32] = Sha256::digest(&data).into();
            prop_assert_eq!(h2.finalize(), expected);
        }
    }

    #[test]
    fn known_answer_for_abc() {
        let mut h = ResumableSha256::new();
        h.update(b"abc");
        assert_eq!(
            hex::encode(h.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn restore_rejects_inconsistent_state() {
        let mut s = ResumableSha256::new().save();
        s.length = 3;
        assert!(ResumableSha256::restore(&s).is_none());
    }
}
