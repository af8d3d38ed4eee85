//! Ranged, verified, resumable download of one recording's media into an encrypted S3 object.
//!
//! * [`range`]: chunk planning and `Content-Range` parsing.
//! * [`source`]: the signed media URL (fetched from Genesys, refreshed when it expires, never
//!   given the bearer token) and verified range requests.
//! * [`codec`]: codec sniffing and declared-type checks.
//! * [`hash`]: SHA-256 whose state survives a checkpoint.
//! * [`buffers`]: chunk buffers reused instead of reallocated (flat memory, no allocator tuning).
//! * [`checkpoint`]: the transfer's state in S3, owned through `If-Match`.
//! * [`engine`]: the loop that strings them together with encryption and the multipart sink.
//!
//! What it does not do: decide *which* recordings to archive (archive-on-event, sweeps), or
//! anything after the manifest (write-back, notifications: `pipeline`).

pub mod buffers;
pub mod checkpoint;
pub mod codec;
pub mod engine;
pub mod hash;
pub mod integrity;
pub mod plan;
pub mod range;
pub mod source;

use std::time::Duration;

use crate::crypto::CryptoError;
use crate::genesys::models::FileState;
use crate::genesys::GenesysError;
use crate::retry::{RetryClass, Retryable};
use crate::store::StoreError;

pub use codec::Codec;
pub use engine::{transfer_recording, TransferJob, TransferOutcome, TransferSettings};
pub use range::ByteRange;

