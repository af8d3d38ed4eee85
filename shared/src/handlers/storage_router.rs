//! storage-router's logic: the daily compliance check of every storage target (with the
//! write/read/delete probe) and the audit report of the day before, and, invoked, the
//! validation of a routing document before it is put in place.
//!
//! Inputs (a scheduled-event envelope or `{}` is a check):
//!
//! * `{"action": "check"}`: every target's compliance (`_reports/compliance/latest.json`)
//!   and the audit report of the previous UTC day (`_reports/audit/…`).
//! * `{"action": "report", "from": …, "to": …}` or `{"action": "report", "days": N}`: the
//!   audit report of a period (the last N whole UTC days).
//! * `{"action": "validate", "document": "<YAML or JSON text>"}` or `{"action": "validate",
//!   "config": {…}}`: whether the document is a valid routing config; the answer names the
//!   field or line of the first problem. Nothing is read or written.
//!
//! EMF metrics (dimension `Function=storage-router`, and `Target` for the per-target ones):
//! `ComplianceFailures` (failed required checks), `NonCompliantTargets`, `ReportArchived`,
//! `ReportFailed`, `ReportSuccessRate`, `ReportLatencyP95Seconds`.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::report;
use crate::compliance::{self, BucketInspector, CheckedTarget, ComplianceReport};
use crate::metrics::{emit, Metric};
use crate::routing::RoutingConfig;
use crate::store::{ArchiveLayout, ObjectStore};

use super::HandlerError;

pub const FUNCTION: &str = "storage-router";

