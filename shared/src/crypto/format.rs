//! Wire format of ESDK v2 messages for suite 0x0478: header (de)serialization, key derivation and
//! commitment, and the per-frame AEAD inputs.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use super::{CryptoError, DataKey, EncryptedDataKey, EncryptionContext, ALGORITHM_SUITE_ID};

pub(crate) const VERSION: u8 = 0x02;
pub(crate) const CONTENT_TYPE_FRAMED: u8 = 0x02;
pub(crate) const MESSAGE_ID_LEN: usize = 32;
pub(crate) const COMMIT_KEY_LEN: usize = 32;
pub(crate) const IV_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;
/// Sequence number, IV and tag around the content of a regular frame.
pub(crate) const REGULAR_OVERHEAD: u64 = 4 + IV_LEN as u64 + TAG_LEN as u64;
/// Marker, sequence number, IV, content length and tag around the content of the final frame.
pub(crate) const FINAL_OVERHEAD: u64 = 4 + 4 + IV_LEN as u64 + 4 + TAG_LEN as u64;

/// Upper bound on a header we are willing to buffer before its authenticity is known.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Upper bound on the EDK count a header may declare; each one may cost a KMS call.
pub const MAX_ENCRYPTED_DATA_KEYS: usize = 256;
/// Largest frame length accepted, so a hostile header cannot make the decryptor buffer gigabytes
/// of ciphertext before the first authentication tag can be checked.
pub const MAX_FRAME_LEN: u32 = 64 << 20;

const BODY_AAD_REGULAR: &[u8] = b"AWSKMSEncryptionClient Frame";
const BODY_AAD_FINAL: &[u8] = b"AWSKMSEncryptionClient Final Frame";

pub(crate) fn check_frame_len(frame_len: u32) -> Result<(), CryptoError> {
    if frame_len == 0 || frame_len > MAX_FRAME_LEN {
        return Err(CryptoError::FrameLen(frame_len));
    }
    Ok(())
}

/// A parsed (not yet authenticated) header.
pub(crate) struct Header {
    pub message_id: [u8; MESSAGE_ID_LEN],
    pub context: EncryptionContext,
    pub edks: Vec<EncryptedDataKey>,
    pub frame_len: u32,
    pub commit_key: [u8; COMMIT_KEY_LEN],
    /// Length of the header body, i.e. everything the header auth tag covers.
    pub body_len: usize,
    pub auth_tag: [u8; TAG_LEN],
}

impl Header {
    pub fn total_len(&self) -> usize {
        self.body_len + TAG_LEN
    }
}

pub(crate) enum Parsed {
    /// At least this many bytes are needed before parsing can progress.
    Incomplete(usize),
    Complete(Header),
}

enum Stop {
    Need(usize),
    Bad(CryptoError),
}

