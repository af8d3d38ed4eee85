//! The two Lambda handlers' logic, free of `lambda_runtime` so tests drive it directly with the
//! same JSON Lambda delivers. Each `main.rs` only converts the invocation context into a
//! deadline and calls [`archive_on_event`] or [`chunk_recording`].
//!
//! SQS batches answer with `batchItemFailures` (`ReportBatchItemFailures`): a message that must
//! be retried is reported (after raising its visibility timeout, which is how a retry is delayed
//! without sleeping); a message that can never succeed is moved to the dead-letter queue with its
//! reason and acknowledged; everything else is acknowledged. On the last receive the queue allows
//! (`MAX_RECEIVE_COUNT`), a message that would be retried is dead-lettered by the handler itself,
//! so every DLQ message says why it is there.
//!
//! Each recording of a conversation has its own outcome: one failing never stops or delays the
//! others. A recording that fails transiently is handed to the TransferQueue as its own job (its
//! own retries, its own DLQ entry); one that fails for good is dead-lettered as a transfer job
//! with its reason, which archive-on-event accepts again after a redrive.

pub mod event_stream;
pub mod recording_sweep;
pub mod storage_router;
pub mod upload_proxy;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use tokio::time::Instant;

use crate::config::RecordingMedia;
use crate::events::{
    parse_genesys_event_value, EventIntent, TransferMessage, TRANSFER_MESSAGE_VERSION,
};
use crate::genesys::models::{FileState, RecordingMetadata};
use crate::ids::{ConversationId, RecordingId};
use crate::pipeline::{
    redelivery_delay, ArchiveReport, ArchiveService, ConversationFacts, WriteBackOutcome,
};
use crate::queue::Queues;
use crate::retry::Retryable;
use crate::transfer::TransferError;

/// How patient the handlers are, and what the queues allow.
#[derive(Debug, Clone, Copy)]
pub struct EventPolicy {
    /// First redelivery delay; doubles per receive, capped at [`MAX_REDELIVERY_DELAY`].
    pub retry_base: Duration,
    /// After this long past the event, recordings still not available are reported, not retried.
    pub pending_horizon: Duration,
    /// Longest inline archive before the rest is handed to chunk-recording.
    pub inline_budget: Duration,
    /// A conversation that still lists no recordings this long after it ended has none
    /// (recording was off): acknowledged, not retried into the DLQ.
    pub empty_horizon: Duration,
    /// The source queue's `maxReceiveCount` (0: unknown). On that receive a message that would
    /// be retried is dead-lettered by the handler with its reason.
    pub max_receives: u32,
    /// Whether a TransferQueue is configured to hand recordings to (the CLI has none).
    pub can_hand_off: bool,
}

/// The longest delay one redelivery waits (also the cap of [`redelivery_delay`]).
pub const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(900);

impl Default for EventPolicy {
    fn default() -> Self {
        EventPolicy {
            retry_base: Duration::from_secs(30),
            pending_horizon: Duration::from_secs(24 * 3600),
            inline_budget: Duration::from_secs(120),
            empty_horizon: Duration::from_secs(15 * 60),
            max_receives: 0,
            can_hand_off: true,
        }
    }
}

/// Receives a message needs so that redeliveries delayed by [`redelivery_delay`] (from `base`,
/// doubling, capped) cover `horizon`, plus the final receive that reports. The template's
/// `ArchiveMaxReceiveCount` default is derived from this (a test checks it).
pub fn receives_to_cover(horizon: Duration, base: Duration) -> u32 {
    let mut waited = Duration::ZERO;
    let mut receives = 1;
    while waited < horizon {
        waited += redelivery_delay(base, receives);
        receives += 1;
    }
    receives + 1
}

pub struct HandlerDeps {
    pub service: ArchiveService,
    pub queues: Arc<dyn Queues>,
    pub policy: EventPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("payload is neither an SQS batch nor an EventBridge event: {0}")]
    Payload(String),
    #[error("retry later: {0}")]
    RetryLater(String),
    #[error("{0}")]
    Permanent(String),
    /// Credentials, access or a missing resource: the whole invocation fails so that nothing
    /// is acknowledged or discarded, and Lambda's error alarm fires.
    #[error("infrastructure: {0}")]
    Infrastructure(String),
}

