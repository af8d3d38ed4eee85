//! End-to-end tests of the resumable transfer engine: the Genesys Cloud simulator serves the
//! media (with injected faults), moto holds the archive (S3) and the data keys (KMS), and every
//! archived object is decrypted again and compared with the simulator's bytes.
//!
//! Concurrency caveat (moto-notes.md): moto checks conditional writes for one writer at a time
//! only, so the race between two workers runs against the atomic `MemoryStore`; against moto
//! the duplicate is run sequentially.

use std::sync::Arc;
use std::time::Duration;

use gc_archive::retry::Retryable;
use gc_archive::store::{FaultyStore, MemoryStore, ObjectStore, StoreOp};
use gc_archive::transfer::engine::TransferSettings;
use gc_archive::transfer::{transfer_recording, ByteRange, TransferError, TransferOutcome};
use gc_archive_it::transfer_kit::*;
use genesys_sim::{Codec, Fault, FaultRule, FaultTarget, FileState, MediaSource, RecordingSpec};
use tokio::time::Instant;

fn synth(size_bytes: u64) -> RecordingSpec {
    RecordingSpec::new(MediaSource::SynthWav { size_bytes })
}

fn media_fault(rid: &str, fault: Fault, skip: u32, times: u32) -> FaultRule {
    FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(rid.to_string()),
        },
        fault,
        skip,
        times,
    }
}

/// `bytes=a-b` of chunk `i` of a `total`-byte recording.
/// Returns once the transfer has started reading media (the URL is then in use), so a test can
/// expire it mid-transfer whatever time locating it took (a batch job takes a few polls).
async fn first_media_request(kit: &Kit, recording_id: &str) {
    for _ in 0..1000 {
        if !kit.media_requests(recording_id).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the transfer never requested media");
}

fn chunk_range(i: u64, chunk: u64, total: u64) -> String {
    format!("bytes={}-{}", i * chunk, ((i + 1) * chunk).min(total) - 1)
}

fn archived(
    outcome: Result<TransferOutcome, TransferError>,
) -> gc_archive::store::manifest::Manifest {
    match outcome {
        Ok(TransferOutcome::Archived(m)) => *m,
        other => panic!("expected Archived, got {other:?}"),
    }
}

#[tokio::test]
async fn archives_each_codec_byte_identically() {
    let kit = Kit::start().await;
    let settings = kit.settings("worker-a");
    let cases = [
        (MediaSource::Real(Codec::WavPcm), "wav", "WAV_PCM"),
        (MediaSource::Real(Codec::WavUlaw), "wav", "WAV_ULAW"),
        (MediaSource::Real(Codec::OggOpus), "opus", "OGG_OPUS"),
        (MediaSource::Real(Codec::OggVorbis), "ogg", "OGG_VORBIS"),
        (MediaSource::Real(Codec::Mp3), "mp3", "MP3"),
        (MediaSource::Real(Codec::Webm), "webm", "WEBM"),
        // Several MiB, not a multiple of the chunk or the frame: 13 parts, short last frame.
        (
            MediaSource::SynthWav {
                size_bytes: 3 * MIB + 12_346,
            },
            "wav",
            "WAV_PCM",
        ),
    ];
    for (media, ext, codec) in cases {
        let added = kit.add_recording(RecordingSpec::new(media));
        let manifest = kit.archive(&added.job, &settings).await;
        kit.verify_archived(&added, &manifest, ext, codec).await;
        assert_eq!(manifest.source.format_id, "ORIGINAL");
        assert!(manifest.source.ranged, "the simulator serves ranges");
        assert_eq!(manifest.source.media_host, "127.0.0.1");
        assert_eq!(manifest.timings.invocations, 1);
        assert_eq!(manifest.timings.chunk_retries, 0);
        assert_eq!(manifest.timings.url_refreshes, 0);
        assert_eq!(
            manifest.plaintext.declared_content_type,
            media.codec().content_type()
        );
    }
    kit.assert_nothing_left_behind().await;
    // 7 objects + 7 manifests, nothing else.
    assert_eq!(kit.keys().await.len(), 14);
}

#[tokio::test]
async fn archives_at_the_real_5_mib_part_limit_with_a_raw_aes_key() {
    let kit = Kit::start_with(KitOptions {
        min_part_size: None,
        key: KeyChoice::Raw,
        ..KitOptions::default()
    })
    .await;
    let settings = TransferSettings {
        chunk_size: 5 * MIB,
        frame_len: 65_536,
        ..kit.settings("worker-a")
    };
    let added = kit.add_recording(synth(11 * MIB + 1_000));
    let manifest = kit.archive(&added.job, &settings).await;
    assert_eq!(manifest.ciphertext.parts, 3);
    assert_eq!(manifest.ciphertext.crc64nvme_parts.len(), 3);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn the_signed_media_url_never_receives_an_authorization_header() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB));
    kit.archive(&added.job, &kit.settings("w")).await;
    let requests = kit.sim.requests();
    let media: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/media/"))
        .collect();
    assert_eq!(media.len(), 4, "one request per 256 KiB chunk: {media:?}");
    for r in &media {
        assert_eq!(r.auth, None, "media request carried credentials: {r:?}");
        assert!(r.range.is_some(), "media requests are ranged: {r:?}");
    }
    // The API calls, by contrast, do carry the bearer token.
    let api: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/"))
        .collect();
    assert!(!api.is_empty());
    assert!(
        api.iter().all(|r| r.auth.as_deref() == Some("Bearer")),
        "{api:?}"
    );
}

