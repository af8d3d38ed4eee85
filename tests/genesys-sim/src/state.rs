//! Shared mutable simulator state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore, SeedableRng};
use sha2::Sha256;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::docs;
use crate::media::{real_sample, seed_of, synth_duration_ms, Content, REAL_SAMPLE_DURATION_MS};
use crate::model::*;
use crate::render;

pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub ignore_range: AtomicBool,
    sign_key: [u8; 32],
    pub media_gen: AtomicU64,
    pub store: Mutex<Store>,
    pub tokens: Mutex<HashMap<String, Tok>>,
    faults: Mutex<Vec<ActiveRule>>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub base_url: OnceLock<String>,
    /// (MD5, SHA-256) of whole media variants, by URL opaque id without the encode.
    pub digests: Mutex<HashMap<String, Digests>>,
    pub notify: std::sync::Arc<crate::notify_api::NotifyHub>,
    pub messaging: std::sync::Arc<crate::messaging_api::MessagingHub>,
}

/// (MD5, SHA-256) of a whole object.
pub(crate) type Digests = ([u8; 16], [u8; 32]);

pub(crate) struct Tok {
    /// OAuth client the token was issued to.
    pub client_id: String,
    pub expires: Instant,
    pub window_start: Instant,
    pub count: u32,
}

#[derive(Default)]
pub(crate) struct Store {
    pub convs: HashMap<String, Conv>,
    pub order: Vec<String>,
    pub recs: HashMap<String, Rec>,
    pub batches: HashMap<String, Batch>,
    pub analytics_jobs: HashMap<String, AnalyticsJob>,
    pub integrations: Vec<crate::setup_api::Integration>,
    /// `Policy` documents (media retention), as served.
    pub retention_policies: Vec<serde_json::Value>,
    /// Permissions the OAuth clients lack (every other one is granted).
    pub denied_permissions: std::collections::BTreeSet<String>,
}

/// An async analytics details job (`/api/v2/analytics/conversations/details/jobs`).
pub(crate) struct AnalyticsJob {
    pub owner: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub only_recorded: bool,
    pub gets: u32,
}

/// A batch download job (`/api/v2/recording/batchrequests`).
pub(crate) struct Batch {
    pub id: String,
    /// OAuth client id of the submitter; nobody else may read the job.
    pub owner: String,
    pub items: Vec<BatchItem>,
    pub gets: u32,
    /// Filled (URLs signed) by the GET that completes the job.
    pub results: Option<Vec<Value>>,
}

pub(crate) struct BatchItem {
    pub conversation_id: String,
    pub recording_id: Option<String>,
}

/// Which `mediaUris` key a rendition URL stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    S,
    Ch0,
    Ch1,
}

impl Key {
    pub fn as_str(self) -> &'static str {
        match self {
            Key::S => "S",
            Key::Ch0 => "0",
            Key::Ch1 => "1",
        }
    }

    pub fn parse(s: &str) -> Option<Key> {
        match s {
            "S" => Some(Key::S),
            "0" => Some(Key::Ch0),
            "1" => Some(Key::Ch1),
            _ => None,
        }
    }
}

/// What a signed media URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// The stored source bytes (batch downloads, `formatId=NONE` with `ServesOriginal`,
    /// documents and screen recordings).
    Original,
    /// A rendition in `format`; `encode` 0 is the stable encode.
    Rendition {
        format: Codec,
        key: Key,
        encode: u32,
    },
}

impl Variant {
    fn encode_str(self) -> String {
        match self {
            Variant::Original => "o".into(),
            Variant::Rendition {
                format,
                key,
                encode,
            } => format!("r.{}.{}.{encode}", format.as_format_id(), key.as_str()),
        }
    }

    fn parse(s: &str) -> Option<Variant> {
        if s == "o" {
            return Some(Variant::Original);
        }
        let mut it = s.strip_prefix("r.")?.split('.');
        let format = Codec::from_format_id(it.next()?)?;
        let key = Key::parse(it.next()?)?;
        let encode = it.next()?.parse().ok()?;
        Some(Variant::Rendition {
            format,
            key,
            encode,
        })
    }

