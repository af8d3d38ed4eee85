//! An upload's record in `{prefix}/_state/uploads/{uploadId}.json`, replaced only with
//! `If-Match` on the ETag that was read, so two invocations never both move an upload on
//! (the one whose write fails stops, and the client sees the winner's answer).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::plan::PartPlan;
use crate::ids::ConversationId;
use crate::store::{ArchiveLayout, Conditional, ObjectKey, ObjectStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Parts are being uploaded.
    Uploading,
    /// Completed in S3 and being checked; not released.
    Verifying,
    /// Verified and released; being handed to the conversation.
    Delivering,
    Delivered,
    /// Refused after upload (a check failed); nothing of it is left in S3.
    Refused,
    Aborted,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Delivered | Phase::Refused | Phase::Aborted)
    }
}

/// What the checks found (the hashes are of the bytes in S3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub sha256_hex: String,
    pub md5_b64: Option<String>,
    /// `read`: every byte was read back and hashed; `s3`: S3 verified the signed part
    /// checksums and the hashes are the client's (see `VerifyMode`).
    pub method: String,
    pub sniffed: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `attachment` (Genesys message media) or `link` (a presigned GET in a text message).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_expires_at: Option<DateTime<Utc>>,
    /// Why an attachment became a link (Genesys' limit), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The write-back's outcome (never fatal to a delivered upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadRecord {
    pub upload_id: String,
    pub s3_upload_id: String,
    pub bucket: String,
    pub key: String,
    pub record_key: String,
    pub conversation_id: ConversationId,
    pub communication_id: String,
    pub caller: String,
    pub file_name: String,
    pub file_type: String,
    pub plan: PartPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_md5: Option<String>,
    /// Part number → the base64 SHA-256 its URL was signed with (a part is signed for one
    /// checksum only: asking again with another is refused).
    #[serde(default)]
    pub signed: BTreeMap<u32, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_digest: Option<String>,
    pub phase: Phase,
    /// S3 listed a SHA-256 for every part at completion (real S3 does; moto does not), so it
    /// checked them.
    #[serde(default)]
    pub s3_checked_parts: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub conversation_start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// A record and the ETag it was read at.
#[derive(Debug, Clone)]
pub struct Held {
    pub record: UploadRecord,
    pub etag: String,
}

pub async fn load(
    store: &dyn ObjectStore,
    layout: &ArchiveLayout,
    upload_id: &str,
) -> Result<Option<Held>, StoreError> {
    let key = layout.upload_state_key(upload_id);
    let Some(object) = store.get(&key).await? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&object.body).map_err(|e| StoreError::Request {
        operation: "GetObject",
        key: key.to_string(),
        reason: format!("upload record unreadable: {e}"),
        transient: false,
    })?;
    Ok(Some(Held {
        record,
        etag: object.etag,
    }))
}

/// Writes `record` over the version `etag` (or creates it when `None`); `None` back when
/// another writer got there first.
pub async fn save(
    store: &dyn ObjectStore,
    layout: &ArchiveLayout,
    record: &UploadRecord,
    etag: Option<&str>,
) -> Result<Option<Held>, StoreError> {
    let key: ObjectKey = layout.upload_state_key(&record.upload_id);
    let body = Bytes::from(serde_json::to_vec_pretty(record).unwrap_or_default());
    match store
        .put_conditionally(&key, body, "application/json", etag)
        .await?
    {
        Conditional::Written(etag) => Ok(Some(Held {
            record: record.clone(),
            etag,
        })),
        Conditional::PreconditionFailed => Ok(None),
    }
}
