//! Encryption: the resumable frame encryptor, a push-style streaming wrapper, and helpers.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::format::{
    check_frame_len, derive_keys, frame_iv, header_tag, parse_header, serialize_header_body,
    verify_header_tag, BodyAad, MessageKeys, Parsed, FINAL_FRAME_MARKER, FINAL_OVERHEAD, IV_LEN,
    MESSAGE_ID_LEN, REGULAR_OVERHEAD,
};
use super::{CryptoError, EncryptionContext, Keyring};

/// Encrypts one message frame by frame. The caller writes [`header`](Self::header) first, then
/// everything `encrypt_regular`/`finish` append, in order.
///
/// The only state besides the header is the next sequence number, so
/// [`checkpoint`](Self::checkpoint) + [`resume`](Self::resume) continue a message in another
/// process and produce exactly the bytes an uninterrupted run would have.
pub struct FrameEncryptor {
    header: Vec<u8>,
    message_id: [u8; MESSAGE_ID_LEN],
    context: EncryptionContext,
    keys: MessageKeys,
    frame_len: u32,
    next_seq: u32,
}

impl std::fmt::Debug for FrameEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncryptor")
            .field("message_id", &hex::encode(self.message_id))
            .field("frame_len", &self.frame_len)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// What a [`FrameEncryptor`] needs to continue after a restart. Holds no plaintext key: resuming
/// asks the keyring to decrypt the EDK in the header again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptorCheckpoint {
    /// The serialized header, standard base64.
    pub header: String,
    pub frame_len: u32,
    /// Sequence number of the next frame to write (1 for a message with no frames yet).
    pub next_sequence: u32,
}

impl FrameEncryptor {
    /// Starts a message with a random message id and a fresh data key from `keyring`.
    pub async fn new(
        keyring: &dyn Keyring,
        ctx: EncryptionContext,
        frame_len: u32,
    ) -> Result<Self, CryptoError> {
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        aws_lc_rs::rand::fill(&mut message_id).map_err(|_| CryptoError::Primitive("random"))?;
        Self::with_message_id(keyring, ctx, frame_len, message_id).await
    }

    /// Like [`new`](Self::new) with a caller-chosen message id. Reusing a message id with the same
    /// data key breaks the security of the format; this exists only for deterministic tests.
    #[doc(hidden)]
    pub async fn with_message_id(
        keyring: &dyn Keyring,
        ctx: EncryptionContext,
        frame_len: u32,
        message_id: [u8; MESSAGE_ID_LEN],
    ) -> Result<Self, CryptoError> {
        check_frame_len(frame_len)?;
        ctx.validate_for_encrypt()?;
        let (data_key, edks) = keyring.generate_data_key(&ctx).await?;
        let keys = derive_keys(&data_key, &message_id)?;
        let mut header =
            serialize_header_body(&message_id, &ctx, &edks, frame_len, &keys.commit_key)?;
        let tag = header_tag(&keys.aead, &header)?;
        header.extend_from_slice(tag.as_ref());
        Ok(Self {
            header,
            message_id,
            context: ctx,
            keys,
            frame_len,
            next_seq: 1,
        })
    }

