//! The Genesys Cloud HTTP client: one reqwest client (rustls) with connect and request
//! timeouts, bearer auth from [`TokenProvider`] with exactly one refresh-and-retry on 401,
//! every idempotent call through the shared [`RetryPolicy`], `Retry-After` honoured, and the
//! `inin-ratelimit-*` headers of the last response exposed for throttling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use url::Url;

use super::auth::TokenProvider;
use super::error::{ErrorBody, GenesysError};
use super::models::*;
use crate::config::{GenesysConfig, GenesysCredentials};
use crate::ids::{ConversationId, RecordingId};
use crate::retry::{parse_retry_after, RetryClass, RetryPolicy, Retryable};

/// The org's rate-limit state as of the last response (`inin-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    pub count: u64,
    pub allowed: u64,
    pub reset: Duration,
}

/// Which media a recording GET asks for (genesys-api.md §3.1: `formatId` for audio and
/// screen, `chatFormatId` / `messageFormatId` / `emailFormatId` for the other kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaQuery<'a> {
    /// A transcoded audio rendition (`WAV`, `OGG_OPUS`, …).
    Audio(&'a str),
    Screen,
    /// `chatFormatId=ZIP`
    Chat,
    /// `messageFormatId=ZIP`
    Messaging,
    /// `emailFormatId=EML`
    Email,
}

impl MediaQuery<'_> {
    fn params(&self) -> Vec<(&str, &str)> {
        let mut p = match self {
            MediaQuery::Audio(f) => vec![("formatId", *f)],
            MediaQuery::Screen => vec![("formatId", "WEBM")],
            MediaQuery::Chat => vec![("chatFormatId", "ZIP")],
            MediaQuery::Messaging => vec![("messageFormatId", "ZIP")],
            MediaQuery::Email => vec![("emailFormatId", "EML")],
        };
        p.push(("download", "false"));
        p
    }
}

/// Whether a recording's media can be downloaded now.
#[derive(Debug, Clone)]
pub enum MediaStatus {
    /// `mediaUris` are present.
    Ready(Box<Recording>),
    /// HTTP 202, or no media yet: transcoding or still uploading. Come back later.
    Pending {
        file_state: Option<FileState>,
        estimated: Option<Duration>,
    },
    /// Genesys has no playable media (deleted, archived in Genesys, error).
    Unavailable { file_state: Option<FileState> },
}

struct Inner {
    http: reqwest::Client,
    api_base: Url,
    auth: TokenProvider,
    retry: RetryPolicy,
    rate: Mutex<Option<RateLimitInfo>>,
    throttle: super::throttle::Throttle,
}

/// A cheap-to-clone Genesys Cloud API client.
#[derive(Clone)]
pub struct GenesysClient {
    inner: Arc<Inner>,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenesysClient")
            .field("api_base", &self.inner.api_base.as_str())
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// Why one attempt of [`GenesysClient::call`] failed. Token errors come out of the
/// [`TokenProvider`], which already retried them with its own policy: retrying them again here
/// would multiply token requests (5 × 5 during a login outage), so they end the call.
enum Attempt {
    Token(GenesysError),
    Request(GenesysError),
}

impl Attempt {
    fn into_error(self) -> GenesysError {
        match self {
            Attempt::Token(e) | Attempt::Request(e) => e,
        }
    }
}

impl From<GenesysError> for Attempt {
    fn from(e: GenesysError) -> Self {
        Attempt::Request(e)
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Token(e) | Attempt::Request(e) => e.fmt(f),
        }
    }
}

impl Retryable for Attempt {
    fn retry_class(&self) -> RetryClass {
        match self {
            Attempt::Token(_) => RetryClass::Permanent,
            Attempt::Request(e) => e.retry_class(),
        }
    }
}

const USER_AGENT: &str = concat!("gc-archive/", env!("CARGO_PKG_VERSION"));

/// The HTTP client every outbound call uses: rustls, timeouts on connect and between body
/// bytes (a stalled media stream fails instead of hanging until the Lambda dies).
pub fn http_client(request_timeout: Duration) -> Result<reqwest::Client, GenesysError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .build()
        .map_err(|e| GenesysError::transport("INIT", "http client", e))
}

