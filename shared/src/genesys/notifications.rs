//! The Notifications API's REST side (genesys-api.md §5.3) and the queue listing event-stream
//! subscribes by: channels (`POST /api/v2/notifications/channels`, `HEAD .../{channelId}`),
//! subscriptions (`PUT .../{channelId}/subscriptions?ignoreErrors=true`, body
//! `[{"id": topic}]`, answered with `ChannelTopic{id, state, rejectionReason,
//! missingPermissions}`), and `GET /api/v2/routing/queues`. Field names are the Python SDK's
//! `Channel`, `ChannelTopic`, `ChannelTopicEntityListing` and `QueueEntityListing`.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{GenesysClient, GenesysError};

/// A channel's id. The socket of a channel is opened without credentials, so whoever knows
/// the id (it is the last segment of `connectUri`) can read the org's events: it is shown
/// only by its last characters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(String);

impl ChannelId {
    pub fn new(id: impl Into<String>) -> ChannelId {
        ChannelId(id.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "channel …{tail}")
    }
}

impl std::fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `connectUri`: a capability (see [`ChannelId`]), never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectUri(String);

impl ConnectUri {
    pub fn new(uri: impl Into<String>) -> ConnectUri {
        ConnectUri(uri.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectUri(<redacted>)")
    }
}

/// `Channel`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: ChannelId,
    pub connect_uri: ConnectUri,
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

/// `ChannelTopic`: `state` is `Permitted` or `Rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTopic {
    pub id: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
    #[serde(default)]
    pub missing_permissions: Vec<String>,
}

impl ChannelTopic {
    pub fn rejected(&self) -> bool {
        self.state.as_deref() == Some("Rejected")
    }
}

#[derive(Deserialize)]
struct ChannelTopicEntityListing {
    #[serde(default)]
    entities: Vec<ChannelTopic>,
}

/// A routing queue from `QueueEntityListing.entities` (only what we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoutingQueue {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueEntityListing {
    #[serde(default)]
    entities: Vec<RoutingQueue>,
    #[serde(default)]
    page_count: Option<u32>,
}

/// `path` as errors and logs show it: a channel id cut to its last characters.
pub(crate) fn shown_path(path: &str) -> std::borrow::Cow<'_, str> {
    const AT: &str = "/notifications/channels/";
    let Some(i) = path.find(AT) else {
        return path.into();
    };
    let start = i + AT.len();
    let end = path[start..].find('/').map_or(path.len(), |j| start + j);
    let shown = ChannelId::new(&path[start..end]).to_string();
    format!(
        "{}{}{}",
        &path[..start],
        shown.trim_start_matches("channel "),
        &path[end..]
    )
    .into()
}

impl GenesysClient {
    /// POST `/api/v2/notifications/channels`. Retried: a second channel after a lost response
    /// is never connected, and the API evicts unconnected channels first.
    pub async fn create_notification_channel(&self) -> Result<Channel, GenesysError> {
        let path = "/api/v2/notifications/channels";
        let (_, bytes) = self.call(Method::POST, path, &[], None, true).await?;
        Self::decode("POST", path, &bytes)
    }

    /// HEAD `/api/v2/notifications/channels/{channelId}`: whether the channel still exists.
    pub async fn notification_channel_exists(
        &self,
        channel: &ChannelId,
    ) -> Result<bool, GenesysError> {
        let path = format!("/api/v2/notifications/channels/{}", channel.expose());
        match self.call(Method::HEAD, &path, &[], None, true).await {
            Ok(_) => Ok(true),
            Err(GenesysError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e.without(channel.expose())),
        }
    }

    /// PUT `/api/v2/notifications/channels/{channelId}/subscriptions?ignoreErrors=true`:
    /// replaces the channel's topics; each topic comes back `Permitted` or `Rejected` (with
    /// `ignoreErrors`, a rejected topic does not fail the whole request, so every rejection
    /// can be named).
    pub async fn subscribe_notification_channel(
        &self,
        channel: &ChannelId,
        topics: &[String],
    ) -> Result<Vec<ChannelTopic>, GenesysError> {
        let path = format!(
            "/api/v2/notifications/channels/{}/subscriptions",
            channel.expose()
        );
        let body: Vec<serde_json::Value> = topics
            .iter()
            .map(|t| serde_json::json!({ "id": t }))
            .collect();
        let (_, bytes) = self
            .call(
                Method::PUT,
                &path,
                &[("ignoreErrors", "true")],
                Some(serde_json::Value::Array(body)),
                true,
            )
            .await
            .map_err(|e| e.without(channel.expose()))?;
        let listing: ChannelTopicEntityListing = Self::decode("PUT", &path, &bytes)?;
        Ok(listing.entities)
    }

    /// GET `/api/v2/routing/queues` (every page).
    pub async fn routing_queues(&self) -> Result<Vec<RoutingQueue>, GenesysError> {
        self.all_pages("/api/v2/routing/queues", |l: QueueEntityListing| {
            (l.entities, l.page_count)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_shows_only_its_last_characters() {
        let id = ChannelId::new("streaming-0-abcdef0123456789");
        assert_eq!(id.to_string(), "channel …6789");
        assert_eq!(format!("{id:?}"), "channel …6789");
        let uri = ConnectUri::new("wss://streaming.example/channels/streaming-0-abcdef0123456789");
        assert!(!format!("{uri:?}").contains("abcdef"));
    }

    #[test]
    fn paths_never_carry_a_whole_channel_id() {
        assert_eq!(
            shown_path("/api/v2/notifications/channels/streaming-0-abcdef0123456789/subscriptions"),
            "/api/v2/notifications/channels/…6789/subscriptions"
        );
        assert_eq!(
            shown_path("/api/v2/notifications/channels/streaming-0-abcdef0123456789"),
            "/api/v2/notifications/channels/…6789"
        );
        assert_eq!(
            shown_path("/api/v2/routing/queues"),
            "/api/v2/routing/queues"
        );
    }

    #[test]
    fn channel_topics_parse_as_the_sdk_names_them() {
        let listing: ChannelTopicEntityListing = serde_json::from_str(
            r#"{"entities":[{"id":"v2.routing.queues.q.conversations","state":"Rejected",
            "rejectionReason":"Missing permissions","missingPermissions":["conversation:communication:view"]},
            {"id":"v2.users.u.conversations","state":"Permitted"}]}"#,
        )
        .unwrap();
        assert!(listing.entities[0].rejected());
        assert_eq!(
            listing.entities[0].missing_permissions,
            ["conversation:communication:view"]
        );
        assert!(!listing.entities[1].rejected());
    }
}
