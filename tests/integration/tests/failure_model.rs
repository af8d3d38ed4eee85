//! The transfer engine's failure model: every error is transient (retry this recording),
//! recording-permanent (give it up, clean up what we own) or infrastructure (the deployment is
//! broken: keep everything, fail the invocation). Scenario 1 of the engine issue: recoverable
//! work — a multipart upload with parts done — must never be thrown away because KMS throttled,
//! credentials were rotated or a bucket policy changed. Before the failure model these runs
//! aborted the upload and dead-lettered the message (`Crypto` and S3 403 were permanent).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use gc_archive::crypto::{CryptoError, DataKey, EncryptedDataKey, EncryptionContext, Keyring};
use gc_archive::retry::Retryable;
use gc_archive::store::{FaultyStore, ObjectStore, StoreOp};
use gc_archive::transfer::{transfer_recording, TransferError, TransferOutcome};
use gc_archive_it::transfer_kit::{Kit, SMALL_CHUNK};
use genesys_sim::{MediaSource, RecordingSpec};

/// A keyring whose next `fail_decrypts` unwraps fail as KMS answers them.
struct FlakyKeyring {
    inner: Arc<dyn Keyring>,
    fail_decrypts: AtomicU32,
    error: fn(String) -> CryptoError,
}

#[async_trait]
impl Keyring for FlakyKeyring {
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), CryptoError> {
        self.inner.generate_data_key(ctx).await
    }
    async fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, CryptoError> {
        if self
            .fail_decrypts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err((self.error)("Decrypt: injected".into()));
        }
        self.inner.decrypt_data_key(edks, ctx).await
    }
}

/// A Genesys client for the kit's simulator with other credentials than the kit's.
fn client_with_credentials(
    kit: &Kit,
    client_id: &str,
    secret: &str,
    retry: gc_archive::retry::RetryPolicy,
) -> gc_archive::genesys::GenesysClient {
    let base = kit.sim.base_url().parse().unwrap();
    gc_archive::genesys::GenesysClient::with_http(
        gc_archive::genesys::client::http_client(std::time::Duration::from_secs(5)).unwrap(),
        &base,
        &base,
        gc_archive::config::GenesysCredentials {
            client_id: client_id.to_string(),
            client_secret: secret.to_string().into(),
        },
        retry,
    )
}

