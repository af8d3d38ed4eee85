//! The audit report's HTML, opened in headless Chromium: the screenshot shows the latency
//! chart with one bar per non-empty bin, each as tall as its count says.

use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use gc_archive::audit::report::{self, BAR_COLOUR, CHART_HEIGHT};
use gc_archive::audit::AuditRecord;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn archived(rid: usize, end: DateTime<Utc>, latency_secs: i64) -> AuditRecord {
    AuditRecord {
        at: end + Duration::seconds(latency_secs),
        outcome: "archived".into(),
        org_id: "o".into(),
        conversation_id: format!("c{rid}"),
        recording_id: format!("r{rid}"),
        object_key: None,
        plaintext_sha256: None,
        bytes: 1000,
        duration_ms: 1,
        retries: 0,
        url_refreshes: 0,
        invocations: 1,
        reason_code: None,
        reason: None,
        worker_id: "w".into(),
        function: "archive-on-event".into(),
        target: Some("general".into()),
        conversation_end: Some(end),
    }
}

#[test]
fn the_html_reports_chart_renders_in_headless_chromium() {
    let browser = chromium();
    assert!(
        std::path::Path::new(&browser).exists(),
        "{browser} is missing: `make test` installs Debian's chromium (or set CHROMIUM)"
    );
    // 8 recordings under a minute, 4 at 1-5 min, 2 at 5-15 min, 1 over a day.
    let from: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    let end = from + Duration::hours(1);
    let mut records = Vec::new();
    for (i, latency) in [
        10, 20, 30, 40, 50, 55, 58, 59, 100, 200, 250, 299, 400, 800, 90_000,
    ]
    .into_iter()
    .enumerate()
    {
        records.push(archived(i, end, latency));
    }
    let r = report::summarize(&records, from, from + Duration::days(3), Utc::now());
    let counts: Vec<u64> = r.total.histogram.iter().map(|b| b.count).collect();
    assert_eq!(counts, vec![8, 4, 2, 0, 0, 0, 1]);

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report::to_html(&r)).unwrap();
    let shot = dir.path().join("shot.png");
    let profile = dir.path().join("profile");
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=900,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let is_bar = |x: usize, y: usize| {
        let p = &buf[(y * w + x) * channels..];
        let (r, g, b) = BAR_COLOUR;
        p[0].abs_diff(r) <= 2 && p[1].abs_diff(g) <= 2 && p[2].abs_diff(b) <= 2
    };
    // Columns holding bar pixels, grouped into runs: one run per drawn bar, with its height.
    let heights: Vec<usize> = (0..w)
        .map(|x| (0..h).filter(|&y| is_bar(x, y)).count())
        .collect();
    let mut bars = Vec::new();
    let mut x = 0;
    while x < w {
        if heights[x] > 0 {
            let start = x;
            while x < w && heights[x] > 0 {
                x += 1;
            }
            bars.push((
                x - start,
                heights[start..x].iter().copied().max().unwrap_or(0),
            ));
        }
        x += 1;
    }
    assert_eq!(bars.len(), 4, "bars (width, height) seen: {bars:?}");
    let tall = CHART_HEIGHT as f64;
    for ((width, height), count) in bars.iter().zip([8u64, 4, 2, 1]) {
        assert!((58..=62).contains(width), "bar width {width}");
        let want = tall * count as f64 / 8.0;
        assert!(
            (*height as f64 - want).abs() <= 2.0,
            "a bar of {count} is {height} px, expected {want}: {bars:?}"
        );
    }
}
