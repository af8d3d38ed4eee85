//! The audit report: from the audit records of a period, per storage target, what was
//! archived, what failed and why, the bytes, the success rate, the latency from conversation
//! end to manifest (p50/p95/p99 and a histogram) and the oldest recording still unarchived;
//! as JSON (for machines), Markdown and a self-contained HTML page with an SVG chart (for
//! people). The numbers come from [`summarize`], a pure function over the records.
//!
//! Definitions (each recording counts once per report, whatever its number of records):
//! * archived: it has an `archived` record in the period (its bytes are that record's);
//! * failed: it has a failure record (`failed`, `not_available`, `archived_in_genesys`) in
//!   the period and no `archived` one; its reason is that of its latest failure;
//! * success rate: archived / (archived + failed);
//! * latency: `archived` record time minus the conversation's end (records that carry it);
//!   percentiles by nearest rank;
//! * oldest unarchived: the failed recording whose first failure in the period is earliest.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::AuditRecord;
use crate::store::{ArchiveLayout, ObjectKey, ObjectStore, StoreError};

/// The name of records written without a routing config (the deployment's bucket).
pub const UNROUTED: &str = "(deployment bucket)";

const FAILURE_OUTCOMES: [&str; 3] = ["failed", "not_available", "archived_in_genesys"];

