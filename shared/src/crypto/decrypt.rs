//! Push-based streaming decryption that releases only authenticated plaintext.

use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::format::{
    derive_keys, frame_iv, parse_header, verify_header_tag, BodyAad, Header, Parsed,
    FINAL_FRAME_MARKER, IV_LEN, MESSAGE_ID_LEN, TAG_LEN,
};
use super::{CryptoError, EncryptionContext, Keyring};

/// What a decryption must additionally insist on.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    /// Every pair must be present in the message's encryption context with an equal value.
    pub required_context: EncryptionContext,
}

/// Facts about a completely decrypted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptedInfo {
    pub context: EncryptionContext,
    pub frame_len: u32,
    /// Lower-case hex of the 32-byte message id.
    pub message_id: String,
    pub plaintext_len: u64,
}

struct Body {
    message_id: [u8; MESSAGE_ID_LEN],
    context: EncryptionContext,
    key: LessSafeKey,
    frame_len: u32,
    next_seq: u32,
    plaintext_len: u64,
}

enum State {
    /// Waiting until the buffer holds at least this many bytes before parsing again.
    Header {
        need: usize,
    },
    Body(Body),
    Done(Body),
    Failed,
}

/// Result of looking at the start of the buffered body bytes.
enum Step {
    NeedMore,
    /// A frame of this many bytes was authenticated and its plaintext appended.
    Frame {
        len: usize,
        is_final: bool,
    },
}

/// Incremental decryptor: feed ciphertext in any chunking with [`push`](Self::push), get back
/// plaintext of whole authenticated frames, then call [`finish`](Self::finish) at end of input.
///
/// Plaintext released before `finish` succeeds is authentic but may be a prefix of the message:
/// only a successful `finish` proves the message was complete. After any error the decryptor is
/// poisoned and every later call fails.
pub struct StreamDecryptor {
    keyring: Arc<dyn Keyring>,
    opts: DecryptOptions,
    buf: Vec<u8>,
    state: State,
}

