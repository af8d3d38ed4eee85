//! The events gc-archive consumes: Genesys Cloud's EventBridge envelope (conversation detail
//! events: `detail.topicName`, `detail.eventBody`, `detail.metadata.CorrelationId`; see
//! genesys-api.md §5.1) and our own TransferQueue job message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::RecordingMedia;
use crate::ids::{ConversationId, OrgId, RecordingId};

/// An EventBridge event as delivered (directly, or as an SQS body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBridgeEnvelope {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "detail-type", default)]
    pub detail_type: Option<String>,
    pub source: String,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: serde_json::Value,
}

/// `detail` of a Genesys Cloud event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenesysDetail {
    pub topic_name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub event_body: serde_json::Value,
    #[serde(default)]
    pub metadata: Option<GenesysMetadata>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenesysMetadata {
    #[serde(rename = "CorrelationId", default)]
    pub correlation_id: Option<String>,
}

/// The conversation-end style topics that mean "recordings of this conversation are coming".
pub const ARCHIVE_TOPIC_SUFFIXES: &[&str] = &["customer.end", "user.end", "acw", "wrapup"];

/// What an incoming event asks of us.
#[derive(Debug, Clone, PartialEq)]
pub enum EventIntent {
    /// Archive the recordings of this conversation.
    Conversation {
        org: Option<OrgId>,
        conversation: ConversationId,
        topic: String,
        event_time: Option<DateTime<Utc>>,
        correlation_id: Option<String>,
    },
    /// A topic we do not act on: acknowledge and count.
    Ignored { topic: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not JSON: {0}")]
    NotJson(String),
    #[error("event is not a Genesys Cloud EventBridge event: {0}")]
    Shape(String),
    #[error("event has no valid conversation id: {0}")]
    NoConversation(String),
}

/// `aws.partner/genesys.com/cloud/{orgId}/{suffix}` → org id.
pub fn org_from_source(source: &str) -> Option<OrgId> {
    let rest = source.strip_prefix("aws.partner/genesys.com/cloud/")?;
    OrgId::parse(rest.split('/').next()?).ok()
}

/// Parses an EventBridge event (JSON text) into what it asks of us.
pub fn parse_genesys_event(json: &str) -> Result<EventIntent, EventError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| EventError::NotJson(e.to_string()))?;
    parse_genesys_event_value(value)
}

pub fn parse_genesys_event_value(value: serde_json::Value) -> Result<EventIntent, EventError> {
    if ConversationMessage::looks_like(&value) {
        return ConversationMessage::from_value(value).map(|m| m.intent());
    }
    let envelope: EventBridgeEnvelope =
        serde_json::from_value(value).map_err(|e| EventError::Shape(e.to_string()))?;
    let detail: GenesysDetail = serde_json::from_value(envelope.detail.clone())
        .map_err(|e| EventError::Shape(format!("detail: {e}")))?;
    let topic = detail.topic_name.clone();
    let parts: Vec<&str> = topic.split('.').collect();
    // v2.detail.events.conversation.{id}.{suffix...}
    let is_conversation =
        parts.len() >= 6 && parts[..4] == ["v2", "detail", "events", "conversation"];
    let suffix = if is_conversation {
        parts[5..].join(".")
    } else {
        String::new()
    };
    if !is_conversation || !ARCHIVE_TOPIC_SUFFIXES.contains(&suffix.as_str()) {
        return Ok(EventIntent::Ignored { topic });
    }
    let from_body = detail
        .event_body
        .get("conversationId")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let raw = from_body.unwrap_or_else(|| parts[4].to_string());
    let conversation =
        ConversationId::parse(&raw).map_err(|e| EventError::NoConversation(e.to_string()))?;
    let event_time = detail
        .event_body
        .get("eventTime")
        .and_then(|v| v.as_i64())
        .and_then(DateTime::from_timestamp_millis)
        .or(detail.timestamp)
        .or(envelope.time);
    Ok(EventIntent::Conversation {
        org: org_from_source(&envelope.source),
        conversation,
        topic,
        event_time,
        correlation_id: detail.metadata.and_then(|m| m.correlation_id),
    })
}