fn four_parts() -> RecordingSpec {
    RecordingSpec::new(MediaSource::SynthWav {
        size_bytes: 3 * SMALL_CHUNK + 1000,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_throttling_on_resume_keeps_the_uploaded_parts_for_the_retry() {
    for (name, error, infrastructure) in [
        (
            "throttled",
            CryptoError::KmsUnavailable as fn(String) -> CryptoError,
            false,
        ),
        ("access denied", CryptoError::KmsConfiguration, true),
    ] {
        let kit = Kit::start().await;
        let added = kit.add_recording(four_parts());
        let store = Arc::new(FaultyStore::new(kit.store.clone()));
        let keyring = Arc::new(FlakyKeyring {
            inner: kit.keyring.clone(),
            fail_decrypts: AtomicU32::new(0),
            error,
        });
        let deps = gc_archive::transfer::engine::TransferDeps {
            genesys: kit.genesys.clone(),
            store: store.clone() as Arc<dyn ObjectStore>,
            keyring: keyring.clone(),
        };
        let settings = gc_archive::transfer::TransferSettings {
            fetch_concurrency: 1,
            uploads_in_flight: 1,
            ..kit.settings("w1")
        };
        // First run: the last two parts fail (transiently) until the retries give up, so the
        // checkpoint keeps two uploaded parts.
        let first = run_with_part_failures(&deps, &added.job, &settings, &store).await;
        assert!(
            first.is_err(),
            "{name}: the first run stops with parts done"
        );
        assert_eq!(kit.open_uploads().await.len(), 1, "{name}");
        assert_eq!(kit.checkpoints().await.len(), 1, "{name}");

        // Second run: resuming needs the data key again, and KMS fails.
        keyring.fail_decrypts.store(1, Ordering::SeqCst);
        let err = transfer_recording(&deps, &added.job, &settings, None)
            .await
            .expect_err("KMS failed");
        assert!(matches!(err, TransferError::Crypto(_)), "{name}: {err:?}");
        assert_eq!(err.is_infrastructure(), infrastructure, "{name}: {err:?}");
        assert_eq!(err.is_transient(), !infrastructure, "{name}: {err:?}");
        assert_eq!(
            kit.open_uploads().await.len(),
            1,
            "{name}: the upload with its parts is kept"
        );
        assert_eq!(
            kit.checkpoints().await.len(),
            1,
            "{name}: and its checkpoint"
        );

        // Third run: KMS is back; the transfer finishes from the parts it had.
        match transfer_recording(&deps, &added.job, &settings, None).await {
            Ok(TransferOutcome::Archived(m)) => {
                assert_eq!(m.timings.invocations, 3, "{name}");
                kit.verify_archived(&added, &m, "wav", "WAV_PCM").await;
            }
            other => panic!("{name}: expected Archived, got {other:?}"),
        }
        kit.assert_nothing_left_behind().await;
    }
}

/// Fails uploads of parts 3 and 4 (every attempt) so that a run ends with two parts done.
async fn run_with_part_failures(
    deps: &gc_archive::transfer::engine::TransferDeps,
    job: &gc_archive::transfer::TransferJob,
    settings: &gc_archive::transfer::TransferSettings,
    store: &Arc<FaultyStore>,
) -> Result<TransferOutcome, TransferError> {
    store.fail_after(StoreOp::UploadPart, ".wav.enc", 2, 1_000);
    let r = transfer_recording(deps, job, settings, None).await;
    store.clear();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_access_denied_mid_transfer_is_infrastructure_and_discards_nothing() {
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let store = Arc::new(FaultyStore::new(kit.store.clone()));
    let deps = kit.deps_with_store(store.clone());
    let settings = gc_archive::transfer::TransferSettings {
        fetch_concurrency: 1,
        uploads_in_flight: 1,
        ..kit.settings("w1")
    };
    store.deny_after(StoreOp::UploadPart, ".wav.enc", 2, 1_000);
    let err = transfer_recording(&deps, &added.job, &settings, None)
        .await
        .expect_err("the bucket policy refuses");
    store.clear();
    assert!(err.is_infrastructure(), "{err:?}");
    assert_eq!(kit.open_uploads().await.len(), 1, "the parts are kept");
    assert_eq!(kit.checkpoints().await.len(), 1);
    match transfer_recording(&deps, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(m)) => kit.verify_archived(&added, &m, "wav", "WAV_PCM").await,
        other => panic!("expected Archived, got {other:?}"),
    }
    kit.assert_nothing_left_behind().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_genesys_credentials_are_infrastructure_and_keep_the_parts() {
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let store = Arc::new(FaultyStore::new(kit.store.clone()));
    let deps = kit.deps_with_store(store.clone());
    let settings = gc_archive::transfer::TransferSettings {
        fetch_concurrency: 1,
        uploads_in_flight: 1,
        ..kit.settings("w1")
    };
    let first = run_with_part_failures(&deps, &added.job, &settings, &store).await;
    assert!(first.is_err());
    // A warm container still holds the old secret after a rotation.
    let stale = client_with_credentials(
        &kit,
        kit.sim.client_id(),
        "rotated-away",
        gc_archive::retry::RetryPolicy::default()
            .with_base_delay(std::time::Duration::from_millis(5)),
    );
    let stale_deps = gc_archive::transfer::engine::TransferDeps {
        genesys: stale,
        store: store.clone() as Arc<dyn ObjectStore>,
        keyring: kit.keyring.clone(),
    };
    let err = transfer_recording(&stale_deps, &added.job, &settings, None)
        .await
        .expect_err("bad credentials");
    assert!(err.is_infrastructure(), "{err:?}");
    assert_eq!(kit.open_uploads().await.len(), 1, "the parts are kept");
    match transfer_recording(&deps, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(m)) => kit.verify_archived(&added, &m, "wav", "WAV_PCM").await,
        other => panic!("expected Archived, got {other:?}"),
    }
}

/// Scenario 3: an object at the final key that no manifest vouches for (a half-finished run of
/// another version, an operator's copy) used to be a permanent conflict: every attempt got 412
/// and a DLQ redrive looped. Now it is moved to `_quarantine/` with the reason, and the
/// transfer's own verified upload takes the key in the same attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unvouched_object_at_the_final_key_is_quarantined_and_the_recording_archived_again() {
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let final_key = kit.object_key(&added, "wav");
    kit.s3
        .put_object()
        .bucket(&kit.bucket)
        .key(&final_key)
        .body(b"not an archive".to_vec().into())
        .send()
        .await
        .unwrap();
    let settings = kit.settings("w1");
    kit.sim.clear_requests();
    let manifest = kit.archive(&added.job, &settings).await;
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    let media_gets = kit
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/media/"))
        .count();
    assert_eq!(
        media_gets, 4,
        "each of the 4 chunks downloaded once, none again after the quarantine"
    );
    let quarantined: Vec<String> = kit
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("/_quarantine/"))
        .collect();
    assert_eq!(
        quarantined.len(),
        2,
        "the object and its reason: {quarantined:?}"
    );
    let moved = quarantined
        .iter()
        .find(|k| k.ends_with(".wav.enc"))
        .unwrap();
    assert_eq!(kit.get_object(moved).await.unwrap(), b"not an archive");
    assert!(kit.open_uploads().await.is_empty());
    kit.assert_nothing_left_behind().await;
}

/// Scenario 7: the result event used to be sent only on the `Archived` outcome, so a worker
/// that died after the manifest (or whose receiver was down) lost it for good. It now comes
/// from the manifest and an outbox marker: the next delivery sends it, with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_event_lost_after_the_manifest_is_sent_by_the_next_delivery() {
    use axum::http::{HeaderMap, StatusCode};
    use gc_archive_it::stack::{LocalStack, StackOptions};
    use genesys_sim::{Codec, ConversationSpec};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Receiver {
        up: std::sync::atomic::AtomicBool,
        ids: Mutex<Vec<String>>,
    }
    let receiver = Arc::new(Receiver::default());
    let r = receiver.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let r = r.clone();
            async move {
                if !r.up.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                r.ids.lock().unwrap().push(id);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    stack
        .moto
        .secrets()
        .await
        .create_secret()
        .name("webhook-key")
        .secret_string("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .send()
        .await
        .unwrap();
    let mut env = stack.function_env("archive-on-event");
    env.insert("WEBHOOK_URL".into(), hook);
    env.insert("WEBHOOK_SECRET_ID".into(), "webhook-key".into());
    let deps = gc_archive::bootstrap::handler_deps("archive-on-event", &env, &stack.sdk)
        .await
        .unwrap();
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let cid = gc_archive::ConversationId::parse(&conv).unwrap();
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(120);

    // The receiver is down when the recording is archived.
    let (tally, _) =
        gc_archive::handlers::process_conversation(&deps, &cid, Default::default(), far(), "t")
            .await
            .unwrap();
    assert_eq!(tally.archived, 1);
    assert!(receiver.ids.lock().unwrap().is_empty());

    // The next delivery (a duplicate event, a redrive) finds the archive and sends the event.
    receiver.up.store(true, Ordering::SeqCst);
    let (tally, _) =
        gc_archive::handlers::process_conversation(&deps, &cid, Default::default(), far(), "t")
            .await
            .unwrap();
    assert_eq!(tally.already, 1);
    let ids = receiver.ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].starts_with("msg_archived-"), "{ids:?}");

    // Once delivered, it is not sent again.
    gc_archive::handlers::process_conversation(&deps, &cid, Default::default(), far(), "t")
        .await
        .unwrap();
    assert_eq!(receiver.ids.lock().unwrap().len(), 1);
}

