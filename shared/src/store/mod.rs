//! Where archives are written: the [`ObjectStore`] trait (S3 semantics the design relies on:
//! conditional writes, multipart uploads with a full-object CRC64NVME checksum), its S3
//! implementation, an in-memory implementation for unit tests and benchmarks, the key layout
//! ([`keys`]) and the manifest ([`manifest`]).
//!
//! Exactly-once rests here: the final object is completed with `If-None-Match: *`, manifests
//! are created with `If-None-Match: *`, checkpoints are replaced with `If-Match: <etag>`.

pub mod checksum;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
pub mod keys;
pub mod manifest;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

pub use checksum::Crc64Nvme;
#[cfg(any(test, feature = "test-util"))]
pub use faulty::{FaultyStore, StoreOp};
pub use keys::{ArchiveLayout, ObjectKey};
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryStore;
pub use s3::S3Store;

use crate::retry::{RetryClass, Retryable};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 {operation} {key}: {reason}")]
    Request {
        operation: &'static str,
        key: String,
        reason: String,
        transient: bool,
    },
    /// S3 refused for a reason of the deployment (access denied, no such bucket, the bucket's
    /// KMS key unusable): every recording would fail the same way.
    #[error("S3 {operation} {key}: {reason} (check the bucket, its KMS key and the role)")]
    Access {
        operation: &'static str,
        key: String,
        reason: String,
    },
    #[error("S3 {operation} {key}: the upload {upload_id} no longer exists")]
    NoSuchUpload {
        operation: &'static str,
        key: String,
        upload_id: String,
    },
    #[error("S3 checksum mismatch for {key}: we computed {expected}, S3 reports {actual}")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
}

impl Retryable for StoreError {
    fn retry_class(&self) -> RetryClass {
        match self {
            StoreError::Request {
                transient: true, ..
            } => RetryClass::Transient { retry_after: None },
            StoreError::Access { .. } => RetryClass::Infrastructure,
            _ => RetryClass::Permanent,
        }
    }
}

/// Result of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional<T> {
    Written(T),
    /// The precondition failed: the key exists (`If-None-Match`) or changed (`If-Match`).
    PreconditionFailed,
}

/// A stored object's body and ETag.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Bytes,
    pub etag: String,
}

/// One uploaded part, as CompleteMultipartUpload needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedPart {
    pub part_number: i32,
    pub etag: String,
    /// Base64 CRC64NVME of the part's bytes, as S3 verified it (a version-1 checkpoint holds
    /// a SHA-256 here; such an upload is only ever aborted).
    #[serde(alias = "checksumSha256")]
    pub checksum: String,
    pub size: u64,
}

impl UploadedPart {
    pub fn crc64nvme(&self) -> Option<Crc64Nvme> {
        Crc64Nvme::from_base64(&self.checksum)
    }
}

/// A completed object's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedObject {
    pub etag: String,
    /// S3's full-object CRC64NVME when it reported one.
    pub checksum_crc64nvme: Option<String>,
}

/// A place archives are written to: a bucket (its store) and a key layout (its prefix).
#[derive(Clone)]
pub struct ArchiveLocation {
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Bucket name (for manifests and write-back).
    fn bucket(&self) -> &str;

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError>;

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;

    /// Creates `key` only if absent (`If-None-Match: *`); returns the new ETag.
    async fn put_if_absent(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
    ) -> Result<Conditional<String>, StoreError>;

    /// Replaces `key` only if its ETag is still `etag` (`If-Match`); returns the new ETag.
    async fn put_if_match(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        etag: &str,
    ) -> Result<Conditional<String>, StoreError>;

    /// [`ObjectStore::put_if_match`] with `etag`, or [`ObjectStore::put_if_absent`] without:
    /// replaces what was read, or creates what was not there.
    async fn put_conditionally(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        etag: Option<&str>,
    ) -> Result<Conditional<String>, StoreError> {
        match etag {
            Some(etag) => self.put_if_match(key, body, content_type, etag).await,
            None => self.put_if_absent(key, body, content_type).await,
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Deletes `key` only if its ETag is still `etag` (`If-Match` on DeleteObject); a key that
    /// is already gone counts as deleted.
    async fn delete_if_match(
        &self,
        key: &ObjectKey,
        etag: &str,
    ) -> Result<Conditional<()>, StoreError>;

    /// Starts a multipart upload with CRC64NVME checksums of type FULL_OBJECT; returns the
    /// upload id.
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError>;

    /// Uploads one part with its CRC64NVME (S3 verifies it on real S3).
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        crc64nvme: Crc64Nvme,
    ) -> Result<UploadedPart, StoreError>;

    /// Completes with `If-None-Match: *`: never replaces an existing object. `whole` is the
    /// object's CRC64NVME; real S3 refuses the completion when the parts do not add up to it.
    async fn complete_multipart_if_absent(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[UploadedPart],
        whole: Crc64Nvme,
    ) -> Result<Conditional<CompletedObject>, StoreError>;

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError>;

    /// The full-object CRC64NVME S3 holds for `key` (base64), if any.
    async fn checksum_crc64nvme(&self, key: &ObjectKey) -> Result<Option<String>, StoreError>;

    /// Copies `from` to `to` (CopyObject; objects up to 5 GiB).
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError>;

    /// Every key that starts with `prefix` (ListObjectsV2, all pages), in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError>;
}

/// Writes `key` whatever was there: reads its ETag and replaces only that version, so two
/// writers never interleave (one wins whole); for documents regenerated from their inputs
/// (reports).
pub async fn replace(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    body: Bytes,
    content_type: &str,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        let etag = store.get(key).await?.map(|o| o.etag);
        if let Conditional::Written(_) = store
            .put_conditionally(key, body.clone(), content_type, etag.as_deref())
            .await?
        {
            return Ok(());
        }
    }
    Err(StoreError::Request {
        operation: "PutObject",
        key: key.to_string(),
        reason: "replaced by another writer three times in a row".into(),
        transient: true,
    })
}

/// Compares composite SHA-256 checksums (version-1 manifests), accepting S3's two spellings (`<b64>-N` from GetObject,
/// `<b64>` from HeadObject on some implementations).
pub fn composite_matches(expected: &str, reported: &str) -> bool {
    let strip = |s: &str| s.split('-').next().unwrap_or("").to_string();
    strip(expected) == strip(reported)
        && (!reported.contains('-') || expected.rsplit('-').next() == reported.rsplit('-').next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_checksum_accepts_both_spellings_and_rejects_others() {
        let c = "q6Jd9W1oQ4gM0aSjRku3Ck1bLbFq8v0aP0v4dIhWbZQ=-2";
        let bare = c.trim_end_matches("-2");
        assert!(composite_matches(c, c));
        assert!(composite_matches(c, bare));
        assert!(!composite_matches(c, &format!("{bare}-3")));
        assert!(!composite_matches(
            c,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=-2"
        ));
    }
}