    /// Identity of the bytes a URL serves (digest cache and ETag key).
    pub fn bytes_id(self, rid: &str) -> String {
        format!("{rid}\n{}", self.encode_str())
    }
}

/// Restore of an archived recording in progress or done.
pub(crate) struct Restore {
    /// Polls still answering `RESTORING`.
    pub polls_left: u32,
    pub expires: DateTime<Utc>,
}

pub(crate) struct Conv {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub participants: Vec<Part>,
    pub external_tag: Option<String>,
    pub direction: String,
    pub division_id: String,
    pub recordings: Vec<String>,
    pub custom: Vec<CustomAttr>,
}

pub(crate) struct Part {
    pub id: String,
    pub purpose: String,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub session_id: String,
    pub wrapup_code: Option<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
}

#[derive(Clone)]
pub(crate) struct CustomAttr {
    pub id: String,
    pub schema_id: String,
    pub divisions: Vec<String>,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub timestamps: serde_json::Map<String, serde_json::Value>,
    pub version: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

pub(crate) struct Rec {
    pub id: String,
    pub conv_id: String,
    pub source: MediaSource,
    pub content: Content,
    pub declared: Codec,
    pub unavailable_polls: u32,
    pub transcoding_polls: u32,
    pub file_state_override: Option<FileState>,
    pub polls: u32,
    pub transcode_seen: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_ms: u64,
    pub session_id: String,
    /// Media URL issuances per rendition format.
    pub encodes: HashMap<Codec, u32>,
    pub restore: Option<Restore>,
    /// Retention fields set with the recording PUT (`archiveDate`, `deleteDate`, `exportDate`).
    pub retention: Map<String, Value>,
}

impl Rec {
    /// Poll the state: counts towards `unavailable_polls` and a restore in progress.
    pub fn poll_state(&mut self) -> FileState {
        if let Some(r) = &mut self.restore {
            if r.polls_left > 0 {
                r.polls_left -= 1;
                return FileState::Restoring;
            }
            return FileState::Restored;
        }
        if let Some(s) = self.file_state_override {
            return s;
        }
        if self.unavailable_polls == u32::MAX {
            return FileState::Uploading;
        }
        let st = if self.polls < self.unavailable_polls {
            FileState::Uploading
        } else {
            FileState::Available
        };
        self.polls = self.polls.saturating_add(1);
        st
    }

    /// The state without counting a poll.
    pub fn peek_state(&self) -> FileState {
        if let Some(r) = &self.restore {
            return if r.polls_left > 0 {
                FileState::Restoring
            } else {
                FileState::Restored
            };
        }
        if let Some(s) = self.file_state_override {
            return s;
        }
        if self.unavailable_polls == u32::MAX || self.polls < self.unavailable_polls {
            FileState::Uploading
        } else {
            FileState::Available
        }
    }

    /// Encode index of the latest issued URL of `format` under `serial` (0 = stable encode).
    pub fn latest_encode(&self, format: Codec, serial: TranscodeSerial) -> u32 {
        match serial {
            TranscodeSerial::Stable => 0,
            TranscodeSerial::PerEncode => self.encodes.get(&format).copied().unwrap_or(0),
        }
    }

    /// Count one URL issuance of `format`; returns the encode index to put in the URL.
    pub fn issue_encode(&mut self, format: Codec, serial: TranscodeSerial) -> u32 {
        let n = self.encodes.entry(format).or_insert(0);
        *n = n.saturating_add(1);
        match serial {
            TranscodeSerial::Stable => 0,
            TranscodeSerial::PerEncode => *n,
        }
    }

    /// Accurate MIME type of what a variant serves.
    pub fn content_type(&self, v: Variant) -> &'static str {
        match v {
            _ if !self.source.is_audio() => self.source.content_type(),
            Variant::Original => self.declared.content_type(),
            Variant::Rendition { format, .. } => format.content_type(),
        }
    }

