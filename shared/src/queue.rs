//! The SQS operations the handlers need beyond what the Lambda event source mapping does:
//! enqueue a transfer job, delay a message's redelivery (visibility timeout), and send a poison
//! message to the dead-letter queue with its reason. Behind a trait so handlers are tested
//! against moto's SQS or a recording fake.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::events::TransferMessage;

#[derive(Debug, thiserror::Error)]
#[error("SQS {operation}: {reason}")]
pub struct QueueError {
    pub operation: &'static str,
    pub reason: String,
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
fn sdk_error<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E, R>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    move |e| QueueError {
        operation,
        reason: crate::config::aws_error_summary(&e),
    }
}

pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    transfer_queue_url: Option<String>,
    dead_letter_queue_url: Option<String>,
    urls: Mutex<HashMap<String, String>>,
}

impl SqsQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
        transfer_queue_url: Option<String>,
        dead_letter_queue_url: Option<String>,
    ) -> SqsQueues {
        SqsQueues {
            client,
            transfer_queue_url,
            dead_letter_queue_url,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// `arn:aws:sqs:{region}:{account}:{name}` → queue URL (cached).
    async fn url_for_arn(&self, arn: &str) -> Result<String, QueueError> {
        if let Some(u) = self.urls.lock().await.get(arn) {
            return Ok(u.clone());
        }
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
            return Err(QueueError {
                operation: "GetQueueUrl",
                reason: format!("{arn:?} is not an SQS queue ARN"),
            });
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(sdk_error("GetQueueUrl"))?;
        let url = out.queue_url().unwrap_or_default().to_string();
        self.urls.lock().await.insert(arn.to_string(), url.clone());
        Ok(url)
    }
}

#[async_trait]
impl Queues for SqsQueues {
    async fn enqueue_transfer(
        &self,
        job: &TransferMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let url = self.transfer_queue_url.as_ref().ok_or(QueueError {
            operation: "SendMessage",
            reason: "TRANSFER_QUEUE_URL is not configured".into(),
        })?;
        let body = serde_json::to_string(job).map_err(|e| QueueError {
            operation: "SendMessage",
            reason: e.to_string(),
        })?;
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
        let url = self.url_for_arn(source_arn).await?;
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
        let url = self.dead_letter_queue_url.as_ref().ok_or(QueueError {
            operation: "SendMessage",
            reason: "DEAD_LETTER_QUEUE_URL is not configured".into(),
        })?;
        let mut reason = reason.to_string();
        reason.truncate(250);
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
                    .map_err(|e| QueueError {
                        operation: "SendMessage",
                        reason: e.to_string(),
                    })?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("SendMessage"))
    }
}
