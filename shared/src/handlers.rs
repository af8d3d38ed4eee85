//! The two Lambda handlers' logic, free of `lambda_runtime` so tests drive it directly with the
//! same JSON Lambda delivers. Each `main.rs` only converts the invocation context into a
//! deadline and calls [`archive_on_event`] or [`chunk_recording`].
//!
//! SQS batches answer with `batchItemFailures` (`ReportBatchItemFailures`): a message that must
//! be retried is reported (optionally after raising its visibility timeout, which is how a
//! retry is delayed without sleeping); a message that can never succeed is moved to the
//! dead-letter queue with its reason and acknowledged; everything else is acknowledged.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use tokio::time::Instant;

use crate::events::{
    parse_genesys_event_value, EventIntent, TransferMessage, TRANSFER_MESSAGE_VERSION,
};
use crate::genesys::models::FileState;
use crate::ids::{ConversationId, RecordingId};
use crate::pipeline::{redelivery_delay, ArchiveReport, ArchiveService};
use crate::queue::Queues;
use crate::retry::Retryable;
use crate::transfer::TransferError;

/// How patient archive-on-event is with recordings that are not ready.
#[derive(Debug, Clone, Copy)]
pub struct EventPolicy {
    /// First redelivery delay; doubles per receive, capped at 15 minutes.
    pub retry_base: Duration,
    /// After this long past the event, recordings still not available are reported, not retried.
    pub pending_horizon: Duration,
    /// Longest inline archive before the rest is handed to chunk-recording.
    pub inline_budget: Duration,
    /// A conversation that still lists no recordings this long after it ended has none
    /// (recording was off): acknowledged, not retried into the DLQ.
    pub empty_horizon: Duration,
}

impl Default for EventPolicy {
    fn default() -> Self {
        EventPolicy {
            retry_base: Duration::from_secs(30),
            pending_horizon: Duration::from_secs(24 * 3600),
            inline_budget: Duration::from_secs(120),
            empty_horizon: Duration::from_secs(15 * 60),
        }
    }
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
}

impl HandlerError {
    /// The Lambda `errorType`: names the class, so logs and metrics group by it.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Payload(_) => "gc-archive.InvalidPayload",
            HandlerError::RetryLater(_) => "gc-archive.RetryLater",
            HandlerError::Permanent(_) => "gc-archive.Permanent",
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
}

/// Counts per batch, logged once per invocation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConversationTally {
    pub archived: u32,
    pub already: u32,
    pub unavailable: u32,
    pub handed_off: u32,
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
) -> SqsBatchResponse
where
    F: FnMut(String, u32) -> Fut,
    Fut: std::future::Future<Output = Disposition>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.clone().unwrap_or_default();
        let disposition = process(body.clone(), receive_count(&record)).await;
        let failed = match disposition {
            Disposition::Done => false,
            Disposition::Retry { delay, reason } => {
                tracing::info!(message_id = %id, %reason, "message will be retried");
                if let (Some(delay), Some(arn), Some(handle)) =
                    (delay, &record.event_source_arn, &record.receipt_handle)
                {
                    if let Err(e) = deps.queues.delay_redelivery(arn, handle, delay).await {
                        tracing::warn!(error = %e, "could not delay redelivery");
                    }
                }
                true
            }
            Disposition::Poison { reason } => {
                tracing::error!(message_id = %id, %reason, "poison message: moving to the dead-letter queue");
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
    response
}

fn is_sqs_batch(payload: &serde_json::Value) -> bool {
    payload.get("Records").is_some_and(|r| r.is_array())
}

/// archive-on-event: SQS batches of EventBridge events, or one EventBridge event directly.
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
                Ok(value) => {
                    archive_event_disposition(deps, value, count, deadline, request_id).await
                }
                Err(e) => Disposition::Poison {
                    reason: format!("event is not JSON: {e}"),
                },
            }
        })
        .await;
        return serde_json::to_value(response).map_err(|e| HandlerError::Payload(e.to_string()));
    }
    match archive_event_disposition(deps, payload, 1, deadline, request_id).await {
        Disposition::Done => Ok(serde_json::json!({"status": "done"})),
        Disposition::Retry { reason, .. } => Err(HandlerError::RetryLater(reason)),
        Disposition::Poison { reason } => Err(HandlerError::Permanent(reason)),
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
        Err(e) => Disposition::Poison {
            reason: e.to_string(),
        },
    }
}

