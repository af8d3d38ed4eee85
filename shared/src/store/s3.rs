//! [`ObjectStore`] on Amazon S3 (aws-sdk-s3). Conditional writes map to `If-None-Match: *` /
//! `If-Match`; S3 answers a failed precondition with 412, which becomes
//! [`Conditional::PreconditionFailed`] rather than an error.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use base64::Engine as _;
use bytes::Bytes;

use super::*;
use crate::config::aws_error_summary;

#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Object Lock retention for archives and manifests (a worm target): the bucket enforces
    /// it, not our code.
    object_lock: Option<(aws_sdk_s3::types::ObjectLockMode, u32)>,
}

/// Archives (`….enc`) and manifests are locked; checkpoints, markers, probes and records are
/// not (they are deleted or replaced by design).
fn locked_kind(key: &ObjectKey) -> bool {
    let k = key.as_str();
    k.ends_with(".enc") || k.ends_with(".manifest.json")
}

impl S3Store {
    /// PutObject with its SHA-256, only if absent (`if_match: None` → `If-None-Match: *`) or
    /// only if the current ETag is `if_match`.
    async fn put_conditional(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        if_match: Option<&str>,
    ) -> Result<Conditional<String>, StoreError> {
        let digest: [u8; 32] = sha2::Sha256::digest_bytes(&body);
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(&digest))
            .body(ByteStream::from(body));
        let request = match if_match {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        let request = match self.retention_for(key) {
            Some((mode, until)) => request
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until),
            None => request,
        };
        match request.send().await {
            Ok(out) => Ok(Conditional::Written(
                out.e_tag().unwrap_or_default().to_string(),
            )),
            Err(e) if is_precondition_failed(&e) => Ok(Conditional::PreconditionFailed),
            // If-Match on a key that is gone: it is not the object we wrote any more.
            Err(e) if if_match.is_some() && status(&e) == Some(404) => {
                Ok(Conditional::PreconditionFailed)
            }
            Err(e) => Err(request_error("PutObject", key, &e)),
        }
    }

    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            object_lock: None,
        }
    }

    /// Writes archives and manifests with Object Lock `mode` until `days` from each write.
    pub fn with_object_lock(mut self, mode: crate::routing::ObjectLockMode, days: u32) -> S3Store {
        self.object_lock = Some((aws_sdk_s3::types::ObjectLockMode::from(mode.as_str()), days));
        self
    }

    fn retention_for(
        &self,
        key: &ObjectKey,
    ) -> Option<(
        aws_sdk_s3::types::ObjectLockMode,
        aws_sdk_s3::primitives::DateTime,
    )> {
        let (mode, days) = self.object_lock.as_ref().filter(|_| locked_kind(key))?;
        let until = chrono::Utc::now() + chrono::Duration::days(i64::from(*days));
        Some((
            mode.clone(),
            aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()),
        ))
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

pub(crate) fn status<E, R: HttpStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(|r| r.status_code())
}

/// Lets [`status`] read the HTTP status from any SDK response type.
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

pub(crate) fn request_error<E>(
    operation: &'static str,
    key: &ObjectKey,
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let code = status(err);
    let service_code = match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    };
    // By the service's error code (and a bare 403), never by message text.
    let access = code == Some(403)
        || matches!(
            service_code,
            Some(
                "AccessDenied"
                    | "NoSuchBucket"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "AllAccessDisabled"
                    | "KMS.DisabledException"
                    | "KMS.NotFoundException"
                    | "KMS.KMSInvalidStateException"
                    | "KMS.AccessDeniedException"
            )
        );
    if access {
        return StoreError::Access {
            operation,
            key: key.to_string(),
            reason: match code {
                Some(c) => format!("HTTP {c} {}", aws_error_summary(err)),
                None => aws_error_summary(err),
            },
        };
    }
    let transient = match err {
        SdkError::ServiceError(_) => matches!(code, Some(408 | 409 | 429 | 500 | 502 | 503 | 504)),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    StoreError::Request {
        operation,
        key: key.to_string(),
        reason: match code {
            Some(c) => format!("HTTP {c} {}", aws_error_summary(err)),
            None => aws_error_summary(err),
        },
        transient,
    }
}

pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata, R: HttpStatus>(
    err: &SdkError<E, R>,
) -> bool {
    status(err) == Some(412)
        || matches!(err, SdkError::ServiceError(se) if se.err().code() == Some("PreconditionFailed"))
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

#[async_trait]
impl ObjectStore for S3Store {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(request_error("HeadObject", key, &e)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(request_error("GetObject", key, &e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Request {
                operation: "GetObject",
                key: key.to_string(),
                reason: format!("reading body: {e}"),
                transient: true,
            })?
            .into_bytes();
        Ok(Some(StoredObject { body, etag }))
    }

    async fn put_if_absent(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
    ) -> Result<Conditional<String>, StoreError> {
        self.put_conditional(key, body, content_type, None).await
    }

    async fn put_if_match(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        etag: &str,
    ) -> Result<Conditional<String>, StoreError> {
        self.put_conditional(key, body, content_type, Some(etag))
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("DeleteObject", key, &e))
    }

    async fn delete_if_match(
        &self,
        key: &ObjectKey,
        etag: &str,
    ) -> Result<Conditional<()>, StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(Conditional::Written(())),
            Err(e) if is_precondition_failed(&e) => Ok(Conditional::PreconditionFailed),
            Err(e) if status(&e) == Some(404) => Ok(Conditional::Written(())),
            Err(e) => Err(request_error("DeleteObject", key, &e)),
        }
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError> {
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject);
        let request = match self.retention_for(key) {
            Some((mode, until)) => request
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until),
            None => request,
        };
        let out = request
            .send()
            .await
            .map_err(|e| request_error("CreateMultipartUpload", key, &e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Request {
                operation: "CreateMultipartUpload",
                key: key.to_string(),
                reason: "no upload id in the response".into(),
                transient: true,
            })
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        crc64nvme: Crc64Nvme,
    ) -> Result<UploadedPart, StoreError> {
        let size = body.len() as u64;
        let checksum = crc64nvme.to_base64();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                if status(&e) == Some(404) {
                    StoreError::NoSuchUpload {
                        operation: "UploadPart",
                        key: key.to_string(),
                        upload_id: upload_id.to_string(),
                    }
                } else {
                    request_error("UploadPart", key, &e)
                }
            })?;
        // S3 echoes the checksum it verified; a different echo means it stored something else.
        if let Some(echo) = out.checksum_crc64_nvme() {
            if echo != checksum {
                return Err(StoreError::ChecksumMismatch {
                    key: format!("{key} part {part_number}"),
                    expected: checksum,
                    actual: echo.to_string(),
                });
            }
        }
        Ok(UploadedPart {
            part_number,
            etag: out.e_tag().unwrap_or_default().to_string(),
            checksum,
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
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.part_number)
                    .e_tag(&p.etag)
                    .checksum_crc64_nvme(&p.checksum)
                    .build()
            })
            .collect();
        match self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .if_none_match("*")
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(whole.to_base64())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            Ok(out) => Ok(Conditional::Written(CompletedObject {
                etag: out.e_tag().unwrap_or_default().to_string(),
                checksum_crc64nvme: out.checksum_crc64_nvme().map(str::to_string),
            })),
            Err(e) if is_precondition_failed(&e) => Ok(Conditional::PreconditionFailed),
            Err(e) if status(&e) == Some(404) => Err(StoreError::NoSuchUpload {
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                upload_id: upload_id.to_string(),
            }),
            Err(e) => Err(request_error("CompleteMultipartUpload", key, &e)),
        }
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(request_error("AbortMultipartUpload", key, &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        self.list_all(prefix).await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<(), StoreError> {
        // CopySource is "bucket/key", URL-encoded; our keys are ASCII-safe but '=' and '/'.
        let source = format!(
            "{}/{}",
            self.bucket,
            url::form_urlencoded::byte_serialize(from.as_str().as_bytes())
                .collect::<String>()
                .replace("%2F", "/")
        );
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to.as_str())
            .copy_source(source)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("CopyObject", to, &e))
    }

    async fn checksum_crc64nvme(&self, key: &ObjectKey) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.checksum_crc64_nvme().map(str::to_string)),
            // No object, no checksum: callers decide what a missing object means.
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(request_error("HeadObject", key, &e)),
        }
    }
}

impl S3Store {
    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| request_error("ListObjectsV2", &ObjectKey::new(prefix), &e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(ObjectKey::new)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(keys),
            }
        }
    }
}

/// `Sha256::digest` into a plain array.
trait DigestBytes {
    fn digest_bytes(data: &[u8]) -> [u8; 32];
}

impl DigestBytes for sha2::Sha256 {
    fn digest_bytes(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }
}