    /// The complete header, auth tag included.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    pub fn frame_len(&self) -> u32 {
        self.frame_len
    }

    pub fn context(&self) -> &EncryptionContext {
        &self.context
    }

    pub fn message_id_hex(&self) -> String {
        hex::encode(self.message_id)
    }

    /// Sequence number the next frame will get.
    pub fn next_sequence(&self) -> u32 {
        self.next_seq
    }

    /// Plaintext bytes already encrypted (all in regular frames).
    pub fn plaintext_consumed(&self) -> u64 {
        u64::from(self.next_seq - 1) * u64::from(self.frame_len)
    }

    /// Encrypts `plaintext` as regular frames; its length must be a multiple of the frame length.
    ///
    /// `out` grows once by the exact size of the frames, and each frame's ciphertext is written
    /// straight from `plaintext` into its place in `out` (out of place): the plaintext is read
    /// once, by AES-GCM itself, instead of being copied into `out` and encrypted in place.
    pub fn encrypt_regular(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let start = out.len();
        let first_seq = self.next_seq;
        // Safe Rust cannot hand uninitialised memory to the AEAD, so the room for all frames is
        // zeroed first, in one go (a per-frame `resize` measured slower). Callers that reuse
        // buffers avoid even that with `encrypt_regular_into`.
        out.resize(start + self.regular_len(plaintext.len())?, 0);
        match self.encrypt_regular_into(plaintext, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                // Keep the frames already sealed, so `out` and `next_sequence` stay consistent.
                let sealed = (self.next_seq - first_seq) as usize;
                out.truncate(
                    start + sealed * (self.frame_len as usize + REGULAR_OVERHEAD as usize),
                );
                Err(e)
            }
        }
    }

    /// Bytes that `plaintext_len` bytes of regular frames take (it must be frame-aligned).
    pub fn regular_len(&self, plaintext_len: usize) -> Result<usize, CryptoError> {
        let f = self.frame_len as usize;
        if !plaintext_len.is_multiple_of(f) {
            return Err(CryptoError::NotFrameAligned {
                len: plaintext_len,
                frame_len: self.frame_len,
            });
        }
        Ok(plaintext_len / f * (f + REGULAR_OVERHEAD as usize))
    }

    /// Bytes that [`finish`](Self::finish) writes for `plaintext_len` bytes.
    pub fn final_len(&self, plaintext_len: usize) -> usize {
        let f = self.frame_len as usize;
        let regular = if plaintext_len == 0 {
            0
        } else {
            (plaintext_len - 1) / f
        };
        regular * (f + REGULAR_OVERHEAD as usize)
            + (plaintext_len - regular * f)
            + FINAL_OVERHEAD as usize
    }

    /// Like [`encrypt_regular`](Self::encrypt_regular), into the front of `out` (which may hold
    /// anything: every byte written is overwritten); returns the bytes written. On a failure the
    /// frames sealed before it stay written and counted in `next_sequence`.
    pub fn encrypt_regular_into(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let f = self.frame_len as usize;
        let need = self.regular_len(plaintext.len())?;
        let frames = plaintext.len() / f;
        // The last regular frame may use 0xFFFF_FFFE; 0xFFFF_FFFF is the final-frame marker.
        if u64::from(self.next_seq) + frames as u64 > u64::from(FINAL_FRAME_MARKER) {
            return Err(CryptoError::TooManyFrames);
        }
        if out.len() < need {
            return Err(CryptoError::OutputTooSmall {
                need,
                have: out.len(),
            });
        }
        let frame_out = f + REGULAR_OVERHEAD as usize;
        let slots = plaintext
            .chunks_exact(f)
            .zip(out[..need].chunks_exact_mut(frame_out));
        for (pt, frame) in slots {
            let seq = self.next_seq;
            let (head, body) = frame.split_at_mut(4 + IV_LEN);
            let iv = frame_iv(seq);
            head[..4].copy_from_slice(&seq.to_be_bytes());
            head[4..].copy_from_slice(&iv);
            let (ct, tag) = body.split_at_mut(f);
            self.seal(false, seq, iv, pt, ct, tag)
                .map_err(|_| CryptoError::Primitive("AES-GCM seal"))?;
            self.next_seq = seq.wrapping_add(1);
        }
        Ok(need)
    }

    /// Encrypts the rest of the message: whole regular frames, then the final frame holding the
    /// last 1..=frame_len bytes (or nothing, for an empty remainder).
    pub fn finish(self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let start = out.len();
        out.resize(start + self.final_len(plaintext.len()), 0);
        match self.finish_into(plaintext, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Like [`finish`](Self::finish), into the front of `out`; returns the bytes written.
    pub fn finish_into(mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        let need = self.final_len(plaintext.len());
        if out.len() < need {
            return Err(CryptoError::OutputTooSmall {
                need,
                have: out.len(),
            });
        }
        let f = self.frame_len as usize;
        let regular = if plaintext.is_empty() {
            0
        } else {
            (plaintext.len() - 1) / f * f
        };
        let (head, last) = plaintext.split_at(regular);
        let start = self.encrypt_regular_into(head, out)?;
        let seq = self.next_seq;
        let frame = &mut out[start..need];
        let (head, body) = frame.split_at_mut(4 + 4 + IV_LEN + 4);
        let iv = frame_iv(seq);
        head[..4].copy_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
        head[4..8].copy_from_slice(&seq.to_be_bytes());
        head[8..8 + IV_LEN].copy_from_slice(&iv);
        // `last` holds at most frame_len bytes, which is a u32.
        head[8 + IV_LEN..].copy_from_slice(&(last.len() as u32).to_be_bytes());
        let (ct, tag) = body.split_at_mut(last.len());
        self.seal(true, seq, iv, last, ct, tag)
            .map_err(|_| CryptoError::Primitive("AES-GCM seal"))?;
        Ok(need)
    }

    /// Seals one frame's content from `plaintext` into `ciphertext` (same length) and `tag`.
    fn seal(
        &self,
        is_final: bool,
        seq: u32,
        iv: [u8; IV_LEN],
        plaintext: &[u8],
        ciphertext: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), aws_lc_rs::error::Unspecified> {
        let aad = BodyAad::new(&self.message_id, is_final, seq, plaintext.len() as u64);
        self.keys.aead.seal_out_of_place_scatter(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad.as_slice()),
            plaintext,
            ciphertext,
            &[],
            tag,
        )
    }

    /// State to persist so that [`resume`](Self::resume) can continue this message.
    pub fn checkpoint(&self) -> EncryptorCheckpoint {
        EncryptorCheckpoint {
            header: base64::engine::general_purpose::STANDARD.encode(&self.header),
            frame_len: self.frame_len,
            next_sequence: self.next_seq,
        }
    }

    /// Re-creates the encryptor from a checkpoint: parses the header, has `keyring` decrypt its
    /// data key, re-derives the keys and checks them against the header's commitment and tag.
    pub async fn resume(
        keyring: &dyn Keyring,
        cp: &EncryptorCheckpoint,
    ) -> Result<Self, CryptoError> {
        let header = base64::engine::general_purpose::STANDARD
            .decode(&cp.header)
            .map_err(|_| CryptoError::Checkpoint("header is not base64".into()))?;
        let parsed = match parse_header(&header)? {
            Parsed::Complete(h) if h.total_len() == header.len() => h,
            _ => {
                return Err(CryptoError::Checkpoint(
                    "header is incomplete or has extra bytes".into(),
                ))
            }
        };
        if parsed.frame_len != cp.frame_len {
            return Err(CryptoError::Checkpoint(
                "frame length differs from the header".into(),
            ));
        }
        if cp.next_sequence == 0 || cp.next_sequence == FINAL_FRAME_MARKER {
            return Err(CryptoError::Checkpoint(format!(
                "next sequence number {} is out of range",
                cp.next_sequence
            )));
        }
        let data_key = keyring
            .decrypt_data_key(&parsed.edks, &parsed.context)
            .await?;
        let keys = derive_keys(&data_key, &parsed.message_id)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            keys.commit_key.as_ref(),
            &parsed.commit_key,
        )
        .map_err(|_| CryptoError::BadCommitment)?;
        verify_header_tag(&keys.aead, &header[..parsed.body_len], &parsed.auth_tag)?;
        Ok(Self {
            message_id: parsed.message_id,
            context: parsed.context,
            keys,
            frame_len: parsed.frame_len,
            next_seq: cp.next_sequence,
            header,
        })
    }
}

