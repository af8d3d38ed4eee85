//! Storage routing end to end against moto and the Genesys Cloud simulator: recordings land in
//! the bucket their rule names (worm targets under Object Lock retention that moto enforces),
//! the manifest and the route record name target and rule, a non-compliant target receives
//! nothing, and the compliance checks read each bucket setting from S3.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::ServerSideEncryption;
use gc_archive::compliance::{self, BucketInspector, Status, TargetReport};
use gc_archive::handlers::{archive_on_event, chunk_recording, HandlerError};
use gc_archive::ids::ConversationId;
use gc_archive::routing::{RoutingConfig, StorageTarget};
use gc_archive::store::manifest::Manifest;
use gc_archive_it::routing_kit::{configure, set_default_encryption, tls_policy, MotoInspector};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, ParticipantSpec, RecordingSpec};

const SALES: &str = "gc-sales-archive";
const GENERAL: &str = "gc-general-archive";
const UNVERSIONED: &str = "gc-unversioned-archive";

const ROUTING: &str = r#"
version: 1
targets:
  sales:
    bucket: gc-sales-archive
    prefix: calls
    retentionDays: 30
    worm: true
  general:
    bucket: gc-general-archive
    prefix: gc
  complaints:
    bucket: gc-unversioned-archive
rules:
  - name: sales calls
    target: sales
    when:
      queueIds: [q-sales]
      media: [audio]
  - name: complaints
    target: complaints
    when:
      wrapupCodes: [wc-complaint]
  - name: chats
    target: general
    when:
      media: [chat, messaging]
defaultTarget: general
"#;

fn envelope(stack: &LocalStack, cid: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": format!("e-{cid}"),
        "detail-type": "v2.detail.events.conversation.{id}.customer.end",
        "source": format!("aws.partner/genesys.com/cloud/{}/gc-archive", stack.sim.org_id()),
        "account": "123456789012", "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1", "resources": [],
        "detail": stack.conversation_event(cid, "customer.end"),
    })
}

