//! Envelope encryption of recordings in the AWS Encryption SDK (ESDK) message format, version 2,
//! framed, algorithm suite 0x0478 (`AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: key commitment, no
//! signature), so that a customer can decrypt an archived object with any official ESDK.
//!
//! This module owns the wire format (header, frames, encryption context serialization), key
//! derivation and commitment, the two keyrings the project needs (a raw AES-256 wrapping key and
//! AWS KMS), a resumable frame encryptor whose state survives a process restart, and a push-based
//! streaming decryptor that only ever releases authenticated plaintext. It deliberately does not
//! implement other algorithm suites (no signatures, no non-committing suites), message format
//! version 1, non-framed bodies, caching or multi-keyring CMMs, discovery/MRK KMS keyrings, or the
//! ESDK's "required encryption context keys" (authenticated-only context) feature; messages that
//! use any of those are rejected rather than half-understood.

mod context;
mod decrypt;
mod encrypt;
mod error;
mod format;
mod info;
mod keyring;
mod kms;

pub use context::EncryptionContext;
pub use decrypt::{
    decrypt_bytes, decrypt_to_writer, DecryptOptions, DecryptedInfo, StreamDecryptor,
};
pub use encrypt::{
    ciphertext_len, encrypt_bytes, encrypt_stream, encrypt_to_writer, warm_up, EncryptorCheckpoint,
    FrameEncryptor, StreamEncryptor,
};
pub use error::CryptoError;
pub use format::{MAX_ENCRYPTED_DATA_KEYS, MAX_FRAME_LEN, MAX_HEADER_LEN};
pub use info::{parse_header_bytes, parse_header_info, HeaderInfo};
pub use keyring::{DataKey, EncryptedDataKey, Keyring, RawAesKeyring};
pub use kms::KmsKeyring;

/// Plaintext bytes per regular frame unless the caller asks otherwise; the ESDK's own default.
pub const DEFAULT_FRAME_LEN: u32 = 65536;

/// The only algorithm suite this module writes or reads.
pub const ALGORITHM_SUITE_ID: u16 = 0x0478;

#[cfg(test)]
mod tests;
