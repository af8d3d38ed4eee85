//! The real `event-stream` binary under the Lambda Runtime API against the simulator and
//! moto: conversations ending on the socket while it runs reach the real ArchiveQueue (SQS)
//! as the messages archive-on-event consumes, and the real archive-on-event handler archives
//! each conversation once; the next invocation hands off on the same channel and fills the interval
//! between the two from analytics; the EMF line carries the run's figures; a bad input is
//! refused.

use std::collections::BTreeSet;
use std::time::Duration;

use gc_archive_it::runtime_api::{emf_line as emf, invoke_capturing, sample_event as sample};
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::GeneratorSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_streams_hands_off_and_fills_the_gap_between_invocations() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let hub = stack.sim.notifications();
    hub.set_heartbeat(Duration::from_millis(200));
    let queues = vec![hub.add_queue("Sales"), hub.add_queue("Support")];
    let mut env = stack.lambda_env("event-stream");
    env.insert("STREAM_GAP_SETTLE_SECS".into(), "0".into());
    env.insert("STREAM_GAP_MARGIN_SECS".into(), "1".into());
    env.insert("STREAM_GAP_LOOKBACK_SECS".into(), "600".into());
    env.insert("STREAM_HANDOFF_MARGIN_SECS".into(), "2".into());
    let bin = env!("CARGO_BIN_EXE_event-stream");
    let generate = |count| {
        stack.sim.generate_conversations(GeneratorSpec {
            count,
            per_second: 20.0,
            queue_ids: queues.clone(),
            duration_secs: 120,
            recording_bytes: 4_000,
        })
    };

    // First invocation: 8 s; conversations end while its socket is open.
    let first = invoke_capturing(
        bin,
        &env,
        sample("stream-schedule.json"),
        Duration::from_secs(10),
    );
    let during = async {
        while hub.open_sockets() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        generate(30).await.unwrap()
    };
    let (((kind, result), stdout), on_socket) =
        tokio::join!(async { first.await.unwrap() }, during);
    assert_eq!(kind, "response", "{result}");
    assert_eq!(result["stream"]["stopped"], "deadline", "{result}");
    assert_eq!(result["stream"]["conversationEnds"], 30, "{result}");
    assert_eq!(result["stream"]["enqueued"], 30, "{result}");
    assert_eq!(result["stream"]["channelsCreated"], 1);
    let line = emf(&stdout, "ConversationEnds").expect("the run's EMF line");
    assert_eq!(line["Function"], "event-stream");
    assert_eq!(line["ConversationEnds"], 30.0);
    assert!(line["EndToEnqueueLagP99"].as_f64().is_some());

    // Between the invocations nothing is receiving: these are lost on the socket.
    let lost_before = hub.stats().lost;
    let between = generate(10).await.unwrap();
    assert_eq!(
        hub.stats().lost - lost_before,
        20,
        "2 events each, no socket"
    );

    let ((kind, second), _) = invoke_capturing(
        bin,
        &env,
        serde_json::json!({"action": "stream", "seconds": 4}),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(kind, "response", "{second}");
    assert_eq!(
        second["stream"]["channelsCreated"], 0,
        "the channel is reused"
    );
    assert_eq!(second["stream"]["gapFilled"], 10, "{second}");
    assert!(second["stream"]["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["cause"] == "handoff"));
    let state: serde_json::Value = serde_json::from_slice(
        &stack
            .get_bytes(&format!("{PREFIX}/_state/stream/state.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        state["lease"].is_null(),
        "released at the hand-off: {state}"
    );
    assert_eq!(state["stopped"], "handoff");
    assert_eq!(state["gaps"].as_array().map(Vec::len), Some(0), "{state}");

    let bodies = stack.archive_queue_bodies(true).await.unwrap();
    let sent: Vec<&str> = bodies
        .iter()
        .map(|b| b["conversationId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = sent.iter().copied().collect();
    assert_eq!(unique.len(), sent.len(), "each once");
    let want: BTreeSet<&str> = on_socket
        .iter()
        .chain(&between)
        .map(String::as_str)
        .collect();
    assert_eq!(unique, want);
    assert!(bodies
        .iter()
        .all(|b| b["origin"] == "stream" && b["version"] == 1 && b["orgId"] == stack.sim.org_id()));

    // archive-on-event takes them as they are: each conversation archived once.
    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    stack
        .drain(&archive, &transfer, Duration::from_secs(180), |_| {})
        .await
        .unwrap();
    let keys = stack.list_keys(&format!("{PREFIX}/")).await.unwrap();
    for cid in &want {
        let n = keys
            .iter()
            .filter(|k| k.contains(cid) && k.ends_with(".manifest.json"))
            .count();
        assert_eq!(n, 1, "{cid}");
    }

    let ((kind, refused), _) = invoke_capturing(
        bin,
        &env,
        serde_json::json!({"action": "replay"}),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(kind, "error");
    assert_eq!(
        refused["errorType"], "gc-archive.InvalidPayload",
        "{refused}"
    );
}