impl HandlerError {
    /// The handler error of a library error, by its disposition.
    pub fn of(e: &(impl crate::retry::Retryable + std::fmt::Display)) -> HandlerError {
        if e.is_infrastructure() {
            HandlerError::Infrastructure(e.to_string())
        } else if e.is_transient() {
            HandlerError::RetryLater(e.to_string())
        } else {
            HandlerError::Permanent(e.to_string())
        }
    }
}

/// An `{"action": …}` request of a scheduled function: a scheduled-event envelope or `{}` is
/// `scheduled`; anything else must parse, or it is refused listing `expected`.
pub fn action_request<T: serde::de::DeserializeOwned>(
    payload: serde_json::Value,
    scheduled: T,
    expected: &str,
) -> Result<T, HandlerError> {
    let from_schedule = payload
        .get("detail-type")
        .and_then(serde_json::Value::as_str)
        == Some("Scheduled Event");
    if from_schedule || payload.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(scheduled);
    }
    serde_json::from_value(payload)
        .map_err(|e| HandlerError::Payload(format!("{e}; expected {expected}")))
}

impl HandlerError {
    /// The Lambda `errorType`: names the class, so logs and metrics group by it.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Payload(_) => "gc-archive.InvalidPayload",
            HandlerError::RetryLater(_) => "gc-archive.RetryLater",
            HandlerError::Permanent(_) => "gc-archive.Permanent",
            HandlerError::Infrastructure(_) => "gc-archive.Infrastructure",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Done,
    Retry {
        delay: Option<Duration>,
        reason: String,
    },
    Poison {
        reason: String,
    },
    Infrastructure {
        reason: String,
    },
}

/// Counts per conversation, logged once per conversation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConversationTally {
    pub archived: u32,
    pub already: u32,
    /// Deleted, in error, or still not available after the pending horizon: reported.
    pub unavailable: u32,
    /// In Genesys Cloud's own archive (fileState ARCHIVED): reported with how to restore.
    pub archived_in_genesys: u32,
    pub handed_off: u32,
    /// Kinds not selected by `ARCHIVE_MEDIA` (or unknown): acknowledged, counted.
    pub skipped_media: u32,
    /// Failed for good: reported and dead-lettered with the reason.
    pub failed: u32,
    /// Waiting for Genesys (uploading, transcoding, batch job running).
    pub pending: u32,
}

fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

async fn settle_batch<F, Fut>(
    deps: &HandlerDeps,
    event: SqsEvent,
    mut process: F,
) -> Result<SqsBatchResponse, HandlerError>
where
    F: FnMut(String, u32) -> Fut,
    Fut: std::future::Future<Output = Disposition>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.clone().unwrap_or_default();
        let receives = receive_count(&record);
        let mut disposition = process(body.clone(), receives).await;
        if let Disposition::Retry { reason, .. } = &disposition {
            if deps.policy.max_receives > 0 && receives >= deps.policy.max_receives {
                disposition = Disposition::Poison {
                    reason: format!("gave up after {receives} receives: {reason}"),
                };
            }
        }
        let failed = match disposition {
            Disposition::Infrastructure { reason } => {
                // Stop here: the rest of the batch would fail the same way. Failing the
                // invocation leaves every message of it in the queue, untouched.
                tracing::error!(message_id = %id, %reason, "infrastructure failure: failing the invocation");
                return Err(HandlerError::Infrastructure(reason));
            }
            Disposition::Done => false,
            Disposition::Retry { delay, reason } => {
                let delay =
                    delay.unwrap_or_else(|| redelivery_delay(deps.policy.retry_base, receives));
                tracing::info!(message_id = %id, %reason, delay_secs = delay.as_secs(), "message will be retried");
                if let (Some(arn), Some(handle)) =
                    (&record.event_source_arn, &record.receipt_handle)
                {
                    if let Err(e) = deps.queues.delay_redelivery(arn, handle, delay).await {
                        tracing::error!(error = %e, "could not delay redelivery: the message comes back after the queue's whole visibility timeout");
                    }
                }
                true
            }
            Disposition::Poison { reason } => {
                tracing::error!(message_id = %id, %reason, "moving the message to the dead-letter queue");
                // If the DLQ send fails, report failure so SQS's own redrive gets it there.
                deps.queues.dead_letter(&body, &reason).await.is_err()
            }
        };
        if failed {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            response.batch_item_failures.push(f);
        }
    }
    Ok(response)
}