/// Archives every available recording of a conversation that ended `age` ago. Returns the
/// tally and, when some recordings must be waited for (or a write-back must be retried), the
/// reason to retry.
pub async fn process_conversation(
    deps: &HandlerDeps,
    conversation: &ConversationId,
    age: Duration,
    deadline: Instant,
    request_id: &str,
) -> Result<(ConversationTally, Option<String>), TransferError> {
    let svc = &deps.service;
    let past_horizon = age > deps.policy.pending_horizon;
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
    let mut facts = None;
    let mut retry_reason = None;
    for meta in metadata {
        let recording = match RecordingId::parse(&meta.id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a recording with an invalid id");
                continue;
            }
        };
        let state = meta.file_state.unwrap_or(FileState::Other);
        if state.is_pending() {
            if past_horizon {
                report_unavailable(svc, conversation, &recording, Some(state), request_id).await;
                tally.unavailable += 1;
            } else {
                retry_reason = Some(format!("recording {recording} is {state:?}"));
            }
            continue;
        }
        if !state.is_downloadable() {
            report_unavailable(svc, conversation, &recording, Some(state), request_id).await;
            tally.unavailable += 1;
            continue;
        }
        if facts.is_none() {
            facts = Some(svc.conversation_facts(conversation, Some(deadline)).await?);
        }
        let Some(f) = facts.clone() else { continue };
        if svc.is_archived(conversation, &recording, f.start).await? {
            tally.already += 1;
            continue;
        }
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let budget = deps
            .policy
            .inline_budget
            .min(remaining.saturating_sub(Duration::from_secs(5)));
        let job = TransferMessage {
            version: TRANSFER_MESSAGE_VERSION,
            org_id: svc.org.clone(),
            conversation_id: conversation.clone(),
            recording_id: recording.clone(),
            conversation_start: Some(f.start),
            attempt: 1,
        };
        if budget < svc.settings.suspend_margin + Duration::from_secs(5) {
            hand_off(deps, &job).await?;
            tally.handed_off += 1;
            continue;
        }
        match svc
            .archive(
                conversation,
                &recording,
                Some(f.clone()),
                Some(now + budget),
                request_id,
            )
            .await
        {
            Ok(ArchiveReport::Archived {
                write_back_error, ..
            }) => {
                tally.archived += 1;
                if let Some(e) = write_back_error {
                    retry_reason = Some(format!("write-back failed: {e}"));
                }
            }
            Ok(ArchiveReport::AlreadyArchived {
                write_back_error, ..
            }) => {
                tally.already += 1;
                if let Some(e) = write_back_error {
                    retry_reason = Some(format!("write-back failed: {e}"));
                }
            }
            Ok(ArchiveReport::Suspended { .. }) | Err(TransferError::Busy { .. }) => {
                hand_off(deps, &job).await?;
                tally.handed_off += 1;
            }
            Err(TransferError::NotReady { reason, .. }) => {
                if past_horizon {
                    report_unavailable(svc, conversation, &recording, None, request_id).await;
                    tally.unavailable += 1;
                } else {
                    retry_reason = Some(reason);
                }
            }
            Err(e) if e.is_transient() => return Err(e),
            // Permanent: already audited and notified by the pipeline; other recordings go on.
            Err(_) => tally.unavailable += 1,
        }
    }
    tracing::info!(%conversation, ?tally, "conversation processed");
    Ok((tally, retry_reason))
}

async fn hand_off(deps: &HandlerDeps, job: &TransferMessage) -> Result<(), TransferError> {
    deps.queues
        .enqueue_transfer(job, Duration::ZERO)
        .await
        .map_err(|e| TransferError::Internal(e.to_string()))
}

async fn report_unavailable(
    svc: &ArchiveService,
    conversation: &ConversationId,
    recording: &RecordingId,
    file_state: Option<FileState>,
    worker_id: &str,
) {
    svc.record_failure(
        conversation,
        recording,
        &TransferError::Unavailable { file_state },
        Instant::now(),
        worker_id,
    )
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
        return match transfer_disposition(deps, &body, deadline, request_id).await {
            Disposition::Done => Ok(serde_json::json!({"status": "done"})),
            Disposition::Retry { reason, .. } => Err(HandlerError::RetryLater(reason)),
            Disposition::Poison { reason } => Err(HandlerError::Permanent(reason)),
        };
    }
    let event: SqsEvent =
        serde_json::from_value(payload).map_err(|e| HandlerError::Payload(e.to_string()))?;
    let response = settle_batch(deps, event, |body, _| async move {
        transfer_disposition(deps, &body, deadline, request_id).await
    })
    .await;
    serde_json::to_value(response).map_err(|e| HandlerError::Payload(e.to_string()))
}

/// Decides one transfer job.
pub async fn transfer_disposition(
    deps: &HandlerDeps,
    body: &str,
    deadline: Instant,
    request_id: &str,
) -> Disposition {
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
            None,
            Some(deadline),
            request_id,
        )
        .await;
    match result {
        Ok(ArchiveReport::Archived {
            write_back_error: Some(e),
            ..
        })
        | Ok(ArchiveReport::AlreadyArchived {
            write_back_error: Some(e),
            ..
        }) => Disposition::Retry {
            delay: Some(deps.policy.retry_base),
            reason: format!("write-back failed: {e}"),
        },
        Ok(ArchiveReport::Archived { .. }) | Ok(ArchiveReport::AlreadyArchived { .. }) => {
            Disposition::Done
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
                    delay: None,
                    reason: e.to_string(),
                },
            }
        }
        Err(TransferError::NotReady {
            retry_after,
            reason,
        }) => Disposition::Retry {
            delay: Some(retry_after),
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
        Err(e) if e.is_transient() => Disposition::Retry {
            delay: None,
            reason: e.to_string(),
        },
        Err(e) => Disposition::Poison {
            reason: format!("{}: {e}", e.reason_code()),
        },
    }
}