fn conversation(queue: &str, wrapup: Option<&str>) -> ConversationSpec {
    ConversationSpec {
        participants: vec![
            ParticipantSpec {
                purpose: "customer".into(),
                attributes: [("tier".to_string(), "gold".to_string())].into(),
                ..Default::default()
            },
            ParticipantSpec {
                purpose: "agent".into(),
                user_id: Some("agent-1".into()),
                queue_id: Some(queue.into()),
                wrapup_code: wrapup.map(str::to_string),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

async fn keys(stack: &LocalStack, bucket: &str) -> Vec<String> {
    stack.list_keys_in(bucket, "").await.unwrap()
}

async fn manifest(stack: &LocalStack, bucket: &str, key: &str) -> Manifest {
    serde_json::from_slice(&stack.get_bytes_in(bucket, key).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_land_where_their_rule_says_and_a_non_compliant_target_receives_nothing() {
    let mut stack = LocalStack::start(StackOptions {
        env: vec![("ARCHIVE_MEDIA".into(), "audio,chat".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    configure(&stack, SALES, true, true).await;
    configure(&stack, GENERAL, false, true).await;
    configure(&stack, UNVERSIONED, false, false).await;
    stack
        .put_bytes_in(BUCKET, "config/routing.yaml", ROUTING)
        .await
        .unwrap();
    stack.env.insert(
        "ROUTING_CONFIG".into(),
        format!("s3://{BUCKET}/config/routing.yaml"),
    );

    let sales = stack.sim.add_conversation(conversation("q-sales", None));
    let sales_rec = stack.sim.add_recording(
        &sales,
        RecordingSpec::new(MediaSource::Real(Codec::OggOpus)),
    );
    let sales_chat = stack
        .sim
        .add_recording(&sales, RecordingSpec::new(MediaSource::Chat));
    let support = stack.sim.add_conversation(conversation("q-support", None));
    let support_rec = stack.sim.add_recording(
        &support,
        RecordingSpec::new(MediaSource::Real(Codec::OggOpus)),
    );
    let complaint = stack
        .sim
        .add_conversation(conversation("q-support", Some("wc-complaint")));
    stack.sim.add_recording(
        &complaint,
        RecordingSpec::new(MediaSource::Real(Codec::OggOpus)),
    );

    let mut deps = stack.deps("archive-on-event").await.unwrap();
    let table = deps
        .service
        .routes
        .clone()
        .expect("ROUTING_CONFIG was read");
    assert!(table
        .source
        .starts_with(&format!("s3://{BUCKET}/config/routing.yaml#")));
    deps.service.routes = Some(Arc::new(
        table.with_inspector(Arc::new(MotoInspector::new(&stack, true))),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);

    for cid in [&sales, &support] {
        let out = archive_on_event(&deps, envelope(&stack, cid), deadline, "req-1").await;
        assert!(out.is_ok(), "{cid}: {out:?}");
    }
    // The complaint's target fails the versioning check: only that recording waits (handed to
    // the TransferQueue with a 15-minute delay, when the verdict is read again); the event is
    // settled, and nothing is written anywhere or decided for it.
    let complaint_rec = stack
        .sim
        .conversations()
        .into_iter()
        .find(|c| c.id == complaint)
        .unwrap()
        .recordings[0]
        .id
        .clone();
    let out = archive_on_event(&deps, envelope(&stack, &complaint), deadline, "req-2").await;
    assert!(out.is_ok(), "{out:?}");
    let delayed = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.transfer_queue.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        delayed
            .attributes()
            .and_then(|a| a
                .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed))
            .map(String::as_str),
        Some("1")
    );
    let transfer = {
        let mut t = stack.deps("chunk-recording").await.unwrap();
        t.service.routes = deps.service.routes.clone();
        t
    };
    let waited = chunk_recording(
        &transfer,
        stack.transfer_job(&complaint, &complaint_rec),
        deadline,
        "req-2b",
    )
    .await;
    match waited {
        Err(HandlerError::RetryLater(reason)) => {
            assert!(reason.contains("\"complaints\""), "{reason}");
            assert!(reason.contains("versioning"), "{reason}");
        }
        other => panic!("expected the transfer to wait, got {other:?}"),
    }
    assert!(keys(&stack, UNVERSIONED).await.is_empty());
    let state = stack
        .list_keys(&format!("{PREFIX}/_state/routes/"))
        .await
        .unwrap();
    assert!(
        !state.iter().any(|k| k.contains(&complaint)),
        "a refused route was recorded: {state:?}"
    );

    // Sales audio went to the worm target, the sales chat (rule "chats") and the support call
    // (default) to the general one; nothing to the deployment's bucket.
    let sales_keys = keys(&stack, SALES).await;
    let general_keys = keys(&stack, GENERAL).await;
    let manifests = |ks: &[String]| -> Vec<String> {
        ks.iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .cloned()
            .collect()
    };
    let sales_manifests = manifests(&sales_keys);
    let general_manifests = manifests(&general_keys);
    assert_eq!(sales_manifests.len(), 1, "{sales_keys:?}");
    assert!(sales_manifests[0].starts_with("calls/"));
    assert!(sales_manifests[0].contains(&sales_rec));
    assert_eq!(general_manifests.len(), 2, "{general_keys:?}");
    assert!(general_manifests.iter().all(|k| k.starts_with("gc/")));
    assert!(general_manifests.iter().any(|k| k.contains(&sales_chat)));
    assert!(general_manifests.iter().any(|k| k.contains(&support_rec)));
    let home = stack.list_keys(&format!("{PREFIX}/")).await.unwrap();
    assert!(
        !home.iter().any(|k| k.ends_with(".manifest.json")),
        "{home:?}"
    );

    let m = manifest(&stack, SALES, &sales_manifests[0]).await;
    let route = m.route.expect("the manifest names its route");
    assert_eq!(route.target, "sales");
    assert_eq!(route.rule.as_deref(), Some("sales calls"));
    assert_eq!(m.bucket, SALES);
    let support_manifest = general_manifests
        .iter()
        .find(|k| k.contains(&support_rec))
        .unwrap();
    let m = manifest(&stack, GENERAL, support_manifest).await;
    let route = m.route.unwrap();
    assert_eq!((route.target.as_str(), route.rule), ("general", None));

    // The worm target's manifest carries Object Lock retention set by the bucket from our
    // PutObject, and moto refuses to delete the locked version. The archive object asks for
    // the same retention on CreateMultipartUpload, which moto 5.2.5 does not apply (it stores
    // no lock for multipart objects), so only its request can be checked here: that is
    // `object_lock_is_asked_for_on_the_multipart_create_and_the_manifest_put` below.
    for key in sales_keys.iter().filter(|k| k.ends_with(".manifest.json")) {
        let head = stack
            .s3
            .head_object()
            .bucket(SALES)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("COMPLIANCE"),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let days = (until - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
        assert!((29.9..=30.1).contains(&days), "{key}: {days} days");
        let version = stack
            .s3
            .head_object()
            .bucket(SALES)
            .key(key)
            .send()
            .await
            .unwrap()
            .version_id()
            .map(str::to_string);
        let deleted = stack
            .s3
            .delete_object()
            .bucket(SALES)
            .key(key)
            .set_version_id(version)
            .send()
            .await;
        assert!(deleted.is_err(), "{key}: a locked version was deleted");
    }

    // The decision is kept: with the rules changed to send everything elsewhere, a
    // redelivery finds the archive where the first decision put it.
    stack
        .put_bytes_in(
            BUCKET,
            "config/routing.yaml",
            ROUTING.replace("queueIds: [q-sales]", "queueIds: [q-nobody]"),
        )
        .await
        .unwrap();
    let mut again = stack.deps("archive-on-event").await.unwrap();
    again.service.routes = Some(Arc::new(
        again
            .service
            .routes
            .clone()
            .unwrap()
            .with_inspector(Arc::new(MotoInspector::new(&stack, true))),
    ));
    let out = archive_on_event(&again, envelope(&stack, &sales), deadline, "req-3").await;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(manifests(&keys(&stack, SALES).await).len(), 1);
    assert_eq!(manifests(&keys(&stack, GENERAL).await).len(), 2);

    // `gc-archive route` explains both: the recorded route wins over the new rules.
    let explained = again
        .service
        .explain_routes(&ConversationId::parse(&sales).unwrap())
        .await
        .unwrap();
    let audio = explained
        .iter()
        .find(|e| e.recording_id == sales_rec)
        .unwrap();
    assert_eq!(audio.recorded.as_ref().unwrap().target, "sales");
    assert_eq!(audio.decision.as_ref().unwrap().target, "general");
    assert!(
        audio.passed_over[0].contains("sales calls"),
        "{:?}",
        audio.passed_over
    );
    assert!(audio.refused.is_empty(), "{:?}", audio.refused);

    // The write-back names the archive folder in the target bucket.
    let tag = stack
        .sim
        .conversations()
        .into_iter()
        .find(|c| c.id == support)
        .and_then(|c| c.external_tag);
    assert!(
        tag.as_deref()
            .unwrap_or("")
            .starts_with(&format!("s3://{GENERAL}/gc/")),
        "{tag:?}"
    );
}

fn target(bucket: &str, worm: bool) -> StorageTarget {
    RoutingConfig::from_yaml(&format!(
        "version: 1\ntargets:\n  t:\n    bucket: {bucket}\n    retentionDays: 30\n    worm: {worm}\ndefaultTarget: t\n"
    ))
    .unwrap()
    .targets["t"]
        .clone()
}

async fn check(stack: &LocalStack, bucket: &str, worm: bool) -> TargetReport {
    let settings = MotoInspector::new(stack, false).inspect(bucket).await;
    compliance::evaluate("t", &target(bucket, worm), &settings, chrono::Utc::now())
}

fn failed(r: &TargetReport) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_checks_read_each_setting_from_s3() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    // Compliant, with the real TLS-only policy read back from S3.
    configure(&stack, "gc-compliant", true, true).await;
    stack
        .s3
        .put_bucket_policy()
        .bucket("gc-compliant")
        .policy(tls_policy("gc-compliant"))
        .send()
        .await
        .unwrap();
    let r = check(&stack, "gc-compliant", true).await;
    assert!(r.compliant(), "{:?}", r.failures());

    // One bucket per missing setting, each failing exactly its own check.
    let cases: [(&str, &str); 6] = [
        ("gc-no-encryption", "default-encryption"),
        ("gc-sse-s3", "default-encryption"),
        ("gc-public", "public-access-block"),
        ("gc-unversioned", "versioning"),
        ("gc-no-lock", "object-lock"),
        ("gc-no-lifecycle", "abort-incomplete-multipart"),
    ];
    for (bucket, check_id) in cases {
        // Object Lock switches versioning on, so the unversioned bucket is not a worm target.
        let worm = bucket != "gc-unversioned";
        configure(&stack, bucket, worm && bucket != "gc-no-lock", worm).await;
        let s3 = &stack.s3;
        match bucket {
            "gc-no-encryption" => {
                s3.delete_bucket_encryption()
                    .bucket(bucket)
                    .send()
                    .await
                    .unwrap();
            }
            "gc-sse-s3" => {
                set_default_encryption(&stack, bucket, ServerSideEncryption::Aes256).await;
            }
            "gc-public" => {
                s3.delete_public_access_block()
                    .bucket(bucket)
                    .send()
                    .await
                    .unwrap();
            }
            "gc-no-lifecycle" => {
                s3.delete_bucket_lifecycle()
                    .bucket(bucket)
                    .send()
                    .await
                    .unwrap();
            }
            _ => {}
        }
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(tls_policy(bucket))
            .send()
            .await
            .unwrap();
        let r = check(&stack, bucket, worm).await;
        assert_eq!(
            failed(&r),
            vec![check_id.to_string()],
            "{bucket}: {:?}",
            r.checks
        );
        let c = r.checks.iter().find(|c| c.id == check_id).unwrap();
        assert!(c.fix.is_some(), "{bucket}");
    }

    // No TLS-only policy: a bucket otherwise compliant fails that check alone; the probe
    // writes, reads back and deletes under _probe/ (not possible on moto with the policy).
    configure(&stack, "gc-no-policy", true, true).await;
    let r = check(&stack, "gc-no-policy", true).await;
    assert_eq!(failed(&r), vec!["tls-only-policy".to_string()]);
    let store = gc_archive::store::S3Store::new(stack.s3.clone(), "gc-no-policy");
    let probe = compliance::probe(&store, "gc", chrono::Utc::now()).await;
    assert_eq!(probe.status, Status::Pass, "{probe:?}");
    assert!(keys(&stack, "gc-no-policy").await.is_empty());

    // A bucket that does not exist is unreachable, and every read names what failed.
    let r = check(&stack, "gc-does-not-exist", false).await;
    assert!(
        failed(&r).contains(&"reachable".to_string()),
        "{:?}",
        r.checks
    );
}

/// What moto cannot show (it applies no lock to multipart objects): the archive's
/// CreateMultipartUpload and the manifest's PutObject both carry the retention, as seen on
/// the wire by a proxy in front of moto; checkpoints and markers do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_is_asked_for_on_the_multipart_create_and_the_manifest_put() {
    use gc_archive::store::{ObjectKey, ObjectStore, S3Store};
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    configure(&stack, SALES, true, true).await;
    let proxy = gc_archive_it::fault_proxy::FaultProxy::start(&stack.moto.endpoint_url())
        .await
        .unwrap();
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&stack.sdk)
            .endpoint_url(proxy.base_url())
            .force_path_style(true)
            .build(),
    );
    let store = S3Store::new(client, SALES)
        .with_object_lock(gc_archive::routing::ObjectLockMode::Governance, 10);
    let archive = ObjectKey::new("calls/o/c/r.opus.enc");
    let upload = store
        .create_multipart(&archive, "application/octet-stream")
        .await
        .unwrap();
    store.abort_multipart(&archive, &upload).await.unwrap();
    for key in ["calls/o/c/r.manifest.json", "calls/_state/transfers/r.json"] {
        store
            .put_if_absent(
                &ObjectKey::new(key),
                bytes::Bytes::from_static(b"{}"),
                "application/json",
            )
            .await
            .unwrap();
    }
    let seen = proxy.requests();
    let lock_of = |method: &str, fragment: &str| {
        seen.iter()
            .find(|r| r.method == method && r.path.contains(fragment))
            .unwrap_or_else(|| panic!("no {method} {fragment}: {seen:?}"))
            .object_lock
            .clone()
    };
    for (method, fragment) in [("POST", "r.opus.enc"), ("PUT", "r.manifest.json")] {
        let (mode, until) = lock_of(method, fragment).expect("object lock headers");
        assert_eq!(mode, "GOVERNANCE");
        let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
        let days = (until.timestamp() - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
        assert!((9.9..=10.1).contains(&days), "{fragment}: {days}");
    }
    assert_eq!(lock_of("PUT", "_state/transfers/r.json"), None);
}

/// `ROUTING_CONFIG` from S3, SSM Parameter Store (moto) or a file, each read with its version;
/// a bad source or document is refused at start-up naming the source and the field or line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_document_is_read_from_s3_ssm_or_a_file_and_problems_name_the_source() {
    use gc_archive::bootstrap::routing_config;
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let env_with = |source: &str| {
        let mut env = stack.env.clone();
        env.insert("ROUTING_CONFIG".into(), source.to_string());
        env
    };
    let etag = stack
        .put_bytes_in(BUCKET, "recordings/_config/routing.yaml", ROUTING)
        .await
        .unwrap();
    let (config, version) = routing_config(
        &env_with(&format!("s3://{BUCKET}/recordings/_config/routing.yaml")),
        &stack.sdk,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(config.rules.len(), 3);
    assert_eq!(
        version,
        format!("s3://{BUCKET}/recordings/_config/routing.yaml#{etag}")
    );

    let ssm = aws_sdk_ssm::Client::new(&stack.sdk);
    ssm.put_parameter()
        .name("/gc-archive/routing")
        .value(ROUTING)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let (from_ssm, version) = routing_config(&env_with("ssm:/gc-archive/routing"), &stack.sdk)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_ssm, config);
    assert_eq!(version, "ssm:/gc-archive/routing#1");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routing.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "targets": {"a": {"bucket": "acme-archive"}}, "defaultTarget": "a"}"#,
    )
    .unwrap();
    let (from_file, _) = routing_config(&env_with(&format!("file:{}", file.display())), &stack.sdk)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_file.default_target.as_deref(), Some("a"));
    assert!(routing_config(&stack.env, &stack.sdk)
        .await
        .unwrap()
        .is_none());

    for (source, words) in [
        ("https://example.com/routing.yaml", "is not s3://bucket/key"),
        (
            &format!("s3://{BUCKET}/recordings/_config/missing.yaml"),
            "NoSuchKey",
        ),
        ("ssm:/gc-archive/missing", "ParameterNotFound"),
    ] {
        let e = routing_config(&env_with(source), &stack.sdk)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(source) && e.contains(words), "{source}: {e}");
    }
    stack
        .put_bytes_in(
            BUCKET,
            "recordings/_config/bad.yaml",
            ROUTING.replace("target: general", "target: nowhere"),
        )
        .await
        .unwrap();
    let e = routing_config(
        &env_with(&format!("s3://{BUCKET}/recordings/_config/bad.yaml")),
        &stack.sdk,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rules[2].target") && e.contains("\"nowhere\" is not one of the targets"),
        "{e}"
    );
    // The deps refuse to start on it, naming the same.
    let mut env = env_with(&format!("s3://{BUCKET}/recordings/_config/bad.yaml"));
    env.insert("ARCHIVE_S3_FORCE_PATH_STYLE".into(), "true".into());
    let refused = gc_archive::bootstrap::handler_deps("archive-on-event", &env, &stack.sdk).await;
    assert!(matches!(
        refused,
        Err(gc_archive::bootstrap::InitError::Routing { .. })
    ));
}
