//! The recording's signed media URL and verified reads from it.
//!
//! The URL comes from `GET /api/v2/conversations/{cid}/recordings/{rid}`; it is a bearer
//! credential in itself, so it lives in [`SignedUrl`] (whose `Debug` shows the host only) and
//! requests to it carry no `Authorization` header. When it expires mid-transfer (403) a fresh
//! one is requested once per expiry, shared by all concurrent chunk fetches.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::range::{parse_content_range, ByteRange};
use super::TransferError;
use crate::genesys::client::MediaStatus;
use crate::genesys::GenesysClient;
use crate::ids::{ConversationId, RecordingId};
use crate::retry::{RetryClass, RetryPolicy, Retryable};

/// A signed URL. `Debug`/`Display` never show its path or query.
#[derive(Clone)]
pub struct SignedUrl(url::Url);

impl SignedUrl {
    pub fn host(&self) -> String {
        self.0.host_str().unwrap_or("unknown").to_string()
    }
}

impl std::fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedUrl({}/***)", self.host())
    }
}

/// What the first request revealed about the server.
pub enum Probe {
    /// 206: ranges work. `first` is the requested range's verified bytes.
    Ranged {
        total: u64,
        content_type: String,
        first: Bytes,
    },
    /// 200: the server ignored `Range`; the whole body follows in `response`.
    Whole {
        total: u64,
        content_type: String,
        response: reqwest::Response,
    },
}

/// A failure of one attempt at one chunk.
#[derive(Debug)]
struct AttemptError {
    reason: String,
    expired: bool,
    transient: bool,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Retryable for AttemptError {
    fn retry_class(&self) -> RetryClass {
        if self.transient {
            RetryClass::Transient { retry_after: None }
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
    }
}

pub struct MediaSource {
    genesys: GenesysClient,
    conversation: ConversationId,
    recording: RecordingId,
    format_id: String,
    url: Mutex<(SignedUrl, u64)>,
    chunk_retry: RetryPolicy,
    /// `outputDurationMs` as Genesys reported it with the media.
    pub duration_ms: Option<u64>,
    pub retries: AtomicU32,
    pub refreshes: AtomicU32,
}

/// How often one chunk is retried before the transfer fails with its range and reason.
pub const CHUNK_RETRIES: usize = 3;

impl MediaSource {
    /// Asks Genesys for the media. Not ready → [`TransferError::NotReady`]; no media →
    /// [`TransferError::Unavailable`].
    pub async fn open(
        genesys: GenesysClient,
        conversation: ConversationId,
        recording: RecordingId,
        format_id: &str,
    ) -> Result<Arc<MediaSource>, TransferError> {
        let (url, duration_ms) =
            Self::fetch_url(&genesys, &conversation, &recording, format_id).await?;
        Ok(Arc::new(MediaSource {
            duration_ms,
            chunk_retry: genesys
                .retry_policy()
                .with_max_retries(CHUNK_RETRIES)
                .with_base_delay(Duration::from_millis(100)),
            genesys,
            conversation,
            recording,
            format_id: format_id.to_string(),
            url: Mutex::new((url, 0)),
            retries: AtomicU32::new(0),
            refreshes: AtomicU32::new(0),
        }))
    }

    async fn fetch_url(
        genesys: &GenesysClient,
        conversation: &ConversationId,
        recording: &RecordingId,
        format_id: &str,
    ) -> Result<(SignedUrl, Option<u64>), TransferError> {
        let status = match genesys
            .recording_media(conversation, recording, format_id)
            .await
        {
            Ok(status) => status,
            // The recording GET answers 404 for a recording that is gone (deleted, or never
            // existed): no amount of retrying will produce media.
            Err(crate::genesys::GenesysError::Api { status: 404, .. }) => {
                return Err(TransferError::Unavailable { file_state: None })
            }
            Err(e) => return Err(e.into()),
        };
        match status {
            MediaStatus::Ready(rec) => {
                let raw = rec.first_media_uri().unwrap_or_default();
                url::Url::parse(raw)
                    .map(|u| (SignedUrl(u), rec.output_duration_ms.filter(|d| *d > 0)))
                    .map_err(|e| TransferError::Internal(format!("media URL is not a URL: {e}")))
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
            }),
            MediaStatus::Unavailable { file_state } => {
                Err(TransferError::Unavailable { file_state })
            }
        }
    }

    pub async fn host(&self) -> String {
        self.url.lock().await.0.host()
    }

    async fn current(&self) -> (SignedUrl, u64) {
        self.url.lock().await.clone()
    }

    /// Replaces the URL unless another task already did since `seen` was read.
    async fn refresh(&self, seen: u64) -> Result<(), TransferError> {
        let mut guard = self.url.lock().await;
        if guard.1 != seen {
            return Ok(());
        }
        let (fresh, _) = Self::fetch_url(
            &self.genesys,
            &self.conversation,
            &self.recording,
            &self.format_id,
        )
        .await?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(host = %fresh.host(), "media URL expired; fetched a fresh one");
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
            .get(url.0.clone())
            .header(reqwest::header::RANGE, range.header())
            .send()
            .await
            .map_err(|e| transient(crate::genesys::error::describe_reqwest(e)))?;
        let status = resp.status().as_u16();
        match status {
            200 | 206 => Ok(resp),
            // S3 presigned URLs answer 403 once expired; 401/400 also mean "re-sign".
            400 | 401 | 403 => Err(AttemptError {
                reason: format!("HTTP {status}: signed URL rejected (expired?)"),
                expired: true,
                transient: true,
            }),
            408 | 429 | 500 | 502 | 503 | 504 => Err(transient(format!("HTTP {status}"))),
            _ => Err(AttemptError {
                reason: format!("HTTP {status}"),
                expired: false,
                transient: false,
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
                // The first response decides the content type every later chunk is held to and
                // that the codec check trusts: an error page or a proxy's answer is not media,
                // so try again rather than fail the recording as a codec mismatch.
                let ct = Self::content_type(&resp);
                if super::codec::declared_container(&ct).is_none() {
                    return Err(transient(format!(
                        "HTTP {}: Content-Type {ct:?} is not an audio type",
                        resp.status().as_u16()
                    )));
                }
                if resp.status().as_u16() == 200 {
                    let total = resp.content_length().ok_or_else(|| AttemptError {
                        reason: "200 without Content-Length".into(),
                        expired: false,
                        transient: false,
                    })?;
                    let content_type = Self::content_type(&resp);
                    return Ok(Probe::Whole {
                        total,
                        content_type,
                        response: resp,
                    });
                }
                let (first, total, content_type) =
                    Self::read_range(resp, first, None, None).await?;
                Ok(Probe::Ranged {
                    total,
                    content_type,
                    first,
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
            // The server refused the range for a reason retrying cannot fix (e.g. 404, 410).
            ChunkFailure::Attempt(a) if !a.transient => TransferError::MediaRejected {
                range,
                reason: a.reason,
            },
            ChunkFailure::Attempt(a) => TransferError::Chunk {
                range,
                reason: a.reason,
                attempts,
            },
        }
    }
}

/// Reads exactly `len` bytes of body into one buffer, failing on a short or long body.
async fn read_exact(resp: reqwest::Response, len: u64) -> Result<Bytes, AttemptError> {
    let mut buf = BytesMut::with_capacity(len as usize);
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
        buf.extend_from_slice(&piece);
    }
    if (buf.len() as u64) < len {
        return Err(transient(format!(
            "body truncated: {} of {len} bytes",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}
