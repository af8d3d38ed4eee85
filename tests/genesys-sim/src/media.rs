//! Media content: committed real audio files, synthesized WAVs of any size (PCM, and a μ-law
//! rendition of the same samples), all streamed in chunks without a whole-file buffer.

use std::io::Read;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::model::{Codec, MediaSource};
use crate::render::linear_to_ulaw;

/// Samples converted per step when encoding μ-law on the fly.
const CHUNK_SAMPLES: usize = 32 * 1024;

static PCM16_WAV: &[u8] = include_bytes!("../media/sample-pcm16.wav");
static ULAW_WAV: &[u8] = include_bytes!("../media/sample-ulaw.wav");
static OPUS_OGG: &[u8] = include_bytes!("../media/sample-opus.ogg");
static VORBIS_OGG: &[u8] = include_bytes!("../media/sample-vorbis.ogg");
static MP3: &[u8] = include_bytes!("../media/sample.mp3");
pub(crate) static OPUS_WEBM: &[u8] = include_bytes!("../media/sample-opus.webm");

/// The committed real sample for a codec.
pub fn real_sample(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::WavPcm => PCM16_WAV,
        Codec::WavUlaw => ULAW_WAV,
        Codec::OggOpus => OPUS_OGG,
        Codec::OggVorbis => VORBIS_OGG,
        Codec::Mp3 => MP3,
        Codec::Webm => OPUS_WEBM,
    }
}

/// Duration of the committed samples (all were cut to 4 s of speech).
pub const REAL_SAMPLE_DURATION_MS: u64 = 4_000;

const BLOCK: usize = 64 * 1024;
const HEADER_LEN: u64 = 44;
/// Sample rate / format of synthesized WAVs.
pub const SYNTH_SAMPLE_RATE: u32 = 8_000;

/// Resolved content of one recording; cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Content {
    inner: ContentInner,
}

#[derive(Clone)]
enum ContentInner {
    Static(Bytes),
    Synth(Arc<Synth>),
    /// μ-law WAV encoded on the fly from the synth's PCM samples.
    Ulaw(Arc<Synth>, Arc<[u8; ULAW_HEADER_LEN as usize]>),
}

/// Header length of a μ-law WAV rendition: RIFF/WAVE, an 18-byte `fmt ` (tag 7), `fact`, `data`.
pub const ULAW_HEADER_LEN: u64 = 58;

struct Synth {
    header: [u8; 44],
    block: Box<[u8]>,
    seed: u64,
    data_len: u64,
}

impl Content {
    /// Content of an audio source or the screen recording (documents are built by `docs`).
    pub fn new(src: MediaSource, recording_id: &str) -> Content {
        match src {
            MediaSource::Real(c) => Content::from_static(Bytes::from_static(real_sample(c))),
            MediaSource::SynthWav { size_bytes } => Content {
                inner: ContentInner::Synth(Arc::new(Synth::new(seed_of(recording_id), size_bytes))),
            },
            MediaSource::Screen => Content::from_static(Bytes::from_static(OPUS_WEBM)),
            MediaSource::Chat | MediaSource::Messaging | MediaSource::Email => {
                Content::from_static(Bytes::new())
            }
        }
    }

