//! Audit records: one JSON object per transfer outcome, written to
//! `{prefix}/_audit/year=/month=/day=/…json` so Athena can query them (one JSON object per
//! file, no nesting that Athena's JSON SerDe cannot read).

pub mod report;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{ArchiveLayout, Conditional, ObjectStore, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    /// archived | already_archived | suspended | failed | not_available
    pub outcome: String,
    pub org_id: String,
    pub conversation_id: String,
    pub recording_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub retries: u32,
    pub url_refreshes: u32,
    pub invocations: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub worker_id: String,
    pub function: String,
    /// The storage target the recording went to (routing config; absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The conversation's end (Genesys), for the archive latency of an archived record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_end: Option<DateTime<Utc>>,
}

/// Writes the record under a unique key (never overwrites another record).
pub async fn write(
    store: &dyn ObjectStore,
    layout: &ArchiveLayout,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    // A conversation-level record has no recording id; it is filed under the conversation's.
    let subject = if record.recording_id.is_empty() {
        &record.conversation_id
    } else {
        &record.recording_id
    };
    let rid = crate::ids::RecordingId::parse(subject).map_err(|e| StoreError::Request {
        operation: "PutObject",
        key: "_audit".into(),
        reason: e.to_string(),
        transient: false,
    })?;
    let key = layout.audit_key(
        record.at,
        &rid,
        &format!(
            "{}-{}",
            record.outcome,
            &record
                .worker_id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(12)
                .collect::<String>()
        ),
    );
    let body = serde_json::to_vec(record).unwrap_or_default();
    match store
        .put_if_absent(&key, Bytes::from(body), "application/json")
        .await?
    {
        Conditional::Written(_) | Conditional::PreconditionFailed => Ok(()),
    }
}
