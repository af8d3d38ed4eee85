//! `gc-archive demo`: the main job on the embedded defaults. Starts the Genesys Cloud simulator
//! (seeded org, mixed codecs, a few large recordings, one that becomes available late) and a
//! moto server; creates bucket, KMS key, queues with DLQs, an EventBridge bus and rule; publishes
//! conversation-end events through EventBridge; runs the real handlers through an SQS event
//! source stand-in until every queue is drained; prints a summary; decrypts one archive and
//! compares it with the source. Everything runs on loopback and is stopped at the end.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use gc_archive::crypto::{DecryptOptions, EncryptionContext, KmsKeyring};
use gc_archive::handlers::HandlerDeps;
use gc_archive::store::manifest::Manifest;
use gc_archive_it::esm::queue_depth;
use gc_archive_it::routing_kit::{configure, MotoInspector};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{ConversationSpec, MediaSource, ParticipantSpec, RecordingSpec, SeedSpec};

/// The second storage target: Object Lock, where sales calls and chat transcripts go.
const RETAINED: &str = "gc-archive-demo-retained";

/// The demo's routing document: two targets, rules by queue and by media type.
const ROUTING: &str = "version: 1
targets:
  general:
    bucket: gc-archive-demo
    prefix: recordings
  retained:
    bucket: gc-archive-demo-retained
    prefix: recordings
    worm: true
    retentionDays: 30
rules:
  - name: sales calls
    target: retained
    when:
      queueIds: [q-sales]
      media: [audio]
  - name: chat transcripts
    target: retained
    when:
      media: [chat]
defaultTarget: general
";

/// The deployment's route table judged by [`MotoInspector`]: moto cannot serve two bucket
/// settings the compliance gate reads (see its docs), and says so in the output.
fn moto_gate(stack: &LocalStack, deps: &mut HandlerDeps) {
    if let Some(table) = deps.service.routes.clone() {
        deps.service.routes = Some(Arc::new(
            table.with_inspector(Arc::new(MotoInspector::new(stack, true))),
        ));
    }
}

