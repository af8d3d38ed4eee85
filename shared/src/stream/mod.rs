//! event-stream: Genesys Cloud's Notifications API as a source of conversation ends, for orgs
//! without the EventBridge integration (and as a second source for those with it).
//!
//! The API's facts (genesys-api.md §5.3) shape everything here: a channel lives 24 h unless
//! resubscribed, one socket per channel (a second connection drops the first), at most 1,000
//! topics per channel, and **no replay**: what is published while no socket is open is lost.
//! Org-wide conversation events exist only per entity, so the consumer subscribes to
//! `v2.routing.queues.{id}.conversations` for every queue (`GET /api/v2/routing/queues`) plus
//! any configured topics; a conversation that never touches a queue is not seen on the socket
//! and is left to the recording sweep.
//!
//! Every interval during which no socket was receiving (start-up, a disconnect, a missed
//! heartbeat, `socket_closing`, a hand-off between Lambda invocations, a new channel) is a
//! [`Gap`], persisted until it is filled from the analytics details query: every conversation
//! with recordings that ended in a gap (widened by a margin) is offered like a socket event.
//! Offers go through the sweep's enqueue journal, so a conversation is sent once whether the
//! socket, a gap fill, the sweep or a redelivery saw it, and never when it is archived.

pub mod notice;
pub mod state;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::genesys::notifications::{Channel, ChannelTopic};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::ConversationId;
use crate::retry::{RetryClass, Retryable};
use crate::sweep::journal::Offers;
use crate::sweep::{SweepDeps, SweepError};

pub use notice::{ConversationNotice, Notice};
use state::{add_gap, ChannelRecord, Lease, StateError, StateStore};
pub use state::{Gap, GapCause, StreamState};

/// The API's topic limit per channel.
pub const MAX_TOPICS: usize = 1_000;
/// `origin` of the ArchiveQueue messages event-stream sends.
pub const ORIGIN: &str = "stream";

#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Subscribe to `v2.routing.queues.{id}.conversations` for every queue of the org.
    pub queue_topics: bool,
    /// More topics (e.g. `v2.users.{id}.conversations` for users who take direct calls).
    pub extra_topics: Vec<String>,
    /// Nothing heard (event, heartbeat, pong) for this long: the socket is dead, reconnect.
    pub heartbeat_window: Duration,
    /// Idle this long: send `{"message":"ping"}`; no pong within `pong_timeout`: reconnect.
    pub ping_after: Duration,
    pub pong_timeout: Duration,
    /// Each gap is widened by this on both sides (clock skew, in-flight events).
    pub gap_margin: Duration,
    /// A gap is filled once analytics has had this long after its end (analytics lags).
    pub gap_settle: Duration,
    /// How long before a gap a conversation ending in it may have started. Longer ones are
    /// the recording sweep's (the details query matches conversations by start).
    pub gap_lookback: Duration,
    /// Without any previous state, the first start is a gap of this length.
    pub first_lookback: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// This many failed connects (or sessions shorter than `short_session`) in a row open the
    /// circuit: the run stops with an error instead of hammering.
    pub breaker_failures: u32,
    pub short_session: Duration,
    /// The lease one consumer holds on the channel, renewed every third of it.
    pub lease: Duration,
    /// Offers are sent at least this often.
    pub flush_every: Duration,
    /// The enqueue journal is written at most this often (and at every hand-off): a crash
    /// re-sends at most this interval's conversations, which archive-on-event skips.
    pub journal_every: Duration,
    /// Who this consumer is (Lambda request id, host and pid).
    pub holder: String,
    /// The subscriptions are sent again this often (it renews the channel's 24 h and brings
    /// in queues added since), besides at every start.
    pub resubscribe_every: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            queue_topics: true,
            extra_topics: Vec::new(),
            heartbeat_window: Duration::from_secs(95),
            ping_after: Duration::from_secs(40),
            pong_timeout: Duration::from_secs(15),
            gap_margin: Duration::from_secs(60),
            gap_settle: Duration::from_secs(120),
            gap_lookback: Duration::from_secs(4 * 3600),
            first_lookback: Duration::from_secs(15 * 60),
            reconnect_base: Duration::from_millis(500),
            reconnect_cap: Duration::from_secs(30),
            breaker_failures: 8,
            short_session: Duration::from_secs(5),
            lease: Duration::from_secs(90),
            flush_every: Duration::from_millis(250),
            journal_every: Duration::from_secs(10),
            holder: format!("pid-{}", std::process::id()),
            resubscribe_every: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{operation}: {source}")]
    Genesys {
        operation: &'static str,
        #[source]
        source: GenesysError,
    },
    #[error("Genesys Cloud rejected {} topic(s): {}", .0.len(), describe_rejections(.0))]
    TopicsRejected(Vec<ChannelTopic>),
    #[error("{count} topics to subscribe: a channel takes at most {MAX_TOPICS}; narrow the queues or topics")]
    TooManyTopics { count: usize },
    #[error("no topics to subscribe: the org has no queues and no extra topics are configured")]
    NoTopics,
    #[error(
        "another consumer ({holder}) holds the stream until {until}: only one may use the channel"
    )]
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
    #[error("another consumer ({holder}) took over the stream")]
    Superseded { holder: String },
    #[error("{attempts} connects in a row failed; stopped instead of hammering: {last}")]
    CircuitOpen { attempts: u32, last: String },
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Offer(#[from] SweepError),
}

