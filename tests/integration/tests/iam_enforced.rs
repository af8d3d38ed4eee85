//! IAM proved by enforcement: moto checks every request against the caller's policy, and each
//! function runs as an IAM user holding exactly its role's policy from template.yaml
//! (`LocalStack::deps_as`), through every path it has: inline archive, hand-off to the
//! TransferQueue, suspend and resume, delayed redelivery, dead-lettering, checkpoints,
//! manifests, audit records, write-back, result events and webhooks, KMS and Secrets Manager.
//! The SQS event-source stand-in receives and deletes with the function's credentials too.
//!
//! moto matches KMS, Secrets Manager, EventBridge and Logs grants as `"*"` and ignores
//! conditions, so those parts of the policies are widened here and checked by
//! `iam_static.rs` (see `gc_archive_it::iam`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gc_archive::crypto::{decrypt_bytes, DecryptOptions, EncryptionContext, KmsKeyring};
use gc_archive::store::manifest::Manifest;
use gc_archive_it::esm::poll;
use gc_archive_it::iam::{QueueCall, WEBHOOK_SECRET};
use gc_archive_it::stack::{FunctionDeps, LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

async fn iam_stack() -> LocalStack {
    let mut stack = LocalStack::start(StackOptions {
        iam: true,
        env: vec![
            ("ARCHIVE_RETRY_BASE_SECS".into(), "1".into()),
            // Recordings above 4 MiB go to chunk-recording through the TransferQueue.
            ("ARCHIVE_INLINE_MAX_MIB".into(), "4".into()),
            ("ARCHIVE_CHUNK_SIZE_MIB".into(), "5".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // As template.yaml configures it: the key ARN, which the role's grant names.
    stack
        .env
        .insert("ARCHIVE_KMS_KEY_ID".into(), stack.key_arn.clone());
    stack
}

fn source_sha(stack: &LocalStack, rid: &str) -> String {
    use std::io::Read;
    let mut r = stack.sim.media_reader(rid).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return hex::encode(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// Bodies and `gc-archive-reason` attributes of everything in a queue (admin).
async fn queue_bodies(stack: &LocalStack, url: &str) -> Vec<(String, Option<String>)> {
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

async fn archive_poll(stack: &LocalStack, f: &FunctionDeps) -> gc_archive_it::esm::PollOutcome {
    poll(
        &f.sqs,
        &stack.archive_queue.url,
        &stack.archive_queue.arn,
        10,
        |p| async {
            gc_archive::handlers::archive_on_event(
                &f.deps,
                p,
                tokio::time::Instant::now() + Duration::from_secs(300),
                "iam-archive-on-event",
            )
            .await
            .map_err(anyhow::Error::from)
        },
    )
    .await
    .unwrap()
}

fn manifest_key<'a>(keys: &'a [String], rid: &str) -> Option<&'a String> {
    keys.iter()
        .find(|k| k.contains(rid) && k.ends_with(".manifest.json"))
}

/// The audit records' (outcome, function, recording id, reason).
async fn audit(stack: &LocalStack) -> Vec<gc_archive::audit::AuditRecord> {
    let mut out = Vec::new();
    for key in stack.list_keys(&format!("{PREFIX}/_audit/")).await.unwrap() {
        out.push(serde_json::from_slice(&stack.get_bytes(&key).await.unwrap()).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_functions_archive_through_every_path_under_their_template_roles() {
    let stack = iam_stack().await;
    let org = stack.sim.org_id().to_string();
    let iam = stack.iam.as_ref().unwrap();

    let add = |spec: RecordingSpec| {
        let cid = stack.sim.add_conversation(ConversationSpec::default());
        let rid = stack.sim.add_recording(&cid, spec);
        (cid, rid)
    };
    let inline = add(RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let handed = add(RecordingSpec::new(MediaSource::SynthWav {
        size_bytes: 6 * MIB + 123,
    }));
    let late = add(RecordingSpec {
        unavailable_polls: 2,
        ..RecordingSpec::new(MediaSource::Real(Codec::WavUlaw))
    });
    let resumed = add(RecordingSpec::new(MediaSource::SynthWav {
        size_bytes: 11 * MIB + 45,
    }));
    let all = [&inline, &handed, &late, &resumed];

    // Secrets Manager: both functions read the Genesys client and the webhook key at start.
    let archive = stack.deps_as("archive-on-event").await.unwrap();
    let transfer = stack.deps_as("chunk-recording").await.unwrap();

    // Delayed redelivery: the recording is not available yet, so archive-on-event raises the
    // message's visibility (ChangeMessageVisibility on its source queue) and reports it failed.
    stack
        .publish_conversation_ends(std::slice::from_ref(&late.0), "customer.end")
        .await
        .unwrap();
    let first = archive_poll(&stack, &archive).await;
    let returned = tokio::time::Instant::now();
    assert_eq!(first.received, 1);
    assert_eq!(first.handler_error, None);
    let delays: Vec<Duration> = archive
        .queue_log
        .calls()
        .iter()
        .filter_map(|c| match c {
            QueueCall::DelayRedelivery { delay } => Some(*delay),
            _ => None,
        })
        .collect();
    assert!(
        delays.len() == 1 && delays[0] >= Duration::from_secs(1),
        "{delays:?} {:?}",
        archive.all_errors()
    );
    let again = stack
        .sqs
        .receive_message()
        .queue_url(&stack.archive_queue.url)
        .send()
        .await
        .unwrap();
    // Only conclusive while the delay has not passed (a stalled machine may take longer).
    if returned.elapsed() < delays[0] {
        assert!(
            again.messages().is_empty(),
            "the delayed message was redelivered at once"
        );
    }
    assert_eq!(archive.all_errors(), Vec::<String>::new());

    // Suspend and resume: slow media and a deadline just past the suspend margin make
    // chunk-recording checkpoint (PutObject under _state/) and re-queue itself (SendMessage).
    stack.sim.inject(genesys_sim::FaultRule {
        target: genesys_sim::FaultTarget::Media {
            recording_id: Some(resumed.1.clone()),
        },
        fault: genesys_sim::Fault::SlowBody {
            bytes_per_sec: 2 * MIB,
        },
        skip: 0,
        times: u32::MAX,
    });
    let margin = transfer.deps.service.settings.suspend_margin;
    let out = gc_archive::handlers::chunk_recording(
        &transfer.deps,
        stack.transfer_job(&resumed.0, &resumed.1),
        tokio::time::Instant::now() + margin + Duration::from_millis(1500),
        "iam-first",
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "done");
    assert_eq!(
        stack
            .list_keys(&format!("{PREFIX}/_state/"))
            .await
            .unwrap()
            .len(),
        1,
        "a checkpoint"
    );
    assert!(
        transfer
            .queue_log
            .calls()
            .contains(&QueueCall::EnqueueTransfer {
                recording_id: resumed.1.clone()
            }),
        "re-queued: {:?} {:?}",
        transfer.queue_log.calls(),
        transfer.all_errors()
    );
    stack.sim.clear_faults();

    // The rest through EventBridge, plus one poison message per queue.
    stack
        .publish_conversation_ends(&[inline.0.clone(), handed.0.clone()], "acw")
        .await
        .unwrap();
    let archive_poison = "{this is not json";
    let transfer_poison = "not a transfer job";
    for (url, body) in [
        (&stack.archive_queue.url, archive_poison),
        (&stack.transfer_queue.url, transfer_poison),
    ] {
        stack
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    stack
        .drain_as(&archive, &transfer, Duration::from_secs(45), |_| {})
        .await
        .unwrap();

    // No function saw an error: no failed batch, no swallowed SQS error (a denied
    // ChangeMessageVisibility or SendMessage is only logged by the handlers).
    assert_eq!(archive.all_errors(), Vec::<String>::new());
    assert_eq!(transfer.all_errors(), Vec::<String>::new());
    let archive_calls = archive.queue_log.calls();
    assert!(archive_calls.contains(&QueueCall::EnqueueTransfer {
        recording_id: handed.1.clone()
    }));
    for (name, calls) in [
        ("archive-on-event", &archive_calls),
        ("chunk-recording", &transfer.queue_log.calls()),
    ] {
        let dead = calls
            .iter()
            .filter(|c| matches!(c, QueueCall::DeadLetter { .. }))
            .count();
        assert_eq!(dead, 1, "{name}: {calls:?}");
    }

    // Every archive is complete and decrypts (KMS Decrypt as the admin) to the source bytes;
    // the write-back reached Genesys.
    // An object, a manifest, and the result outbox marker (results are published) each.
    let keys = stack.list_keys(&format!("{PREFIX}/{org}/")).await.unwrap();
    assert_eq!(keys.len(), 3 * all.len(), "{keys:#?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.ends_with(".published.json"))
            .count(),
        all.len(),
        "{keys:#?}"
    );
    let keyring = Arc::new(KmsKeyring::new(
        aws_sdk_kms::Client::new(&stack.sdk),
        stack.key_arn.clone(),
    ));
    for (cid, rid) in all {
        let key = manifest_key(&keys, rid).unwrap_or_else(|| panic!("{rid} not archived"));
        let m: Manifest = serde_json::from_slice(&stack.get_bytes(key).await.unwrap()).unwrap();
        assert_eq!(
            m.encryption.encryption_context.get("orgId"),
            Some(&org),
            "the context the orgId condition relies on"
        );
        let ciphertext = stack.get_bytes(&m.object_key).await.unwrap();
        let required = EncryptionContext::new()
            .with("orgId", org.as_str())
            .with("conversationId", cid.as_str())
            .with("recordingId", rid.as_str());
        let (plain, _) = decrypt_bytes(
            keyring.clone(),
            DecryptOptions {
                required_context: required,
            },
            &ciphertext,
        )
        .await
        .unwrap();
        assert_eq!(hex::encode(Sha256::digest(&plain)), source_sha(&stack, rid));
        let folder = m.object_key.rsplit_once('/').unwrap().0;
        assert_eq!(
            stack.sim.external_tag(cid),
            Some(format!("s3://{BUCKET}/{folder}/"))
        );
        if rid == &resumed.1 {
            assert_eq!(m.timings.invocations, 2, "suspended once, resumed once");
        }
    }
    // Checkpoints were written and deleted; no upload left open.
    assert!(stack
        .list_keys(&format!("{PREFIX}/_state/"))
        .await
        .unwrap()
        .is_empty());
    let uploads = stack
        .s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());

    // Audit records written under each role: inline by archive-on-event, the rest by
    // chunk-recording; nothing failed.
    let records = audit(&stack).await;
    let by = |rid: &str| {
        records
            .iter()
            .filter(|r| r.outcome == "archived" && r.recording_id == rid)
            .map(|r| r.function.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by(&inline.1), ["archive-on-event"]);
    assert_eq!(by(&late.1), ["archive-on-event"]);
    assert_eq!(by(&handed.1), ["chunk-recording"]);
    assert_eq!(by(&resumed.1), ["chunk-recording"]);
    assert!(
        records.iter().all(|r| r.outcome != "failed"),
        "{:#?}",
        records
            .iter()
            .filter(|r| r.outcome == "failed")
            .collect::<Vec<_>>()
    );

    // Each DLQ holds exactly its poison message, with the reason (SendMessage under the role).
    for (url, body) in [
        (&stack.archive_queue.dlq_url, archive_poison),
        (&stack.transfer_queue.dlq_url, transfer_poison),
    ] {
        let dead = queue_bodies(&stack, url).await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].0, body);
        assert!(
            dead[0].1.as_deref().is_some_and(|r| !r.is_empty()),
            "{dead:?}"
        );
    }

    // Result events (PutEvents under the role) and signed webhooks for every archive.
    let events = iam.result_events(&stack.sqs).await.unwrap();
    let archived: BTreeSet<String> = events
        .iter()
        .filter(|e| e["detail-type"] == gc_archive::notify::DETAIL_ARCHIVED)
        .map(|e| e["detail"]["recordingId"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = all.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(archived, expected, "{events:#?}");
    assert_eq!(events.len(), all.len(), "{events:#?}");
    let hooks = iam.webhooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), all.len());
    let secret = secrecy::SecretString::from(WEBHOOK_SECRET.to_string());
    for (headers, body) in &hooks {
        let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
        let ts: i64 = h("webhook-timestamp").parse().unwrap();
        assert_eq!(
            h("webhook-signature"),
            gc_archive::notify::sign(&secret, &h("webhook-id"), ts, body.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_on_event_without_kms_generate_data_key_cannot_archive() {
    let stack = iam_stack().await;
    let org = stack.sim.org_id().to_string();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));

    let mut policy = stack.function_policy("archive-on-event").await.unwrap();
    assert!(gc_archive_it::iam::remove_action(&mut policy, "kms:GenerateDataKey") > 0);
    let crippled = stack
        .deps_with_policy("archive-on-event", policy)
        .await
        .unwrap();
    stack
        .publish_conversation_ends(std::slice::from_ref(&cid), "customer.end")
        .await
        .unwrap();
    let outcome = archive_poll(&stack, &crippled).await;
    assert_eq!(outcome.received, 1);

    // Nothing archived. A denied KMS call is the deployment's fault, not the recording's: the
    // invocation fails naming it (Lambda's Errors alarm), nothing is reported as a failed
    // recording, nothing is dead-lettered, and the message stays for the retry.
    let prefix = format!("{PREFIX}/{org}/");
    assert!(stack.list_keys(&prefix).await.unwrap().is_empty());
    let error = outcome.handler_error.clone().unwrap_or_default();
    assert!(
        error.contains("infrastructure") && error.contains("GenerateDataKey"),
        "{error:?}"
    );
    assert!(
        audit(&stack)
            .await
            .iter()
            .all(|r| r.outcome != "failed" || r.recording_id != rid),
        "an infrastructure failure is not the recording's failure"
    );
    let dead = stack
        .sqs
        .receive_message()
        .queue_url(&stack.archive_queue.dlq_url)
        .send()
        .await
        .unwrap();
    assert!(dead.messages().is_empty(), "nothing dead-lettered");

    // Control: the template's own policy archives the same recording.
    let whole = stack.deps_as("archive-on-event").await.unwrap();
    stack
        .publish_conversation_ends(std::slice::from_ref(&cid), "acw")
        .await
        .unwrap();
    assert_eq!(archive_poll(&stack, &whole).await.received, 1);
    let keys = stack.list_keys(&prefix).await.unwrap();
    assert!(manifest_key(&keys, &rid).is_some(), "{keys:#?}");
    assert_eq!(whole.all_errors(), Vec::<String>::new());
}

/// recording-sweep under exactly its template role (moto enforces S3 object and bucket ARNs
/// and the SendMessage queue ARN): a scheduled sweep puts the conversation whose event was
/// lost on the ArchiveQueue, a backfill through the async jobs finds an old one, the
/// reconciliation writes its report, and archive-on-event (under its own role) archives what
/// the sweep sent. Then each S3 and SQS grant of the role is removed in turn: every such run
/// fails, so each one is needed. (KMS through S3 is not enforced by moto: `iam_static.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_sweep_sweeps_backfills_and_reconciles_under_its_template_role() {
    use gc_archive::handlers::recording_sweep::recording_sweep;
    use gc_archive::handlers::HandlerError;
    let stack = iam_stack().await;
    let ended = |hours_ago: i64| ConversationSpec {
        start: Some(chrono::Utc::now() - chrono::Duration::hours(hours_ago)),
        duration_secs: 120,
        ..ConversationSpec::default()
    };
    let recorded = |spec: ConversationSpec| {
        let cid = stack.sim.add_conversation(spec);
        stack
            .sim
            .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
        cid
    };
    let delivered = recorded(ended(5));
    let lost = recorded(ended(4));
    let old = recorded(ended(40 * 24));
    let archive = stack.deps_as("archive-on-event").await.unwrap();
    stack
        .publish_conversation_ends(std::slice::from_ref(&delivered), "customer.end")
        .await
        .unwrap();
    assert_eq!(archive_poll(&stack, &archive).await.received, 1);

    let policy = stack.function_policy("recording-sweep").await.unwrap();
    let sweep = stack.sweep_runtime_with_policy(&policy).await.unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(300);
    let now = chrono::Utc::now();
    let swept = recording_sweep(&sweep, serde_json::json!({"action": "sweep"}), deadline())
        .await
        .unwrap();
    assert_eq!(swept["sweep"]["enqueued"], 1, "{swept}");
    assert_eq!(swept["sweep"]["alreadyArchived"], 1, "{swept}");
    let backfilled = recording_sweep(
        &sweep,
        serde_json::json!({"action": "backfill",
            "from": (now - chrono::Duration::days(45)).to_rfc3339(),
            "to": (now - chrono::Duration::days(30)).to_rfc3339(), "windowHours": 168}),
        deadline(),
    )
    .await
    .unwrap();
    assert_eq!(backfilled["complete"], true, "{backfilled}");
    assert_eq!(backfilled["backfill"]["enqueued"], 1, "{backfilled}");
    let reconciled = recording_sweep(
        &sweep,
        serde_json::json!({"action": "reconcile", "days": 1}),
        deadline(),
    )
    .await
    .unwrap();
    assert_eq!(
        (&reconciled["archived"], &reconciled["missing"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "the delivered one archived, the lost one still queued: {reconciled}"
    );
    let report = reconciled["report"].as_str().unwrap();
    assert!(stack.get_bytes(report).await.is_ok());

    // What the sweep and the backfill sent is archived by archive-on-event.
    let mut sent = Vec::new();
    for _ in 0..3 {
        let outcome = archive_poll(&stack, &archive).await;
        sent.push(outcome.received);
    }
    assert_eq!(sent.iter().sum::<usize>(), 2, "{sent:?}");
    let keys = stack
        .list_keys(&format!("{PREFIX}/{}/", stack.sim.org_id()))
        .await
        .unwrap();
    for cid in [&delivered, &lost, &old] {
        assert!(
            keys.iter()
                .any(|k| k.contains(cid.as_str()) && k.ends_with(".manifest.json")),
            "{cid}: {keys:#?}"
        );
    }
    assert_eq!(archive.all_errors(), Vec::<String>::new());

    // A new lost conversation (ended after the watermark), and the role without each of its
    // S3 and SQS grants.
    recorded(ConversationSpec {
        start: Some(chrono::Utc::now() - chrono::Duration::minutes(10)),
        duration_secs: 120,
        ..ConversationSpec::default()
    });
    for action in [
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "sqs:SendMessage",
    ] {
        let mut crippled = policy.clone();
        assert!(
            gc_archive_it::iam::remove_action(&mut crippled, action) > 0,
            "{action}"
        );
        let runtime = stack.sweep_runtime_with_policy(&crippled).await.unwrap();
        let outcome =
            recording_sweep(&runtime, serde_json::json!({"action": "sweep"}), deadline()).await;
        // The deployment's fault, named: the invocation fails and the Errors alarm fires.
        assert!(
            matches!(&outcome, Err(HandlerError::Infrastructure(m)) if m.contains("403")),
            "without {action}: {outcome:?}"
        );
    }
    let control = recording_sweep(&sweep, serde_json::json!({"action": "sweep"}), deadline())
        .await
        .unwrap();
    assert_eq!(control["sweep"]["enqueued"], 1, "{control}");
}

/// storage-router under exactly its template role: the compliance check reads every setting of
/// the archive bucket (none refused) and its probe writes, reads and deletes under _probe/; the
/// audit report reads the records archive-on-event wrote and writes its three files. Then each
/// S3 grant is removed in turn and the run names what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_router_checks_and_reports_under_its_template_role() {
    use gc_archive::handlers::storage_router::storage_router;
    let stack = iam_stack().await;
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let archive = stack.deps_as("archive-on-event").await.unwrap();
    stack
        .publish_conversation_ends(std::slice::from_ref(&cid), "customer.end")
        .await
        .unwrap();
    assert_eq!(archive_poll(&stack, &archive).await.received, 1);
    assert_eq!(archive.all_errors(), Vec::<String>::new());

    let policy = stack.function_policy("storage-router").await.unwrap();
    let router = stack.router_runtime_with_policy(&policy).await.unwrap();
    let now = chrono::Utc::now();
    let checked = storage_router(&router, serde_json::json!({"action": "check"}), now)
        .await
        .unwrap();
    let compliance: gc_archive::compliance::ComplianceReport = serde_json::from_slice(
        &stack
            .get_bytes(&format!("{PREFIX}/_reports/compliance/latest.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    let checks = &compliance.targets[0].checks;
    assert!(
        !checks.iter().any(|c| c.detail.contains("the role needs")),
        "a bucket setting was refused to the template role: {checks:#?}"
    );
    let probe = checks.iter().find(|c| c.id == "probe").unwrap();
    assert_eq!(
        probe.status,
        gc_archive::compliance::Status::Pass,
        "{probe:?}"
    );
    assert_eq!(
        checked["targets"][0]["bucket"],
        gc_archive_it::stack::BUCKET
    );
    let range = serde_json::json!({"action": "report",
        "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "to": (now + chrono::Duration::hours(1)).to_rfc3339()});
    let reported = storage_router(&router, range.clone(), now).await.unwrap();
    assert_eq!(reported["archived"], 1, "{reported}");
    for key in reported["reportKeys"].as_array().unwrap() {
        assert!(
            stack.get_bytes(key.as_str().unwrap()).await.is_ok(),
            "{key}"
        );
    }

    // moto 5.2.5 enforces three of the bucket-setting reads (measured: without the grant,
    // GetBucketVersioning, GetBucketPolicy and GetBucketLifecycleConfiguration answer 403);
    // it answers GetBucketEncryption, GetPublicAccessBlock, GetObjectLockConfiguration and
    // GetBucketReplication whatever the policy, so those grants are checked by iam_static.rs
    // only.
    let check = || serde_json::json!({"action": "check"});
    for (action, request, failing_check) in [
        ("s3:GetObject", range.clone(), None),
        ("s3:PutObject", range.clone(), None),
        ("s3:ListBucket", range.clone(), None),
        ("s3:GetBucketVersioning", check(), Some("versioning")),
        ("s3:GetBucketPolicy", check(), Some("tls-only-policy")),
        (
            "s3:GetLifecycleConfiguration",
            check(),
            Some("abort-incomplete-multipart"),
        ),
        ("s3:DeleteObject", check(), Some("probe")),
    ] {
        let mut crippled = policy.clone();
        assert!(
            gc_archive_it::iam::remove_action(&mut crippled, action) > 0,
            "{action}"
        );
        let runtime = stack.router_runtime_with_policy(&crippled).await.unwrap();
        let outcome = storage_router(&runtime, request, now).await;
        let named = match (&outcome, failing_check) {
            (Ok(v), Some(id)) => v["targets"][0]["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .any(|f| {
                    f.starts_with(&format!("{id}: "))
                        && (f.contains(&format!("needs {action}")) || f.contains("delete"))
                }),
            (Err(e), None) => e.to_string().contains("403"),
            _ => false,
        };
        assert!(named, "without {action}: {outcome:?}");
    }
}

/// event-stream under exactly its template role: the socket's conversation ends and a gap
/// fill reach the ArchiveQueue, its state and the journal are written. Then each S3 and SQS
/// grant is removed in turn and the run fails naming the refusal; the gap it could not fill
/// stays recorded and the control run fills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_streams_and_fills_gaps_under_its_template_role() {
    use gc_archive::handlers::event_stream::event_stream;
    use gc_archive::handlers::HandlerError;
    let stack = iam_stack().await;
    let hub = stack.sim.notifications();
    hub.set_heartbeat(Duration::from_millis(200));
    let queues = vec![hub.add_queue("Sales")];
    let env: std::collections::HashMap<String, String> = [
        ("STREAM_GAP_SETTLE_SECS", "0"),
        ("STREAM_GAP_MARGIN_SECS", "1"),
        ("STREAM_GAP_LOOKBACK_SECS", "600"),
        ("STREAM_HANDOFF_MARGIN_SECS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let generate = |count| {
        stack
            .sim
            .generate_conversations(genesys_sim::GeneratorSpec {
                count,
                per_second: 50.0,
                queue_ids: queues.clone(),
                duration_secs: 60,
                recording_bytes: 2_000,
            })
    };
    let policy = stack.function_policy("event-stream").await.unwrap();
    let runtime = stack
        .stream_runtime_with_policy(&policy, &env)
        .await
        .unwrap();
    async fn stream(
        rt: &gc_archive::handlers::event_stream::StreamRuntime,
    ) -> Result<serde_json::Value, HandlerError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        event_stream(
            rt,
            serde_json::json!({"action": "stream", "seconds": 3}),
            deadline,
        )
        .await
    }
    let during = async {
        while hub.open_sockets() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        generate(5).await.unwrap()
    };
    let (first, mut want) = tokio::join!(stream(&runtime), during);
    let first = first.unwrap();
    assert_eq!(first["stream"]["enqueued"], 5, "{first}");

    for action in [
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "sqs:SendMessage",
    ] {
        // Ended while nothing listens: only a gap fill can find them.
        want.extend(generate(2).await.unwrap());
        let mut crippled = policy.clone();
        assert!(
            gc_archive_it::iam::remove_action(&mut crippled, action) > 0,
            "{action}"
        );
        let rt = stack
            .stream_runtime_with_policy(&crippled, &env)
            .await
            .unwrap();
        let outcome = stream(&rt).await;
        assert!(
            matches!(&outcome, Err(HandlerError::Infrastructure(m)) if m.contains("403")),
            "without {action}: {outcome:?}"
        );
    }
    let control = stream(&runtime).await.unwrap();
    assert!(
        control["stream"]["gapFilled"].as_u64().unwrap() >= 1,
        "{control}"
    );

    let sent = stack.archive_queue_conversations().await.unwrap();
    let unique: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(unique.len(), sent.len(), "each once: {sent:?}");
    assert_eq!(unique, want.iter().collect::<BTreeSet<_>>());
    assert!(stack
        .get_bytes(&format!("{PREFIX}/_state/stream/state.json"))
        .await
        .is_ok());
}

/// upload-proxy under its template role (ticket auth, the key from Secrets Manager): the
/// part URLs it signs carry its permissions, so the client's PUTs to moto are authorised by
/// the role too; a delivered upload, a refused one (delete, abort) and a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_proxy_uploads_refuses_and_links_under_its_template_role() {
    use gc_archive_it::upload_kit::{upload, Misbehave, RigOptions, UploadRig};
    let rig = UploadRig::start_with(RigOptions {
        iam: true,
        env: vec![
            ("UPLOAD_ATTACH_MAX_MIB", "1".into()),
            ("UPLOAD_EVENT_BUS", gc_archive_it::iam::RESULT_BUS.into()),
        ],
        ..RigOptions::default()
    })
    .await
    .unwrap();
    let mut pdf = vec![7u8; 9 * 1024 * 1024];
    pdf[..5].copy_from_slice(b"%PDF-");
    let up = upload(
        &rig,
        "signed.pdf",
        &pdf[..512 * 1024],
        &Misbehave::default(),
    )
    .await
    .unwrap();
    assert!(
        up.part_statuses.iter().all(|s| *s == 200),
        "{:?}",
        up.part_statuses
    );
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.completed["delivery"]["kind"], "attachment");
    // Above the attachment limit: two parts, then a link.
    let up = upload(&rig, "large.pdf", &pdf, &Misbehave::default())
        .await
        .unwrap();
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.completed["delivery"]["kind"], "link");
    let link = rig
        .sent_messages()
        .last()
        .and_then(|m| m.text_body.clone())
        .unwrap_or_default();
    let url = link.rsplit(' ').next().unwrap_or_default().to_string();
    // moto's IAM check cannot take a presigned GET either (500): the link is checked to be a
    // SigV4 URL for the object, and the object read as the role.
    let record = rig.upload_record(&up.upload_id).await.unwrap_or_default();
    let key = record["key"].as_str().unwrap_or_default().to_string();
    assert!(
        url.contains("X-Amz-Signature=") && url.contains("large.pdf"),
        "{url}"
    );
    let client = rig.part_client.as_ref().expect("IAM rig");
    let got = client
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().len(),
        pdf.len()
    );
    // Refused: the role deletes the object and aborts nothing left behind.
    let how = Misbehave {
        corrupt_parts: vec![1],
        ..Misbehave::default()
    };
    let up = upload(&rig, "bad.pdf", &pdf, &how).await.unwrap();
    assert_eq!(up.complete_status, 422, "{}", up.completed);
    let keys = rig.attachment_keys().await.unwrap();
    assert!(keys.iter().all(|k| !k.contains(&up.upload_id)), "{keys:?}");
    assert_eq!(rig.open_multipart_uploads().await.unwrap(), 0);
    // The scan hook: one "Attachment Verified" event per released file, on the result bus.
    let iam = rig.stack.iam.as_ref().expect("IAM fixtures");
    let events = iam.result_events(&rig.stack.sqs).await.unwrap();
    let verified: Vec<&str> = events
        .iter()
        .filter(|e| e["detail-type"] == "Attachment Verified")
        .filter_map(|e| e["detail"]["fileName"].as_str())
        .collect();
    assert_eq!(verified, vec!["signed.pdf", "large.pdf"], "{events:?}");
}

/// The role's grants are needed, not just sufficient: without s3:DeleteObject a refused
/// upload cannot be removed, and the API says storage failed instead of claiming a refusal
/// that left its object behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_proxy_without_delete_object_cannot_refuse_cleanly() {
    use gc_archive_it::upload_kit::{upload, Misbehave, RigOptions, UploadRig};
    let rig = UploadRig::start_with(RigOptions {
        iam: true,
        without_actions: vec!["s3:DeleteObject"],
        ..RigOptions::default()
    })
    .await
    .unwrap();
    let mut bytes = vec![1u8; 64 * 1024];
    bytes[..2].copy_from_slice(b"MZ");
    let up = upload(&rig, "tool.pdf", &bytes, &Misbehave::default())
        .await
        .unwrap();
    assert_eq!(up.complete_status, 503, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "storage_error");
    // The record still says verifying: a later complete (with the grant back) finishes it.
    let record = rig.upload_record(&up.upload_id).await.unwrap_or_default();
    assert_eq!(record["phase"], "verifying");
}
