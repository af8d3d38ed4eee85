//! What one Notifications API message says (genesys-api.md §5.3): the envelope
//! `{topicName, version, eventBody, metadata.CorrelationId}`, heartbeats and pongs on
//! `channel.metadata`, `v2.system.socket_closing`, system messages, and conversation
//! snapshots.
//!
//! A conversation has ended when every participant has: its `endTime` set, or its own `state`
//! (the flattened `.conversations.calls` participants) or every communication in its media
//! lists (`calls[]`, `emails[]`, `messages[]`, … of `QueueConversationEventTopicParticipant`,
//! Python SDK) `disconnected` or `terminated`. The server's event ordering is UNCONFIRMED, so
//! a snapshot is judged on its own, never against an earlier one. The detail topics
//! (`v2.detail.events.conversation.{id}.customer.end` and the others archive-on-event acts on)
//! are ends by definition.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::events::ARCHIVE_TOPIC_SUFFIXES;
use crate::ids::ConversationId;

/// The media lists of a queue/user conversation participant.
const MEDIA_LISTS: &[&str] = &[
    "calls",
    "callbacks",
    "chats",
    "cobrowsesessions",
    "emails",
    "messages",
    "internalMessages",
    "screenshares",
    "socialExpressions",
    "videos",
];
const ENDED_STATES: &[&str] = &["disconnected", "terminated"];

/// One conversation snapshot or end event.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationNotice {
    pub conversation: ConversationId,
    pub ended: bool,
    /// The earliest participant or communication start the snapshot shows.
    pub start: Option<DateTime<Utc>>,
    /// The latest end it shows (or the detail event's `eventTime`).
    pub end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Heartbeat,
    Pong,
    /// The server will close this socket: open another before it does.
    SocketClosing,
    /// A system message (`systemTopicType`, `reason`), e.g. `no_longer_subscribed` /
    /// `another_channel_subscribed`.
    System {
        topic: String,
        kind: Option<String>,
        reason: Option<String>,
    },
    Conversation(ConversationNotice),
    /// A topic we do not act on (counted).
    Other {
        topic: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    #[error("notification is not JSON: {0}")]
    NotJson(String),
    #[error("notification has no topicName")]
    NoTopic,
    #[error("{topic}: no valid conversation id: {reason}")]
    NoConversation { topic: String, reason: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    topic_name: Option<String>,
    #[serde(default)]
    event_body: Value,
}

pub fn parse(text: &str) -> Result<Notice, NoticeError> {
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| NoticeError::NotJson(e.to_string()))?;
    let topic = env.topic_name.ok_or(NoticeError::NoTopic)?;
    let body = env.event_body;
    let text_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if topic == "channel.metadata" {
        return Ok(match body.get("message").and_then(Value::as_str) {
            Some(m) if m.eq_ignore_ascii_case("pong") => Notice::Pong,
            _ => Notice::Heartbeat,
        });
    }
    if topic == "v2.system.socket_closing" {
        return Ok(Notice::SocketClosing);
    }
    if topic.starts_with("v2.system.") {
        return Ok(Notice::System {
            kind: text_of(&body, "systemTopicType"),
            reason: text_of(&body, "reason"),
            topic,
        });
    }
    let parts: Vec<&str> = topic.split('.').collect();
    let snapshot = match parts.as_slice() {
        ["v2", "routing", "queues", _, "conversations", ..]
        | ["v2", "users", _, "conversations", ..] => true,
        ["v2", "detail", "events", "conversation", _, rest @ ..]
            if ARCHIVE_TOPIC_SUFFIXES.contains(&rest.join(".").as_str()) =>
        {
            false
        }
        _ => return Ok(Notice::Other { topic }),
    };
    let bad = |reason: String| NoticeError::NoConversation {
        topic: topic.clone(),
        reason,
    };
    if !snapshot {
        let raw = text_of(&body, "conversationId").unwrap_or_else(|| parts[4].to_string());
        let conversation = ConversationId::parse(&raw).map_err(|e| bad(e.to_string()))?;
        let end = body
            .get("eventTime")
            .and_then(Value::as_i64)
            .and_then(DateTime::from_timestamp_millis);
        return Ok(Notice::Conversation(ConversationNotice {
            conversation,
            ended: true,
            start: None,
            end,
        }));
    }
    let raw = text_of(&body, "id").ok_or_else(|| bad("eventBody.id is missing".into()))?;
    let conversation = ConversationId::parse(&raw).map_err(|e| bad(e.to_string()))?;
    Ok(Notice::Conversation(judge(conversation, &body)))
}