fn is_sqs_batch(payload: &serde_json::Value) -> bool {
    payload.get("Records").is_some_and(|r| r.is_array())
}

/// A transfer job rather than an EventBridge event (a dead-lettered recording redriven to the
/// archive queue).
fn is_transfer_message(value: &serde_json::Value) -> bool {
    value.get("recordingId").is_some() && value.get("detail").is_none()
}

/// archive-on-event: SQS batches of EventBridge events (or redriven transfer jobs), or one
/// EventBridge event directly.
pub async fn archive_on_event(
    deps: &HandlerDeps,
    payload: serde_json::Value,
    deadline: Instant,
    request_id: &str,
) -> Result<serde_json::Value, HandlerError> {
    if is_sqs_batch(&payload) {
        let event: SqsEvent =
            serde_json::from_value(payload).map_err(|e| HandlerError::Payload(e.to_string()))?;
        let response = settle_batch(deps, event, |body, count| async move {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(value) if is_transfer_message(&value) => {
                    transfer_disposition(deps, &body, count, deadline, request_id).await
                }
                Ok(value) => {
                    archive_event_disposition(deps, value, count, deadline, request_id).await
                }
                Err(e) => Disposition::Poison {
                    reason: format!("event is not JSON: {e}"),
                },
            }
        })
        .await?;
        return serde_json::to_value(response).map_err(|e| HandlerError::Payload(e.to_string()));
    }
    direct_result(archive_event_disposition(deps, payload, 1, deadline, request_id).await)
}

/// The answer to a direct (non-SQS) invocation.
fn direct_result(d: Disposition) -> Result<serde_json::Value, HandlerError> {
    match d {
        Disposition::Done => Ok(serde_json::json!({"status": "done"})),
        Disposition::Retry { reason, .. } => Err(HandlerError::RetryLater(reason)),
        Disposition::Poison { reason } => Err(HandlerError::Permanent(reason)),
        Disposition::Infrastructure { reason } => Err(HandlerError::Infrastructure(reason)),
    }
}

/// Decides one EventBridge event.
pub async fn archive_event_disposition(
    deps: &HandlerDeps,
    event: serde_json::Value,
    receive_count: u32,
    deadline: Instant,
    request_id: &str,
) -> Disposition {
    let intent = match parse_genesys_event_value(event) {
        Ok(i) => i,
        Err(e) => {
            return Disposition::Poison {
                reason: e.to_string(),
            }
        }
    };
    let (org, conversation, event_time) = match intent {
        EventIntent::Ignored { topic } => {
            crate::metrics::emit(
                &[
                    ("Function", &deps.service.function),
                    ("Outcome", "ignored_topic"),
                ],
                &[crate::metrics::Metric::count("IgnoredEvents", 1.0)],
            );
            tracing::info!(%topic, "topic not archived; acknowledged");
            return Disposition::Done;
        }
        EventIntent::Conversation {
            org,
            conversation,
            event_time,
            ..
        } => (org, conversation, event_time),
    };
    if let Some(org) = org {
        if org != deps.service.org {
            return Disposition::Poison {
                reason: format!(
                    "event is for org {org}, this deployment archives org {}",
                    deps.service.org
                ),
            };
        }
    }
    let age = event_time
        .and_then(|t| Utc::now().signed_duration_since(t).to_std().ok())
        .unwrap_or_default();
    match process_conversation(deps, &conversation, age, deadline, request_id).await {
        Ok((_, None)) => Disposition::Done,
        Ok((_, Some(reason))) => Disposition::Retry {
            delay: Some(redelivery_delay(deps.policy.retry_base, receive_count)),
            reason,
        },
        Err(e) if e.is_transient() => Disposition::Retry {
            delay: None,
            reason: e.to_string(),
        },
        Err(e) if e.is_infrastructure() => Disposition::Infrastructure {
            reason: e.to_string(),
        },
        Err(e) => Disposition::Poison {
            reason: e.to_string(),
        },
    }
}

