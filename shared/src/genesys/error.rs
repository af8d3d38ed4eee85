//! Typed Genesys Cloud errors. Classified as retryable or permanent so callers know whether to
//! retry, delay the SQS message, or send it to the DLQ with a reason. No error ever carries a
//! token, a client secret or a signed URL's query string.

use std::time::Duration;

use crate::retry::{RetryClass, Retryable};

/// The error body the Platform API returns (`ErrorBody` in the SDKs); unknown fields ignored.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub context_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesysError {
    #[error(
        "Genesys Cloud rejected the OAuth client credentials (HTTP {status}): check the client id and secret, that the OAuth client uses the Client Credentials grant, and that the region is right"
    )]
    BadCredentials { status: u16 },

    #[error("Genesys Cloud token request failed with HTTP {status}")]
    TokenEndpoint {
        status: u16,
        retry_after: Option<Duration>,
    },

    #[error("{method} {path}: HTTP {status} {code}: {message} (correlation id {correlation_id})",
        code = .body.code.as_deref().unwrap_or("-"),
        message = .body.message.as_deref().unwrap_or("no message"),
        correlation_id = .correlation_id.as_deref().unwrap_or("-"))]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        body: Box<ErrorBody>,
        correlation_id: Option<String>,
        retry_after: Option<Duration>,
    },

    #[error("{method} {path}: {reason}")]
    Transport {
        method: &'static str,
        path: String,
        reason: String,
        timeout: bool,
    },

    #[error("{method} {path}: response is not the expected JSON: {reason}")]
    Decode {
        method: &'static str,
        path: String,
        reason: String,
    },
}

impl GenesysError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GenesysError::BadCredentials { status }
            | GenesysError::TokenEndpoint { status, .. } => Some(*status),
            GenesysError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            GenesysError::Api { body, .. } => body.code.as_deref(),
            _ => None,
        }
    }

    /// The error with every occurrence of `secret` (a channel id) removed from what the
    /// server said and from the reason, which may quote the request.
    pub(crate) fn without(mut self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let cut = |text: &mut String| *text = text.replace(secret, "…");
        match &mut self {
            GenesysError::Api { body, .. } => {
                if let Some(m) = body.message.as_mut() {
                    cut(m);
                }
            }
            GenesysError::Transport { reason, .. } | GenesysError::Decode { reason, .. } => {
                cut(reason)
            }
            _ => {}
        }
        self
    }

    /// Builds a transport error from reqwest without the URL (a signed URL's query is a secret).
    pub(crate) fn transport(method: &'static str, path: &str, err: reqwest::Error) -> Self {
        let timeout = err.is_timeout();
        let reason = describe_reqwest(err);
        GenesysError::Transport {
            method,
            path: path.to_string(),
            reason,
            timeout,
        }
    }
}

/// A URL-free description of a reqwest error, with the root cause.
pub fn describe_reqwest(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Statuses worth another attempt: rate limiting and gateway/server faults (not 501).
pub fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl Retryable for GenesysError {
    fn retry_class(&self) -> RetryClass {
        match self {
            GenesysError::Api {
                status,
                retry_after,
                ..
            }
            | GenesysError::TokenEndpoint {
                status,
                retry_after,
            } if status_is_transient(*status) => RetryClass::Transient {
                retry_after: *retry_after,
            },
            GenesysError::Transport { .. } => RetryClass::Transient { retry_after: None },
            // Credentials or permissions of the OAuth client: every call fails the same way
            // until the deployment is fixed (a rotated secret, a role without a permission).
            GenesysError::BadCredentials { .. } => RetryClass::Infrastructure,
            GenesysError::TokenEndpoint { .. } => RetryClass::Infrastructure,
            GenesysError::Api {
                status: 401 | 403, ..
            } => RetryClass::Infrastructure,
            _ => RetryClass::Permanent,
        }
    }
}
