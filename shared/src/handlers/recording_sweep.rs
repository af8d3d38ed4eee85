//! recording-sweep's logic: the scheduled sweep (which also continues unfinished backfills),
//! a backfill started by an input event, and the daily reconciliation, each reporting its
//! figures as EMF metrics (`SweepLagSeconds`, `OldestUnarchivedSeconds`, `ReconcileMissing`,
//! ...) that the template's alarms watch.
//!
//! Inputs (EventBridge schedules deliver their `Input`; a scheduled-event envelope or `{}` is
//! a sweep):
//!
//! * `{"action": "sweep"}`
//! * `{"action": "backfill", "from": "2025-01-01T00:00:00Z", "to": "2025-07-01T00:00:00Z",
//!   "windowHours": 24}`: runs until the deadline; the scheduled sweeps continue it.
//! * `{"action": "reconcile", "days": 1}` (the last `days` up to `settleHours` ago) or
//!   `{"action": "reconcile", "from": ..., "to": ...}`: the full report is written to
//!   `{prefix}/_reports/reconcile/{from}_{to}.json`; the answer is its summary.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::config::RecordingMedia;
use crate::genesys::GenesysClient;
use crate::ids::OrgId;
use crate::metrics::{emit, Metric};
use crate::queue::ArchiveQueue;
use crate::reconcile::{reconcile, ReconcileDeps, ReconcileError};
use crate::retry::Retryable;
use crate::store::{ArchiveLayout, ObjectStore};
use crate::sweep::{backfill, continue_backfills, sweep_once, SweepDeps, SweepSettings};

use super::HandlerError;

pub const FUNCTION: &str = "recording-sweep";
/// The reconciliation leaves conversations younger than this to the sweep and the events.
const DEFAULT_SETTLE_HOURS: u32 = 2;

/// What recording-sweep runs with.
pub struct SweepRuntime {
    pub genesys: GenesysClient,
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
    /// Routing targets whose manifests count as archived (empty without routing).
    pub targets: Vec<crate::store::ArchiveLocation>,
    pub org: OrgId,
    /// The recording kinds the deployment archives (what reconciliation counts as missing).
    pub media: Vec<RecordingMedia>,
    pub queue: Arc<dyn ArchiveQueue>,
    pub settings: SweepSettings,
    /// Whether the org's rate limit was read into the pacing yet (once per process).
    pub rate_limit_read: std::sync::atomic::AtomicBool,
}

impl SweepRuntime {
    pub fn sweep_deps(&self) -> SweepDeps<'_> {
        SweepDeps {
            genesys: &self.genesys,
            store: self.store.as_ref(),
            layout: &self.layout,
            targets: &self.targets,
            queue: self.queue.as_ref(),
            org: &self.org,
        }
    }

    pub fn reconcile_deps(&self) -> ReconcileDeps<'_> {
        ReconcileDeps {
            genesys: &self.genesys,
            store: self.store.as_ref(),
            layout: &self.layout,
            targets: &self.targets,
            org: &self.org,
            media: &self.media,
        }
    }
}

/// One invocation's request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum SweepRequest {
    /// A struct variant so that `deny_unknown_fields` applies (an internally tagged unit
    /// variant accepts any other field).
    Sweep {},
    #[serde(rename_all = "camelCase")]
    Backfill {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[serde(default)]
        window_hours: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Reconcile {
        #[serde(default)]
        from: Option<DateTime<Utc>>,
        #[serde(default)]
        to: Option<DateTime<Utc>>,
        #[serde(default)]
        days: Option<u32>,
        #[serde(default)]
        settle_hours: Option<u32>,
    },
}

impl SweepRequest {
    pub fn parse(payload: Value) -> Result<SweepRequest, HandlerError> {
        super::action_request(
            payload,
            SweepRequest::Sweep {},
            "{\"action\":\"sweep\"}, {\"action\":\"backfill\",\"from\":...,\"to\":...} or {\"action\":\"reconcile\",\"days\":N}",
        )
    }
}

