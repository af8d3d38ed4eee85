//! Byte-level derivations of the committed samples: what makes one rendition differ from
//! another of the same codec while staying a valid file of that codec.
//!
//! * Ogg: a new stream serial number with every page CRC recomputed (a "fresh encode").
//! * WAV PCM / μ-law: the second channel is the first with inverted polarity.
//! * MP3: a different ID3v2 tag in front of the same MPEG frames.
//! * WebM: a marker written into the first EBML `Void` element of the segment.
//!
//! None of this decodes or encodes audio; it only has to look like a real encoder's output
//! to a client that sniffs, checksums and stores bytes.

use crate::digest::ogg_crc;

/// Rewrite every Ogg page with `serial ^ xor` as its stream serial and a recomputed CRC.
/// Returns `None` when `data` is not a sequence of Ogg pages.
pub(crate) fn ogg_reserial(data: &[u8], xor: u32) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0usize;
    while i < data.len() {
        let page = data.get(i..)?;
        if page.len() < 27 || &page[..4] != b"OggS" {
            return None;
        }
        let nsegs = page[26] as usize;
        let segs = page.get(27..27 + nsegs)?;
        let len = 27 + nsegs + segs.iter().map(|&s| s as usize).sum::<usize>();
        let mut p = page.get(..len)?.to_vec();
        let serial = u32::from_le_bytes([p[14], p[15], p[16], p[17]]) ^ xor;
        p[14..18].copy_from_slice(&serial.to_le_bytes());
        p[22..26].copy_from_slice(&[0; 4]);
        let crc = ogg_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&p);
        i += len;
    }
    Some(out)
}

/// Byte range of the `data` chunk of a RIFF/WAVE file.
pub(crate) fn wav_data_range(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return None;
    }
    let mut i = 12usize;
    while i + 8 <= data.len() {
        let id = &data[i..i + 4];
        let size =
            u32::from_le_bytes([data[i + 4], data[i + 5], data[i + 6], data[i + 7]]) as usize;
        let start = i + 8;
        if id == b"data" {
            return Some((start, (start + size).min(data.len())));
        }
        i = start + size + (size & 1);
    }
    None
}

/// Format tag of the `fmt ` chunk (1 = PCM, 7 = μ-law).
fn wav_format_tag(data: &[u8]) -> Option<u16> {
    let i = data.windows(4).position(|w| w == b"fmt ")?;
    let b = data.get(i + 8..i + 10)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// The same WAV with the polarity of every sample inverted (PCM 16-bit or μ-law).
pub(crate) fn wav_invert(data: &[u8]) -> Option<Vec<u8>> {
    let (start, end) = wav_data_range(data)?;
    let mut out = data.to_vec();
    match wav_format_tag(data)? {
        1 => {
            for s in out[start..end].chunks_exact_mut(2) {
                let v = i16::from_le_bytes([s[0], s[1]]);
                s.copy_from_slice(&v.saturating_neg().to_le_bytes());
            }
        }
        // μ-law: the top bit is the sign.
        7 => out[start..end].iter_mut().for_each(|b| *b ^= 0x80),
        _ => return None,
    }
    Some(out)
}

fn syncsafe(n: usize) -> [u8; 4] {
    let n = n as u32;
    [
        ((n >> 21) & 0x7f) as u8,
        ((n >> 14) & 0x7f) as u8,
        ((n >> 7) & 0x7f) as u8,
        (n & 0x7f) as u8,
    ]
}

/// Replace a leading ID3v2 tag (or add one) with an ID3v2.4 tag holding `TIT2 = title`.
pub(crate) fn mp3_retag(data: &[u8], title: &str) -> Vec<u8> {
    let audio_start = if data.len() >= 10 && &data[..3] == b"ID3" {
        let s = &data[6..10];
        let size = ((s[0] as usize & 0x7f) << 21)
            | ((s[1] as usize & 0x7f) << 14)
            | ((s[2] as usize & 0x7f) << 7)
            | (s[3] as usize & 0x7f);
        let footer = if data[5] & 0x10 != 0 { 10 } else { 0 };
        (10 + size + footer).min(data.len())
    } else {
        0
    };
    let mut frame_data = vec![3u8]; // UTF-8
    frame_data.extend_from_slice(title.as_bytes());
    let mut frames = Vec::new();
    frames.extend_from_slice(b"TIT2");
    frames.extend_from_slice(&syncsafe(frame_data.len()));
    frames.extend_from_slice(&[0, 0]);
    frames.extend_from_slice(&frame_data);
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&syncsafe(frames.len()));
    out.extend_from_slice(&frames);
    out.extend_from_slice(&data[audio_start..]);
    out
}