impl GenesysClient {
    pub fn new(
        config: &GenesysConfig,
        credentials: GenesysCredentials,
    ) -> Result<GenesysClient, GenesysError> {
        let http = http_client(config.request_timeout)?;
        Ok(Self::with_http(
            http,
            &config.endpoints.api_base,
            &config.endpoints.login_base,
            credentials,
            RetryPolicy::default(),
        ))
    }

    pub fn with_http(
        http: reqwest::Client,
        api_base: &Url,
        login_base: &Url,
        credentials: GenesysCredentials,
        retry: RetryPolicy,
    ) -> GenesysClient {
        let auth = TokenProvider::new(http.clone(), login_base, credentials, retry);
        GenesysClient {
            inner: Arc::new(Inner {
                http,
                api_base: api_base.clone(),
                auth,
                retry,
                rate: Mutex::new(None),
                throttle: super::throttle::Throttle::new(),
            }),
            deadline: None,
        }
    }

    /// The same client, with every retry wait capped by `deadline` (the Lambda deadline).
    pub fn with_deadline(&self, deadline: Instant) -> GenesysClient {
        GenesysClient {
            inner: self.inner.clone(),
            deadline: Some(deadline),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The underlying HTTP client, for signed media URLs (which must never get the token).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn auth(&self) -> &TokenProvider {
        &self.inner.auth
    }

    pub fn rate_limit(&self) -> Option<RateLimitInfo> {
        *self.inner.rate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.inner.api_base.as_str().trim_end_matches('/'),
            path
        )
    }

    fn record_rate_limit(&self, headers: &reqwest::header::HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(count), Some(allowed), Some(reset)) = (
            num("inin-ratelimit-count"),
            num("inin-ratelimit-allowed"),
            num("inin-ratelimit-reset"),
        ) {
            *self.inner.rate.lock().unwrap_or_else(|p| p.into_inner()) = Some(RateLimitInfo {
                count,
                allowed,
                reset: Duration::from_secs(reset),
            });
            self.inner
                .throttle
                .observe(count, allowed, Duration::from_secs(reset));
        }
    }