/// What happened to one recording of a conversation.
enum RecordingOutcome {
    Archived(u32),
    Already,
    Unavailable,
    ArchivedInGenesys,
    HandedOff,
    Skipped,
    Failed,
    /// Wait for Genesys: the conversation message is retried for it.
    Pending(String),
}

/// Archives every available recording of a conversation that ended `age` ago, each on its own,
/// then writes the archive reference back once. Returns the tally and, when something must be
/// waited for (or the write-back retried), the reason to retry the conversation's message.
pub async fn process_conversation(
    deps: &HandlerDeps,
    conversation: &ConversationId,
    age: Duration,
    deadline: Instant,
    request_id: &str,
) -> Result<(ConversationTally, Option<String>), TransferError> {
    let svc = &deps.service;
    let client = svc.genesys.with_deadline(deadline);
    let metadata = client.recording_metadata(conversation).await?;
    let mut tally = ConversationTally::default();
    if metadata.is_empty() {
        if age > deps.policy.empty_horizon {
            tracing::info!(%conversation, "no recordings appeared before the horizon");
            return Ok((tally, None));
        }
        return Ok((tally, Some("conversation has no recordings yet".into())));
    }
    let mut facts: Option<ConversationFacts> = None;
    let mut retry_reason = None;
    for meta in &metadata {
        let outcome = process_recording(
            deps,
            conversation,
            meta,
            age,
            &mut facts,
            deadline,
            request_id,
        )
        .await?;
        match outcome {
            RecordingOutcome::Archived(n) => tally.archived += n,
            RecordingOutcome::Already => tally.already += 1,
            RecordingOutcome::Unavailable => tally.unavailable += 1,
            RecordingOutcome::ArchivedInGenesys => tally.archived_in_genesys += 1,
            RecordingOutcome::HandedOff => tally.handed_off += 1,
            RecordingOutcome::Skipped => tally.skipped_media += 1,
            RecordingOutcome::Failed => tally.failed += 1,
            RecordingOutcome::Pending(reason) => {
                tally.pending += 1;
                retry_reason = Some(reason);
            }
        }
    }
    if tally.archived + tally.already > 0 {
        if let Some(f) = &facts {
            match svc.write_back_conversation(conversation, f.start).await {
                Ok(WriteBackOutcome::ForeignTagKept { .. }) => {
                    report_foreign_tag(svc, conversation, request_id).await
                }
                Ok(_) => {}
                Err(e) => retry_reason = Some(e.to_string()),
            }
        }
    }
    tracing::info!(%conversation, ?tally, "conversation processed");
    Ok((tally, retry_reason))
}