/// Why a transfer stopped without archiving. `retry_class` tells the caller whether to retry
/// (SQS redelivery, possibly delayed) or give up (DLQ with the reason).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("recording media is not ready yet ({reason}); retry in {retry_after:?}")]
    NotReady {
        reason: String,
        retry_after: Duration,
        /// A batch download job still running: the next attempt polls it instead of
        /// submitting another.
        batch_job: Option<String>,
    },
    /// The recording has several media streams (`mediaUris` keys): each is archived as its own
    /// object, so the caller runs one transfer per key.
    #[error("recording has {} media streams", keys.len())]
    MultipleMedia { keys: Vec<crate::ids::MediaKey> },
    #[error("media stream {key:?} is no longer offered by Genesys Cloud")]
    MediaKeyGone { key: String },
    #[error("Genesys Cloud's batch download refused the recording: {reason}")]
    BatchRefused { reason: String },
    #[error("recording has no downloadable media in Genesys Cloud (fileState {file_state:?})")]
    Unavailable { file_state: Option<FileState> },
    #[error("the recording is in Genesys Cloud's own archive (fileState ARCHIVED), which serves no media: restore it by moving its archiveDate (PUT /api/v2/conversations/{{conversationId}}/recordings/{{recordingId}}), wait until its fileState is RESTORED, then archive it again (gc-archive archive --conversation … --recording …, or re-publish the conversation's event)")]
    ArchivedInGenesys,
    /// Boxed: `GenesysError` is large and every transfer function returns this type.
    #[error("Genesys Cloud: {0}")]
    Genesys(Box<GenesysError>),
    #[error("media {range}: {reason} (after {attempts} attempts)")]
    Chunk {
        range: ByteRange,
        reason: String,
        attempts: u32,
        /// The media host's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    #[error("media {range} refused: {reason}")]
    MediaRejected { range: ByteRange, reason: String },
    #[error("media stream failed at byte {offset}: {reason}")]
    Stream { offset: u64, reason: String },
    #[error("media is not what was asked for: expected {expected}, the bytes are {sniffed}")]
    CodecMismatch { expected: String, sniffed: String },
    /// The bytes changed between the source and us (a checksum or Ogg page CRC from the source
    /// disagrees): what was uploaded is discarded and the transfer starts over.
    #[error("media failed the source's own integrity check: {reason}")]
    SourceIntegrity { reason: String },
    #[error("media size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("recording media is empty")]
    EmptyMedia,
    #[error("another worker owns this transfer until {until}")]
    Busy {
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error("lost ownership of the transfer checkpoint to another worker")]
    LostOwnership,
    #[error("{key} exists but is not this transfer's object (checksum {found:?}); left untouched")]
    ObjectConflict { key: String, found: Option<String> },
    /// An object at the final key that nothing vouched for was moved aside; the recording is
    /// archived again from scratch on the retry.
    #[error("{key} could not be vouched for and was moved to {moved_to}; archiving again")]
    Quarantined { key: String, moved_to: String },
    #[error("checkpoint {key} is unreadable: {reason}")]
    BadCheckpoint { key: String, reason: String },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
    /// The transfer settings cannot work (a deployment fault: every recording would fail).
    #[error("transfer settings: {0}")]
    Settings(String),
    /// Genesys answered without a field the archive needs.
    #[error("conversation {conversation} has no {field} in Genesys")]
    MissingConversationField {
        conversation: String,
        field: &'static str,
    },
    /// A task of this transfer (a fetch, the hash lane, an encryption, an upload) panicked or
    /// was cancelled; the attempt is retried, and a repeat ends in the DLQ with this reason.
    #[error("the {task} task failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
    /// A state the engine never creates (a bug): reported with what was found, never retried.
    #[error("transfer invariant broken: {0}")]
    Invariant(&'static str),
    /// Our own state (a checkpoint, a manifest) could not be serialized.
    #[error("could not serialize the {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    /// The recording has nowhere compliant to go (no rule and no default, a target whose
    /// bucket fails a required compliance check, a recorded target no longer configured): a
    /// deployment fault; the recording waits, nothing is written or discarded.
    #[error("routing: {0}")]
    Route(String),
    /// The recording's target fails a required compliance check: only this recording waits
    /// (retried every [`crate::compliance::VERDICT_TTL`], when the verdict is read again),
    /// nothing is written; after the receive limit it is dead-lettered with this reason.
    #[error("{0}")]
    TargetRefused(String),
}

impl From<hash::LaneStopped> for TransferError {
    fn from(_: hash::LaneStopped) -> Self {
        TransferError::TaskFailed {
            task: "plaintext hash",
            reason: "the hash lane stopped".into(),
        }
    }
}

impl TransferError {
    /// A spawned task's join failure.
    pub(crate) fn task(task: &'static str, e: tokio::task::JoinError) -> TransferError {
        TransferError::TaskFailed {
            task,
            reason: if e.is_panic() {
                "panicked".into()
            } else {
                "cancelled".into()
            },
        }
    }
}

impl From<GenesysError> for TransferError {
    fn from(e: GenesysError) -> Self {
        TransferError::Genesys(Box::new(e))
    }
}

impl TransferError {
    /// A short machine-readable reason for metrics, audit and DLQ messages.
    pub fn reason_code(&self) -> &'static str {
        match self {
            TransferError::NotReady { .. } => "not_ready",
            TransferError::MultipleMedia { .. } => "multiple_media",
            TransferError::MediaKeyGone { .. } => "media_key_gone",
            TransferError::BatchRefused { .. } => "batch_refused",
            TransferError::Unavailable { .. } => "unavailable",
            TransferError::ArchivedInGenesys => "archived_in_genesys",
            TransferError::Genesys(_) => "genesys",
            TransferError::Chunk { .. } => "chunk",
            TransferError::MediaRejected { .. } => "media_rejected",
            TransferError::Stream { .. } => "stream",
            TransferError::CodecMismatch { .. } => "codec_mismatch",
            TransferError::SizeMismatch { .. } => "size_mismatch",
            TransferError::SourceIntegrity { .. } => "source_integrity",
            TransferError::EmptyMedia => "empty_media",
            TransferError::Busy { .. } => "busy",
            TransferError::LostOwnership => "lost_ownership",
            TransferError::ObjectConflict { .. } => "object_conflict",
            TransferError::Quarantined { .. } => "quarantined",
            TransferError::BadCheckpoint { .. } => "bad_checkpoint",
            TransferError::Store(_) => "store",
            TransferError::Crypto(_) => "crypto",
            TransferError::Settings(_) => "settings",
            TransferError::MissingConversationField { .. } => "conversation_incomplete",
            TransferError::TaskFailed { .. } => "task_failed",
            TransferError::Invariant(_) => "invariant",
            TransferError::Encode { .. } => "encode",
            TransferError::Route(_) => "route",
            TransferError::TargetRefused(_) => "target_refused",
        }
    }
}

impl Retryable for TransferError {
    fn retry_class(&self) -> RetryClass {
        match self {
            TransferError::NotReady { retry_after, .. } => RetryClass::Transient {
                retry_after: Some(*retry_after),
            },
            TransferError::Busy { .. } | TransferError::LostOwnership => RetryClass::Transient {
                retry_after: Some(Duration::from_secs(60)),
            },
            TransferError::Chunk { retry_after, .. } => RetryClass::Transient {
                retry_after: *retry_after,
            },
            TransferError::Stream { .. }
            | TransferError::SourceIntegrity { .. }
            | TransferError::Quarantined { .. }
            | TransferError::TaskFailed { .. } => RetryClass::Transient { retry_after: None },
            TransferError::Settings(_) | TransferError::Route(_) => RetryClass::Infrastructure,
            TransferError::TargetRefused(_) => RetryClass::Transient {
                retry_after: Some(crate::compliance::VERDICT_TTL),
            },
            TransferError::Genesys(e) => e.retry_class(),
            TransferError::Store(e) => e.retry_class(),
            TransferError::Crypto(e) => e.retry_class(),
            _ => RetryClass::Permanent,
        }
    }
}
