//! Re-reads an archive and checks it against its manifest: S3's composite checksum, the
//! ciphertext size, authenticated decryption with the manifest's encryption context, and the
//! plaintext size and SHA-256. Streams the object; memory stays O(frame).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::aws_error_summary;
use crate::crypto::{DecryptOptions, EncryptionContext, Keyring, StreamDecryptor};
use crate::store::composite_matches;
use crate::store::manifest::Manifest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub object_key: String,
    pub plaintext_size: u64,
    pub plaintext_sha256: String,
    /// Every check that failed; empty means the archive is intact.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("s3://{bucket}/{key}: {reason}")]
    Read {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("manifest s3://{bucket}/{key} is not a gc-archive manifest: {reason}")]
    Manifest {
        bucket: String,
        key: String,
        reason: String,
    },
}

/// Verifies the archive whose manifest is at `manifest_key`.
pub async fn verify_archive(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    manifest_key: &str,
    keyring: Arc<dyn Keyring>,
) -> Result<VerifyReport, VerifyError> {
    let read_err = |key: &str, reason: String| VerifyError::Read {
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason,
    };
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(manifest_key)
        .send()
        .await
        .map_err(|e| read_err(manifest_key, aws_error_summary(&e)))?
        .body
        .collect()
        .await
        .map_err(|e| read_err(manifest_key, e.to_string()))?
        .into_bytes();
    let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| VerifyError::Manifest {
        bucket: bucket.to_string(),
        key: manifest_key.to_string(),
        reason: e.to_string(),
    })?;
    let key = manifest.object_key.clone();
    let mut problems = Vec::new();

    let head = s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| read_err(&key, aws_error_summary(&e)))?;
    match (
        &manifest.ciphertext.s3_checksum_crc64nvme,
        &manifest.ciphertext.s3_checksum_sha256,
    ) {
        (Some(want), _) => match head.checksum_crc64_nvme() {
            Some(c) if c == want => {}
            other => problems.push(format!(
                "S3 checksum: the object's full-object CRC64NVME is {}, the manifest's {want}",
                other.unwrap_or("absent")
            )),
        },
        (None, Some(want)) => match head.checksum_sha256() {
            Some(c) if composite_matches(want, c) => {}
            other => problems.push(format!(
                "S3 checksum {other:?} does not match the manifest's {want}"
            )),
        },
        (None, None) => problems.push("the manifest names no S3 checksum for the object".into()),
    }

    let required: EncryptionContext = manifest
        .encryption
        .encryption_context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut decryptor = StreamDecryptor::new(
        keyring,
        DecryptOptions {
            required_context: required,
        },
    );
    let mut object = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| read_err(&key, aws_error_summary(&e)))?
        .body;
    let mut hasher = Sha256::new();
    let mut ciphertext_size = 0u64;
    let mut plaintext_size = 0u64;
    let mut failed = false;
    while let Some(piece) = object
        .try_next()
        .await
        .map_err(|e| read_err(&key, e.to_string()))?
    {
        ciphertext_size += piece.len() as u64;
        if failed {
            continue;
        }
        match decryptor.push(&piece).await {
            Ok(plain) => {
                plaintext_size += plain.len() as u64;
                hasher.update(&plain);
            }
            Err(e) => {
                problems.push(format!("decryption failed: {e}"));
                failed = true;
            }
        }
    }
    if !failed {
        if let Err(e) = decryptor.finish() {
            problems.push(format!("decryption failed: {e}"));
        }
    }
    if ciphertext_size != manifest.ciphertext.size {
        problems.push(format!(
            "object is {ciphertext_size} bytes, the manifest says {}",
            manifest.ciphertext.size
        ));
    }
    let sha = hex::encode(hasher.finalize());
    if problems.is_empty() {
        if plaintext_size != manifest.plaintext.size {
            problems.push(format!(
                "plaintext is {plaintext_size} bytes, the manifest says {}",
                manifest.plaintext.size
            ));
        }
        if sha != manifest.plaintext.sha256 {
            problems.push(format!(
                "plaintext SHA-256 {sha} differs from the manifest's {}",
                manifest.plaintext.sha256
            ));
        }
    }
    Ok(VerifyReport {
        object_key: key,
        plaintext_size,
        plaintext_sha256: sha,
        problems,
    })
}