/// One recording: never returns an error for something that concerns only this recording; the
/// `Err` case is reserved for what stops the whole conversation (its facts cannot be read).
#[allow(clippy::too_many_arguments)]
async fn process_recording(
    deps: &HandlerDeps,
    conversation: &ConversationId,
    meta: &RecordingMetadata,
    age: Duration,
    facts: &mut Option<ConversationFacts>,
    deadline: Instant,
    request_id: &str,
) -> Result<RecordingOutcome, TransferError> {
    let svc = &deps.service;
    let recording = match RecordingId::parse(&meta.id) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "skipping a recording with an invalid id");
            return Ok(RecordingOutcome::Skipped);
        }
    };
    let Some(media) = RecordingMedia::from_api(meta.media.as_deref()) else {
        tracing::info!(%recording, media = ?meta.media, "recording of an unknown kind; acknowledged");
        count_skipped(svc, "unknown");
        return Ok(RecordingOutcome::Skipped);
    };
    if !svc.media.contains(&media) {
        tracing::info!(%recording, %media, "recording kind not selected by ARCHIVE_MEDIA; acknowledged");
        count_skipped(svc, media.as_str());
        return Ok(RecordingOutcome::Skipped);
    }
    let state = meta.file_state.unwrap_or(FileState::Other);
    if state.is_pending() {
        if age > deps.policy.pending_horizon {
            report(
                svc,
                conversation,
                &recording,
                TransferError::Unavailable {
                    file_state: Some(state),
                },
                request_id,
            )
            .await;
            return Ok(RecordingOutcome::Unavailable);
        }
        return Ok(RecordingOutcome::Pending(format!(
            "recording {recording} is {state:?}"
        )));
    }
    if state == FileState::Archived {
        report(
            svc,
            conversation,
            &recording,
            TransferError::ArchivedInGenesys,
            request_id,
        )
        .await;
        return Ok(RecordingOutcome::ArchivedInGenesys);
    }
    if !state.is_downloadable() {
        report(
            svc,
            conversation,
            &recording,
            TransferError::Unavailable {
                file_state: Some(state),
            },
            request_id,
        )
        .await;
        return Ok(RecordingOutcome::Unavailable);
    }
    let f = match facts {
        Some(f) => f.clone(),
        None => {
            let got = svc.conversation_facts(conversation, Some(deadline)).await?;
            *facts = Some(got.clone());
            got
        }
    };
    match svc
        .archived_manifest(conversation, &recording, f.start)
        .await
    {
        Ok(Some((store, manifest_key))) => {
            // A delivery after a crash between the manifest and the result event sends it.
            svc.ensure_published(store.as_ref(), &manifest_key).await;
            return Ok(RecordingOutcome::Already);
        }
        Ok(None) => {}
        Err(e) if e.is_infrastructure() => return Err(e),
        Err(e) => return Ok(hand_off_or_wait(deps, conversation, &recording, media, &f, e).await),
    }
    let now = Instant::now();
    let remaining = deadline.saturating_duration_since(now);
    let budget = deps
        .policy
        .inline_budget
        .min(remaining.saturating_sub(Duration::from_secs(5)));
    if budget < svc.settings.suspend_margin + Duration::from_secs(5) {
        return Ok(hand_off_or_wait(
            deps,
            conversation,
            &recording,
            media,
            &f,
            TransferError::Busy { until: Utc::now() },
        )
        .await);
    }
    let result = svc
        .archive(
            conversation,
            &recording,
            media,
            crate::pipeline::Known {
                facts: Some(f.clone()),
                route: None,
            },
            Some(now + budget),
            request_id,
        )
        .await;
    Ok(match result {
        Ok(ArchiveReport::Archived { manifests }) => {
            RecordingOutcome::Archived(manifests.len() as u32)
        }
        Ok(ArchiveReport::AlreadyArchived { .. }) => RecordingOutcome::Already,
        Ok(ArchiveReport::Suspended { .. }) => {
            hand_off_or_wait(
                deps,
                conversation,
                &recording,
                media,
                &f,
                TransferError::Busy { until: Utc::now() },
            )
            .await
        }
        Err(TransferError::NotReady { reason, .. }) => {
            if age > deps.policy.pending_horizon {
                report(
                    svc,
                    conversation,
                    &recording,
                    TransferError::Unavailable { file_state: None },
                    request_id,
                )
                .await;
                RecordingOutcome::Unavailable
            } else {
                RecordingOutcome::Pending(reason)
            }
        }
        Err(e) if e.is_infrastructure() => return Err(e),
        Err(e) if e.is_transient() => {
            hand_off_or_wait(deps, conversation, &recording, media, &f, e).await
        }
        // Permanent: the pipeline audited and notified it; the job goes to the DLQ with its
        // reason, so a redrive (after the cause is fixed) archives it.
        Err(e) => {
            let route = svc
                .recorded_route(conversation, &recording)
                .await
                .ok()
                .flatten();
            let job = transfer_job(svc, conversation, &recording, media, &f, route);
            let body = serde_json::to_string(&job).unwrap_or_default();
            if let Err(dl) = deps
                .queues
                .dead_letter(&body, &format!("{}: {e}", e.reason_code()))
                .await
            {
                tracing::error!(error = %dl, "could not dead-letter the failed recording; it stays reported in the audit records");
            }
            RecordingOutcome::Failed
        }
    })
}