/// Exact message size for `plaintext_len` bytes encrypted by [`FrameEncryptor::finish`] or
/// [`StreamEncryptor`] (a non-empty plaintext never ends with an empty final frame).
pub fn ciphertext_len(header_len: usize, plaintext_len: u64, frame_len: u32) -> u64 {
    let f = u64::from(frame_len.max(1));
    let regular = if plaintext_len == 0 {
        0
    } else {
        (plaintext_len - 1) / f
    };
    let last = plaintext_len - regular * f;
    header_len as u64 + regular * (f + REGULAR_OVERHEAD) + FINAL_OVERHEAD + last
}

/// Push-style encryption of a plaintext of unknown length. Holds back at most one frame of
/// plaintext so that the final frame is only empty for an empty message. The header is emitted
/// with the first output.
#[derive(Debug)]
pub struct StreamEncryptor {
    enc: FrameEncryptor,
    pending: Vec<u8>,
    header_emitted: bool,
}

impl StreamEncryptor {
    pub fn new(enc: FrameEncryptor) -> Self {
        let pending = Vec::with_capacity(enc.frame_len as usize);
        Self {
            enc,
            pending,
            header_emitted: false,
        }
    }

    pub fn header(&self) -> &[u8] {
        self.enc.header()
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_emitted {
            out.extend_from_slice(self.enc.header());
            self.header_emitted = true;
        }
    }

