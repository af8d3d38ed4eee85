//! Where a recording's bytes come from, and verified reads from there.
//!
//! * The **original codec** (the default) comes from the batch download API: `POST
//!   /api/v2/recording/batchrequests` for the one recording, then `GET .../batchrequests/{id}`
//!   until every result is in (genesys-api.md §3.1, §3.4). The wait is short and bounded; a job
//!   still running after it becomes [`TransferError::NotReady`] carrying the job id, which the
//!   checkpoint keeps so the next attempt polls the same job instead of submitting another.
//! * A **transcoded** audio format, screen video and the chat / messaging / email exports come
//!   from `GET /api/v2/conversations/{cid}/recordings/{rid}` and its `mediaUris`.
//!
//! Either way the URL is a credential ([`SignedUrl`]): requests to it carry no `Authorization`
//! header, and when it expires mid-transfer a fresh one is located once per expiry, shared by
//! all concurrent chunk fetches. The media host's `Content-Type` is kept as advisory only.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Mutex;

use super::integrity::SourceChecksums;
use super::range::{parse_content_range, ByteRange};
use super::TransferError;
use crate::config::{MediaFormat, RecordingMedia};
use crate::genesys::client::{MediaQuery, MediaStatus};
use crate::genesys::models::BatchDownloadRequest;
use crate::genesys::{GenesysClient, GenesysError, SignedUrl};
use crate::ids::{ConversationId, MediaKey, RecordingId};
use crate::retry::{parse_retry_after, RetryClass, RetryPolicy, Retryable};

/// What to ask Genesys Cloud for, for one archive object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRequest {
    /// Original-codec audio through the batch download API.
    Original,
    /// The recording GET (`query`); `key` picks one `mediaUris` entry when there are several.
    Recording {
        media: RecordingMedia,
        format_id: Option<String>,
        key: Option<MediaKey>,
    },
}

impl MediaRequest {
    /// The request for a recording of kind `media`, given the configured audio format.
    pub fn for_recording(
        media: RecordingMedia,
        format: &MediaFormat,
        key: Option<MediaKey>,
    ) -> MediaRequest {
        match (media, format) {
            (RecordingMedia::Audio, MediaFormat::Original) if key.is_none() => {
                MediaRequest::Original
            }
            (RecordingMedia::Audio, f) => MediaRequest::Recording {
                media,
                format_id: Some(match f {
                    MediaFormat::Transcoded(id) => id.clone(),
                    // A multi-stream audio recording named by key: its original is not
                    // addressable per key, so the stream comes in WAV (lossless).
                    MediaFormat::Original => "WAV".into(),
                }),
                key,
            },
            (media, _) => MediaRequest::Recording {
                media,
                format_id: None,
                key,
            },
        }
    }

    /// The name recorded in manifests (`ORIGINAL`, `WAV`, `chat ZIP`, …).
    pub fn describe(&self) -> String {
        match self {
            MediaRequest::Original => "ORIGINAL".into(),
            MediaRequest::Recording {
                media: RecordingMedia::Audio,
                format_id,
                ..
            } => format_id.clone().unwrap_or_else(|| "WEBM".into()),
            MediaRequest::Recording {
                media: RecordingMedia::Screen,
                ..
            } => "screen WEBM".into(),
            MediaRequest::Recording {
                media: RecordingMedia::Chat,
                ..
            } => "chatFormatId=ZIP".into(),
            MediaRequest::Recording {
                media: RecordingMedia::Messaging,
                ..
            } => "messageFormatId=ZIP".into(),
            MediaRequest::Recording {
                media: RecordingMedia::Email,
                ..
            } => "emailFormatId=EML".into(),
        }
    }

    fn query(&self) -> MediaQuery<'_> {
        match self {
            MediaRequest::Original => MediaQuery::Audio("WAV"),
            MediaRequest::Recording {
                media, format_id, ..
            } => match media {
                RecordingMedia::Audio => MediaQuery::Audio(format_id.as_deref().unwrap_or("WAV")),
                RecordingMedia::Screen => MediaQuery::Screen,
                RecordingMedia::Chat => MediaQuery::Chat,
                RecordingMedia::Messaging => MediaQuery::Messaging,
                RecordingMedia::Email => MediaQuery::Email,
            },
        }
    }
}

/// What the first request revealed about the server.
pub enum Probe {
    /// 206: ranges work. `first` is the requested range's verified bytes.
    Ranged {
        total: u64,
        content_type: String,
        first: Bytes,
        checksums: SourceChecksums,
    },
    /// 200: the server ignored `Range`; the whole body follows in `response`.
    Whole {
        total: u64,
        content_type: String,
        response: reqwest::Response,
        checksums: SourceChecksums,
    },
}