    /// One request with auth; on 401 the token is refreshed once and the request sent once more.
    async fn send_once(
        &self,
        method: &Method,
        method_name: &'static str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, bytes::Bytes), Attempt> {
        // A channel id in a path is a capability (see `ChannelId`): errors and logs show it cut.
        let path_shown = super::notifications::shown_path(path);
        let mut refreshed = false;
        loop {
            let token = self
                .inner
                .auth
                .token(self.deadline)
                .await
                .map_err(Attempt::Token)?;
            self.inner.throttle.acquire(self.deadline).await;
            let mut req = self
                .inner
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| GenesysError::transport(method_name, &path_shown, e))?;
            self.record_rate_limit(resp.headers());
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::info!(path = %path_shown, "token rejected (401); refreshing once");
                self.inner.auth.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| GenesysError::transport(method_name, &path_shown, e))?;
            if status.is_success() {
                return Ok((status, bytes));
            }
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let correlation_id = headers
                .get("inin-correlation-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Box<ErrorBody> = Box::new(serde_json::from_slice(&bytes).unwrap_or_default());
            return Err(Attempt::Request(GenesysError::Api {
                method: method_name,
                path: path_shown.to_string(),
                status: status.as_u16(),
                body,
                correlation_id,
                retry_after,
            }));
        }
    }

    /// A request through the retry policy when `idempotent`, else a single attempt.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
        idempotent: bool,
    ) -> Result<(StatusCode, bytes::Bytes), GenesysError> {
        let method_name: &'static str = match method {
            Method::GET => "GET",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            _ => "REQUEST",
        };
        let policy = if idempotent {
            self.inner.retry
        } else {
            RetryPolicy::none()
        };
        policy
            .run(self.deadline, || {
                self.send_once(&method, method_name, path, query, body.as_ref())
            })
            .await
            .map_err(Attempt::into_error)
    }

    /// The reason never quotes the offending value: a Recording body holds signed URLs.
    pub(super) fn decode<T: DeserializeOwned>(
        method: &'static str,
        path: &str,
        bytes: &[u8],
    ) -> Result<T, GenesysError> {
        serde_json::from_slice(bytes).map_err(|e| GenesysError::Decode {
            method,
            path: super::notifications::shown_path(path).to_string(),
            reason: crate::text::redact_quoted(&e.to_string()),
        })
    }

    pub(super) fn json_body<T: Serialize>(value: &T) -> Option<serde_json::Value> {
        serde_json::to_value(value).ok()
    }

    /// GET `/api/v2/conversations/{id}/recordingmetadata`.
    pub async fn recording_metadata(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<RecordingMetadata>, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/recordingmetadata");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// GET `/api/v2/conversations/{id}/recordingmetadata/{recordingId}`.
    pub async fn recording_metadata_one(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
    ) -> Result<RecordingMetadata, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/recordingmetadata/{recording}");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// GET `/api/v2/conversations/{id}/recordings/{recordingId}` for the media `query` names.
    /// 202 (transcoding) and missing `mediaUris` become [`MediaStatus::Pending`].
    pub async fn recording_media(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        query: MediaQuery<'_>,
    ) -> Result<MediaStatus, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/recordings/{recording}");
        let (status, bytes) = self
            .call(Method::GET, &path, &query.params(), None, true)
            .await?;
        // A 202 may come with an empty body.
        let rec: Option<Recording> = if bytes.is_empty() {
            None
        } else {
            Some(Self::decode("GET", &path, &bytes)?)
        };
        let file_state = rec.as_ref().and_then(|r| r.file_state);
        let estimated = rec
            .as_ref()
            .and_then(|r| r.estimated_transcode_time_ms)
            .map(Duration::from_millis);
        if status == StatusCode::ACCEPTED {
            return Ok(MediaStatus::Pending {
                file_state,
                estimated,
            });
        }
        match rec {
            Some(r) if !r.media().is_empty() => Ok(MediaStatus::Ready(Box::new(r))),
            _ if file_state.is_some_and(|s| !s.is_downloadable() && !s.is_pending()) => {
                Ok(MediaStatus::Unavailable { file_state })
            }
            _ => Ok(MediaStatus::Pending {
                file_state,
                estimated,
            }),
        }
    }

    /// GET `/api/v2/conversations/{id}`.
    pub async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Conversation, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// PUT `/api/v2/conversations/{id}/customattributes` (create or replace).
    pub async fn put_custom_attributes(
        &self,
        conversation: &ConversationId,
        update: &CustomAttributesUpdate,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/customattributes");
        self.call(Method::PUT, &path, &[], Self::json_body(update), true)
            .await
            .map(|_| ())
    }

    /// PATCH `/api/v2/conversations/{id}/customattributes` (merge). Not idempotent under a
    /// version check, so it is attempted once; callers re-read and retry on 409.
    pub async fn patch_custom_attributes(
        &self,
        conversation: &ConversationId,
        patch: &CustomAttributesPatch,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/customattributes");
        self.call(Method::PATCH, &path, &[], Self::json_body(patch), false)
            .await
            .map(|_| ())
    }

    /// GET `/api/v2/conversations/{id}/customattributes`.
    pub async fn custom_attributes(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<CustomAttributes>, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/customattributes");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        // The SDK's `CustomAttributesListing` is `{results}`; the live shape is not confirmed, so
        // an `entities` page or a bare array is read the same way.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Results { results: Vec<CustomAttributes> },
            Entities { entities: Vec<CustomAttributes> },
            Bare(Vec<CustomAttributes>),
        }
        Ok(match Self::decode::<Shape>("GET", &path, &bytes)? {
            Shape::Results { results } => results,
            Shape::Entities { entities } => entities,
            Shape::Bare(list) => list,
        })
    }

    /// POST `/api/v2/recording/batchrequests` (≤ 100 items): original-codec media of the named
    /// recordings. A repeated submission only makes another job, so transient failures retry.
    pub async fn submit_batch_download(
        &self,
        items: Vec<BatchDownloadRequest>,
    ) -> Result<BatchDownloadJobSubmissionResult, GenesysError> {
        let path = "/api/v2/recording/batchrequests";
        let body = BatchDownloadJobSubmission {
            batch_download_request_list: items,
        };
        let (_, bytes) = self
            .call(Method::POST, path, &[], Self::json_body(&body), true)
            .await?;
        Self::decode("POST", path, &bytes)
    }

    /// GET `/api/v2/recording/batchrequests/{jobId}` (only the submitter may read it).
    pub async fn batch_download_status(
        &self,
        job_id: &str,
    ) -> Result<BatchDownloadJobStatusResult, GenesysError> {
        if !job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(GenesysError::Decode {
                method: "GET",
                path: "/api/v2/recording/batchrequests/{jobId}".into(),
                reason: "job id is not an id".into(),
            });
        }
        let path = format!("/api/v2/recording/batchrequests/{job_id}");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// PUT `/api/v2/conversations/{id}/tags` with `{"externalTag": …}`.
    pub async fn put_external_tag(
        &self,
        conversation: &ConversationId,
        tag: &str,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/conversations/{conversation}/tags");
        let body = ConversationTagsUpdate {
            external_tag: tag.to_string(),
        };
        self.call(Method::PUT, &path, &[], Self::json_body(&body), true)
            .await
            .map(|_| ())
    }

    /// POST `/api/v2/analytics/conversations/details/jobs`. Retried: a duplicate job is only
    /// a wasted one (nothing reads it).
    pub async fn submit_conversation_details_job(
        &self,
        query: &AsyncConversationQuery,
    ) -> Result<AsyncQueryResponse, GenesysError> {
        let path = "/api/v2/analytics/conversations/details/jobs";
        let (_, bytes) = self
            .call(Method::POST, path, &[], Self::json_body(query), true)
            .await?;
        Self::decode("POST", path, &bytes)
    }

    /// GET `/api/v2/organizations/limits/namespaces/{namespaceName}`: the org's limits in
    /// one namespace (`platform.api`, `analytics`, `recording`, ...).
    pub async fn organization_limits(
        &self,
        namespace: &str,
    ) -> Result<Vec<super::models::Limit>, GenesysError> {
        let path = format!("/api/v2/organizations/limits/namespaces/{namespace}");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        let listing: super::models::LimitsEntityListing = Self::decode("GET", &path, &bytes)?;
        Ok(listing.entities)
    }

    /// Seeds the request pacing with the OAuth client's per-token limit from the org limits
    /// (`platform.api`, `client.credentials.token.rate.per.minute`), so the first requests of a
    /// process, sent before any response has told the window, keep to it. Returns the limit
    /// found. Without it (no such limit listed, or no permission to read limits) the pacing
    /// starts from the first response's `inin-ratelimit-*` headers, as always.
    pub async fn prime_rate_limit(&self) -> Option<u64> {
        const KEY: &str = "client.credentials.token.rate.per.minute";
        match self.organization_limits("platform.api").await {
            Ok(limits) => {
                let per_minute = limits
                    .iter()
                    .find(|l| l.key.as_deref() == Some(KEY))
                    .and_then(|l| l.value)
                    .and_then(|v| u64::try_from(v).ok())
                    .filter(|v| *v > 0)?;
                self.inner
                    .throttle
                    .seed(per_minute, Duration::from_secs(60));
                Some(per_minute)
            }
            Err(e) => {
                tracing::warn!(error = %e, "org limits not readable; pacing by the rate-limit headers only");
                None
            }
        }
    }

    /// GET `/api/v2/analytics/conversations/details/jobs/{jobId}`.
    pub async fn conversation_details_job(
        &self,
        job_id: &str,
    ) -> Result<AsyncQueryStatus, GenesysError> {
        let path = format!("/api/v2/analytics/conversations/details/jobs/{job_id}");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// GET `/api/v2/analytics/conversations/details/jobs/{jobId}/results` (`cursor`,
    /// `pageSize`).
    pub async fn conversation_details_job_results(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        page_size: u32,
    ) -> Result<AsyncConversationResults, GenesysError> {
        let path = format!("/api/v2/analytics/conversations/details/jobs/{job_id}/results");
        let size = page_size.to_string();
        let mut query = vec![("pageSize", size.as_str())];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let (_, bytes) = self.call(Method::GET, &path, &query, None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// POST `/api/v2/analytics/conversations/details/query`. A read, so safe to retry.
    pub async fn conversation_details_query(
        &self,
        query: &ConversationDetailsQuery,
    ) -> Result<ConversationDetailsResponse, GenesysError> {
        let path = "/api/v2/analytics/conversations/details/query";
        let (_, bytes) = self
            .call(Method::POST, path, &[], Self::json_body(query), true)
            .await?;
        Self::decode("POST", path, &bytes)
    }
}
