//! The transfer engine under its two harshest failure models: a worker process SIGKILLed at any
//! point of a transfer (no destructor, no cleanup, in-flight requests cut), and several workers
//! racing on one recording.
//!
//! A killed worker runs as its own process (`transfer_worker`, a binary of this crate), so the
//! kill is a real one; the next worker waits for the dead one's lease and resumes. The archive
//! must come out byte-identical to the simulator's media, with nothing left behind.
//!
//! Races: moto checks conditional writes for one writer at a time only (moto-notes.md,
//! "concurrent writers": 2–4 winners of one If-None-Match), so the true race runs against the
//! atomic `MemoryStore`; against moto the workers start staggered, so what is tested there is
//! the engine's handling of a busy, finished or taken-over transfer, not moto's locking.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gc_archive::retry::Retryable;
use gc_archive::store::MemoryStore;
use gc_archive::transfer::engine::TransferDeps;
use gc_archive::transfer::{transfer_recording, TransferError, TransferJob, TransferOutcome};
use gc_archive_it::fault_proxy::FaultProxy;
use gc_archive_it::transfer_kit::*;
use genesys_sim::{Fault, FaultRule, FaultTarget, MediaSource, RecordingSpec};

fn synth(size_bytes: u64) -> RecordingSpec {
    RecordingSpec::new(MediaSource::SynthWav { size_bytes })
}

/// Every media response of `rid` throttled to `bytes_per_sec` (per request).
fn slow_media(kit: &Kit, rid: &str, bytes_per_sec: u64) {
    kit.sim.inject(FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(rid.to_string()),
        },
        fault: Fault::SlowBody { bytes_per_sec },
        skip: 0,
        times: u32::MAX,
    });
}

// ---- a worker process ------------------------------------------------------------------------

/// The lease the worker processes hold: short, so a kill costs a test at most this long.
const LEASE_MS: u64 = 3000;
/// `TransferSettings::uploads_in_flight` of the worker processes (the binary's default).
const UPLOADS_IN_FLIGHT: usize = 2;

/// A `transfer_worker` process; killed if the test ends (or panics) while it still runs.
struct Worker {
    id: String,
    child: Child,
}

impl Worker {
    /// Starts a worker for `added`, its S3 requests sent to `s3_endpoint`, KMS to moto.
    fn spawn(kit: &Kit, added: &Added, s3_endpoint: &str, id: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_transfer_worker"))
            .env("GCA_SIM_URL", kit.sim.base_url())
            .env("GCA_CLIENT_ID", kit.sim.client_id())
            .env("GCA_CLIENT_SECRET", kit.sim.client_secret())
            .env("GCA_ORG_ID", kit.sim.org_id())
            .env("GCA_CONVERSATION_ID", &added.conversation_id)
            .env("GCA_RECORDING_ID", &added.recording_id)
            .env("GCA_S3_ENDPOINT", s3_endpoint)
            .env("GCA_KMS_ENDPOINT", kit.moto.endpoint_url())
            .env("GCA_BUCKET", &kit.bucket)
            .env("GCA_KMS_KEY_ARN", &kit.kms_key_arn)
            .env("GCA_WORKER_ID", id)
            .env("GCA_CHUNK_SIZE", SMALL_CHUNK.to_string())
            .env("GCA_LEASE_MS", LEASE_MS.to_string())
            .env("GCA_UPLOADS_IN_FLIGHT", UPLOADS_IN_FLIGHT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn transfer_worker");
        // Relay its output into the test's (captured) output, line by line.
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        for (stream, tag) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, "out"),
            (Box::new(err), "err"),
        ] {
            let id = id.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    println!("[{id} {tag}] {line}");
                }
            });
        }
        Worker {
            id: id.to_string(),
            child,
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on the worker")
    }

    /// SIGKILL: the process gets no chance to clean up or finish a request.
    async fn kill(mut self) {
        self.child.kill().expect("SIGKILL the worker");
        while self.exited().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait(mut self, limit: Duration) -> ExitStatus {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "worker {} still running after {limit:?}",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the checkpoint in S3 says about a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    NoCheckpoint,
    /// Claimed by `owner`; no multipart upload recorded yet.
    Claimed {
        owner: String,
    },
    /// `owner`'s upload, with `parts` recorded.
    Uploading {
        owner: String,
        parts: usize,
    },
}

impl Progress {
    fn owner(&self) -> Option<&str> {
        match self {
            Progress::NoCheckpoint => None,
            Progress::Claimed { owner } | Progress::Uploading { owner, .. } => Some(owner),
        }
    }
}

async fn progress(kit: &Kit, added: &Added) -> Progress {
    let Some(body) = kit.get_object(&kit.checkpoint_key(added)).await else {
        return Progress::NoCheckpoint;
    };
    let cp: serde_json::Value = serde_json::from_slice(&body).expect("checkpoint is JSON");
    let owner = cp["owner"].as_str().expect("checkpoint owner").to_string();
    match cp.get("upload") {
        Some(up) if !up.is_null() => Progress::Uploading {
            owner,
            parts: up["parts"].as_array().map_or(0, Vec::len),
        },
        _ => Progress::Claimed { owner },
    }
}

/// Where in the transfer a worker is killed, judged by its own checkpoint writes.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// It has claimed the checkpoint and is locating and probing the media: before any upload.
    Claimed,
    /// Its multipart upload is recorded, no part yet.
    UploadStarted,
    /// At least this many parts recorded.
    Parts(usize),
}

