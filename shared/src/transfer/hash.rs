//! SHA-256 whose state can be saved in a checkpoint and restored in another process.
//!
//! Hand-written on top of `sha2`'s `compress256` because no maintained SHA-256 crate exposes a
//! serializable mid-stream state; the compression function (SHA-NI accelerated) is still the
//! crate's, only the block buffering and padding are ours, and they are tested against
//! `sha2::Sha256` below. The compression function is sha2 0.11's, which takes plain
//! `[u8; 64]` blocks, so whole blocks are hashed where they lie (no copy).

use serde::{Deserialize, Serialize};
use sha2_blocks::block_api::compress256;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

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
            if let Ok(block) = <[u8; 64]>::try_from(self.buffer.as_slice()) {
                compress256(&mut self.state, &[block]);
                self.buffer.clear();
            }
        }
        let (blocks, rest) = data.as_chunks::<64>();
        compress256(&mut self.state, blocks);
        self.buffer.extend_from_slice(rest);
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bit_len = self.length.wrapping_mul(8);
        let mut tail = std::mem::take(&mut self.buffer);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bit_len.to_be_bytes());
        let (blocks, _) = tail.as_chunks::<64>();
        compress256(&mut self.state, blocks);
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

/// The plaintext SHA-256 on a blocking thread of its own, chunk after chunk in order.
///
/// Why: the manifest's SHA-256 is the pipeline's largest per-byte cost (encryption with
/// AES-NI is several times faster). Hashing chunk `k` while chunk `k` is encrypted and
/// uploaded and chunk `k + 1` is fetched keeps one core on SHA-256 without pause, instead of
/// waiting for both at every chunk. Each chunk's receiver yields the state after it, which the
/// checkpoint records with the chunk's part.
pub struct HashLane {
    chunks: Option<
        tokio::sync::mpsc::Sender<(bytes::Bytes, tokio::sync::oneshot::Sender<Sha256State>)>,
    >,
    worker: tokio::task::JoinHandle<ResumableSha256>,
}

/// Room for one chunk in a [`HashLane`].
pub struct LaneSlot(
    tokio::sync::mpsc::OwnedPermit<(bytes::Bytes, tokio::sync::oneshot::Sender<Sha256State>)>,
);

impl LaneSlot {
    /// Queues the chunk; the receiver yields the hash state after it.
    pub fn send(self, chunk: bytes::Bytes) -> tokio::sync::oneshot::Receiver<Sha256State> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.send((chunk, tx));
        rx
    }
}

/// The lane's thread ended early (it panicked, or the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the plaintext hash lane stopped")]
pub struct LaneStopped;

impl HashLane {
    /// Continues `hasher`; at most `depth` chunks wait to be hashed (the caller waits then).
    pub fn start(hasher: ResumableSha256, depth: usize) -> HashLane {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(
            bytes::Bytes,
            tokio::sync::oneshot::Sender<Sha256State>,
        )>(depth.max(1));
        let worker = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            while let Some((chunk, after)) = rx.blocking_recv() {
                hasher.update(&chunk);
                drop(chunk);
                // The receiver may be gone (the transfer stopped): nothing to tell then.
                let _ = after.send(hasher.save());
            }
            hasher
        });
        HashLane {
            chunks: Some(tx),
            worker,
        }
    }

    /// Waits until the lane can take a chunk. Taking the next chunk from its source only
    /// then keeps chunks from piling up in front of a lane that lags (memory).
    pub async fn reserve(&self) -> Result<LaneSlot, LaneStopped> {
        let lane = self.chunks.clone().ok_or(LaneStopped)?;
        let permit = lane.reserve_owned().await.map_err(|_| LaneStopped)?;
        Ok(LaneSlot(permit))
    }

    /// Waits for every queued chunk and returns the hasher.
    pub async fn finish(mut self) -> Result<ResumableSha256, LaneStopped> {
        self.chunks = None;
        (&mut self.worker).await.map_err(|_| LaneStopped)
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lane_hashes_chunks_in_order_and_reports_each_state() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let lane = HashLane::start(ResumableSha256::new(), 2);
        let mut after = Vec::new();
        for chunk in data.chunks(70_001) {
            let slot = lane.reserve().await.unwrap();
            after.push(slot.send(bytes::Bytes::copy_from_slice(chunk)));
        }
        let mut states = Vec::new();
        for rx in after {
            states.push(rx.await.unwrap());
        }
        let hasher = lane.finish().await.unwrap();
        assert_eq!(hasher.len(), data.len() as u64);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(hasher.finalize(), expected);
        // Each state is the hash after its chunk: restoring the second and adding the rest
        // gives the whole digest.
        let mut resumed = ResumableSha256::restore(&states[1]).unwrap();
        resumed.update(&data[2 * 70_001..]);
        assert_eq!(resumed.finalize(), expected);
    }
}
