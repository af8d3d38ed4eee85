//! Public configuration, specification and fault types of the simulator.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Simulator configuration.
///
/// Build it with struct update syntax so new fields keep old code compiling:
/// `SimConfig { behaviour: Behaviour { range: RangeSupport::Honoured, ..Default::default() }, ..SimConfig::default() }`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub client_id: String,
    pub client_secret: String,
    /// More OAuth clients (id, secret) the token endpoint accepts, e.g. to check that a batch
    /// job is only readable by the client that submitted it.
    pub extra_clients: Vec<(String, String)>,
    pub org_id: String,
    /// `expires_in` of issued access tokens; tokens really stop working after it.
    pub token_ttl_secs: u64,
    /// Lifetime of signed media URLs handed out in `mediaUris`.
    pub media_url_ttl_secs: u64,
    /// Per-token request limit on `/api/v2/...`; `None` = unlimited (headers still sent).
    pub rate_limit: Option<RateLimit>,
    /// Seed the store with generated conversations at start.
    pub seed: Option<SeedSpec>,
    /// Switches for behaviour the API documentation leaves open (see [`Behaviour`]).
    pub behaviour: Behaviour,
    /// `GET /api/v2/recording/batchrequests/{id}` answers `InProgress` this many times before
    /// the job is `Completed`.
    pub batch_polls: u32,
    /// Lifetime of batch download `resultUrl`s.
    pub batch_url_ttl_secs: u64,
    /// Rows one analytics details query can page through (genesys-api.md §3.7: 10,000); a
    /// page reaching past it is refused. Lower it to test window splitting without 10,000
    /// conversations.
    pub analytics_max_rows: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            extra_clients: Vec::new(),
            org_id: DEFAULT_ORG_ID.into(),
            token_ttl_secs: 86_400,
            media_url_ttl_secs: 3_600,
            rate_limit: None,
            seed: None,
            behaviour: Behaviour::default(),
            batch_polls: 1,
            batch_url_ttl_secs: 3_600,
            analytics_max_rows: 10_000,
        }
    }
}

/// Behaviour switches. Each default is the documented behaviour, or where
/// `genesys-api.md` marks the behaviour UNCONFIRMED, the most conservative one for a client
/// (the one that assumes the least), so the client is tested against the hard case by default
/// and can opt into the friendly case explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Behaviour {
    pub none_format: NoneFormat,
    pub media_uri_keys: MediaUriKeys,
    pub media_content_type: MediaContentType,
    pub accepted_body: AcceptedBody,
    pub range: RangeSupport,
    pub expired_url: ExpiredUrl,
    pub custom_attributes_list: CustomAttributesListShape,
    /// Media responses carry an `ETag` that is the quoted hex MD5 of the whole object and, when
    /// the request sends `x-amz-checksum-mode: ENABLED`, `x-amz-checksum-sha256` (base64 of the
    /// whole object's SHA-256) on responses that cover the whole object. When false the `ETag`
    /// is opaque (S3 multipart style `"<hex>-<parts>"`, not an MD5) and no checksum is sent.
    pub media_checksums: bool,
    pub transcode_serial: TranscodeSerial,
    pub org_limits: OrgLimits,
}

/// What `GET /api/v2/organizations/limits/namespaces/platform.api` lists. The key name
/// `client.credentials.token.rate.per.minute` is quoted from third-party copies of the Genesys
/// limits page (genesys-api.md §2, UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OrgLimits {
    /// Nothing the client can pace by: it must rely on the `inin-ratelimit-*` headers.
    #[default]
    Unlisted,
    /// `client.credentials.token.rate.per.minute` with the enforced limit per minute.
    PerTokenPerMinute,
}

/// What `formatId=NONE` does on the recording GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NoneFormat {
    /// Documented: the Recording (fileState, dates, ...) without `mediaUris`.
    #[default]
    MetadataOnly,
    /// The simulator's old behaviour: a media URL of the original (source) bytes.
    ServesOriginal,
}

