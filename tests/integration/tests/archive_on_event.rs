//! archive-on-event end to end: events through EventBridge (moto) into the archive queue, the
//! real handlers driven by an SQS event-source stand-in, the Genesys Cloud simulator as the
//! source, moto S3/KMS/SQS as the destination.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use gc_archive::crypto::{decrypt_bytes, DecryptOptions, EncryptionContext, KmsKeyring};
use gc_archive::handlers::{archive_on_event, HandlerDeps};
use gc_archive::store::manifest::Manifest;
use gc_archive_it::esm::{poll_once, queue_depth};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};
use sha2::{Digest, Sha256};

async fn list(stack: &LocalStack, prefix: &str) -> Vec<String> {
    stack.list_keys(prefix).await.unwrap()
}

async fn get(stack: &LocalStack, key: &str) -> Vec<u8> {
    stack.get_bytes(key).await.unwrap().to_vec()
}

fn source_sha(stack: &LocalStack, rid: &str) -> String {
    let mut r = stack.sim.media_reader(rid).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

async fn drain(stack: &LocalStack, archive: &HandlerDeps, transfer: &HandlerDeps, limit: Duration) {
    stack.drain(archive, transfer, limit, |_| {}).await.unwrap();
}

async fn dlq_bodies(stack: &LocalStack, url: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let r = stack
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        if r.messages().is_empty() {
            return out;
        }
        for m in r.messages() {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("gc-archive-reason"))
                .and_then(|v| v.string_value().map(str::to_string));
            out.push((m.body().unwrap_or_default().to_string(), reason));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_conversations_with_duplicates_late_and_missing_recordings_archive_exactly_once() {
    let stack = LocalStack::start(StackOptions {
        env: vec![
            ("ARCHIVE_RETRY_BASE_SECS".into(), "1".into()),
            ("ARCHIVE_PENDING_HORIZON_SECS".into(), "15".into()),
            ("ARCHIVE_EMPTY_HORIZON_SECS".into(), "2".into()),
            // The 9 MiB recordings take the TransferQueue path, the rest are archived inline.
            ("ARCHIVE_INLINE_MAX_MIB".into(), "4".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();

    // 50 conversations: every codec Genesys offers, small and multi-part sizes, 5 that become
    // available late, 1 that never does.
    let mut available: BTreeMap<String, String> = BTreeMap::new(); // rid -> cid
    let mut conversations = Vec::new();
    let mut never = None;
    for i in 0..50usize {
        let cid = stack.sim.add_conversation(ConversationSpec::default());
        let media = match i % 8 {
            k @ 0..=5 => MediaSource::Real(Codec::ALL[k]),
            6 => MediaSource::SynthWav {
                size_bytes: 300_000 + i as u64 * 1000,
            },
            _ => MediaSource::SynthWav {
                size_bytes: if i == 7 || i == 15 {
                    9 * 1024 * 1024 + 77
                } else {
                    1_500_000
                },
            },
        };
        let mut spec = RecordingSpec::new(media);
        if (20..25).contains(&i) {
            spec.unavailable_polls = 2;
        }
        if i == 49 {
            spec.unavailable_polls = u32::MAX;
        }
        let rid = stack.sim.add_recording(&cid, spec);
        if i == 49 {
            never = Some((cid.clone(), rid));
        } else {
            available.insert(rid, cid.clone());
        }
        conversations.push(cid);
    }
    let (never_cid, never_rid) = never.unwrap();

    // Each conversation's end event twice, out of order (reversed, then a different topic).
    let mut reversed = conversations.clone();
    reversed.reverse();
    stack
        .publish_conversation_ends(&reversed, "customer.end")
        .await
        .unwrap();
    stack
        .publish_conversation_ends(&conversations, "acw")
        .await
        .unwrap();
    // Two poison messages straight onto the queue.
    let poison = [
        "{this is not json",
        r#"{"version":"0","source":"aws.partner/genesys.com/cloud/x/y","detail":{"topicName":"v2.detail.events.conversation.bad/id.customer.end","eventBody":{"conversationId":"bad/id"}}}"#,
    ];
    for p in poison {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.archive_queue.url)
            .message_body(p)
            .send()
            .await
            .unwrap();
    }

    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    drain(&stack, &archive, &transfer, Duration::from_secs(150)).await;

    // Exactly one object and one manifest per available recording, none for the missing one.
    let org = stack.sim.org_id().to_string();
    let keys = list(&stack, &format!("{PREFIX}/{org}/")).await;
    let manifests: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with(".manifest.json"))
        .collect();
    let objects: Vec<&String> = keys.iter().filter(|k| k.ends_with(".enc")).collect();
    assert_eq!(manifests.len(), available.len(), "{manifests:#?}");
    assert_eq!(objects.len(), available.len());
    assert_eq!(
        keys.len(),
        2 * available.len(),
        "unexpected objects: {keys:#?}"
    );

    let kms = aws_sdk_kms::Client::new(&stack.sdk);
    let keyring = Arc::new(KmsKeyring::new(kms, stack.key_arn.clone()));
    let mut archived_ids = BTreeSet::new();
    for key in manifests {
        let m: Manifest = serde_json::from_slice(&get(&stack, key).await).unwrap();
        assert!(
            archived_ids.insert(m.recording_id.clone()),
            "archived twice: {}",
            m.recording_id
        );
        assert_eq!(available.get(&m.recording_id), Some(&m.conversation_id));
        let ciphertext = get(&stack, &m.object_key).await;
        assert_eq!(ciphertext.len() as u64, m.ciphertext.size);
        let required = EncryptionContext::new()
            .with("orgId", org.as_str())
            .with("conversationId", m.conversation_id.as_str())
            .with("recordingId", m.recording_id.as_str());
        let (plain, _) = decrypt_bytes(
            keyring.clone(),
            DecryptOptions {
                required_context: required,
            },
            &ciphertext,
        )
        .await
        .unwrap();
        let sha = hex::encode(Sha256::digest(&plain));
        assert_eq!(sha, m.plaintext.sha256);
        assert_eq!(
            sha,
            source_sha(&stack, &m.recording_id),
            "{}",
            m.recording_id
        );
        // Write-back reached Genesys: the conversation's externalTag names its archive folder.
        let folder = m.object_key.rsplit_once('/').unwrap().0;
        assert_eq!(
            stack.sim.external_tag(&m.conversation_id),
            Some(format!("s3://{BUCKET}/{folder}/"))
        );
    }
    assert!(!archived_ids.contains(&never_rid));
    assert!(stack.sim.external_tag(&never_cid).is_none());

    // Audit: one "archived" record per recording, the missing one reported as not available.
    let audit = list(&stack, &format!("{PREFIX}/_audit/")).await;
    for rid in available.keys() {
        let n = audit
            .iter()
            .filter(|k| k.contains(rid.as_str()) && k.contains("-archived-"))
            .count();
        assert_eq!(n, 1, "archived audit records for {rid}");
    }
    assert!(
        audit
            .iter()
            .any(|k| k.contains(never_rid.as_str()) && k.contains("-not_available-")),
        "{audit:#?}"
    );
    // The two 9 MiB recordings went through the TransferQueue to chunk-recording; the rest inline.
    let mut by_function = BTreeMap::new();
    for key in audit.iter().filter(|k| k.contains("-archived-")) {
        let record: gc_archive::audit::AuditRecord =
            serde_json::from_slice(&get(&stack, key).await).unwrap();
        *by_function.entry(record.function).or_insert(0) += 1;
    }
    assert_eq!(
        by_function.get("chunk-recording"),
        Some(&2),
        "{by_function:?}"
    );
    assert_eq!(
        by_function.get("archive-on-event"),
        Some(&(available.len() - 2)),
        "{by_function:?}"
    );

    // The DLQ holds exactly the poison messages, each with its reason; nothing else failed.
    let mut dead = dlq_bodies(&stack, &stack.archive_queue.dlq_url).await;
    dead.sort();
    let mut expected: Vec<String> = poison.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        dead.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(dead
        .iter()
        .all(|(_, r)| r.as_deref().is_some_and(|r| !r.is_empty())));
    assert!(dlq_bodies(&stack, &stack.transfer_queue.dlq_url)
        .await
        .is_empty());

    // Nothing partial left: no multipart upload, no checkpoint.
    let uploads = stack
        .s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
    assert!(list(&stack, &format!("{PREFIX}/_state/")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_that_do_not_fit_inline_are_handed_to_chunk_recording() {
    let stack = LocalStack::start(StackOptions {
        // No inline budget: every recording goes through the TransferQueue.
        env: vec![("ARCHIVE_INLINE_BUDGET_SECS".into(), "0".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let big = stack.sim.add_recording(
        &cid,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 11 * 1024 * 1024,
        }),
    );
    let small = stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    stack
        .publish_conversation_ends(std::slice::from_ref(&cid), "user.end")
        .await
        .unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();

    // archive-on-event alone only enqueues.
    poll_once(
        &stack.sqs,
        &stack.archive_queue.url,
        &stack.archive_queue.arn,
        10,
        |p| async {
            archive_on_event(
                &archive,
                p,
                tokio::time::Instant::now() + Duration::from_secs(60),
                "t",
            )
            .await
            .map_err(anyhow::Error::from)
        },
    )
    .await
    .unwrap();
    let (waiting, _) = queue_depth(&stack.sqs, &stack.transfer_queue.url)
        .await
        .unwrap();
    assert_eq!(waiting, 2);
    assert!(list(&stack, &format!("{PREFIX}/{}/", stack.sim.org_id()))
        .await
        .is_empty());

    drain(&stack, &archive, &transfer, Duration::from_secs(60)).await;
    let keys = list(&stack, &format!("{PREFIX}/{}/", stack.sim.org_id())).await;
    for rid in [&big, &small] {
        assert!(
            keys.iter()
                .any(|k| k.ends_with(&format!("{rid}.manifest.json"))),
            "{rid} not archived: {keys:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_eventbridge_invocation_archives_and_reports_pending_as_retry() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack.sim.add_recording(
        &cid,
        RecordingSpec {
            unavailable_polls: 1,
            ..RecordingSpec::new(MediaSource::Real(Codec::WavUlaw))
        },
    );
    let event = serde_json::json!({
        "version": "0", "id": "direct-1", "detail-type": "v2.detail.events.conversation.{id}.customer.end",
        "source": format!("aws.partner/genesys.com/cloud/{}/gc-archive", stack.sim.org_id()),
        "account": "123456789012", "time": chrono::Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": stack.conversation_event(&cid, "customer.end"),
    });
    let deps = stack.deps("archive-on-event").await.unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);
    // First: the recording is still uploading → an error, so Lambda's async retry redelivers.
    let first = archive_on_event(&deps, event.clone(), deadline(), "r1").await;
    assert!(
        matches!(
            first,
            Err(gc_archive::handlers::HandlerError::RetryLater(_))
        ),
        "{first:?}"
    );
    let second = archive_on_event(&deps, event.clone(), deadline(), "r2")
        .await
        .unwrap();
    assert_eq!(second["status"], "done");
    let keys = list(&stack, &format!("{PREFIX}/{}/", stack.sim.org_id())).await;
    assert!(
        keys.iter().any(|k| k.ends_with(&format!("{rid}.wav.enc"))),
        "{keys:#?}"
    );
    // An event for another org is refused, not archived.
    let mut foreign = event.clone();
    foreign["source"] = serde_json::json!("aws.partner/genesys.com/cloud/another-org/gc-archive");
    assert!(matches!(
        archive_on_event(&deps, foreign, deadline(), "r3").await,
        Err(gc_archive::handlers::HandlerError::Permanent(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_recording_checkpoints_before_its_deadline_and_requeues_itself() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack.sim.add_recording(
        &cid,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 24 * 1024 * 1024,
        }),
    );
    // Slow media: one 8 MiB chunk takes about half a second.
    stack.sim.inject(genesys_sim::FaultRule {
        target: genesys_sim::FaultTarget::Media {
            recording_id: Some(rid.clone()),
        },
        fault: genesys_sim::Fault::SlowBody {
            bytes_per_sec: 16 * 1024 * 1024,
        },
        skip: 0,
        times: u32::MAX,
    });
    let transfer = stack.deps("chunk-recording").await.unwrap();
    let job = stack.transfer_job(&cid, &rid);
    // A deadline just past the 30 s suspend margin: the worker must checkpoint and re-queue.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(30_700);
    let out = gc_archive::handlers::chunk_recording(&transfer, job, deadline, "first")
        .await
        .unwrap();
    assert_eq!(out["status"], "done");
    let prefix = format!("{PREFIX}/{}/", stack.sim.org_id());
    assert!(
        stack.list_keys(&prefix).await.unwrap().is_empty(),
        "nothing final before the end"
    );
    assert_eq!(
        stack
            .list_keys(&format!("{PREFIX}/_state/"))
            .await
            .unwrap()
            .len(),
        1
    );
    let (waiting, _) = queue_depth(&stack.sqs, &stack.transfer_queue.url)
        .await
        .unwrap();
    assert_eq!(waiting, 1, "the job was re-queued");

    // The next invocation (from the queue) resumes and finishes.
    stack.sim.clear_faults();
    let archive = stack.deps("archive-on-event").await.unwrap();
    drain(&stack, &archive, &transfer, Duration::from_secs(60)).await;
    let keys = stack.list_keys(&prefix).await.unwrap();
    let manifest_key = keys
        .iter()
        .find(|k| k.ends_with(".manifest.json"))
        .expect("archived");
    let m: Manifest = serde_json::from_slice(&get(&stack, manifest_key).await).unwrap();
    assert_eq!(m.timings.invocations, 2);
    assert_eq!(m.plaintext.sha256, source_sha(&stack, &rid));
    assert!(stack
        .list_keys(&format!("{PREFIX}/_state/"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        queue_depth(&stack.sqs, &stack.transfer_queue.url)
            .await
            .unwrap(),
        (0, 0)
    );
}
