//! The transfer loop: probe → plan → fetch chunks concurrently (in order) → hash and encrypt
//! each (off the async threads) → upload parts with their SHA-256 → checkpoint after each part →
//! complete with `If-None-Match: *` → verify S3's composite checksum → manifest.
//!
//! Memory is bounded by chunk size × (fetch concurrency + uploads in flight + 1), never by the
//! recording's size. Before the deadline the loop drains its uploads, saves a checkpoint and
//! returns [`TransferOutcome::Suspended`]; the next invocation resumes at the first missing part
//! and produces a byte-identical object (same data key, message id and frame sequence).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::buffers::BufferPool;
use super::checkpoint::{
    claim, Checkpoint, Claim, OwnedCheckpoint, UploadState, CHECKPOINT_VERSION,
};
use super::codec::{sniff, Codec};
use super::hash::{HashLane, LaneStopped, ResumableSha256};
use super::integrity::{OggPageChecker, SourceChecksums};
use super::plan::ResumePlan;
use super::range::ByteRange;
use super::source::{MediaRequest, MediaSource, Probe};
use super::TransferError;
use crate::config::{MediaFormat, RecordingMedia};
use crate::crypto::{EncryptionContext, FrameEncryptor, Keyring};
use crate::genesys::GenesysClient;
use crate::ids::{ConversationId, MediaKey, OrgId, RecordingId};
use crate::retry::Retryable;
use crate::store::manifest::*;
use crate::store::{
    ArchiveLayout, Conditional, Crc64Nvme, ObjectKey, ObjectStore, StoreError, UploadedPart,
};

/// One recording to archive.
#[derive(Debug, Clone)]
pub struct TransferJob {
    pub org: OrgId,
    pub conversation: ConversationId,
    pub recording: RecordingId,
    /// UTC start of the conversation: decides the key's date partition.
    pub conversation_start: DateTime<Utc>,
    pub participants: Vec<ParticipantInfo>,
    /// The recording's kind (`Recording.media`).
    pub media: RecordingMedia,
    /// One of several media streams of the recording (`mediaUris` key), or `None` for the
    /// only one.
    pub media_key: Option<MediaKey>,
    /// The storage target and rule that chose where it goes (routing config), for the manifest.
    pub route: Option<crate::routing::RecordedRoute>,
}