/// Latency histogram bins: upper bound in seconds (exclusive), the last one open.
const BINS: [(&str, Option<i64>); 7] = [
    ("< 1 min", Some(60)),
    ("1–5 min", Some(300)),
    ("5–15 min", Some(900)),
    ("15–60 min", Some(3600)),
    ("1–6 h", Some(6 * 3600)),
    ("6–24 h", Some(24 * 3600)),
    ("≥ 24 h", None),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// Every recording of the period, whatever its target.
    pub total: TargetSummary,
    /// One per target, by name.
    pub targets: Vec<TargetSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetSummary {
    pub target: String,
    pub archived: u64,
    pub failed: u64,
    pub failed_by_reason: BTreeMap<String, u64>,
    pub bytes: u64,
    /// archived / (archived + failed); None when neither happened.
    pub success_rate: Option<f64>,
    pub latency: Option<Latency>,
    pub histogram: Vec<Bin>,
    pub oldest_unarchived: Option<Unarchived>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub samples: u64,
    pub p50_secs: i64,
    pub p95_secs: i64,
    pub p99_secs: i64,
    pub max_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bin {
    pub label: String,
    /// Exclusive upper bound; None for the last bin.
    pub below_secs: Option<i64>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unarchived {
    pub conversation_id: String,
    pub recording_id: String,
    pub first_failed_at: DateTime<Utc>,
    pub reason_code: Option<String>,
}

/// One recording's records of the period, folded.
#[derive(Default)]
struct Fold {
    target: Option<String>,
    conversation: String,
    archived: Option<(u64, Option<i64>)>,
    first_failure: Option<DateTime<Utc>>,
    latest_failure: Option<(DateTime<Utc>, Option<String>)>,
}

/// The report of `[from, to)` from `records` (records outside it are ignored).
pub fn summarize(
    records: &[AuditRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AuditReport {
    let mut folds: HashMap<&str, Fold> = HashMap::new();
    let mut in_window: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.at >= from && r.at < to && !r.recording_id.is_empty())
        .collect();
    in_window.sort_by_key(|r| r.at);
    for r in in_window {
        let f = folds.entry(r.recording_id.as_str()).or_default();
        f.conversation = r.conversation_id.clone();
        if r.target.is_some() {
            f.target = r.target.clone();
        }
        if r.outcome == "archived" {
            let latency = r
                .conversation_end
                .map(|end| (r.at - end).num_seconds().max(0));
            f.archived = Some((r.bytes, latency));
        } else if FAILURE_OUTCOMES.contains(&r.outcome.as_str()) {
            f.first_failure.get_or_insert(r.at);
            f.latest_failure = Some((r.at, r.reason_code.clone().or(Some(r.outcome.clone()))));
        }
    }
    let mut by_target: BTreeMap<String, Vec<(&str, &Fold)>> = BTreeMap::new();
    for (rid, f) in &folds {
        let name = f.target.clone().unwrap_or_else(|| UNROUTED.to_string());
        by_target.entry(name).or_default().push((rid, f));
    }
    let all: Vec<(&str, &Fold)> = folds.iter().map(|(r, f)| (*r, f)).collect();
    AuditReport {
        from,
        to,
        generated_at: now,
        total: summary("all", &all),
        targets: by_target
            .iter()
            .map(|(name, fs)| summary(name, fs))
            .collect(),
    }
}

fn summary(name: &str, folds: &[(&str, &Fold)]) -> TargetSummary {
    let mut s = TargetSummary {
        target: name.to_string(),
        archived: 0,
        failed: 0,
        failed_by_reason: BTreeMap::new(),
        bytes: 0,
        success_rate: None,
        latency: None,
        histogram: BINS
            .iter()
            .map(|(label, below)| Bin {
                label: label.to_string(),
                below_secs: *below,
                count: 0,
            })
            .collect(),
        oldest_unarchived: None,
    };
    let mut latencies = Vec::new();
    for (rid, f) in folds {
        match (&f.archived, &f.latest_failure) {
            (Some((bytes, latency)), _) => {
                s.archived += 1;
                s.bytes += bytes;
                if let Some(l) = latency {
                    latencies.push(*l);
                }
            }
            (None, Some((_, reason))) => {
                s.failed += 1;
                *s.failed_by_reason
                    .entry(reason.clone().unwrap_or_else(|| "failed".into()))
                    .or_default() += 1;
                let first = f.first_failure.unwrap_or(DateTime::<Utc>::MAX_UTC);
                let older = s
                    .oldest_unarchived
                    .as_ref()
                    .is_none_or(|o| (first, *rid) < (o.first_failed_at, o.recording_id.as_str()));
                if older {
                    s.oldest_unarchived = Some(Unarchived {
                        conversation_id: f.conversation.clone(),
                        recording_id: rid.to_string(),
                        first_failed_at: first,
                        reason_code: reason.clone(),
                    });
                }
            }
            (None, None) => {}
        }
    }
    let decided = s.archived + s.failed;
    if decided > 0 {
        s.success_rate = Some(s.archived as f64 / decided as f64);
    }
    latencies.sort_unstable();
    for l in &latencies {
        let i = BINS
            .iter()
            .position(|(_, below)| below.is_none_or(|b| *l < b))
            .unwrap_or(BINS.len() - 1);
        s.histogram[i].count += 1;
    }
    if let Some(max) = latencies.last() {
        let rank = |p: f64| {
            let n = latencies.len();
            let i = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
            latencies[i]
        };
        s.latency = Some(Latency {
            samples: latencies.len() as u64,
            p50_secs: rank(50.0),
            p95_secs: rank(95.0),
            p99_secs: rank(99.0),
            max_secs: *max,
        });
    }
    s
}

/// Every audit record written in `[from, to)` (the day folders it spans).
pub async fn read_records(
    store: &dyn ObjectStore,
    layout: &ArchiveLayout,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut out = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() {
        for key in store.list(layout.audit_day_prefix(day).as_str()).await? {
            if let Some(obj) = store.get(&key).await? {
                match serde_json::from_slice::<AuditRecord>(&obj.body) {
                    Ok(r) if r.at >= from && r.at < to => out.push(r),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%key, error = %e, "unreadable audit record skipped"),
                }
            }
        }
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    Ok(out)
}

/// The report's three renderings, written (replacing an earlier run's) under
/// `{prefix}/_reports/audit/{from}_{to}.{json,md,html}`.
pub async fn write(
    store: &dyn ObjectStore,
    layout: &ArchiveLayout,
    report: &AuditReport,
) -> Result<Vec<ObjectKey>, StoreError> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| StoreError::Request {
        operation: "PutObject",
        key: "audit report".into(),
        reason: e.to_string(),
        transient: false,
    })?;
    let mut keys = Vec::new();
    for (ext, body, content_type) in [
        ("json", json, "application/json"),
        (
            "md",
            to_markdown(report).into_bytes(),
            "text/markdown; charset=utf-8",
        ),
        (
            "html",
            to_html(report).into_bytes(),
            "text/html; charset=utf-8",
        ),
    ] {
        let key = layout.audit_report_key(report.from, report.to, ext);
        crate::store::replace(store, &key, bytes::Bytes::from(body), content_type).await?;
        keys.push(key);
    }
    Ok(keys)
}

fn duration_text(secs: i64) -> String {
    let d = Duration::seconds(secs);
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min {} s", d.num_minutes(), secs % 60)
    } else {
        format!("{} h {} min", d.num_hours(), (secs % 3600) / 60)
    }
}

fn rate_text(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{:.1} %", r * 100.0))
}

fn bytes_text(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn latency_cells(s: &TargetSummary) -> [String; 3] {
    match &s.latency {
        Some(l) => [
            duration_text(l.p50_secs),
            duration_text(l.p95_secs),
            duration_text(l.p99_secs),
        ],
        None => ["–".into(), "–".into(), "–".into()],
    }
}

fn oldest_text(s: &TargetSummary) -> String {
    s.oldest_unarchived.as_ref().map_or("–".into(), |o| {
        format!(
            "{} (conversation {}) since {} ({})",
            o.recording_id,
            o.conversation_id,
            o.first_failed_at.format("%Y-%m-%d %H:%M UTC"),
            o.reason_code.as_deref().unwrap_or("failed")
        )
    })
}

/// A Markdown rendering (for a ticket, a wiki page, a terminal).
pub fn to_markdown(r: &AuditReport) -> String {
    let mut md = format!(
        "# gc-archive audit report\n\n{} to {} (generated {})\n\n",
        r.from.format("%Y-%m-%d %H:%M UTC"),
        r.to.format("%Y-%m-%d %H:%M UTC"),
        r.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    md.push_str(
        "| target | archived | failed | bytes | success | p50 | p95 | p99 | oldest unarchived |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for s in r.targets.iter().chain(std::iter::once(&r.total)) {
        let [p50, p95, p99] = latency_cells(s);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {p50} | {p95} | {p99} | {} |\n",
            if s.target == "all" {
                "**all**"
            } else {
                &s.target
            },
            s.archived,
            s.failed,
            bytes_text(s.bytes),
            rate_text(s.success_rate),
            oldest_text(s)
        ));
    }
    if !r.total.failed_by_reason.is_empty() {
        md.push_str(
            "\n## Failures by reason\n\n| target | reason | recordings |\n|---|---|---:|\n",
        );
        for s in &r.targets {
            for (reason, n) in &s.failed_by_reason {
                md.push_str(&format!("| {} | {reason} | {n} |\n", s.target));
            }
        }
    }
    md.push_str("\n## Latency from conversation end to manifest (all targets)\n\n```\n");
    let max = r
        .total
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0)
        .max(1);
    for b in &r.total.histogram {
        let width = (b.count * 40).div_ceil(max) as usize;
        md.push_str(&format!(
            "{:>10} | {:<40} {}\n",
            b.label,
            "#".repeat(width),
            b.count
        ));
    }
    md.push_str("```\n");
    md
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The bar colour of the latency chart (the screenshot test looks for it).
pub const BAR_COLOUR: (u8, u8, u8) = (0x2b, 0x6c, 0xb0);
/// The chart's plot height in CSS pixels: the tallest bar.
pub const CHART_HEIGHT: u32 = 200;

/// A self-contained HTML page (no script, no external resource): tables and an SVG chart.
pub fn to_html(r: &AuditReport) -> String {
    let (cr, cg, cb) = BAR_COLOUR;
    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gc-archive audit report {from} to {to}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#1a202c}}table{{border-collapse:collapse;margin:12px 0}}\
td,th{{border:1px solid #cbd5e0;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
th{{background:#edf2f7}}</style></head><body><h1>gc-archive audit report</h1>\
<p>{from} to {to} (generated {generated})</p>",
        from = r.from.format("%Y-%m-%d %H:%M UTC"),
        to = r.to.format("%Y-%m-%d %H:%M UTC"),
        generated = r.generated_at.format("%Y-%m-%d %H:%M UTC"),
    );
    h.push_str("<table id=\"summary\"><tr><th>target</th><th>archived</th><th>failed</th><th>bytes</th><th>success</th><th>p50</th><th>p95</th><th>p99</th><th>oldest unarchived</th></tr>");
    for s in r.targets.iter().chain(std::iter::once(&r.total)) {
        let [p50, p95, p99] = latency_cells(s);
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{p50}</td><td>{p95}</td><td>{p99}</td><td>{}</td></tr>",
            escape(&s.target),
            s.archived,
            s.failed,
            bytes_text(s.bytes),
            rate_text(s.success_rate),
            escape(&oldest_text(s))
        ));
    }
    h.push_str("</table>");
    if !r.total.failed_by_reason.is_empty() {
        h.push_str("<h2>Failures by reason</h2><table id=\"failures\"><tr><th>target</th><th>reason</th><th>recordings</th></tr>");
        for s in &r.targets {
            for (reason, n) in &s.failed_by_reason {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
                    escape(&s.target),
                    escape(reason)
                ));
            }
        }
        h.push_str("</table>");
    }
    // The chart: one bar per bin, heights proportional to the counts (tallest = CHART_HEIGHT).
    let bins = &r.total.histogram;
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let (bar_w, gap, left, top) = (60u32, 20u32, 40u32, 20u32);
    let width = left + bins.len() as u32 * (bar_w + gap);
    let height = top + CHART_HEIGHT + 60;
    h.push_str(&format!(
        "<h2>Latency from conversation end to manifest</h2><svg id=\"latency-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"latency histogram\">\
<line x1=\"{left}\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#4a5568\"/>",
        base = top + CHART_HEIGHT
    ));
    for (i, b) in bins.iter().enumerate() {
        let x = left + i as u32 * (bar_w + gap) + gap / 2;
        let bar_h = ((b.count as f64 / max as f64) * CHART_HEIGHT as f64).round() as u32;
        let y = top + CHART_HEIGHT - bar_h;
        h.push_str(&format!(
            "<rect class=\"bar\" x=\"{x}\" y=\"{y}\" width=\"{bar_w}\" height=\"{bar_h}\" fill=\"rgb({cr},{cg},{cb})\"><title>{}: {}</title></rect>\
<text x=\"{tx}\" y=\"{ly}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
<text x=\"{tx}\" y=\"{cy}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            escape(&b.label),
            b.count,
            escape(&b.label),
            b.count,
            tx = x + bar_w / 2,
            ly = top + CHART_HEIGHT + 18,
            cy = y.saturating_sub(4).max(12),
        ));
    }
    h.push_str("</svg></body></html>\n");
    h
}

#[cfg(test)]
mod tests;
