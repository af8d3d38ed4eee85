//! The Notifications API (genesys-api.md §5.3): channels over REST, one WebSocket per channel,
//! topic subscriptions, heartbeats, ping/pong, `v2.system.socket_closing`, and no replay: an
//! event published while a channel has no socket open is lost, as the API documents.
//!
//! Documented behaviour followed: a channel lives 24 h (configurable here) unless resubscribed;
//! 20 channels per OAuth client (a 21st evicts the oldest one without a socket, else the
//! oldest); at most 1,000 topics per channel (400 above); a second connection to a channel
//! closes the first; `HEAD .../channels/{id}` is 200 or 404. Left open by the documents and
//! decided here: the heartbeat interval (30 s default, [`NotifyHub::set_heartbeat`]); a kicked
//! or expired socket gets a normal close frame; a subscription PUT with a rejected topic and
//! without `ignoreErrors=true` is a 400 naming it; with it, the topic is listed `Rejected`
//! with its `missingPermissions`. Which permission a queue topic needs is UNCONFIRMED, so
//! rejections are configured by the test ([`NotifyHub::reject_topics`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::state::{lock, new_id, Shared};

/// Topics per channel (documented).
pub const MAX_TOPICS: usize = 1_000;
/// Channels per OAuth client (documented: per user and app).
pub const MAX_CHANNELS: usize = 20;

/// What a socket task is told to do.
enum Push {
    Text(String),
    /// A close frame, then the end of the socket.
    Close,
    /// The TCP connection just ends: no close frame.
    Drop,
}

struct Socket {
    serial: u64,
    tx: mpsc::UnboundedSender<Push>,
}

struct Channel {
    owner: String,
    expires: DateTime<Utc>,
    created: u64,
    topics: BTreeSet<String>,
    socket: Option<Socket>,
}

/// Counters a test reads to know what the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyStats {
    pub channels_created: u64,
    pub connections: u64,
    /// Sockets closed because a second connection took their channel.
    pub kicked: u64,
    /// Events published to a subscribed channel while it had a socket.
    pub delivered: u64,
    /// Events published to a subscribed channel with no socket open (lost: no replay).
    pub lost: u64,
    pub heartbeats: u64,
    pub pongs: u64,
}

#[derive(Default)]
struct HubState {
    channels: HashMap<String, Channel>,
    /// (topic prefix, missing permissions): subscriptions to matching topics are rejected.
    rejected: Vec<(String, Vec<String>)>,
    queues: Vec<(String, String)>,
    stats: NotifyStats,
    /// While set, sockets send nothing (no heartbeat, no pong, no event): a half-open link.
    stalled: bool,
    /// The next this many socket upgrades are refused with 503.
    refuse: u32,
}

/// The notifications side of the simulator; reach it with `Simulator::notifications()`.
pub struct NotifyHub {
    state: Mutex<HubState>,
    heartbeat_ms: AtomicU64,
    channel_ttl_secs: AtomicU64,
    serial: AtomicU64,
}

impl Default for NotifyHub {
    fn default() -> Self {
        NotifyHub {
            state: Mutex::new(HubState::default()),
            heartbeat_ms: AtomicU64::new(30_000),
            channel_ttl_secs: AtomicU64::new(24 * 3600),
            serial: AtomicU64::new(0),
        }
    }
}

impl NotifyHub {
    pub fn set_heartbeat(&self, every: Duration) {
        self.heartbeat_ms
            .store(every.as_millis().max(1) as u64, Ordering::SeqCst);
    }

    /// Lifetime of channels created from now on (and of a resubscribed one).
    pub fn set_channel_ttl(&self, ttl: Duration) {
        self.channel_ttl_secs
            .store(ttl.as_secs().max(1), Ordering::SeqCst);
    }

    /// Subscriptions to topics starting with `prefix` are rejected, naming `missing`.
    pub fn reject_topics(&self, prefix: &str, missing: &[&str]) {
        lock(&self.state).rejected.push((
            prefix.to_string(),
            missing.iter().map(|m| m.to_string()).collect(),
        ));
    }

    /// A routing queue (`GET /api/v2/routing/queues`); returns its id.
    pub fn add_queue(&self, name: &str) -> String {
        let id = new_id();
        lock(&self.state)
            .queues
            .push((id.clone(), name.to_string()));
        id
    }

    pub fn stats(&self) -> NotifyStats {
        lock(&self.state).stats
    }

    /// Ids of the channels that exist.
    pub fn channels(&self) -> Vec<String> {
        lock(&self.state).channels.keys().cloned().collect()
    }

