//! Shared mutable simulator state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore, SeedableRng};
use sha2::Sha256;

use crate::media::{synth_duration_ms, Content, REAL_SAMPLE_DURATION_MS};
use crate::model::*;

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
}

pub(crate) struct Tok {
    pub expires: Instant,
    pub window_start: Instant,
    pub count: u32,
}

#[derive(Default)]
pub(crate) struct Store {
    pub convs: HashMap<String, Conv>,
    pub order: Vec<String>,
    pub recs: HashMap<String, Rec>,
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
}

impl Rec {
    /// Poll the state: counts towards `unavailable_polls`.
    pub fn poll_state(&mut self) -> FileState {
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
            ignore_range: AtomicBool::new(cfg.ignore_range),
            cfg,
            sign_key: key,
            media_gen: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            base_url: OnceLock::new(),
        }
    }

    pub fn base(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }

    // ---- tokens -------------------------------------------------------------------------

    pub fn issue_token(&self) -> String {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let tok = hex::encode(raw);
        let now = Instant::now();
        lock(&self.tokens).insert(
            tok.clone(),
            Tok {
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

    pub fn media_url(&self, rid: &str) -> String {
        use base64::Engine;
        let opaque = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rid.as_bytes());
        let expires = Utc::now().timestamp() + self.cfg.media_url_ttl_secs as i64;
        let gen = self.media_gen.load(Ordering::SeqCst);
        let sig = self.sign(&opaque, expires, gen);
        format!("{}/media/{opaque}?expires={expires}&sig={sig}", self.base())
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
                },
                Part {
                    id: new_id(),
                    purpose: "acd".into(),
                    name: Some("Support".into()),
                    user_id: None,
                    queue_id: Some(queue.clone()),
                    session_id: new_id(),
                },
                Part {
                    id: new_id(),
                    purpose: "agent".into(),
                    name: Some("Agent Smith".into()),
                    user_id: Some(new_id()),
                    queue_id: Some(queue),
                    session_id: new_id(),
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
            division_id: DEFAULT_DIVISION.into(),
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
        let content = Content::new(spec.media, &id);
        let duration_ms = match spec.media {
            MediaSource::Real(_) => REAL_SAMPLE_DURATION_MS,
            MediaSource::SynthWav { .. } => synth_duration_ms(content.len()),
        };
        let mut st = lock(&self.store);
        let conv = st.convs.get_mut(conversation_id)?;
        let start = conv.start + chrono::Duration::seconds(2);
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