    /// The bytes a variant serves.
    pub fn variant_content(&self, v: Variant) -> Content {
        let Variant::Rendition {
            format,
            key,
            encode,
        } = v
        else {
            return self.content.clone();
        };
        if !self.source.is_audio() {
            return self.content.clone();
        }
        let synth = matches!(self.source, MediaSource::SynthWav { .. });
        // A recording whose declared codec lies serves its stored bytes for the declared
        // format (no transcode happened, the label is wrong).
        let lying = format == self.declared && self.declared != self.source.codec();
        let base = if lying {
            self.content.clone()
        } else {
            match (synth, format) {
                (true, Codec::WavPcm) => self.content.clone(),
                (true, Codec::WavUlaw) => self
                    .content
                    .to_ulaw()
                    .unwrap_or_else(|| self.content.clone()),
                _ => Content::from_static(Bytes::from_static(real_sample(format))),
            }
        };
        let ogg = matches!(format, Codec::OggOpus | Codec::OggVorbis);
        if key == Key::Ch1 && !ogg {
            // A second channel of the same codec.
            if synth && !lying && matches!(format, Codec::WavPcm | Codec::WavUlaw) {
                let other = Content::new(
                    MediaSource::SynthWav {
                        size_bytes: self.content.len(),
                    },
                    &format!("{}#1", self.id),
                );
                return match format {
                    Codec::WavUlaw => other.to_ulaw().unwrap_or(other),
                    _ => other,
                };
            }
            let bytes = base.to_vec();
            let derived = match format {
                Codec::WavPcm | Codec::WavUlaw => render::wav_invert(&bytes),
                Codec::Mp3 => Some(render::mp3_retag(&bytes, "gc-sim channel 1")),
                _ => render::webm_mark(&bytes, b"gc-sim channel 1"),
            };
            return derived.map_or(base, |d| Content::from_static(Bytes::from(d)));
        }
        if ogg && (encode != 0 || key == Key::Ch1) {
            let xor = (seed_of(&format!(
                "{}/{}/{encode}/{}",
                self.id,
                format.as_format_id(),
                key == Key::Ch1
            )) as u32)
                | 1;
            if let Some(d) = render::ogg_reserial(&base.to_vec(), xor) {
                return Content::from_static(Bytes::from(d));
            }
        }
        base
    }
}

struct ActiveRule {
    rule: FaultRule,
    seen: u32,
    applied: u32,
}