    /// Topics a channel is subscribed to.
    pub fn topics(&self, channel: &str) -> Vec<String> {
        lock(&self.state)
            .channels
            .get(channel)
            .map(|c| c.topics.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many channels have a socket open now.
    pub fn open_sockets(&self) -> usize {
        lock(&self.state)
            .channels
            .values()
            .filter(|c| c.socket.as_ref().is_some_and(|s| !s.tx.is_closed()))
            .count()
    }

    /// Every open socket's TCP connection ends without a close frame.
    pub fn drop_sockets(&self) {
        for c in lock(&self.state).channels.values_mut() {
            if let Some(s) = c.socket.take() {
                let _ = s.tx.send(Push::Drop);
            }
        }
    }

    /// Sockets stop sending anything, heartbeats and pongs included, until `resume_sockets`.
    pub fn stall_sockets(&self) {
        lock(&self.state).stalled = true;
    }

    /// The next `n` socket connections are refused (HTTP 503 instead of the upgrade).
    pub fn refuse_connections(&self, n: u32) {
        lock(&self.state).refuse = n;
    }

    pub fn resume_sockets(&self) {
        lock(&self.state).stalled = false;
    }

    /// Every open socket is warned with `v2.system.socket_closing` and closed `after` it.
    pub fn socket_closing(self: &Arc<Self>, after: Duration) {
        let mut warned = Vec::new();
        for (id, c) in lock(&self.state).channels.iter() {
            if let Some(s) = &c.socket {
                let body = json!({"topicName": "v2.system.socket_closing", "version": "2",
                    "eventBody": {"message": "Socket closing", "channelId": id},
                    "metadata": {"CorrelationId": new_id()}});
                let _ = s.tx.send(Push::Text(body.to_string()));
                warned.push((id.clone(), s.serial));
            }
        }
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let st = lock(&hub.state);
            for (id, serial) in warned {
                if let Some(s) = st.channels.get(&id).and_then(|c| c.socket.as_ref()) {
                    if s.serial == serial {
                        let _ = s.tx.send(Push::Close);
                    }
                }
            }
        });
    }

    /// The channel is gone (as after its 24 h): its socket is closed, HEAD answers 404.
    pub fn expire_channel(&self, channel: &str) -> bool {
        match lock(&self.state).channels.remove(channel) {
            Some(c) => {
                if let Some(s) = c.socket {
                    let _ = s.tx.send(Push::Close);
                }
                true
            }
            None => false,
        }
    }

    /// Sends an event to every channel subscribed to `topic` that has a socket open; counted
    /// as lost for subscribed channels without one.
    pub fn publish(&self, topic: &str, body: Value) {
        let text = json!({"topicName": topic, "version": "2", "eventBody": body,
            "metadata": {"CorrelationId": new_id()}})
        .to_string();
        let mut st = lock(&self.state);
        let stalled = st.stalled;
        let now = Utc::now();
        let mut delivered = 0;
        let mut lost = 0;
        for c in st.channels.values() {
            if c.expires <= now || !c.topics.contains(topic) {
                continue;
            }
            match &c.socket {
                Some(s) if !stalled && s.tx.send(Push::Text(text.clone())).is_ok() => {
                    delivered += 1
                }
                _ => lost += 1,
            }
        }
        st.stats.delivered += delivered;
        st.stats.lost += lost;
    }

    fn ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.channel_ttl_secs.load(Ordering::SeqCst) as i64)
    }

    fn expire_due(st: &mut HubState) {
        let now = Utc::now();
        st.channels.retain(|_, c| {
            let live = c.expires > now;
            if !live {
                if let Some(s) = c.socket.take() {
                    let _ = s.tx.send(Push::Close);
                }
            }
            live
        });
    }
}

fn channel_json(base: &str, id: &str, expires: DateTime<Utc>) -> Value {
    let ws = base.replacen("http://", "ws://", 1);
    json!({"id": id, "connectUri": format!("{ws}/channels/{id}"),
        "expires": crate::server::ts(expires)})
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"message": message, "code": code, "status": status.as_u16(),
        "contextId": new_id(), "details": [], "errors": []});
    (status, Json(body)).into_response()
}

fn channel_missing(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "not.found",
        &format!("channel {id} not found"),
    )
}

type St = State<Arc<Shared>>;