    /// Appends to `out` the ciphertext for every frame that is now known not to be the last.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.emit_header(out);
        let f = self.enc.frame_len as usize;
        if !self.pending.is_empty() {
            let take = (f - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if data.is_empty() {
                return Ok(());
            }
            // A full pending frame followed by more input cannot be the final frame.
            self.enc.encrypt_regular(&self.pending, out)?;
            self.pending.clear();
        }
        if data.len() > f {
            let whole = (data.len() - 1) / f * f;
            self.enc.encrypt_regular(&data[..whole], out)?;
            data = &data[whole..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Like [`push`](Self::push), returning the output as `Bytes`.
    pub fn push_bytes(&mut self, data: &[u8]) -> Result<Bytes, CryptoError> {
        let mut out = Vec::new();
        self.push(data, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// Appends the final frame (and the header, if nothing was pushed).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.emit_header(out);
        let pending = std::mem::take(&mut self.pending);
        self.enc.finish(&pending, out)
    }
}

/// Encrypts a byte stream of unknown length; items are header and frames, in order. Memory is
/// bounded by one frame plus one input chunk.
pub fn encrypt_stream<S, E>(
    enc: FrameEncryptor,
    input: S,
) -> impl Stream<Item = Result<Bytes, CryptoError>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    let state = Some((StreamEncryptor::new(enc), Box::pin(input)));
    futures::stream::unfold(state, |state| async move {
        let (mut se, mut input) = state?;
        loop {
            match input.next().await {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    if let Err(e) = se.push(&chunk, &mut out) {
                        return Some((Err(e), None));
                    }
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), Some((se, input))));
                    }
                }
                Some(Err(e)) => return Some((Err(CryptoError::Source(e.into())), None)),
                None => {
                    let mut out = Vec::new();
                    let res = se.finish(&mut out).map(|()| Bytes::from(out));
                    return Some((res, None));
                }
            }
        }
    })
}

/// Encrypts everything `reader` yields into `writer` (flushed at the end); returns the number of
/// ciphertext bytes written.
pub async fn encrypt_to_writer<R, W>(
    keyring: &dyn Keyring,
    ctx: EncryptionContext,
    frame_len: u32,
    mut reader: R,
    mut writer: W,
) -> Result<u64, CryptoError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let enc = FrameEncryptor::new(keyring, ctx, frame_len).await?;
    let mut se = StreamEncryptor::new(enc);
    let mut buf = vec![0u8; (frame_len as usize).clamp(8 << 10, 1 << 20)];
    let mut out = Vec::new();
    let mut written = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        se.push(&buf[..n], &mut out)?;
        if !out.is_empty() {
            writer.write_all(&out).await?;
            written += out.len() as u64;
            out.clear();
        }
    }
    se.finish(&mut out)?;
    writer.write_all(&out).await?;
    writer.flush().await?;
    Ok(written + out.len() as u64)
}

/// Encrypts an in-memory plaintext into a complete message.
pub async fn encrypt_bytes(
    keyring: &dyn Keyring,
    ctx: EncryptionContext,
    frame_len: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let enc = FrameEncryptor::new(keyring, ctx, frame_len).await?;
    let mut out =
        Vec::with_capacity(
            ciphertext_len(enc.header().len(), plaintext.len() as u64, frame_len) as usize,
        );
    out.extend_from_slice(enc.header());
    enc.finish(plaintext, &mut out)?;
    Ok(out)
}

