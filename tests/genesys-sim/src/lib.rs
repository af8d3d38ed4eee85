//! Genesys Cloud Platform API simulator with fault injection.
//!
//! Speaks the real API shapes used by gc-archive (see `/work/shared/genesys-api.md`; response
//! shapes are checked against the official Python SDK's models by the `sdk_conformance` test
//! in `tests/integration`): OAuth client credentials, conversations, recording metadata,
//! recordings with signed media URLs, batch downloads, custom attributes, external tags and the
//! analytics conversation detail query.
//! Faults are injected with [`Simulator::inject`] or `POST /__sim/faults`.
//!
//! Where the documentation says how the API behaves, the simulator does that. Where
//! `genesys-api.md` marks a behaviour UNCONFIRMED, [`Behaviour`] has a switch whose default is
//! the most conservative choice for a client, so clients can be tested both ways.
//!
//! Recordings (`GET /api/v2/conversations/{cid}/recordings/{rid}`):
//! * `formatId` (`WAV`, `WEBM`, `WAV_ULAW`, `OGG_VORBIS`, `OGG_OPUS`, `MP3`; default `WEBM`) or
//!   `mediaFormats` (repeated or comma-separated, overrides `formatId`, first entry served)
//!   selects a rendition in that codec, whatever the recording's own codec: the committed real
//!   sample of that codec (the same speech), or for synthesized WAVs the PCM bytes themselves
//!   (`WAV`) and a μ-law WAV encoded from the same samples (`WAV_ULAW`). Each issued URL of an
//!   Ogg rendition is a fresh encode (new stream serial, page CRCs recomputed) unless
//!   [`TranscodeSerial::Stable`]. `mediaUris` has the key `"S"`, or `"0"`/`"1"` with
//!   [`MediaUriKeys::PerChannel`].
//! * `formatId=NONE` is metadata only (no `mediaUris`), as documented;
//!   [`NoneFormat::ServesOriginal`] brings back a URL of the original bytes.
//! * Chat and messaging recordings serve a ZIP with `transcript.json` (`chatFormatId` /
//!   `messageFormatId` `ZIP`, default; `NONE` = no media), email an RFC 822 message
//!   (`emailFormatId` `EML`), screen recordings a WebM.
//! * 202 while uploading, restoring or transcoding: empty body, or the Recording JSON with
//!   [`AcceptedBody::RecordingJson`]. ARCHIVED recordings have no media; a `PUT` of the
//!   recording with a future (or null) `archiveDate` restores it (RESTORING for two polls,
//!   then RESTORED with `restoreExpirationTime`).
//!
//! Batch downloads: `POST /api/v2/recording/batchrequests` (1–100 requests; no `recordingId`
//! = every recording of the conversation) → `{id, selfUri}`; `GET .../batchrequests/{id}`
//! (only the submitting OAuth client; others get 404) answers `InProgress`
//! [`SimConfig::batch_polls`] times, then `Completed` with one result per recording: a
//! `resultUrl` of the original bytes (no transcode, [`Simulator::media_bytes`]) and its
//! `contentType`, or an `errorMsg` for archived, deleted, errored, uploading and non-audio
//! recordings and unknown conversations.
//!
//! Messaging (`sim.messaging()`, [`MessagingHub`]): message media uploads (`POST
//! .../messages/media/uploads` → an `uploadUrl` on this server plus `uploadHeaders` to echo;
//! `GET .../messages/media/{id}` → `uploading`/`valid`/`invalid`), `POST .../messages` with
//! `textBody`, `mediaIds` or `messagingTemplate`, and `GET
//! /api/v2/webdeployments/deployments/{id}/configurations`; conversations and deployments are
//! registered by the test.
//!
//! Signed media URLs need no token. By default they ignore `Range` ([`RangeSupport`]), answer
//! `Content-Type: binary/octet-stream` ([`MediaContentType`]), an opaque `ETag`
//! ([`Behaviour::media_checksums`] for MD5 ETag + `x-amz-checksum-sha256`) and 403
//! "Request has expired" once expired or invalidated ([`ExpiredUrl`]).
//!
//! Admin HTTP API (no auth, not in the request log), serde default (externally tagged) JSON:
//! * `POST /__sim/faults` body [`FaultRule`], e.g.
//!   `{"target":{"Api":{"path_contains":"/recordings/"}},"fault":{"Status":{"status":503,"retry_after_secs":2}},"skip":0,"times":1}`,
//!   `{"target":"Token","fault":"UnauthorizedToken"}`,
//!   `{"target":{"Media":{"recording_id":null}},"fault":{"ResetMidBody":{"after_bytes":1000}}}`,
//!   `{"target":{"Media":{"recording_id":null}},"fault":{"WrongContentType":"text/html"}}`
//!   (`skip` defaults to 0, `times` to 1; `u32::MAX` = forever); `DELETE /__sim/faults` clears.
//! * `GET /__sim/requests` → `[RequestRecord]`; `DELETE /__sim/requests` clears.
//! * `GET /__sim/conversations` → `[ConversationSummary]`;
//!   `POST /__sim/conversations` body `{"conversations":N,"days":D,"rng_seed":S?}` → 201 with the new ones.
//!
//! Fault evaluation: every request matching a rule's target counts towards that rule's `skip`;
//! the first rule with budget left applies. API faults are evaluated before token checks;
//! media faults after the URL signature/expiry checks.

