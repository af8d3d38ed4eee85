//! The real `archive-on-event` binary under the Lambda Runtime API: a direct EventBridge event
//! (the `sam local invoke` path) archives the conversation's recording.

use std::time::Duration;

use gc_archive_it::runtime_api::invoke_once;
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_archives_a_conversation_from_an_eventbridge_event() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let event = serde_json::json!({
        "version": "0", "id": "e-1", "detail-type": "v2.detail.events.conversation.{id}.customer.end",
        "source": format!("aws.partner/genesys.com/cloud/{}/gc-archive", stack.sim.org_id()),
        "account": "123456789012", "time": chrono::Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": stack.conversation_event(&cid, "customer.end"),
    });
    let (kind, result) = invoke_once(
        env!("CARGO_BIN_EXE_archive-on-event"),
        &stack.lambda_env("archive-on-event"),
        event,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(kind, "response", "{result}");
    assert_eq!(result["status"], "done");
    let keys = stack
        .list_keys(&format!("{PREFIX}/{}/", stack.sim.org_id()))
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with(&format!("{rid}.opus.enc"))),
        "{keys:?}"
    );
    assert!(stack.sim.external_tag(&cid).is_some());
}