/// Keys of the `mediaUris` map (their meaning is UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MediaUriKeys {
    /// One key `"S"`.
    #[default]
    Single,
    /// Two keys `"0"` and `"1"`: two different byte streams of the same codec.
    PerChannel,
}

/// `Content-Type` of signed media URL responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MediaContentType {
    /// `binary/octet-stream`, what S3 answers for objects stored without a type.
    #[default]
    OctetStream,
    /// `audio/wav`, `audio/ogg`, `audio/mpeg`, `audio/webm`, `application/zip`,
    /// `message/rfc822`, `video/webm`.
    Accurate,
}

/// Body of a 202 from the recording GET (exact official shape UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AcceptedBody {
    /// Empty body.
    #[default]
    Empty,
    /// The Recording JSON including `estimatedTranscodeTimeMs`.
    RecordingJson,
}

/// `Range` support on signed media URLs (UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RangeSupport {
    /// 200 with the full body whatever `Range` says (`Accept-Ranges: bytes` is still sent).
    #[default]
    Ignored,
    /// 206 with `Content-Range`, 416 when unsatisfiable.
    Honoured,
}

/// Status of an expired or invalidated signed media URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ExpiredUrl {
    /// 403, S3 XML `AccessDenied` "Request has expired".
    #[default]
    Forbidden,
    BadRequest,
    Unauthorized,
    Gone,
}

impl ExpiredUrl {
    pub fn status(self) -> u16 {
        match self {
            ExpiredUrl::Forbidden => 403,
            ExpiredUrl::BadRequest => 400,
            ExpiredUrl::Unauthorized => 401,
            ExpiredUrl::Gone => 410,
        }
    }
}

/// Shape of `GET /api/v2/conversations/{id}/customattributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CustomAttributesListShape {
    /// `{"results":[...]}` (the SDK's `CustomAttributesListing`).
    #[default]
    Results,
    /// `{"entities":[...]}`.
    Entities,
    /// `[...]`.
    BareArray,
}

/// Whether Ogg renditions (`OGG_OPUS`, `OGG_VORBIS`) are re-encoded per media URL issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TranscodeSerial {
    /// Every issued URL is a fresh encode: new Ogg stream serial number, every page CRC
    /// recomputed, so the bytes differ between issuances.
    #[default]
    PerEncode,
    /// The same bytes every time.
    Stable,
}

/// Fixed organisation id used by [`SimConfig::default`].
pub const DEFAULT_ORG_ID: &str = "5a2b1f0e-7c1d-4d8e-9a43-0c9e1f2d3b4a";

/// Requests allowed per token per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_secs: u64,
}

/// Generated data set: `conversations` conversations started over the last `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedSpec {
    pub conversations: usize,
    pub days: u32,
    pub rng_seed: u64,
}

/// Audio codec of a recording. `as_format_id()` gives the Genesys `formatId` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    WavPcm,
    WavUlaw,
    OggOpus,
    OggVorbis,
    Mp3,
    Webm,
}

impl Codec {
    pub const ALL: [Codec; 6] = [
        Codec::WavPcm,
        Codec::WavUlaw,
        Codec::OggOpus,
        Codec::OggVorbis,
        Codec::Mp3,
        Codec::Webm,
    ];

    /// The `formatId` query value of the Genesys recording API.
    pub fn as_format_id(self) -> &'static str {
        match self {
            Codec::WavPcm => "WAV",
            Codec::WavUlaw => "WAV_ULAW",
            Codec::OggOpus => "OGG_OPUS",
            Codec::OggVorbis => "OGG_VORBIS",
            Codec::Mp3 => "MP3",
            Codec::Webm => "WEBM",
        }
    }

    pub fn from_format_id(s: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.as_format_id().eq_ignore_ascii_case(s))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Codec::WavPcm | Codec::WavUlaw => "audio/wav",
            Codec::OggOpus | Codec::OggVorbis => "audio/ogg",
            Codec::Mp3 => "audio/mpeg",
            Codec::Webm => "audio/webm",
        }
    }

    /// Conventional file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::WavPcm | Codec::WavUlaw => "wav",
            Codec::OggOpus | Codec::OggVorbis => "ogg",
            Codec::Mp3 => "mp3",
            Codec::Webm => "webm",
        }
    }
}