use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct DemoArgs {
    /// Seeded conversations with real audio in mixed codecs.
    #[arg(long, default_value_t = 12)]
    conversations: usize,
    /// Size of each of the two large synthesized recordings (MiB): multi-part ranged transfers.
    #[arg(long, default_value_t = 24)]
    large_mib: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// ORIGINAL (batch download API, the original codec) or a transcoded formatId (WAV, …).
    #[arg(long, env = "GENESYS_MEDIA_FORMAT", default_value = "ORIGINAL")]
    media_format: String,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let format =
        gc_archive::config::MediaFormat::parse(&args.media_format).map_err(anyhow::Error::msg)?;
    println!(
        "gc-archive demo: Genesys Cloud simulator + moto (S3, SQS, KMS, EventBridge) on loopback"
    );
    let mut stack = LocalStack::start(StackOptions {
        env: vec![
            // Chat transcripts too: they have their own routing rule.
            ("ARCHIVE_MEDIA".into(), "audio,chat".into()),
            ("GENESYS_MEDIA_FORMAT".into(), format.name().to_string()),
            ("ARCHIVE_RETRY_BASE_SECS".into(), "1".into()),
            ("ARCHIVE_INLINE_BUDGET_SECS".into(), "60".into()),
            // The two large recordings go to chunk-recording through the TransferQueue.
            ("ARCHIVE_INLINE_MAX_MIB".into(), "16".into()),
            // Seeded conversations without recordings are settled after 3 s instead of 15 min.
            ("ARCHIVE_EMPTY_HORIZON_SECS".into(), "3".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .context("starting the simulator and moto (run `make demo` so the virtualenv exists)")?;
    println!(
        "  simulator  {}   org {}",
        stack.sim.base_url(),
        stack.sim.org_id()
    );
    println!(
        "  moto       {}   bucket s3://{BUCKET}/{PREFIX}/",
        stack.moto.endpoint_url()
    );

    // Storage routing: two compliant targets, the document in the deployment's bucket.
    configure(&stack, BUCKET, false, true).await;
    configure(&stack, RETAINED, true, true).await;
    let routing_key = format!("{PREFIX}/_config/routing.yaml");
    stack.put_bytes_in(BUCKET, &routing_key, ROUTING).await?;
    stack.env.insert(
        "ROUTING_CONFIG".into(),
        format!("s3://{BUCKET}/{routing_key}"),
    );
    println!(
        "  routing    s3://{BUCKET}/{routing_key}: sales calls and chat transcripts to s3://{RETAINED}/ (Object Lock, 30 days), the rest to s3://{BUCKET}/"
    );

    let mut conversations = stack.sim.seed(SeedSpec {
        conversations: args.conversations,
        days: 2,
        rng_seed: 20261124,
    });
    for _ in 0..2 {
        let cid = stack.sim.add_conversation(ConversationSpec::default());
        stack.sim.add_recording(
            &cid,
            RecordingSpec::new(MediaSource::SynthWav {
                size_bytes: args.large_mib * 1024 * 1024 + 4321,
            }),
        );
        conversations.push(cid);
    }
    let late = stack.sim.add_conversation(ConversationSpec::default());
    stack.sim.add_recording(
        &late,
        RecordingSpec {
            unavailable_polls: 2,
            ..RecordingSpec::new(MediaSource::Real(genesys_sim::Codec::OggOpus))
        },
    );
    conversations.push(late);
    // One conversation with every kind of recording: ARCHIVE_MEDIA (default audio) decides
    // which are archived; the others are acknowledged and counted, never retried.
    let mixed = stack.sim.add_conversation(ConversationSpec::default());
    for media in [
        MediaSource::Real(genesys_sim::Codec::WavPcm),
        MediaSource::Chat,
        MediaSource::Email,
    ] {
        stack.sim.add_recording(&mixed, RecordingSpec::new(media));
    }
    conversations.push(mixed);
    // Two sales calls (queue q-sales): rule "sales calls".
    let mut sales = Vec::new();
    for codec in [genesys_sim::Codec::Mp3, genesys_sim::Codec::OggOpus] {
        let cid = stack.sim.add_conversation(ConversationSpec {
            participants: vec![
                ParticipantSpec {
                    purpose: "customer".into(),
                    ..Default::default()
                },
                ParticipantSpec {
                    purpose: "agent".into(),
                    user_id: Some("agent-sales-1".into()),
                    queue_id: Some("q-sales".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        stack
            .sim
            .add_recording(&cid, RecordingSpec::new(MediaSource::Real(codec)));
        sales.push(cid.clone());
        conversations.push(cid);
    }

    // One conversation whose event never arrives: recording-sweep has to find it.
    let lost = stack.sim.add_conversation(ConversationSpec {
        start: Some(chrono::Utc::now() - chrono::Duration::minutes(30)),
        duration_secs: 240,
        ..ConversationSpec::default()
    });
    stack.sim.add_recording(
        &lost,
        RecordingSpec::new(MediaSource::Real(genesys_sim::Codec::WavUlaw)),
    );

    let audio: Vec<String> = stack
        .sim
        .conversations()
        .iter()
        .flat_map(|c| c.recordings.iter())
        .filter(|r| r.media == "audio" || r.media == "chat")
        .map(|r| r.id.clone())
        .collect();
    let recordings: usize = stack
        .sim
        .conversations()
        .iter()
        .map(|c| c.recordings.len())
        .sum();
    let source_bytes: u64 = stack
        .sim
        .conversations()
        .iter()
        .flat_map(|c| c.recordings.iter().map(|r| r.size_bytes))
        .sum();
    println!(
        "  seeded     {} conversations, {recordings} recordings ({} audio or chat), {:.1} MiB",
        conversations.len() + 1,
        audio.len(),
        source_bytes as f64 / 1048576.0
    );
    println!(
        "  media      {}",
        match &format {
            gc_archive::config::MediaFormat::Original =>
                "ORIGINAL: the original codec through the batch download API".to_string(),
            gc_archive::config::MediaFormat::Transcoded(f) =>
                format!("{f}: transcoded by Genesys, through the recordings endpoint"),
        }
    );

    let mut archive = stack.deps("archive-on-event").await?;
    let mut transfer = stack.deps("chunk-recording").await?;
    moto_gate(&stack, &mut archive);
    moto_gate(&stack, &mut transfer);
    let table = archive
        .service
        .routes
        .clone()
        .context("ROUTING_CONFIG was not read")?;
    let mut compliant = Vec::new();
    for d in table.destinations() {
        let verdict = table.verdict(&d.name).await.context("a target's verdict")?;
        if !verdict.compliant() {
            bail!(
                "target {} is not compliant: {:?}",
                d.name,
                verdict.failures()
            );
        }
        compliant.push(format!("{} ({} checks)", d.name, verdict.checks.len()));
    }
    println!(
        "  compliance {} pass every required check (moto stand-ins: versioning read raw, the TLS-only policy reported as the README sets it, which moto cannot serve writes under)",
        compliant.join(", ")
    );

    stack
        .publish_conversation_ends(&conversations, "customer.end")
        .await?;
    println!(
        "  published  {} conversation-end events to EventBridge (rule → ArchiveQueue)",
        conversations.len()
    );

    let started = Instant::now();
    let mut last_line = String::new();
    stack
        .drain(&archive, &transfer, Duration::from_secs(args.timeout_secs), |q| {
            let line = format!(
                "  progress   ArchiveQueue {} waiting, {} delayed | TransferQueue {} waiting, {} in flight",
                q.archive_waiting, q.archive_delayed, q.transfer_waiting, q.transfer_in_flight
            );
            if line != last_line {
                println!("{line}");
                last_line = line;
            }
        })
        .await
        .context("running the handlers")?;

    // The scheduled sweep, as recording-sweep runs it every 15 minutes.
    let sweep =
        gc_archive::bootstrap::sweep_runtime(&stack.function_env("recording-sweep"), &stack.sdk)
            .await?;
    let swept = gc_archive::handlers::recording_sweep::recording_sweep(
        &sweep,
        serde_json::json!({"action": "sweep"}),
        tokio::time::Instant::now() + Duration::from_secs(120),
    )
    .await
    .map_err(|e| anyhow::anyhow!("recording-sweep: {e}"))?;
    println!(
        "  sweep      recording-sweep saw {} conversations, {} already archived, put {} whose event was lost on the ArchiveQueue",
        swept["sweep"]["conversationsSeen"], swept["sweep"]["alreadyArchived"], swept["sweep"]["enqueued"]
    );
    stack
        .drain(
            &archive,
            &transfer,
            Duration::from_secs(args.timeout_secs),
            |_| {},
        )
        .await
        .context("running the handlers after the sweep")?;
    conversations.push(lost);
    let elapsed = started.elapsed();
    let manifests = load_manifests(&stack).await?;
    println!(
        "  archived   {}/{} audio and chat recordings",
        manifests.len(),
        audio.len()
    );

    // Where each went: the bucket its rule names, recorded in its manifest.
    let mut by_route: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &manifests {
        let route = m.route.as_ref().context("a manifest without its route")?;
        let expected = if route.target == "retained" {
            RETAINED
        } else {
            BUCKET
        };
        if m.bucket != expected || route.bucket != m.bucket {
            bail!(
                "{} was archived to {}, its route says {}",
                m.object_key,
                m.bucket,
                route.bucket
            );
        }
        *by_route
            .entry(format!(
                "{} by {}",
                route.target,
                route.rule.as_deref().unwrap_or("default")
            ))
            .or_default() += 1;
    }
    println!(
        "  routed     {}",
        by_route
            .iter()
            .map(|(k, v)| format!("{v} to {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sales_id = gc_archive::ConversationId::parse(&sales[0])?;
    for e in archive.service.explain_routes(&sales_id).await? {
        let recorded = e
            .recorded
            .as_ref()
            .context("the sales call's route record")?;
        println!(
            "  route      gc-archive route --conversation {sales_id}: recording {} ({}) went to {} by rule {:?}",
            e.recording_id,
            e.facts,
            recorded.target,
            recorded.rule.as_deref().unwrap_or("default")
        );
    }
    let locked = manifests
        .iter()
        .find(|m| m.bucket == RETAINED)
        .context("nothing reached the retained target")?;
    let manifest_key = locked
        .object_key
        .rsplit_once('/')
        .map(|(dir, name)| {
            format!(
                "{dir}/{}.manifest.json",
                name.split('.').next().unwrap_or(name)
            )
        })
        .unwrap_or_default();
    let head = stack
        .s3
        .head_object()
        .bucket(RETAINED)
        .key(&manifest_key)
        .send()
        .await?;
    println!(
        "  locked     s3://{RETAINED}/{manifest_key}: Object Lock {} until {}",
        head.object_lock_mode()
            .map(|m| m.as_str())
            .unwrap_or("none"),
        head.object_lock_retain_until_date()
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    let archived_bytes: u64 = manifests.iter().map(|m| m.plaintext.size).sum();
    let (dlq_a, _) = queue_depth(&stack.sqs, &stack.archive_queue.dlq_url).await?;
    let (dlq_t, _) = queue_depth(&stack.sqs, &stack.transfer_queue.dlq_url).await?;
    let failures = count_prefix(&stack, &format!("{PREFIX}/_audit/"), "-failed-").await?
        + count_prefix(&stack, &format!("{PREFIX}/_audit/"), "-not_available-").await?;
    let mut by_codec: HashMap<String, usize> = HashMap::new();
    for m in &manifests {
        *by_codec.entry(m.plaintext.codec.clone()).or_default() += 1;
    }
    let mut codecs: Vec<String> = by_codec.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    codecs.sort();
    println!();
    println!("  ┌────────────────────────────────┬────────────────────────┐");
    let row = |k: &str, v: String| println!("  │ {k:<30} │ {v:<22} │");
    row("conversations", conversations.len().to_string());
    row(
        "  of which without recordings",
        stack
            .sim
            .conversations()
            .iter()
            .filter(|c| c.recordings.is_empty())
            .count()
            .to_string(),
    );
    row("recordings in Genesys", recordings.to_string());
    row("  audio + chat (ARCHIVE_MEDIA)", audio.len().to_string());
    row("recordings archived", manifests.len().to_string());
    row(
        "  via batch download",
        manifests
            .iter()
            .filter(|m| m.source.format_id == "ORIGINAL")
            .count()
            .to_string(),
    );
    row(
        "  via TransferQueue",
        archived_by(&stack, "chunk-recording").await?.to_string(),
    );
    row(
        "bytes archived",
        format!("{:.1} MiB", archived_bytes as f64 / 1048576.0),
    );
    row(
        "time (events → last archive)",
        format!("{:.1} s", elapsed.as_secs_f64()),
    );
    row(
        "throughput",
        format!(
            "{:.1} MiB/s",
            archived_bytes as f64 / 1048576.0 / elapsed.as_secs_f64().max(0.001)
        ),
    );
    row("failures reported", failures.to_string());
    row("dead-lettered messages", (dlq_a + dlq_t).to_string());
    row(
        "write-backs (externalTag)",
        conversations
            .iter()
            .filter(|c| stack.sim.external_tag(c).is_some())
            .count()
            .to_string(),
    );
    println!("  └────────────────────────────────┴────────────────────────┘");
    println!("  codecs: {}", codecs.join(", "));

    // Decrypt every archive with the KMS key and compare it with what Genesys served.
    let kms = aws_sdk_kms::Client::new(&stack.sdk);
    let keyring = Arc::new(KmsKeyring::new(kms, stack.key_arn.clone()));
    let mut identical = 0;
    for m in &manifests {
        let obj = stack.get_bytes_in(&m.bucket, &m.object_key).await?;
        let required = EncryptionContext::new()
            .with("orgId", m.org_id.as_str())
            .with("conversationId", m.conversation_id.as_str())
            .with("recordingId", m.recording_id.as_str());
        let (plain, _) = gc_archive::crypto::decrypt_bytes(
            keyring.clone(),
            DecryptOptions {
                required_context: required,
            },
            &obj,
        )
        .await?;
        let expected = match &format {
            gc_archive::config::MediaFormat::Original => {
                let mut source = stack
                    .sim
                    .media_reader(&m.recording_id)
                    .context("source media")?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = source.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                hex::encode(hasher.finalize())
            }
            gc_archive::config::MediaFormat::Transcoded(f) => hex::encode(Sha256::digest(
                stack
                    .sim
                    .rendition_bytes(&m.recording_id, f)
                    .context("rendition")?,
            )),
        };
        let plain_sha = hex::encode(Sha256::digest(&plain));
        if expected != plain_sha || plain_sha != m.plaintext.sha256 {
            bail!(
                "s3://{}/{}: decrypted archive does not match what Genesys served",
                m.bucket,
                m.object_key
            );
        }
        identical += 1;
    }
    let m = manifests
        .iter()
        .max_by_key(|m| m.plaintext.size)
        .context("nothing was archived")?;
    println!();
    println!("  decrypted  every archive with the KMS key: {identical}/{} byte-identical to what Genesys served", manifests.len());
    println!("  largest    s3://{}/{}", m.bucket, m.object_key);
    println!(
        "             {} plaintext bytes ({}, {}), sha256 {}",
        m.plaintext.size, m.plaintext.codec, m.source.format_id, m.plaintext.sha256
    );
    println!(
        "             S3 full-object CRC64NVME {} ({} parts)",
        m.ciphertext
            .s3_checksum_crc64nvme
            .as_deref()
            .unwrap_or("none"),
        m.ciphertext.parts
    );
    if manifests.len() != audio.len() {
        bail!(
            "{} of {} audio and chat recordings archived",
            manifests.len(),
            audio.len()
        );
    }
    if dlq_a + dlq_t > 0 || failures > 0 {
        bail!(
            "{failures} failures reported, {} dead-lettered messages",
            dlq_a + dlq_t
        );
    }
    println!(
        "\ndemo finished in {:.1} s; simulator and moto stopped.",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn count_prefix(stack: &LocalStack, prefix: &str, contains: &str) -> Result<usize> {
    Ok(stack
        .list_keys(prefix)
        .await?
        .iter()
        .filter(|k| k.contains(contains))
        .count())
}

/// Recordings archived by `function`, from the audit records.
async fn archived_by(stack: &LocalStack, function: &str) -> Result<usize> {
    let mut n = 0;
    for key in stack.list_keys(&format!("{PREFIX}/_audit/")).await? {
        if key.contains("-archived-") {
            let record: gc_archive::audit::AuditRecord =
                serde_json::from_slice(&stack.get_bytes(&key).await?)?;
            n += usize::from(record.function == function);
        }
    }
    Ok(n)
}

/// Every manifest of the org, in both targets.
async fn load_manifests(stack: &LocalStack) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for bucket in [BUCKET, RETAINED] {
        for key in stack
            .list_keys_in(bucket, &format!("{PREFIX}/{}/", stack.sim.org_id()))
            .await?
        {
            if key.ends_with(".manifest.json") {
                let body = stack.get_bytes_in(bucket, &key).await?;
                out.push(
                    serde_json::from_slice(&body)
                        .with_context(|| format!("manifest s3://{bucket}/{key}"))?,
                );
            }
        }
    }
    Ok(out)
}