#[tokio::test]
async fn resumes_from_the_first_missing_part_after_a_deadline() {
    let kit = Kit::start().await;
    let total = 3 * MIB;
    let added = kit.add_recording(synth(total));
    let rid = &added.recording_id;
    let settings = TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("worker-a")
    };
    // The second chunk meets an expired URL: the refresh must survive the suspension.
    kit.sim.inject(media_fault(rid, Fault::ExpiredUrl, 1, 1));
    // ~250 ms per 256 KiB chunk: a 1.5 s deadline stops it after about half of the 12 parts.
    kit.sim.inject(media_fault(
        rid,
        Fault::SlowBody { bytes_per_sec: MIB },
        0,
        u32::MAX,
    ));
    let deadline = Instant::now() + Duration::from_millis(1500);
    let first = transfer_recording(&kit.deps(), &added.job, &settings, Some(deadline)).await;
    let (parts_done, parts_total) = match first {
        Ok(TransferOutcome::Suspended {
            parts_done,
            parts_total,
            bytes_done,
        }) => {
            assert_eq!(bytes_done, parts_done as u64 * SMALL_CHUNK);
            (parts_done, parts_total)
        }
        other => panic!("expected Suspended, got {other:?}"),
    };
    assert_eq!(parts_total, 12);
    assert!(parts_done >= 1 && parts_done < parts_total, "{parts_done}");
    // Suspended: checkpoint and upload kept, nothing visible at the final keys.
    assert_eq!(kit.checkpoints().await, vec![kit.checkpoint_key(&added)]);
    assert_eq!(kit.open_uploads().await.len(), 1);
    assert_eq!(kit.get_object(&kit.object_key(&added, "wav")).await, None);
    assert_eq!(kit.stored_manifest(&added).await, None);
    let run1 = served_ranges(&kit.media_requests(rid));

    kit.sim.clear_faults();
    kit.sim.clear_requests();
    // The resumed run keeps the checkpoint's chunk size even if the settings changed.
    let settings2 = TransferSettings {
        chunk_size: 2 * SMALL_CHUNK,
        worker_id: "worker-b".into(),
        ..settings
    };
    let manifest = archived(transfer_recording(&kit.deps(), &added.job, &settings2, None).await);
    let run2 = served_ranges(&kit.media_requests(rid));

    assert_eq!(manifest.timings.invocations, 2);
    assert_eq!(
        manifest.timings.url_refreshes, 1,
        "counted in the suspended run"
    );
    assert_eq!(
        manifest.timings.chunk_retries, 1,
        "counted in the suspended run"
    );
    assert_eq!(manifest.source.chunk_size, SMALL_CHUNK);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;

    // Run 2 fetched exactly the parts run 1 did not upload, each once, in order, and, after
    // the first of them, the last uploaded part once more: the resume's check that the source
    // is still the encode the uploaded parts came from.
    let mut expected2: Vec<String> = vec![
        chunk_range(parts_done as u64, SMALL_CHUNK, total),
        chunk_range(parts_done as u64 - 1, SMALL_CHUNK, total),
    ];
    expected2.extend((parts_done as u64 + 1..12).map(|i| chunk_range(i, SMALL_CHUNK, total)));
    assert_eq!(run2, expected2);
    // Run 1 fetched the uploaded parts, plus at most the one chunk in flight at the deadline.
    let done1: Vec<String> = (0..parts_done as u64)
        .map(|i| chunk_range(i, SMALL_CHUNK, total))
        .collect();
    assert_eq!(&run1[..parts_done], &done1[..]);
    assert!(run1.len() <= parts_done + 2, "run 1 fetched {run1:?}");
    for r in &run1[parts_done..] {
        assert!(
            expected2.contains(r),
            "{r} was fetched but is not a later part"
        );
    }
}