/// Scenario 5: only the size and type were compared on resume, so a transcoded format
/// re-encoded for the fresh URL (Ogg serials are random per encode) was spliced onto the parts
/// of the earlier encode: an archive that matched its own hash but was two files glued
/// together. Now the last archived chunk is fetched again and compared: a different encode
/// restarts the transfer from scratch (a new data key, so no IV is reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_onto_a_fresh_encode_starts_over_instead_of_splicing() {
    use gc_archive::store::MemoryStore;
    use genesys_sim::{Behaviour, RangeSupport, SimConfig, TranscodeSerial};
    let kit = Kit::start_with(gc_archive_it::transfer_kit::KitOptions {
        sim: SimConfig {
            behaviour: Behaviour {
                range: RangeSupport::Honoured,
                transcode_serial: TranscodeSerial::PerEncode,
                ..Default::default()
            },
            ..SimConfig::default()
        },
        ..Default::default()
    })
    .await;
    let added = kit.add_recording(RecordingSpec::new(MediaSource::Real(
        genesys_sim::Codec::OggOpus,
    )));
    let memory = Arc::new(MemoryStore::new("mem").with_min_part_size(4096));
    let store = Arc::new(FaultyStore::new(memory.clone()));
    let deps = kit.deps_with_store(store.clone());
    let settings = gc_archive::transfer::TransferSettings {
        media_format: gc_archive::config::MediaFormat::Transcoded("OGG_OPUS".into()),
        chunk_size: 4096,
        frame_len: 4096,
        fetch_concurrency: 1,
        uploads_in_flight: 1,
        ..kit.settings("w1")
    };
    // The first run archives one chunk of encode 1, then stops.
    store.fail_after(StoreOp::UploadPart, ".opus.enc", 1, 1_000);
    assert!(transfer_recording(&deps, &added.job, &settings, None)
        .await
        .is_err());
    store.clear();
    assert_eq!(memory.open_uploads(), 1);
    // The resume gets a fresh URL, which is a fresh encode: it must not continue the parts.
    let err = transfer_recording(&deps, &added.job, &settings, None)
        .await
        .expect_err("another encode");
    assert!(
        matches!(&err, TransferError::SourceIntegrity { reason } if reason.contains("another encode")),
        "{err:?}"
    );
    assert_eq!(
        memory.open_uploads(),
        0,
        "the spliceable upload is discarded"
    );
    // Archived again from scratch: exactly one encode's bytes.
    let manifest = match transfer_recording(&deps, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(m)) => *m,
        other => panic!("expected Archived, got {other:?}"),
    };
    let ciphertext = memory
        .object(&manifest.object_key)
        .expect("archived object");
    let (plain, _) =
        gc_archive_it::transfer_kit::decrypt_archive(&ciphertext, &added.job, kit.keyring.clone())
            .await
            .expect("decrypts");
    assert_eq!(
        plain,
        kit.sim
            .rendition_bytes(&added.recording_id, "OGG_OPUS")
            .unwrap(),
        "the archive is the latest encode, whole"
    );
    assert!(manifest
        .source
        .integrity
        .iter()
        .any(|e| e.starts_with("ogg page crc32")));
}