/// Genesys `fileState` values (PY-SDK `Recording.fileState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileState {
    Archived,
    Available,
    Deleted,
    Restored,
    Restoring,
    Uploading,
    Error,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Archived => "ARCHIVED",
            FileState::Available => "AVAILABLE",
            FileState::Deleted => "DELETED",
            FileState::Restored => "RESTORED",
            FileState::Restoring => "RESTORING",
            FileState::Uploading => "UPLOADING",
            FileState::Error => "ERROR",
        }
    }
}

/// Where a recording's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaSource {
    /// One of the committed real files under `media/` (a few seconds of speech).
    Real(Codec),
    /// Deterministic synthesized WAV (PCM 16-bit, 8 kHz, mono) of exactly `size_bytes`
    /// (rounded down to an even size, minimum 44 bytes) generated from the recording id.
    SynthWav { size_bytes: u64 },
    /// Chat recording: a ZIP (stored) holding `transcript.json` (`chatFormatId=ZIP`).
    Chat,
    /// Messaging recording: a ZIP holding `transcript.json` (`messageFormatId=ZIP`).
    Messaging,
    /// Email recording: an RFC 822 message (`emailFormatId=EML`).
    Email,
    /// Screen recording (`mediaSubtype` `Screen`): a WebM (the committed Opus WebM sample).
    Screen,
}

impl MediaSource {
    /// Codec of the source bytes. `Webm` for screen recordings; for chat, messaging and email
    /// (documents, no codec) `Webm` is a placeholder: use [`MediaSource::media_type`] first.
    pub fn codec(self) -> Codec {
        match self {
            MediaSource::Real(c) => c,
            MediaSource::SynthWav { .. } => Codec::WavPcm,
            MediaSource::Chat
            | MediaSource::Messaging
            | MediaSource::Email
            | MediaSource::Screen => Codec::Webm,
        }
    }

    /// The Recording `media` value: `audio`, `chat`, `messaging`, `email` or `screen`.
    pub fn media_type(self) -> &'static str {
        match self {
            MediaSource::Real(_) | MediaSource::SynthWav { .. } => "audio",
            MediaSource::Chat => "chat",
            MediaSource::Messaging => "messaging",
            MediaSource::Email => "email",
            MediaSource::Screen => "screen",
        }
    }

    pub fn is_audio(self) -> bool {
        matches!(self, MediaSource::Real(_) | MediaSource::SynthWav { .. })
    }

    /// Accurate MIME type of the source bytes (`audio/wav`, ..., `application/zip`,
    /// `message/rfc822`, `video/webm`).
    pub fn content_type(self) -> &'static str {
        match self {
            MediaSource::Real(c) => c.content_type(),
            MediaSource::SynthWav { .. } => Codec::WavPcm.content_type(),
            MediaSource::Chat | MediaSource::Messaging => "application/zip",
            MediaSource::Email => "message/rfc822",
            MediaSource::Screen => "video/webm",
        }
    }
}

/// A recording to add to a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingSpec {
    /// Recording id; a random UUID when `None`.
    pub id: Option<String>,
    pub media: MediaSource,
    /// Codec the API claims when it differs from the real bytes — to simulate a lying content
    /// type: the file name, the batch `contentType` and the accurate `Content-Type` of
    /// original-bytes URLs use it, and the rendition of this format serves the stored bytes.
    pub declared_codec: Option<Codec>,
    /// Report `UPLOADING` for the first N metadata/recording polls (`u32::MAX` = never available).
    pub unavailable_polls: u32,
    /// Once available, answer the recording GET with 202 (transcoding) this many times.
    pub transcoding_polls: u32,
    /// Fixed state (DELETED / ARCHIVED / ERROR ...) overriding the poll logic.
    pub file_state_override: Option<FileState>,
}

impl RecordingSpec {
    pub fn new(media: MediaSource) -> Self {
        RecordingSpec {
            id: None,
            media,
            declared_codec: None,
            unavailable_polls: 0,
            transcoding_polls: 0,
            file_state_override: None,
        }
    }
}

