//! The archive pipeline against what a real org and account do, not what our client expects:
//! every kind of recording in one conversation, recordings failing on their own, Genesys' own
//! cold storage, several media streams, the receive limit, write-back next to other
//! integrations, non-ASCII input, and every UNCONFIRMED Genesys behaviour in each of its
//! variants (the simulator's switches, genesys-api.md §3–§4).

use std::time::Duration;

use gc_archive::handlers::{process_conversation, HandlerDeps};
use gc_archive::store::manifest::Manifest;
use gc_archive::transfer::TransferOutcome;
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use gc_archive_it::transfer_kit::{Kit, KitOptions};
use genesys_sim::{
    AcceptedBody, Behaviour, Codec, ConversationSpec, CustomAttributesListShape, ExpiredUrl, Fault,
    FaultRule, FaultTarget, FileState, MediaContentType, MediaSource, MediaUriKeys, NoneFormat,
    RangeSupport, RecordingSpec, SimConfig,
};
use sha2::{Digest, Sha256};

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(300)
}

async fn deps_with(stack: &LocalStack, function: &str, extra: &[(&str, &str)]) -> HandlerDeps {
    let mut env = stack.function_env(function);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    gc_archive::bootstrap::handler_deps(function, &env, &stack.sdk)
        .await
        .expect("handler deps")
}

async fn manifests(stack: &LocalStack) -> Vec<Manifest> {
    let mut out = Vec::new();
    for key in stack
        .list_keys(&format!("{PREFIX}/{}/", stack.sim.org_id()))
        .await
        .unwrap()
    {
        if key.ends_with(".manifest.json") {
            out.push(serde_json::from_slice(&stack.get_bytes(&key).await.unwrap()).unwrap());
        }
    }
    out
}

async fn audit_outcomes(stack: &LocalStack) -> Vec<gc_archive::audit::AuditRecord> {
    let mut out = Vec::new();
    for key in stack.list_keys(&format!("{PREFIX}/_audit/")).await.unwrap() {
        out.push(serde_json::from_slice(&stack.get_bytes(&key).await.unwrap()).unwrap());
    }
    out
}

async fn plaintext_of(stack: &LocalStack, m: &Manifest) -> Vec<u8> {
    let obj = stack.get_bytes(&m.object_key).await.unwrap();
    let keyring = std::sync::Arc::new(gc_archive::crypto::KmsKeyring::new(
        aws_sdk_kms::Client::new(&stack.sdk),
        stack.key_arn.clone(),
    ));
    let required = gc_archive::crypto::EncryptionContext::new()
        .with("orgId", m.org_id.as_str())
        .with("conversationId", m.conversation_id.as_str())
        .with("recordingId", m.recording_id.as_str());
    gc_archive::crypto::decrypt_bytes(
        keyring,
        gc_archive::crypto::DecryptOptions {
            required_context: required,
        },
        &obj,
    )
    .await
    .unwrap()
    .0
}

async fn queue_bodies(stack: &LocalStack, url: &str) -> Vec<(String, Option<String>)> {
    let out = stack
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            (
                m.body().unwrap_or_default().to_string(),
                m.message_attributes()
                    .and_then(|a| a.get("gc-archive-reason"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string),
            )
        })
        .collect()
}

