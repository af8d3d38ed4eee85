//! The real `chunk-recording` binary, run the way Lambda runs it (Runtime API, environment from
//! the template), archives a recording from an SQS event against the simulator and moto.

use std::time::Duration;

use gc_archive_it::runtime_api::invoke_once;
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_archives_a_recording_from_an_sqs_event() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::WavUlaw)));
    let body = stack.transfer_job(&cid, &rid).to_string();
    let event = serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": stack.transfer_queue.arn, "awsRegion": "us-east-1"
    }]});
    let (kind, result) = invoke_once(
        env!("CARGO_BIN_EXE_chunk-recording"),
        &stack.lambda_env("chunk-recording"),
        event,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(kind, "response", "{result}");
    assert_eq!(result["batchItemFailures"], serde_json::json!([]));
    let keys = stack
        .list_keys(&format!("{PREFIX}/{}/", stack.sim.org_id()))
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("{rid}.manifest.json"))),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_an_init_error_naming_the_settings() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let mut env = stack.lambda_env("chunk-recording");
    env.remove("ARCHIVE_BUCKET");
    env.insert("GENESYS_ORG_ID".into(), "not/valid".into());
    // The process must fail at init, before answering any invocation, naming every problem.
    let outcome = invoke_once(
        env!("CARGO_BIN_EXE_chunk-recording"),
        &env,
        serde_json::json!({}),
        Duration::from_secs(20),
    )
    .await;
    let err = outcome
        .expect_err("a misconfigured function must not answer")
        .to_string();
    assert!(err.contains("exited"), "{err}");
    assert!(
        err.contains("ARCHIVE_BUCKET") && err.contains("GENESYS_ORG_ID"),
        "{err}"
    );
}