fn describe_rejections(topics: &[ChannelTopic]) -> String {
    topics
        .iter()
        .map(|t| {
            let missing = if t.missing_permissions.is_empty() {
                "no missing permission named".to_string()
            } else {
                format!("missing {}", t.missing_permissions.join(", "))
            };
            format!(
                "{} ({}; {missing})",
                t.id,
                t.rejection_reason.as_deref().unwrap_or("rejected")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Retryable for StreamError {
    fn retry_class(&self) -> RetryClass {
        match self {
            StreamError::Genesys { source, .. } => source.retry_class(),
            StreamError::Offer(e) => e.retry_class(),
            StreamError::State(StateError::Store(e)) => e.retry_class(),
            StreamError::Busy { .. } | StreamError::Superseded { .. } => {
                RetryClass::Transient { retry_after: None }
            }
            StreamError::CircuitOpen { .. } => RetryClass::Transient { retry_after: None },
            _ => RetryClass::Infrastructure,
        }
    }
}

fn api_err(operation: &'static str) -> impl FnOnce(GenesysError) -> StreamError {
    move |source| StreamError::Genesys { operation, source }
}

/// What event-stream needs from the deployment: the sweep's parts (it offers through the same
/// enqueue journal): Genesys, the deployment's bucket (state, journal, archives), the routing
/// targets, the ArchiveQueue, the org.
pub type StreamDeps<'a> = SweepDeps<'a>;

/// What one run did; also the EMF metrics' source.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamReport {
    pub topics: usize,
    pub channels_created: u32,
    pub messages: u64,
    pub heartbeats: u64,
    pub pongs: u64,
    pub conversation_events: u64,
    pub conversation_ends: u64,
    /// Topics we do not act on, and unparseable messages.
    pub ignored: u64,
    pub malformed: u64,
    pub enqueued: u32,
    pub already_archived: u32,
    pub already_enqueued: u32,
    /// Conversations enqueued by gap fills.
    pub gap_filled: u32,
    pub gaps_filled: u32,
    /// Gaps recorded by this run.
    pub gaps: Vec<Gap>,
    pub gap_seconds: f64,
    pub reconnects: BTreeMap<&'static str, u32>,
    pub heartbeat_misses: u32,
    /// Connect attempts that failed.
    pub connect_failures: u32,
    /// Waits before reconnecting, in milliseconds (the backoff actually applied).
    pub backoff_ms: Vec<u64>,
    /// Conversation end (the event's own time) to its message sent to the ArchiveQueue (or
    /// found sent or archived before), in milliseconds.
    #[serde(skip)]
    pub lags_ms: Vec<u64>,
    pub lag_p50_ms: Option<u64>,
    pub lag_p99_ms: Option<u64>,
    pub lag_max_ms: Option<u64>,
    /// Why the run ended: `deadline`, `stopped`.
    pub stopped: String,
}

impl StreamReport {
    fn finish(&mut self) {
        let mut lags = self.lags_ms.clone();
        lags.sort_unstable();
        let at = |q: f64| -> Option<u64> {
            if lags.is_empty() {
                return None;
            }
            let rank = ((q * lags.len() as f64).ceil() as usize).clamp(1, lags.len());
            Some(lags[rank - 1])
        };
        self.lag_p50_ms = at(0.50);
        self.lag_p99_ms = at(0.99);
        self.lag_max_ms = lags.last().copied();
        self.gap_seconds = self.gaps.iter().map(Gap::seconds).sum();
    }
}

/// The topics to subscribe, sorted, each once.
pub async fn desired_topics(
    genesys: &GenesysClient,
    settings: &StreamSettings,
) -> Result<Vec<String>, StreamError> {
    let mut topics: Vec<String> = settings.extra_topics.clone();
    if settings.queue_topics {
        let queues = genesys
            .routing_queues()
            .await
            .map_err(api_err("list routing queues"))?;
        topics.extend(
            queues
                .into_iter()
                .map(|q| format!("v2.routing.queues.{}.conversations", q.id)),
        );
    }
    topics.sort();
    topics.dedup();
    if topics.is_empty() {
        return Err(StreamError::NoTopics);
    }
    if topics.len() > MAX_TOPICS {
        return Err(StreamError::TooManyTopics {
            count: topics.len(),
        });
    }
    Ok(topics)
}

/// A setting as a chrono duration, at most ten years (so that `now ± it` cannot overflow).
fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.min(Duration::from_secs(10 * 365 * 24 * 3600)))
        .unwrap_or(chrono::Duration::days(3650))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Handled {
    Continue,
    SocketClosing,
    /// The channel lost its subscriptions: reconnect after sending them again.
    Resubscribe(String),
}

/// How a socket's session ended.
enum SessionEnd {
    /// The run's deadline or stop signal.
    Stop(&'static str),
    /// The socket is gone; `last_heard` is the last time it was known receiving.
    Lost {
        cause: GapCause,
        last_heard: DateTime<Utc>,
        reason: String,
        /// The server said the channel lost its subscriptions.
        resubscribe: bool,
    },
}

struct Consumer<'a, 'd> {
    deps: &'d StreamDeps<'a>,
    settings: &'d StreamSettings,
    states: StateStore<'a>,
    state: StreamState,
    offers: Offers<'a>,
    offers_made: Instant,
    report: StreamReport,
    topics: Vec<String>,
    last_saved: Instant,
    /// End times of conversations offered and not yet known sent (for the lag figures).
    pending_ends: Vec<DateTime<Utc>>,
    /// Another consumer's lease was found: nothing of ours may be written over its state.
    superseded: bool,
    /// Until when a socket of this run is known to have been receiving (where the next gap
    /// starts); saved as `receiving_until`, never later than the end of an offer not yet sent.
    receiving: DateTime<Utc>,
    /// The channel in use.
    channel: Option<Channel>,
    /// When the subscriptions were last sent (they renew the channel; new queues join).
    subscribed: Instant,
    /// A failed gap fill is tried again after this.
    fill_after: Option<Instant>,
}

/// Runs the consumer until `deadline` (minus nothing: the caller leaves its own margin) or
/// `stop`, then hands off: offers sent, state saved with the lease released.
pub async fn run(
    deps: &StreamDeps<'_>,
    settings: &StreamSettings,
    stop: CancellationToken,
    deadline: Option<Instant>,
) -> Result<StreamReport, StreamError> {
    // The topics first: a deployment fault here leaves no lease behind.
    let topics = desired_topics(deps.genesys, settings).await?;
    let now = Utc::now();
    let mut states = StateStore::new(deps.store, deps.layout);
    let mut state = states.load(now).await?;
    if let Some(lease) = &state.lease {
        if lease.holder != settings.holder && lease.until > now {
            return Err(StreamError::Busy {
                holder: lease.holder.clone(),
                until: lease.until,
            });
        }
    }
    let cause = match state.stopped {
        Some(GapCause::Handoff) => GapCause::Handoff,
        _ => GapCause::Startup,
    };
    let down_since = state
        .receiving_until
        .unwrap_or(now - chrono_of(settings.first_lookback));
    state.lease = Some(Lease {
        holder: settings.holder.clone(),
        until: now + chrono_of(settings.lease),
    });
    state.stopped = None;
    state.updated_at = now;
    if !states.save(&state).await? {
        let current = states.load(now).await?;
        let holder = current
            .lease
            .map(|l| l.holder)
            .unwrap_or_else(|| "unknown".into());
        return Err(StreamError::Superseded { holder });
    }
    let mut c = Consumer {
        deps,
        settings,
        states,
        state,
        offers: offers(deps, settings),
        offers_made: Instant::now(),
        report: StreamReport {
            topics: topics.len(),
            ..StreamReport::default()
        },
        topics,
        last_saved: Instant::now(),
        pending_ends: Vec::new(),
        superseded: false,
        receiving: down_since,
        channel: None,
        subscribed: Instant::now(),
        fill_after: None,
    };
    let result = c.run_sockets(down_since, cause, &stop, deadline).await;
    let handoff = c.hand_off().await;
    result?;
    handoff?;
    c.report.finish();
    Ok(c.report)
}

impl<'a, 'd> Consumer<'a, 'd> {
    async fn run_sockets(
        &mut self,
        mut down_since: DateTime<Utc>,
        mut cause: GapCause,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<(), StreamError> {
        let mut channel = self.ensure_channel(false).await?;
        self.channel = Some(channel.clone());
        let mut failures = 0u32;
        loop {
            if stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                self.report.stopped = if stop.is_cancelled() {
                    "stopped"
                } else {
                    "deadline"
                }
                .into();
                return Ok(());
            }
            let socket = match connect(&channel).await {
                Ok(s) => s,
                Err(reason) => {
                    self.report.connect_failures += 1;
                    failures += 1;
                    if failures >= self.settings.breaker_failures {
                        return Err(StreamError::CircuitOpen {
                            attempts: failures,
                            last: reason,
                        });
                    }
                    // The channel may be gone (expired, evicted): a new one is the only way on.
                    if !self.channel_exists(&channel).await? {
                        channel = self.ensure_channel(true).await?;
                        self.channel = Some(channel.clone());
                        cause = GapCause::ChannelRecreated;
                    }
                    // The lease is ours while we try (a reconnect can outlast it).
                    self.save_if_due().await?;
                    self.back_off(failures, stop, deadline).await;
                    continue;
                }
            };
            let opened = Utc::now();
            self.record_gap(Gap {
                from: down_since,
                to: opened,
                cause,
            });
            // What the last socket delivered is sent before the state says we moved on.
            self.flush_offers().await?;
            self.receiving = opened;
            self.save().await?;
            let session_started = Instant::now();
            match self.session(socket, &channel, stop, deadline).await? {
                SessionEnd::Stop(why) => {
                    self.report.stopped = why.into();
                    return Ok(());
                }
                SessionEnd::Lost {
                    cause: lost,
                    last_heard,
                    reason,
                    resubscribe,
                } => {
                    tracing::warn!(cause = lost.name(), %reason, "notifications socket lost; reconnecting");
                    self.receiving = last_heard;
                    *self.report.reconnects.entry(lost.name()).or_default() += 1;
                    if lost == GapCause::HeartbeatMissed {
                        self.report.heartbeat_misses += 1;
                    }
                    down_since = last_heard;
                    cause = lost;
                    failures = if session_started.elapsed() < self.settings.short_session {
                        failures + 1
                    } else {
                        0
                    };
                    if failures >= self.settings.breaker_failures {
                        return Err(StreamError::CircuitOpen {
                            attempts: failures,
                            last: format!(
                                "each socket closed within {:?} of connecting (another connection to the channel?): {reason}",
                                self.settings.short_session
                            ),
                        });
                    }
                    self.check_lease().await?;
                    if !self.channel_exists(&channel).await? {
                        channel = self.ensure_channel(true).await?;
                        self.channel = Some(channel.clone());
                        cause = GapCause::ChannelRecreated;
                    } else if resubscribe {
                        // The server dropped our subscriptions: send them again.
                        self.subscribe(&channel).await?;
                    }
                    if failures > 0 {
                        self.back_off(failures, stop, deadline).await;
                    }
                }
            }
        }
    }

    /// Waits the full-jitter backoff for the `failures`th failure in a row (or until the run
    /// is stopped).
    async fn back_off(
        &mut self,
        failures: u32,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) {
        let exp = self
            .settings
            .reconnect_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.reconnect_cap);
        let wait = crate::retry::full_jitter(exp);
        self.report.backoff_ms.push(wait.as_millis() as u64);
        let until = Instant::now() + wait;
        let until = deadline.map_or(until, |d| until.min(d));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = stop.cancelled() => {}
        }
    }

    async fn channel_exists(&self, channel: &Channel) -> Result<bool, StreamError> {
        self.deps
            .genesys
            .notification_channel_exists(&channel.id)
            .await
            .map_err(api_err("check notification channel"))
    }

    /// The channel to use: the recorded one while it exists (subscribed again), or a new one.
    async fn ensure_channel(&mut self, force_new: bool) -> Result<Channel, StreamError> {
        if let (false, Some(rec)) = (force_new, self.state.channel.clone()) {
            let channel = Channel {
                id: rec.id.clone(),
                connect_uri: rec.connect_uri.clone(),
                expires: rec.expires,
            };
            if self.channel_exists(&channel).await? {
                // Subscribed again at every start: it renews the channel's 24 h, and the
                // server's subscriptions are what counts, not our record of them.
                self.subscribe(&channel).await?;
                return Ok(channel);
            }
        }
        let channel = self
            .deps
            .genesys
            .create_notification_channel()
            .await
            .map_err(api_err("create notification channel"))?;
        self.report.channels_created += 1;
        tracing::info!(channel = %channel.id, topics = self.topics.len(), "notification channel created");
        self.subscribe(&channel).await?;
        Ok(channel)
    }

    async fn subscribe(&mut self, channel: &Channel) -> Result<(), StreamError> {
        let answered = self
            .deps
            .genesys
            .subscribe_notification_channel(&channel.id, &self.topics)
            .await
            .map_err(api_err("subscribe notification channel"))?;
        let rejected: Vec<ChannelTopic> = answered.into_iter().filter(|t| t.rejected()).collect();
        if !rejected.is_empty() {
            return Err(StreamError::TopicsRejected(rejected));
        }
        let now = Utc::now();
        self.subscribed = Instant::now();
        self.state.channel = Some(ChannelRecord {
            id: channel.id.clone(),
            connect_uri: channel.connect_uri.clone(),
            // A subscription renews the channel's 24 h.
            expires: Some(
                channel
                    .expires
                    .map_or(now + chrono::Duration::hours(24), |e| {
                        e.max(now + chrono::Duration::hours(24))
                    }),
            ),
            topics: self.topics.len(),
            subscribed_at: now,
        });
        self.save().await
    }

    fn record_gap(&mut self, gap: Gap) {
        if gap.to <= gap.from {
            return;
        }
        tracing::info!(
            cause = gap.cause.name(),
            seconds = gap.seconds(),
            "no socket was receiving; the gap will be filled from analytics"
        );
        self.report.gaps.push(gap);
        add_gap(&mut self.state.gaps, gap);
    }

    /// Saves the state with a renewed lease; another holder's lease stops the run.
    async fn save(&mut self) -> Result<(), StreamError> {
        let now = Utc::now();
        self.state.updated_at = now;
        // The next gap starts where receiving is known to have ended, or earlier: before the
        // end of any conversation offered and not yet sent, so that a crash or a failed send
        // leaves it inside a gap, to be filled.
        let unsent = self.pending_ends.iter().min().copied();
        self.state.receiving_until = Some(unsent.map_or(self.receiving, |u| u.min(self.receiving)));
        if self.state.lease.as_ref().map(|l| &l.holder) == Some(&self.settings.holder) {
            self.state.lease = Some(Lease {
                holder: self.settings.holder.clone(),
                until: now + chrono_of(self.settings.lease),
            });
        }
        if !self.states.save(&self.state).await? {
            self.check_lease().await?;
            // Still ours (our own earlier write raced a retry): write over it.
            if !self.states.save(&self.state).await? {
                return Err(StreamError::Superseded {
                    holder: "unknown".into(),
                });
            }
        }
        self.last_saved = Instant::now();
        Ok(())
    }

    /// Reads the stored state: if another consumer's lease is in it, it took over (and our
    /// ETag stays the old one, so no later write of ours can replace its state); if not, the
    /// ETag just read is ours to write over.
    async fn check_lease(&mut self) -> Result<(), StreamError> {
        let mut fresh = StateStore::new(self.deps.store, self.deps.layout);
        let stored = fresh.load(Utc::now()).await?;
        match stored.lease {
            Some(l) if l.holder == self.settings.holder => {
                self.states = fresh;
                Ok(())
            }
            // Another holder, or none: while we run we hold the lease, so a state without it
            // was written by a consumer that took over and has handed off since.
            other => {
                self.superseded = true;
                Err(StreamError::Superseded {
                    holder: other.map_or_else(
                        || "a consumer that has since handed off".into(),
                        |l| l.holder,
                    ),
                })
            }
        }
    }

    /// Reads one socket until it is lost or the run ends.
    async fn session(
        &mut self,
        mut socket: Socket,
        channel: &Channel,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<SessionEnd, StreamError> {
        let mut last_heard = Utc::now();
        let mut heard_at = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let tick_every = (self.settings.flush_every)
            .min(self.settings.ping_after / 2)
            .max(Duration::from_millis(20));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let deadline_at = deadline.unwrap_or(far);
        let scrub = |text: String| text.replace(channel.id.expose(), "…");
        let lost = |cause, last_heard, reason: String, resubscribe| SessionEnd::Lost {
            cause,
            last_heard,
            reason,
            resubscribe,
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    self.receiving = Utc::now();
                    let _ = socket.close(None).await;
                    return Ok(SessionEnd::Stop("stopped"));
                }
                _ = tokio::time::sleep_until(deadline_at) => {
                    self.receiving = Utc::now();
                    let _ = socket.close(None).await;
                    return Ok(SessionEnd::Stop("deadline"));
                }
                frame = socket.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(f))) => {
                            let why = f.map(|f| format!(" ({} {})", f.code, f.reason)).unwrap_or_default();
                            return Ok(lost(GapCause::Disconnect, last_heard, scrub(format!("closed by the server{why}")), false));
                        }
                        Some(Ok(_)) => {
                            // A WebSocket ping or pong frame: the link is alive.
                            heard_at = Instant::now();
                            last_heard = Utc::now();
                            ping_sent = None;
                            continue;
                        }
                        Some(Err(e)) => return Ok(lost(GapCause::Disconnect, last_heard, scrub(e.to_string()), false)),
                        None => return Ok(lost(GapCause::Disconnect, last_heard, "connection ended".into(), false)),
                    };
                    heard_at = Instant::now();
                    last_heard = Utc::now();
                    ping_sent = None;
                    match self.handle(&text).await? {
                        Handled::Continue => {}
                        Handled::Resubscribe(reason) => {
                            return Ok(lost(GapCause::Disconnect, last_heard, scrub(reason), true));
                        }
                        Handled::SocketClosing => {
                            // Open the next socket before this one goes: the server closes the
                            // old one when the new one connects (one socket per channel).
                            let warned = Utc::now();
                            match connect(channel).await {
                                Ok(next) => {
                                    let opened = Utc::now();
                                    let old = std::mem::replace(&mut socket, next);
                                    self.drain(old).await?;
                                    *self.report.reconnects.entry(GapCause::SocketClosing.name()).or_default() += 1;
                                    self.record_gap(Gap { from: warned, to: opened, cause: GapCause::SocketClosing });
                                    heard_at = Instant::now();
                                    last_heard = opened;
                                }
                                Err(reason) => return Ok(lost(GapCause::SocketClosing, warned, reason, false)),
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    let idle = heard_at.elapsed();
                    if idle >= self.settings.heartbeat_window {
                        return Ok(lost(GapCause::HeartbeatMissed, last_heard, format!("nothing heard for {idle:?}"), false));
                    }
                    match ping_sent {
                        Some(at) if at.elapsed() >= self.settings.pong_timeout => {
                            return Ok(lost(GapCause::HeartbeatMissed, last_heard, "no pong".into(), false));
                        }
                        None if idle >= self.settings.ping_after => {
                            let ping = Message::Text(r#"{"message":"ping"}"#.into());
                            if let Err(e) = socket.send(ping).await {
                                return Ok(lost(GapCause::Disconnect, last_heard, scrub(e.to_string()), false));
                            }
                            ping_sent = Some(Instant::now());
                        }
                        _ => {}
                    }
                    self.receiving = last_heard;
                    let started = Instant::now();
                    self.housekeeping(false).await?;
                    // Time spent here (a gap fill) is not silence on the socket: what arrived
                    // meanwhile waits in its buffer.
                    let spent = started.elapsed();
                    heard_at += spent;
                    if let Some(at) = ping_sent.as_mut() {
                        *at += spent;
                    }
                }
            }
        }
    }

    /// What one text frame says, acted on.
    async fn handle(&mut self, text: &str) -> Result<Handled, StreamError> {
        self.report.messages += 1;
        match notice::parse(text) {
            Ok(Notice::Heartbeat) => self.report.heartbeats += 1,
            Ok(Notice::Pong) => self.report.pongs += 1,
            Ok(Notice::SocketClosing) => return Ok(Handled::SocketClosing),
            Ok(Notice::System {
                topic,
                kind,
                reason,
            }) => {
                tracing::warn!(%topic, kind = kind.as_deref().unwrap_or("-"),
                    reason = reason.as_deref().unwrap_or("-"), "system message on the notifications socket");
                if matches!(
                    kind.as_deref(),
                    Some("no_longer_subscribed" | "subscription_changed")
                ) {
                    return Ok(Handled::Resubscribe(format!(
                        "{} ({})",
                        kind.unwrap_or_default(),
                        reason.unwrap_or_default()
                    )));
                }
            }
            Ok(Notice::Conversation(n)) => {
                self.report.conversation_events += 1;
                if n.ended {
                    self.report.conversation_ends += 1;
                    self.deliver(n).await?;
                }
            }
            Ok(Notice::Other { .. }) => self.report.ignored += 1,
            Err(e) => {
                self.report.malformed += 1;
                tracing::warn!(error = %e, "unreadable notification ignored");
            }
        }
        Ok(Handled::Continue)
    }

    /// Reads what the replaced socket still delivers until the server closes it (it does
    /// when the new socket connects), for at most 5 s.
    async fn drain(&mut self, mut old: Socket) -> Result<(), StreamError> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(until, old.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.handle(&t).await?;
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        let _ = old.close(None).await;
        Ok(())
    }

    /// One ended conversation from the socket: offered (sent within `flush_every`).
    async fn deliver(&mut self, n: ConversationNotice) -> Result<(), StreamError> {
        let end = n.end.unwrap_or_else(Utc::now);
        let start = match n.start {
            Some(s) => s,
            // Detail events carry no start: the journal is kept by start hour.
            None => match self.deps.genesys.conversation(&n.conversation).await {
                Ok(c) => c.start_time.unwrap_or(end),
                Err(e) => {
                    // Only the journal's hour is guessed: at worst a duplicate, which
                    // archive-on-event skips.
                    tracing::warn!(conversation = %n.conversation, error = %e, "conversation start not readable; journaled under its end");
                    end
                }
            },
        };
        // Noted first: if the offer fails, the saved state stays before this end.
        self.pending_ends.push(end);
        self.offers.offer(n.conversation, start, end).await?;
        Ok(())
    }

    /// Sends what is batched, renews the lease, fills the gaps that are due.
    async fn housekeeping(&mut self, final_pass: bool) -> Result<(), StreamError> {
        if final_pass {
            self.offers.finish().await?;
            self.flush_counts();
        } else {
            self.flush_offers().await?;
        }
        let due_before =
            Utc::now() - chrono_of(self.settings.gap_margin) - chrono_of(self.settings.gap_settle);
        let due: Vec<Gap> = self
            .state
            .gaps
            .iter()
            .copied()
            .filter(|g| g.to <= due_before)
            .collect();
        let fill_now = self.fill_after.is_none_or(|t| Instant::now() >= t);
        if !due.is_empty() && fill_now {
            match self.fill(&due).await {
                Ok(()) => {
                    self.fill_after = None;
                    self.state.gaps.retain(|g| !due.contains(g));
                }
                // A gap stays recorded until a fill succeeds; the socket goes on meanwhile.
                Err(e) if !e.is_infrastructure() => {
                    tracing::warn!(error = %e, gaps = due.len(), "gap fill failed; trying again in a minute");
                    self.fill_after = Some(Instant::now() + Duration::from_secs(60));
                }
                Err(e) => return Err(e),
            }
            self.save().await?;
        } else if final_pass || self.last_saved.elapsed() >= self.settings.lease / 3 {
            self.save().await?;
        }
        // Subscribing renews the channel's 24 h and brings in queues added since.
        if !final_pass && self.subscribed.elapsed() >= self.settings.resubscribe_every {
            self.resubscribe().await?;
        }
        if self.offers_made.elapsed() >= Duration::from_secs(600) {
            // A fresh journal view now and then: its caches only grow.
            self.offers.finish().await?;
            self.flush_counts();
            self.offers = offers(self.deps, self.settings);
            self.offers_made = Instant::now();
        }
        Ok(())
    }

    async fn flush_offers(&mut self) -> Result<(), StreamError> {
        self.offers.send_batched().await?;
        self.flush_counts();
        Ok(())
    }

    /// Counted once: the report holds the sums, the offers start from zero again. Everything
    /// offered so far is sent by now: its lag (conversation end to sent) is known.
    fn flush_counts(&mut self) {
        let now = Utc::now();
        let lags = self
            .pending_ends
            .drain(..)
            .map(|end| (now - end).num_milliseconds().max(0) as u64);
        self.report.lags_ms.extend(lags);
        if self.report.lags_ms.len() > 1_000_000 {
            self.report.lags_ms.drain(..500_000);
        }
        let counts = std::mem::take(&mut self.offers.counts);
        self.report.enqueued += counts.enqueued;
        self.report.already_archived += counts.already_archived;
        self.report.already_enqueued += counts.already_enqueued;
    }

    /// Offers every conversation with recordings that ended in one of `gaps`.
    async fn fill(&mut self, gaps: &[Gap]) -> Result<(), StreamError> {
        let margin = chrono_of(self.settings.gap_margin);
        let (Some(from), Some(to)) = (
            gaps.iter().map(|g| g.from).min(),
            gaps.iter().map(|g| g.to).max(),
        ) else {
            return Ok(());
        };
        let from = from - margin - chrono_of(self.settings.gap_lookback);
        let to = (to + margin).min(Utc::now());
        let rows = crate::sweep::query_conversations(
            self.deps.genesys,
            from,
            to,
            crate::sweep::MAX_ROWS_PER_QUERY,
        )
        .await?;
        // What the socket offered is sent and counted first, so the counts below are the fill's.
        self.flush_offers().await?;
        for row in rows {
            let (Some(start), Some(end)) = (row.conversation_start, row.conversation_end) else {
                continue;
            };
            if !gaps
                .iter()
                .any(|g| end >= g.from - margin && end <= g.to + margin)
            {
                continue;
            }
            let Ok(id) = ConversationId::parse(&row.conversation_id) else {
                continue;
            };
            self.offers.offer(id, start, end).await?;
        }
        self.offers.finish().await?;
        self.report.gap_filled += self.offers.counts.enqueued;
        self.report.gaps_filled += gaps.len() as u32;
        self.flush_offers().await
    }

    /// At the end of a run: everything offered is sent, due gaps filled, and the state saved
    /// with the lease released for the next holder.
    async fn hand_off(&mut self) -> Result<(), StreamError> {
        let result = self.housekeeping(true).await;
        if self.superseded {
            // What was offered is sent; the state is the new holder's.
            return result;
        }
        self.state.lease = None;
        self.state.stopped = Some(GapCause::Handoff);
        // `save` keeps `receiving_until` where receiving ended (the socket's close, or the
        // last time one was heard if none was open), never at the time of this write.
        if let Err(e) = self.save().await {
            return result.and(Err(e));
        }
        result
    }

    /// Renews the lease if a third of it has passed since the last save.
    async fn save_if_due(&mut self) -> Result<(), StreamError> {
        if self.last_saved.elapsed() >= self.settings.lease / 3 {
            self.save().await?;
        }
        Ok(())
    }

    /// Sends the subscriptions again with the current queue list.
    async fn resubscribe(&mut self) -> Result<(), StreamError> {
        let Some(channel) = self.channel.clone() else {
            return Ok(());
        };
        self.topics = desired_topics(self.deps.genesys, self.settings).await?;
        self.subscribe(&channel).await
    }
}