/// A failure of one attempt at one chunk.
#[derive(Debug)]
struct AttemptError {
    reason: String,
    expired: bool,
    transient: bool,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Retryable for AttemptError {
    fn retry_class(&self) -> RetryClass {
        if self.transient {
            RetryClass::Transient {
                retry_after: self.retry_after,
            }
        } else {
            RetryClass::Permanent
        }
    }
}

fn transient(reason: impl Into<String>) -> AttemptError {
    AttemptError {
        reason: reason.into(),
        expired: false,
        transient: true,
        retry_after: None,
    }
}

/// A located media URL and what came with it.
#[derive(Clone)]
struct Located {
    url: SignedUrl,
    /// `contentType` of a batch result (Genesys' own statement, unlike the media host's header).
    content_type: Option<String>,
    duration_ms: Option<u64>,
}

pub struct MediaSource {
    genesys: GenesysClient,
    conversation: ConversationId,
    recording: RecordingId,
    request: MediaRequest,
    url: Mutex<(Located, u64)>,
    chunk_retry: RetryPolicy,
    pub retries: AtomicU32,
    pub refreshes: AtomicU32,
}

/// How often one chunk is retried before the transfer fails with its range and reason.
pub const CHUNK_RETRIES: usize = 3;

/// Waits between polls of a batch download job inside one attempt (≈ 7.7 s in all, bounded by
/// the deadline); a job not done by then is retried later by SQS delay, never by sleeping.
const BATCH_POLL_WAITS_MS: [u64; 5] = [200, 500, 1000, 2000, 4000];

/// When a batch job is still running: look again after this long.
const BATCH_RETRY_AFTER: Duration = Duration::from_secs(15);

impl MediaSource {
    /// Locates the media. Not ready → [`TransferError::NotReady`]; no media →
    /// [`TransferError::Unavailable`]; several streams for an unkeyed request →
    /// [`TransferError::MultipleMedia`]. `batch_job` is a job submitted by an earlier attempt.
    pub async fn open(
        genesys: GenesysClient,
        conversation: ConversationId,
        recording: RecordingId,
        request: MediaRequest,
        batch_job: Option<String>,
    ) -> Result<Arc<MediaSource>, TransferError> {
        let located =
            Self::locate(&genesys, &conversation, &recording, &request, batch_job).await?;
        Ok(Arc::new(MediaSource {
            chunk_retry: genesys
                .retry_policy()
                .with_max_retries(CHUNK_RETRIES)
                .with_base_delay(Duration::from_millis(100)),
            genesys,
            conversation,
            recording,
            request,
            url: Mutex::new((located, 0)),
            retries: AtomicU32::new(0),
            refreshes: AtomicU32::new(0),
        }))
    }

    async fn locate(
        genesys: &GenesysClient,
        conversation: &ConversationId,
        recording: &RecordingId,
        request: &MediaRequest,
        batch_job: Option<String>,
    ) -> Result<Located, TransferError> {
        match request {
            MediaRequest::Original => {
                Self::locate_original(genesys, conversation, recording, batch_job).await
            }
            MediaRequest::Recording { key, .. } => {
                Self::locate_recording(genesys, conversation, recording, request, key.as_ref())
                    .await
            }
        }
    }

    async fn locate_recording(
        genesys: &GenesysClient,
        conversation: &ConversationId,
        recording: &RecordingId,
        request: &MediaRequest,
        key: Option<&MediaKey>,
    ) -> Result<Located, TransferError> {
        let status = match genesys
            .recording_media(conversation, recording, request.query())
            .await
        {
            Ok(status) => status,
            // The recording GET answers 404 for a recording that is gone (deleted, or never
            // existed): no amount of retrying will produce media.
            Err(GenesysError::Api { status: 404, .. }) => {
                return Err(TransferError::Unavailable { file_state: None })
            }
            Err(e) => return Err(e.into()),
        };
        match status {
            MediaStatus::Ready(rec) => {
                let media = rec.media();
                let chosen = match key {
                    Some(k) => media
                        .iter()
                        .find(|(name, _)| MediaKey::from_api(name) == *k)
                        .map(|(_, u)| (*u).clone())
                        .ok_or_else(|| TransferError::MediaKeyGone { key: k.to_string() })?,
                    None if media.len() > 1 => {
                        return Err(TransferError::MultipleMedia {
                            keys: media.iter().map(|(k, _)| MediaKey::from_api(k)).collect(),
                        })
                    }
                    None => media
                        .first()
                        .map(|(_, u)| (*u).clone())
                        .ok_or(TransferError::Unavailable { file_state: None })?,
                };
                Ok(Located {
                    url: chosen,
                    content_type: None,
                    duration_ms: rec.output_duration_ms.filter(|d| *d > 0),
                })
            }
            MediaStatus::Pending {
                file_state,
                estimated,
            } => Err(TransferError::NotReady {
                reason: match file_state {
                    Some(s) => format!("fileState {s:?}, transcoding or uploading"),
                    None => "transcoding".into(),
                },
                retry_after: estimated
                    .unwrap_or(Duration::from_secs(30))
                    .clamp(Duration::from_secs(5), Duration::from_secs(900)),
                batch_job: None,
            }),
            MediaStatus::Unavailable { file_state } => {
                Err(TransferError::Unavailable { file_state })
            }
        }
    }

