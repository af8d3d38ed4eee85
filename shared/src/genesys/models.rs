//! Serde models for the Platform API resources we use, with the real JSON field names (checked
//! against the official SDK models, `purecloudplatformclientv2` 269.0.0). Unknown fields are
//! ignored and unknown enum values map to `Other`, so a new Genesys release does not break us.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SignedUrl;

/// `fileState` of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileState {
    Archived,
    Available,
    Deleted,
    Restored,
    Restoring,
    Uploading,
    Error,
    #[serde(other)]
    Other,
}

impl FileState {
    /// Media can be downloaded now.
    pub fn is_downloadable(self) -> bool {
        matches!(self, FileState::Available | FileState::Restored)
    }

    /// Media may become downloadable later without anyone acting.
    pub fn is_pending(self) -> bool {
        matches!(self, FileState::Uploading | FileState::Restoring)
    }
}

/// `RecordingMetadata` (GET `/api/v2/conversations/{id}/recordingmetadata`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingMetadata {
    pub id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub media: Option<String>,
    #[serde(default)]
    pub media_subtype: Option<String>,
    #[serde(default)]
    pub file_state: Option<FileState>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub archive_date: Option<String>,
    #[serde(default)]
    pub delete_date: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub self_uri: Option<String>,
}

/// One entry of `Recording.mediaUris` (`MediaResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaResult {
    #[serde(default, deserialize_with = "lenient_url")]
    pub media_uri: Option<SignedUrl>,
}

/// An absent, null, empty or unusable URL is no URL (the recording is then not ready), not a
/// decode failure of the whole Recording.
fn lenient_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SignedUrl>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.as_deref().and_then(SignedUrl::parse))
}

/// `Recording` (GET `/api/v2/conversations/{id}/recordings/{recordingId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub media: Option<String>,
    #[serde(default)]
    pub file_state: Option<FileState>,
    /// Signed URLs; the keys' meaning is not documented, so callers take any usable entry.
    #[serde(default)]
    pub media_uris: Option<BTreeMap<String, MediaResult>>,
    #[serde(default)]
    pub estimated_transcode_time_ms: Option<u64>,
    #[serde(default)]
    pub actual_transcode_time_ms: Option<u64>,
    #[serde(default)]
    pub output_duration_ms: Option<u64>,
    #[serde(default)]
    pub output_size_in_bytes: Option<u64>,
    #[serde(default)]
    pub self_uri: Option<String>,
}

impl Recording {
    /// Every usable signed media URL with its `mediaUris` key, in key order (deterministic).
    /// The keys' meaning is not documented (genesys-api.md §3.3): each one is archived.
    pub fn media(&self) -> Vec<(&str, &SignedUrl)> {
        self.media_uris
            .iter()
            .flatten()
            .filter_map(|(k, m)| m.media_uri.as_ref().map(|u| (k.as_str(), u)))
            .collect()
    }
}

/// One item of `BatchDownloadJobSubmission.batchDownloadRequestList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadRequest {
    pub conversation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
}

/// POST `/api/v2/recording/batchrequests` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadJobSubmission {
    pub batch_download_request_list: Vec<BatchDownloadRequest>,
}

/// `BatchDownloadJobSubmissionResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadJobSubmissionResult {
    pub id: String,
    #[serde(default)]
    pub self_uri: Option<String>,
}

/// `BatchDownloadJobResult`: one recording of a batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadJobResult {
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub recording_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_url")]
    pub result_url: Option<SignedUrl>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// `BatchDownloadJobStatusResult` (GET `/api/v2/recording/batchrequests/{jobId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadJobStatusResult {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub expected_result_count: Option<u32>,
    #[serde(default)]
    pub result_count: Option<u32>,
    #[serde(default)]
    pub error_count: Option<u32>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub results: Vec<BatchDownloadJobResult>,
}

impl BatchDownloadJobStatusResult {
    /// Done when every expected result is in (the official tutorial's rule), or the job says so.
    pub fn is_complete(&self) -> bool {
        match (self.result_count, self.expected_result_count) {
            (Some(have), Some(want)) if want > 0 => have >= want,
            _ => self.status.as_deref() == Some("Completed"),
        }
    }
}

/// `DomainEntityRef`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRef {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `ConversationDivisionMembership`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DivisionMembership {
    #[serde(default)]
    pub division: Option<EntityRef>,
    #[serde(default)]
    pub entities: Vec<EntityRef>,
}

/// `Participant` (the fields the archive records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub queue_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub wrapup: Option<Wrapup>,
    /// Participant data: a string map by the API reference; kept as JSON so one odd value
    /// cannot make the whole conversation unreadable (routing reads the string values).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub calls: Vec<MediaSession>,
    #[serde(default)]
    pub callbacks: Vec<MediaSession>,
    #[serde(default)]
    pub chats: Vec<MediaSession>,
    #[serde(default)]
    pub messages: Vec<MediaSession>,
    #[serde(default)]
    pub emails: Vec<MediaSession>,
    #[serde(default)]
    pub screenshares: Vec<MediaSession>,
}

