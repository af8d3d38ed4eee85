//! routing-bench: what routing costs per recording. Parses and validates a large routing
//! document (8 targets, `--rules` rules of 20 queue ids each plus attribute and wrap-up rules),
//! then routes `--routes` recordings with varied facts (a match early, late, and none: the
//! default after every rule), builds the facts from a six-participant conversation, and
//! records a route decision in a store (the two requests a new recording pays: GET 404 + PUT,
//! one GET when resumed). Prints ns per operation (min of `--repeats` runs) and the request
//! count; the target is "microseconds" per route.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use gc_archive::genesys::models::Conversation;
use gc_archive::routing::{RecordingFacts, RoutingConfig};
use gc_archive_bench::{machine, print_machine};

#[derive(Parser, Debug)]
#[command(about = "Cost of routing a recording")]
struct Args {
    #[arg(long, default_value_t = 50)]
    rules: usize,
    #[arg(long, default_value_t = 200_000)]
    routes: usize,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

fn document(rules: usize) -> String {
    let mut doc = String::from("version: 1\ntargets:\n");
    for t in 0..8 {
        doc.push_str(&format!(
            "  t{t}:\n    bucket: acme-recordings-{t}\n    prefix: p{t}\n    retentionDays: 365\n    worm: {}\n",
            t % 2 == 0
        ));
    }
    doc.push_str("rules:\n");
    for r in 0..rules {
        let queues: Vec<String> = (0..20).map(|q| format!("q-{r}-{q}")).collect();
        doc.push_str(&format!(
            "  - name: rule {r}\n    target: t{}\n    when:\n      media: [audio, screen]\n      queueIds: [{}]\n",
            r % 8,
            queues.join(", ")
        ));
        if r % 5 == 0 {
            doc.push_str(&format!(
                "      attributes:\n        tier: gold\n        region: r{r}\n      wrapupCodes: [w-{r}]\n"
            ));
        }
    }
    doc.push_str("defaultTarget: t7\n");
    doc
}

fn facts(rule: Option<usize>) -> RecordingFacts {
    RecordingFacts {
        media: Some(gc_archive::config::RecordingMedia::Audio),
        queue_ids: [
            "q-ivr".to_string(),
            rule.map_or("q-none".into(), |r| format!("q-{r}-7")),
        ]
        .into(),
        division_ids: ["d-1".to_string()].into(),
        direction: Some("inbound".into()),
        wrapup_codes: ["w-x".to_string()].into(),
        attributes: [("tier".to_string(), "silver".to_string())].into(),
    }
}

/// Minimum over runs of the mean ns per call.
fn time(repeats: usize, n: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    print_machine(&machine());
    let doc = document(args.rules);
    let parse_ns = time(args.repeats, 200, |_| {
        black_box(RoutingConfig::from_document(black_box(&doc)).is_ok());
    });
    let config = RoutingConfig::from_document(&doc)?;
    println!(
        "routing document: {} targets, {} rules, {} bytes of YAML; parse + validate {:.1} µs",
        config.targets.len(),
        config.rules.len(),
        doc.len(),
        parse_ns / 1000.0
    );
    // Rules r % 5 == 0 also ask for attributes and a wrap-up code these facts lack, so the
    // matching rules are chosen among the others.
    let last = (0..args.rules).rev().find(|r| r % 5 != 0).unwrap_or(1);
    for (label, rule) in [
        ("first rule matches", Some(1)),
        ("middle rule matches", Some(args.rules / 2 + 1)),
        ("last plain rule matches", Some(last)),
        ("no rule: default target", None),
    ] {
        let f = facts(rule);
        let decided = config.route(&f)?;
        let expected = format!(
            "{} by {}",
            decided.target_name,
            decided.rule.unwrap_or("the default")
        );
        let ns = time(args.repeats, args.routes, |_| {
            let r = config.route(black_box(&f));
            black_box(r.map(|r| r.target_name.len()).unwrap_or(0));
        });
        let explain_ns = time(args.repeats, args.routes / 20, |_| {
            let r = config.explain(black_box(&f));
            black_box(r.map(|r| r.explanation.len()).unwrap_or(0));
        });
        println!(
            "route, {label:25} {ns:8.0} ns → {expected}; with the explanation {:.1} µs",
            explain_ns / 1000.0
        );
    }
    let conversation: Conversation = serde_json::from_value(serde_json::json!({
        "id": "c-1",
        "startTime": "2026-11-20T14:03:11.512Z",
        "divisions": [{"division": {"id": "d-1"}, "entities": []}],
        "participants": (0..6).map(|i| serde_json::json!({
            "id": format!("p{i}"),
            "purpose": if i == 0 { "customer" } else { "agent" },
            "queueId": format!("q-{i}"),
            "wrapup": {"code": format!("w-{i}")},
            "attributes": {"tier": "gold", "flow": "main", "lang": "en"},
            "calls": [{"id": format!("s{i}"), "direction": "inbound"}],
        })).collect::<Vec<_>>(),
    }))?;
    let facts_ns = time(args.repeats, args.routes / 4, |_| {
        black_box(RecordingFacts::of_conversation(
            black_box(&conversation),
            None,
        ));
    });
    println!("facts from a 6-participant conversation {facts_ns:8.0} ns");

    // The route record: what a new recording pays in requests, counted by the store.
    let store = gc_archive::store::MemoryStore::new("acme-archive");
    let layout = gc_archive::store::ArchiveLayout::new("gc");
    let key = layout.route_record_key(
        &gc_archive::ConversationId::parse("c-1")?,
        &gc_archive::RecordingId::parse("r-1")?,
    );
    use gc_archive::store::ObjectStore;
    let t = Instant::now();
    let n = 2_000;
    for i in 0..n {
        let k = gc_archive::store::ObjectKey::new(format!("{}-{i}", key));
        let existing = store.get(&k).await?;
        if existing.is_none() {
            store
                .put_if_absent(&k, bytes::Bytes::from_static(b"{}"), "application/json")
                .await?;
        }
    }
    println!(
        "route record, in memory: {:.1} µs per new recording; S3 requests: 2 per new recording (GET 404 + PUT If-None-Match), 1 per resumed or redelivered one (GET); compliance gate: 7 bucket reads per target per 15 min per warm container",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    Ok(())
}