fn transfer_job(
    svc: &ArchiveService,
    conversation: &ConversationId,
    recording: &RecordingId,
    media: RecordingMedia,
    facts: &ConversationFacts,
    route: Option<crate::routing::RecordedRoute>,
) -> TransferMessage {
    TransferMessage {
        route,
        version: TRANSFER_MESSAGE_VERSION,
        org_id: svc.org.clone(),
        conversation_id: conversation.clone(),
        recording_id: recording.clone(),
        conversation_start: Some(facts.start),
        media,
        attempt: 1,
    }
}

/// Gives the recording its own TransferQueue job (busy elsewhere, too large or slow for inline,
/// or failed transiently: retried on its own); without a TransferQueue, or when the hand-off
/// fails, the conversation message waits for it instead.
async fn hand_off_or_wait(
    deps: &HandlerDeps,
    conversation: &ConversationId,
    recording: &RecordingId,
    media: RecordingMedia,
    facts: &ConversationFacts,
    why: TransferError,
) -> RecordingOutcome {
    if !deps.policy.can_hand_off {
        return RecordingOutcome::Pending(format!("recording {recording}: {why}"));
    }
    // The route decided for it (if any) travels with the job; the worker would find the same
    // in the route record, this saves it the read.
    let route = deps
        .service
        .recorded_route(conversation, recording)
        .await
        .ok()
        .flatten();
    let job = transfer_job(&deps.service, conversation, recording, media, facts, route);
    let delay = match &why {
        TransferError::Busy { .. } => Duration::ZERO,
        e => match e.retry_class() {
            crate::retry::RetryClass::Transient {
                retry_after: Some(d),
            } => d.min(MAX_REDELIVERY_DELAY),
            _ => deps.policy.retry_base,
        },
    };
    match deps.queues.enqueue_transfer(&job, delay).await {
        Ok(()) => {
            tracing::info!(%recording, reason = %why, "handed to chunk-recording");
            RecordingOutcome::HandedOff
        }
        Err(e) => RecordingOutcome::Pending(format!("recording {recording}: hand-off failed: {e}")),
    }
}

fn count_skipped(svc: &ArchiveService, media: &str) {
    crate::metrics::emit(
        &[
            ("Function", &svc.function),
            ("Outcome", "skipped_media"),
            ("Media", media),
        ],
        &[crate::metrics::Metric::count("SkippedRecordings", 1.0)],
    );
}

async fn report(
    svc: &ArchiveService,
    conversation: &ConversationId,
    recording: &RecordingId,
    error: TransferError,
    worker_id: &str,
) {
    svc.record_failure(conversation, recording, &error, Instant::now(), worker_id)
        .await;
}

async fn report_foreign_tag(svc: &ArchiveService, conversation: &ConversationId, worker_id: &str) {
    svc.audit_conversation(conversation, "write_back_skipped", "the conversation's externalTag holds another integration's value; left as it is (set ARCHIVE_EXTERNAL_TAG=overwrite to replace it, or use custom-attributes write-back)", worker_id)
        .await;
}

/// chunk-recording: SQS batches of [`TransferMessage`]s (one recording each).
pub async fn chunk_recording(
    deps: &HandlerDeps,
    payload: serde_json::Value,
    deadline: Instant,
    request_id: &str,
) -> Result<serde_json::Value, HandlerError> {
    if !is_sqs_batch(&payload) {
        // A bare job (CLI, `cargo lambda invoke`).
        let body = payload.to_string();
        return direct_result(transfer_disposition(deps, &body, 1, deadline, request_id).await);
    }
    let event: SqsEvent =
        serde_json::from_value(payload).map_err(|e| HandlerError::Payload(e.to_string()))?;
    let response = settle_batch(deps, event, |body, count| async move {
        transfer_disposition(deps, &body, count, deadline, request_id).await
    })
    .await?;
    serde_json::to_value(response).map_err(|e| HandlerError::Payload(e.to_string()))
}

