//! What event-stream keeps between sockets and invocations, in one S3 object
//! (`{prefix}/_state/stream/state.json`, replaced only with `If-Match`): the channel (id,
//! connect URI, expiry, which topics), until when a socket was known to be receiving, the
//! gaps not filled yet, and the lease of the one consumer allowed to hold the channel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::genesys::notifications::{ChannelId, ConnectUri};
use crate::store::{ArchiveLayout, Conditional, ObjectKey, ObjectStore, StoreError};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub connect_uri: ConnectUri,
    pub expires: Option<DateTime<Utc>>,
    pub topics: usize,
    /// Last time it was subscribed (a subscription keeps a channel 24 h).
    pub subscribed_at: DateTime<Utc>,
}

/// Why no socket was receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GapCause {
    /// Nothing was receiving before this consumer started (first start, or a crash).
    Startup,
    /// The previous invocation handed off at its deadline.
    Handoff,
    /// The socket closed or failed.
    Disconnect,
    /// Nothing heard within the heartbeat window.
    HeartbeatMissed,
    /// The server announced `v2.system.socket_closing`.
    SocketClosing,
    /// The channel had expired or was evicted: a new one was made.
    ChannelRecreated,
}

impl GapCause {
    pub fn name(self) -> &'static str {
        match self {
            GapCause::Startup => "startup",
            GapCause::Handoff => "handoff",
            GapCause::Disconnect => "disconnect",
            GapCause::HeartbeatMissed => "heartbeatMissed",
            GapCause::SocketClosing => "socketClosing",
            GapCause::ChannelRecreated => "channelRecreated",
        }
    }
}

/// An interval during which no socket was receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub cause: GapCause,
}

impl Gap {
    pub fn seconds(&self) -> f64 {
        (self.to - self.from).num_milliseconds().max(0) as f64 / 1000.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub holder: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamState {
    pub version: u32,
    #[serde(default)]
    pub channel: Option<ChannelRecord>,
    /// Until when a socket is known to have been receiving (the start of the next gap).
    #[serde(default)]
    pub receiving_until: Option<DateTime<Utc>>,
    /// How the last holder stopped: `handoff` when it released the lease at its deadline.
    #[serde(default)]
    pub stopped: Option<GapCause>,
    /// Gaps recorded and not filled yet.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    #[serde(default)]
    pub lease: Option<Lease>,
    pub updated_at: DateTime<Utc>,
}

impl StreamState {
    pub fn new(now: DateTime<Utc>) -> StreamState {
        StreamState {
            version: STATE_VERSION,
            channel: None,
            receiving_until: None,
            stopped: None,
            gaps: Vec::new(),
            lease: None,
            updated_at: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("stream state {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The state object and the ETag it was read with.
pub struct StateStore<'a> {
    store: &'a dyn ObjectStore,
    key: ObjectKey,
    etag: Option<String>,
}

impl<'a> StateStore<'a> {
    pub fn new(store: &'a dyn ObjectStore, layout: &ArchiveLayout) -> StateStore<'a> {
        StateStore {
            store,
            key: layout.stream_state_key(),
            etag: None,
        }
    }

    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// Reads the state (a new one when absent); a state of another version is refused.
    pub async fn load(&mut self, now: DateTime<Utc>) -> Result<StreamState, StateError> {
        let Some(found) = self.store.get(&self.key).await? else {
            self.etag = None;
            return Ok(StreamState::new(now));
        };
        let bad = |reason: String| StateError::Invalid {
            key: self.key.to_string(),
            reason,
        };
        let state: StreamState =
            serde_json::from_slice(&found.body).map_err(|e| bad(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(bad(format!(
                "version {} is not {STATE_VERSION}",
                state.version
            )));
        }
        self.etag = Some(found.etag);
        Ok(state)
    }

    /// Writes `state` over the one last read; false when another writer replaced it since.
    pub async fn save(&mut self, state: &StreamState) -> Result<bool, StateError> {
        let body = serde_json::to_vec(state).map_err(|e| StateError::Invalid {
            key: self.key.to_string(),
            reason: e.to_string(),
        })?;
        match self
            .store
            .put_conditionally(
                &self.key,
                body.into(),
                "application/json",
                self.etag.as_deref(),
            )
            .await?
        {
            Conditional::Written(etag) => {
                self.etag = Some(etag);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Adds `gap` to `gaps`, merging it with any it overlaps or touches (a gap is filled once).
pub fn add_gap(gaps: &mut Vec<Gap>, gap: Gap) {
    if gap.to <= gap.from {
        return;
    }
    let mut merged = gap;
    gaps.retain(|g| {
        let touches = g.from <= merged.to && merged.from <= g.to;
        if touches {
            merged.from = merged.from.min(g.from);
            merged.to = merged.to.max(g.to);
        }
        !touches
    });
    gaps.push(merged);
    gaps.sort_by_key(|g| g.from);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn gap(a: &str, b: &str) -> Gap {
        Gap {
            from: t(a),
            to: t(b),
            cause: GapCause::Disconnect,
        }
    }

    #[test]
    fn overlapping_gaps_merge_and_empty_ones_vanish() {
        let mut gaps = Vec::new();
        add_gap(
            &mut gaps,
            gap("2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"),
        );
        add_gap(
            &mut gaps,
            gap("2026-01-01T10:05:00Z", "2026-01-01T10:06:00Z"),
        );
        add_gap(
            &mut gaps,
            gap("2026-01-01T10:00:30Z", "2026-01-01T10:02:00Z"),
        );
        add_gap(
            &mut gaps,
            gap("2026-01-01T11:00:00Z", "2026-01-01T11:00:00Z"),
        );
        assert_eq!(
            gaps,
            vec![
                gap("2026-01-01T10:00:00Z", "2026-01-01T10:02:00Z"),
                gap("2026-01-01T10:05:00Z", "2026-01-01T10:06:00Z")
            ]
        );
    }

    #[tokio::test]
    async fn the_state_is_replaced_only_by_whoever_read_it_last() {
        let store = crate::store::MemoryStore::new("b");
        let layout = ArchiveLayout::new("p");
        let now = t("2026-01-01T10:00:00Z");
        let mut ours = StateStore::new(&store, &layout);
        let mut theirs = StateStore::new(&store, &layout);
        let mut s = ours.load(now).await.unwrap();
        theirs.load(now).await.unwrap();
        s.receiving_until = Some(now);
        assert!(ours.save(&s).await.unwrap());
        assert!(!theirs.save(&StreamState::new(now)).await.unwrap());
        assert_eq!(theirs.load(now).await.unwrap().receiving_until, Some(now));
        assert_eq!(ours.key().as_str(), "p/_state/stream/state.json");
    }
}