impl From<CryptoError> for Stop {
    fn from(e: CryptoError) -> Self {
        Stop::Bad(e)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos + n;
        if end > MAX_HEADER_LEN {
            return Err(Stop::Bad(CryptoError::Malformed(format!(
                "header longer than {MAX_HEADER_LEN} bytes"
            ))));
        }
        if end > self.buf.len() {
            return Err(Stop::Need(end));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Stop> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u16_prefixed(&mut self) -> Result<&'a [u8], Stop> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Parses a header from the start of `buf`, reporting how many bytes are missing if it is cut
/// short. Checks everything that can be checked without the data key.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Parsed, CryptoError> {
    match parse_inner(buf) {
        Ok(h) => Ok(Parsed::Complete(h)),
        Err(Stop::Need(n)) => Ok(Parsed::Incomplete(n)),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse_inner(buf: &[u8]) -> Result<Header, Stop> {
    let mut c = Cursor { buf, pos: 0 };
    let version = c.u8()?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion(version).into());
    }
    let suite = c.u16()?;
    if suite != ALGORITHM_SUITE_ID {
        return Err(CryptoError::UnsupportedSuite(suite).into());
    }
    let message_id = c.array::<MESSAGE_ID_LEN>()?;
    let context = EncryptionContext::deserialize(c.u16_prefixed()?)?;
    let edk_count = usize::from(c.u16()?);
    if edk_count == 0 {
        return Err(CryptoError::Malformed("header has no encrypted data keys".into()).into());
    }
    if edk_count > MAX_ENCRYPTED_DATA_KEYS {
        return Err(CryptoError::Malformed(format!(
            "header declares {edk_count} encrypted data keys, more than {MAX_ENCRYPTED_DATA_KEYS}"
        ))
        .into());
    }
    let mut edks = Vec::with_capacity(edk_count);
    for _ in 0..edk_count {
        let provider_id = std::str::from_utf8(c.u16_prefixed()?)
            .map_err(|_| CryptoError::Malformed("key provider id is not UTF-8".into()))?
            .to_owned();
        let provider_info = c.u16_prefixed()?.to_vec();
        let ciphertext = c.u16_prefixed()?.to_vec();
        edks.push(EncryptedDataKey {
            provider_id,
            provider_info,
            ciphertext,
        });
    }
    let content_type = c.u8()?;
    if content_type != CONTENT_TYPE_FRAMED {
        return Err(CryptoError::UnsupportedContentType(content_type).into());
    }
    let frame_len = c.u32()?;
    check_frame_len(frame_len)?;
    let commit_key = c.array::<COMMIT_KEY_LEN>()?;
    let body_len = c.pos;
    let auth_tag = c.array::<TAG_LEN>()?;
    Ok(Header {
        message_id,
        context,
        edks,
        frame_len,
        commit_key,
        body_len,
        auth_tag,
    })
}

fn push_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), CryptoError> {
    let n = u16::try_from(bytes.len())
        .map_err(|_| CryptoError::Malformed(format!("{what} is longer than 65535 bytes")))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Serializes the header body (everything before the auth tag).
pub(crate) fn serialize_header_body(
    message_id: &[u8; MESSAGE_ID_LEN],
    context: &EncryptionContext,
    edks: &[EncryptedDataKey],
    frame_len: u32,
    commit_key: &[u8; COMMIT_KEY_LEN],
) -> Result<Vec<u8>, CryptoError> {
    if edks.is_empty() || edks.len() > MAX_ENCRYPTED_DATA_KEYS {
        return Err(CryptoError::KeyringConfig(format!(
            "keyring returned {} encrypted data keys (must be 1..={MAX_ENCRYPTED_DATA_KEYS})",
            edks.len()
        )));
    }
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    out.extend_from_slice(&ALGORITHM_SUITE_ID.to_be_bytes());
    out.extend_from_slice(message_id);
    push_u16_prefixed(&mut out, &context.serialize()?, "encryption context")?;
    out.extend_from_slice(&(edks.len() as u16).to_be_bytes());
    for edk in edks {
        push_u16_prefixed(&mut out, edk.provider_id.as_bytes(), "key provider id")?;
        push_u16_prefixed(&mut out, &edk.provider_info, "key provider info")?;
        push_u16_prefixed(&mut out, &edk.ciphertext, "encrypted data key")?;
    }
    out.push(CONTENT_TYPE_FRAMED);
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.extend_from_slice(commit_key);
    if out.len() + TAG_LEN > MAX_HEADER_LEN {
        return Err(CryptoError::Malformed(format!(
            "header would be longer than {MAX_HEADER_LEN} bytes"
        )));
    }
    Ok(out)
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Per-message keys derived from the data key.
pub(crate) struct MessageKeys {
    pub aead: LessSafeKey,
    pub commit_key: Zeroizing<[u8; COMMIT_KEY_LEN]>,
}

/// HKDF-SHA512 with the message id as salt, extracted once; expanded with info = suite id ||
/// "DERIVEKEY" for the encryption key and "COMMITKEY" for the commitment key.
pub(crate) fn derive_keys(
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
) -> Result<MessageKeys, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key.as_bytes());
    let suite = ALGORITHM_SUITE_ID.to_be_bytes();
    let derive_info: [&[u8]; 2] = [&suite, b"DERIVEKEY"];
    let mut enc_key = Zeroizing::new([0u8; 32]);
    prk.expand(&derive_info, Len32)
        .and_then(|okm| okm.fill(enc_key.as_mut()))
        .map_err(|_| CryptoError::Primitive("HKDF"))?;
    let mut commit_key = Zeroizing::new([0u8; COMMIT_KEY_LEN]);
    prk.expand(&[b"COMMITKEY"], Len32)
        .and_then(|okm| okm.fill(commit_key.as_mut()))
        .map_err(|_| CryptoError::Primitive("HKDF"))?;
    let unbound = UnboundKey::new(&AES_256_GCM, enc_key.as_ref())
        .map_err(|_| CryptoError::Primitive("AES-256-GCM key"))?;
    Ok(MessageKeys {
        aead: LessSafeKey::new(unbound),
        commit_key,
    })
}

/// Header auth tag: AES-GCM over an empty plaintext with an all-zero IV and the header body as AAD
/// (no authenticate-only context: this module never writes required-context-keys messages).
pub(crate) fn header_tag(key: &LessSafeKey, body: &[u8]) -> Result<Tag, CryptoError> {
    key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key([0u8; IV_LEN]),
        Aad::from(body),
        &mut [],
    )
    .map_err(|_| CryptoError::Primitive("AES-GCM seal"))
}

pub(crate) fn verify_header_tag(
    key: &LessSafeKey,
    body: &[u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    key.open_separate_gather(
        Nonce::assume_unique_for_key([0u8; IV_LEN]),
        Aad::from(body),
        &[],
        tag,
        &mut [],
    )
    .map_err(|_| CryptoError::HeaderAuthFailed)
}

/// The frame IV: the sequence number, big-endian, left-padded with zeros to 12 bytes.
pub(crate) fn frame_iv(seq: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Message body AAD: message id || content string || sequence number (u32) || content length (u64).
pub(crate) struct BodyAad {
    buf: [u8; MESSAGE_ID_LEN + 34 + 4 + 8],
    len: usize,
}

impl BodyAad {
    pub fn new(
        message_id: &[u8; MESSAGE_ID_LEN],
        is_final: bool,
        seq: u32,
        content_len: u64,
    ) -> Self {
        let label = if is_final {
            BODY_AAD_FINAL
        } else {
            BODY_AAD_REGULAR
        };
        let mut buf = [0u8; MESSAGE_ID_LEN + 34 + 4 + 8];
        let mut at = 0;
        for part in [
            &message_id[..],
            label,
            &seq.to_be_bytes(),
            &content_len.to_be_bytes(),
        ] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Self { buf, len: at }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