/// What storage-router runs with.
pub struct RouterRuntime {
    /// The deployment's bucket: audit records in, reports out.
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
    /// Every storage target (the deployment's bucket alone without a routing config).
    pub targets: Vec<CheckedTarget>,
    /// Where the targets came from (`ROUTING_CONFIG` and version, or `ARCHIVE_BUCKET`).
    pub config_source: String,
    pub inspector: Arc<dyn BucketInspector>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum RouterRequest {
    /// A struct variant so that `deny_unknown_fields` applies (an internally tagged unit
    /// variant accepts any other field).
    Check {},
    #[serde(rename_all = "camelCase")]
    Report {
        #[serde(default)]
        from: Option<DateTime<Utc>>,
        #[serde(default)]
        to: Option<DateTime<Utc>>,
        #[serde(default)]
        days: Option<u32>,
    },
    Validate {
        #[serde(default)]
        document: Option<String>,
        #[serde(default)]
        config: Option<Value>,
    },
}

impl RouterRequest {
    pub fn parse(payload: Value) -> Result<RouterRequest, HandlerError> {
        super::action_request(
            payload,
            RouterRequest::Check {},
            "{\"action\":\"check\"}, {\"action\":\"report\",\"days\":N} or {\"action\":\"validate\",\"document\":\"...\"}",
        )
    }
}

/// Whether a routing document is valid: `{"valid": true, …summary}` or `{"valid": false,
/// "error": "rules[1].target: …"}`.
pub fn validate(document: Option<String>, config: Option<Value>) -> Result<Value, HandlerError> {
    let parsed = match (document, config) {
        (Some(text), None) => RoutingConfig::from_document(&text),
        (None, Some(value)) => RoutingConfig::from_json(&value.to_string()),
        _ => {
            return Err(HandlerError::Payload(
                "validate takes exactly one of \"document\" (YAML or JSON text) or \"config\" (a JSON object)".into(),
            ))
        }
    };
    Ok(match parsed {
        Ok(c) => json!({
            "valid": true,
            "version": c.version,
            "targets": c.targets.keys().collect::<Vec<_>>(),
            "rules": c.rules.iter().map(|r| json!({"name": r.name, "target": r.target})).collect::<Vec<_>>(),
            "defaultTarget": c.default_target,
        }),
        Err(e) => json!({"valid": false, "error": e.to_string()}),
    })
}

/// The compliance check of every target, written and counted.
pub async fn check(
    rt: &RouterRuntime,
    now: DateTime<Utc>,
) -> Result<ComplianceReport, HandlerError> {
    let report = compliance::check_all(
        &rt.targets,
        rt.inspector.as_ref(),
        true,
        &rt.config_source,
        now,
    )
    .await;
    let body = serde_json::to_vec_pretty(&report)
        .map_err(|e| HandlerError::Permanent(format!("compliance report: {e}")))?;
    crate::store::replace(
        rt.store.as_ref(),
        &rt.layout.compliance_report_key(),
        body.into(),
        "application/json",
    )
    .await
    .map_err(|e| HandlerError::of(&e))?;
    let mut bad = 0.0;
    for t in &report.targets {
        let failures = t.failures();
        if !failures.is_empty() {
            bad += 1.0;
            tracing::error!(target_name = %t.target, bucket = %t.bucket, ?failures, "storage target is not compliant");
        }
        emit(
            &[("Function", FUNCTION), ("Target", &t.target)],
            &[Metric::count("ComplianceFailures", failures.len() as f64)],
        );
    }
    emit(
        &[("Function", FUNCTION)],
        &[Metric::count("NonCompliantTargets", bad)],
    );
    Ok(report)
}

/// The audit report of `[from, to)`, written and counted.
pub async fn audit_report(
    rt: &RouterRuntime,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(report::AuditReport, Vec<String>), HandlerError> {
    if from >= to {
        return Err(HandlerError::Payload(format!(
            "the report period {from} .. {to} is empty"
        )));
    }
    let records = report::read_records(rt.store.as_ref(), &rt.layout, from, to)
        .await
        .map_err(|e| HandlerError::of(&e))?;
    let r = report::summarize(&records, from, to, now);
    let keys = report::write(rt.store.as_ref(), &rt.layout, &r)
        .await
        .map_err(|e| HandlerError::of(&e))?;
    let mut metrics = vec![
        Metric::count("ReportArchived", r.total.archived as f64),
        Metric::count("ReportFailed", r.total.failed as f64),
    ];
    if let Some(rate) = r.total.success_rate {
        metrics.push(Metric {
            name: "ReportSuccessRate",
            value: rate * 100.0,
            unit: "Percent",
        });
    }
    if let Some(l) = &r.total.latency {
        metrics.push(Metric {
            name: "ReportLatencyP95Seconds",
            value: l.p95_secs as f64,
            unit: "Seconds",
        });
    }
    emit(&[("Function", FUNCTION)], &metrics);
    Ok((r, keys.iter().map(|k| k.to_string()).collect()))
}

/// The previous `days` whole UTC days before `now`.
fn last_days(now: DateTime<Utc>, days: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    (to - Duration::days(i64::from(days.max(1))), to)
}

fn summary(r: &report::AuditReport, keys: &[String]) -> Value {
    json!({
        "from": r.from, "to": r.to,
        "archived": r.total.archived, "failed": r.total.failed,
        "successRate": r.total.success_rate,
        "latencyP95Secs": r.total.latency.as_ref().map(|l| l.p95_secs),
        "reportKeys": keys,
    })
}

pub async fn storage_router(
    rt: &RouterRuntime,
    payload: Value,
    now: DateTime<Utc>,
) -> Result<Value, HandlerError> {
    match RouterRequest::parse(payload)? {
        RouterRequest::Validate { document, config } => validate(document, config),
        RouterRequest::Check {} => {
            let compliance = check(rt, now).await?;
            let (from, to) = last_days(now, 1);
            let (r, keys) = audit_report(rt, from, to, now).await?;
            Ok(json!({
                "compliant": compliance.compliant(),
                "targets": compliance.targets.iter().map(|t| json!({
                    "target": t.target, "bucket": t.bucket,
                    "compliant": t.compliant(), "failures": t.failures(),
                })).collect::<Vec<_>>(),
                "report": summary(&r, &keys),
            }))
        }
        RouterRequest::Report { from, to, days } => {
            let (from, to) = match (from, to, days) {
                (Some(f), Some(t), None) => (f, t),
                (None, None, d) => last_days(now, d.unwrap_or(1)),
                _ => {
                    return Err(HandlerError::Payload(
                        "report takes \"from\" and \"to\", or \"days\"".into(),
                    ))
                }
            };
            let (r, keys) = audit_report(rt, from, to, now).await?;
            Ok(summary(&r, &keys))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            RouterRequest::parse(json!({})).unwrap(),
            RouterRequest::Check {}
        );
        assert_eq!(
            RouterRequest::parse(json!({"detail-type": "Scheduled Event", "detail": {}})).unwrap(),
            RouterRequest::Check {}
        );
        assert_eq!(
            RouterRequest::parse(json!({"action": "report", "days": 7})).unwrap(),
            RouterRequest::Report {
                from: None,
                to: None,
                days: Some(7)
            }
        );
        let e = RouterRequest::parse(json!({"action": "reroute"})).unwrap_err();
        assert!(
            e.to_string().contains("expected {\"action\":\"check\"}"),
            "{e}"
        );
        let e = RouterRequest::parse(json!({"action": "check", "force": true})).unwrap_err();
        assert!(matches!(e, HandlerError::Payload(_)));
    }

    #[test]
    fn validate_answers_with_the_field_of_the_first_problem() {
        let good = "version: 1\ntargets:\n  a:\n    bucket: acme-archive\ndefaultTarget: a\n";
        let v = validate(Some(good.into()), None).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["targets"], json!(["a"]));
        let bad = good.replace("defaultTarget: a", "defaultTarget: b");
        let v = validate(Some(bad), None).unwrap();
        assert_eq!(v["valid"], false);
        assert!(
            v["error"].as_str().unwrap().contains("defaultTarget"),
            "{v}"
        );
        let v = validate(
            None,
            Some(json!({"version": 1, "targets": {"a": {"bucket": "acme-archive", "prefx": "x"}}})),
        )
        .unwrap();
        assert!(v["error"].as_str().unwrap().contains("targets.a"), "{v}");
        assert!(validate(None, None).is_err());
        assert!(validate(Some(good.into()), Some(json!({}))).is_err());
    }

    #[test]
    fn the_scheduled_report_covers_the_previous_utc_day() {
        let now: DateTime<Utc> = "2026-11-02T03:04:05Z".parse().unwrap();
        let (from, to) = last_days(now, 1);
        assert_eq!(
            from,
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(to, "2026-11-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }
}
