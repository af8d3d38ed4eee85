//! An in-memory [`ObjectStore`] with the same conditional-write semantics as S3, made atomic by
//! one lock (which moto is not: see moto-notes.md). Used by unit tests, the concurrency tests
//! that moto cannot make meaningful, and the discard-sink benchmark (`keep_part_bodies: false`
//! keeps only sizes and checksums of parts, so a 1 GiB transfer costs no memory).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::*;

#[derive(Default)]
struct Upload {
    key: String,
    parts: HashMap<i32, (Bytes, Crc64Nvme, u64)>,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, (Bytes, String, Option<String>)>,
    uploads: HashMap<String, Upload>,
}

pub struct MemoryStore {
    bucket: String,
    keep_part_bodies: bool,
    min_part_size: u64,
    state: Mutex<State>,
    serial: AtomicU64,
    /// Parts uploaded, for tests asserting no part is uploaded twice.
    pub part_uploads: AtomicU64,
}

impl MemoryStore {
    pub fn new(bucket: &str) -> MemoryStore {
        MemoryStore {
            bucket: bucket.to_string(),
            keep_part_bodies: true,
            min_part_size: crate::config::S3_MIN_PART,
            state: Mutex::new(State::default()),
            serial: AtomicU64::new(0),
            part_uploads: AtomicU64::new(0),
        }
    }

    /// A sink that counts parts but drops their bytes (and does not check their checksums:
    /// S3 does that on its own servers, not on the Lambda's CPU).
    pub fn discarding(bucket: &str) -> MemoryStore {
        MemoryStore {
            keep_part_bodies: false,
            ..MemoryStore::new(bucket)
        }
    }

    /// Lowers (or raises) the minimum size of every part but the last, like moto's
    /// `S3_UPLOAD_PART_MIN_SIZE`, so tests can use many small parts.
    pub fn with_min_part_size(mut self, bytes: u64) -> MemoryStore {
        self.min_part_size = bytes;
        self
    }

