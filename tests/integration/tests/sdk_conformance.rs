//! The simulator against the official Genesys Cloud Python SDK (`purecloudplatformclientv2`,
//! pinned in `requirements-genesys-sdk.txt`, installed in `.venv-sdk` by `make venv`):
//! `sdk_conformance.py` logs in and calls every endpoint the
//! simulator serves through the SDK, and checks each raw response against the SDK's models
//! (unknown fields, JSON types, enum values) and the deserialized objects for the SDK's
//! out-of-date marker. The simulator was written by us; the SDK is generated from the real
//! API's swagger, so it is the referee for shapes.

use std::path::PathBuf;

use gc_archive_it::venv;
use genesys_sim::{
    AcceptedBody, Behaviour, Codec, ConversationSpec, DeploymentSpec, FileState, MediaContentType,
    MediaSource, MediaStatus, MediaUriKeys, NoneFormat, RangeSupport, RecordingSpec, SimConfig,
    Simulator,
};
use serde_json::{json, Value};

fn script() -> PathBuf {
    venv::workspace_root().join("tests/integration/tests/sdk_conformance.py")
}

/// Runs the script; returns (exit success, stdout + stderr).
async fn run(args: &[String]) -> (bool, String) {
    let out = tokio::process::Command::new(venv::sdk_python())
        .arg(script())
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("run sdk_conformance.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Conversations covering what the simulator serves; returns the ids the script needs.
async fn scenario(sim: &Simulator) -> Value {
    let mut recordings = serde_json::Map::new();
    let mut conversations = Vec::new();
    let mut add = |name: &str, spec: RecordingSpec| {
        let cid = sim.add_conversation(ConversationSpec {
            external_tag: (name == "audio_mp3").then(|| "pre-existing-tag".to_string()),
            ..Default::default()
        });
        let rid = sim.add_recording(&cid, spec);
        conversations.push(cid.clone());
        recordings.insert(name.to_string(), json!([cid, rid]));
    };
    for (name, src) in [
        ("audio_wav", MediaSource::Real(Codec::WavPcm)),
        ("audio_opus", MediaSource::Real(Codec::OggOpus)),
        ("audio_mp3", MediaSource::Real(Codec::Mp3)),
        (
            "audio_synth",
            MediaSource::SynthWav {
                size_bytes: 200_000,
            },
        ),
        ("chat", MediaSource::Chat),
        ("messaging", MediaSource::Messaging),
        ("email", MediaSource::Email),
        ("screen", MediaSource::Screen),
    ] {
        add(name, RecordingSpec::new(src));
    }
    let mut archived = RecordingSpec::new(MediaSource::Real(Codec::OggVorbis));
    archived.file_state_override = Some(FileState::Archived);
    add("archived", archived);
    let mut deleted = RecordingSpec::new(MediaSource::Real(Codec::WavUlaw));
    deleted.file_state_override = Some(FileState::Deleted);
    add("deleted", deleted);
    let mut transcoding = RecordingSpec::new(MediaSource::Real(Codec::Webm));
    transcoding.transcoding_polls = 1;
    add("transcoding", transcoding);
    // A conversation with two recordings (batch request without recordingId).
    let first = conversations[0].clone();
    sim.add_recording(&first, RecordingSpec::new(MediaSource::Real(Codec::Webm)));

    // Custom attributes written over HTTP before the SDK looks at them.
    let custom = sim.add_conversation(ConversationSpec::default());
    sim.add_recording(&custom, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    conversations.push(custom.clone());
    let http = reqwest::Client::new();
    let tok: Value = http
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(sim.client_id(), Some(sim.client_secret()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let tok = tok["access_token"].as_str().expect("access_token");
    let r = http
        .put(format!(
            "{}/api/v2/conversations/{custom}/customattributes",
            sim.base_url()
        ))
        .bearer_auth(tok)
        .json(&json!({
            "id": "legacy",
            "schemaId": "archive-schema",
            "customAttributes": {"archivedAt": "2024-01-01T00:00:00Z", "count": 3, "ok": true}
        }))
        .send()
        .await
        .expect("PUT custom attributes");
    assert!(r.status().is_success(), "{}", r.status());
    sim.add_retention_policy(json!({
        "name": "Delete calls after 3 days",
        "order": 1,
        "enabled": true,
        "description": "short retention",
        "mediaPolicies": {"callPolicy": {"actions": {
            "retainRecording": true,
            "deleteRecording": true,
            "alwaysDelete": false,
            "retentionDuration": {"deleteRetention": {"days": 3}}
        }}},
        "selfUri": "/api/v2/recording/mediaretentionpolicies/p1"
    }));
    // Notifications: a queue whose topic is permitted, one whose topic is rejected, and the
    // bodies the sockets carry (a queue conversation snapshot live and ended, socket_closing).
    let hub = sim.notifications();
    let queue = hub.add_queue("Sales");
    let refused = hub.add_queue("Restricted");
    hub.reject_topics(
        &format!("v2.routing.queues.{refused}"),
        &["conversation:communication:view"],
    );
    let now = chrono::Utc::now();
    let body = |ended| {
        genesys_sim::queue_conversation_event(
            "c0ffee00-0000-4000-8000-000000000001",
            &queue,
            "a9e1f6a0-0000-4000-8000-000000000002",
            now - chrono::Duration::minutes(3),
            now,
            ended,
        )
    };
    // Messaging: a conversation to send media on (the status stays `uploading` for one poll
    // after the upload, so the script sees both shapes) and a web deployment.
    let messaging = sim.messaging();
    let (mcid, mcomm) = (
        "5e7a0c1d-0000-4000-8000-00000000a001",
        "5e7a0c1d-0000-4000-8000-00000000a002",
    );
    messaging.add_conversation(mcid, mcomm);
    messaging.set_uploading_polls(1);
    messaging.set_deployment(
        "dep-attachments",
        DeploymentSpec {
            enable_attachments: true,
            file_types: vec!["image/png".into(), "application/pdf".into()],
            max_file_size_kb: Some(10_240),
        },
    );
    json!({
        "messaging": {"conversation": mcid, "communication": mcomm,
            "deployment": "dep-attachments"},
        "queues": [queue, refused],
        "events": {"QueueConversationEventTopicConversation": [body(false), body(true)],
            "SystemMessageSystemMessage": [{"message": "Socket closing", "channelId": "streaming-0-x"}]},
        "conversations": conversations,
        "recordings": recordings,
        "custom": custom,
        "custom_id": "legacy",
        "schema_id": "archive-schema",
    })
}

async fn check(cfg: SimConfig, mode: &str) {
    let sim = Simulator::start(cfg).await.expect("start simulator");
    let ids = scenario(&sim).await;
    let (ok, report) = run(&[
        "--base".into(),
        sim.base_url(),
        "--client-id".into(),
        sim.client_id().into(),
        "--client-secret".into(),
        sim.client_secret().into(),
        "--ids".into(),
        ids.to_string(),
        "--mode".into(),
        mode.into(),
    ])
    .await;
    assert!(
        ok,
        "simulator responses do not conform to the SDK ({mode}):\n{report}"
    );
    println!("{report}");
    // The SDK really talked to this simulator, login included.
    let log = sim.requests();
    assert!(log
        .iter()
        .any(|r| r.path == "/oauth/token" && r.status == 200));
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v2/recording/batchrequests"));
    assert!(log.iter().any(|r| r.path.starts_with("/media/")));
    // The media the script uploaded was sent, and the upload reached the simulator intact.
    let sent = sim.messaging().sent_messages();
    assert!(
        sent.iter().any(|m| !m.media_ids.is_empty()),
        "no media message sent: {sent:?}"
    );
    assert!(sim
        .messaging()
        .all_media()
        .iter()
        .all(|m| m.status == MediaStatus::Valid && m.received_length == Some(m.declared_length)));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_defaults_conform_to_the_python_sdk_models() {
    check(SimConfig::default(), "defaults").await;
}

/// The switches that change JSON shapes the SDK models (except the custom attribute list
/// shapes, which exist to model responses that are *not* the SDK's `CustomAttributesListing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_with_other_switches_conforms_to_the_python_sdk_models() {
    check(
        SimConfig {
            behaviour: Behaviour {
                none_format: NoneFormat::ServesOriginal,
                media_uri_keys: MediaUriKeys::PerChannel,
                accepted_body: AcceptedBody::RecordingJson,
                media_content_type: MediaContentType::Accurate,
                range: RangeSupport::Honoured,
                media_checksums: true,
                ..Default::default()
            },
            batch_polls: 2,
            ..SimConfig::default()
        },
        "NONE serves original, per-channel mediaUris, 202 with Recording JSON",
    )
    .await;
}

/// The checker itself: an unknown field, a wrong type and an unknown enum value are caught.
#[tokio::test]
async fn checker_flags_unknown_fields_wrong_types_and_unknown_enums() {
    let (ok, report) = run(&["--self-test".into()]).await;
    assert!(ok, "self-test failed:\n{report}");
    println!("{report}");
}