#[tokio::test]
async fn resumes_after_a_crash_once_the_lease_runs_out() {
    let kit = Kit::start().await;
    let total = 3 * MIB;
    let added = kit.add_recording(synth(total));
    let rid = &added.recording_id;
    let lease = Duration::from_secs(1);
    let a = TransferSettings {
        lease,
        fetch_concurrency: 1,
        ..kit.settings("worker-a")
    };
    let b = TransferSettings {
        lease,
        ..kit.settings("worker-b")
    };
    // ~250 ms per chunk: the crash comes after about three of the twelve parts.
    kit.sim.inject(media_fault(
        rid,
        Fault::SlowBody { bytes_per_sec: MIB },
        0,
        u32::MAX,
    ));
    // The Lambda dies mid-transfer: the future is dropped without any cleanup.
    let crashed = tokio::time::timeout(Duration::from_millis(800), kit.run(&added.job, &a)).await;
    assert!(
        crashed.is_err(),
        "the transfer should still have been running: {crashed:?}"
    );
    kit.sim.clear_faults();
    assert_eq!(kit.checkpoints().await, vec![kit.checkpoint_key(&added)]);

    // Another worker must respect the crashed worker's lease...
    let until = match kit.run(&added.job, &b).await {
        Err(TransferError::Busy { until }) => until,
        other => panic!("expected Busy, got {other:?}"),
    };
    let err = TransferError::Busy { until };
    assert!(err.is_transient());
    let wait = (until - chrono_now_like(&until))
        .to_std()
        .unwrap_or_default();
    assert!(
        wait <= lease,
        "lease is at most {lease:?} away, got {wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(100)).await;

    // ...then takes the transfer over and finishes it.
    let manifest = archived(kit.run(&added.job, &b).await);
    assert_eq!(manifest.timings.invocations, 2);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    // The crashed worker's detached part uploads may still land; give them a moment, then
    // make sure nothing is left behind.
    tokio::time::sleep(Duration::from_millis(300)).await;
    kit.assert_nothing_left_behind().await;
}

/// `Utc::now()` with the type taken from `sample` (the test crate does not depend on chrono).
fn chrono_now_like<T>(_sample: &T) -> T
where
    T: From<std::time::SystemTime>,
{
    T::from(std::time::SystemTime::now())
}

#[tokio::test]
async fn an_expired_media_url_mid_transfer_is_refreshed() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(2 * MIB));
    // Expire every URL handed out so far once the transfer is under way.
    // One stream at ~2 MiB/s: the transfer takes about a second.
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::SlowBody {
            bytes_per_sec: 2 * MIB,
        },
        0,
        u32::MAX,
    ));
    let settings = TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("w")
    };
    let (outcome, ()) = tokio::join!(kit.run(&added.job, &settings), async {
        first_media_request(&kit, &added.recording_id).await;
        kit.sim.expire_media_urls();
    });
    let manifest = archived(outcome);
    assert!(
        manifest.timings.url_refreshes >= 1,
        "{:?}",
        manifest.timings
    );
    let expired = kit
        .media_requests(&added.recording_id)
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert!(expired >= 1, "some chunk met the expired URL");
    // The original codec is located by a batch download request; a fresh URL is a new one.
    let batch_submissions = kit
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/recording/batchrequests")
        .count();
    assert_eq!(batch_submissions as u32, 1 + manifest.timings.url_refreshes);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn an_expired_url_fault_is_refreshed_once() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB + 5));
    kit.sim
        .inject(media_fault(&added.recording_id, Fault::ExpiredUrl, 2, 1));
    let manifest = kit.archive(&added.job, &kit.settings("w")).await;
    assert_eq!(manifest.timings.url_refreshes, 1);
    assert_eq!(manifest.timings.chunk_retries, 1);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn a_revoked_token_mid_transfer_is_renewed_for_the_url_refresh() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(2 * MIB));
    // One stream at ~2 MiB/s: the transfer takes about a second.
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::SlowBody {
            bytes_per_sec: 2 * MIB,
        },
        0,
        u32::MAX,
    ));
    let settings = TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("w")
    };
    let (outcome, ()) = tokio::join!(kit.run(&added.job, &settings), async {
        first_media_request(&kit, &added.recording_id).await;
        kit.sim.revoke_tokens();
        kit.sim.expire_media_urls();
    });
    let manifest = archived(outcome);
    assert!(manifest.timings.url_refreshes >= 1);
    let requests = kit.sim.requests();
    let tokens = requests.iter().filter(|r| r.path == "/oauth/token").count();
    assert_eq!(tokens, 2, "the token was fetched again after revocation");
    assert!(
        requests
            .iter()
            .any(|r| r.path.starts_with("/api/v2/") && r.status == 401),
        "the URL refresh first met the revoked token"
    );
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn two_workers_racing_archive_exactly_one_object() {
    let kit = Kit::start().await;
    for round in 0..3 {
        let added = kit.add_recording(synth(MIB + 777));
        let store = Arc::new(MemoryStore::new("race").with_min_part_size(SMALL_CHUNK));
        let deps = kit.deps_with_store(store.clone());
        let (a, b) = (kit.settings("worker-a"), kit.settings("worker-b"));
        let (ra, rb) = tokio::join!(
            transfer_recording(&deps, &added.job, &a, None),
            transfer_recording(&deps, &added.job, &b, None)
        );
        let archived = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok(TransferOutcome::Archived(_))))
            .count();
        assert_eq!(archived, 1, "round {round}: {ra:?} / {rb:?}");
        for r in [&ra, &rb] {
            assert!(
                matches!(
                    r,
                    Ok(TransferOutcome::Archived(_))
                        | Ok(TransferOutcome::AlreadyArchived { .. })
                        | Err(TransferError::Busy { .. })
                ),
                "round {round}: the loser stops cleanly: {r:?}"
            );
        }
        let mut expected = vec![kit.object_key(&added, "wav"), kit.manifest_key(&added)];
        expected.sort();
        assert_eq!(store.keys(), expected, "round {round}");
        assert_eq!(store.open_uploads(), 0);
        let body = store
            .object(&kit.object_key(&added, "wav"))
            .expect("object");
        let (plain, _) = decrypt_archive(&body, &added.job, kit.keyring.clone())
            .await
            .expect("decrypt");
        assert!(plain == kit.sim.media_bytes(&added.recording_id).unwrap());
        // A late duplicate finds it archived.
        assert!(matches!(
            transfer_recording(&deps, &added.job, &a, None).await,
            Ok(TransferOutcome::AlreadyArchived { .. })
        ));
    }
}