/// An ArchiveQueue message from our own producers (the recording sweep, a backfill): archive
/// the recordings of this conversation, exactly as a conversation-end event from Genesys asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMessage {
    pub version: u32,
    pub org_id: OrgId,
    pub conversation_id: ConversationId,
    /// Who sent it: `sweep`, `backfill`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_end: Option<DateTime<Utc>>,
}

pub const CONVERSATION_MESSAGE_VERSION: u32 = 1;

impl ConversationMessage {
    /// Ours, not an EventBridge event (no `detail`) and not a transfer job (no recording).
    fn looks_like(value: &serde_json::Value) -> bool {
        value.get("origin").is_some()
            && value.get("conversationId").is_some()
            && value.get("detail").is_none()
            && value.get("recordingId").is_none()
    }

    fn from_value(value: serde_json::Value) -> Result<ConversationMessage, EventError> {
        let m: ConversationMessage = serde_json::from_value(value)
            .map_err(|e| EventError::Shape(format!("conversation message: {e}")))?;
        if m.version != CONVERSATION_MESSAGE_VERSION {
            return Err(EventError::Shape(format!(
                "conversation message version {} is not {CONVERSATION_MESSAGE_VERSION}",
                m.version
            )));
        }
        Ok(m)
    }

    fn intent(self) -> EventIntent {
        EventIntent::Conversation {
            org: Some(self.org_id),
            conversation: self.conversation_id,
            topic: format!("gc-archive.{}", self.origin),
            event_time: self.conversation_end,
            correlation_id: None,
        }
    }
}

/// A TransferQueue message: one recording for chunk-recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferMessage {
    pub version: u32,
    pub org_id: OrgId,
    pub conversation_id: ConversationId,
    pub recording_id: RecordingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_start: Option<DateTime<Utc>>,
    /// The recording's kind (`Recording.media`); absent in older messages, which were audio.
    #[serde(default = "audio")]
    pub media: RecordingMedia,
    #[serde(default = "one")]
    pub attempt: u32,
    /// The storage target decided for the recording (routing config), so a resumed transfer
    /// never changes bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::routing::RecordedRoute>,
}

fn audio() -> RecordingMedia {
    RecordingMedia::Audio
}

fn one() -> u32 {
    1
}

pub const TRANSFER_MESSAGE_VERSION: u32 = 1;