impl KillAt {
    fn reached(self, p: &Progress, id: &str) -> bool {
        if p.owner() != Some(id) {
            return false;
        }
        match (self, p) {
            (KillAt::Claimed, _) => true,
            (KillAt::UploadStarted, Progress::Uploading { .. }) => true,
            (KillAt::Parts(n), Progress::Uploading { parts, .. }) => *parts >= n,
            _ => false,
        }
    }
}

/// Polls the checkpoint until `worker` reaches `at`, then kills it; returns what the
/// checkpoint said at the kill.
async fn kill_when(kit: &Kit, added: &Added, worker: Worker, at: KillAt) -> Progress {
    let mut worker = worker;
    let start = tokio::time::Instant::now();
    loop {
        let p = progress(kit, added).await;
        if at.reached(&p, &worker.id) {
            worker.kill().await;
            return p;
        }
        if let Some(status) = worker.exited() {
            panic!(
                "worker {} exited ({status}) before {at:?}; the checkpoint said {p:?}",
                worker.id
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "worker {} never reached {at:?}: {p:?}",
            worker.id
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_any_point_is_resumed_byte_identically() {
    let kit = Kit::start().await;
    // 40 parts, the last one short (its final frame too).
    let total = 40 * SMALL_CHUNK - 1_234;
    let added = kit.add_recording(synth(total));
    let parts = total.div_ceil(SMALL_CHUNK) as usize;
    // ~250 ms per chunk and stream (3 streams): a worker needs about 3.5 s for all 40 parts, so
    // every kill point below is seen by polling the checkpoint every 10 ms.
    slow_media(&kit, &added.recording_id, MIB);
    // The workers' S3 requests pass a recording proxy (moto keeps no request log), so the
    // parts uploaded can be counted; KMS goes to moto directly.
    let s3_proxy = FaultProxy::start(&kit.moto.endpoint_url())
        .await
        .expect("start the S3 proxy");

    let kills = [
        KillAt::Claimed,
        KillAt::UploadStarted,
        KillAt::Parts(3),
        KillAt::Parts(parts / 2),
        KillAt::Parts(parts - 4),
    ];
    let mut at_kill = Vec::new();
    for (i, at) in kills.iter().enumerate() {
        // A fresh worker id each time, as a redelivery to another Lambda would have: it finds
        // the dead worker's lease and waits for it to run out.
        let worker = Worker::spawn(&kit, &added, &s3_proxy.base_url(), &format!("worker-{i}"));
        let p = kill_when(&kit, &added, worker, *at).await;
        println!("killed worker-{i} at {at:?}: {p:?}");
        at_kill.push(p);
    }
    // Whatever the kills left, it is one transfer in progress: one checkpoint, at most one
    // upload (none if every kill came before CreateMultipartUpload).
    assert_eq!(kit.checkpoints().await, vec![kit.checkpoint_key(&added)]);
    assert!(
        kit.open_uploads().await.len() <= 1,
        "{:?}",
        kit.open_uploads().await
    );

    let last = Worker::spawn(
        &kit,
        &added,
        &s3_proxy.base_url(),
        &format!("worker-{}", kills.len()),
    );
    let status = last.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "the last worker archives: {status}");

    let manifest = kit.stored_manifest(&added).await.expect("manifest written");
    kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
        .await;
    assert!(manifest.source.ranged, "resumes are ranged");
    assert_eq!(manifest.ciphertext.parts as usize, parts);
    // Every worker claimed the transfer once: the five killed ones and the last.
    assert_eq!(manifest.timings.invocations as usize, kills.len() + 1);
    kit.assert_nothing_left_behind().await;
    let mut expected = vec![kit.object_key(&added, "wav"), kit.manifest_key(&added)];
    expected.sort();
    assert_eq!(kit.keys().await, expected, "the archive and nothing else");

    // Parts are uploaded once, except those a kill caught between upload and checkpoint
    // (at most `uploads_in_flight`, plus one being recorded).
    let uploads: Vec<_> = s3_proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(".wav.enc"))
        .collect();
    let bound = parts + kills.len() * (UPLOADS_IN_FLIGHT + 1);
    println!(
        "UploadPart requests: {} for {parts} parts; at the kills: {at_kill:?}",
        uploads.len()
    );
    assert!(
        uploads.len() >= parts && uploads.len() <= bound,
        "{} UploadPart requests for {parts} parts and {} kills (bound {bound})",
        uploads.len(),
        kills.len()
    );
}

// ---- racing workers --------------------------------------------------------------------------

/// How a worker that did not archive may end: it found the archive, found the transfer busy or
/// lost it, or met another transient error a redelivery retries.
fn ends_cleanly(r: &Result<TransferOutcome, TransferError>) -> bool {
    match r {
        Ok(TransferOutcome::AlreadyArchived { .. }) => true,
        Ok(_) => false,
        Err(TransferError::Busy { .. } | TransferError::LostOwnership) => true,
        Err(e) => e.is_transient(),
    }
}

/// `workers` workers (own tokio tasks, own worker ids) on one recording, worker `i` starting
/// after `start(i)`.
async fn race(
    kit: &Kit,
    deps: Arc<TransferDeps>,
    job: &TransferJob,
    workers: usize,
    start: impl Fn(usize) -> Duration,
) -> Vec<Result<TransferOutcome, TransferError>> {
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let deps = deps.clone();
            let job = job.clone();
            let settings = kit.settings(&format!("racer-{i}"));
            let delay = start(i);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                transfer_recording(&deps, &job, &settings, None).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("worker task"));
    }
    results
}