#[tokio::test]
async fn a_duplicate_delivery_after_archiving_is_already_archived_without_touching_media() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB));
    let manifest = kit.archive(&added.job, &kit.settings("worker-a")).await;
    let object_before = kit.get_object(&manifest.object_key).await;
    kit.sim.clear_requests();
    match kit.run(&added.job, &kit.settings("worker-b")).await {
        Ok(TransferOutcome::AlreadyArchived { manifest_key }) => {
            assert_eq!(manifest_key.as_str(), kit.manifest_key(&added))
        }
        other => panic!("expected AlreadyArchived, got {other:?}"),
    }
    assert_eq!(
        kit.sim.requests(),
        vec![],
        "no Genesys request, no media request"
    );
    assert_eq!(kit.get_object(&manifest.object_key).await, object_before);
    assert_eq!(kit.stored_manifest(&added).await.as_ref(), Some(&manifest));
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn an_ignored_range_falls_back_to_one_stream() {
    let kit = Kit::start().await;
    kit.sim.set_ignore_range(true);
    let added = kit.add_recording(synth(MIB + 100));
    let manifest = kit.archive(&added.job, &kit.settings("w")).await;
    assert!(!manifest.source.ranged);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    let media = kit.media_requests(&added.recording_id);
    assert_eq!(media.len(), 1, "one whole-body stream: {media:?}");
    assert_eq!(media[0].status, 200);
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn an_ignored_range_resumes_by_skipping_what_was_archived() {
    let kit = Kit::start().await;
    kit.sim.set_ignore_range(true);
    let added = kit.add_recording(synth(2 * MIB));
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::SlowBody {
            bytes_per_sec: 2 * MIB,
        },
        0,
        1,
    ));
    let deadline = Instant::now() + Duration::from_millis(500);
    let first =
        transfer_recording(&kit.deps(), &added.job, &kit.settings("w"), Some(deadline)).await;
    assert!(
        matches!(first, Ok(TransferOutcome::Suspended { parts_done, .. }) if parts_done >= 1),
        "{first:?}"
    );
    let manifest = kit.archive(&added.job, &kit.settings("w")).await;
    assert!(!manifest.source.ranged);
    assert_eq!(manifest.timings.invocations, 2);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn transient_media_faults_are_retried_and_succeed() {
    let kit = Kit::start().await;
    let faults = [
        Fault::TruncatedBody { after_bytes: 1000 },
        Fault::ResetMidBody { after_bytes: 1000 },
        Fault::WrongContentRange,
        Fault::Status {
            status: 503,
            retry_after_secs: None,
        },
        Fault::WrongContentType("text/html".into()),
    ];
    for fault in faults {
        let added = kit.add_recording(synth(MIB + 3));
        // The first chunk passes; one later chunk fails once.
        kit.sim
            .inject(media_fault(&added.recording_id, fault.clone(), 2, 1));
        let manifest = kit.archive(&added.job, &kit.settings("w")).await;
        assert_eq!(manifest.timings.chunk_retries, 1, "{fault:?}");
        assert_eq!(manifest.timings.url_refreshes, 0, "{fault:?}");
        kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
            .await;
        // The same fault on the very first request (the probe) is retried too.
        let added = kit.add_recording(synth(MIB + 3));
        kit.sim
            .inject(media_fault(&added.recording_id, fault.clone(), 0, 1));
        let manifest = kit.archive(&added.job, &kit.settings("w")).await;
        assert_eq!(manifest.timings.chunk_retries, 1, "{fault:?} on the probe");
        kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
            .await;
    }
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn a_fault_that_never_clears_fails_with_the_chunk_range_and_the_next_run_finishes() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB + 3));
    let total = kit.sim.media_len(&added.recording_id).unwrap();
    let settings = TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("w")
    };
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::TruncatedBody { after_bytes: 1000 },
        2,
        u32::MAX,
    ));
    let err = kit.run(&added.job, &settings).await.expect_err("must fail");
    match &err {
        TransferError::Chunk {
            range,
            reason,
            attempts,
            ..
        } => {
            assert_eq!(
                *range,
                ByteRange {
                    start: 2 * SMALL_CHUNK,
                    end: 3 * SMALL_CHUNK - 1
                }
            );
            assert!(reason.contains("after 1000 of 262144 bytes"), "{reason}");
            assert_eq!(*attempts, 4);
        }
        other => panic!("expected a Chunk error, got {other:?}"),
    }
    assert!(err.is_transient());
    assert!(err.to_string().contains("bytes 524288-786431"), "{err}");
    // Nothing visible; the parts already uploaded are kept for the retry.
    assert_eq!(kit.get_object(&kit.object_key(&added, "wav")).await, None);
    assert_eq!(kit.stored_manifest(&added).await, None);
    assert_eq!(kit.open_uploads().await.len(), 1);
    assert_eq!(kit.checkpoints().await, vec![kit.checkpoint_key(&added)]);

    kit.sim.clear_faults();
    kit.sim.clear_requests();
    let manifest = kit.archive(&added.job, &settings).await;
    assert_eq!(manifest.timings.invocations, 2);
    // Every failed attempt of the first run counts (1 + 3 retries).
    assert_eq!(
        manifest.timings.chunk_retries, 4,
        "the first run's failures are counted"
    );
    // The retry started at the failed chunk; of the two uploaded parts only the last was
    // fetched again, once, to check the source is still the same encode.
    assert_eq!(
        served_ranges(&kit.media_requests(&added.recording_id)),
        [2, 1, 3, 4]
            .into_iter()
            .map(|i| chunk_range(i, SMALL_CHUNK, total))
            .collect::<Vec<_>>()
    );
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn a_first_chunk_that_never_arrives_leaves_nothing_behind() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB));
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::Status {
            status: 503,
            retry_after_secs: None,
        },
        0,
        u32::MAX,
    ));
    let err = kit
        .run(&added.job, &kit.settings("w"))
        .await
        .expect_err("must fail");
    assert!(
        matches!(&err, TransferError::Chunk { range, .. } if range.start == 0 && range.end == SMALL_CHUNK - 1),
        "{err:?}"
    );
    assert!(err.is_transient());
    kit.assert_bucket_empty().await;
}

