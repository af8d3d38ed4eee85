use super::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn rec(
    at: &str,
    outcome: &str,
    rid: &str,
    target: Option<&str>,
    bytes: u64,
    end: Option<&str>,
    reason: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        at: t(at),
        outcome: outcome.into(),
        org_id: "o".into(),
        conversation_id: format!("c-{rid}"),
        recording_id: rid.into(),
        object_key: None,
        plaintext_sha256: None,
        bytes,
        duration_ms: 0,
        retries: 0,
        url_refreshes: 0,
        invocations: 1,
        reason_code: reason.map(str::to_string),
        reason: None,
        worker_id: "w".into(),
        function: "archive-on-event".into(),
        target: target.map(str::to_string),
        conversation_end: end.map(t),
    }
}

/// The fixture, by hand (window 2026-11-01 00:00 to 2026-11-02 00:00):
/// sales: r1 archived 30 s after its end (1000 B); r2 archived 10 min after (3000 B); r3
///   failed (codec_mismatch) at 02:00 and again (chunk) at 03:00, never archived;
///   r4 failed at 04:00 then archived at 05:00, 2 h after its end (500 B).
/// general: r5 archived 1 day + 1 h after its end (2000 B); r6 not_available at 01:00. r7
///   is outside the window (archived the day after) and counts nowhere.
/// (deployment bucket): r8 suspended then archived, no conversation end recorded (10 B).
fn fixture() -> Vec<AuditRecord> {
    vec![
        rec(
            "2026-11-01T10:00:30Z",
            "archived",
            "r1",
            Some("sales"),
            1000,
            Some("2026-11-01T10:00:00Z"),
            None,
        ),
        rec(
            "2026-11-01T10:10:00Z",
            "archived",
            "r2",
            Some("sales"),
            3000,
            Some("2026-11-01T10:00:00Z"),
            None,
        ),
        rec(
            "2026-11-01T02:00:00Z",
            "failed",
            "r3",
            None,
            0,
            None,
            Some("codec_mismatch"),
        ),
        rec(
            "2026-11-01T03:00:00Z",
            "failed",
            "r3",
            Some("sales"),
            0,
            None,
            Some("chunk"),
        ),
        rec(
            "2026-11-01T04:00:00Z",
            "failed",
            "r4",
            Some("sales"),
            0,
            None,
            Some("chunk"),
        ),
        rec(
            "2026-11-01T05:00:00Z",
            "archived",
            "r4",
            Some("sales"),
            500,
            Some("2026-11-01T03:00:00Z"),
            None,
        ),
        rec(
            "2026-11-01T23:00:00Z",
            "archived",
            "r5",
            Some("general"),
            2000,
            Some("2026-10-31T22:00:00Z"),
            None,
        ),
        rec(
            "2026-11-01T01:00:00Z",
            "not_available",
            "r6",
            Some("general"),
            0,
            None,
            Some("unavailable"),
        ),
        rec(
            "2026-11-02T00:00:00Z",
            "archived",
            "r7",
            Some("general"),
            9999,
            Some("2026-11-01T23:59:00Z"),
            None,
        ),
        rec(
            "2026-11-01T06:00:00Z",
            "suspended",
            "r8",
            None,
            5,
            None,
            None,
        ),
        rec(
            "2026-11-01T06:01:00Z",
            "archived",
            "r8",
            None,
            10,
            None,
            None,
        ),
        rec(
            "2026-11-01T06:02:00Z",
            "already_archived",
            "r8",
            None,
            0,
            None,
            None,
        ),
    ]
}

