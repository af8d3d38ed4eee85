//! Client-side pacing of Genesys Cloud API requests, fed by the `inin-ratelimit-*` headers
//! (`count` requests used of `allowed` in the current window, which resets in `reset`
//! seconds). One per client, shared by all its clones: every request of the process draws
//! from the same budget.
//!
//! The rule: while more than half of the window's budget is left, requests go at once (the
//! archive path's few calls per conversation never wait); below that, the rest of the budget
//! is spread evenly over the time left in the window; with nothing left, requests wait for the
//! reset. A backfill thus runs close to the limit without 429 storms, and 429s that still come
//! (other clients of the same OAuth client) are handled by the retry policy.
//!
//! Hand-written rather than `governor`: the quota here changes with every response (the
//! server's count is authoritative, and the window's reset moves), while governor's quota is
//! fixed when the limiter is built.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<Option<Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    allowed: u64,
    /// Used as the server last said, plus what was sent since.
    used: u64,
    resets_at: Instant,
    /// The earliest time the next paced request may go.
    next_slot: Instant,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// A window of `allowed` requests per `period` assumed from now, until a response says
    /// otherwise; ignored once a window is known.
    pub fn seed(&self, allowed: u64, period: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.is_none() {
            *state = Some(Window {
                allowed,
                used: 0,
                resets_at: now + period,
                next_slot: now,
            });
        }
    }

    /// What a response said about the window.
    pub fn observe(&self, count: u64, allowed: u64, reset: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        let resets_at = now + reset;
        let next_slot = state.map_or(now, |w| w.next_slot);
        *state = Some(Window {
            allowed,
            // Requests sent after this response was produced are not in its count; keeping the
            // larger of the two never underestimates within one window.
            // The same window when its reset did not move later (beyond the header's one-second
            // rounding); a later reset is a new window, whose count starts over.
            used: match *state {
                Some(w)
                    if w.resets_at > now && resets_at <= w.resets_at + Duration::from_secs(1) =>
                {
                    w.used.max(count)
                }
                _ => count,
            },
            resets_at,
            next_slot,
        });
    }

    /// How long the next request must wait (and counts it as sent).
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(w) = state.as_mut() else {
            return Duration::ZERO;
        };
        if now >= w.resets_at {
            // The window reset: nothing known about the new one until a response says.
            *state = None;
            return Duration::ZERO;
        }
        let left = w.allowed.saturating_sub(w.used);
        let wait = if left == 0 {
            w.resets_at - now
        } else if left * 2 > w.allowed {
            Duration::ZERO
        } else {
            let slot = w.next_slot.max(now);
            let spacing = w.resets_at.saturating_duration_since(slot)
                / u32::try_from(left).unwrap_or(u32::MAX);
            w.next_slot = slot + spacing;
            slot - now
        };
        w.used += 1;
        wait
    }

    /// Waits for the next request's turn, never past `deadline` (a request that would have
    /// to wait beyond it goes at once and meets the retry policy instead).
    pub async fn acquire(&self, deadline: Option<Instant>) {
        let wait = self.reserve();
        if wait.is_zero() {
            return;
        }
        let until = Instant::now() + wait;
        let until = deadline.map_or(until, |d| until.min(d));
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "pacing a Genesys request"
        );
        tokio::time::sleep_until(until).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Window>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nothing_waits_until_half_the_budget_is_used_then_the_rest_is_spread_over_the_window() {
        let t = Throttle::new();
        assert_eq!(t.reserve(), Duration::ZERO, "nothing known yet");
        t.observe(0, 20, Duration::from_secs(10));
        // Ten requests (the first half) go at once.
        for _ in 0..10 {
            assert_eq!(t.reserve(), Duration::ZERO);
        }
        // The other ten are spread over the 10 s left: one per second.
        let waits: Vec<Duration> = (0..10).map(|_| t.reserve()).collect();
        assert_eq!(waits[0], Duration::ZERO);
        assert_eq!(waits[1], Duration::from_secs(1));
        assert_eq!(waits[9], Duration::from_secs(9));
        // Nothing left: the next waits for the reset.
        assert_eq!(t.reserve(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_seeded_limit_paces_the_first_requests_until_a_response_tells_the_window() {
        let t = Throttle::new();
        t.seed(4, Duration::from_secs(60));
        assert_eq!(t.reserve(), Duration::ZERO);
        assert_eq!(t.reserve(), Duration::ZERO);
        // Half of the seeded budget used: the rest is spread over the minute.
        assert_eq!(t.reserve(), Duration::ZERO);
        assert_eq!(t.reserve(), Duration::from_secs(30));
        // The server's word replaces the seed; a later seed changes nothing.
        t.observe(0, 100, Duration::from_secs(60));
        t.seed(1, Duration::from_secs(60));
        assert_eq!(t.reserve(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_count_higher_than_ours_is_believed_and_a_reset_clears_the_window() {
        let t = Throttle::new();
        t.observe(0, 100, Duration::from_secs(60));
        assert_eq!(t.reserve(), Duration::ZERO);
        // Another process used the budget: the server says 100 of 100.
        t.observe(100, 100, Duration::from_secs(30));
        assert_eq!(t.reserve(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(t.reserve(), Duration::ZERO, "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_window_starts_the_count_over() {
        let t = Throttle::new();
        t.observe(0, 10, Duration::from_secs(2));
        for _ in 0..10 {
            t.reserve();
        }
        assert_eq!(t.reserve(), Duration::from_secs(2), "the budget is used up");
        // The server's window reset a little earlier than we thought: its next answer says a
        // new window with one request, resetting in 5 s. That is not our exhausted window.
        tokio::time::advance(Duration::from_millis(1500)).await;
        t.observe(1, 10, Duration::from_secs(5));
        assert_eq!(t.reserve(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_never_waits_past_the_deadline() {
        let t = Throttle::new();
        t.observe(50, 50, Duration::from_secs(60));
        let start = Instant::now();
        t.acquire(Some(start + Duration::from_secs(2))).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