#[tokio::test]
async fn a_media_host_content_type_is_advisory_and_the_bytes_decide() {
    let kit = Kit::start().await;
    // The media host says WAV (or, by the simulator's default, binary/octet-stream); the bytes
    // are MP3: the original codec is whatever the bytes are.
    let added = kit.add_recording(RecordingSpec {
        declared_codec: Some(Codec::WavPcm),
        ..RecordingSpec::new(MediaSource::Real(Codec::Mp3))
    });
    let manifest = kit.archive(&added.job, &kit.settings("w")).await;
    assert_eq!(manifest.plaintext.codec, "MP3");
    assert_eq!(manifest.source.format_id, "ORIGINAL");
    kit.verify_archived(&added, &manifest, "mp3", "MP3").await;
}

#[tokio::test]
async fn media_the_server_refuses_for_good_is_permanent_and_leaves_nothing_behind() {
    let kit = Kit::start().await;
    // Refused on the first request, and mid-transfer (after two chunks were uploaded).
    for skip in [0, 2] {
        let added = kit.add_recording(synth(MIB + 5));
        kit.sim.inject(media_fault(
            &added.recording_id,
            Fault::Status {
                status: 404,
                retry_after_secs: None,
            },
            skip,
            u32::MAX,
        ));
        let settings = TransferSettings {
            fetch_concurrency: 1,
            ..kit.settings("w")
        };
        let err = kit.run(&added.job, &settings).await.expect_err("must fail");
        assert!(
            matches!(&err, TransferError::MediaRejected { reason, .. } if reason.contains("404")),
            "{err:?}"
        );
        assert!(!err.is_transient());
        kit.assert_bucket_empty().await;
    }
}

