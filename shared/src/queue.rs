//! The SQS operations the handlers need beyond what the Lambda event source mapping does:
//! enqueue a transfer job, delay a message's redelivery (visibility timeout), and send a poison
//! message to the dead-letter queue with its reason. Behind a trait so handlers are tested
//! against moto's SQS or a recording fake.
//!
//! Queue URLs come from the environment (the template passes them), never from
//! `sqs:GetQueueUrl`, which the roles do not grant: a delayed redelivery that needed it would
//! silently fall back to the whole visibility timeout.

use std::time::Duration;

use async_trait::async_trait;

use crate::events::TransferMessage;

#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation}: {reason}")]
pub struct QueueError {
    pub operation: &'static str,
    pub reason: String,
    /// SQS refused the caller (HTTP 403): the deployment's fault, not the message's.
    pub denied: bool,
}

impl QueueError {
    /// A failure that is not SQS refusing the caller (configuration, encoding, a refused entry).
    pub fn new(operation: &'static str, reason: impl Into<String>) -> QueueError {
        QueueError {
            operation,
            reason: reason.into(),
            denied: false,
        }
    }
}

#[async_trait]
pub trait Queues: Send + Sync {
    async fn enqueue_transfer(
        &self,
        job: &TransferMessage,
        delay: Duration,
    ) -> Result<(), QueueError>;
    /// Makes the received message visible again only after `delay`.
    async fn delay_redelivery(
        &self,
        source_arn: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
    /// Moves a message that can never succeed to the dead-letter queue, with its reason.
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError>;
}

/// Maps an SQS SDK error to a [`QueueError`] naming the operation (service code and message
/// only, never the request).
fn sdk_error<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::fmt::Debug,
{
    move |e| QueueError {
        denied: e.raw_response().is_some_and(|r| r.status().as_u16() == 403),
        operation,
        reason: crate::config::aws_error_summary(&e),
    }
}

pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    transfer_queue_url: Option<String>,
    dead_letter_queue_url: Option<String>,
    /// The queue this function consumes (`SOURCE_QUEUE_URL`).
    source_queue_url: Option<String>,
}

impl SqsQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
        transfer_queue_url: Option<String>,
        dead_letter_queue_url: Option<String>,
        source_queue_url: Option<String>,
    ) -> SqsQueues {
        SqsQueues {
            client,
            transfer_queue_url,
            dead_letter_queue_url,
            source_queue_url,
        }
    }

    /// The URL of the queue a message came from: the configured source queue when its name
    /// matches the event's `eventSourceARN`, else the URL the ARN names in AWS's own format
    /// (`https://sqs.{region}.amazonaws.com/{account}/{name}`; the queue name in its path is
    /// what SQS reads).
    fn url_for_arn(&self, arn: &str) -> Result<String, QueueError> {
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(region), Some(account), Some(name)) = (parts.get(3), parts.get(4), parts.get(5))
        else {
            return Err(QueueError::new(
                "ChangeMessageVisibility",
                format!("{arn:?} is not an SQS queue ARN"),
            ));
        };
        if let Some(url) = &self.source_queue_url {
            if url.trim_end_matches('/').rsplit('/').next() == Some(*name) {
                return Ok(url.clone());
            }
        }
        Ok(format!(
            "https://sqs.{region}.amazonaws.com/{account}/{name}"
        ))
    }
}

#[async_trait]
impl Queues for SqsQueues {
    async fn enqueue_transfer(
        &self,
        job: &TransferMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let url = self.transfer_queue_url.as_ref().ok_or(QueueError::new(
            "SendMessage",
            "TRANSFER_QUEUE_URL is not configured",
        ))?;
        let body = serde_json::to_string(job)
            .map_err(|e| QueueError::new("SendMessage", e.to_string()))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay.as_secs().min(900) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("SendMessage"))
    }

    async fn delay_redelivery(
        &self,
        source_arn: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let url = self.url_for_arn(source_arn)?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("ChangeMessageVisibility"))
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let url = self.dead_letter_queue_url.as_ref().ok_or(QueueError::new(
            "SendMessage",
            "DEAD_LETTER_QUEUE_URL is not configured",
        ))?;
        let mut reason = reason.to_string();
        crate::text::truncate_at_char_boundary(&mut reason, 250);
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(
                "gc-archive-reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .map_err(|e| QueueError::new("SendMessage", e.to_string()))?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("SendMessage"))
    }
}