/// Read an EBML variable-length integer at `i`: (value, length). `keep_marker` keeps the
/// length marker bit (element ids are written with it).
fn ebml_vint(data: &[u8], i: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *data.get(i)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut v = if keep_marker {
        first as u64
    } else {
        (first as u64) & (0xff >> len)
    };
    for k in 1..len {
        v = (v << 8) | *data.get(i + k)? as u64;
    }
    Some((v, len))
}

/// Write `mark` into the payload of the first `Void` element among the Segment's children.
/// Returns `None` when there is no such element (or `data` is not EBML).
pub(crate) fn webm_mark(data: &[u8], mark: &[u8]) -> Option<Vec<u8>> {
    let (id, n) = ebml_vint(data, 0, true)?;
    if id != 0x1A45_DFA3 {
        return None;
    }
    let (hsize, m) = ebml_vint(data, n, false)?;
    let mut i = n + m + usize::try_from(hsize).ok()?;
    let (seg, n) = ebml_vint(data, i, true)?;
    if seg != 0x1853_8067 {
        return None;
    }
    let (_, m) = ebml_vint(data, i + n, false)?;
    i += n + m;
    // Walk the first few children of the Segment.
    for _ in 0..16 {
        let (id, n) = ebml_vint(data, i, true)?;
        let (size, m) = ebml_vint(data, i + n, false)?;
        let start = i + n + m;
        let size = usize::try_from(size).ok()?;
        if id == 0xEC {
            if size < mark.len() {
                return None;
            }
            let mut out = data.to_vec();
            out[start..start + mark.len()].copy_from_slice(mark);
            return Some(out);
        }
        i = start.checked_add(size)?;
    }
    None
}

/// G.711 μ-law encoding of one 16-bit linear sample.
pub(crate) fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && s & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mantissa) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::real_sample;
    use crate::model::Codec;

    #[test]
    fn derivations_keep_the_codec_and_change_the_bytes() {
        for c in [Codec::OggOpus, Codec::OggVorbis] {
            let a = real_sample(c);
            let b = ogg_reserial(a, 0x5a5a_0001).unwrap();
            assert_eq!(a.len(), b.len());
            assert_ne!(a, &b[..]);
            assert_eq!(
                ogg_reserial(&b, 0x5a5a_0001).unwrap(),
                a,
                "xor twice = original"
            );
        }
        for c in [Codec::WavPcm, Codec::WavUlaw] {
            let a = real_sample(c);
            let b = wav_invert(a).unwrap();
            assert_eq!(a.len(), b.len());
            assert_ne!(a, &b[..]);
            assert_eq!(&a[..40], &b[..40]);
        }
        let m = mp3_retag(real_sample(Codec::Mp3), "channel 1");
        assert!(m.starts_with(b"ID3\x04"));
        assert_ne!(&m[..], real_sample(Codec::Mp3));
        let w = webm_mark(real_sample(Codec::Webm), b"gc-sim channel 1").unwrap();
        assert_eq!(w.len(), real_sample(Codec::Webm).len());
        assert_ne!(&w[..], real_sample(Codec::Webm));
    }

    #[test]
    fn ulaw_of_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }
}