    /// Submits (or re-polls) the recording's batch download job and waits briefly for it.
    async fn locate_original(
        genesys: &GenesysClient,
        conversation: &ConversationId,
        recording: &RecordingId,
        batch_job: Option<String>,
    ) -> Result<Located, TransferError> {
        let mut job = batch_job;
        for attempt in 0..2 {
            let id = match job.take() {
                Some(id) => id,
                None => {
                    genesys
                        .submit_batch_download(vec![BatchDownloadRequest {
                            conversation_id: conversation.to_string(),
                            recording_id: Some(recording.to_string()),
                        }])
                        .await?
                        .id
                }
            };
            let mut waits = BATCH_POLL_WAITS_MS.iter();
            loop {
                let status = match genesys.batch_download_status(&id).await {
                    Ok(s) => s,
                    // A job from an earlier attempt that is gone (expired): submit a new one.
                    Err(GenesysError::Api { status: 404, .. }) if attempt == 0 => break,
                    Err(e) => return Err(e.into()),
                };
                if status.is_complete() {
                    let result = status
                        .results
                        .into_iter()
                        .find(|r| r.recording_id.as_deref() == Some(recording.as_str()));
                    let Some(result) = result else {
                        return Err(TransferError::BatchRefused {
                            reason: format!("batch job {id} completed without this recording"),
                        });
                    };
                    if let Some(url) = result.result_url {
                        return Ok(Located {
                            url,
                            content_type: result.content_type,
                            duration_ms: None,
                        });
                    }
                    let mut reason = result
                        .error_msg
                        .unwrap_or_else(|| "no resultUrl and no errorMsg".into());
                    crate::text::truncate_at_char_boundary(&mut reason, 300);
                    return Err(Self::why_refused(genesys, conversation, recording, reason).await);
                }
                let wait = waits.next().map(|ms| Duration::from_millis(*ms));
                let fits = match (wait, genesys.deadline()) {
                    (Some(w), Some(d)) => tokio::time::Instant::now() + w * 2 < d,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                match wait {
                    Some(w) if fits => tokio::time::sleep(w).await,
                    _ => {
                        return Err(TransferError::NotReady {
                            reason: format!("batch download job {id} is still in progress"),
                            retry_after: BATCH_RETRY_AFTER,
                            batch_job: Some(id),
                        })
                    }
                }
            }
        }
        Err(TransferError::BatchRefused {
            reason: "batch download jobs keep disappearing".into(),
        })
    }

    /// A batch result without a URL: the recording's state says whether that is "later"
    /// (uploading, restoring), Genesys' cold storage, gone, or a refusal in its own words.
    async fn why_refused(
        genesys: &GenesysClient,
        conversation: &ConversationId,
        recording: &RecordingId,
        reason: String,
    ) -> TransferError {
        use crate::genesys::models::FileState;
        match genesys
            .recording_metadata_one(conversation, recording)
            .await
            .map(|m| m.file_state)
        {
            Ok(Some(s)) if s.is_pending() => TransferError::NotReady {
                reason: format!("fileState {s:?}: {reason}"),
                retry_after: Duration::from_secs(30),
                batch_job: None,
            },
            Ok(Some(FileState::Archived)) => TransferError::ArchivedInGenesys,
            Ok(Some(s)) if !s.is_downloadable() => TransferError::Unavailable {
                file_state: Some(s),
            },
            Err(GenesysError::Api { status: 404, .. }) => {
                TransferError::Unavailable { file_state: None }
            }
            _ => TransferError::BatchRefused { reason },
        }
    }

    pub async fn host(&self) -> String {
        self.url.lock().await.0.url.host()
    }

    /// The content type Genesys (not the media host) gave for this media, if any.
    pub async fn declared_content_type(&self) -> Option<String> {
        self.url.lock().await.0.content_type.clone()
    }

    pub async fn duration_ms(&self) -> Option<u64> {
        self.url.lock().await.0.duration_ms
    }

    async fn current(&self) -> (SignedUrl, u64) {
        let guard = self.url.lock().await;
        (guard.0.url.clone(), guard.1)
    }

    /// Replaces the URL unless another task already did since `seen` was read. A fresh URL for
    /// the original codec is a new batch request (the documented way; an old job's URLs stay
    /// expired).
    async fn refresh(&self, seen: u64) -> Result<(), TransferError> {
        let mut guard = self.url.lock().await;
        if guard.1 != seen {
            return Ok(());
        }
        let fresh = Self::locate(
            &self.genesys,
            &self.conversation,
            &self.recording,
            &self.request,
            None,
        )
        .await?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(host = %fresh.url.host(), "media URL expired; located a fresh one");
        *guard = (fresh, seen + 1);
        Ok(())
    }

    async fn get(
        &self,
        url: &SignedUrl,
        range: ByteRange,
    ) -> Result<reqwest::Response, AttemptError> {
        // Deliberately a bare request: no bearer token ever goes to a signed URL.
        let resp = self
            .genesys
            .http()
            .get(url.expose().clone())
            .header(reqwest::header::RANGE, range.header())
            .send()
            .await
            .map_err(|e| transient(crate::genesys::error::describe_reqwest(e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        match status {
            200 | 206 => Ok(resp),
            // S3 presigned URLs answer 403 once expired; 400/401/410 are other hosts' ways of
            // saying the same (the status is not documented for Genesys media hosts).
            400 | 401 | 403 | 410 => Err(AttemptError {
                reason: format!("HTTP {status}: signed URL rejected (expired?)"),
                expired: true,
                transient: true,
                retry_after: None,
            }),
            408 | 429 | 500 | 502 | 503 | 504 => Err(AttemptError {
                reason: format!("HTTP {status}"),
                expired: false,
                transient: true,
                retry_after,
            }),
            _ => Err(AttemptError {
                reason: format!("HTTP {status}"),
                expired: false,
                transient: false,
                retry_after: None,
            }),
        }
    }

    fn content_type(resp: &reqwest::Response) -> String {
        resp.headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// Reads a 206 body for `range`, checking Content-Range, total, type and length.
    async fn read_range(
        resp: reqwest::Response,
        range: ByteRange,
        total: Option<u64>,
        content_type: Option<&str>,
    ) -> Result<(Bytes, u64, String), AttemptError> {
        if resp.status().as_u16() != 206 {
            return Err(transient(format!(
                "expected 206 Partial Content, got {}",
                resp.status().as_u16()
            )));
        }
        let ct = Self::content_type(&resp);
        if let Some(expected) = content_type {
            if ct != expected {
                return Err(transient(format!(
                    "Content-Type changed from {expected:?} to {ct:?}"
                )));
            }
        }
        let cr = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .ok_or_else(|| transient("206 without a valid Content-Range"))?;
        let Some(server_total) = cr.total else {
            return Err(transient("Content-Range has no total size"));
        };
        let expected_range = ByteRange {
            start: range.start,
            end: range.end.min(server_total.saturating_sub(1)),
        };
        if cr.range != expected_range {
            return Err(transient(format!(
                "Content-Range {} does not match the requested {}",
                cr.range, expected_range
            )));
        }
        if let Some(t) = total {
            if t != server_total {
                return Err(transient(format!(
                    "total size changed from {t} to {server_total}"
                )));
            }
        }
        let body = read_exact(resp, expected_range.len()).await?;
        Ok((body, server_total, ct))
    }

    /// The first request: learns whether ranges work, the total size and the content type.
    pub async fn probe(&self, first: ByteRange) -> Result<Probe, TransferError> {
        let attempts = AtomicU32::new(0);
        let run = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let (url, generation) = self.current().await;
            let outcome = async {
                let resp = self.get(&url, first).await?;
                // An error page (a proxy's or storage's answer) is not media: try again rather
                // than judge the recording by it. Any other type is advisory: the bytes decide.
                let ct = Self::content_type(&resp);
                if super::codec::is_error_page_type(&ct) {
                    return Err(transient(format!(
                        "HTTP {}: Content-Type {ct:?} is an error page, not media",
                        resp.status().as_u16()
                    )));
                }
                if resp.status().as_u16() == 200 {
                    let total = resp.content_length().ok_or_else(|| AttemptError {
                        reason: "200 without Content-Length".into(),
                        expired: false,
                        transient: false,
                        retry_after: None,
                    })?;
                    let checksums = SourceChecksums::from_headers(resp.headers(), true);
                    return Ok(Probe::Whole {
                        total,
                        content_type: ct,
                        response: resp,
                        checksums,
                    });
                }
                let headers = resp.headers().clone();
                let (first_bytes, total, content_type) =
                    Self::read_range(resp, first, None, None).await?;
                let whole = first.start == 0 && first_bytes.len() as u64 == total;
                Ok(Probe::Ranged {
                    total,
                    content_type,
                    first: first_bytes,
                    checksums: SourceChecksums::from_headers(&headers, whole),
                })
            }
            .await;
            self.after_attempt(outcome, generation).await
        };
        self.chunk_retry
            .run(self.genesys.deadline(), run)
            .await
            .map_err(|e| e.into_transfer(first, attempts.load(Ordering::Relaxed)))
    }

    /// One verified chunk, retried up to [`CHUNK_RETRIES`] times, refreshing the URL on expiry.
    pub async fn fetch(
        &self,
        range: ByteRange,
        total: u64,
        content_type: &str,
    ) -> Result<Bytes, TransferError> {
        let attempts = AtomicU32::new(0);
        let run = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let (url, generation) = self.current().await;
            let outcome = async {
                let resp = self.get(&url, range).await?;
                Self::read_range(resp, range, Some(total), Some(content_type))
                    .await
                    .map(|(b, _, _)| b)
            }
            .await;
            self.after_attempt(outcome, generation).await
        };
        self.chunk_retry
            .run(self.genesys.deadline(), run)
            .await
            .map_err(|e| e.into_transfer(range, attempts.load(Ordering::Relaxed)))
    }

    /// Counts the retry and refreshes an expired URL before the next attempt.
    async fn after_attempt<T>(
        &self,
        outcome: Result<T, AttemptError>,
        generation: u64,
    ) -> Result<T, ChunkFailure> {
        match outcome {
            Ok(v) => Ok(v),
            Err(e) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                if e.expired {
                    if let Err(refresh) = self.refresh(generation).await {
                        return Err(ChunkFailure::Fatal(refresh));
                    }
                }
                Err(ChunkFailure::Attempt(e))
            }
        }
    }
}

/// An attempt failure, or a failure that ends the transfer at once (e.g. refresh said the
/// recording is gone).
#[derive(Debug)]
enum ChunkFailure {
    Attempt(AttemptError),
    Fatal(TransferError),
}

impl std::fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkFailure::Attempt(a) => a.fmt(f),
            ChunkFailure::Fatal(t) => t.fmt(f),
        }
    }
}