/// Scenario 6: the lease was renewed only as parts drained, so the phase before the first
/// part (locating the media, the probe, KMS, CreateMultipartUpload) and one slow part ran
/// unleased: another worker took the transfer over while the first was still working. The
/// lease is now kept alive on a timer while any of that is awaited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_chunk_keeps_its_lease_and_a_second_worker_stays_out() {
    use genesys_sim::{Fault, FaultRule, FaultTarget};
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    // The first chunk trickles in over about six leases.
    kit.sim.inject(FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(added.recording_id.clone()),
        },
        fault: Fault::SlowBody {
            bytes_per_sec: SMALL_CHUNK / 6,
        },
        skip: 0,
        times: 1,
    });
    let lease = std::time::Duration::from_secs(1);
    let first = gc_archive::transfer::TransferSettings {
        lease,
        fetch_concurrency: 1,
        ..kit.settings("worker-a")
    };
    let second = gc_archive::transfer::TransferSettings {
        lease,
        ..kit.settings("worker-b")
    };
    let deps = kit.deps();
    let a = transfer_recording(&deps, &added.job, &first, None);
    let b = async {
        let mut seen = Vec::new();
        // Knock twice while worker A is on its slow first chunk, after its lease would have
        // run out twice over without renewal.
        for _ in 0..2 {
            tokio::time::sleep(lease * 2).await;
            seen.push(transfer_recording(&deps, &added.job, &second, None).await);
        }
        seen
    };
    let (a, b) = tokio::join!(a, b);
    for r in &b {
        assert!(
            matches!(r, Err(TransferError::Busy { .. })),
            "worker B got in: {r:?}"
        );
    }
    match a {
        Ok(TransferOutcome::Archived(m)) => {
            assert_eq!(m.timings.invocations, 1, "nobody took the transfer over");
            kit.verify_archived(&added, &m, "wav", "WAV_PCM").await;
        }
        other => panic!("worker A: expected Archived, got {other:?}"),
    }
    kit.assert_nothing_left_behind().await;
}