impl Participant {
    /// Every media session of the participant, whatever its kind.
    pub fn sessions(&self) -> impl Iterator<Item = &MediaSession> {
        self.calls
            .iter()
            .chain(&self.callbacks)
            .chain(&self.chats)
            .chain(&self.messages)
            .chain(&self.emails)
            .chain(&self.screenshares)
    }
}

/// `Wrapup` (the code the agent chose after the conversation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wrapup {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// One media session of a participant (`Call`, `Chat`, `Message`, `Email`, ...): the fields
/// routing reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSession {
    #[serde(default)]
    pub id: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
}

/// `Conversation` (GET `/api/v2/conversations/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub participants: Vec<Participant>,
    #[serde(default)]
    pub divisions: Vec<DivisionMembership>,
    #[serde(default)]
    pub external_tag: Option<String>,
}

/// `CustomAttributesUpdateRequest` (PUT `/api/v2/conversations/{id}/customattributes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAttributesUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub schema_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub custom_attributes: HashMap<String, serde_json::Value>,
}

/// `CustomAttributesPatchRequest` (PATCH, merges fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAttributesPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub custom_attributes: HashMap<String, serde_json::Value>,
}

/// `CustomAttributes` as listed by GET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAttributes {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub custom_attributes: HashMap<String, serde_json::Value>,
}

/// `ConversationTagsUpdate` (PUT `/api/v2/conversations/{id}/tags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationTagsUpdate {
    pub external_tag: String,
}

/// `ConversationQuery` for POST `/api/v2/analytics/conversations/details/query` (subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetailsQuery {
    /// ISO-8601 `start/end`; at most 7 days.
    pub interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub segment_filters: Vec<serde_json::Value>,
    pub paging: Paging,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    pub page_size: u32,
    pub page_number: u32,
}

impl ConversationDetailsQuery {
    /// Conversations in `[start, end)` that have a recording, oldest first.
    pub fn with_recordings(start: DateTime<Utc>, end: DateTime<Utc>, page: Paging) -> Self {
        ConversationDetailsQuery {
            interval: format!(
                "{}/{}",
                start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            order: Some("asc".into()),
            order_by: Some("conversationStart".into()),
            segment_filters: vec![serde_json::json!({
                "type": "and",
                "predicates": [{"type": "dimension", "dimension": "recording", "value": "true"}]
            })],
            paging: page,
        }
    }
}

/// `AnalyticsConversationQueryResponse` (subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetailsResponse {
    /// Absent (not empty) when a page has no rows.
    #[serde(default)]
    pub conversations: Vec<AnalyticsConversation>,
    #[serde(default)]
    pub total_hits: Option<u64>,
}

/// `AsyncConversationQuery`: the async details job for history the sync query cannot reach.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncConversationQuery {
    pub interval: String,
    pub order: String,
    pub order_by: String,
    pub segment_filters: Vec<serde_json::Value>,
}

impl AsyncConversationQuery {
    /// Conversations in `[start, end)` that have a recording, oldest first.
    pub fn with_recordings(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let sync = ConversationDetailsQuery::with_recordings(
            start,
            end,
            Paging {
                page_size: 1,
                page_number: 1,
            },
        );
        AsyncConversationQuery {
            interval: sync.interval,
            order: "asc".into(),
            order_by: "conversationStart".into(),
            segment_filters: sync.segment_filters,
        }
    }
}

/// `AsyncQueryResponse`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncQueryResponse {
    pub job_id: String,
}

/// `Limit`: one of an org's limits (`GET /api/v2/organizations/limits/namespaces/{ns}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub value: Option<i64>,
}

/// `LimitsEntityListing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LimitsEntityListing {
    #[serde(default)]
    pub entities: Vec<Limit>,
}

/// `AsyncQueryStatus`: `QUEUED`, `PENDING`, `FULFILLED`, `FAILED`, `CANCELLED`, `EXPIRED`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncQueryStatus {
    pub state: String,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub expiration_date: Option<DateTime<Utc>>,
}