#![forbid(unsafe_code)]

mod digest;
mod docs;
mod media;
mod messaging_api;
mod model;
mod notify_api;
mod render;
mod server;
mod setup_api;
mod state;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use media::{real_sample, REAL_SAMPLE_DURATION_MS, ULAW_HEADER_LEN};
pub use messaging_api::{
    content_md5, DeploymentSpec, MediaRecord, MediaStatus, MessagingHub, SentMessage, UploadMethod,
    DEFAULT_MEDIA_MAX_BYTES, UPLOAD_TOKEN_HEADER,
};
pub use model::*;
pub use notify_api::{NotifyHub, NotifyStats, MAX_CHANNELS, MAX_TOPICS};

use state::{lock, Key, Shared, Variant};

/// A running simulator. Dropping it aborts the server task.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Simulator {
    /// Start on `127.0.0.1:0`.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Simulator> {
        Self::start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on a given address (port 0 = any free port).
    pub async fn start_on(cfg: SimConfig, addr: SocketAddr) -> anyhow::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seed = cfg.seed;
        let shared = Arc::new(Shared::new(cfg));
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        let _ = shared
            .base_url
            .set(format!("http://{host}:{}", addr.port()));
        if let Some(seed) = seed {
            shared.seed(seed);
        }
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::warn!("simulator server ended: {e}");
            }
        });
        Ok(Simulator {
            shared,
            addr,
            task: Some(task),
            stop: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT` — both the API and the login base URL.
    pub fn base_url(&self) -> String {
        self.shared.base().to_string()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn client_id(&self) -> &str {
        &self.shared.cfg.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.shared.cfg.client_secret
    }

    pub fn org_id(&self) -> &str {
        &self.shared.cfg.org_id
    }

    /// Add a conversation; returns its id.
    pub fn add_conversation(&self, spec: ConversationSpec) -> String {
        self.shared.add_conversation(spec)
    }

    /// Add a recording to an existing conversation; returns the recording id.
    ///
    /// # Panics
    /// If the conversation does not exist (a test setup error).
    pub fn add_recording(&self, conversation_id: &str, spec: RecordingSpec) -> String {
        match self.shared.add_recording(conversation_id, spec) {
            Some(id) => id,
            None => panic!("add_recording: unknown conversation {conversation_id}"),
        }
    }

    /// Generate more conversations (same generator as `SimConfig::seed`); returns their ids.
    pub fn seed(&self, spec: SeedSpec) -> Vec<String> {
        self.shared.seed(spec)
    }

    /// Whole original (source) content: what a batch download `resultUrl` serves (fine for
    /// real samples, documents and small synthesized WAVs).
    pub fn media_bytes(&self, recording_id: &str) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        self.media_reader(recording_id)?.read_to_end(&mut v).ok()?;
        Some(v)
    }

    /// Streaming reader over the original (source) bytes.
    pub fn media_reader(&self, recording_id: &str) -> Option<Box<dyn Read + Send>> {
        self.shared.content(recording_id).map(|c| c.reader())
    }

    /// Length of the original (source) bytes.
    pub fn media_len(&self, recording_id: &str) -> Option<u64> {
        self.shared.content(recording_id).map(|c| c.len())
    }

    /// Bytes of the latest issued encode of the `format_id` rendition (key `"S"`, or `"0"`
    /// with [`MediaUriKeys::PerChannel`]): what the last media URL handed out for that format
    /// serves. Before any URL was issued: the stable encode. For chat, messaging, email and
    /// screen recordings any format id other than `NONE` gives the document (ZIP, EML, WebM).
    /// `None` for an unknown recording or format id.
    pub fn rendition_bytes(&self, recording_id: &str, format_id: &str) -> Option<Vec<u8>> {
        let key = match self.shared.cfg.behaviour.media_uri_keys {
            MediaUriKeys::Single => "S",
            MediaUriKeys::PerChannel => "0",
        };
        self.media_key_bytes(recording_id, format_id, key)
    }

    /// Like [`Simulator::rendition_bytes`] for one `mediaUris` key (`"S"`, `"0"` or `"1"`).
    pub fn media_key_bytes(
        &self,
        recording_id: &str,
        format_id: &str,
        key: &str,
    ) -> Option<Vec<u8>> {
        let key = Key::parse(key)?;
        let st = lock(&self.shared.store);
        let r = st.recs.get(recording_id)?;
        let format = match Codec::from_format_id(format_id) {
            Some(f) => f,
            None if !r.source.is_audio()
                && ["ZIP", "EML"]
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(format_id)) =>
            {
                Codec::Webm
            }
            None => return None,
        };
        let encode = r.latest_encode(format, self.shared.cfg.behaviour.transcode_serial);
        let content = r.variant_content(Variant::Rendition {
            format,
            key,
            encode,
        });
        drop(st);
        Some(content.to_vec())
    }

    /// How many media URLs the recordings endpoint has handed out for the `format_id`
    /// rendition of a recording (each one a fresh encode under [`TranscodeSerial::PerEncode`]).
    pub fn encodes_issued(&self, recording_id: &str, format_id: &str) -> u32 {
        let Some(format) = Codec::from_format_id(format_id) else {
            return 0;
        };
        lock(&self.shared.store)
            .recs
            .get(recording_id)
            .and_then(|r| r.encodes.get(&format).copied())
            .unwrap_or(0)
    }

    pub fn inject(&self, rule: FaultRule) {
        self.shared.add_fault(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Every access token issued and still valid (tests look for them where they must not be).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.tokens).keys().cloned().collect()
    }

    /// Invalidate every issued access token (next API call answers 401).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Invalidate every media URL handed out so far, batch `resultUrl`s included (they answer
    /// "Request has expired" with the status of [`Behaviour::expired_url`]).
    pub fn expire_media_urls(&self) {
        self.shared.media_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Runtime override of [`Behaviour::range`]: `true` = [`RangeSupport::Ignored`],
    /// `false` = [`RangeSupport::Honoured`].
    pub fn set_ignore_range(&self, ignore: bool) {
        self.shared.ignore_range.store(ignore, Ordering::SeqCst);
    }

    /// Custom attribute records of a conversation, as the JSON array the API's listing
    /// `results` holds; `None` when the conversation has none (or does not exist).
    pub fn custom_attributes(&self, conversation_id: &str) -> Option<serde_json::Value> {
        let st = lock(&self.shared.store);
        let c = st.convs.get(conversation_id)?;
        if c.custom.is_empty() {
            return None;
        }
        Some(serde_json::Value::Array(
            c.custom
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "id": a.id,
                        "schemaId": a.schema_id,
                        "divisions": a.divisions,
                        "version": a.version,
                        "customAttributes": a.attrs,
                    })
                })
                .collect(),
        ))
    }

    pub fn external_tag(&self, conversation_id: &str) -> Option<String> {
        lock(&self.shared.store)
            .convs
            .get(conversation_id)
            .and_then(|c| c.external_tag.clone())
    }

    /// Takes `permissions` away from the OAuth clients (every endpoint that needs one of
    /// them, and none other it accepts, answers 403); an empty list grants everything again.
    pub fn deny_permissions(&self, permissions: &[&str]) {
        lock(&self.shared.store).denied_permissions =
            permissions.iter().map(|p| p.to_string()).collect();
    }

    /// Adds a media retention policy (`Policy` JSON, as `GET
    /// /api/v2/recording/mediaretentionpolicies` lists it); an `id` is given when absent.
    pub fn add_retention_policy(&self, mut policy: serde_json::Value) {
        if policy.get("id").is_none() {
            policy["id"] = serde_json::json!(state::new_id());
        }
        lock(&self.shared.store).retention_policies.push(policy);
    }

    /// Every integration with its current configuration (`Integration` JSON with `config`
    /// replaced by the configuration document).
    pub fn integrations(&self) -> Vec<serde_json::Value> {
        lock(&self.shared.store)
            .integrations
            .iter()
            .map(|i| {
                let mut v = i.render();
                v["config"] = i.render_config();
                v
            })
            .collect()
    }

    /// The Notifications API side: channels, sockets, queues and their faults.
    pub fn notifications(&self) -> &Arc<NotifyHub> {
        &self.shared.notify
    }

    /// Messaging conversations, message media uploads, sent messages and web deployment
    /// configurations.
    pub fn messaging(&self) -> &Arc<MessagingHub> {
        &self.shared.messaging
    }

    /// Starts conversations at `spec.per_second`: each is stored (with one recording, so
    /// analytics and the recordings API know it) and, as it ends, published on its queue's
    /// `v2.routing.queues.{id}.conversations` topic twice: connected, then with every call
    /// disconnected. The task's result is every generated id, in order.
    pub fn generate_conversations(&self, spec: GeneratorSpec) -> JoinHandle<Vec<String>> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(spec.count);
            let every = Duration::from_secs_f64(1.0 / spec.per_second.max(0.001));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0..spec.count {
                tick.tick().await;
                if spec.queue_ids.is_empty() {
                    break;
                }
                let queue = spec.queue_ids[i % spec.queue_ids.len()].clone();
                let end = chrono::Utc::now();
                let start = end - chrono::Duration::seconds(spec.duration_secs as i64);
                let agent = state::new_id();
                let id = shared.add_conversation(ConversationSpec {
                    start: Some(start),
                    duration_secs: spec.duration_secs,
                    participants: vec![
                        participant("customer", None, None),
                        participant("acd", None, Some(&queue)),
                        participant("agent", Some(&agent), Some(&queue)),
                    ],
                    ..ConversationSpec::default()
                });
                if spec.recording_bytes > 0 {
                    let _ = shared.add_recording(
                        &id,
                        RecordingSpec::new(MediaSource::SynthWav {
                            size_bytes: spec.recording_bytes,
                        }),
                    );
                }
                let topic = format!("v2.routing.queues.{queue}.conversations");
                for ended in [false, true] {
                    let body = queue_conversation_event(&id, &queue, &agent, start, end, ended);
                    shared.notify.publish(&topic, body);
                }
                ids.push(id);
            }
            ids
        })
    }

    /// All conversations, oldest first.
    pub fn conversations(&self) -> Vec<ConversationSummary> {
        self.shared.summaries()
    }

    /// Graceful stop (in-flight responses get up to 2 s, then the task is aborted).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn participant(purpose: &str, user: Option<&str>, queue: Option<&str>) -> ParticipantSpec {
    ParticipantSpec {
        purpose: purpose.into(),
        name: None,
        user_id: user.map(str::to_string),
        queue_id: queue.map(str::to_string),
        wrapup_code: None,
        attributes: Default::default(),
    }
}

