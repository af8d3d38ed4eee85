//! The one retry policy for every outbound call: exponential backoff with full jitter,
//! `Retry-After` honoured, and every wait capped by the caller's deadline (the Lambda deadline).
//!
//! Backoff arithmetic and the retry loop come from `backon`; this module only decides *whether*
//! an error is worth another attempt ([`Retryable`]) and *how long* to wait given a server hint
//! and a deadline. It does not decide which requests are idempotent: callers only wrap requests
//! that are safe to repeat.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use rand::Rng;
use tokio::time::Instant;

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Retrying cannot help (bad input, 4xx other than 429, verification failures).
    Permanent,
    /// A transient fault; `retry_after` is the server's hint when it gave one.
    Transient { retry_after: Option<Duration> },
    /// The deployment is broken for every recording (credentials, access denied, a missing
    /// key or bucket): not retried here, nothing discarded, the invocation fails and alarms.
    Infrastructure,
}

/// Errors that know whether they are worth retrying.
pub trait Retryable {
    fn retry_class(&self) -> RetryClass;

    fn is_transient(&self) -> bool {
        matches!(self.retry_class(), RetryClass::Transient { .. })
    }

    fn is_infrastructure(&self) -> bool {
        matches!(self.retry_class(), RetryClass::Infrastructure)
    }
}

/// Retry settings. `Default` is tuned for Genesys Cloud API calls inside a Lambda invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Never start a wait that would end later than this before the deadline: the caller needs
    /// the time to checkpoint or report.
    pub deadline_margin: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            deadline_margin: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    pub fn with_max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    pub fn with_base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// Runs `op` until it succeeds, fails permanently, runs out of retries, or the next wait
    /// would cross `deadline`. The last error is returned unchanged.
    pub async fn run<T, E, F, Fut>(&self, deadline: Option<Instant>, op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries);
        let policy = *self;
        op.retry(backoff)
            .when(|e: &E| e.is_transient())
            .adjust(move |e: &E, next: Option<Duration>| policy.wait_for(e, next, deadline))
            .notify(|e: &E, wait: Duration| {
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying after transient error");
            })
            .await
    }

    /// The wait before the next attempt, or `None` to stop. `next` is backon's exponential
    /// delay (None once the attempts are used up).
    fn wait_for<E: Retryable>(
        &self,
        err: &E,
        next: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        let exponential = next?;
        let wait = match err.retry_class() {
            RetryClass::Permanent | RetryClass::Infrastructure => return None,
            // The server knows when it will have capacity again; jitter would only make us early.
            RetryClass::Transient {
                retry_after: Some(hint),
            } => hint,
            // Full jitter: spreads a thundering herd of Lambda workers evenly over the window.
            RetryClass::Transient { retry_after: None } => full_jitter(exponential),
        };
        match deadline {
            Some(deadline) if Instant::now() + wait + self.deadline_margin > deadline => None,
            _ => Some(wait),
        }
    }
}

/// A uniformly random wait in `[0, cap]` ("full jitter").
pub fn full_jitter(cap: Duration) -> Duration {
    let millis = cap.as_millis().min(u64::MAX as u128) as u64;
    if millis == 0 {
        return cap;
    }
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

/// Parses an HTTP `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct E(RetryClass);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for E {
        fn retry_class(&self) -> RetryClass {
            self.0
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy::default().with_base_delay(Duration::from_millis(1))
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), E> = fast()
            .run(None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(RetryClass::Permanent))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_limit() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), E> = fast()
            .with_max_retries(3)
            .run(None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(RetryClass::Transient { retry_after: None }))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let calls = AtomicUsize::new(0);
        let r: Result<usize, E> = fast()
            .run(None, || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    Err(E(RetryClass::Transient { retry_after: None }))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(r.ok(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_hint_is_honoured() {
        let calls = AtomicUsize::new(0);
        let start = Instant::now();
        let r: Result<(), E> = fast()
            .run(None, || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(E(RetryClass::Transient {
                        retry_after: Some(Duration::from_secs(7)),
                    }))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok());
        // Paused clock: elapsed is exactly the sum of the sleeps.
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_not_started() {
        let calls = AtomicUsize::new(0);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let r: Result<(), E> = fast()
            .run(Some(deadline), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(RetryClass::Transient {
                    retry_after: Some(Duration::from_secs(30)),
                }))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_the_cap() {
        for _ in 0..1000 {
            assert!(full_jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