fn offers<'a>(deps: &StreamDeps<'a>, settings: &StreamSettings) -> Offers<'a> {
    let mut offers = Offers::new(deps, ORIGIN);
    offers.journal_every = Some(settings.journal_every);
    // Sent [`crate::queue::BATCHES_IN_FLIGHT`] SQS batches at a time, and at every tick.
    offers.batch_limit = 100;
    offers
}

/// Opens the channel's socket (no credentials: the SDKs connect the same way).
async fn connect(channel: &Channel) -> Result<Socket, String> {
    let attempt = tokio_tungstenite::connect_async(channel.connect_uri.expose());
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(Ok((socket, _))) => Ok(socket),
        // The error may quote the URI: only its kind is kept.
        Ok(Err(e)) => Err(describe_ws_error(&e)),
        Err(_) => Err("connect timed out after 15 s".into()),
    }
}

fn describe_ws_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => format!("the server refused the socket: HTTP {}", resp.status()),
        E::Io(io) => format!("I/O: {}", io.kind()),
        E::Tls(_) => "TLS handshake failed".into(),
        E::Url(_) => "connectUri is not a WebSocket URL".into(),
        E::ConnectionClosed | E::AlreadyClosed => "connection closed".into(),
        E::Protocol(p) => format!("protocol: {p}"),
        _ => "WebSocket error".into(),
    }
}