/// `AnalyticsConversationAsyncQueryResponse`: one page of a job's results.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncConversationResults {
    #[serde(default)]
    pub conversations: Vec<AnalyticsConversation>,
    /// Absent on the last page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `AnalyticsConversation` (subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsConversation {
    pub conversation_id: String,
    #[serde(default)]
    pub conversation_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conversation_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub division_ids: Vec<String>,
    #[serde(default)]
    pub external_tag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_metadata_tolerates_unknown_fields_and_states() {
        let json = r#"[{"id":"r1","conversationId":"c1","fileState":"AVAILABLE","region":"eu-west-1","brandNew":1},
                       {"id":"r2","fileState":"SOMETHING_NEW"}]"#;
        let m: Vec<RecordingMetadata> = serde_json::from_str(json).unwrap();
        assert_eq!(m[0].file_state, Some(FileState::Available));
        assert_eq!(m[1].file_state, Some(FileState::Other));
    }

    #[test]
    fn recording_debug_hides_signed_url_queries() {
        let json = r#"{"id":"r1","mediaUris":{"S":{"mediaUri":"https://media.example.com/x.wav?X-Amz-Signature=abcdef"},"T":{"mediaUri":""}}}"#;
        let r: Recording = serde_json::from_str(json).unwrap();
        for shown in [format!("{r:?}"), serde_json::to_string(&r).unwrap()] {
            assert!(!shown.contains("abcdef"), "{shown}");
            assert!(shown.contains("media.example.com"));
        }
        let media = r.media();
        assert_eq!(media.len(), 1, "the empty URL is no URL");
        assert_eq!(media[0].0, "S");
        assert!(media[0].1.expose().as_str().ends_with("abcdef"));
    }

    #[test]
    fn batch_status_is_complete_when_every_result_is_in() {
        let j: BatchDownloadJobStatusResult = serde_json::from_str(
            r#"{"id":"j","expectedResultCount":2,"resultCount":1,"status":"InProgress","results":[]}"#,
        )
        .unwrap();
        assert!(!j.is_complete());
        let j: BatchDownloadJobStatusResult = serde_json::from_str(
            r#"{"id":"j","expectedResultCount":1,"resultCount":1,"results":[{"conversationId":"c","recordingId":"r","resultUrl":"https://m.example/x?sig=1","contentType":"audio/ogg"}]}"#,
        )
        .unwrap();
        assert!(j.is_complete());
        assert_eq!(
            j.results[0].result_url.as_ref().unwrap().host(),
            "m.example"
        );
    }

    #[test]
    fn custom_attribute_requests_use_the_sdk_field_names() {
        let put = CustomAttributesUpdate {
            id: None,
            schema_id: "s1".into(),
            version: Some(2),
            custom_attributes: [("archiveKey".to_string(), serde_json::json!("k"))].into(),
        };
        let v = serde_json::to_value(&put).unwrap();
        assert_eq!(v["schemaId"], "s1");
        assert_eq!(v["version"], 2);
        assert_eq!(v["customAttributes"]["archiveKey"], "k");
        assert!(v.get("id").is_none());
    }

    #[test]
    fn empty_analytics_page_has_no_conversations_key() {
        let r: ConversationDetailsResponse = serde_json::from_str(r#"{"totalHits":0}"#).unwrap();
        assert!(r.conversations.is_empty());
    }

    #[test]
    fn details_query_filters_on_recordings() {
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let q = ConversationDetailsQuery::with_recordings(
            start,
            start + chrono::Duration::days(1),
            Paging {
                page_size: 100,
                page_number: 1,
            },
        );
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(
            v["interval"],
            "2026-11-01T00:00:00.000Z/2026-11-02T00:00:00.000Z"
        );
        assert_eq!(
            v["segmentFilters"][0]["predicates"][0]["dimension"],
            "recording"
        );
        assert_eq!(v["paging"]["pageSize"], 100);
    }
}

/// `IntegrationType` (`{id}`: e.g. `amazon-eventbridge-source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationTypeRef {
    pub id: String,
}

/// `Integration` (the fields setup reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub integration_type: Option<IntegrationTypeRef>,
    /// `ENABLED`, `DISABLED`, `DELETED`, `RESTORED`.
    #[serde(default)]
    pub intended_state: Option<String>,
}

/// `IntegrationEntityListing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationListing {
    #[serde(default)]
    pub entities: Vec<Integration>,
    #[serde(default)]
    pub page_count: Option<u32>,
}

/// `IntegrationConfiguration` (`GET/PUT /api/v2/integrations/{id}/config/current`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub version: i64,
    #[serde(default)]
    pub properties: serde_json::Value,
    #[serde(default)]
    pub advanced: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub credentials: serde_json::Value,
}

/// `Policy` (media retention; the fields that decide when recordings are deleted).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub media_policies: Option<MediaPolicies>,
    /// The older, media-independent form.
    #[serde(default)]
    pub actions: Option<PolicyActions>,
}

/// `MediaPolicies`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPolicies {
    #[serde(default)]
    pub call_policy: Option<MediaPolicy>,
    #[serde(default)]
    pub chat_policy: Option<MediaPolicy>,
    #[serde(default)]
    pub email_policy: Option<MediaPolicy>,
    #[serde(default)]
    pub message_policy: Option<MediaPolicy>,
}

/// `CallMediaPolicy` and its siblings: the actions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPolicy {
    #[serde(default)]
    pub actions: Option<PolicyActions>,
}

/// `PolicyActions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyActions {
    #[serde(default)]
    pub retain_recording: Option<bool>,
    #[serde(default)]
    pub delete_recording: Option<bool>,
    #[serde(default)]
    pub always_delete: Option<bool>,
    #[serde(default)]
    pub retention_duration: Option<RetentionDuration>,
}

/// `RetentionDuration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionDuration {
    #[serde(default)]
    pub delete_retention: Option<RetentionDays>,
    #[serde(default)]
    pub archive_retention: Option<RetentionDays>,
}

/// `DeleteRetention` / `ArchiveRetention`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionDays {
    #[serde(default)]
    pub days: Option<i64>,
}

/// `PolicyEntityListing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyListing {
    #[serde(default)]
    pub entities: Vec<RetentionPolicy>,
    #[serde(default)]
    pub page_count: Option<u32>,
}