#[tokio::test]
async fn media_still_transcoding_is_not_ready_then_archives() {
    let kit = Kit::start().await;
    let added = kit.add_recording(RecordingSpec {
        transcoding_polls: 1,
        ..synth(MIB + 3)
    });
    // Transcoding is what a formatId asks for (the original codec needs none).
    let settings = TransferSettings {
        media_format: gc_archive::config::MediaFormat::Transcoded("WAV".into()),
        ..kit.settings("w")
    };
    match kit.run(&added.job, &settings).await {
        Err(e @ TransferError::NotReady { .. }) => {
            assert!(e.is_transient());
            let TransferError::NotReady { retry_after, .. } = e else {
                unreachable!()
            };
            assert!(
                retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(900)
            );
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    kit.assert_bucket_empty().await;
    let manifest = kit.archive(&added.job, &settings).await;
    assert_eq!(manifest.source.format_id, "WAV");
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn media_that_never_becomes_available_is_not_ready_and_deleted_media_is_unavailable() {
    let kit = Kit::start().await;
    let uploading = kit.add_recording(RecordingSpec {
        unavailable_polls: u32::MAX,
        ..RecordingSpec::new(MediaSource::Real(Codec::Mp3))
    });
    for _ in 0..2 {
        let r = kit.run(&uploading.job, &kit.settings("w")).await;
        assert!(matches!(r, Err(TransferError::NotReady { .. })), "{r:?}");
    }
    for state in [FileState::Deleted, FileState::Archived, FileState::Error] {
        let gone = kit.add_recording(RecordingSpec {
            file_state_override: Some(state),
            ..RecordingSpec::new(MediaSource::Real(Codec::Mp3))
        });
        let r = kit.run(&gone.job, &kit.settings("w")).await;
        match r {
            Err(e @ TransferError::Unavailable { .. }) if state != FileState::Archived => {
                assert!(!e.is_transient());
                assert_eq!(e.reason_code(), "unavailable");
            }
            Err(e @ TransferError::ArchivedInGenesys) if state == FileState::Archived => {
                assert!(!e.is_transient());
                assert!(e.to_string().contains("restore"), "{e}");
            }
            other => panic!("{state:?}: expected Unavailable, got {other:?}"),
        }
        assert!(kit.media_requests(&gone.recording_id).is_empty());
    }
    kit.assert_bucket_empty().await;
}

#[tokio::test]
async fn a_wrong_key_a_wrong_context_or_a_tampered_object_does_not_decrypt() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB + 9));
    let manifest = kit.archive(&added.job, &kit.settings("w")).await;
    let good = kit.get_object(&manifest.object_key).await.unwrap();
    assert!(decrypt_archive(&good, &added.job, kit.keyring.clone())
        .await
        .is_ok());

    // Another KMS key cannot unwrap the data key.
    let other = kit.other_kms_keyring().await;
    assert!(decrypt_archive(&good, &added.job, other).await.is_err());

    // The object is bound to its recording: another recording's context is refused.
    let mut elsewhere = added.job.clone();
    elsewhere.recording = gc_archive::RecordingId::parse("another-recording").unwrap();
    assert!(decrypt_archive(&good, &elsewhere, kit.keyring.clone())
        .await
        .is_err());

    // One flipped bit anywhere in the body, or a missing tail, fails authentication.
    for at in [good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(
            decrypt_archive(&bad, &added.job, kit.keyring.clone())
                .await
                .is_err(),
            "flip at {at}"
        );
    }
    let truncated = &good[..good.len() - 4096];
    assert!(decrypt_archive(truncated, &added.job, kit.keyring.clone())
        .await
        .is_err());
}