pub(crate) async fn post_channel(
    State(sh): St,
    Extension(caller): Extension<crate::server::Caller>,
) -> Response {
    let hub = &sh.notify;
    let id = format!("streaming-0-{}", new_id().replace('-', ""));
    let expires = Utc::now() + hub.ttl();
    let mut st = lock(&hub.state);
    NotifyHub::expire_due(&mut st);
    let mine: Vec<(String, bool, u64)> = st
        .channels
        .iter()
        .filter(|(_, c)| c.owner == caller.0)
        .map(|(id, c)| (id.clone(), c.socket.is_some(), c.created))
        .collect();
    if mine.len() >= MAX_CHANNELS {
        // Documented: the least recently used channel without a socket goes first.
        let evict = mine
            .iter()
            .filter(|(_, open, _)| !open)
            .min_by_key(|(_, _, created)| *created)
            .or_else(|| mine.iter().min_by_key(|(_, _, created)| *created))
            .map(|(id, _, _)| id.clone());
        if let Some(evict) = evict {
            if let Some(c) = st.channels.remove(&evict) {
                if let Some(s) = c.socket {
                    let _ = s.tx.send(Push::Close);
                }
            }
        }
    }
    st.stats.channels_created += 1;
    st.channels.insert(
        id.clone(),
        Channel {
            owner: caller.0,
            expires,
            created: hub.serial.fetch_add(1, Ordering::SeqCst),
            topics: BTreeSet::new(),
            socket: None,
        },
    );
    drop(st);
    (StatusCode::OK, Json(channel_json(sh.base(), &id, expires))).into_response()
}

pub(crate) async fn head_channel(State(sh): St, Path(id): Path<String>) -> Response {
    let mut st = lock(&sh.notify.state);
    NotifyHub::expire_due(&mut st);
    if st.channels.contains_key(&id) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn topics_listing(channel: &Channel, rejected: &[(String, Vec<String>)]) -> Value {
    let entities: Vec<Value> = channel
        .topics
        .iter()
        .map(|t| topic_json(t, rejected))
        .collect();
    json!({"entities": entities})
}

fn rejection<'a>(topic: &str, rejected: &'a [(String, Vec<String>)]) -> Option<&'a Vec<String>> {
    rejected
        .iter()
        .find(|(prefix, _)| topic.starts_with(prefix.as_str()))
        .map(|(_, missing)| missing)
}

fn topic_json(topic: &str, rejected: &[(String, Vec<String>)]) -> Value {
    match rejection(topic, rejected) {
        Some(missing) => json!({"id": topic, "state": "Rejected",
            "rejectionReason": "Missing permissions", "missingPermissions": missing}),
        None => json!({"id": topic, "state": "Permitted"}),
    }
}

pub(crate) async fn get_subscriptions(State(sh): St, Path(id): Path<String>) -> Response {
    let st = lock(&sh.notify.state);
    match st.channels.get(&id) {
        Some(c) => Json(topics_listing(c, &st.rejected)).into_response(),
        None => channel_missing(&id),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct SubscribeQuery {
    #[serde(rename = "ignoreErrors", default)]
    ignore_errors: bool,
}

/// PUT replaces the channel's topics, POST adds to them.
pub(crate) async fn put_subscriptions(
    state: St,
    path: Path<String>,
    query: Query<SubscribeQuery>,
    body: axum::body::Bytes,
) -> Response {
    subscribe(state, path, query, body, true).await
}

pub(crate) async fn post_subscriptions(
    state: St,
    path: Path<String>,
    query: Query<SubscribeQuery>,
    body: axum::body::Bytes,
) -> Response {
    subscribe(state, path, query, body, false).await
}

async fn subscribe(
    State(sh): St,
    Path(id): Path<String>,
    Query(q): Query<SubscribeQuery>,
    body: axum::body::Bytes,
    replace: bool,
) -> Response {
    let Ok(items) = serde_json::from_slice::<Vec<Value>>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "body must be a list of {\"id\": topic}",
        );
    };
    let mut topics = BTreeSet::new();
    for item in &items {
        match item.get("id").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {
                topics.insert(t.to_string());
            }
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad.request",
                    "every topic needs an id",
                )
            }
        }
    }
    let hub = &sh.notify;
    let ttl = hub.ttl();
    let mut st = lock(&hub.state);
    NotifyHub::expire_due(&mut st);
    let rejected = st.rejected.clone();
    if !q.ignore_errors {
        if let Some(t) = topics.iter().find(|t| rejection(t, &rejected).is_some()) {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad.request",
                &format!("Permission denied for topic {t}"),
            );
        }
    }
    let Some(channel) = st.channels.get_mut(&id) else {
        return channel_missing(&id);
    };
    let mut next = if replace {
        BTreeSet::new()
    } else {
        channel.topics.clone()
    };
    next.extend(topics);
    if next.len() > MAX_TOPICS {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            &format!(
                "a channel may have at most {MAX_TOPICS} topics, not {}",
                next.len()
            ),
        );
    }
    // Rejected topics are listed but deliver nothing.
    channel.topics = next
        .into_iter()
        .filter(|t| rejection(t, &rejected).is_none())
        .collect();
    // Documented: subscribing keeps the channel alive for another 24 h.
    channel.expires = Utc::now() + ttl;
    let mut listing: Vec<Value> = channel.topics.iter().map(|t| topic_json(t, &[])).collect();
    listing.extend(
        items
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str))
            .filter(|t| rejection(t, &rejected).is_some())
            .map(|t| topic_json(t, &rejected)),
    );
    Json(json!({"entities": listing})).into_response()
}

