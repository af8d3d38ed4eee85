//! An [`ObjectStore`] wrapper that fails chosen operations on chosen keys with a transient
//! error, for tests of the paths between two writes (e.g. a crash after the multipart upload
//! completed but before the manifest was written). Not for production use.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;

/// The store operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Exists,
    Get,
    PutIfAbsent,
    PutIfMatch,
    Delete,
    CreateMultipart,
    UploadPart,
    Complete,
    Abort,
    Checksum,
    List,
    Copy,
}

struct Rule {
    op: StoreOp,
    key_contains: String,
    times: u32,
    /// Matching calls let through before the rule applies.
    skip: u32,
    /// An access-denied answer (the deployment's fault) instead of a transient one.
    denied: bool,
}

pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<Rule>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore {
            inner,
            rules: Mutex::new(Vec::new()),
        }
    }

    /// The next `times` calls of `op` on a key containing `key_contains` fail (transient).
    pub fn fail(&self, op: StoreOp, key_contains: &str, times: u32) {
        self.lock().push(Rule {
            op,
            key_contains: key_contains.to_string(),
            times,
            skip: 0,
            denied: false,
        });
    }

    /// Like [`FaultyStore::fail`], after letting `skip` matching calls through.
    pub fn fail_after(&self, op: StoreOp, key_contains: &str, skip: u32, times: u32) {
        self.lock().push(Rule {
            op,
            key_contains: key_contains.to_string(),
            times,
            skip,
            denied: false,
        });
    }

    /// Like [`FaultyStore::deny`], after letting `skip` matching calls through.
    pub fn deny_after(&self, op: StoreOp, key_contains: &str, skip: u32, times: u32) {
        self.lock().push(Rule {
            op,
            key_contains: key_contains.to_string(),
            times,
            skip,
            denied: true,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The next `times` calls of `op` on a matching key are refused as S3 answers a bucket
    /// policy or role that does not allow them (403 AccessDenied).
    pub fn deny(&self, op: StoreOp, key_contains: &str, times: u32) {
        self.lock().push(Rule {
            op,
            key_contains: key_contains.to_string(),
            times,
            skip: 0,
            denied: true,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, op: StoreOp, key: &ObjectKey) -> Result<(), StoreError> {
        let mut rules = self.lock();
        if let Some(rule) = rules
            .iter_mut()
            .find(|r| r.op == op && r.times > 0 && key.as_str().contains(&r.key_contains))
        {
            if rule.skip > 0 {
                rule.skip -= 1;
                return Ok(());
            }
            rule.times -= 1;
            if rule.denied {
                return Err(StoreError::Access {
                    operation: "injected",
                    key: key.to_string(),
                    reason: "HTTP 403 AccessDenied: injected".into(),
                });
            }
            return Err(StoreError::Request {
                operation: "injected",
                key: key.to_string(),
                reason: format!("injected fault on {op:?}"),
                transient: true,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        self.check(StoreOp::Exists, key)?;
        self.inner.exists(key).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        self.check(StoreOp::Get, key)?;
        self.inner.get(key).await
    }

    async fn put_if_absent(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
    ) -> Result<Conditional<String>, StoreError> {
        self.check(StoreOp::PutIfAbsent, key)?;
        self.inner.put_if_absent(key, body, content_type).await
    }

    async fn put_if_match(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        etag: &str,
    ) -> Result<Conditional<String>, StoreError> {
        self.check(StoreOp::PutIfMatch, key)?;
        self.inner.put_if_match(key, body, content_type, etag).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.check(StoreOp::Delete, key)?;
        self.inner.delete(key).await
    }

    async fn delete_if_match(
        &self,
        key: &ObjectKey,
        etag: &str,
    ) -> Result<Conditional<()>, StoreError> {
        self.check(StoreOp::Delete, key)?;
        self.inner.delete_if_match(key, etag).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError> {
        self.check(StoreOp::CreateMultipart, key)?;
        self.inner.create_multipart(key, content_type).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        crc64nvme: Crc64Nvme,
    ) -> Result<UploadedPart, StoreError> {
        self.check(StoreOp::UploadPart, key)?;
        self.inner
            .upload_part(key, upload_id, part_number, body, crc64nvme)
            .await
    }

    async fn complete_multipart_if_absent(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[UploadedPart],
        whole: Crc64Nvme,
    ) -> Result<Conditional<CompletedObject>, StoreError> {
        self.check(StoreOp::Complete, key)?;
        self.inner
            .complete_multipart_if_absent(key, upload_id, parts, whole)
            .await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.check(StoreOp::Abort, key)?;
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError> {
        self.check(StoreOp::Copy, to)?;
        self.inner.copy(from, to).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        self.check(StoreOp::List, &ObjectKey::new(prefix))?;
        self.inner.list(prefix).await
    }

    async fn checksum_crc64nvme(&self, key: &ObjectKey) -> Result<Option<String>, StoreError> {
        self.check(StoreOp::Checksum, key)?;
        self.inner.checksum_crc64nvme(key).await
    }
}
