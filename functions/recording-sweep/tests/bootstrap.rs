//! The real `recording-sweep` binary under the Lambda Runtime API, fed the sample events of
//! `events/`: the scheduled sweep puts the conversation whose event was lost on the
//! ArchiveQueue and reports the lag metrics, the reconciliation names it as missing and writes
//! its report, and a bad input is refused with the inputs it expects.

use std::time::Duration;

use gc_archive_it::runtime_api::{emf_line as emf, invoke_capturing, sample_event as sample};
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_sweeps_reconciles_and_refuses_what_it_does_not_know() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec {
        start: Some(chrono::Utc::now() - chrono::Duration::hours(3)),
        duration_secs: 300,
        ..ConversationSpec::default()
    });
    stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::WavUlaw)));
    let mut env = stack.lambda_env("recording-sweep");
    // Each run looks back four hours before the watermark, so the second run sees it again.
    env.insert("SWEEP_OVERLAP_SECS".into(), "14400".into());
    let bin = env!("CARGO_BIN_EXE_recording-sweep");

    let ((kind, result), stdout) = invoke_capturing(
        bin,
        &env,
        sample("schedule-sweep.json"),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert_eq!(kind, "response", "{result}");
    assert_eq!(result["sweep"]["enqueued"], 1, "{result}");
    let lag = emf(&stdout, "OldestUnarchivedSeconds").expect("the sweep's EMF line");
    assert_eq!(lag["Function"], "recording-sweep");
    let oldest = lag["OldestUnarchivedSeconds"].as_f64().unwrap();
    assert!(
        (2.0 * 3600.0..4.0 * 3600.0).contains(&oldest),
        "ended about 2 h 55 min ago: {oldest}"
    );
    let queued = stack
        .sqs
        .receive_message()
        .queue_url(&stack.archive_queue.url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<serde_json::Value> = queued
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["conversationId"], cid.as_str());
    assert_eq!(bodies[0]["origin"], "sweep");

    // A second scheduled run sees it again (the overlap) and finds it in the journal: it is
    // not sent again.
    let ((_, again), _) = invoke_capturing(
        bin,
        &env,
        sample("schedule-sweep.json"),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert_eq!(again["sweep"]["enqueued"], 0, "{again}");
    assert_eq!(again["sweep"]["alreadyEnqueued"], 1, "{again}");

    let ((kind, summary), stdout) = invoke_capturing(
        bin,
        &env,
        sample("reconcile-daily.json"),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert_eq!(kind, "response", "{summary}");
    assert_eq!(summary["missing"], 1, "{summary}");
    assert_eq!(summary["complete"], false);
    let missing = emf(&stdout, "ReconcileMissing").expect("the reconciliation's EMF line");
    assert_eq!(missing["ReconcileMissing"], 1.0);
    let report_key = summary["report"].as_str().unwrap();
    assert!(report_key.starts_with(&format!("{PREFIX}/_reports/reconcile/")));
    let report: serde_json::Value =
        serde_json::from_slice(&stack.get_bytes(report_key).await.unwrap()).unwrap();
    assert_eq!(report["unarchived"][0]["conversationId"], cid.as_str());

    let ((kind, refused), _) = invoke_capturing(
        bin,
        &env,
        serde_json::json!({"action": "purge"}),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(kind, "error");
    assert_eq!(
        refused["errorType"], "gc-archive.InvalidPayload",
        "{refused}"
    );
    assert!(
        refused["errorMessage"]
            .as_str()
            .unwrap()
            .contains("\"action\":\"backfill\""),
        "{refused}"
    );
}