/// Decides one transfer job, received `receive_count` times.
pub async fn transfer_disposition(
    deps: &HandlerDeps,
    body: &str,
    receive_count: u32,
    deadline: Instant,
    request_id: &str,
) -> Disposition {
    let backoff = redelivery_delay(deps.policy.retry_base, receive_count);
    let job = match TransferMessage::parse(body) {
        Ok(j) => j,
        Err(e) => {
            return Disposition::Poison {
                reason: e.to_string(),
            }
        }
    };
    if job.org_id != deps.service.org {
        return Disposition::Poison {
            reason: format!("job is for org {}, not {}", job.org_id, deps.service.org),
        };
    }
    let result = deps
        .service
        .archive(
            &job.conversation_id,
            &job.recording_id,
            job.media,
            crate::pipeline::Known {
                facts: None,
                route: job.route.clone(),
            },
            Some(deadline),
            request_id,
        )
        .await;
    let start = match &result {
        Ok(ArchiveReport::Archived { manifests }) => {
            manifests.first().map(|m| m.conversation_start)
        }
        Ok(ArchiveReport::AlreadyArchived { .. }) => job.conversation_start,
        _ => None,
    };
    match result {
        Ok(ArchiveReport::Archived { .. }) | Ok(ArchiveReport::AlreadyArchived { .. }) => {
            let Some(start) = start.or(job.conversation_start) else {
                return Disposition::Done;
            };
            match deps
                .service
                .write_back_conversation(&job.conversation_id, start)
                .await
            {
                Ok(WriteBackOutcome::ForeignTagKept { .. }) => {
                    report_foreign_tag(&deps.service, &job.conversation_id, request_id).await;
                    Disposition::Done
                }
                Ok(_) => Disposition::Done,
                Err(e) => Disposition::Retry {
                    delay: Some(deps.policy.retry_base),
                    reason: e.to_string(),
                },
            }
        }
        Ok(ArchiveReport::Suspended {
            parts_done,
            parts_total,
        }) => {
            let next = TransferMessage {
                attempt: job.attempt + 1,
                ..job
            };
            match deps.queues.enqueue_transfer(&next, Duration::ZERO).await {
                Ok(()) => {
                    tracing::info!(
                        parts_done,
                        parts_total,
                        "checkpointed; re-queued to continue"
                    );
                    Disposition::Done
                }
                // The checkpoint is saved; plain redelivery resumes it just as well.
                Err(e) => Disposition::Retry {
                    delay: Some(Duration::ZERO),
                    reason: e.to_string(),
                },
            }
        }
        Err(TransferError::NotReady {
            retry_after,
            reason,
            ..
        }) => Disposition::Retry {
            delay: Some(retry_after.max(backoff).min(MAX_REDELIVERY_DELAY)),
            reason,
        },
        Err(TransferError::Busy { until }) => Disposition::Retry {
            delay: Some(
                (until - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .max(Duration::from_secs(1)),
            ),
            reason: "another worker owns the transfer".into(),
        },
        Err(e) if e.is_infrastructure() => Disposition::Infrastructure {
            reason: format!("{}: {e}", e.reason_code()),
        },
        Err(e) if e.is_transient() => Disposition::Retry {
            delay: match e.retry_class() {
                crate::retry::RetryClass::Transient {
                    retry_after: Some(d),
                } => Some(d.max(backoff).min(MAX_REDELIVERY_DELAY)),
                _ => Some(backoff),
            },
            reason: e.to_string(),
        },
        Err(e) => Disposition::Poison {
            reason: format!("{}: {e}", e.reason_code()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template's default must be the derived one: 24 h of pending horizon, 30 s base.
    #[test]
    fn the_templates_archive_receive_limit_is_the_derived_one() {
        let template = include_str!("../../../template.yaml");
        let default = template
            .split("ArchiveMaxReceiveCount:")
            .nth(1)
            .and_then(|rest| rest.split("Default:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
            .expect("ArchiveMaxReceiveCount has a numeric Default");
        assert_eq!(
            default,
            receives_to_cover(Duration::from_secs(86_400), Duration::from_secs(30))
        );
    }

    #[test]
    fn the_receive_limit_covers_the_pending_horizon() {
        let n = receives_to_cover(Duration::from_secs(86_400), Duration::from_secs(30));
        let mut waited = Duration::ZERO;
        for r in 1..n - 1 {
            waited += redelivery_delay(Duration::from_secs(30), r);
        }
        assert!(
            waited >= Duration::from_secs(86_400),
            "{n} receives wait only {waited:?}"
        );
        assert!(n < 200, "{n}");
    }
}
