//! Descriptive facts about a message header, for manifests and logs.

use base64::Engine as _;

use super::format::{parse_header, Parsed};
use super::{CryptoError, EncryptionContext, EncryptorCheckpoint};

/// What a header says, without any key. Not authenticated by itself: use it on headers this
/// process produced (e.g. from its own checkpoint) or that a decryptor has already verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub frame_len: u32,
    /// Lower-case hex of the 32-byte message id.
    pub message_id_hex: String,
    /// One entry per EDK: `aws-kms:<key ARN>`, `<namespace>/<key name>` for raw AES keys, else
    /// the bare provider id. No key material.
    pub key_providers: Vec<String>,
    pub context: EncryptionContext,
    /// Serialized header length, auth tag included.
    pub header_len: usize,
}

/// Parses a complete serialized header (nothing before or after it).
pub fn parse_header_bytes(header: &[u8]) -> Result<HeaderInfo, CryptoError> {
    let h = match parse_header(header)? {
        Parsed::Complete(h) if h.total_len() == header.len() => h,
        Parsed::Complete(_) => return Err(CryptoError::TrailingBytes),
        Parsed::Incomplete(_) => return Err(CryptoError::Truncated),
    };
    let key_providers = h
        .edks
        .iter()
        .map(|edk| {
            if edk.provider_id == "aws-kms" {
                return format!("aws-kms:{}", String::from_utf8_lossy(&edk.provider_info));
            }
            // Raw AES provider info: key name, then tag bits (128), IV length (12) and the IV.
            let info = &edk.provider_info;
            match info.len().checked_sub(20) {
                Some(name_len) if info[name_len..name_len + 8] == [0, 0, 0, 128, 0, 0, 0, 12] => {
                    match std::str::from_utf8(&info[..name_len]) {
                        Ok(name) => format!("{}/{}", edk.provider_id, name),
                        Err(_) => edk.provider_id.clone(),
                    }
                }
                _ => edk.provider_id.clone(),
            }
        })
        .collect();
    Ok(HeaderInfo {
        frame_len: h.frame_len,
        message_id_hex: hex::encode(h.message_id),
        key_providers,
        context: h.context,
        header_len: header.len(),
    })
}

/// Header facts from an encryptor checkpoint.
pub fn parse_header_info(cp: &EncryptorCheckpoint) -> Result<HeaderInfo, CryptoError> {
    let header = base64::engine::general_purpose::STANDARD
        .decode(&cp.header)
        .map_err(|_| CryptoError::Checkpoint("header is not base64".into()))?;
    parse_header_bytes(&header)
}
