//! Results go out: a signed webhook (Standard Webhooks) and an EventBridge `RecordingArchived`
//! event, from the same handler path the Lambda runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use gc_archive_it::stack::{LocalStack, StackOptions};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};
use hmac::{Hmac, Mac};

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_recordings_are_announced_by_signed_webhook_and_eventbridge() {
    // A webhook receiver on loopback that records what it gets.
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The signing secret lives in Secrets Manager, as in production.
    let secret_b64 =
        base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
    let stack = LocalStack::start(StackOptions {
        env: vec![
            ("WEBHOOK_URL".into(), hook_url),
            ("WEBHOOK_SECRET_ID".into(), "gc-archive/webhook".into()),
            ("RESULT_EVENT_BUS".into(), "gc-archive-results".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack
        .moto
        .secrets()
        .await
        .create_secret()
        .name("gc-archive/webhook")
        .secret_string(format!("whsec_{secret_b64}"))
        .send()
        .await
        .unwrap();
    // Result events: bus → rule on our source → queue we can read.
    let (results, results_arn) =
        gc_archive_it::stack::create_queue_with(&stack.sqs, "results", &[])
            .await
            .unwrap();
    stack
        .eventbridge
        .create_event_bus()
        .name("gc-archive-results")
        .send()
        .await
        .unwrap();
    stack
        .eventbridge
        .put_rule()
        .name("results")
        .event_bus_name("gc-archive-results")
        .event_pattern(r#"{"source":["gc-archive"]}"#)
        .send()
        .await
        .unwrap();
    stack
        .eventbridge
        .put_targets()
        .rule("results")
        .event_bus_name("gc-archive-results")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(results_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::Webm)));
    let deps = stack.deps("chunk-recording").await.unwrap();
    let job = stack.transfer_job(&cid, &rid);
    gc_archive::handlers::chunk_recording(
        &deps,
        job,
        tokio::time::Instant::now() + Duration::from_secs(60),
        "n",
    )
    .await
    .unwrap();

    // The webhook: one POST, signed over id.timestamp.body with the secret's key bytes.
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let sig = headers["webhook-signature"].to_str().unwrap();
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(sig, expected);
    let payload: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["type"], "RecordingArchived");
    assert_eq!(payload["recordingId"], rid.as_str());
    assert!(payload["objectKey"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{rid}.webm.enc")));

    // The EventBridge event.
    let msgs = stack
        .sqs
        .receive_message()
        .queue_url(&results)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(msgs.messages().len(), 1);
    let event: serde_json::Value =
        serde_json::from_str(msgs.messages()[0].body().unwrap()).unwrap();
    assert_eq!(event["detail-type"], "RecordingArchived");
    assert_eq!(event["source"], "gc-archive");
    assert_eq!(event["detail"]["recordingId"], rid.as_str());
    assert_eq!(event["detail"]["sha256"], payload["sha256"]);
}
