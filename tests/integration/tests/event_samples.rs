//! The sample events in `events/` (used by `cargo lambda invoke` and `sam local invoke`) are
//! real shapes: they parse, round-trip, and the handlers process them against the simulator
//! and moto.

use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use gc_archive::events::{
    parse_genesys_event_value, EventBridgeEnvelope, EventIntent, TransferMessage,
};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec, SimConfig};

fn sample(name: &str) -> serde_json::Value {
    let path = gc_archive_it::venv::workspace_root()
        .join("events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sample_files() -> Vec<PathBuf> {
    let dir = gc_archive_it::venv::workspace_root().join("events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_sample_round_trips_through_its_type() {
    let files = sample_files();
    assert!(files.len() >= 8, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let value = sample(&name);
        if name.starts_with("sqs-") {
            let event: SqsEvent = serde_json::from_value(value.clone()).unwrap();
            let again: SqsEvent =
                serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
            assert_eq!(event.records.len(), again.records.len());
            for (a, b) in event.records.iter().zip(&again.records) {
                assert_eq!(a.body, b.body);
                assert_eq!(a.message_id, b.message_id);
                assert_eq!(a.event_source_arn, b.event_source_arn);
            }
        } else if name.starts_with("function-url-") {
            let event: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
                serde_json::from_value(value.clone()).unwrap();
            let again: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
                serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
            assert_eq!(event.raw_path, again.raw_path, "{name}");
            assert_eq!(event.body, again.body, "{name}");
            // Run end to end in tests/upload_proxy.rs.
        } else if value.get("action").is_some() {
            // recording-sweep's input events: checked in the test below.
            continue;
        } else {
            let env: EventBridgeEnvelope = serde_json::from_value(value.clone()).unwrap();
            let again: EventBridgeEnvelope =
                serde_json::from_value(serde_json::to_value(&env).unwrap()).unwrap();
            assert_eq!(env, again, "{name}");
        }
    }
}

#[test]
fn conversation_samples_ask_for_archiving_and_the_unknown_topic_is_ignored() {
    let expected_cid = TransferMessage::parse(
        sample("sqs-transfer-job.json")["Records"][0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .conversation_id;
    for name in [
        "eventbridge-conversation-customer-end.json",
        "eventbridge-conversation-user-end.json",
        "eventbridge-conversation-acw.json",
        "eventbridge-conversation-wrapup.json",
    ] {
        match parse_genesys_event_value(sample(name)).unwrap() {
            EventIntent::Conversation {
                conversation, org, ..
            } => {
                assert_eq!(conversation, expected_cid, "{name}");
                assert!(org.is_some(), "{name}: org from the partner event source");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        parse_genesys_event_value(sample("eventbridge-unknown-topic.json")).unwrap(),
        EventIntent::Ignored { .. }
    ));
    assert!(matches!(
        parse_genesys_event_value(sample("schedule-sweep.json")).unwrap_or(EventIntent::Ignored {
            topic: String::new()
        }),
        EventIntent::Ignored { .. }
    ));
    // recording-sweep's inputs.
    use gc_archive::handlers::recording_sweep::SweepRequest;
    assert_eq!(
        SweepRequest::parse(sample("schedule-sweep.json")).unwrap(),
        SweepRequest::Sweep {}
    );
    assert!(matches!(
        SweepRequest::parse(sample("backfill-request.json")).unwrap(),
        SweepRequest::Backfill { from, to, window_hours: Some(24) } if from < to
    ));
    assert!(matches!(
        SweepRequest::parse(sample("reconcile-daily.json")).unwrap(),
        SweepRequest::Reconcile { days: Some(1), .. }
    ));
    // storage-router's inputs; the routing document it validates is the documented example.
    use gc_archive::handlers::storage_router::{validate, RouterRequest};
    assert_eq!(
        RouterRequest::parse(sample("compliance-check.json")).unwrap(),
        RouterRequest::Check {}
    );
    assert_eq!(
        RouterRequest::parse(sample("audit-report.json")).unwrap(),
        RouterRequest::Report {
            from: None,
            to: None,
            days: Some(7)
        }
    );
    let RouterRequest::Validate { document, config } =
        RouterRequest::parse(sample("validate-routing.json")).unwrap()
    else {
        panic!("validate-routing.json is not a validate request");
    };
    let example = std::fs::read_to_string(
        gc_archive_it::venv::workspace_root().join("docs/routing-example.yaml"),
    )
    .unwrap();
    assert_eq!(document.as_deref(), Some(example.as_str()));
    let answer = validate(document, config).unwrap();
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["targets"], serde_json::json!(["general", "sales"]));
    use gc_archive::handlers::event_stream::StreamRequest;
    assert_eq!(
        StreamRequest::parse(sample("stream-schedule.json")).unwrap(),
        StreamRequest::Stream { seconds: None }
    );
    assert_eq!(
        StreamRequest::parse(sample("stream-bounded.json")).unwrap(),
        StreamRequest::Stream { seconds: Some(60) }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_process_the_sample_events() {
    let job = TransferMessage::parse(
        sample("sqs-transfer-job.json")["Records"][0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let stack = LocalStack::start(StackOptions {
        sim: SimConfig {
            org_id: job.org_id.to_string(),
            ..SimConfig::default()
        },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec {
        id: Some(job.conversation_id.to_string()),
        ..ConversationSpec::default()
    });
    stack.sim.add_recording(
        &cid,
        RecordingSpec {
            id: Some(job.recording_id.to_string()),
            ..RecordingSpec::new(MediaSource::Real(Codec::OggOpus))
        },
    );
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);

    // chunk-recording on the transfer job sample: archived.
    let transfer = stack.deps("chunk-recording").await.unwrap();
    let out = gc_archive::handlers::chunk_recording(
        &transfer,
        sample("sqs-transfer-job.json"),
        deadline(),
        "sample",
    )
    .await
    .unwrap();
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    let keys = stack
        .s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{PREFIX}/{}/", job.org_id))
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = keys.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        names
            .iter()
            .any(|k| k.ends_with(&format!("{}.opus.enc", job.recording_id))),
        "{names:?}"
    );

    // archive-on-event on the SQS batch sample: the event and its duplicate are settled (already
    // archived), the poison message goes to the DLQ with its reason.
    let archive = stack.deps("archive-on-event").await.unwrap();
    let out = gc_archive::handlers::archive_on_event(
        &archive,
        sample("sqs-archive-batch.json"),
        deadline(),
        "sample",
    )
    .await
    .unwrap();
    assert_eq!(out["batchItemFailures"], serde_json::json!([]));
    let dlq = stack
        .sqs
        .receive_message()
        .queue_url(&stack.archive_queue.dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(dlq.messages().len(), 1);
    let poison = sample("sqs-archive-batch.json")["Records"][2]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dlq.messages()[0].body(), Some(poison.as_str()));

    // The direct EventBridge sample (sam local invoke path) is acknowledged: already archived.
    let out = gc_archive::handlers::archive_on_event(
        &archive,
        sample("eventbridge-conversation-customer-end.json"),
        deadline(),
        "sample",
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "done");
}