#[test]
fn the_numbers_match_the_hand_computed_fixture() {
    let r = summarize(
        &fixture(),
        t("2026-11-01T00:00:00Z"),
        t("2026-11-02T00:00:00Z"),
        t("2026-11-02T01:00:00Z"),
    );
    let names: Vec<&str> = r.targets.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(names, vec![UNROUTED, "general", "sales"]);

    let sales = &r.targets[2];
    assert_eq!((sales.archived, sales.failed, sales.bytes), (3, 1, 4500));
    assert_eq!(
        sales.failed_by_reason,
        BTreeMap::from([("chunk".to_string(), 1)])
    );
    assert_eq!(sales.success_rate, Some(0.75));
    // Latencies 30 s, 600 s, 7200 s: nearest rank p50 = 2nd, p95 = p99 = 3rd.
    let l = sales.latency.as_ref().unwrap();
    assert_eq!(
        (l.samples, l.p50_secs, l.p95_secs, l.p99_secs, l.max_secs),
        (3, 600, 7200, 7200, 7200)
    );
    let counts: Vec<u64> = sales.histogram.iter().map(|b| b.count).collect();
    assert_eq!(counts, vec![1, 0, 1, 0, 1, 0, 0]);
    let oldest = sales.oldest_unarchived.as_ref().unwrap();
    assert_eq!(oldest.recording_id, "r3");
    assert_eq!(oldest.first_failed_at, t("2026-11-01T02:00:00Z"));
    assert_eq!(oldest.reason_code.as_deref(), Some("chunk"));

    let general = &r.targets[1];
    assert_eq!(
        (general.archived, general.failed, general.bytes),
        (1, 1, 2000)
    );
    assert_eq!(general.success_rate, Some(0.5));
    assert_eq!(general.latency.as_ref().unwrap().p50_secs, 25 * 3600);
    assert_eq!(general.histogram[6].count, 1);
    assert_eq!(
        general.failed_by_reason,
        BTreeMap::from([("unavailable".to_string(), 1)])
    );

    let unrouted = &r.targets[0];
    assert_eq!(
        (unrouted.archived, unrouted.failed, unrouted.bytes),
        (1, 0, 10)
    );
    assert_eq!(unrouted.latency, None);

    let all = &r.total;
    assert_eq!((all.archived, all.failed, all.bytes), (5, 2, 6510));
    assert!((all.success_rate.unwrap() - 5.0 / 7.0).abs() < 1e-12);
    // 30 s, 600 s, 7200 s, 90000 s: p50 = 2nd (600), p95 = p99 = 4th.
    let l = all.latency.as_ref().unwrap();
    assert_eq!(
        (l.samples, l.p50_secs, l.p95_secs, l.p99_secs),
        (4, 600, 90_000, 90_000)
    );
    assert_eq!(all.oldest_unarchived.as_ref().unwrap().recording_id, "r6");
}

#[test]
fn an_empty_period_has_no_rates_and_renders() {
    let r = summarize(
        &[],
        t("2026-11-01T00:00:00Z"),
        t("2026-11-02T00:00:00Z"),
        Utc::now(),
    );
    assert!(r.targets.is_empty());
    assert_eq!(r.total.success_rate, None);
    assert!(to_markdown(&r).contains("| **all** | 0 | 0 | 0 B | – |"));
    assert!(to_html(&r).contains("<svg id=\"latency-chart\""));
}

#[test]
fn the_renderings_carry_the_numbers_and_escape_what_they_quote() {
    let mut records = fixture();
    records[0].target = Some("<script>".into());
    let r = summarize(
        &records,
        t("2026-11-01T00:00:00Z"),
        t("2026-11-02T00:00:00Z"),
        Utc::now(),
    );
    let md = to_markdown(&r);
    assert!(md.contains("| sales | 2 | 1 | 3.4 KiB | 66.7 % |"), "{md}");
    assert!(md.contains("| general | unavailable | 1 |"), "{md}");
    let html = to_html(&r);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    // Seven bars; the four non-empty bins hold one recording each, so each is at full height.
    assert_eq!(html.matches("class=\"bar\"").count(), 7);
    assert!(html.contains(&format!("height=\"{CHART_HEIGHT}\" fill")));
}

#[tokio::test]
async fn records_are_read_from_the_day_folders_of_the_window_and_the_report_replaces_itself() {
    let store = crate::store::MemoryStore::new("b");
    let layout = ArchiveLayout::new("p");
    for r in fixture() {
        crate::audit::write(&store, &layout, &r).await.unwrap();
    }
    let from = t("2026-11-01T00:00:00Z");
    let to = t("2026-11-02T00:00:00Z");
    let read = read_records(&store, &layout, from, to).await.unwrap();
    assert_eq!(read.len(), fixture().len() - 1);
    let report = summarize(&read, from, to, Utc::now());
    let keys = write(&store, &layout, &report).await.unwrap();
    let again = write(&store, &layout, &report).await.unwrap();
    assert_eq!(keys, again);
    assert_eq!(
        keys[0].as_str(),
        "p/_reports/audit/20261101T000000Z_20261102T000000Z.json"
    );
    let body = store.get(&keys[0]).await.unwrap().unwrap().body;
    let back: AuditReport = serde_json::from_slice(&body).unwrap();
    assert_eq!(back, report);
}
