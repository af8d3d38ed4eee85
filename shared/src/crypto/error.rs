//! Errors of the crypto module. Messages carry identifiers (context keys and values, provider ids,
//! sequence numbers) but never key material or plaintext.

/// Everything that can go wrong while encrypting or decrypting a message.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("unsupported message format version {0:#04x} (only version 2 is supported)")]
    UnsupportedVersion(u8),
    #[error(
        "unsupported algorithm suite {0:#06x} (only 0x0478 AES_256_GCM_HKDF_SHA512_COMMIT_KEY)"
    )]
    UnsupportedSuite(u16),
    #[error("unsupported content type {0:#04x} (only framed content, 0x02)")]
    UnsupportedContentType(u8),
    #[error(
        "key commitment does not match: the data key is not the one this message was made with"
    )]
    BadCommitment,
    #[error("message header failed authentication")]
    HeaderAuthFailed,
    #[error("frame {sequence} failed authentication")]
    FrameAuthFailed { sequence: u32 },
    #[error("frame sequence number {got} where {expected} was expected")]
    BadSequence { expected: u32, got: u32 },
    #[error("ciphertext ended before the final frame")]
    Truncated,
    #[error("bytes follow the final frame")]
    TrailingBytes,
    #[error("encryption context key {key:?} is {actual:?}, expected {expected:?}")]
    ContextMismatch {
        key: String,
        expected: String,
        actual: Option<String>,
    },
    #[error("encryption context has no key {0:?}")]
    MissingContextKey(String),
    #[error("invalid encryption context: {0}")]
    InvalidContext(String),
    #[error("no keyring could decrypt any of the encrypted data keys (providers: {providers:?})")]
    NoDecryptableKey { providers: Vec<String> },
    #[error("AWS KMS: {0}")]
    Kms(String),
    /// KMS could not serve the request now (throttled, an internal error, a timeout, a
    /// connection failure): worth retrying.
    #[error("AWS KMS (try again): {0}")]
    KmsUnavailable(String),
    /// KMS refused for a reason of the deployment (access denied, key not found, disabled or
    /// pending deletion): no recording can be encrypted until it is fixed.
    #[error("AWS KMS (check the key and the role): {0}")]
    KmsConfiguration(String),
    #[error("keyring configuration: {0}")]
    KeyringConfig(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid frame length {0} (must be 1..={max})", max = crate::crypto::MAX_FRAME_LEN)]
    FrameLen(u32),
    #[error("final frame holds {content_len} bytes, more than the frame length {frame_len}")]
    FinalFrameTooLong { content_len: u32, frame_len: u32 },
    #[error("{len} plaintext bytes is not a whole number of {frame_len}-byte frames")]
    NotFrameAligned { len: usize, frame_len: u32 },
    #[error("message would need more than 2^32 - 1 frames")]
    TooManyFrames,
    #[error("output buffer holds {have} bytes, the frames need {need}")]
    OutputTooSmall { need: usize, have: usize },
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    #[error("cryptographic primitive failed: {0}")]
    Primitive(&'static str),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("input stream: {0}")]
    Source(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl crate::retry::Retryable for CryptoError {
    fn retry_class(&self) -> crate::retry::RetryClass {
        match self {
            CryptoError::KmsUnavailable(_) => {
                crate::retry::RetryClass::Transient { retry_after: None }
            }
            CryptoError::KmsConfiguration(_) => crate::retry::RetryClass::Infrastructure,
            _ => crate::retry::RetryClass::Permanent,
        }
    }
}