/// Pays up front, once per process, what aws-lc would otherwise charge the first encryption:
/// CPU feature detection, the seeding of its random generator (the CPU-jitter entropy source
/// behind its DRBG tree takes tens of milliseconds), and a first AES-256-GCM key schedule and
/// seal. Meant for a Lambda's init phase, which is not billed against the first invocation's
/// timeout; later calls return at once. Threads that encrypt afterwards still seed their own
/// generator, but from the process-wide one, which is cheap.
pub fn warm_up() -> Result<(), CryptoError> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Acquire) {
        return Ok(());
    }
    aws_lc_rs::init();
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| CryptoError::Primitive("random"))?;
    let key = UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map_err(|_| CryptoError::Primitive("AES-256-GCM key"))?;
    let _tag = header_tag(&LessSafeKey::new(key), b"warm-up")?;
    // Two threads racing here both do the work once; that is harmless, and aws-lc's own
    // initialisation is guarded by its own once-flags.
    DONE.store(true, Ordering::Release);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RawAesKeyring;

    /// The obvious layout, frame by frame: header fields, the plaintext copied in and sealed in
    /// place, the tag appended. The out-of-place encryptor must produce exactly these bytes.
    fn reference_body(enc: &FrameEncryptor, plaintext: &[u8]) -> Vec<u8> {
        let f = enc.frame_len as usize;
        let regular = if plaintext.is_empty() {
            0
        } else {
            (plaintext.len() - 1) / f
        };
        let mut out = Vec::new();
        let mut frames: Vec<(bool, &[u8])> = plaintext[..regular * f]
            .chunks_exact(f)
            .map(|c| (false, c))
            .collect();
        frames.push((true, &plaintext[regular * f..]));
        for (i, (is_final, pt)) in frames.into_iter().enumerate() {
            let seq = enc.next_seq + i as u32;
            if is_final {
                out.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
            }
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&frame_iv(seq));
            if is_final {
                out.extend_from_slice(&(pt.len() as u32).to_be_bytes());
            }
            let at = out.len();
            out.extend_from_slice(pt);
            let aad = BodyAad::new(&enc.message_id, is_final, seq, pt.len() as u64);
            let tag = enc
                .keys
                .aead
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(frame_iv(seq)),
                    Aad::from(aad.as_slice()),
                    &mut out[at..],
                )
                .expect("seal");
            out.extend_from_slice(tag.as_ref());
        }
        out
    }

    #[tokio::test]
    async fn out_of_place_frames_are_the_bytes_of_copy_and_seal_in_place() {
        let keyring = RawAesKeyring::new("ns", "name", [9u8; 32]).expect("keyring");
        let ctx = EncryptionContext::new().with("k", "v");
        let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for frame_len in [1u32, 16, 1000, 4096, 65536] {
            for len in [0usize, 1, 999, 1000, 1001, 4096 * 3, 65536, 200_000] {
                let pt = &plaintext[..len];
                let enc =
                    FrameEncryptor::with_message_id(&keyring, ctx.clone(), frame_len, [7; 32])
                        .await
                        .expect("encryptor");
                let expected = reference_body(&enc, pt);
                // Whole message in one call, and in frame-aligned calls of two frames each.
                let mut whole = vec![0xEE; 3];
                let mut split = Vec::new();
                let mut enc2 = FrameEncryptor::resume(&keyring, &enc.checkpoint())
                    .await
                    .expect("resume");
                enc.finish(pt, &mut whole).expect("finish");
                assert_eq!(&whole[..3], &[0xEE; 3], "bytes before the frames are kept");
                assert!(
                    whole[3..] == expected[..],
                    "frame {frame_len}, len {len}: one call"
                );
                let f = frame_len as usize;
                let regular = if len == 0 { 0 } else { (len - 1) / f * f };
                for c in pt[..regular].chunks(2 * f) {
                    enc2.encrypt_regular(c, &mut split).expect("regular");
                }
                enc2.finish(&pt[regular..], &mut split).expect("finish");
                assert!(
                    split == expected,
                    "frame {frame_len}, len {len}: frame-aligned calls"
                );
            }
        }
    }
}