/// Scenario 4: with every part uploaded, the engine still opened the media source first, so a
/// recording deleted in Genesys meanwhile (or credentials rotated away) made the complete
/// upload be discarded. Finishing now needs S3 only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_an_uploaded_transfer_needs_no_genesys_call() {
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let store = Arc::new(FaultyStore::new(kit.store.clone()));
    let deps = kit.deps_with_store(store.clone());
    let settings = kit.settings("w1");
    // Every part is uploaded; CompleteMultipartUpload fails (transiently) for this run.
    store.fail(StoreOp::Complete, ".wav.enc", 1_000);
    let first = transfer_recording(&deps, &added.job, &settings, None).await;
    store.clear();
    assert!(first.is_err());
    // Genesys is unreachable for this worker now (its secret was rotated away).
    let offline = gc_archive::transfer::engine::TransferDeps {
        genesys: client_with_credentials(
            &kit,
            "nobody",
            "nothing",
            gc_archive::retry::RetryPolicy::none(),
        ),
        store: store.clone() as Arc<dyn ObjectStore>,
        keyring: kit.keyring.clone(),
    };
    kit.sim.clear_requests();
    match transfer_recording(&offline, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(m)) => kit.verify_archived(&added, &m, "wav", "WAV_PCM").await,
        other => panic!("expected Archived from the checkpoint alone, got {other:?}"),
    }
    assert!(
        kit.sim.requests().is_empty(),
        "no Genesys request: {:?}",
        kit.sim.requests()
    );
}

/// Scenario 9 (part): a media 429 with `Retry-After: 2` was retried after ~100 ms. The wait
/// now honours the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_429_waits_for_its_retry_after() {
    use genesys_sim::{Fault, FaultRule, FaultTarget};
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    kit.sim.inject(FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(added.recording_id.clone()),
        },
        fault: Fault::Status {
            status: 429,
            retry_after_secs: Some(2),
        },
        skip: 1,
        times: 1,
    });
    let settings = gc_archive::transfer::TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("w1")
    };
    let manifest = kit.archive(&added.job, &settings).await;
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    let media = kit.media_requests(&added.recording_id);
    let at = media
        .iter()
        .position(|r| r.status == 429)
        .expect("the 429 was served");
    let waited = media[at + 1].at - media[at].at;
    assert!(
        waited >= chrono::Duration::milliseconds(1900),
        "retried {waited:?} after a 429 with Retry-After: 2"
    );
}

/// A checkpoint beside an existing manifest: a live one (its worker still running) is left to
/// its worker; a dead worker's (lease run out) is removed, and its upload aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_beside_a_manifest_is_removed_only_when_its_lease_ran_out() {
    use gc_archive::store::{MemoryStore, ObjectKey};
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let memory = Arc::new(MemoryStore::new("mem").with_min_part_size(SMALL_CHUNK));
    let deps = kit.deps_with_store(memory.clone());
    let settings = kit.settings("w1");
    match transfer_recording(&deps, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(_)) => {}
        other => panic!("{other:?}"),
    }
    // A worker that found no manifest a moment ago claimed and started an upload.
    let ckpt = ObjectKey::new(kit.checkpoint_key(&added));
    let upload = memory
        .create_multipart(&ObjectKey::new(kit.object_key(&added, "wav")), "x")
        .await
        .unwrap();
    let state = |lease: chrono::DateTime<chrono::Utc>| {
        serde_json::json!({
            "version": 1, "owner": "late", "leaseUntil": lease, "orgId": "o",
            "conversationId": added.conversation_id, "recordingId": added.recording_id,
            "startedAt": chrono::Utc::now(), "invocations": 1, "chunkRetries": 0, "urlRefreshes": 0,
            "upload": {"objectKey": kit.object_key(&added, "wav"), "uploadId": upload,
                       "totalSize": 1, "chunkSize": 1, "contentType": "", "codec": "WAV_PCM",
                       "ranged": true, "mediaHost": "h", "parts": [],
                       "plaintextHash": {"state": "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19", "buffer": "", "length": 0},
                       "encryptor": {"header": "", "frame_len": 4096, "next_sequence": 1},
                       "ciphertextSize": 0, "frameLen": 4096, "messageId": ""}
        })
        .to_string()
    };
    memory
        .put_if_absent(
            &ckpt,
            state(chrono::Utc::now() + chrono::Duration::seconds(60)).into(),
            "application/json",
        )
        .await
        .unwrap();
    assert!(matches!(
        transfer_recording(&deps, &added.job, &settings, None).await,
        Ok(TransferOutcome::AlreadyArchived { .. })
    ));
    assert!(
        memory.get(&ckpt).await.unwrap().is_some(),
        "a live worker's checkpoint stays"
    );
    assert_eq!(memory.open_uploads(), 1);
    // Its worker died: the lease runs out.
    memory.delete(&ckpt).await.unwrap();
    memory
        .put_if_absent(
            &ckpt,
            state(chrono::Utc::now() - chrono::Duration::seconds(1)).into(),
            "application/json",
        )
        .await
        .unwrap();
    assert!(matches!(
        transfer_recording(&deps, &added.job, &settings, None).await,
        Ok(TransferOutcome::AlreadyArchived { .. })
    ));
    assert!(
        memory.get(&ckpt).await.unwrap().is_none(),
        "the dead worker's checkpoint goes"
    );
    assert_eq!(memory.open_uploads(), 0, "and its upload");
}