/// Exactly one `Archived`; everyone else ends cleanly.
fn assert_one_winner(label: &str, results: &[Result<TransferOutcome, TransferError>]) {
    let winners = results
        .iter()
        .filter(|r| matches!(r, Ok(TransferOutcome::Archived(_))))
        .count();
    assert_eq!(winners, 1, "{label}: {results:#?}");
    for r in results {
        assert!(
            matches!(r, Ok(TransferOutcome::Archived(_))) || ends_cleanly(r),
            "{label}: a loser must stop cleanly: {r:?}"
        );
    }
}

/// The redelivery every worker that did not see the archive would get: it finds the manifest.
async fn final_pass(kit: &Kit, deps: &TransferDeps, job: &TransferJob, label: &str) {
    let r = transfer_recording(deps, job, &kit.settings("redelivery"), None).await;
    assert!(
        matches!(r, Ok(TransferOutcome::AlreadyArchived { .. })),
        "{label}: the final pass finds the archive: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_on_an_atomic_store_archive_exactly_once_and_leave_no_orphan() {
    let kit = Kit::start().await;
    for workers in [2, 5] {
        // All at once, then spread over the transfer so some come mid-transfer, some around
        // completion and some after it.
        for gap_ms in [0u64, 10, 40, 120] {
            let label = format!("{workers} workers, {gap_ms} ms apart");
            let added = kit.add_recording(synth(MIB + 777));
            let store = Arc::new(MemoryStore::new("race").with_min_part_size(SMALL_CHUNK));
            let deps = Arc::new(kit.deps_with_store(store.clone()));
            let results = race(&kit, deps.clone(), &added.job, workers, |i| {
                Duration::from_millis(gap_ms * i as u64)
            })
            .await;
            assert_one_winner(&label, &results);
            assert_eq!(store.open_uploads(), 0, "{label}: no upload left open");
            final_pass(&kit, &deps, &added.job, &label).await;

            let mut expected = vec![kit.object_key(&added, "wav"), kit.manifest_key(&added)];
            expected.sort();
            assert_eq!(store.keys(), expected, "{label}: one object, one manifest");
            assert_eq!(store.open_uploads(), 0, "{label}: no upload left open");
            let body = store
                .object(&kit.object_key(&added, "wav"))
                .expect("object");
            let (plain, _) = decrypt_archive(&body, &added.job, kit.keyring.clone())
                .await
                .expect("decrypt");
            assert!(
                plain == kit.sim.media_bytes(&added.recording_id).expect("media"),
                "{label}: the archive decrypts to the source"
            );
            println!(
                "{label}: {} part uploads; {:?}",
                store
                    .part_uploads
                    .load(std::sync::atomic::Ordering::Relaxed),
                results.iter().map(outcome_name).collect::<Vec<_>>()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staggered_workers_on_moto_archive_exactly_once_and_leave_nothing_behind() {
    let kit = Kit::start().await;
    let deps = Arc::new(kit.deps());
    for workers in [2, 5] {
        let label = format!("{workers} workers on moto");
        let added = kit.add_recording(synth(MIB + 777));
        // Staggered 50–200 ms apart (moto-notes.md: concurrent conditional writes on moto are
        // not atomic, so starting together would test moto, not the engine).
        let gaps = [0u64, 120, 50, 190, 80];
        let results = race(&kit, deps.clone(), &added.job, workers, |i| {
            Duration::from_millis(gaps[..=i].iter().sum())
        })
        .await;
        println!(
            "{label}: {:?}",
            results.iter().map(outcome_name).collect::<Vec<_>>()
        );
        assert_one_winner(&label, &results);
        let manifest = results
            .iter()
            .find_map(|r| match r {
                Ok(TransferOutcome::Archived(m)) => Some((**m).clone()),
                _ => None,
            })
            .expect("a winner");
        final_pass(&kit, &deps, &added.job, &label).await;

        kit.verify_archived(&added, &manifest, "wav", "WAV_PCM")
            .await;
        let mut expected = vec![kit.object_key(&added, "wav"), kit.manifest_key(&added)];
        expected.sort();
        let of_recording: Vec<String> = kit
            .keys()
            .await
            .into_iter()
            .filter(|k| k.contains(&added.recording_id))
            .collect();
        assert_eq!(of_recording, expected, "{label}: one object, one manifest");
        kit.assert_nothing_left_behind().await;
    }
}

fn outcome_name(r: &Result<TransferOutcome, TransferError>) -> String {
    match r {
        Ok(TransferOutcome::Archived(_)) => "Archived".into(),
        Ok(TransferOutcome::AlreadyArchived { .. }) => "AlreadyArchived".into(),
        Ok(TransferOutcome::Suspended { .. }) => "Suspended".into(),
        Err(e) => format!("Err({})", e.reason_code()),
    }
}

/// A worker held between its manifest check and its claim while another finishes (and, last,
/// deletes its checkpoint, which lets the late claim in) must not start a second transfer;
/// a checkpoint found beside a manifest is removed only once its lease ran out, and a dead
/// worker's upload with it.
mod late_claim {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use gc_archive::store::{
        CompletedObject, Conditional, Crc64Nvme, ObjectKey, ObjectStore, StoreError, StoredObject,
        UploadedPart,
    };

    /// Holds the first `get` of a checkpoint until released.
    struct Gated {
        inner: Arc<MemoryStore>,
        gate: tokio::sync::Semaphore,
        reached: tokio::sync::Notify,
    }

    #[async_trait]
    impl ObjectStore for Gated {
        fn bucket(&self) -> &str {
            self.inner.bucket()
        }
        async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
            self.inner.exists(key).await
        }
        async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
            if key.as_str().contains("/_state/") {
                self.reached.notify_one();
                let p = self.gate.acquire().await.expect("gate");
                p.forget();
            }
            self.inner.get(key).await
        }
        async fn put_if_absent(
            &self,
            k: &ObjectKey,
            b: Bytes,
            c: &str,
        ) -> Result<Conditional<String>, StoreError> {
            self.inner.put_if_absent(k, b, c).await
        }
        async fn put_if_match(
            &self,
            k: &ObjectKey,
            b: Bytes,
            c: &str,
            e: &str,
        ) -> Result<Conditional<String>, StoreError> {
            self.inner.put_if_match(k, b, c, e).await
        }
        async fn delete(&self, k: &ObjectKey) -> Result<(), StoreError> {
            self.inner.delete(k).await
        }
        async fn delete_if_match(
            &self,
            k: &ObjectKey,
            e: &str,
        ) -> Result<Conditional<()>, StoreError> {
            self.inner.delete_if_match(k, e).await
        }
        async fn create_multipart(&self, k: &ObjectKey, c: &str) -> Result<String, StoreError> {
            self.inner.create_multipart(k, c).await
        }
        async fn upload_part(
            &self,
            k: &ObjectKey,
            u: &str,
            n: i32,
            b: Bytes,
            s: Crc64Nvme,
        ) -> Result<UploadedPart, StoreError> {
            self.inner.upload_part(k, u, n, b, s).await
        }
        async fn complete_multipart_if_absent(
            &self,
            k: &ObjectKey,
            u: &str,
            p: &[UploadedPart],
            w: Crc64Nvme,
        ) -> Result<Conditional<CompletedObject>, StoreError> {
            self.inner.complete_multipart_if_absent(k, u, p, w).await
        }
        async fn abort_multipart(&self, k: &ObjectKey, u: &str) -> Result<(), StoreError> {
            self.inner.abort_multipart(k, u).await
        }
        async fn checksum_crc64nvme(&self, k: &ObjectKey) -> Result<Option<String>, StoreError> {
            self.inner.checksum_crc64nvme(k).await
        }
        async fn copy(&self, f: &ObjectKey, t: &ObjectKey) -> Result<(), StoreError> {
            self.inner.copy(f, t).await
        }
        async fn list(&self, p: &str) -> Result<Vec<ObjectKey>, StoreError> {
            self.inner.list(p).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_late_claim_after_the_archive_is_done_starts_no_second_transfer() {
        let kit = Kit::start().await;
        let added = kit.add_recording(synth(MIB + 777));
        slow_media(&kit, &added.recording_id, 2 * MIB);
        let store = Arc::new(MemoryStore::new("race").with_min_part_size(SMALL_CHUNK));
        let gated = Arc::new(Gated {
            inner: store.clone(),
            gate: tokio::sync::Semaphore::new(0),
            reached: tokio::sync::Notify::new(),
        });
        let deps_late = Arc::new(kit.deps_with_store(gated.clone()));
        let deps = kit.deps_with_store(store.clone());
        let job = added.job.clone();
        let late = {
            let d = deps_late.clone();
            let job = job.clone();
            let s = kit.settings("late");
            tokio::spawn(async move { transfer_recording(&d, &job, &s, None).await })
        };
        gated.reached.notified().await;
        let won = transfer_recording(&deps, &job, &kit.settings("winner"), None).await;
        assert!(matches!(won, Ok(TransferOutcome::Archived(_))), "{won:?}");
        let parts_of_winner = store
            .part_uploads
            .load(std::sync::atomic::Ordering::Relaxed);
        gated.gate.add_permits(1000);
        let late = late.await.unwrap();
        assert!(
            matches!(late, Ok(TransferOutcome::AlreadyArchived { .. })),
            "{late:?}"
        );
        assert_eq!(
            store
                .part_uploads
                .load(std::sync::atomic::Ordering::Relaxed),
            parts_of_winner,
            "no part of a second transfer"
        );
        assert_eq!(store.open_uploads(), 0);
        assert!(
            store.keys().iter().all(|k| !k.contains("/_state/")),
            "{:?}",
            store.keys()
        );
    }
}