    /// The μ-law WAV (8 kHz mono, format tag 7) of a synthesized PCM WAV's samples; `None`
    /// for other content.
    pub fn to_ulaw(&self) -> Option<Content> {
        let ContentInner::Synth(s) = &self.inner else {
            return None;
        };
        let samples = s.data_len / 2;
        let data = u32::try_from(samples).unwrap_or(u32::MAX);
        let riff = u32::try_from(ULAW_HEADER_LEN - 8 + samples).unwrap_or(u32::MAX);
        let mut h = [0u8; ULAW_HEADER_LEN as usize];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&riff.to_le_bytes());
        h[8..12].copy_from_slice(b"WAVE");
        h[12..16].copy_from_slice(b"fmt ");
        h[16..20].copy_from_slice(&18u32.to_le_bytes());
        h[20..22].copy_from_slice(&7u16.to_le_bytes()); // μ-law
        h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
        h[24..28].copy_from_slice(&SYNTH_SAMPLE_RATE.to_le_bytes());
        h[28..32].copy_from_slice(&SYNTH_SAMPLE_RATE.to_le_bytes()); // 1 byte per sample
        h[32..34].copy_from_slice(&1u16.to_le_bytes());
        h[34..36].copy_from_slice(&8u16.to_le_bytes());
        h[36..38].copy_from_slice(&0u16.to_le_bytes()); // cbSize
        h[38..42].copy_from_slice(b"fact");
        h[42..46].copy_from_slice(&4u32.to_le_bytes());
        h[46..50].copy_from_slice(&data.to_le_bytes());
        h[50..54].copy_from_slice(b"data");
        h[54..58].copy_from_slice(&data.to_le_bytes());
        Some(Content {
            inner: ContentInner::Ulaw(s.clone(), Arc::new(h)),
        })
    }

    /// Whole content as one buffer (only for small content and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunk(0, usize::try_from(self.len()).unwrap_or(usize::MAX))
            .to_vec()
    }

    pub fn from_static(b: Bytes) -> Content {
        Content {
            inner: ContentInner::Static(b),
        }
    }

    pub fn len(&self) -> u64 {
        match &self.inner {
            ContentInner::Static(b) => b.len() as u64,
            ContentInner::Synth(s) => HEADER_LEN + s.data_len,
            ContentInner::Ulaw(s, _) => ULAW_HEADER_LEN + s.data_len / 2,
        }
    }

    /// Bytes starting at `off`, at most `max` of them (fewer only at the end).
    pub fn chunk(&self, off: u64, max: usize) -> Bytes {
        let len = self.len();
        if off >= len || max == 0 {
            return Bytes::new();
        }
        let n = (len - off).min(max as u64) as usize;
        match &self.inner {
            ContentInner::Static(b) => b.slice(off as usize..off as usize + n),
            ContentInner::Synth(s) => {
                let mut out = BytesMut::with_capacity(n);
                s.fill(off, n, &mut out);
                out.freeze()
            }
            ContentInner::Ulaw(s, header) => {
                let mut out = BytesMut::with_capacity(n);
                let (mut off, mut n) = (off, n);
                if off < ULAW_HEADER_LEN {
                    let take = ((ULAW_HEADER_LEN - off) as usize).min(n);
                    out.extend_from_slice(&header[off as usize..off as usize + take]);
                    off += take as u64;
                    n -= take;
                }
                // Sample k of the μ-law data is PCM sample k of the synth.
                let mut pcm = BytesMut::with_capacity(2 * n.min(CHUNK_SAMPLES));
                while n > 0 {
                    let take = n.min(CHUNK_SAMPLES);
                    let first = off - ULAW_HEADER_LEN;
                    pcm.clear();
                    s.fill(HEADER_LEN + 2 * first, 2 * take, &mut pcm);
                    out.extend(
                        pcm.chunks_exact(2)
                            .map(|b| linear_to_ulaw(i16::from_le_bytes([b[0], b[1]]))),
                    );
                    off += take as u64;
                    n -= take;
                }
                out.freeze()
            }
        }
    }

    /// A blocking reader over the whole content.
    pub fn reader(&self) -> Box<dyn Read + Send> {
        Box::new(ContentReader {
            content: self.clone(),
            pos: 0,
        })
    }
}

/// Duration in ms of a synthesized WAV of `len` total bytes.
pub fn synth_duration_ms(len: u64) -> u64 {
    len.saturating_sub(HEADER_LEN) * 1000 / (SYNTH_SAMPLE_RATE as u64 * 2)
}