fn cid(s: &str) -> gc_archive::ConversationId {
    gc_archive::ConversationId::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_chat_and_email_in_one_conversation_are_each_decided_by_archive_media() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    let audio = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let chat = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Chat));
    let email = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Email));

    // Default ARCHIVE_MEDIA=audio: the audio is archived, chat and email acknowledged, counted.
    let deps = stack.deps("archive-on-event").await.unwrap();
    let (tally, retry) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!(retry, None, "nothing is retried for the unselected kinds");
    assert_eq!((tally.archived, tally.skipped_media), (1, 2), "{tally:?}");
    let got = manifests(&stack).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].recording_id, audio);
    assert_eq!(got[0].source.format_id, "ORIGINAL");
    assert_eq!(
        plaintext_of(&stack, &got[0]).await,
        stack.sim.media_bytes(&audio).unwrap()
    );

    // Selected, chat and email are archived in their documented export forms.
    let deps = deps_with(
        &stack,
        "archive-on-event",
        &[("ARCHIVE_MEDIA", "audio,chat,email")],
    )
    .await;
    let (tally, retry) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!(retry, None);
    assert_eq!((tally.archived, tally.already), (2, 1), "{tally:?}");
    let got = manifests(&stack).await;
    assert_eq!(got.len(), 3);
    for (rid, codec, format) in [
        (&chat, "ZIP", "chatFormatId=ZIP"),
        (&email, "EML", "emailFormatId=EML"),
    ] {
        let m = got.iter().find(|m| &m.recording_id == rid).unwrap();
        assert_eq!(m.plaintext.codec, codec);
        assert_eq!(m.source.format_id, format);
        assert_eq!(
            plaintext_of(&stack, m).await,
            stack.sim.media_bytes(rid).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recording_failing_never_stops_the_others() {
    let stack = LocalStack::start(StackOptions {
        env: vec![("ARCHIVE_RETRY_BASE_SECS".into(), "1".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    let flaky = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let refused = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let fine = stack.sim.add_recording(
        &conv,
        RecordingSpec::new(MediaSource::Real(Codec::OggVorbis)),
    );
    let fault = |rid: &str, status| FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(rid.to_string()),
        },
        fault: Fault::Status {
            status,
            retry_after_secs: None,
        },
        skip: 0,
        times: u32::MAX,
    };
    stack.sim.inject(fault(&flaky, 503));
    stack.sim.inject(fault(&refused, 404));

    let deps = stack.deps("archive-on-event").await.unwrap();
    let (tally, retry) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!(
        (tally.archived, tally.handed_off, tally.failed),
        (1, 1, 1),
        "{tally:?}"
    );
    assert_eq!(
        retry, None,
        "the conversation is done; the failures live on their own"
    );
    let got = manifests(&stack).await;
    assert_eq!(
        got.iter()
            .map(|m| m.recording_id.clone())
            .collect::<Vec<_>>(),
        vec![fine.clone()]
    );
    // The refused one is dead-lettered as its own job, with its reason.
    let dead = queue_bodies(&stack, &stack.archive_queue.dlq_url).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let job: serde_json::Value = serde_json::from_str(&dead[0].0).unwrap();
    assert_eq!(job["recordingId"], refused.as_str());
    assert!(
        dead[0]
            .1
            .as_deref()
            .unwrap_or("")
            .starts_with("media_rejected"),
        "{dead:?}"
    );

    // The faults clear: the transient one finishes through the TransferQueue, and the refused
    // one, redriven from the DLQ to the archive queue, is archived by archive-on-event.
    stack.sim.clear_faults();
    stack
        .sqs
        .send_message()
        .queue_url(&stack.archive_queue.url)
        .message_body(&dead[0].0)
        .send()
        .await
        .unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    stack
        .drain(&deps, &transfer, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let mut ids: Vec<String> = manifests(&stack)
        .await
        .into_iter()
        .map(|m| m.recording_id)
        .collect();
    ids.sort();
    let mut expected = vec![flaky, refused, fine];
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_in_genesys_cold_storage_is_reported_with_how_to_restore_it() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack.sim.add_recording(
        &conv,
        RecordingSpec {
            file_state_override: Some(FileState::Archived),
            ..RecordingSpec::new(MediaSource::Real(Codec::WavPcm))
        },
    );
    let deps = stack.deps("archive-on-event").await.unwrap();
    let (tally, retry) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!(tally.archived_in_genesys, 1, "{tally:?}");
    assert_eq!(retry, None, "not retried: it needs a restore first");
    let records = audit_outcomes(&stack).await;
    let r = records
        .iter()
        .find(|r| r.recording_id == rid)
        .expect("audited");
    assert_eq!(r.outcome, "archived_in_genesys");
    let reason = r.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("archiveDate") && reason.contains("RESTORED"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_media_streams_of_a_recording_are_each_archived_under_their_key() {
    let stack = LocalStack::start(StackOptions {
        sim: SimConfig {
            behaviour: Behaviour {
                media_uri_keys: MediaUriKeys::PerChannel,
                ..Default::default()
            },
            ..SimConfig::default()
        },
        env: vec![("GENESYS_MEDIA_FORMAT".into(), "WAV".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack.sim.add_recording(
        &conv,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 200_000,
        }),
    );
    let deps = stack.deps("archive-on-event").await.unwrap();
    let (tally, _) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!(tally.archived, 2, "{tally:?}");
    let mut got = manifests(&stack).await;
    got.sort_by(|a, b| a.object_key.cmp(&b.object_key));
    assert_eq!(got.len(), 2);
    for (m, key) in got.iter().zip(["0", "1"]) {
        assert_eq!(m.source.media_key.as_deref(), Some(key));
        assert!(
            m.object_key.ends_with(&format!("/{rid}.{key}.wav.enc")),
            "{}",
            m.object_key
        );
        assert_eq!(
            plaintext_of(&stack, m).await,
            stack.sim.media_key_bytes(&rid, "WAV", key).unwrap()
        );
    }
    assert_ne!(got[0].plaintext.sha256, got[1].plaintext.sha256);
    // Processing again finds both and archives nothing twice.
    let (tally, _) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert_eq!((tally.archived, tally.already), (0, 1), "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_allowed_receive_dead_letters_the_message_with_its_reason() {
    let stack = LocalStack::start(StackOptions {
        max_receive_count: 3,
        env: vec![
            ("ARCHIVE_RETRY_BASE_SECS".into(), "1".into()),
            ("ARCHIVE_PENDING_HORIZON_SECS".into(), "86400".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    stack.sim.add_recording(
        &conv,
        RecordingSpec {
            unavailable_polls: u32::MAX,
            ..RecordingSpec::new(MediaSource::Real(Codec::WavPcm))
        },
    );
    stack
        .publish_conversation_ends(std::slice::from_ref(&conv), "customer.end")
        .await
        .unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    stack
        .drain(&archive, &transfer, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let dead = queue_bodies(&stack, &stack.archive_queue.dlq_url).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0].1.as_deref().unwrap_or("");
    assert!(
        reason.starts_with("gave up after 3 receives") && reason.contains("Uploading"),
        "a dead-lettered message says why: {reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_external_tag_is_kept_and_reported_and_ours_is_updated() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let foreign = stack.sim.add_conversation(ConversationSpec {
        external_tag: Some("crm-ticket-4711".into()),
        ..ConversationSpec::default()
    });
    let ours_old = stack.sim.add_conversation(ConversationSpec {
        external_tag: Some(format!("s3://{BUCKET}/{PREFIX}/old-location/")),
        ..ConversationSpec::default()
    });
    for c in [&foreign, &ours_old] {
        stack
            .sim
            .add_recording(c, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    }
    let deps = stack.deps("archive-on-event").await.unwrap();
    for c in [&foreign, &ours_old] {
        let (tally, retry) = process_conversation(&deps, &cid(c), Duration::ZERO, far(), "t")
            .await
            .unwrap();
        assert_eq!((tally.archived, retry), (1, None));
    }
    assert_eq!(
        stack.sim.external_tag(&foreign).as_deref(),
        Some("crm-ticket-4711")
    );
    let tag = stack.sim.external_tag(&ours_old).unwrap();
    assert!(
        tag.contains(&format!("conversation_id={ours_old}/")),
        "{tag}"
    );
    let records = audit_outcomes(&stack).await;
    assert!(
        records
            .iter()
            .any(|r| r.conversation_id == foreign && r.outcome == "write_back_skipped"),
        "the kept tag is reported"
    );

    // ARCHIVE_EXTERNAL_TAG=overwrite replaces it.
    let deps = deps_with(
        &stack,
        "archive-on-event",
        &[("ARCHIVE_EXTERNAL_TAG", "overwrite")],
    )
    .await;
    process_conversation(&deps, &cid(&foreign), Duration::ZERO, far(), "t")
        .await
        .unwrap();
    assert!(stack
        .sim
        .external_tag(&foreign)
        .unwrap()
        .starts_with("s3://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_attributes_are_written_once_per_conversation_naming_every_recording() {
    for shape in [
        CustomAttributesListShape::Results,
        CustomAttributesListShape::Entities,
        CustomAttributesListShape::BareArray,
    ] {
        let stack = LocalStack::start(StackOptions {
            sim: SimConfig {
                behaviour: Behaviour {
                    custom_attributes_list: shape,
                    ..Default::default()
                },
                ..SimConfig::default()
            },
            env: vec![
                ("ARCHIVE_WRITE_BACK".into(), "custom-attributes".into()),
                (
                    "ARCHIVE_CUSTOM_ATTRIBUTES_SCHEMA_ID".into(),
                    "gc-archive-schema".into(),
                ),
            ],
            ..StackOptions::default()
        })
        .await
        .unwrap();
        let conv = stack.sim.add_conversation(ConversationSpec::default());
        let a = stack
            .sim
            .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
        let b = stack
            .sim
            .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
        let deps = stack.deps("archive-on-event").await.unwrap();
        stack.sim.clear_requests();
        let (tally, retry) = process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
            .await
            .unwrap();
        assert_eq!((tally.archived, retry), (2, None), "{shape:?}");
        let writes = stack
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/customattributes") && r.method != "GET")
            .count();
        assert_eq!(writes, 1, "one write per conversation ({shape:?})");
        let attrs = stack.sim.custom_attributes(&conv).expect("written");
        let listed = attrs[0]["customAttributes"]["archiveRecordings"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(listed.contains(&a) && listed.contains(&b), "{listed}");
        // A second pass reads the existing record (in this list shape) and writes nothing.
        stack.sim.clear_requests();
        process_conversation(&deps, &cid(&conv), Duration::ZERO, far(), "t")
            .await
            .unwrap();
        let writes = stack
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/customattributes") && r.method != "GET")
            .count();
        assert_eq!(writes, 0, "{shape:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_input_is_refused_with_a_bounded_reason_and_no_panic() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let deps = stack.deps("archive-on-event").await.unwrap();
    let long = "é".repeat(300);
    let bodies = [
        format!(
            r#"{{"version":"0","source":"aws.partner/genesys.com/cloud/x/y","detail":{{"topicName":"v2.detail.events.conversation.{long}.customer.end","eventBody":{{"conversationId":"{long}"}}}}}}"#
        ),
        format!(
            r#"{{"version":1,"orgId":"{}","conversationId":"{long}","recordingId":"r"}}"#,
            stack.sim.org_id()
        ),
        format!("{{\"not json {long}"),
    ];
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            serde_json::json!({
                "messageId": format!("m{i}"), "receiptHandle": "h", "body": b,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": stack.archive_queue.arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let out = gc_archive::handlers::archive_on_event(
        &deps,
        serde_json::json!({ "Records": records }),
        far(),
        "t",
    )
    .await
    .unwrap();
    assert_eq!(out["batchItemFailures"], serde_json::json!([]), "{out}");
    let dead = queue_bodies(&stack, &stack.archive_queue.dlq_url).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (_, reason) in dead {
        let reason = reason.unwrap_or_default();
        assert!(!reason.is_empty() && reason.len() <= 250, "{reason}");
    }
}

/// The Genesys behaviours the reference marks UNCONFIRMED, each variant of each, archived
/// through both media paths (batch download, and a transcoded format through the recordings
/// endpoint with a 202 first and a URL that expires mid-transfer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_archives_under_every_variant_of_the_unconfirmed_behaviours() {
    let base = Behaviour::default();
    let mut variants: Vec<(String, Behaviour)> = vec![("defaults".into(), base.clone())];
    variants.push((
        "NONE serves the original".into(),
        Behaviour {
            none_format: NoneFormat::ServesOriginal,
            ..base.clone()
        },
    ));
    variants.push((
        "accurate Content-Type".into(),
        Behaviour {
            media_content_type: MediaContentType::Accurate,
            ..base.clone()
        },
    ));
    variants.push((
        "202 with a Recording body".into(),
        Behaviour {
            accepted_body: AcceptedBody::RecordingJson,
            ..base.clone()
        },
    ));
    variants.push((
        "Range honoured".into(),
        Behaviour {
            range: RangeSupport::Honoured,
            ..base.clone()
        },
    ));
    for expired in [
        ExpiredUrl::BadRequest,
        ExpiredUrl::Unauthorized,
        ExpiredUrl::Gone,
    ] {
        variants.push((
            format!("expired URL {expired:?}"),
            Behaviour {
                expired_url: expired,
                range: RangeSupport::Honoured,
                ..base.clone()
            },
        ));
    }
    let mut table = Vec::new();
    for (name, behaviour) in variants {
        let kit = Kit::start_with(KitOptions {
            sim: SimConfig {
                behaviour,
                ..SimConfig::default()
            },
            ..KitOptions::default()
        })
        .await;
        for format in ["ORIGINAL", "WAV"] {
            let added = kit.add_recording(RecordingSpec {
                transcoding_polls: 1,
                ..RecordingSpec::new(MediaSource::SynthWav {
                    size_bytes: 3 * gc_archive_it::transfer_kit::SMALL_CHUNK + 99,
                })
            });
            let mut settings = kit.settings("w");
            settings.media_format = gc_archive::config::MediaFormat::parse(format).unwrap();
            // Expire every URL handed out so far once the first chunk is in.
            kit.sim.inject(FaultRule {
                target: FaultTarget::Media {
                    recording_id: Some(added.recording_id.clone()),
                },
                fault: Fault::ExpiredUrl,
                skip: 1,
                times: 1,
            });
            // A 202 answer is "come back later": retried as NotReady.
            let mut outcome = kit.run(&added.job, &settings).await;
            for _ in 0..3 {
                match &outcome {
                    Err(gc_archive::transfer::TransferError::NotReady { .. }) => {
                        outcome = kit.run(&added.job, &settings).await
                    }
                    _ => break,
                }
            }
            let manifest = match outcome {
                Ok(TransferOutcome::Archived(m)) => *m,
                other => panic!("{name} / {format}: expected Archived, got {other:?}"),
            };
            let expected = if format == "ORIGINAL" {
                kit.sim.media_bytes(&added.recording_id).unwrap()
            } else {
                kit.sim.rendition_bytes(&added.recording_id, "WAV").unwrap()
            };
            assert_eq!(
                manifest.plaintext.sha256,
                hex::encode(Sha256::digest(&expected)),
                "{name} / {format}"
            );
            table.push(format!(
                "{name:<28} {format:<9} archived, {} refreshes, ranged={}",
                manifest.timings.url_refreshes, manifest.source.ranged
            ));
        }
    }
    println!("{}", table.join("\n"));
}