/// What a request is, for fault matching.
pub(crate) enum Target<'a> {
    Token,
    Api(&'a str),
    Media(&'a str),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Shared {
    pub fn new(cfg: SimConfig) -> Shared {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Shared {
            ignore_range: AtomicBool::new(cfg.behaviour.range == RangeSupport::Ignored),
            cfg,
            sign_key: key,
            media_gen: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            base_url: OnceLock::new(),
            digests: Mutex::new(HashMap::new()),
            notify: Default::default(),
            messaging: Default::default(),
        }
    }

    pub fn base(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }

    // ---- tokens -------------------------------------------------------------------------

    /// The client id whose secret matches, if any.
    pub fn client_for(&self, id: &str, secret: &str) -> Option<String> {
        std::iter::once((&self.cfg.client_id, &self.cfg.client_secret))
            .chain(self.cfg.extra_clients.iter().map(|(a, b)| (a, b)))
            .find(|(a, b)| a.as_str() == id && b.as_str() == secret)
            .map(|(a, _)| a.clone())
    }

    pub fn issue_token(&self, client_id: &str) -> String {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let tok = hex::encode(raw);
        let now = Instant::now();
        lock(&self.tokens).insert(
            tok.clone(),
            Tok {
                client_id: client_id.to_string(),
                expires: now + Duration::from_secs(self.cfg.token_ttl_secs),
                window_start: now,
                count: 0,
            },
        );
        tok
    }

    // ---- faults -------------------------------------------------------------------------

    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.faults).push(ActiveRule {
            rule,
            seen: 0,
            applied: 0,
        });
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Count this request against all matching rules and return the fault to apply, if any.
    pub fn take_fault(&self, t: Target<'_>) -> Option<Fault> {
        let mut chosen = None;
        for r in lock(&self.faults).iter_mut() {
            let matches = match (&r.rule.target, &t) {
                (FaultTarget::Token, Target::Token) => true,
                (FaultTarget::Api { path_contains }, Target::Api(p)) => p.contains(path_contains),
                (FaultTarget::Media { recording_id }, Target::Media(rid)) => {
                    recording_id.as_deref().is_none_or(|x| x == *rid)
                }
                _ => false,
            };
            if !matches || r.applied >= r.rule.times {
                continue;
            }
            if r.seen < r.rule.skip {
                r.seen += 1;
                continue;
            }
            if chosen.is_none() {
                r.applied += 1;
                chosen = Some(r.rule.fault.clone());
            }
        }
        chosen
    }

    // ---- media URL signing --------------------------------------------------------------

    pub fn sign(&self, opaque: &str, expires: i64, gen: u64) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.sign_key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        mac.update(format!("{opaque}\n{expires}\n{gen}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A signed URL serving `variant` of recording `rid`, valid for `ttl_secs`.
    pub fn media_url(&self, rid: &str, variant: Variant, ttl_secs: u64) -> String {
        use base64::Engine;
        let opaque = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{rid}\n{}", variant.encode_str()).as_bytes());
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
        let expires = Utc::now().timestamp().saturating_add(ttl);
        let gen = self.media_gen.load(Ordering::SeqCst);
        let sig = self.sign(&opaque, expires, gen);
        format!("{}/media/{opaque}?expires={expires}&sig={sig}", self.base())
    }

    /// Recording id and variant of a media URL's opaque id.
    pub fn parse_opaque(opaque: &str) -> Option<(String, Variant)> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(opaque.as_bytes())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (rid, v) = s.split_once('\n')?;
        Some((rid.to_string(), Variant::parse(v)?))
    }

    // ---- data ---------------------------------------------------------------------------

    pub fn add_conversation(&self, spec: ConversationSpec) -> String {
        let id = spec.id.unwrap_or_else(new_id);
        let start = spec
            .start
            .unwrap_or_else(|| Utc::now() - chrono::Duration::hours(1));
        let end = start + chrono::Duration::seconds(spec.duration_secs.min(i32::MAX as u64) as i64);
        let mut participants: Vec<Part> = spec
            .participants
            .into_iter()
            .map(|p| Part {
                id: new_id(),
                purpose: p.purpose,
                name: p.name,
                user_id: p.user_id,
                queue_id: p.queue_id,
                session_id: new_id(),
                wrapup_code: p.wrapup_code,
                attributes: p.attributes,
            })
            .collect();
        if participants.is_empty() {
            let queue = new_id();
            participants = vec![
                Part {
                    id: new_id(),
                    purpose: "customer".into(),
                    name: Some("Customer".into()),
                    user_id: None,
                    queue_id: None,
                    session_id: new_id(),
                    wrapup_code: None,
                    attributes: Default::default(),
                },
                Part {
                    id: new_id(),
                    purpose: "acd".into(),
                    name: Some("Support".into()),
                    user_id: None,
                    queue_id: Some(queue.clone()),
                    session_id: new_id(),
                    wrapup_code: None,
                    attributes: Default::default(),
                },
                Part {
                    id: new_id(),
                    purpose: "agent".into(),
                    name: Some("Agent Smith".into()),
                    user_id: Some(new_id()),
                    queue_id: Some(queue),
                    session_id: new_id(),
                    wrapup_code: None,
                    attributes: Default::default(),
                },
            ];
        }
        let conv = Conv {
            id: id.clone(),
            start,
            end,
            participants,
            external_tag: spec.external_tag,
            direction: spec.direction.unwrap_or_else(|| "inbound".into()),
            division_id: spec.division_id.unwrap_or_else(|| DEFAULT_DIVISION.into()),
            recordings: Vec::new(),
            custom: Vec::new(),
        };
        let mut st = lock(&self.store);
        if st.convs.insert(id.clone(), conv).is_none() {
            st.order.push(id.clone());
        }
        id
    }

    pub fn add_recording(&self, conversation_id: &str, spec: RecordingSpec) -> Option<String> {
        let id = spec.id.unwrap_or_else(new_id);
        let mut st = lock(&self.store);
        let conv = st.convs.get_mut(conversation_id)?;
        let start = conv.start + chrono::Duration::seconds(2);
        let content = match spec.media {
            MediaSource::Chat | MediaSource::Messaging => {
                let t = docs::transcript_json(spec.media.media_type(), conversation_id, &id, start);
                Content::from_static(Bytes::from(docs::zip_stored(
                    &[("transcript.json", &t)],
                    start,
                )))
            }
            MediaSource::Email => {
                Content::from_static(Bytes::from(docs::email(conversation_id, &id, start)))
            }
            other => Content::new(other, &id),
        };
        let duration_ms = match spec.media {
            MediaSource::SynthWav { .. } => synth_duration_ms(content.len()),
            MediaSource::Chat | MediaSource::Messaging | MediaSource::Email => {
                (conv.end - start).num_milliseconds().max(1_000) as u64
            }
            _ => REAL_SAMPLE_DURATION_MS,
        };
        let end = start + chrono::Duration::milliseconds(duration_ms as i64);
        if !conv.recordings.contains(&id) {
            conv.recordings.push(id.clone());
        }
        let rec = Rec {
            id: id.clone(),
            conv_id: conversation_id.to_string(),
            source: spec.media,
            content,
            declared: spec.declared_codec.unwrap_or(spec.media.codec()),
            unavailable_polls: spec.unavailable_polls,
            transcoding_polls: spec.transcoding_polls,
            file_state_override: spec.file_state_override,
            polls: 0,
            transcode_seen: 0,
            start,
            end,
            duration_ms,
            session_id: new_id(),
            encodes: HashMap::new(),
            restore: None,
            retention: Map::new(),
        };
        st.recs.insert(id.clone(), rec);
        Some(id)
    }

    pub fn content(&self, rid: &str) -> Option<Content> {
        lock(&self.store).recs.get(rid).map(|r| r.content.clone())
    }

    pub fn summaries(&self) -> Vec<ConversationSummary> {
        let st = lock(&self.store);
        let mut out: Vec<ConversationSummary> = st
            .order
            .iter()
            .filter_map(|id| st.convs.get(id))
            .map(|c| ConversationSummary {
                id: c.id.clone(),
                start_time: c.start,
                end_time: c.end,
                external_tag: c.external_tag.clone(),
                recordings: c
                    .recordings
                    .iter()
                    .filter_map(|r| st.recs.get(r))
                    .map(|r| RecordingSummary {
                        id: r.id.clone(),
                        media: r.source.media_type().to_string(),
                        codec: r.source.codec(),
                        declared_codec: r.declared,
                        size_bytes: r.content.len(),
                    })
                    .collect(),
            })
            .collect();
        out.sort_by_key(|c| c.start_time);
        out
    }

    /// Generate conversations; returns their ids.
    pub fn seed(&self, spec: SeedSpec) -> Vec<String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(spec.rng_seed);
        let window = if spec.days == 0 {
            3_600
        } else {
            spec.days as i64 * 86_400
        };
        let now = Utc::now();
        let mut ids = Vec::with_capacity(spec.conversations);
        for _ in 0..spec.conversations {
            let cid = uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string();
            // Leave a few minutes at the end so every conversation has ended.
            let ago = rng.random_range(600..window.max(601));
            let cid = self.add_conversation(ConversationSpec {
                id: Some(cid),
                start: Some(now - chrono::Duration::seconds(ago)),
                duration_secs: rng.random_range(30..600),
                direction: Some(
                    if rng.random_bool(0.7) {
                        "inbound"
                    } else {
                        "outbound"
                    }
                    .into(),
                ),
                ..Default::default()
            });
            let n = match rng.random_range(0..10) {
                0 | 1 => 0,
                2 => 2,
                _ => 1,
            };
            for _ in 0..n {
                let media = match rng.random_range(0..10) {
                    k @ 0..=5 => MediaSource::Real(Codec::ALL[k]),
                    _ => MediaSource::SynthWav {
                        size_bytes: rng.random_range(200_000..600_000),
                    },
                };
                let rid = uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .to_string();
                let mut rs = RecordingSpec::new(media);
                rs.id = Some(rid);
                self.add_recording(&cid, rs);
            }
            ids.push(cid);
        }
        ids
    }
}

/// Division every simulated conversation belongs to.
pub(crate) const DEFAULT_DIVISION: &str = "b1a7f7c2-0d39-4c51-8a5e-2f6c6f8e9d10";