#[tokio::test]
async fn a_crash_between_completing_the_upload_and_writing_the_manifest_is_finished_next_time() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB + 1));
    let faulty = Arc::new(FaultyStore::new(kit.store.clone()));
    faulty.fail(StoreOp::PutIfAbsent, ".manifest.json", 1);
    let err = transfer_recording(
        &kit.deps_with_store(faulty.clone()),
        &added.job,
        &kit.settings("a"),
        None,
    )
    .await
    .expect_err("the manifest write fails");
    assert!(err.is_transient(), "{err:?}");
    // The object is complete at its final key, but without a manifest it is not archived.
    assert!(kit
        .get_object(&kit.object_key(&added, "wav"))
        .await
        .is_some());
    assert_eq!(kit.stored_manifest(&added).await, None);
    assert_eq!(kit.checkpoints().await, vec![kit.checkpoint_key(&added)]);
    assert!(kit.open_uploads().await.is_empty());

    kit.sim.clear_requests();
    let manifest = kit.archive(&added.job, &kit.settings("b")).await;
    assert_eq!(manifest.timings.invocations, 2);
    assert!(
        kit.media_requests(&added.recording_id).is_empty(),
        "every part was uploaded: nothing is downloaded again"
    );
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}

#[tokio::test]
async fn a_vanished_multipart_upload_is_started_over() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(2 * MIB));
    let store = Arc::new(MemoryStore::new("vanish").with_min_part_size(SMALL_CHUNK));
    let deps = kit.deps_with_store(store.clone());
    let settings = TransferSettings {
        fetch_concurrency: 1,
        ..kit.settings("w")
    };
    kit.sim.inject(media_fault(
        &added.recording_id,
        Fault::SlowBody {
            bytes_per_sec: 2 * MIB,
        },
        0,
        u32::MAX,
    ));
    let deadline = Instant::now() + Duration::from_millis(500);
    let first = transfer_recording(&deps, &added.job, &settings, Some(deadline)).await;
    assert!(
        matches!(first, Ok(TransferOutcome::Suspended { parts_done, .. }) if parts_done >= 1),
        "{first:?}"
    );
    kit.sim.clear_faults();
    // The bucket's lifecycle rule aborts the incomplete upload while the job waits in SQS.
    let checkpoint = store
        .get(&gc_archive::store::ObjectKey::new(
            kit.checkpoint_key(&added),
        ))
        .await
        .unwrap()
        .expect("checkpoint");
    let cp: serde_json::Value = serde_json::from_slice(&checkpoint.body).unwrap();
    let upload_id = cp["upload"]["uploadId"].as_str().expect("upload id");
    store
        .abort_multipart(
            &gc_archive::store::ObjectKey::new(kit.object_key(&added, "wav")),
            upload_id,
        )
        .await
        .unwrap();
    assert_eq!(store.open_uploads(), 0);

    let manifest = archived(transfer_recording(&deps, &added.job, &settings, None).await);
    assert_eq!(manifest.ciphertext.parts, 8);
    let body = store.object(&manifest.object_key).expect("object");
    let (plain, _) = decrypt_archive(&body, &added.job, kit.keyring.clone())
        .await
        .unwrap();
    assert!(plain == kit.sim.media_bytes(&added.recording_id).unwrap());
    assert_eq!(store.open_uploads(), 0);
    let mut expected = vec![kit.object_key(&added, "wav"), kit.manifest_key(&added)];
    expected.sort();
    assert_eq!(store.keys(), expected);
}

#[tokio::test]
async fn a_chunk_failing_close_to_the_deadline_suspends_instead_of_failing() {
    let kit = Kit::start().await;
    let added = kit.add_recording(synth(MIB));
    let settings = TransferSettings {
        fetch_concurrency: 1,
        uploads_in_flight: 1,
        ..kit.settings("w")
    };
    let unavailable = Fault::Status {
        status: 503,
        retry_after_secs: None,
    };
    kit.sim
        .inject(media_fault(&added.recording_id, unavailable, 1, u32::MAX));
    // Too close to the deadline for the retry policy to wait and try again.
    let deadline = Instant::now() + Duration::from_secs(2);
    let outcome = transfer_recording(&kit.deps(), &added.job, &settings, Some(deadline)).await;
    assert!(
        matches!(
            outcome,
            Ok(TransferOutcome::Suspended {
                parts_done: 1,
                parts_total: 4,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(kit.checkpoints().await.len(), 1);
    kit.sim.clear_faults();
    let manifest = kit.archive(&added.job, &settings).await;
    assert_eq!(manifest.timings.invocations, 2);
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    kit.assert_nothing_left_behind().await;
}
