//! Archive results out: a signed webhook (Standard Webhooks convention: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`)
//! and/or EventBridge `PutEvents` with `RecordingArchived` / `RecordingArchiveFailed`.
//! Notification failures are reported, never fatal to an archive that already succeeded.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::retry::{RetryClass, RetryPolicy, Retryable};

pub const EVENT_SOURCE: &str = "gc-archive";
pub const DETAIL_ARCHIVED: &str = "RecordingArchived";
pub const DETAIL_FAILED: &str = "RecordingArchiveFailed";

/// The payload of both the webhook and the EventBridge detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveResult {
    /// Stable per result: a redelivered result has the same id (the webhook's `webhook-id`),
    /// so receivers deduplicate. For an archive, derived from its manifest.
    #[serde(default)]
    pub id: String,
    /// RecordingArchived | RecordingArchiveFailed
    #[serde(rename = "type")]
    pub kind: String,
    pub org_id: String,
    pub conversation_id: String,
    pub recording_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook {host}: {reason}")]
    Webhook {
        host: String,
        reason: String,
        transient: bool,
    },
    #[error("EventBridge PutEvents: {0}")]
    EventBridge(String),
}

impl Retryable for NotifyError {
    fn retry_class(&self) -> RetryClass {
        match self {
            NotifyError::Webhook {
                transient: true, ..
            } => RetryClass::Transient { retry_after: None },
            _ => RetryClass::Permanent,
        }
    }
}

/// A webhook endpoint and its signing secret.
pub struct Webhook {
    pub url: url::Url,
    pub secret: SecretString,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("secret", &"***")
            .finish()
    }
}

/// The Standard Webhooks signature header value for `body`.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> String {
    let raw = secret.expose_secret();
    // Standard Webhooks secrets are `whsec_<base64>`; anything else is used as raw bytes.
    let key = raw
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| raw.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Where results go. Either part may be absent.
#[derive(Debug, Default)]
pub struct Notifier {
    pub http: Option<reqwest::Client>,
    pub webhook: Option<Webhook>,
    pub eventbridge: Option<(aws_sdk_eventbridge::Client, String)>,
}

impl Notifier {
    /// No webhook and no event bus: nothing is ever published.
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.eventbridge.is_none()
    }

    pub async fn publish(&self, result: &ArchiveResult) -> Vec<NotifyError> {
        let mut errors = Vec::new();
        if let (Some(http), Some(hook)) = (&self.http, &self.webhook) {
            if let Err(e) = send_webhook(http, hook, result).await {
                errors.push(e);
            }
        }
        if let Some((client, bus)) = &self.eventbridge {
            if let Err(e) = put_event(client, bus, result).await {
                errors.push(e);
            }
        }
        errors
    }
}

async fn send_webhook(
    http: &reqwest::Client,
    hook: &Webhook,
    result: &ArchiveResult,
) -> Result<(), NotifyError> {
    let body = serde_json::to_vec(result).unwrap_or_default();
    // The id is stable per result so a receiver can deduplicate our retries and re-sends.
    let id = if result.id.is_empty() {
        format!(
            "msg_{}_{}_{}",
            result.recording_id,
            result.kind,
            result.at.timestamp_millis()
        )
    } else {
        format!("msg_{}", result.id)
    };
    let host = hook.url.host_str().unwrap_or("webhook").to_string();
    RetryPolicy::default()
        .run(None, || async {
            let ts = chrono::Utc::now().timestamp();
            let resp = http
                .post(hook.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sign(&hook.secret, &id, ts, &body))
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await
                .map_err(|e| NotifyError::Webhook {
                    host: host.clone(),
                    reason: crate::genesys::error::describe_reqwest(e),
                    transient: true,
                })?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(NotifyError::Webhook {
                    host: host.clone(),
                    reason: format!("HTTP {status}"),
                    transient: crate::genesys::error::status_is_transient(status),
                })
            }
        })
        .await
}

async fn put_event(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    result: &ArchiveResult,
) -> Result<(), NotifyError> {
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(EVENT_SOURCE)
        .detail_type(&result.kind)
        .detail(serde_json::to_string(result).unwrap_or_default())
        .build();
    let out = client
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| NotifyError::EventBridge(crate::config::aws_error_summary(&e)))?;
    if out.failed_entry_count() > 0 {
        return Err(NotifyError::EventBridge(format!(
            "{} entry failed",
            out.failed_entry_count()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_follows_standard_webhooks() {
        // Test vector from the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string());
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn webhook_debug_hides_the_secret() {
        let w = Webhook {
            url: url::Url::parse("https://hooks.example.com/x?token=abc").unwrap(),
            secret: SecretString::from("whsec_topsecret".to_string()),
        };
        let d = format!("{w:?}");
        assert!(!d.contains("topsecret") && !d.contains("token=abc"), "{d}");
    }
}
