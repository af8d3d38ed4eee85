//! event-stream's logic: one invocation consumes the Notifications API socket until the
//! Lambda deadline minus a margin, then hands off (the next scheduled invocation continues on
//! the same channel; the interval between them is a gap, filled from analytics). Figures go
//! out as EMF metrics the template's alarms watch (`ConversationEnds`, `GapSeconds`,
//! `Reconnects` by cause, `HeartbeatMisses`, `EndToEnqueueLagP99`).
//!
//! Inputs: a scheduled event, `{}`, or `{"action":"stream"}` (until the deadline), or
//! `{"action":"stream","seconds":N}` (at most N seconds).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::genesys::GenesysClient;
use crate::ids::OrgId;
use crate::metrics::{emit, Metric};
use crate::queue::ArchiveQueue;
use crate::store::{ArchiveLayout, ObjectStore};
use crate::stream::{run, StreamDeps, StreamError, StreamReport, StreamSettings};

use super::HandlerError;

pub const FUNCTION: &str = "event-stream";

/// What event-stream runs with.
pub struct StreamRuntime {
    pub genesys: GenesysClient,
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
    pub targets: Vec<crate::store::ArchiveLocation>,
    pub org: OrgId,
    pub queue: Arc<dyn ArchiveQueue>,
    pub settings: StreamSettings,
    /// Left before the Lambda deadline to send what is batched and save the state.
    pub handoff_margin: Duration,
}

impl StreamRuntime {
    pub fn deps(&self) -> StreamDeps<'_> {
        StreamDeps {
            genesys: &self.genesys,
            store: self.store.as_ref(),
            layout: &self.layout,
            targets: &self.targets,
            queue: self.queue.as_ref(),
            org: &self.org,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum StreamRequest {
    Stream {
        #[serde(default)]
        seconds: Option<u64>,
    },
}

impl StreamRequest {
    pub fn parse(payload: Value) -> Result<StreamRequest, HandlerError> {
        super::action_request(
            payload,
            StreamRequest::Stream { seconds: None },
            "{\"action\":\"stream\"} or {\"action\":\"stream\",\"seconds\":N}",
        )
    }
}

/// Handles one invocation; `deadline` is the Lambda's.
pub async fn event_stream(
    rt: &StreamRuntime,
    payload: Value,
    deadline: Instant,
) -> Result<Value, HandlerError> {
    let StreamRequest::Stream { seconds } = StreamRequest::parse(payload)?;
    let mut until = deadline
        .checked_sub(rt.handoff_margin)
        .unwrap_or_else(Instant::now);
    if let Some(bound) = seconds.and_then(|s| Instant::now().checked_add(Duration::from_secs(s))) {
        until = until.min(bound);
    }
    let started = Instant::now();
    let deps = rt.deps();
    let mut attempt = run(&deps, &rt.settings, CancellationToken::new(), Some(until)).await;
    // The previous holder crashed or overran: its lease runs out soon, so wait for it once
    // rather than leave the socket closed until the next schedule.
    if let Err(StreamError::Busy { until: lease, .. }) = &attempt {
        let wait = (*lease - chrono::Utc::now()).to_std().unwrap_or_default();
        if Instant::now() + wait + Duration::from_secs(30) < until {
            tokio::time::sleep(wait + Duration::from_millis(200)).await;
            attempt = run(&deps, &rt.settings, CancellationToken::new(), Some(until)).await;
        }
    }
    let report = attempt.map_err(|e| HandlerError::of(&e))?;
    emit_report(&report, started.elapsed());
    Ok(json!({ "stream": report }))
}

/// The run's EMF metrics: one line, plus one per reconnect cause.
pub fn emit_report(report: &StreamReport, ran: Duration) {
    let per_second = report.conversation_events as f64 / ran.as_secs_f64().max(0.001);
    let ms = |name: &'static str, v: Option<u64>| Metric {
        name,
        value: v.unwrap_or(0) as f64,
        unit: "Milliseconds",
    };
    emit(
        &[("Function", FUNCTION)],
        &[
            Metric::count("ConversationEvents", report.conversation_events as f64),
            Metric::count("ConversationEnds", report.conversation_ends as f64),
            Metric::count("StreamEnqueued", f64::from(report.enqueued)),
            Metric::count("GapFilledConversations", f64::from(report.gap_filled)),
            Metric::count("HeartbeatMisses", f64::from(report.heartbeat_misses)),
            Metric::count("ConnectFailures", f64::from(report.connect_failures)),
            Metric {
                name: "GapSeconds",
                value: report.gap_seconds,
                unit: "Seconds",
            },
            Metric {
                name: "EventsPerSecond",
                value: per_second,
                unit: "Count/Second",
            },
            ms("EndToEnqueueLagP99", report.lag_p99_ms),
        ],
    );
    for (cause, n) in &report.reconnects {
        emit(
            &[("Function", FUNCTION), ("Cause", cause)],
            &[Metric::count("Reconnects", f64::from(*n))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_a_schedule_or_a_bounded_stream() {
        assert_eq!(
            StreamRequest::parse(json!({"detail-type": "Scheduled Event", "source": "aws.events"}))
                .unwrap(),
            StreamRequest::Stream { seconds: None }
        );
        assert_eq!(
            StreamRequest::parse(json!({"action": "stream", "seconds": 30})).unwrap(),
            StreamRequest::Stream { seconds: Some(30) }
        );
        let err = StreamRequest::parse(json!({"action": "stream", "secs": 30})).unwrap_err();
        assert!(err.to_string().contains("\"seconds\":N"), "{err}");
    }
}