/// Where our own producers (the recording sweep, a backfill) put conversations to archive:
/// the ArchiveQueue archive-on-event consumes.
#[async_trait]
pub trait ArchiveQueue: Send + Sync {
    async fn enqueue_conversation(
        &self,
        message: &crate::events::ConversationMessage,
    ) -> Result<(), QueueError>;

    /// Sends `messages` (in SQS batches of [`MAX_BATCH`], [`BATCHES_IN_FLIGHT`] at a time);
    /// one result per message, in order (SQS accepts or refuses each entry of a batch on its
    /// own). By default one send per message.
    async fn enqueue_conversations(
        &self,
        messages: &[crate::events::ConversationMessage],
    ) -> Vec<Result<(), QueueError>> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.enqueue_conversation(m).await);
        }
        out
    }
}

/// Entries of one SQS `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;
/// `SendMessageBatch` requests one `enqueue_conversations` call has open at once: a producer
/// that sends often (event-stream) is not held to one round trip per ten messages.
pub const BATCHES_IN_FLIGHT: usize = 4;

pub struct SqsArchiveQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsArchiveQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsArchiveQueue {
        SqsArchiveQueue {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl ArchiveQueue for SqsArchiveQueue {
    async fn enqueue_conversation(
        &self,
        message: &crate::events::ConversationMessage,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|e| QueueError::new("SendMessage", e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("SendMessage"))
    }

    async fn enqueue_conversations(
        &self,
        messages: &[crate::events::ConversationMessage],
    ) -> Vec<Result<(), QueueError>> {
        let batches: Vec<&[crate::events::ConversationMessage]> =
            messages.chunks(MAX_BATCH).collect();
        let mut out = Vec::with_capacity(messages.len());
        for group in batches.chunks(BATCHES_IN_FLIGHT) {
            let sent = futures::future::join_all(group.iter().map(|b| self.send_batch(b))).await;
            out.extend(sent.into_iter().flatten());
        }
        out
    }
}

impl SqsArchiveQueue {
    /// One `SendMessageBatch` of at most [`MAX_BATCH`] messages.
    async fn send_batch(
        &self,
        messages: &[crate::events::ConversationMessage],
    ) -> Vec<Result<(), QueueError>> {
        let failed = |reason: String, denied: bool| QueueError {
            denied,
            operation: "SendMessageBatch",
            reason,
        };
        if messages.is_empty() {
            return Vec::new();
        }
        if messages.len() > MAX_BATCH {
            let e = format!("{} messages, at most {MAX_BATCH}", messages.len());
            return messages
                .iter()
                .map(|_| Err(failed(e.clone(), false)))
                .collect();
        }
        let mut entries = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let entry = serde_json::to_string(m)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| e.to_string())
                });
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => {
                    return messages
                        .iter()
                        .map(|_| Err(failed(e.clone(), false)))
                        .collect()
                }
            }
        }
        let out = match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = sdk_error("SendMessageBatch")(e);
                return messages
                    .iter()
                    .map(|_| Err(failed(e.reason.clone(), e.denied)))
                    .collect();
            }
        };
        // Every entry SQS does not list as successful counts as refused.
        let accepted: std::collections::HashSet<&str> =
            out.successful().iter().map(|s| s.id()).collect();
        (0..messages.len())
            .map(|i| {
                let id = i.to_string();
                if accepted.contains(id.as_str()) {
                    return Ok(());
                }
                let reason = out
                    .failed()
                    .iter()
                    .find(|f| f.id() == id)
                    .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("refused")))
                    .unwrap_or_else(|| "not in the batch response".into());
                Err(failed(reason, false))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(source: Option<&str>) -> SqsQueues {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("eu-west-1"))
            .build();
        SqsQueues::new(
            aws_sdk_sqs::Client::from_conf(conf),
            None,
            None,
            source.map(str::to_string),
        )
    }

    #[test]
    fn the_source_queue_url_is_used_without_asking_sqs() {
        let q = queues(Some("http://127.0.0.1:5000/123456789012/archive"));
        assert_eq!(
            q.url_for_arn("arn:aws:sqs:eu-west-1:123456789012:archive")
                .unwrap(),
            "http://127.0.0.1:5000/123456789012/archive"
        );
        assert_eq!(
            q.url_for_arn("arn:aws:sqs:eu-west-1:123456789012:other")
                .unwrap(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/other"
        );
        assert!(q.url_for_arn("not-an-arn").is_err());
    }
}