impl TransferMessage {
    pub fn parse(body: &str) -> Result<TransferMessage, EventError> {
        let m: TransferMessage = serde_json::from_str(body)
            .map_err(|e| EventError::Shape(format!("transfer job: {e}")))?;
        if m.version != TRANSFER_MESSAGE_VERSION {
            return Err(EventError::Shape(format!(
                "transfer job version {} is not {TRANSFER_MESSAGE_VERSION}",
                m.version
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, body: serde_json::Value) -> String {
        serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "v2.detail.events.conversation.{id}.customer.end",
            "source": "aws.partner/genesys.com/cloud/3f6d2a9e-0000-4000-8000-000000004a73/gc-archive",
            "account": "123456789012", "time": "2026-11-20T14:10:00Z", "region": "us-east-1", "resources": [],
            "detail": {"topicName": topic, "version": "2", "eventBody": body,
                       "metadata": {"CorrelationId": "c0ffee"}, "timestamp": "2026-11-20T14:10:00.123Z"}
        })
        .to_string()
    }

    #[test]
    fn conversation_end_topics_ask_for_archiving() {
        for suffix in ARCHIVE_TOPIC_SUFFIXES {
            let topic = format!("v2.detail.events.conversation.abc-1.{suffix}");
            let intent = parse_genesys_event(&event(
                &topic,
                serde_json::json!({"conversationId": "abc-1", "eventTime": 1_795_000_000_000i64}),
            ))
            .unwrap();
            let EventIntent::Conversation {
                org,
                conversation,
                correlation_id,
                event_time,
                ..
            } = intent
            else {
                panic!("{suffix} ignored")
            };
            assert_eq!(conversation.as_str(), "abc-1");
            assert_eq!(
                org.unwrap().as_str(),
                "3f6d2a9e-0000-4000-8000-000000004a73"
            );
            assert_eq!(correlation_id.as_deref(), Some("c0ffee"));
            assert_eq!(event_time.unwrap().timestamp_millis(), 1_795_000_000_000);
        }
    }

    #[test]
    fn other_topics_are_ignored_not_failed() {
        for topic in [
            "v2.audits.entitytype.UserPresence.entityid.u1",
            "v2.detail.events.conversation.abc.customer.start",
            "v2.detail.events.conversation.abc.acw.extra",
        ] {
            assert!(
                matches!(
                    parse_genesys_event(&event(topic, serde_json::json!({}))).unwrap(),
                    EventIntent::Ignored { .. }
                ),
                "{topic}"
            );
        }
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(matches!(
            parse_genesys_event("{not json"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            parse_genesys_event("{\"detail\":{}}"),
            Err(EventError::Shape(_))
        ));
        let bad_id = event(
            "v2.detail.events.conversation.x.customer.end",
            serde_json::json!({"conversationId": "../etc"}),
        );
        assert!(matches!(
            parse_genesys_event(&bad_id),
            Err(EventError::NoConversation(_))
        ));
    }

    #[test]
    fn transfer_messages_round_trip_and_check_their_version() {
        let m = TransferMessage {
            version: 1,
            org_id: OrgId::parse("o").unwrap(),
            conversation_id: ConversationId::parse("c").unwrap(),
            recording_id: RecordingId::parse("r").unwrap(),
            conversation_start: None,
            media: RecordingMedia::Email,
            attempt: 2,
            route: Some(crate::routing::RecordedRoute {
                target: "legal".into(),
                bucket: "acme-legal".into(),
                prefix: "gc".into(),
                rule: Some("legal hold".into()),
                config: "s3://cfg/routing.yaml#1".into(),
                decided_at: "2026-11-20T14:10:00Z".parse().unwrap(),
            }),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(TransferMessage::parse(&text).unwrap(), m);
        assert!(TransferMessage::parse(&text.replace("\"version\":1", "\"version\":9")).is_err());
        let old = TransferMessage::parse(
            r#"{"version":1,"orgId":"o","conversationId":"c","recordingId":"r"}"#,
        )
        .unwrap();
        assert_eq!(old.media, RecordingMedia::Audio);
    }

    #[test]
    fn a_sweep_message_asks_for_the_conversation_like_an_end_event() {
        let body = serde_json::json!({
            "version": 1,
            "orgId": "5a2b1f0e-7c1d-4d8e-9a43-0c9e1f2d3b4a",
            "conversationId": "8c189fe7-d947-408c-9ab3-7843ecc028ce",
            "origin": "sweep",
            "conversationEnd": "2026-11-20T15:00:00Z"
        });
        match parse_genesys_event(&body.to_string()).unwrap() {
            EventIntent::Conversation {
                org,
                conversation,
                topic,
                event_time,
                ..
            } => {
                assert_eq!(
                    org.unwrap().as_str(),
                    "5a2b1f0e-7c1d-4d8e-9a43-0c9e1f2d3b4a"
                );
                assert_eq!(
                    conversation.as_str(),
                    "8c189fe7-d947-408c-9ab3-7843ecc028ce"
                );
                assert_eq!(topic, "gc-archive.sweep");
                assert_eq!(
                    event_time.unwrap().to_rfc3339(),
                    "2026-11-20T15:00:00+00:00"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut wrong = body.clone();
        wrong["version"] = serde_json::json!(2);
        assert!(matches!(
            parse_genesys_event(&wrong.to_string()),
            Err(EventError::Shape(_))
        ));
        let mut bad_id = body;
        bad_id["conversationId"] = serde_json::json!("../other-folder");
        assert!(parse_genesys_event(&bad_id.to_string()).is_err());
    }
}