impl std::fmt::Debug for StreamDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Header { .. } => "header",
            State::Body(_) => "body",
            State::Done(_) => "done",
            State::Failed => "failed",
        };
        f.debug_struct("StreamDecryptor")
            .field("state", &state)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl StreamDecryptor {
    pub fn new(keyring: Arc<dyn Keyring>, opts: DecryptOptions) -> Self {
        Self {
            keyring,
            opts,
            buf: Vec::new(),
            state: State::Header { need: 1 },
        }
    }

    /// The authenticated encryption context, once the header has been verified.
    pub fn context(&self) -> Option<&EncryptionContext> {
        match &self.state {
            State::Body(b) | State::Done(b) => Some(&b.context),
            _ => None,
        }
    }

    /// Frame length from the verified header.
    pub fn frame_len(&self) -> Option<u32> {
        match &self.state {
            State::Body(b) | State::Done(b) => Some(b.frame_len),
            _ => None,
        }
    }

    /// Whether the final frame has been authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// Feeds ciphertext; returns the plaintext of every frame completed and authenticated by it.
    pub async fn push(&mut self, ciphertext: &[u8]) -> Result<Bytes, CryptoError> {
        match self.state {
            State::Failed => {
                return Err(CryptoError::Malformed(
                    "decryptor already failed on this message".into(),
                ))
            }
            State::Done(_) if !ciphertext.is_empty() => {
                self.poison();
                return Err(CryptoError::TrailingBytes);
            }
            _ => {}
        }
        self.buf.extend_from_slice(ciphertext);
        let res = self.advance().await;
        if res.is_err() {
            self.poison();
        }
        res
    }

    fn poison(&mut self) {
        self.state = State::Failed;
        self.buf = Vec::new();
    }

    async fn advance(&mut self) -> Result<Bytes, CryptoError> {
        if let State::Header { need } = self.state {
            if self.buf.len() < need {
                return Ok(Bytes::new());
            }
            match parse_header(&self.buf)? {
                Parsed::Incomplete(need) => {
                    self.state = State::Header { need };
                    return Ok(Bytes::new());
                }
                Parsed::Complete(header) => {
                    let body = self.open_header(&header).await?;
                    self.buf.drain(..header.total_len());
                    self.state = State::Body(body);
                }
            }
        }
        let State::Body(body) = &mut self.state else {
            return Ok(Bytes::new());
        };
        let mut out = Vec::new();
        let mut pos = 0;
        let mut finished = false;
        while let Step::Frame { len, is_final } = body.next_frame(&self.buf[pos..], &mut out)? {
            pos += len;
            if is_final {
                if pos != self.buf.len() {
                    return Err(CryptoError::TrailingBytes);
                }
                finished = true;
                break;
            }
        }
        self.buf.drain(..pos);
        if finished {
            if let State::Body(body) = std::mem::replace(&mut self.state, State::Failed) {
                self.state = State::Done(body);
            }
        }
        Ok(Bytes::from(out))
    }

    /// Obtains the data key and checks commitment, header tag and required context, in that order.
    async fn open_header(&self, header: &Header) -> Result<Body, CryptoError> {
        let data_key = self
            .keyring
            .decrypt_data_key(&header.edks, &header.context)
            .await?;
        let keys = derive_keys(&data_key, &header.message_id)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            keys.commit_key.as_ref(),
            &header.commit_key,
        )
        .map_err(|_| CryptoError::BadCommitment)?;
        let body_bytes = self
            .buf
            .get(..header.body_len)
            .ok_or(CryptoError::Truncated)?;
        verify_header_tag(&keys.aead, body_bytes, &header.auth_tag)?;
        header.context.check_required(&self.opts.required_context)?;
        Ok(Body {
            message_id: header.message_id,
            context: header.context.clone(),
            key: keys.aead,
            frame_len: header.frame_len,
            next_seq: 1,
            plaintext_len: 0,
        })
    }

    /// End of input. Fails with `Truncated` unless the final frame was authenticated.
    pub fn finish(self) -> Result<DecryptedInfo, CryptoError> {
        match self.state {
            State::Done(body) if self.buf.is_empty() => Ok(DecryptedInfo {
                context: body.context,
                frame_len: body.frame_len,
                message_id: hex::encode(body.message_id),
                plaintext_len: body.plaintext_len,
            }),
            State::Done(_) => Err(CryptoError::TrailingBytes),
            State::Header { .. } | State::Body(_) => Err(CryptoError::Truncated),
            State::Failed => Err(CryptoError::Malformed(
                "decryptor already failed on this message".into(),
            )),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Body {
    fn next_frame(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<Step, CryptoError> {
        const FINAL_PREFIX: usize = 4 + 4 + IV_LEN + 4;
        if buf.len() < 4 {
            return Ok(Step::NeedMore);
        }
        let is_final = be_u32(&buf[..4]) == FINAL_FRAME_MARKER;
        let seq_at = if is_final { 4 } else { 0 };
        if buf.len() < seq_at + 4 {
            return Ok(Step::NeedMore);
        }
        let seq = be_u32(&buf[seq_at..seq_at + 4]);
        if seq != self.next_seq {
            return Err(CryptoError::BadSequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        let (content_at, content_len) = if is_final {
            if buf.len() < FINAL_PREFIX {
                return Ok(Step::NeedMore);
            }
            let len = be_u32(&buf[FINAL_PREFIX - 4..FINAL_PREFIX]);
            if len > self.frame_len {
                return Err(CryptoError::FinalFrameTooLong {
                    content_len: len,
                    frame_len: self.frame_len,
                });
            }
            (FINAL_PREFIX, len as usize)
        } else {
            (4 + IV_LEN, self.frame_len as usize)
        };
        let total = content_at + content_len + TAG_LEN;
        if buf.len() < total {
            return Ok(Step::NeedMore);
        }
        let iv = frame_iv(seq);
        if buf[seq_at + 4..seq_at + 4 + IV_LEN] != iv {
            return Err(CryptoError::Malformed(format!(
                "frame {seq} IV is not its sequence number"
            )));
        }
        let ciphertext = &buf[content_at..content_at + content_len];
        let tag = &buf[content_at + content_len..total];
        let aad = BodyAad::new(&self.message_id, is_final, seq, content_len as u64);
        let start = out.len();
        out.resize(start + content_len, 0);
        if self
            .key
            .open_separate_gather(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad.as_slice()),
                ciphertext,
                tag,
                &mut out[start..],
            )
            .is_err()
        {
            out.truncate(start);
            return Err(CryptoError::FrameAuthFailed { sequence: seq });
        }
        self.plaintext_len += content_len as u64;
        if !is_final {
            // A regular frame numbered 0xFFFF_FFFE leaves only the final frame, whose number
            // 0xFFFF_FFFF cannot be confused with a regular one: the marker comes first.
            self.next_seq = seq.wrapping_add(1);
        }
        Ok(Step::Frame {
            len: total,
            is_final,
        })
    }
}

/// Decrypts everything `reader` yields into `writer` (flushed at the end). On error, `writer` may
/// already hold a prefix of authenticated plaintext; treat it as garbage.
pub async fn decrypt_to_writer<R, W>(
    keyring: Arc<dyn Keyring>,
    opts: DecryptOptions,
    mut reader: R,
    mut writer: W,
) -> Result<DecryptedInfo, CryptoError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut dec = StreamDecryptor::new(keyring, opts);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let plain = dec.push(&buf[..n]).await?;
        if !plain.is_empty() {
            writer.write_all(&plain).await?;
        }
    }
    let info = dec.finish()?;
    writer.flush().await?;
    Ok(info)
}

/// Decrypts a complete in-memory message.
pub async fn decrypt_bytes(
    keyring: Arc<dyn Keyring>,
    opts: DecryptOptions,
    ciphertext: &[u8],
) -> Result<(Vec<u8>, DecryptedInfo), CryptoError> {
    let mut dec = StreamDecryptor::new(keyring, opts);
    let plain = dec.push(ciphertext).await?;
    let info = dec.finish()?;
    Ok((Vec::from(plain), info))
}