pub(crate) fn seed_of(id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Synth {
    fn new(seed: u64, size_bytes: u64) -> Synth {
        let data_len = size_bytes.saturating_sub(HEADER_LEN) & !1;
        let mut header = [0u8; 44];
        let riff = u32::try_from(36 + data_len).unwrap_or(u32::MAX);
        let data = u32::try_from(data_len).unwrap_or(u32::MAX);
        header[0..4].copy_from_slice(b"RIFF");
        header[4..8].copy_from_slice(&riff.to_le_bytes());
        header[8..12].copy_from_slice(b"WAVE");
        header[12..16].copy_from_slice(b"fmt ");
        header[16..20].copy_from_slice(&16u32.to_le_bytes());
        header[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
        header[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
        header[24..28].copy_from_slice(&SYNTH_SAMPLE_RATE.to_le_bytes());
        header[28..32].copy_from_slice(&(SYNTH_SAMPLE_RATE * 2).to_le_bytes());
        header[32..34].copy_from_slice(&2u16.to_le_bytes());
        header[34..36].copy_from_slice(&16u16.to_le_bytes());
        header[36..40].copy_from_slice(b"data");
        header[40..44].copy_from_slice(&data.to_le_bytes());

        // A tone whose pitch depends on the seed, plus a little xorshift noise.
        let freq = 200.0 + (seed % 600) as f64;
        let mut x = seed | 1;
        let mut block = vec![0u8; BLOCK];
        for (i, s) in block.chunks_exact_mut(2).enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = i as f64 / SYNTH_SAMPLE_RATE as f64;
            let v = (t * freq * std::f64::consts::TAU).sin() * 6000.0 + ((x % 512) as f64 - 256.0);
            s.copy_from_slice(&(v as i16).to_le_bytes());
        }
        Synth {
            header,
            block: block.into_boxed_slice(),
            seed,
            data_len,
        }
    }

    /// Append `n` bytes starting at absolute offset `off` to `out`.
    fn fill(&self, mut off: u64, mut n: usize, out: &mut BytesMut) {
        if off < HEADER_LEN {
            let take = ((HEADER_LEN - off) as usize).min(n);
            out.extend_from_slice(&self.header[off as usize..off as usize + take]);
            off += take as u64;
            n -= take;
        }
        while n > 0 {
            let d = off - HEADER_LEN;
            let blk = d / BLOCK as u64;
            let within = (d % BLOCK as u64) as usize;
            let take = (BLOCK - within).min(n);
            let start = out.len();
            out.extend_from_slice(&self.block[within..within + take]);
            // Each block starts with its counter mixed with the seed, so blocks differ.
            if within < 8 {
                let ctr = (blk ^ self.seed.rotate_left(17)).to_le_bytes();
                let k = (8 - within).min(take);
                out[start..start + k].copy_from_slice(&ctr[within..within + k]);
            }
            off += take as u64;
            n -= take;
        }
    }
}

struct ContentReader {
    content: Content,
    pos: u64,
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let c = self.content.chunk(self.pos, buf.len());
        buf[..c.len()].copy_from_slice(&c);
        self.pos += c.len() as u64;
        Ok(c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_header_and_determinism() {
        let c = Content::new(
            MediaSource::SynthWav {
                size_bytes: 300_001,
            },
            "rec-1",
        );
        assert_eq!(c.len(), 300_000);
        let all = c.chunk(0, usize::MAX);
        assert_eq!(all.len(), 300_000);
        assert_eq!(&all[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(all[4..8].try_into().unwrap()),
            300_000 - 8
        );
        assert_eq!(&all[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([all[20], all[21]]), 1);
        assert_eq!(&all[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes(all[40..44].try_into().unwrap()),
            300_000 - 44
        );
        // Deterministic per id, different across ids.
        let again = Content::new(
            MediaSource::SynthWav {
                size_bytes: 300_000,
            },
            "rec-1",
        );
        assert_eq!(again.chunk(0, usize::MAX), all);
        let other = Content::new(
            MediaSource::SynthWav {
                size_bytes: 300_000,
            },
            "rec-2",
        );
        assert_ne!(other.chunk(44, 1000), all.slice(44..1044));
        // Arbitrary ranges equal the full read.
        for (a, n) in [
            (0, 1),
            (3, 100),
            (43, 2),
            (65_570, 70_000),
            (131_000, 5),
            (299_990, 50),
        ] {
            let part = c.chunk(a, n);
            let end = (a as usize + n).min(all.len());
            assert_eq!(part, all.slice(a as usize..end), "range {a}+{n}");
        }
        let mut via_reader = Vec::new();
        c.reader().read_to_end(&mut via_reader).unwrap();
        assert_eq!(via_reader, all);
    }

    #[test]
    fn real_samples_have_codec_magic() {
        let w = real_sample(Codec::WavPcm);
        assert!(w.starts_with(b"RIFF") && &w[8..12] == b"WAVE");
        assert_eq!(u16::from_le_bytes([w[20], w[21]]), 1);
        let u = real_sample(Codec::WavUlaw);
        assert!(u.starts_with(b"RIFF"));
        assert_eq!(u16::from_le_bytes([u[20], u[21]]), 7);
        let o = real_sample(Codec::OggOpus);
        assert!(o.starts_with(b"OggS") && o.windows(8).any(|w| w == b"OpusHead"));
        let v = real_sample(Codec::OggVorbis);
        assert!(v.starts_with(b"OggS") && v.windows(7).any(|w| w == b"\x01vorbis"));
        let m = real_sample(Codec::Mp3);
        assert!(m.starts_with(b"ID3") || (m[0] == 0xFF && m[1] & 0xE0 == 0xE0));
        assert!(real_sample(Codec::Webm).starts_with(&[0x1A, 0x45, 0xDF, 0xA3]));
    }
}