impl Retryable for ChunkFailure {
    fn retry_class(&self) -> RetryClass {
        match self {
            ChunkFailure::Attempt(a) => a.retry_class(),
            ChunkFailure::Fatal(_) => RetryClass::Permanent,
        }
    }
}

impl ChunkFailure {
    /// `attempts`: how many were really made (fewer than the policy allows when the error was
    /// permanent or the deadline left no time for another).
    fn into_transfer(self, range: ByteRange, attempts: u32) -> TransferError {
        match self {
            ChunkFailure::Fatal(t) => t,
            // The server refused the range for a reason retrying cannot fix (e.g. 404).
            ChunkFailure::Attempt(a) if !a.transient => TransferError::MediaRejected {
                range,
                reason: a.reason,
            },
            ChunkFailure::Attempt(a) => TransferError::Chunk {
                range,
                reason: a.reason,
                attempts,
                retry_after: a.retry_after,
            },
        }
    }
}

/// Reads exactly `len` bytes of body into one buffer, failing on a short or long body.
async fn read_exact(resp: reqwest::Response, len: u64) -> Result<Bytes, AttemptError> {
    let mut buf = super::buffers::BufferPool::global().take(len as usize);
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            transient(format!(
                "body failed after {} of {len} bytes: {}",
                buf.len(),
                crate::genesys::error::describe_reqwest(e)
            ))
        })?;
        if buf.len() as u64 + piece.len() as u64 > len {
            return Err(transient(format!(
                "body is longer than the {len} bytes announced"
            )));
        }
        buf.append(&piece);
    }
    if (buf.len() as u64) < len {
        return Err(transient(format!(
            "body truncated: {} of {len} bytes",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}