/// `GET /api/v2/routing/queues` (`QueueEntityListing`, sorted by name).
pub(crate) async fn list_queues(
    State(sh): St,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut queues = lock(&sh.notify.state).queues.clone();
    queues.sort_by(|a, b| a.1.cmp(&b.1));
    let size: usize = q
        .get("pageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .clamp(1, 500);
    let number: usize = q
        .get("pageNumber")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = queues.len();
    let page_count = total.div_ceil(size).max(1);
    let entities: Vec<Value> = queues
        .iter()
        .skip((number - 1) * size)
        .take(size)
        .map(|(id, name)| json!({"id": id, "name": name, "selfUri": format!("/api/v2/routing/queues/{id}")}))
        .collect();
    Json(
        json!({"entities": entities, "pageSize": size, "pageNumber": number,
        "total": total, "pageCount": page_count}),
    )
    .into_response()
}

/// The socket of a channel: `GET /channels/{id}` with an Upgrade (no auth header, as the SDKs
/// connect).
pub(crate) async fn socket(
    State(sh): St,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = &sh.notify;
    let (tx, rx) = mpsc::unbounded_channel();
    let serial = hub.serial.fetch_add(1, Ordering::SeqCst);
    {
        let mut st = lock(&hub.state);
        NotifyHub::expire_due(&mut st);
        if st.refuse > 0 {
            st.refuse -= 1;
            return api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service.unavailable",
                "streaming is unavailable",
            );
        }
        let Some(channel) = st.channels.get_mut(&id) else {
            drop(st);
            return channel_missing(&id);
        };
        let previous = channel.socket.replace(Socket { serial, tx });
        if let Some(old) = previous {
            // Documented: one socket per channel, a second connection drops the first.
            let _ = old.tx.send(Push::Close);
            st.stats.kicked += 1;
        }
        st.stats.connections += 1;
    }
    let shared = sh.clone();
    upgrade.on_upgrade(move |ws| run_socket(shared, id, serial, ws, rx))
}

async fn run_socket(
    sh: Arc<Shared>,
    id: String,
    serial: u64,
    mut ws: WebSocket,
    mut rx: mpsc::UnboundedReceiver<Push>,
) {
    let hub = &sh.notify;
    let every = Duration::from_millis(hub.heartbeat_ms.load(Ordering::SeqCst));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let stalled = || lock(&hub.state).stalled;
    loop {
        tokio::select! {
            push = rx.recv() => match push {
                Some(Push::Text(t)) => {
                    if ws.send(Message::Text(t.into())).await.is_err() { break; }
                }
                Some(Push::Close) => { let _ = ws.send(Message::Close(None)).await; break; }
                Some(Push::Drop) | None => break,
            },
            _ = beat.tick() => {
                if stalled() { continue; }
                lock(&hub.state).stats.heartbeats += 1;
                let hb = json!({"topicName": "channel.metadata",
                    "eventBody": {"message": "WebSocket Heartbeat"}});
                if ws.send(Message::Text(hb.to_string().into())).await.is_err() { break; }
            }
            incoming = ws.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let ping = serde_json::from_str::<Value>(&t).ok()
                        .is_some_and(|v| v.get("message").and_then(Value::as_str) == Some("ping"));
                    if ping && !stalled() {
                        lock(&hub.state).stats.pongs += 1;
                        let pong = json!({"topicName": "channel.metadata",
                            "eventBody": {"message": "pong"}});
                        if ws.send(Message::Text(pong.to_string().into())).await.is_err() { break; }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut st = lock(&hub.state);
    if let Some(c) = st.channels.get_mut(&id) {
        if c.socket.as_ref().is_some_and(|s| s.serial == serial) {
            c.socket = None;
        }
    }
}