/// Checkpoints of version 1 carry SHA-256 parts of an upload that cannot be completed under the
/// FULL_OBJECT CRC64NVME checksum new uploads use: a worker taking one over aborts that upload
/// (it owns it now) and starts the transfer over, instead of failing on it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_checkpoint_is_taken_over_its_upload_aborted_and_the_transfer_restarted() {
    use gc_archive::store::{MemoryStore, ObjectKey};
    use gc_archive_it::transfer_kit::sha256_hex;
    let kit = Kit::start().await;
    let added = kit.add_recording(four_parts());
    let memory = Arc::new(MemoryStore::new("mem").with_min_part_size(SMALL_CHUNK));
    let deps = kit.deps_with_store(memory.clone());
    let settings = kit.settings("w1");
    let old_upload = memory
        .create_multipart(&ObjectKey::new(kit.object_key(&added, "wav")), "x")
        .await
        .unwrap();
    let sha256_part = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let checkpoint = serde_json::json!({
        "version": 1, "owner": "old-release", "leaseUntil": chrono::Utc::now() - chrono::Duration::seconds(1),
        "orgId": "o", "conversationId": added.conversation_id, "recordingId": added.recording_id,
        "startedAt": chrono::Utc::now(), "invocations": 1, "chunkRetries": 0, "urlRefreshes": 0,
        "upload": {"objectKey": kit.object_key(&added, "wav"), "uploadId": old_upload,
                   "totalSize": 1, "chunkSize": SMALL_CHUNK, "contentType": "", "codec": "WAV_PCM",
                   "ranged": true, "mediaHost": "h",
                   "parts": [{"partNumber": 1, "etag": "e", "checksumSha256": sha256_part, "size": SMALL_CHUNK}],
                   "plaintextHash": {"state": "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19", "buffer": "", "length": 0},
                   "encryptor": {"header": "", "frame_len": 4096, "next_sequence": 1},
                   "ciphertextSize": 0, "frameLen": 4096, "messageId": ""}
    });
    memory
        .put_if_absent(
            &ObjectKey::new(kit.checkpoint_key(&added)),
            checkpoint.to_string().into(),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(memory.open_uploads(), 1);
    let manifest = match transfer_recording(&deps, &added.job, &settings, None).await {
        Ok(TransferOutcome::Archived(m)) => m,
        other => panic!("expected Archived, got {other:?}"),
    };
    assert_eq!(
        manifest.timings.invocations, 2,
        "the old checkpoint was taken over"
    );
    assert_eq!(manifest.ciphertext.parts, 4, "every part made again");
    let media = kit.sim.media_bytes(&added.recording_id).expect("media");
    assert_eq!(manifest.plaintext.sha256, sha256_hex(&media));
    assert!(manifest.ciphertext.s3_checksum_crc64nvme.is_some());
    assert_eq!(memory.open_uploads(), 0, "the old upload was aborted");
    assert!(memory
        .get(&ObjectKey::new(kit.checkpoint_key(&added)))
        .await
        .unwrap()
        .is_none());
}