impl TransferJob {
    /// The encryption context that binds the ciphertext to this recording.
    pub fn encryption_context(&self) -> EncryptionContext {
        EncryptionContext::new()
            .with("orgId", self.org.as_str())
            .with("conversationId", self.conversation.as_str())
            .with("recordingId", self.recording.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct TransferSettings {
    pub layout: ArchiveLayout,
    /// The audio format asked for (the other kinds have one export form each).
    pub media_format: MediaFormat,
    pub chunk_size: u64,
    pub fetch_concurrency: usize,
    pub uploads_in_flight: usize,
    pub frame_len: u32,
    /// How long a checkpoint's owner keeps the transfer without writing.
    pub lease: Duration,
    /// Suspend when less than this remains before the deadline.
    pub suspend_margin: Duration,
    /// Identifies this worker in checkpoints (e.g. the Lambda request id).
    pub worker_id: String,
    /// Who can decrypt the data key, for the manifest (e.g. `aws-kms:<key arn>`).
    pub key_providers: Vec<String>,
    /// Recordings larger than this are not started here but returned as
    /// [`TransferOutcome::Suspended`] with no part done, for the transfer worker to take over
    /// (archive-on-event archives small recordings inline only). `None`: no limit.
    pub max_bytes: Option<u64>,
}

impl TransferSettings {
    pub fn from_config(
        archive: &crate::config::ArchiveConfig,
        media_format: &MediaFormat,
        worker_id: &str,
    ) -> Self {
        TransferSettings {
            layout: ArchiveLayout::new(&archive.prefix),
            media_format: media_format.clone(),
            chunk_size: archive.chunk_size,
            fetch_concurrency: archive.concurrency,
            uploads_in_flight: 2,
            frame_len: archive.frame_len,
            lease: Duration::from_secs(120),
            suspend_margin: Duration::from_secs(30),
            worker_id: worker_id.to_string(),
            key_providers: vec![archive.key_source.provider_name()],
            max_bytes: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum TransferOutcome {
    Archived(Box<Manifest>),
    /// A manifest already exists: nothing was downloaded or written.
    AlreadyArchived {
        manifest_key: ObjectKey,
    },
    /// Stopped before the deadline with a checkpoint; re-queue to continue.
    Suspended {
        parts_done: usize,
        parts_total: usize,
        bytes_done: u64,
    },
}

/// What the transfer needs from the outside world.
pub struct TransferDeps {
    pub genesys: GenesysClient,
    pub store: Arc<dyn ObjectStore>,
    pub keyring: Arc<dyn Keyring>,
}

/// Archives one recording, or resumes its transfer. See the module docs for the guarantees.
pub async fn transfer_recording(
    deps: &TransferDeps,
    job: &TransferJob,
    settings: &TransferSettings,
    deadline: Option<Instant>,
) -> Result<TransferOutcome, TransferError> {
    validate(settings)?;
    let layout = &settings.layout;
    let manifest_key = layout.manifest_key(
        &job.org,
        &job.conversation,
        &job.recording,
        job.media_key.as_ref(),
        job.conversation_start,
    );
    let checkpoint_key = layout.checkpoint_key(&job.recording, job.media_key.as_ref());
    if deps.store.exists(&manifest_key).await? {
        remove_stale_checkpoint(deps.store.as_ref(), &checkpoint_key).await?;
        return Ok(TransferOutcome::AlreadyArchived { manifest_key });
    }
    let lease = chrono::Duration::from_std(settings.lease)
        .map_err(|e| TransferError::Settings(format!("lease: {e}")))?;
    let now = Utc::now();
    let fresh = Checkpoint {
        version: CHECKPOINT_VERSION,
        owner: settings.worker_id.clone(),
        lease_until: now + lease,
        org_id: job.org.to_string(),
        conversation_id: job.conversation.to_string(),
        recording_id: job.recording.to_string(),
        started_at: now,
        invocations: 1,
        chunk_retries: 0,
        url_refreshes: 0,
        batch_job: None,
        upload: None,
    };
    let mut owned = match claim(deps.store.as_ref(), checkpoint_key, fresh, lease).await? {
        Claim::Owned(o) => *o,
        Claim::Busy { until } => return Err(TransferError::Busy { until }),
    };
    // Another worker may have finished between the manifest check and the claim (it deletes
    // its checkpoint last, which lets our claim in): do not start a second transfer.
    if deps.store.exists(&manifest_key).await? {
        owned.abort_upload(deps.store.as_ref()).await?;
        owned.delete(deps.store.as_ref()).await?;
        return Ok(TransferOutcome::AlreadyArchived { manifest_key });
    }
    if owned.state.version < CHECKPOINT_VERSION {
        // An upload of an older version (SHA-256 parts) cannot be completed as a FULL_OBJECT
        // CRC64NVME upload: abort it (we own it now) and start over.
        tracing::info!(
            version = owned.state.version,
            "checkpoint of an older version; starting the upload over"
        );
        owned.abort_upload(deps.store.as_ref()).await?;
        owned.state.upload = None;
        owned.state.version = CHECKPOINT_VERSION;
        owned.save(deps.store.as_ref()).await?;
    }
    let genesys = match deadline {
        Some(d) => deps.genesys.with_deadline(d),
        None => deps.genesys.clone(),
    };
    let mut run = Run {
        deps,
        job,
        settings,
        deadline,
        manifest_key,
        source: None,
    };
    let mut result = run.execute(&genesys, &mut owned).await;
    if matches!(
        result,
        Err(TransferError::Store(StoreError::NoSuchUpload { .. }))
    ) && owned.state.upload.is_some()
    {
        // The multipart upload we were resuming is gone (the bucket's abort-incomplete
        // lifecycle rule, or an operator): its parts are lost, so start over with a new one.
        tracing::warn!("the multipart upload of this transfer no longer exists; starting over");
        run.fold_counters(&mut owned);
        owned.state.upload = None;
        result = match owned.save(deps.store.as_ref()).await {
            Ok(()) => run.execute(&genesys, &mut owned).await,
            Err(e) => Err(e),
        };
    }
    run.fold_counters(&mut owned);
    settle(&run, &mut owned, result).await
}

/// With the manifest written, a checkpoint left behind is garbage, but only once its lease
/// ran out: a live one belongs to a worker still running, which finds the manifest itself.
/// A dead worker's upload is aborted after the checkpoint is taken away from it (conditional
/// delete), so no orphan stays.
async fn remove_stale_checkpoint(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> Result<(), TransferError> {
    let Some(found) = store.get(key).await? else {
        return Ok(());
    };
    let state: Option<Checkpoint> = serde_json::from_slice(&found.body).ok();
    if state.as_ref().is_some_and(|c| c.lease_until > Utc::now()) {
        return Ok(());
    }
    if let Conditional::Written(()) = store.delete_if_match(key, &found.etag).await? {
        if let Some(up) = state.and_then(|c| c.upload) {
            store
                .abort_multipart(&ObjectKey::new(up.object_key), &up.upload_id)
                .await?;
        }
    }
    Ok(())
}

/// Gives every failure its disposition's treatment of what this worker owns: recording
/// faults clean up (only while still the owner), transient and infrastructure faults keep
/// every part for the retry, a running batch job is remembered.
async fn settle(
    run: &Run<'_>,
    owned: &mut OwnedCheckpoint,
    result: Result<TransferOutcome, TransferError>,
) -> Result<TransferOutcome, TransferError> {
    let store = run.deps.store.as_ref();
    match result {
        Ok(outcome) => Ok(outcome),
        Err(TransferError::LostOwnership) => Err(TransferError::LostOwnership),
        Err(e @ TransferError::SourceIntegrity { .. }) => {
            // What was uploaded holds bytes the source disowns: start over, from nothing.
            tracing::warn!(error = %e, "discarding the upload; the next attempt starts over");
            run.discard(owned).await;
            Err(e)
        }
        Err(TransferError::NotReady {
            reason,
            retry_after,
            batch_job: Some(job_id),
        }) if owned.state.upload.is_none() => {
            // Keep the running batch job for the next attempt, and let that attempt in at once.
            owned.state.batch_job = Some(job_id.clone());
            if let Err(e) = owned.release(store).await {
                tracing::warn!(error = %e, "could not record the batch download job");
            }
            Err(TransferError::NotReady {
                reason,
                retry_after,
                batch_job: Some(job_id),
            })
        }
        Err(e) if e.is_infrastructure() && owned.state.upload.is_none() => {
            // Nothing uploaded: nothing to keep.
            if let Err(del) = owned.delete(store).await {
                tracing::warn!(error = %del, "could not delete the empty checkpoint");
            }
            Err(e)
        }
        Err(e) if e.is_infrastructure() => {
            // The deployment is broken, not the recording: keep every part and the checkpoint
            // for when it is fixed, and let the next attempt in at once.
            if let Err(release) = owned.release(store).await {
                tracing::warn!(error = %release, "could not release the checkpoint lease");
            }
            Err(e)
        }
        Err(e) if e.is_transient() && owned.state.upload.is_none() => {
            // Nothing was uploaded yet (not ready, first chunk failed): a checkpoint without an
            // upload is worth nothing, so leave nothing behind; the retry starts afresh.
            if let Err(del) = owned.delete(store).await {
                tracing::warn!(error = %del, "could not delete the empty checkpoint");
            }
            Err(e)
        }
        Err(e) if e.is_transient() => {
            // Keep the parts for the retry; just let it take over at once.
            if let Err(release) = owned.release(store).await {
                tracing::warn!(error = %release, "could not release the checkpoint lease");
            }
            Err(e)
        }
        Err(e) => {
            run.discard(owned).await;
            Err(e)
        }
    }
}

struct Run<'a> {
    deps: &'a TransferDeps,
    job: &'a TransferJob,
    settings: &'a TransferSettings,
    deadline: Option<Instant>,
    manifest_key: ObjectKey,
    source: Option<Arc<MediaSource>>,
}

/// Per-chunk CPU state, moved into blocking tasks and back.
struct Cpu {
    encryptor: Option<FrameEncryptor>,
    /// CRC64NVME of the ciphertext so far (the object's, once every part is in).
    ciphertext_crc: Crc64Nvme,
    /// MD5 of the whole plaintext, when the source stated one (and the stream was seen whole).
    md5: Option<md5::Md5>,
    ogg: Option<OggPageChecker>,
}

impl Cpu {
    /// A placeholder while the real state is in a blocking task.
    fn empty() -> Cpu {
        Cpu {
            encryptor: None,
            ciphertext_crc: Crc64Nvme::of(&[]),
            md5: None,
            ogg: None,
        }
    }
}

/// What the probe showed about the media.
struct ProbedMedia {
    total: u64,
    content_type: String,
    ranged: bool,
    checksums: SourceChecksums,
}

impl ProbedMedia {
    fn of(probe: &Probe) -> ProbedMedia {
        let (Probe::Ranged {
            total,
            content_type,
            checksums,
            ..
        }
        | Probe::Whole {
            total,
            content_type,
            checksums,
            ..
        }) = probe;
        ProbedMedia {
            total: *total,
            content_type: content_type.clone(),
            ranged: matches!(probe, Probe::Ranged { .. }),
            checksums: checksums.clone(),
        }
    }
}

type ChunkStream = futures::stream::BoxStream<'static, Result<Bytes, TransferError>>;

/// The part pipeline's inputs: where the chunks come from and the state they flow through.
struct PartPipeline {
    source: Arc<MediaSource>,
    chunks: ChunkStream,
    cpu: Cpu,
    /// The plaintext SHA-256, a chunk behind the encryption at most.
    hash: HashLane,
    plan: ResumePlan,
    parts_total: usize,
    media: ProbedMedia,
}

enum NextChunk {
    Bytes(Bytes),
    Suspend,
}

fn log_progress(done: usize, total: usize) {
    // Every tenth of a transfer of ten parts or more.
    if total >= 10 && (done * 10 / total) != ((done - 1) * 10 / total) {
        tracing::info!(
            percent = done * 100 / total,
            parts_done = done,
            parts_total = total,
            "transfer progress"
        );
    }
}

fn is_ogg(codec: Codec) -> bool {
    matches!(codec, Codec::OggOpus | Codec::OggVorbis)
}

/// Compares what the source stated about the whole object with what arrived, before anything
/// becomes visible. Returns the evidence the manifest records ("none" when there was none).
fn verify_source_evidence(
    owned: &OwnedCheckpoint,
    cpu: &Cpu,
    hasher: &ResumableSha256,
    resumed: bool,
) -> Result<Vec<String>, TransferError> {
    use base64::Engine as _;
    use md5::Digest as _;
    let Some(up) = owned.state.upload.as_ref() else {
        return Ok(vec!["none".into()]);
    };
    let stated = &up.source_checksums;
    let mut evidence = Vec::new();
    if let Some(want) = &stated.sha256 {
        let got = base64::engine::general_purpose::STANDARD.encode(hasher.clone().finalize());
        if &got != want {
            return Err(TransferError::SourceIntegrity {
                reason: "the SHA-256 the media host stated (x-amz-checksum-sha256) differs".into(),
            });
        }
        evidence.push("x-amz-checksum-sha256 verified".to_string());
    }
    if let Some(want) = &stated.md5 {
        let from = stated.md5_from.as_deref().unwrap_or("md5");
        match (&cpu.md5, resumed) {
            (Some(h), false) => {
                if &hex::encode(h.clone().finalize()) != want {
                    return Err(TransferError::SourceIntegrity {
                        reason: format!("the MD5 the media host stated ({from}) differs"),
                    });
                }
                evidence.push(format!("{from} verified"));
            }
            _ => evidence.push(format!("{from} not verified (the transfer was resumed)")),
        }
    }
    if let Some(ogg) = &cpu.ogg {
        evidence.push(format!("ogg page crc32 verified ({} pages)", ogg.pages));
    }
    if evidence.is_empty() {
        evidence.push("none".into());
    }
    Ok(evidence)
}

/// The evidence of a transfer finished from its checkpoint alone (nothing re-read).
fn unverified_evidence(up: &UploadState) -> Vec<String> {
    let mut e = Vec::new();
    if up.source_checksums.sha256.is_some() || up.source_checksums.md5.is_some() {
        e.push("source checksum not verified (the transfer was resumed)".to_string());
    }
    if is_ogg(up.codec) {
        e.push("ogg page crc32 verified in earlier invocations".to_string());
    }
    if e.is_empty() {
        e.push("none".into());
    }
    e
}

/// A part on its way: its upload, and what the checkpoint records once it is in.
struct InFlight {
    pending: PendingPart,
    /// The plaintext hash state after the part's chunk (from the hash lane).
    hash_after: tokio::sync::oneshot::Receiver<crate::transfer::hash::Sha256State>,
}

struct PendingPart {
    part: AbortOnDrop<Result<UploadedPart, TransferError>>,
    chunk_crc32: u32,
    ciphertext_crc_after: Crc64Nvme,
    encryptor_after: Option<crate::crypto::EncryptorCheckpoint>,
    ciphertext_after: u64,
}

/// Rejects settings the engine cannot honour before anything is written.
fn validate(settings: &TransferSettings) -> Result<(), TransferError> {
    let bad = |m: String| Err(TransferError::Settings(m));
    if settings.frame_len == 0 || settings.chunk_size == 0 {
        return bad("chunk size and frame length must be positive".into());
    }
    if !settings
        .chunk_size
        .is_multiple_of(u64::from(settings.frame_len))
    {
        // Every part but the last must end on a frame boundary (resume re-encrypts from one).
        return bad(format!(
            "frame length {} must divide the chunk size {}",
            settings.frame_len, settings.chunk_size
        ));
    }
    if settings.worker_id.is_empty() {
        return bad("worker id is empty".into());
    }
    Ok(())
}

impl Run<'_> {
    fn store(&self) -> &dyn ObjectStore {
        self.deps.store.as_ref()
    }

    fn request(&self) -> MediaRequest {
        MediaRequest::for_recording(
            self.job.media,
            &self.settings.media_format,
            self.job.media_key.clone(),
        )
    }

    /// Moves this invocation's retry and refresh counts into the checkpoint state (once).
    fn fold_counters(&self, owned: &mut OwnedCheckpoint) {
        if let Some(src) = &self.source {
            owned.state.chunk_retries += src.retries.swap(0, Ordering::Relaxed);
            owned.state.url_refreshes += src.refreshes.swap(0, Ordering::Relaxed);
        }
    }

    /// A permanent failure: nothing of this transfer may stay behind.
    /// Only while the transfer is still ours: a worker that lost it leaves the new owner's
    /// upload and checkpoint alone.
    async fn discard(&self, owned: &mut OwnedCheckpoint) {
        if let Err(e) = owned.abort_upload(self.store()).await {
            if matches!(e, TransferError::LostOwnership) {
                tracing::warn!("another worker owns the transfer now; leaving its state alone");
                return;
            }
            tracing::warn!(error = %e, "abort of the multipart upload failed; the bucket lifecycle rule will remove it");
        }
        if let Err(e) = owned.delete(self.store()).await {
            tracing::warn!(error = %e, "could not delete the checkpoint");
        }
    }

    /// One attempt, in three steps: the [`ResumePlan`] (from the checkpoint, checked against
    /// the probe), the part pipeline (fetch → verify → hash → encrypt → upload, bounded), and
    /// the finalizer (verify, complete, compare, manifest).
    async fn execute(
        &mut self,
        genesys: &GenesysClient,
        owned: &mut OwnedCheckpoint,
    ) -> Result<TransferOutcome, TransferError> {
        let started = Instant::now();
        let plan =
            ResumePlan::from_checkpoint(owned.state.upload.as_ref(), self.settings.chunk_size);
        if plan.upload_complete {
            // Every part is uploaded: finishing needs S3 only, not Genesys (the recording may
            // even be gone there by now).
            let evidence = owned
                .state
                .upload
                .as_ref()
                .map(unverified_evidence)
                .unwrap_or_default();
            return self.complete(owned, started, evidence).await;
        }
        let (source, probe) = self.open_and_probe(genesys, owned, &plan).await?;
        let media = ProbedMedia::of(&probe);
        let ranges = plan.chunks(
            owned.state.upload.as_ref(),
            media.total,
            &media.content_type,
        )?;
        if self
            .settings
            .max_bytes
            .is_some_and(|max| media.total > max && !plan.resumed)
        {
            // Too large for this invocation (archive-on-event's inline limit): hand it over.
            tracing::info!(
                total = media.total,
                "too large to archive here; handing over"
            );
            owned.release(self.store()).await?;
            return Ok(TransferOutcome::Suspended {
                parts_done: 0,
                parts_total: ranges.len(),
                bytes_done: 0,
            });
        }
        tracing::info!(
            total = media.total,
            parts_total = ranges.len(),
            parts_done = plan.parts_done,
            ranged = media.ranged,
            "transfer starting"
        );
        let chunks = self.chunk_stream(owned, probe, &source, &plan, &ranges, &media);
        let (cpu, hasher) = self.restore_cpu(owned, &plan).await?;
        if plan.resumed && media.ranged && plan.parts_done > 0 {
            // Resuming: the last chunk archived before must come back byte for byte, else the
            // source is another encode and the parts must not be continued.
            self.same_media_as_before(
                owned,
                &source,
                plan.parts_done - 1,
                plan.chunk,
                media.total,
                &media.content_type,
            )
            .await?;
        }
        let pipeline = PartPipeline {
            source,
            chunks,
            cpu,
            hash: HashLane::start(hasher, 1),
            plan,
            parts_total: ranges.len(),
            media,
        };
        self.pump(owned, pipeline, started).await
    }

    /// The media source (the signed URL, a batch job remembered from an earlier attempt) and
    /// the first response, both under the lease.
    async fn open_and_probe(
        &mut self,
        genesys: &GenesysClient,
        owned: &mut OwnedCheckpoint,
        plan: &ResumePlan,
    ) -> Result<(Arc<MediaSource>, Probe), TransferError> {
        let batch_job = owned.state.batch_job.clone();
        let source = self
            .leased(
                owned,
                MediaSource::open(
                    genesys.clone(),
                    self.job.conversation.clone(),
                    self.job.recording.clone(),
                    self.request(),
                    batch_job,
                ),
            )
            .await??;
        self.source = Some(source.clone());
        let probe = self
            .leased(owned, source.probe(plan.probe_range()))
            .await??;
        Ok((source, probe))
    }

    /// The chunks still to do, in order, as a stream of verified plaintext.
    fn chunk_stream(
        &self,
        owned: &OwnedCheckpoint,
        probe: Probe,
        source: &Arc<MediaSource>,
        plan: &ResumePlan,
        ranges: &[ByteRange],
        media: &ProbedMedia,
    ) -> ChunkStream {
        let total = media.total;
        match probe {
            Probe::Ranged { first, .. } => {
                let rest = ranges[plan.parts_done + 1..].to_vec();
                let src = source.clone();
                let ct = media.content_type.clone();
                let fetches = futures::stream::iter(rest)
                    .map(move |r| {
                        let src = src.clone();
                        let ct = ct.clone();
                        AbortOnDrop(tokio::spawn(async move { src.fetch(r, total, &ct).await }))
                    })
                    .buffered(self.settings.fetch_concurrency.max(1))
                    .map(|joined| joined.unwrap_or_else(|e| Err(TransferError::task("fetch", e))));
                futures::stream::once(async move { Ok(first) })
                    .chain(fetches)
                    .boxed()
            }
            Probe::Whole { response, .. } => {
                // What an earlier invocation archived comes again first: hash it and compare
                // with the state the checkpoint recorded after it.
                let prefix = owned
                    .state
                    .upload
                    .as_ref()
                    .map(|u| u.plaintext_hash.clone());
                whole_body_chunks(response, plan.resume_offset, plan.chunk, total, prefix).boxed()
            }
        }
    }

    /// The hash and encryption state to continue from (a fresh one for a new transfer).
    async fn restore_cpu(
        &self,
        owned: &OwnedCheckpoint,
        plan: &ResumePlan,
    ) -> Result<(Cpu, ResumableSha256), TransferError> {
        let Some(up) = &owned.state.upload else {
            return Ok((Cpu::empty(), ResumableSha256::new()));
        };
        let hasher = ResumableSha256::restore(&up.plaintext_hash).ok_or_else(|| {
            TransferError::BadCheckpoint {
                key: owned.key.to_string(),
                reason: "plaintext hash state is inconsistent".into(),
            }
        })?;
        let ciphertext_crc = match &up.ciphertext_crc64nvme {
            Some(b64) => {
                Crc64Nvme::from_base64(b64).ok_or_else(|| TransferError::BadCheckpoint {
                    key: owned.key.to_string(),
                    reason: format!("ciphertext CRC64NVME {b64:?} is not one"),
                })?
            }
            None => whole_object_crc(owned, up)?,
        };
        let cpu = Cpu {
            encryptor: Some(
                FrameEncryptor::resume(self.deps.keyring.as_ref(), &up.encryptor).await?,
            ),
            ciphertext_crc,
            // A resumed transfer has not seen the prefix: a whole-object MD5 cannot be
            // recomputed here (its state is not resumable); Ogg pages are checked from the next
            // page on.
            md5: None,
            ogg: is_ogg(up.codec).then(|| OggPageChecker::starting_at(plan.resume_offset)),
        };
        Ok((cpu, hasher))
    }

    /// The part pipeline: each chunk is verified, hashed, encrypted and uploaded, with at most
    /// `uploads_in_flight` parts in memory; suspends before the deadline; then the finalizer.
    async fn pump(
        &self,
        owned: &mut OwnedCheckpoint,
        mut p: PartPipeline,
        started: Instant,
    ) -> Result<TransferOutcome, TransferError> {
        let mut refreshes_seen = p.source.refreshes.load(Ordering::Relaxed);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut index = p.plan.parts_done;
        let mut ciphertext_total = owned.state.upload.as_ref().map_or(0, |u| u.ciphertext_size);
        while index < p.parts_total {
            if self.deadline_near() {
                self.drain(owned, &mut in_flight, 0).await?;
                return self
                    .suspend(owned, p.parts_total, p.plan.chunk, p.media.total)
                    .await;
            }
            let slot = p.hash.reserve().await?;
            let plain = match self
                .next_chunk(owned, &mut p, &mut in_flight, index)
                .await?
            {
                NextChunk::Bytes(b) => b,
                NextChunk::Suspend => {
                    return self
                        .suspend(owned, p.parts_total, p.plan.chunk, p.media.total)
                        .await
                }
            };
            if owned.state.upload.is_none() {
                let (media, source) = (&p.media, p.source.clone());
                self.start_upload(owned, &mut p.cpu, &plain, p.plan.chunk, media, &source)
                    .await?;
            }
            // Make room first: at most `uploads_in_flight` ciphertext parts exist at once,
            // counting the one about to be made.
            self.drain(
                owned,
                &mut in_flight,
                self.settings.uploads_in_flight.max(1) - 1,
            )
            .await?;
            if p.source.refreshes.load(Ordering::Relaxed) != refreshes_seen {
                // A fresh URL may be a fresh encode (a transcoded Ogg gets a new serial): the
                // bytes already archived must still be what it serves.
                refreshes_seen = p.source.refreshes.load(Ordering::Relaxed);
                self.same_media_as_before(
                    owned,
                    &p.source,
                    0,
                    p.plan.chunk,
                    p.media.total,
                    &p.media.content_type,
                )
                .await?;
            }
            let hash_after = slot.send(plain.clone());
            let part = self
                .seal_and_upload(owned, &mut p, index, plain, &mut ciphertext_total)
                .await?;
            in_flight.push_back(InFlight {
                pending: part,
                hash_after,
            });
            index += 1;
            log_progress(index, p.parts_total);
        }
        self.drain(owned, &mut in_flight, 0).await?;
        let hasher = p.hash.finish().await?;
        if hasher.len() != p.media.total {
            return Err(TransferError::SizeMismatch {
                expected: p.media.total,
                actual: hasher.len(),
            });
        }
        let evidence = verify_source_evidence(owned, &p.cpu, &hasher, p.plan.resumed)?;
        self.complete(owned, started, evidence).await
    }

    /// Encrypts chunk `index` (with the cheap checks) and starts its part upload; the caller
    /// adds the hash lane's state after the chunk.
    async fn seal_and_upload(
        &self,
        owned: &OwnedCheckpoint,
        p: &mut PartPipeline,
        index: usize,
        plain: Bytes,
        ciphertext_total: &mut u64,
    ) -> Result<PendingPart, TransferError> {
        let last = index + 1 == p.parts_total;
        let cpu = std::mem::replace(&mut p.cpu, Cpu::empty());
        let (next_cpu, sealed) = encrypt_chunk(cpu, plain, last, index == 0).await?;
        p.cpu = next_cpu;
        *ciphertext_total += sealed.ciphertext.len() as u64;
        let part = self.spawn_upload(owned, index, sealed.ciphertext, sealed.part_crc)?;
        Ok(PendingPart {
            part,
            chunk_crc32: sealed.chunk_crc32,
            ciphertext_crc_after: p.cpu.ciphertext_crc,
            encryptor_after: p.cpu.encryptor.as_ref().map(|e| e.checkpoint()),
            ciphertext_after: *ciphertext_total,
        })
    }

    /// The next verified chunk; on a fetch failure the parts in flight are recorded first, and
    /// a failure the deadline cut short becomes a suspension.
    async fn next_chunk(
        &self,
        owned: &mut OwnedCheckpoint,
        p: &mut PartPipeline,
        in_flight: &mut VecDeque<InFlight>,
        index: usize,
    ) -> Result<NextChunk, TransferError> {
        match self.leased(owned, p.chunks.next()).await? {
            Some(Ok(c)) => Ok(NextChunk::Bytes(c)),
            Some(Err(e)) => {
                // Parts already fetched and being uploaded are good: record them, so the retry
                // (or the next invocation) does not download them again.
                if let Err(d) = self.drain(owned, in_flight, 0).await {
                    tracing::warn!(error = %d, "could not record the parts in flight");
                    return Err(e);
                }
                if e.is_transient() && self.retries_cut_by_deadline() {
                    // The chunk's retries were cut short by the deadline: stop as a suspension
                    // (checkpoint saved, re-queued), not as a failure.
                    tracing::info!(error = %e, "chunk failed close to the deadline; suspending");
                    return Ok(NextChunk::Suspend);
                }
                Err(e)
            }
            None => Err(TransferError::SizeMismatch {
                expected: p.media.total,
                actual: index as u64 * p.plan.chunk,
            }),
        }
    }

    /// Uploads one ciphertext part in its own task. One retry layer: the SDK's own (standard
    /// mode) retries the part (with its own timeouts); the task is aborted with its handle, so
    /// nothing uploads on after this worker stopped. Not cut at the deadline itself: the
    /// suspension drains the parts in flight `suspend_margin` before it.
    fn spawn_upload(
        &self,
        owned: &OwnedCheckpoint,
        index: usize,
        ciphertext: Bytes,
        crc: Crc64Nvme,
    ) -> Result<AbortOnDrop<Result<UploadedPart, TransferError>>, TransferError> {
        let up = owned
            .state
            .upload
            .as_ref()
            .ok_or(TransferError::Invariant("a part without an upload"))?;
        let store = self.deps.store.clone();
        let key = ObjectKey::new(up.object_key.clone());
        let upload_id = up.upload_id.clone();
        let part_number = (index + 1) as i32;
        Ok(AbortOnDrop(tokio::spawn(async move {
            store
                .upload_part(&key, &upload_id, part_number, ciphertext, crc)
                .await
                .map_err(TransferError::from)
        })))
    }

    /// Fetches chunk `index` again and compares its CRC-32 with the one recorded when it was
    /// archived (checkpoints from before chunk CRCs were kept pass).
    async fn same_media_as_before(
        &self,
        owned: &OwnedCheckpoint,
        source: &MediaSource,
        index: usize,
        chunk: u64,
        total: u64,
        content_type: &str,
    ) -> Result<(), TransferError> {
        let Some(want) = owned
            .state
            .upload
            .as_ref()
            .and_then(|u| u.chunk_crc32.get(index).copied())
        else {
            return Ok(());
        };
        let range = ByteRange {
            start: index as u64 * chunk,
            end: ((index as u64 + 1) * chunk).min(total) - 1,
        };
        let again = source.fetch(range, total, content_type).await?;
        if chunk_crc32(&again) != want {
            return Err(TransferError::SourceIntegrity {
                reason: format!(
                    "media {range} is not the bytes archived before: the source is another encode now; starting over"
                ),
            });
        }
        Ok(())
    }

    /// Moves `key` to `{prefix}/_quarantine/…` with a note of why, and removes it from the
    /// final key. Returns where it went.
    async fn quarantine(&self, key: &ObjectKey, reason: &str) -> Result<ObjectKey, TransferError> {
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%3fZ");
        let prefix = self.settings.layout.prefix();
        let rel = key
            .as_str()
            .strip_prefix(&format!("{prefix}/"))
            .unwrap_or(key.as_str());
        let target = if prefix.is_empty() {
            ObjectKey::new(format!("_quarantine/{stamp}/{rel}"))
        } else {
            ObjectKey::new(format!("{prefix}/_quarantine/{stamp}/{rel}"))
        };
        tracing::warn!(%key, to = %target, reason, "quarantining an object that cannot be vouched for");
        self.store().copy(key, &target).await?;
        let note = serde_json::json!({
            "quarantinedFrom": key.as_str(),
            "reason": reason,
            "at": Utc::now(),
            "worker": self.settings.worker_id,
        });
        let _ = self
            .store()
            .put_if_absent(
                &ObjectKey::new(format!("{target}.reason.json")),
                Bytes::from(note.to_string()),
                "application/json",
            )
            .await?;
        self.store().delete(key).await?;
        Ok(target)
    }

    /// Saves the checkpoint with the lease released and reports the suspension. In-flight
    /// uploads must have been drained.
    async fn suspend(
        &self,
        owned: &mut OwnedCheckpoint,
        parts_total: usize,
        chunk: u64,
        total: u64,
    ) -> Result<TransferOutcome, TransferError> {
        self.fold_counters(owned);
        owned.release(self.store()).await?;
        let done = owned.state.upload.as_ref().map_or(0, |u| u.parts.len());
        tracing::info!(
            parts_done = done,
            parts_total,
            "suspending before the deadline"
        );
        Ok(TransferOutcome::Suspended {
            parts_done: done,
            parts_total,
            bytes_done: (done as u64 * chunk).min(total),
        })
    }

    /// Whether the deadline is close enough that the retry policy may have refused another
    /// attempt (it keeps its own margin before the deadline, plus a backoff wait).
    fn retries_cut_by_deadline(&self) -> bool {
        let policy = self.deps.genesys.retry_policy();
        let slack = policy.deadline_margin + policy.max_delay.min(Duration::from_secs(2));
        self.deadline
            .is_some_and(|d| Instant::now() + self.settings.suspend_margin + slack >= d)
    }

    fn deadline_near(&self) -> bool {
        self.deadline
            .is_some_and(|d| Instant::now() + self.settings.suspend_margin >= d)
    }

    /// Waits for uploads until at most `keep` remain, recording each finished part in order.
    async fn drain(
        &self,
        owned: &mut OwnedCheckpoint,
        in_flight: &mut VecDeque<InFlight>,
        keep: usize,
    ) -> Result<(), TransferError> {
        while in_flight.len() > keep {
            let Some(InFlight {
                pending: f,
                hash_after,
            }) = in_flight.pop_front()
            else {
                break;
            };
            let part = self
                .leased(owned, f.part)
                .await?
                .map_err(|e| TransferError::task("part upload", e))??;
            let up = owned
                .state
                .upload
                .as_mut()
                .ok_or(TransferError::Invariant("a part without an upload"))?;
            up.parts.push(part);
            up.chunk_crc32.push(f.chunk_crc32);
            up.ciphertext_crc64nvme = Some(f.ciphertext_crc_after.to_base64());
            up.plaintext_hash = hash_after.await.map_err(|_| LaneStopped)?;
            if let Some(e) = f.encryptor_after {
                up.encryptor = e;
            }
            up.ciphertext_size = f.ciphertext_after;
            owned.state.lease_until = Utc::now()
                + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
            owned.save(self.store()).await?;
        }
        Ok(())
    }

    /// First chunk of a fresh transfer: check the codec, name the object, start the upload.
    async fn start_upload(
        &self,
        owned: &mut OwnedCheckpoint,
        cpu: &mut Cpu,
        first: &Bytes,
        chunk: u64,
        media: &ProbedMedia,
        source: &MediaSource,
    ) -> Result<(), TransferError> {
        let (total, content_type, ranged, checksums) = (
            media.total,
            media.content_type.as_str(),
            media.ranged,
            &media.checksums,
        );
        let codec = check_codec(first, content_type, &self.request())?;
        let key = self.settings.layout.object_key(
            &self.job.org,
            &self.job.conversation,
            &self.job.recording,
            self.job.media_key.as_ref(),
            self.job.conversation_start,
            codec.extension(),
        );
        let encryptor = self
            .leased(
                owned,
                FrameEncryptor::new(
                    self.deps.keyring.as_ref(),
                    self.job.encryption_context(),
                    self.settings.frame_len,
                ),
            )
            .await??;
        let upload_id = self
            .leased(
                owned,
                self.store()
                    .create_multipart(&key, "application/octet-stream"),
            )
            .await??;
        owned.state.upload = Some(UploadState {
            object_key: key.to_string(),
            upload_id,
            total_size: total,
            chunk_size: chunk,
            content_type: content_type.to_string(),
            declared_content_type: source.declared_content_type().await,
            codec,
            ranged,
            media_host: source.host().await,
            parts: Vec::new(),
            plaintext_hash: ResumableSha256::new().save(),
            encryptor: encryptor.checkpoint(),
            ciphertext_size: 0,
            frame_len: encryptor.frame_len(),
            message_id: encryptor.message_id_hex(),
            duration_ms: source.duration_ms().await,
            source_checksums: checksums.clone(),
            chunk_crc32: Vec::new(),
            ciphertext_crc64nvme: None,
        });
        cpu.encryptor = Some(encryptor);
        cpu.md5 = checksums.md5.is_some().then(md5::Md5::default);
        cpu.ogg = is_ogg(codec).then(|| OggPageChecker::starting_at(0));
        // Record the upload id before any part exists, so a crash leaves nothing unowned; if
        // it cannot be recorded, nobody else knows the upload: its creator aborts it.
        if let Err(e) = owned.save(self.store()).await {
            if let Err(abort) = self
                .store()
                .abort_multipart(&key, &upload_id_of(owned))
                .await
            {
                tracing::warn!(error = %abort, "could not abort the unrecorded upload; the bucket lifecycle rule will");
            }
            owned.state.upload = None;
            return Err(e);
        }
        Ok(())
    }

    /// Awaits `work` while keeping the checkpoint's lease alive: every third of the lease the
    /// checkpoint is written again (a conditional write, so a lost transfer shows at once).
    /// Long waits (a batch job, a 429's Retry-After, KMS, one slow part) never run unleased.
    async fn leased<T>(
        &self,
        owned: &mut OwnedCheckpoint,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, TransferError> {
        let every = (self.settings.lease / 3).max(Duration::from_millis(100));
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tick.tick() => {
                    owned.state.lease_until = Utc::now()
                        + chrono::Duration::from_std(self.settings.lease)
                            .unwrap_or(chrono::Duration::MAX);
                    owned.save(self.store()).await?;
                    tracing::debug!("lease renewed");
                }
            }
        }
    }

    /// The finalizer: verify what needs no round trip, complete with `If-None-Match: *`
    /// (or settle an object found there), compare S3's full-object checksum, then the manifest.
    async fn complete(
        &self,
        owned: &mut OwnedCheckpoint,
        started: Instant,
        integrity: Vec<String>,
    ) -> Result<TransferOutcome, TransferError> {
        let up = owned
            .state
            .upload
            .clone()
            .ok_or(TransferError::Invariant("completion without an upload"))?;
        let key = ObjectKey::new(up.object_key.clone());
        let (hasher, expected) = verify_before_visible(owned, &up)?;
        match self
            .store()
            .complete_multipart_if_absent(&key, &up.upload_id, &up.parts, expected)
            .await
        {
            Ok(Conditional::Written(_)) => {}
            Ok(Conditional::PreconditionFailed) | Err(StoreError::NoSuchUpload { .. }) => {
                if let Some(done) = self
                    .object_already_there(owned, &key, &up, expected)
                    .await?
                {
                    return Ok(done);
                }
            }
            Err(e) => return Err(e.into()),
        }
        let s3_checksum = self.confirm_stored(&key, expected).await?;
        self.write_manifest(owned, started, integrity, &up, s3_checksum, hasher)
            .await
    }

    /// CompleteMultipartUpload found an object at the final key, or no upload any more: an
    /// earlier invocation that died before the manifest completed it. If the object is ours
    /// (this transfer's full-object CRC), the caller finishes the job (`None`); if a manifest
    /// exists, the recording is archived. Anything else is moved aside to `_quarantine/` with
    /// the reason, and this transfer's own upload (verified, complete) takes the key: the
    /// recording is never blocked, and never downloaded twice for it.
    async fn object_already_there(
        &self,
        owned: &mut OwnedCheckpoint,
        key: &ObjectKey,
        up: &UploadState,
        expected: Crc64Nvme,
    ) -> Result<Option<TransferOutcome>, TransferError> {
        let found = self.store().checksum_crc64nvme(key).await?;
        if found.is_none() && !self.store().exists(key).await? {
            // Neither our upload nor any object: the upload vanished before completion.
            return Err(StoreError::NoSuchUpload {
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                upload_id: up.upload_id.clone(),
            }
            .into());
        }
        if found.as_deref() == Some(expected.to_base64().as_str()) {
            return Ok(None);
        }
        if self.store().exists(&self.manifest_key).await? {
            owned.abort_upload(self.store()).await?;
            owned.delete(self.store()).await?;
            return Ok(Some(TransferOutcome::AlreadyArchived {
                manifest_key: self.manifest_key.clone(),
            }));
        }
        let reason = format!(
            "found at the final key without a manifest; its CRC64NVME {} is not this transfer's {expected}",
            found.as_deref().unwrap_or("none")
        );
        let moved = self.quarantine(key, &reason).await?;
        tracing::warn!(key = %key, moved_to = %moved, "moved an unvouched object aside; completing this transfer's upload");
        match self
            .store()
            .complete_multipart_if_absent(key, &up.upload_id, &up.parts, expected)
            .await?
        {
            Conditional::Written(_) => Ok(None),
            // Another object arrived in between: let the retry look again.
            Conditional::PreconditionFailed => Err(TransferError::Quarantined {
                key: key.to_string(),
                moved_to: moved.to_string(),
            }),
        }
    }

    /// S3's full-object CRC64NVME must be the one we computed; otherwise the stored bytes are
    /// not what we sent, and the object never stays at the final key (it is kept aside for
    /// whoever investigates).
    async fn confirm_stored(
        &self,
        key: &ObjectKey,
        expected: Crc64Nvme,
    ) -> Result<String, TransferError> {
        match self.store().checksum_crc64nvme(key).await? {
            Some(r) if r == expected.to_base64() => Ok(r),
            other => {
                self.quarantine(
                    key,
                    &format!(
                        "S3 reports CRC64NVME {} for the parts we sent as {expected}",
                        other.as_deref().unwrap_or("none")
                    ),
                )
                .await?;
                Err(StoreError::ChecksumMismatch {
                    key: key.to_string(),
                    expected: expected.to_base64(),
                    actual: other.unwrap_or_else(|| "none".into()),
                }
                .into())
            }
        }
    }

    /// Writes the manifest (`If-None-Match: *`): the archive exists from now on.
    async fn write_manifest(
        &self,
        owned: &mut OwnedCheckpoint,
        started: Instant,
        integrity: Vec<String>,
        up: &UploadState,
        s3_checksum: String,
        hasher: ResumableSha256,
    ) -> Result<TransferOutcome, TransferError> {
        let manifest = self.manifest_of(owned, started, integrity, up, s3_checksum, hasher);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| TransferError::Encode {
            what: "manifest",
            reason: e.to_string(),
        })?;
        let outcome = match self
            .store()
            .put_if_absent(&self.manifest_key, Bytes::from(body), "application/json")
            .await?
        {
            Conditional::Written(_) => TransferOutcome::Archived(Box::new(manifest)),
            Conditional::PreconditionFailed => TransferOutcome::AlreadyArchived {
                manifest_key: self.manifest_key.clone(),
            },
        };
        // The archive is complete whatever happens to the checkpoint now; a failed delete
        // leaves garbage the next delivery removes (the manifest exists).
        if let Err(e) = owned.delete(self.store()).await {
            tracing::warn!(error = %e, "could not delete the finished transfer's checkpoint");
        }
        Ok(outcome)
    }

    /// The manifest of the finished archive: what it can be trusted for.
    fn manifest_of(
        &self,
        owned: &OwnedCheckpoint,
        started: Instant,
        integrity: Vec<String>,
        up: &UploadState,
        s3_checksum: String,
        hasher: ResumableSha256,
    ) -> Manifest {
        let plaintext_sha256 = hex::encode(hasher.finalize());
        Manifest {
            manifest_version: MANIFEST_VERSION,
            org_id: self.job.org.to_string(),
            conversation_id: self.job.conversation.to_string(),
            recording_id: self.job.recording.to_string(),
            conversation_start: self.job.conversation_start,
            bucket: self.store().bucket().to_string(),
            object_key: up.object_key.clone(),
            plaintext: PlaintextInfo {
                size: up.total_size,
                sha256: plaintext_sha256,
                codec: serde_json::to_value(up.codec)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                declared_content_type: up
                    .declared_content_type
                    .clone()
                    .unwrap_or_else(|| up.content_type.clone()),
                served_content_type: up.content_type.clone(),
                media: self.job.media.as_str().to_string(),
                duration_ms: up.duration_ms,
            },
            ciphertext: CiphertextInfo {
                size: up.ciphertext_size,
                crc64nvme_parts: up.parts.iter().map(|p| p.checksum.clone()).collect(),
                s3_checksum_crc64nvme: Some(s3_checksum),
                sha256_parts: Vec::new(),
                s3_checksum_sha256: None,
                parts: up.parts.len() as u32,
            },
            encryption: EncryptionInfo {
                format: "aws-encryption-sdk message format v2 (framed)".into(),
                algorithm_suite: "AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0478)".into(),
                frame_length: up.frame_len,
                message_id: up.message_id.clone(),
                key_providers: self.settings.key_providers.clone(),
                encryption_context: self.job.encryption_context().as_map().clone(),
            },
            source: SourceInfo {
                media_host: up.media_host.clone(),
                format_id: self.request().describe(),
                media_key: self.job.media_key.as_ref().map(|k| k.to_string()),
                integrity,
                ranged: up.ranged,
                chunk_size: up.chunk_size,
            },
            participants: self.job.participants.clone(),
            route: self.job.route.clone(),
            timings: Timings {
                started_at: owned.state.started_at,
                completed_at: Utc::now(),
                invocations: owned.state.invocations,
                chunk_retries: owned.state.chunk_retries
                    + self
                        .source
                        .as_ref()
                        .map_or(0, |s| s.retries.load(Ordering::Relaxed)),
                url_refreshes: owned.state.url_refreshes
                    + self
                        .source
                        .as_ref()
                        .map_or(0, |s| s.refreshes.load(Ordering::Relaxed)),
                last_invocation_ms: started.elapsed().as_millis() as u64,
            },
            tool_version: concat!("gc-archive ", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Verify before visible: everything that needs no S3 round trip (the plaintext hash state and
/// its length, the parts covering every ciphertext byte) is checked before
/// CompleteMultipartUpload makes the object appear at its final key. Returns the plaintext
/// hasher and the object's expected CRC64NVME.
fn verify_before_visible(
    owned: &OwnedCheckpoint,
    up: &UploadState,
) -> Result<(ResumableSha256, Crc64Nvme), TransferError> {
    let hasher = ResumableSha256::restore(&up.plaintext_hash).ok_or_else(|| {
        TransferError::BadCheckpoint {
            key: owned.key.to_string(),
            reason: "plaintext hash state is inconsistent".into(),
        }
    })?;
    if hasher.len() != up.total_size {
        return Err(TransferError::SizeMismatch {
            expected: up.total_size,
            actual: hasher.len(),
        });
    }
    let covered: u64 = up.parts.iter().map(|p| p.size).sum();
    if covered != up.ciphertext_size || up.parts.is_empty() {
        return Err(TransferError::BadCheckpoint {
            key: owned.key.to_string(),
            reason: format!(
                "parts hold {covered} ciphertext bytes, the encryptor wrote {}",
                up.ciphertext_size
            ),
        });
    }
    // Kept as the parts were made; combined from the parts for a checkpoint without it.
    let expected = match up
        .ciphertext_crc64nvme
        .as_deref()
        .map(Crc64Nvme::from_base64)
    {
        Some(Some(crc)) => crc,
        _ => whole_object_crc(owned, up)?,
    };
    Ok((hasher, expected))
}

/// The object's CRC64NVME from its parts' (each verified by S3 on upload).
fn whole_object_crc(owned: &OwnedCheckpoint, up: &UploadState) -> Result<Crc64Nvme, TransferError> {
    let parts = up
        .parts
        .iter()
        .map(|p| {
            p.crc64nvme()
                .map(|c| (c, p.size))
                .ok_or_else(|| TransferError::BadCheckpoint {
                    key: owned.key.to_string(),
                    reason: format!(
                        "part {} checksum {:?} is not a CRC64NVME",
                        p.part_number, p.checksum
                    ),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Crc64Nvme::of_parts(parts))
}

pub fn check_codec(
    first: &[u8],
    content_type: &str,
    request: &MediaRequest,
) -> Result<Codec, TransferError> {
    let sniffed = sniff(first);
    let (ok, expected) = match (request, sniffed) {
        (_, None) => (false, request.describe()),
        (MediaRequest::Original, Some(c)) => (c.is_audio(), "audio in any codec".to_string()),
        (
            MediaRequest::Recording {
                media, format_id, ..
            },
            Some(c),
        ) => match media {
            RecordingMedia::Audio => {
                let f = format_id.as_deref().unwrap_or("WEBM");
                (
                    c.is_audio() && (c.format_id() == f || (f == "WAV" && c == Codec::WavOther)),
                    format!("formatId {f}"),
                )
            }
            RecordingMedia::Screen => (
                matches!(c, Codec::Webm | Codec::Mp4),
                "screen video (WebM or MP4)".into(),
            ),
            RecordingMedia::Chat | RecordingMedia::Messaging => {
                (c == Codec::Zip, "a ZIP transcript".into())
            }
            RecordingMedia::Email => (c == Codec::Eml, "an RFC 822 email".into()),
        },
    };
    match sniffed {
        Some(c) if ok => Ok(c),
        None if super::codec::is_error_page_type(content_type) => Err(TransferError::Chunk {
            range: ByteRange {
                start: 0,
                end: first.len().saturating_sub(1) as u64,
            },
            reason: format!("the media host answered with {content_type:?}, not media"),
            attempts: 1,
            retry_after: None,
        }),
        other => Err(TransferError::CodecMismatch {
            expected,
            sniffed: other
                .map_or_else(|| "not a known media format".to_string(), |c| c.to_string()),
        }),
    }
}

/// Hashes the plaintext and encrypts it on two blocking threads at once; returns the state,
/// the ciphertext part (with the header for the first part) and the part's SHA-256.
async fn encrypt_chunk(
    cpu: Cpu,
    plain: Bytes,
    last: bool,
    first: bool,
) -> Result<(Cpu, Sealed), TransferError> {
    let Cpu {
        encryptor,
        ciphertext_crc,
        mut md5,
        mut ogg,
    } = cpu;
    let mut encryptor = encryptor.ok_or(TransferError::Invariant(
        "a chunk to encrypt without an encryptor",
    ))?;
    // One blocking task: encryption and the cheap checks (CRCs, the Ogg pages, an MD5 only when
    // the source stated one). The plaintext SHA-256 runs on the hash lane meanwhile.
    let task = tokio::task::spawn_blocking(move || {
        use md5::Digest as _;
        let header = if first { encryptor.header().len() } else { 0 };
        let body = if last {
            encryptor.final_len(plain.len())
        } else {
            encryptor.regular_len(plain.len())?
        };
        let mut out = BufferPool::global().take(header + body);
        if first {
            out.append(encryptor.header());
        }
        let (next, written) = if last {
            (None, encryptor.finish_into(&plain, out.room())?)
        } else {
            let n = encryptor.encrypt_regular_into(&plain, out.room())?;
            (Some(encryptor), n)
        };
        out.advance(written);
        let part_crc = Crc64Nvme::of(out.as_ref());
        let ciphertext_crc = ciphertext_crc.then(part_crc, out.len() as u64);
        let chunk_crc32 = chunk_crc32(&plain);
        if let Some(m) = md5.as_mut() {
            m.update(&plain);
        }
        if let Some(o) = ogg.as_mut() {
            o.update(&plain)
                .map_err(|e| TransferError::SourceIntegrity {
                    reason: e.to_string(),
                })?;
        }
        let sealed = Sealed {
            ciphertext: out.freeze(),
            part_crc,
            chunk_crc32,
        };
        Ok::<_, TransferError>((
            Cpu {
                encryptor: next,
                ciphertext_crc,
                md5,
                ogg,
            },
            sealed,
        ))
    });
    task.await
        .map_err(|e| TransferError::task("encryption", e))?
}

/// CRC-32 (ISO-HDLC, as `crc32fast` and zlib compute it) of a plaintext chunk. `crc_fast` for
/// its AVX-512/VPCLMULQDQ kernels: several times faster than `crc32fast` on the core that
/// also encrypts.
fn chunk_crc32(plain: &[u8]) -> u32 {
    crc_fast::crc32_iso_hdlc(plain)
}

/// One chunk, encrypted: the part to upload and what the checkpoint records about it.
struct Sealed {
    ciphertext: Bytes,
    /// CRC64NVME of the ciphertext part (S3 verifies it).
    part_crc: Crc64Nvme,
    /// CRC-32 of the plaintext chunk (compared after a resume or URL refresh).
    chunk_crc32: u32,
}

/// Splits a whole-body response (server ignored `Range`) into chunk-sized pieces, skipping the
/// first `skip` bytes (already archived by an earlier invocation).
fn whole_body_chunks(
    response: reqwest::Response,
    skip: u64,
    chunk: u64,
    total: u64,
    prefix_state: Option<crate::transfer::hash::Sha256State>,
) -> impl futures::Stream<Item = Result<Bytes, TransferError>> + Send + 'static {
    struct St {
        body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        offset: u64,
        buf: BytesMut,
        done: bool,
        /// Hash of the skipped prefix, compared with `prefix_state` once it is complete.
        prefix: Option<(ResumableSha256, crate::transfer::hash::Sha256State)>,
    }
    let st = St {
        body: response.bytes_stream().boxed(),
        offset: 0,
        buf: BytesMut::new(),
        done: false,
        prefix: prefix_state
            .filter(|_| skip > 0)
            .map(|s| (ResumableSha256::new(), s)),
    };
    futures::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let want = (chunk).min(total.saturating_sub(st.offset.max(skip)));
            if st.offset >= skip && st.buf.len() as u64 >= want && want > 0 {
                let out = st.buf.split_to(want as usize).freeze();
                st.offset += want;
                return Some((Ok(out), st));
            }
            match st.body.next().await {
                Some(Ok(mut piece)) => {
                    // What an earlier invocation already archived: hashed, compared, dropped.
                    if st.offset < skip {
                        let drop = (skip - st.offset).min(piece.len() as u64) as usize;
                        let skipped = piece.split_to(drop);
                        st.offset += drop as u64;
                        if let Some((h, _)) = st.prefix.as_mut() {
                            h.update(&skipped);
                        }
                        if st.offset == skip {
                            if let Some((h, want)) = st.prefix.take() {
                                if h.save() != want {
                                    st.done = true;
                                    return Some((
                                        Err(TransferError::SourceIntegrity {
                                            reason: format!(
                                                "the first {skip} bytes are not the ones archived before: the source is another encode now; starting over"
                                            ),
                                        }),
                                        st,
                                    ));
                                }
                            }
                        }
                    }
                    if st.offset + st.buf.len() as u64 + piece.len() as u64 > total {
                        st.done = true;
                        return Some((
                            Err(TransferError::SizeMismatch {
                                expected: total,
                                actual: st.offset + st.buf.len() as u64 + piece.len() as u64,
                            }),
                            st,
                        ));
                    }
                    st.buf.extend_from_slice(&piece);
                }
                Some(Err(e)) => {
                    st.done = true;
                    let offset = st.offset + st.buf.len() as u64;
                    return Some((
                        Err(TransferError::Stream {
                            offset,
                            reason: crate::genesys::error::describe_reqwest(e),
                        }),
                        st,
                    ));
                }
                None => {
                    st.done = true;
                    if st.offset + (st.buf.len() as u64) < total {
                        return Some((
                            Err(TransferError::Stream {
                                offset: st.offset + st.buf.len() as u64,
                                reason: format!("body ended before {total} bytes"),
                            }),
                            st,
                        ));
                    }
                    return None;
                }
            }
        }
    })
}

fn upload_id_of(owned: &OwnedCheckpoint) -> String {
    owned
        .state
        .upload
        .as_ref()
        .map(|u| u.upload_id.clone())
        .unwrap_or_default()
}

/// Aborts a spawned fetch or part upload when the transfer stops early (suspend or error).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Retryable;

    const WAV: &[u8] =
        b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data";
    const OGG_OPUS: &[u8] = b"OggS\0\x02\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0";

    fn transcoded(f: &str) -> MediaRequest {
        MediaRequest::for_recording(
            RecordingMedia::Audio,
            &MediaFormat::Transcoded(f.into()),
            None,
        )
    }

    #[test]
    fn chunk_crc32_is_the_crc_earlier_checkpoints_recorded() {
        // Checkpoints written with crc32fast must still compare equal after a resume:
        // CRC-32/ISO-HDLC's check value.
        assert_eq!(chunk_crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn the_original_codec_is_whatever_audio_the_bytes_are() {
        for ct in ["binary/octet-stream", "audio/mpeg", ""] {
            assert_eq!(
                check_codec(WAV, ct, &MediaRequest::Original).unwrap(),
                Codec::WavPcm
            );
            assert_eq!(
                check_codec(OGG_OPUS, ct, &MediaRequest::Original).unwrap(),
                Codec::OggOpus
            );
        }
    }

    #[test]
    fn a_transcoded_format_must_be_what_was_asked_for() {
        assert_eq!(
            check_codec(WAV, "binary/octet-stream", &transcoded("WAV")).unwrap(),
            Codec::WavPcm
        );
        let err = check_codec(WAV, "audio/ogg", &transcoded("OGG_OPUS")).unwrap_err();
        assert!(
            matches!(err, TransferError::CodecMismatch { .. }),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("formatId OGG_OPUS"), "{err}");
    }

    #[test]
    fn an_error_page_is_retried_and_unknown_media_is_refused() {
        let page = b"<html><body>Service Unavailable</body></html>";
        let err = check_codec(page, "text/html", &MediaRequest::Original).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let err = check_codec(
            b"\0\x01garbage-bytes-of-no-format",
            "binary/octet-stream",
            &MediaRequest::Original,
        )
        .unwrap_err();
        assert!(
            matches!(err, TransferError::CodecMismatch { .. }) && !err.is_transient(),
            "{err:?}"
        );
    }

    #[test]
    fn the_other_kinds_are_checked_for_their_export_forms() {
        let chat = MediaRequest::for_recording(RecordingMedia::Chat, &MediaFormat::Original, None);
        assert_eq!(
            check_codec(b"PK\x03\x04\x14\0\0\0\0\0", "application/zip", &chat).unwrap(),
            Codec::Zip
        );
        assert!(check_codec(WAV, "audio/wav", &chat).is_err());
        let email =
            MediaRequest::for_recording(RecordingMedia::Email, &MediaFormat::Original, None);
        assert_eq!(
            check_codec(
                b"From: a@example.com\r\nTo: b@example.com\r\n\r\nhi",
                "",
                &email
            )
            .unwrap(),
            Codec::Eml
        );
    }
}