    /// The whole body of an object, if it exists.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).map(|(b, _, _)| b.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.serial.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Open multipart uploads (tests assert none is left behind).
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.lock().objects.keys().cloned().collect();
        k.sort();
        k
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        Ok(self.lock().objects.contains_key(key.as_str()))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        Ok(self
            .lock()
            .objects
            .get(key.as_str())
            .map(|(body, etag, _)| StoredObject {
                body: body.clone(),
                etag: etag.clone(),
            }))
    }

    async fn put_if_absent(
        &self,
        key: &ObjectKey,
        body: Bytes,
        _content_type: &str,
    ) -> Result<Conditional<String>, StoreError> {
        let etag = self.etag();
        let mut s = self.lock();
        if s.objects.contains_key(key.as_str()) {
            return Ok(Conditional::PreconditionFailed);
        }
        s.objects
            .insert(key.to_string(), (body, etag.clone(), None));
        Ok(Conditional::Written(etag))
    }

    async fn put_if_match(
        &self,
        key: &ObjectKey,
        body: Bytes,
        _content_type: &str,
        etag: &str,
    ) -> Result<Conditional<String>, StoreError> {
        let new_etag = self.etag();
        let mut s = self.lock();
        match s.objects.get(key.as_str()) {
            Some((_, current, _)) if current == etag => {
                s.objects
                    .insert(key.to_string(), (body, new_etag.clone(), None));
                Ok(Conditional::Written(new_etag))
            }
            // Like S3: If-Match on a missing key fails its precondition (there is no such ETag).
            Some(_) | None => Ok(Conditional::PreconditionFailed),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.lock().objects.remove(key.as_str());
        Ok(())
    }

    async fn delete_if_match(
        &self,
        key: &ObjectKey,
        etag: &str,
    ) -> Result<Conditional<()>, StoreError> {
        let mut s = self.lock();
        match s.objects.get(key.as_str()) {
            Some((_, current, _)) if current != etag => Ok(Conditional::PreconditionFailed),
            _ => {
                s.objects.remove(key.as_str());
                Ok(Conditional::Written(()))
            }
        }
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        _content_type: &str,
    ) -> Result<String, StoreError> {
        let id = format!("upload-{}", self.serial.fetch_add(1, Ordering::Relaxed));
        self.lock().uploads.insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                parts: HashMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        crc64nvme: Crc64Nvme,
    ) -> Result<UploadedPart, StoreError> {
        // Verify like S3 does, so a wrong checksum is caught here too. The discarding sink (the
        // benchmark's stand-in for S3) skips it: S3 checks on its own servers, not on the
        // Lambda's CPU, so counting it would understate the pipeline.
        if self.keep_part_bodies && Crc64Nvme::of(&body) != crc64nvme {
            return Err(StoreError::Request {
                operation: "UploadPart",
                key: key.to_string(),
                reason: "BadDigest: the CRC64NVME you specified did not match what we received"
                    .into(),
                transient: false,
            });
        }
        self.part_uploads.fetch_add(1, Ordering::Relaxed);
        let size = body.len() as u64;
        let etag = self.etag();
        let mut s = self.lock();
        let keep = self.keep_part_bodies;
        let upload = s
            .uploads
            .get_mut(upload_id)
            .ok_or(StoreError::NoSuchUpload {
                operation: "UploadPart",
                key: key.to_string(),
                upload_id: upload_id.to_string(),
            })?;
        upload.parts.insert(
            part_number,
            (if keep { body } else { Bytes::new() }, crc64nvme, size),
        );
        Ok(UploadedPart {
            part_number,
            etag,
            checksum: crc64nvme.to_base64(),
            size,
        })
    }

    async fn complete_multipart_if_absent(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[UploadedPart],
        whole: Crc64Nvme,
    ) -> Result<Conditional<CompletedObject>, StoreError> {
        let etag = self.etag();
        let min_part = self.min_part_size;
        let mut s = self.lock();
        let upload = s.uploads.get(upload_id).ok_or(StoreError::NoSuchUpload {
            operation: "CompleteMultipartUpload",
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        })?;
        if upload.key != key.as_str() {
            return Err(StoreError::Request {
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                reason: "upload belongs to another key".into(),
                transient: false,
            });
        }
        if s.objects.contains_key(key.as_str()) {
            return Ok(Conditional::PreconditionFailed);
        }
        let mut body = BytesMut::new();
        let mut crcs = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let (bytes, crc, size) =
                upload
                    .parts
                    .get(&p.part_number)
                    .ok_or_else(|| StoreError::Request {
                        operation: "CompleteMultipartUpload",
                        key: key.to_string(),
                        reason: format!("InvalidPart {}", p.part_number),
                        transient: false,
                    })?;
            if i + 1 < parts.len() && *size < min_part {
                return Err(StoreError::Request {
                    operation: "CompleteMultipartUpload",
                    key: key.to_string(),
                    reason: format!("EntityTooSmall: part {} is {size} bytes", p.part_number),
                    transient: false,
                });
            }
            body.extend_from_slice(bytes);
            crcs.push((*crc, *size));
        }
        // The discarding sink trusts the parts' CRCs it did not check; combining them costs as
        // much, so it takes the stated one (S3 computes it on its servers).
        let computed = if self.keep_part_bodies {
            Crc64Nvme::of_parts(crcs)
        } else {
            whole
        };
        if computed != whole {
            // What S3 does with a FULL_OBJECT checksum that the parts do not add up to.
            return Err(StoreError::Request {
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                reason: format!(
                    "BadDigest: the full-object CRC64NVME {whole} is not the parts' {computed}"
                ),
                transient: false,
            });
        }
        let checksum = computed.to_base64();
        s.uploads.remove(upload_id);
        s.objects.insert(
            key.to_string(),
            (body.freeze(), etag.clone(), Some(checksum.clone())),
        );
        Ok(Conditional::Written(CompletedObject {
            etag,
            checksum_crc64nvme: Some(checksum),
        }))
    }

    async fn abort_multipart(&self, _key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError> {
        let etag = self.etag();
        let mut s = self.lock();
        let Some((body, _, checksum)) = s.objects.get(from.as_str()).cloned() else {
            return Err(StoreError::Request {
                operation: "CopyObject",
                key: from.to_string(),
                reason: "NoSuchKey".into(),
                transient: false,
            });
        };
        s.objects.insert(to.to_string(), (body, etag, checksum));
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys: Vec<ObjectKey> = self
            .lock()
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(ObjectKey::new)
            .collect();
        keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(keys)
    }

    async fn checksum_crc64nvme(&self, key: &ObjectKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .objects
            .get(key.as_str())
            .and_then(|(_, _, c)| c.clone()))
    }
}