/// What [`Simulator::generate_conversations`] makes.
#[derive(Debug, Clone)]
pub struct GeneratorSpec {
    pub count: usize,
    pub per_second: f64,
    /// Conversations go round these queues; none = nothing generated.
    pub queue_ids: Vec<String>,
    pub duration_secs: u64,
    /// Size of each conversation's synthesized WAV recording (0 = no recording).
    pub recording_bytes: u64,
}

/// A `QueueConversationEventTopicConversation` (the generic queue topic's body; field names
/// from the Python SDK's model): participants with their `calls[]`, whose `state` is
/// `connected` or, once it ended, `disconnected` with `disconnectedTime`.
pub fn queue_conversation_event(
    conversation: &str,
    queue: &str,
    agent: &str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    ended: bool,
) -> serde_json::Value {
    let t =
        |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let part = |purpose: &str, user: Option<&str>, q: Option<&str>| {
        let mut call = serde_json::json!({"id": state::new_id(),
            "state": if ended { "disconnected" } else { "connected" },
            "recording": true, "recordingState": if ended { "none" } else { "active" },
            "connectedTime": t(start)});
        let mut p = serde_json::json!({"id": state::new_id(), "purpose": purpose,
            "connectedTime": t(start), "calls": []});
        if ended {
            call["disconnectType"] = "endpoint".into();
            call["disconnectedTime"] = t(end).into();
            p["endTime"] = t(end).into();
        }
        p["calls"] = serde_json::json!([call]);
        if let Some(u) = user {
            p["userId"] = u.into();
        }
        if let Some(q) = q {
            p["queueId"] = q.into();
        }
        p
    };
    serde_json::json!({"id": conversation,
        "participants": [part("customer", None, None), part("acd", None, Some(queue)),
            part("agent", Some(agent), Some(queue))],
        "recordingState": if ended { "none" } else { "active" },
        "divisions": [{"division": {"id": state::DEFAULT_DIVISION}, "entities": [{"id": conversation}]}]})
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
