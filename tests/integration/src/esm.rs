//! A small stand-in for Lambda's SQS event source mapping: receives a batch, hands it to a
//! handler as the same JSON Lambda would (`Records[]` with `receiptHandle`,
//! `attributes.ApproximateReceiveCount`, `eventSourceARN`), and deletes the messages the
//! handler did not report in `batchItemFailures`. Redrive to the DLQ is moto's, after
//! `maxReceiveCount` receives, as in AWS.
//!
//! The real mapping receives and deletes with the *function's* execution role, so pass the
//! function's SQS client (as `LocalStack::drain_as` does) when IAM is enforced: a role missing
//! `sqs:ReceiveMessage`, `sqs:DeleteMessage` or `sqs:GetQueueAttributes` then fails here.

use std::future::Future;

use anyhow::Result;
use aws_sdk_sqs::types::MessageSystemAttributeName;

/// What one [`poll`] saw.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// Messages received (and handed to the handler).
    pub received: usize,
    /// The handler's error, if it failed the whole batch.
    pub handler_error: Option<String>,
}

/// One poll: returns how many messages were received.
pub async fn poll_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    batch_size: i32,
    handler: F,
) -> Result<usize>
where
    F: FnOnce(serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value>>,
{
    Ok(poll(sqs, queue_url, queue_arn, batch_size, handler)
        .await?
        .received)
}

/// One poll, reporting the handler's error too (Lambda would log it and retry the batch).
pub async fn poll<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    batch_size: i32,
    handler: F,
) -> Result<PollOutcome>
where
    F: FnOnce(serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value>>,
{
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .wait_time_seconds(0)
        .send()
        .await?;
    let messages = out.messages();
    if messages.is_empty() {
        return Ok(PollOutcome::default());
    }
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attrs: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), serde_json::Value::String(v.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attrs,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let response = handler(serde_json::json!({ "Records": records })).await;
    let failed: Vec<String> = match &response {
        Ok(v) => v["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        // A handler error fails the whole batch, as in Lambda.
        Err(_) => messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect(),
    };
    for m in messages {
        let id = m.message_id().unwrap_or_default();
        if !failed.iter().any(|f| f == id) {
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
    Ok(PollOutcome {
        received: messages.len(),
        handler_error: response.err().map(|e| format!("{e:#}")),
    })
}

/// Messages visible or in flight in a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<(u64, u64)> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?;
    let get = |name: A| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible) + get(A::ApproximateNumberOfMessagesDelayed),
    ))
}