fn time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn judge(conversation: ConversationId, body: &Value) -> ConversationNotice {
    let participants = body
        .get("participants")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut start: Option<DateTime<Utc>> = None;
    let mut end: Option<DateTime<Utc>> = None;
    let mut earliest = |t: Option<DateTime<Utc>>| {
        if let Some(t) = t {
            start = Some(start.map_or(t, |s| s.min(t)));
        }
    };
    let mut latest = |t: Option<DateTime<Utc>>| {
        if let Some(t) = t {
            end = Some(end.map_or(t, |e| e.max(t)));
        }
    };
    let mut all_ended = !participants.is_empty();
    for p in participants {
        earliest(time(p, "startTime").or(time(p, "connectedTime")));
        latest(time(p, "endTime"));
        let state_ended = |v: &Value| {
            v.get("state")
                .and_then(Value::as_str)
                .is_some_and(|s| ENDED_STATES.contains(&s.to_ascii_lowercase().as_str()))
        };
        let media: Vec<&Value> = MEDIA_LISTS
            .iter()
            .filter_map(|k| p.get(*k).and_then(Value::as_array))
            .flatten()
            .collect();
        for m in &media {
            earliest(time(m, "connectedTime"));
            latest(time(m, "disconnectedTime"));
        }
        let ended = time(p, "endTime").is_some()
            || state_ended(p)
            || (!media.is_empty() && media.iter().all(|m| state_ended(m)));
        all_ended &= ended;
    }
    ConversationNotice {
        conversation,
        ended: all_ended,
        start,
        end: if all_ended { end } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(topic: &str, body: Value) -> String {
        json!({"topicName": topic, "version": "2", "eventBody": body,
            "metadata": {"CorrelationId": "c"}})
        .to_string()
    }

    fn call(state: &str) -> Value {
        json!({"id": "m", "state": state, "connectedTime": "2026-01-01T10:00:00.000Z",
            "disconnectedTime": "2026-01-01T10:05:00.000Z"})
    }

    #[test]
    fn channel_metadata_is_a_heartbeat_or_a_pong() {
        let hb = envelope(
            "channel.metadata",
            json!({"message": "WebSocket Heartbeat"}),
        );
        assert_eq!(parse(&hb).unwrap(), Notice::Heartbeat);
        let pong = envelope("channel.metadata", json!({"message": "pong"}));
        assert_eq!(parse(&pong).unwrap(), Notice::Pong);
        let closing = envelope("v2.system.socket_closing", json!({}));
        assert_eq!(parse(&closing).unwrap(), Notice::SocketClosing);
    }

    #[test]
    fn a_queue_snapshot_ends_only_when_every_participant_has() {
        let topic = "v2.routing.queues.q1.conversations";
        let live = json!({"id": "c-1", "participants": [
            {"purpose": "customer", "connectedTime": "2026-01-01T10:00:00.000Z", "calls": [call("connected")]},
            {"purpose": "agent", "calls": [call("disconnected")]}]});
        let Notice::Conversation(n) = parse(&envelope(topic, live)).unwrap() else {
            panic!()
        };
        assert!(!n.ended);
        assert_eq!(n.end, None);
        let ended = json!({"id": "c-1", "participants": [
            {"purpose": "customer", "connectedTime": "2026-01-01T09:59:00.000Z", "calls": [call("terminated")]},
            {"purpose": "agent", "endTime": "2026-01-01T10:06:00.000Z", "calls": [call("connected")]},
            {"purpose": "acd", "state": "disconnected"}]});
        let Notice::Conversation(n) = parse(&envelope(topic, ended)).unwrap() else {
            panic!()
        };
        assert!(n.ended);
        assert_eq!(n.conversation.as_str(), "c-1");
        assert_eq!(n.start, Some("2026-01-01T09:59:00Z".parse().unwrap()));
        assert_eq!(n.end, Some("2026-01-01T10:06:00Z".parse().unwrap()));
        // A participant with no media and no end keeps the conversation open.
        let open = json!({"id": "c-1", "participants": [{"purpose": "customer"}]});
        let Notice::Conversation(n) = parse(&envelope(topic, open)).unwrap() else {
            panic!()
        };
        assert!(!n.ended);
    }

    #[test]
    fn detail_end_topics_are_ends_and_others_are_counted() {
        let n = parse(&envelope(
            "v2.detail.events.conversation.c-2.customer.end",
            json!({"conversationId": "c-2", "eventTime": 1767261600000i64}),
        ))
        .unwrap();
        assert_eq!(
            n,
            Notice::Conversation(ConversationNotice {
                conversation: ConversationId::parse("c-2").unwrap(),
                ended: true,
                start: None,
                end: DateTime::from_timestamp_millis(1767261600000),
            })
        );
        assert!(matches!(
            parse(&envelope(
                "v2.detail.events.conversation.c-2.customer.start",
                json!({})
            )),
            Ok(Notice::Other { .. })
        ));
        assert!(matches!(
            parse(&envelope("v2.users.u.presence", json!({}))),
            Ok(Notice::Other { .. })
        ));
        assert!(matches!(
            parse(&envelope("v2.routing.queues.q.conversations", json!({}))),
            Err(NoticeError::NoConversation { .. })
        ));
        assert!(matches!(parse("{"), Err(NoticeError::NotJson(_))));
        assert_eq!(parse("{}"), Err(NoticeError::NoTopic));
    }
}