fn seconds_since(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> f64 {
    t.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
}

fn seconds(name: &'static str, value: f64) -> Metric {
    Metric {
        name,
        value,
        unit: "Seconds",
    }
}

/// Handles one invocation; `deadline` is the Lambda's.
pub async fn recording_sweep(
    rt: &SweepRuntime,
    payload: Value,
    deadline: Instant,
) -> Result<Value, HandlerError> {
    let request = SweepRequest::parse(payload)?;
    if !rt
        .rate_limit_read
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        rt.genesys.prime_rate_limit().await;
    }
    let now = Utc::now();
    let deps = rt.sweep_deps();
    match request {
        SweepRequest::Sweep {} => {
            let report = sweep_once(&deps, &rt.settings, now)
                .await
                .map_err(|e| HandlerError::of(&e))?;
            emit(
                &[("Function", FUNCTION)],
                &[
                    Metric::count("SweepEnqueued", f64::from(report.enqueued)),
                    Metric::count("SweepAlreadyEnqueued", f64::from(report.already_enqueued)),
                    Metric::count("SweepQueries", f64::from(report.queries)),
                    seconds("SweepLagSeconds", seconds_since(now, report.watermark)),
                    seconds(
                        "OldestUnarchivedSeconds",
                        seconds_since(now, report.oldest_unarchived_end),
                    ),
                ],
            );
            // Whatever time is left goes to the backfills still running.
            let backfills = continue_backfills(&deps, deadline)
                .await
                .map_err(|e| HandlerError::of(&e))?;
            emit_backfills(&backfills);
            Ok(json!({"sweep": report, "backfills": backfills}))
        }
        SweepRequest::Backfill {
            from,
            to,
            window_hours,
        } => {
            let window = Duration::from_secs(window_hours.unwrap_or(24).max(1) * 3600);
            let state = backfill(&deps, from, to, window, Some(deadline), |_| {})
                .await
                .map_err(|e| HandlerError::of(&e))?;
            emit_backfills(std::slice::from_ref(&state));
            Ok(json!({"backfill": state, "complete": state.complete()}))
        }
        SweepRequest::Reconcile {
            from,
            to,
            days,
            settle_hours,
        } => {
            let settle =
                chrono::Duration::hours(i64::from(settle_hours.unwrap_or(DEFAULT_SETTLE_HOURS)));
            let to = to.unwrap_or(now - settle);
            let from =
                from.unwrap_or(to - chrono::Duration::days(i64::from(days.unwrap_or(1).max(1))));
            let report = reconcile(&rt.reconcile_deps(), from, to, now)
                .await
                .map_err(|e| match &e {
                    ReconcileError::Query(q) => HandlerError::of(q),
                    ReconcileError::Store(s) => HandlerError::of(s),
                    ReconcileError::Recordings { source, .. } if source.is_infrastructure() => {
                        HandlerError::Infrastructure(e.to_string())
                    }
                    ReconcileError::EmptyWindow { .. } => HandlerError::Payload(e.to_string()),
                    _ => HandlerError::RetryLater(e.to_string()),
                })?;
            let key = rt.layout.reconcile_report_key(from, to);
            let body = serde_json::to_vec_pretty(&report)
                .map_err(|e| HandlerError::Permanent(format!("reconciliation report: {e}")))?;
            crate::store::replace(rt.store.as_ref(), &key, body.into(), "application/json")
                .await
                .map_err(|e| HandlerError::of(&e))?;
            emit(
                &[("Function", FUNCTION)],
                &[
                    Metric::count("ReconcileMissing", f64::from(report.missing)),
                    Metric::count("ReconcilePending", f64::from(report.pending)),
                    Metric::count("ReconcileArchived", f64::from(report.archived)),
                ],
            );
            Ok(json!({
                "from": from, "to": to,
                "conversations": report.conversations, "recordings": report.recordings,
                "archived": report.archived, "missing": report.missing,
                "pending": report.pending, "skipped": report.skipped,
                "complete": report.complete(), "report": key,
            }))
        }
    }
}

fn emit_backfills(states: &[crate::sweep::BackfillState]) {
    for s in states {
        emit(
            &[("Function", FUNCTION)],
            &[
                Metric::count("BackfillEnqueued", s.enqueued as f64),
                seconds(
                    "BackfillRemainingSeconds",
                    (s.to - s.done_until).num_seconds().max(0) as f64,
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_schedules_and_input_events_and_bad_ones_say_what_is_expected() {
        let scheduled = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event",
            "source": "aws.events", "detail": {}});
        assert_eq!(
            SweepRequest::parse(scheduled).unwrap(),
            SweepRequest::Sweep {}
        );
        assert_eq!(
            SweepRequest::parse(json!({})).unwrap(),
            SweepRequest::Sweep {}
        );
        assert_eq!(
            SweepRequest::parse(json!({"action": "backfill", "from": "2025-01-01T00:00:00Z",
                "to": "2025-02-01T00:00:00Z", "windowHours": 6}))
            .unwrap(),
            SweepRequest::Backfill {
                from: "2025-01-01T00:00:00Z".parse().unwrap(),
                to: "2025-02-01T00:00:00Z".parse().unwrap(),
                window_hours: Some(6)
            }
        );
        for bad in [
            json!({"action": "backfill", "from": "yesterday", "to": "2025-02-01T00:00:00Z"}),
            json!({"action": "purge"}),
            json!({"action": "reconcile", "dayz": 1}),
            json!({"action": "sweep", "force": true}),
        ] {
            let e = SweepRequest::parse(bad.clone()).unwrap_err();
            assert!(
                matches!(&e, HandlerError::Payload(m) if m.contains("expected {\"action\":\"sweep\"}")),
                "{bad}: {e}"
            );
        }
    }
}
