//! The manifest written beside each archived object. Its existence is what "archived" means;
//! it records everything needed to trust, find and decrypt the object years later.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// 2: the object's integrity value is S3's full-object CRC64NVME (1: composite SHA-256).
pub const MANIFEST_VERSION: u32 = 2;

fn audio() -> String {
    "audio".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: u32,
    pub org_id: String,
    pub conversation_id: String,
    pub recording_id: String,
    pub conversation_start: DateTime<Utc>,
    pub bucket: String,
    pub object_key: String,
    pub plaintext: PlaintextInfo,
    pub ciphertext: CiphertextInfo,
    pub encryption: EncryptionInfo,
    pub source: SourceInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<ParticipantInfo>,
    /// The storage target and routing rule that sent the recording here (absent without a
    /// routing config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::routing::RecordedRoute>,
    pub timings: Timings,
    pub tool_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaintextInfo {
    pub size: u64,
    pub sha256: String,
    /// Codec sniffed from the media's magic bytes.
    pub codec: String,
    /// The media type Genesys stated (a batch result's `contentType`), else what the media
    /// host served.
    pub declared_content_type: String,
    /// The `Content-Type` the media host served (advisory: the sniffed codec decides).
    #[serde(default)]
    pub served_content_type: String,
    /// The recording's kind: audio, screen, chat, messaging or email.
    #[serde(default = "audio")]
    pub media: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiphertextInfo {
    pub size: u64,
    /// Base64 CRC64NVME of each S3 part, in order (S3 verified each on upload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crc64nvme_parts: Vec<String>,
    /// S3's full-object CRC64NVME of the archive: checked by S3 at completion and against
    /// S3 after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_checksum_crc64nvme: Option<String>,
    /// Version-1 manifests: base64 SHA-256 of each part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sha256_parts: Vec<String>,
    /// Version-1 manifests: S3's composite SHA-256 (`<b64>-<parts>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_checksum_sha256: Option<String>,
    pub parts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionInfo {
    /// "aws-encryption-sdk message format v2".
    pub format: String,
    pub algorithm_suite: String,
    pub frame_length: u32,
    pub message_id: String,
    /// Key providers that can decrypt the data key (`aws-kms` with the key ARN, or the raw
    /// key namespace/name). No key material.
    pub key_providers: Vec<String>,
    pub encryption_context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceInfo {
    /// Host of the signed media URL (never the query string).
    pub media_host: String,
    /// What was asked for: `ORIGINAL` (batch download), a transcoded `formatId`, or the export
    /// form of a non-audio recording.
    pub format_id: String,
    /// The `mediaUris` key, for one of several media streams of a recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_key: Option<String>,
    /// Integrity evidence from the source that was checked (`etag-md5 verified`,
    /// `ogg page crc32 verified (N pages)`, …), or `none`: then only our own hashes vouch
    /// for the bytes, which prove what we received, not what the source held.
    #[serde(default)]
    pub integrity: Vec<String>,
    pub ranged: bool,
    pub chunk_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    /// Lambda invocations that worked on this transfer (1 + resumes).
    pub invocations: u32,
    pub chunk_retries: u32,
    pub url_refreshes: u32,
    /// Wall time of the invocation that completed the archive.
    pub last_invocation_ms: u64,
}