/// A participant of a simulated conversation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ParticipantSpec {
    /// "customer", "agent", "acd", ...
    pub purpose: String,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    /// The wrap-up code id the agent chose (`Participant.wrapup.code`).
    #[serde(default)]
    pub wrapup_code: Option<String>,
    /// Participant data (`Participant.attributes`, a string map).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A conversation to add.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationSpec {
    /// Conversation id; a random UUID when `None`.
    pub id: Option<String>,
    /// Start time; now minus one hour when `None`.
    pub start: Option<DateTime<Utc>>,
    pub duration_secs: u64,
    /// Empty = a default customer + acd + agent trio.
    pub participants: Vec<ParticipantSpec>,
    pub external_tag: Option<String>,
    /// `inbound` / `outbound` (analytics `originatingDirection`).
    pub direction: Option<String>,
    /// The division the conversation belongs to; the simulator's default division when `None`.
    #[serde(default)]
    pub division_id: Option<String>,
}

impl Default for ConversationSpec {
    fn default() -> Self {
        ConversationSpec {
            id: None,
            start: None,
            duration_secs: 180,
            participants: Vec::new(),
            external_tag: None,
            direction: None,
            division_id: None,
        }
    }
}

/// Summary of a stored conversation (library and `GET /__sim/conversations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub recordings: Vec<RecordingSummary>,
    pub external_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub id: String,
    /// `audio`, `chat`, `messaging`, `email` or `screen`.
    #[serde(default = "audio")]
    pub media: String,
    /// See [`MediaSource::codec`] (a placeholder for chat, messaging and email).
    pub codec: Codec,
    pub declared_codec: Codec,
    pub size_bytes: u64,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultTarget {
    /// `POST /oauth/token`
    Token,
    /// `/api/v2/...` requests whose path contains the string (empty = all).
    Api { path_contains: String },
    /// Signed media URL requests, optionally only for one recording.
    Media { recording_id: Option<String> },
}

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Answer with this status (Genesys JSON error body; S3 XML for media), optional `Retry-After`.
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Abort the connection after sending `after_bytes` body bytes.
    ResetMidBody { after_bytes: u64 },
    /// Declare the full `Content-Length` but end the body after `after_bytes`.
    TruncatedBody { after_bytes: u64 },
    /// 206 whose `Content-Range` start (and end) are shifted by [`WRONG_RANGE_SHIFT`] bytes.
    WrongContentRange,
    /// Serve this `Content-Type` instead of the right one.
    WrongContentType(String),
    /// S3-style "Request has expired" with the status of [`Behaviour::expired_url`] (media),
    /// 403 `not.authorized` on API paths.
    ExpiredUrl,
    /// Recording GET answers 202 "still transcoding" (body per [`Behaviour::accepted_body`];
    /// media: 202 with empty body).
    Transcoding202,
    /// Throttle the body to this rate.
    SlowBody { bytes_per_sec: u64 },
    /// 401 as if the token had expired.
    UnauthorizedToken,
}

/// Byte shift used by [`Fault::WrongContentRange`].
pub const WRONG_RANGE_SHIFT: u64 = 7;

/// A fault injection rule: let `skip` matching requests pass, then apply `fault` to the next
/// `times` matching requests (`u32::MAX` = forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub target: FaultTarget,
    pub fault: Fault,
    #[serde(default)]
    pub skip: u32,
    #[serde(default = "one")]
    pub times: u32,
}

fn audio() -> String {
    "audio".into()
}

fn one() -> u32 {
    1
}

impl FaultRule {
    /// Apply `fault` once to the next request matching `target`.
    pub fn once(target: FaultTarget, fault: Fault) -> Self {
        FaultRule {
            target,
            fault,
            skip: 0,
            times: 1,
        }
    }
}

/// One logged request (admin `/__sim/...` requests are not logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Raw `Range` header.
    pub range: Option<String>,
    /// Authorization scheme only ("Bearer", "Basic", ...), never the credential.
    pub auth: Option<String>,
    pub status: u16,
    pub at: DateTime<Utc>,
}
