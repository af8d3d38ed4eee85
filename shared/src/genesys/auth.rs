//! OAuth client-credentials tokens, exactly as Genesys Cloud issues them: HTTP Basic
//! `client_id:client_secret` to `https://login.{domain}/oauth/token` with the form body
//! `grant_type=client_credentials`. There is no refresh token for this grant; a new token is
//! requested shortly before `expires_in` runs out.
//!
//! One token is shared by every task of the process (and so across warm Lambda invocations).
//! Refresh is single-flight: the cache lock is held while the token request is in flight, so
//! ten concurrent callers with an expired token cause one request, and the other nine get its
//! result.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::error::{status_is_transient, GenesysError};
use crate::config::GenesysCredentials;
use crate::retry::{parse_retry_after, RetryPolicy};

/// A bearer token. `Debug` never shows it.
pub struct AccessToken {
    value: SecretString,
    expires_at: Instant,
    /// Distinguishes tokens without comparing secrets.
    serial: u64,
}

impl AccessToken {
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"***")
            .field("serial", &self.serial)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Issues and caches tokens for one OAuth client.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    credentials: GenesysCredentials,
    cached: Mutex<Option<Arc<AccessToken>>>,
    requests: AtomicU64,
    retry: RetryPolicy,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.credentials.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        login_base: &Url,
        credentials: GenesysCredentials,
        retry: RetryPolicy,
    ) -> TokenProvider {
        let mut token_url = login_base.clone();
        token_url.set_path("/oauth/token");
        token_url.set_query(None);
        TokenProvider {
            http,
            token_url,
            credentials,
            cached: Mutex::new(None),
            requests: AtomicU64::new(0),
            retry,
        }
    }

    /// How many token requests this provider has made (metrics and tests).
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A token valid for a while longer, from the cache or freshly issued.
    pub async fn token(&self, deadline: Option<Instant>) -> Result<Arc<AccessToken>, GenesysError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.expires_at {
                return Ok(token.clone());
            }
        }
        let fresh = Arc::new(self.request_token(deadline).await?);
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `stale` after the API rejected it with 401. A token issued meanwhile by another
    /// task is kept, so a burst of 401s causes one refresh, not one each.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| t.serial == stale.serial) {
            *cached = None;
        }
    }

    async fn request_token(&self, deadline: Option<Instant>) -> Result<AccessToken, GenesysError> {
        self.retry
            .run(deadline, || async {
                let serial = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
                let resp = self
                    .http
                    .post(self.token_url.clone())
                    .basic_auth(
                        &self.credentials.client_id,
                        Some(self.credentials.client_secret.expose_secret()),
                    )
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .map_err(|e| GenesysError::transport("POST", "/oauth/token", e))?;
                let status = resp.status().as_u16();
                if matches!(status, 400 | 401 | 403) {
                    return Err(GenesysError::BadCredentials { status });
                }
                if !resp.status().is_success() {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    return Err(GenesysError::TokenEndpoint {
                        status,
                        retry_after: if status_is_transient(status) {
                            retry_after
                        } else {
                            None
                        },
                    });
                }
                // A body cut short is a transport failure (retried), not a bad answer.
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| GenesysError::transport("POST", "/oauth/token", e))?;
                let body: TokenResponse =
                    serde_json::from_slice(&bytes).map_err(|_| GenesysError::Decode {
                        method: "POST",
                        path: "/oauth/token".into(),
                        // serde's message can quote input; the token must not leak into an error.
                        reason: "token response is not {access_token, expires_in} JSON".into(),
                    })?;
                let lifetime = Duration::from_secs(body.expires_in.unwrap_or(300));
                Ok(AccessToken {
                    value: SecretString::from(body.access_token),
                    expires_at: Instant::now() + lifetime.saturating_sub(refresh_margin(lifetime)),
                    serial,
                })
            })
            .await
    }
}

/// Refresh a little before expiry: 10 % of the lifetime, at most a minute.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_ten_percent_capped_at_a_minute() {
        assert_eq!(
            refresh_margin(Duration::from_secs(86400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = AccessToken {
            value: SecretString::from("eyJhbGciOi.secret".to_string()),
            expires_at: Instant::now(),
            serial: 3,
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
