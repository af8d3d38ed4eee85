//! `ArchiveService::archive`: the one place that strings the pieces together for one
//! recording: conversation facts → resumable transfer (one per media stream) → result
//! notification → audit record → metrics; and `write_back_conversation`, once per conversation,
//! naming every archived recording. Handlers and the CLI call these and nothing below them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::audit::{self, AuditRecord};
use crate::config::{ExternalTagPolicy, RecordingMedia, WriteBack};
use crate::crypto::Keyring;
use crate::genesys::GenesysClient;
use crate::ids::{ConversationId, MediaKey, OrgId, RecordingId};
use crate::metrics::{self, Metric};
use crate::notify::{ArchiveResult, Notifier, DETAIL_ARCHIVED, DETAIL_FAILED};
use crate::retry::Retryable;
use crate::routing::table::RouteTable;
use crate::routing::{RecordedRoute, RecordingFacts};
use crate::store::manifest::{Manifest, ParticipantInfo};
use crate::store::{ArchiveLayout, ArchiveLocation, Conditional, ObjectKey, ObjectStore};
use crate::transfer::engine::{transfer_recording, TransferDeps, TransferJob, TransferOutcome};
use crate::transfer::{TransferError, TransferSettings};

/// Everything needed to archive recordings of one org. Built once per process.
pub struct ArchiveService {
    pub org: OrgId,
    pub genesys: GenesysClient,
    pub store: Arc<dyn ObjectStore>,
    pub keyring: Arc<dyn Keyring>,
    pub settings: TransferSettings,
    pub write_back: WriteBack,
    pub external_tag_policy: ExternalTagPolicy,
    pub custom_attributes_schema_id: Option<String>,
    /// Recording kinds archived; others are acknowledged and counted.
    pub media: Vec<RecordingMedia>,
    pub notifier: Notifier,
    /// Name used in audit records and metric dimensions.
    pub function: String,
    /// Storage targets and routing rules. None: every recording goes to `store` under the
    /// layout's prefix, which always holds the state (checkpoints of that bucket, route
    /// records, audit records, sweep state).
    pub routes: Option<Arc<RouteTable>>,
}

/// Facts about a conversation that decide where its recordings go.
#[derive(Debug, Clone)]
pub struct ConversationFacts {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub participants: Vec<ParticipantInfo>,
    /// What routing rules match on (each recording adds its media).
    pub routing: RecordingFacts,
}

/// What a caller already knows about a recording; each saves requests.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub facts: Option<ConversationFacts>,
    /// The route its transfer job carries.
    pub route: Option<RecordedRoute>,
}

/// Where one recording is written: its target's store, layout and keyring, and the recorded
/// route that chose it (None without routing).
pub struct Placement {
    pub store: Arc<dyn ObjectStore>,
    pub layout: ArchiveLayout,
    pub keyring: Arc<dyn Keyring>,
    pub key_providers: Vec<String>,
    pub route: Option<RecordedRoute>,
}

/// `gc-archive route`: where one recording of a conversation goes, and why.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteExplanation {
    pub recording_id: String,
    pub media: Option<String>,
    pub facts: String,
    /// The route the current rules choose (or why none).
    pub decision: Result<RecordedRoute, String>,
    /// The rules passed over before the match, with the condition each failed.
    pub passed_over: Vec<String>,
    /// The route recorded for it, which wins over the current rules once it exists.
    pub recorded: Option<RecordedRoute>,
    /// The target's compliance failures (empty when it may be written to).
    pub refused: Vec<String>,
}

/// What happened to one recording (all of its media streams).
#[derive(Debug, Clone)]
pub enum ArchiveReport {
    /// At least one stream was archived now; the others (if any) were already.
    Archived {
        manifests: Vec<Manifest>,
    },
    AlreadyArchived {
        manifest_keys: Vec<ObjectKey>,
    },
    Suspended {
        parts_done: usize,
        parts_total: usize,
    },
}

/// What the conversation-level write-back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteBackOutcome {
    Written,
    Unchanged,
    Disabled,
    /// Nothing archived yet under the conversation.
    NothingArchived,
    /// The `externalTag` holds another integration's value; left as it is (reported).
    ForeignTagKept {
        tag: String,
    },
}

impl ArchiveService {
    pub fn layout(&self) -> &ArchiveLayout {
        &self.settings.layout
    }

    /// The routing targets' locations (empty without routing).
    pub fn target_locations(&self) -> &[ArchiveLocation] {
        self.routes.as_deref().map_or(&[], |t| t.locations())
    }

    /// Start time and participants, from `GET /api/v2/conversations/{id}`.
    pub async fn conversation_facts(
        &self,
        conversation: &ConversationId,
        deadline: Option<Instant>,
    ) -> Result<ConversationFacts, TransferError> {
        let client = match deadline {
            Some(d) => self.genesys.with_deadline(d),
            None => self.genesys.clone(),
        };
        let conv = client.conversation(conversation).await?;
        let start = conv
            .start_time
            .ok_or_else(|| TransferError::MissingConversationField {
                conversation: conversation.to_string(),
                field: "startTime",
            })?;
        Ok(ConversationFacts {
            start,
            end: conv.end_time,
            routing: RecordingFacts::of_conversation(&conv, None),
            participants: conv
                .participants
                .iter()
                .map(|p| ParticipantInfo {
                    purpose: p.purpose.clone(),
                    user_id: p.user_id.clone(),
                    queue_id: p.queue_id.clone(),
                })
                .collect(),
        })
    }

    /// The store and key of the recording's manifest, when it has one (cheap: one HEAD; with
    /// routing, its route record first). A recording with several media streams has one
    /// manifest per stream: this says None for it, and the transfer finds each stream's
    /// manifest.
    pub async fn archived_manifest(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        start: DateTime<Utc>,
    ) -> Result<Option<(Arc<dyn ObjectStore>, ObjectKey)>, TransferError> {
        let (store, layout) = match &self.routes {
            None => (self.store.clone(), self.layout().clone()),
            Some(table) => {
                let Some(route) = self.recorded_route(conversation, recording).await? else {
                    return Ok(None);
                };
                let dest = table.destination_of(&route).map_err(TransferError::Route)?;
                (dest.store.clone(), dest.layout.clone())
            }
        };
        let key = layout.manifest_key(&self.org, conversation, recording, None, start);
        Ok(if store.exists(&key).await? {
            Some((store, key))
        } else {
            None
        })
    }

    pub async fn is_archived(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        start: DateTime<Utc>,
    ) -> Result<bool, TransferError> {
        Ok(self
            .archived_manifest(conversation, recording, start)
            .await?
            .is_some())
    }

    /// Every place this deployment's archives can be: the deployment's bucket and each
    /// routing target, one per bucket and prefix.
    pub fn archive_locations(&self) -> Vec<ArchiveLocation> {
        let mut all = vec![ArchiveLocation {
            store: self.store.clone(),
            layout: self.layout().clone(),
        }];
        if let Some(table) = &self.routes {
            for loc in table.locations() {
                if !all.iter().any(|a| {
                    a.store.bucket() == loc.store.bucket()
                        && a.layout.prefix() == loc.layout.prefix()
                }) {
                    all.push(loc.clone());
                }
            }
        }
        all
    }

    /// Where each recording of a conversation goes by the current rules, and where it went
    /// (its route record): what `gc-archive route --conversation` prints.
    pub async fn explain_routes(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<RouteExplanation>, TransferError> {
        let table = self.routes.as_ref().ok_or_else(|| {
            TransferError::Route(
                "no routing config (ROUTING_CONFIG is unset): every recording goes to ARCHIVE_BUCKET"
                    .into(),
            )
        })?;
        let conv = self.genesys.conversation(conversation).await?;
        let mut out = Vec::new();
        for meta in self.genesys.recording_metadata(conversation).await? {
            let media = RecordingMedia::from_api(meta.media.as_deref());
            let facts = RecordingFacts::of_conversation(&conv, media);
            let (decision, passed_over) = match table.config.explain(&facts) {
                Ok(r) => (
                    Ok(RecordedRoute {
                        target: r.target_name.to_string(),
                        bucket: r.target.bucket.clone(),
                        prefix: r.target.prefix.clone(),
                        rule: r.rule.map(str::to_string),
                        config: table.source.clone(),
                        decided_at: Utc::now(),
                    }),
                    r.explanation,
                ),
                Err(e) => (Err(e.to_string()), Vec::new()),
            };
            let recorded = match RecordingId::parse(&meta.id) {
                Ok(rid) => self.recorded_route(conversation, &rid).await?,
                Err(_) => None,
            };
            let effective = recorded
                .as_ref()
                .map(|r| r.target.clone())
                .or_else(|| decision.as_ref().ok().map(|r| r.target.clone()));
            let refused = match effective {
                Some(t) => match table.verdict(&t).await {
                    Some(v) => v.failures(),
                    None => vec![format!("target {t:?} is not configured")],
                },
                None => Vec::new(),
            };
            out.push(RouteExplanation {
                recording_id: meta.id.clone(),
                media: media.map(|m| m.as_str().to_string()),
                facts: facts.to_string(),
                decision,
                passed_over,
                recorded,
                refused,
            });
        }
        Ok(out)
    }

    /// The route recorded for a recording, if one was (never without routing: no request).
    pub async fn recorded_route(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
    ) -> Result<Option<RecordedRoute>, TransferError> {
        if self.routes.is_none() {
            return Ok(None);
        }
        let key = self.layout().route_record_key(conversation, recording);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(found) => serde_json::from_slice(&found.body)
                .map(Some)
                .map_err(|e| TransferError::Route(format!("{key} is unreadable: {e}"))),
        }
    }

    /// Where a recording is written. With routing, the route is the one `carried` by its
    /// transfer job, else the one recorded for it, else decided now by the rules and recorded
    /// (`If-None-Match`: the first decision wins a race). A target failing a required
    /// compliance check is refused, whatever chose it.
    pub async fn placement(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        media: RecordingMedia,
        facts: &ConversationFacts,
        carried: Option<RecordedRoute>,
    ) -> Result<Placement, TransferError> {
        let Some(table) = &self.routes else {
            return Ok(Placement {
                store: self.store.clone(),
                layout: self.layout().clone(),
                keyring: self.keyring.clone(),
                key_providers: self.settings.key_providers.clone(),
                route: None,
            });
        };
        let route = match carried {
            Some(r) => r,
            None => match self.recorded_route(conversation, recording).await? {
                Some(r) => r,
                None => {
                    let mut f = facts.routing.clone();
                    f.media = Some(media);
                    let decided = table
                        .decide(&f)
                        .map_err(|e| TransferError::Route(e.to_string()))?;
                    // Not recorded while its target is refused: fixing the rules instead of
                    // the bucket must be able to send the recording elsewhere.
                    table
                        .admit(&decided.target)
                        .await
                        .map_err(TransferError::TargetRefused)?;
                    self.record_route(conversation, recording, decided).await?
                }
            },
        };
        let dest = table.destination_of(&route).map_err(TransferError::Route)?;
        table
            .admit(&route.target)
            .await
            .map_err(TransferError::TargetRefused)?;
        Ok(Placement {
            store: dest.store.clone(),
            layout: dest.layout.clone(),
            keyring: dest.keyring.clone(),
            key_providers: dest.key_providers.clone(),
            route: Some(route),
        })
    }

    async fn record_route(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        route: RecordedRoute,
    ) -> Result<RecordedRoute, TransferError> {
        let key = self.layout().route_record_key(conversation, recording);
        let body = serde_json::to_vec_pretty(&route).map_err(|e| TransferError::Encode {
            what: "route record",
            reason: e.to_string(),
        })?;
        match self
            .store
            .put_if_absent(&key, bytes::Bytes::from(body), "application/json")
            .await?
        {
            Conditional::Written(_) => {
                tracing::info!(target_name = %route.target, rule = route.rule.as_deref().unwrap_or("(default)"), "recording routed");
                Ok(route)
            }
            // Another worker decided first: its decision stands.
            Conditional::PreconditionFailed => self
                .recorded_route(conversation, recording)
                .await?
                .ok_or_else(|| TransferError::Route(format!("{key} vanished after a lost race"))),
        }
    }

    /// Archives (or continues archiving) one recording of kind `media`: every one of its media
    /// streams. `known` holds what the caller already has (the conversation's facts, the route
    /// its transfer job carries).
    pub async fn archive(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        media: RecordingMedia,
        known: Known,
        deadline: Option<Instant>,
        worker_id: &str,
    ) -> Result<ArchiveReport, TransferError> {
        let Known { facts, route } = known;
        let started = Instant::now();
        let span = tracing::info_span!("archive", conversation_id = %conversation, recording_id = %recording, %media);
        let _enter = span.enter();
        let facts = match facts {
            Some(f) => f,
            None => match self.conversation_facts(conversation, deadline).await {
                Ok(f) => f,
                Err(e) => {
                    self.record_failure(conversation, recording, &e, started, worker_id)
                        .await;
                    return Err(e);
                }
            },
        };
        let placement = match self
            .placement(conversation, recording, media, &facts, route)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.record_failure(conversation, recording, &e, started, worker_id)
                    .await;
                return Err(e);
            }
        };
        let conversation_end = facts.end;
        let mut job = TransferJob {
            org: self.org.clone(),
            conversation: conversation.clone(),
            recording: recording.clone(),
            conversation_start: facts.start,
            participants: facts.participants,
            media,
            media_key: None,
            route: placement.route.clone(),
        };
        let mut keys: Vec<Option<MediaKey>> = vec![None];
        let mut manifests = Vec::new();
        let mut already = Vec::new();
        while let Some(key) = keys.pop() {
            job.media_key = key;
            match self
                .transfer_one(
                    &job,
                    &placement,
                    conversation_end,
                    deadline,
                    worker_id,
                    started,
                )
                .await
            {
                Ok(TransferOutcome::Archived(m)) => manifests.push(*m),
                Ok(TransferOutcome::AlreadyArchived { manifest_key }) => already.push(manifest_key),
                Ok(TransferOutcome::Suspended {
                    parts_done,
                    parts_total,
                    ..
                }) => {
                    return Ok(ArchiveReport::Suspended {
                        parts_done,
                        parts_total,
                    })
                }
                // Several streams: each becomes its own archive object, named by its key.
                Err(TransferError::MultipleMedia { keys: found }) if job.media_key.is_none() => {
                    tracing::info!(
                        streams = found.len(),
                        "recording has several media streams; archiving each"
                    );
                    keys.extend(found.into_iter().rev().map(Some));
                }
                Err(e) => {
                    self.record_failure_at(
                        conversation,
                        recording,
                        &e,
                        started,
                        worker_id,
                        job.route.as_ref(),
                    )
                    .await;
                    return Err(e);
                }
            }
        }
        if manifests.is_empty() {
            Ok(ArchiveReport::AlreadyArchived {
                manifest_keys: already,
            })
        } else {
            Ok(ArchiveReport::Archived { manifests })
        }
    }

    /// One media stream: the transfer, then its audit record, metrics and result events.
    async fn transfer_one(
        &self,
        job: &TransferJob,
        placement: &Placement,
        conversation_end: Option<DateTime<Utc>>,
        deadline: Option<Instant>,
        worker_id: &str,
        started: Instant,
    ) -> Result<TransferOutcome, TransferError> {
        let mut settings = self.settings.clone();
        settings.worker_id = worker_id.to_string();
        settings.layout = placement.layout.clone();
        settings.key_providers = placement.key_providers.clone();
        let deps = TransferDeps {
            genesys: self.genesys.clone(),
            store: placement.store.clone(),
            keyring: placement.keyring.clone(),
        };
        let outcome = transfer_recording(&deps, job, &settings, deadline).await?;
        match &outcome {
            TransferOutcome::Archived(manifest) => {
                self.record_success(
                    manifest,
                    placement.store.as_ref(),
                    conversation_end,
                    started,
                    worker_id,
                )
                .await;
            }
            TransferOutcome::AlreadyArchived { manifest_key } => {
                self.ensure_published(placement.store.as_ref(), manifest_key)
                    .await;
                self.audit(AuditRecord {
                    outcome: "already_archived".into(),
                    object_key: Some(manifest_key.to_string()),
                    target: job.route.as_ref().map(|r| r.target.clone()),
                    ..self.base_record(&job.conversation, &job.recording, started, worker_id)
                })
                .await;
                metrics::emit(
                    &[
                        ("Function", &self.function),
                        ("Outcome", "already_archived"),
                    ],
                    &[Metric::count("Recordings", 1.0)],
                );
            }
            TransferOutcome::Suspended { bytes_done, .. } => {
                self.audit(AuditRecord {
                    outcome: "suspended".into(),
                    bytes: *bytes_done,
                    ..self.base_record(&job.conversation, &job.recording, started, worker_id)
                })
                .await;
                metrics::emit(
                    &[("Function", &self.function), ("Outcome", "suspended")],
                    &[Metric::count("Resumes", 1.0)],
                );
            }
        }
        Ok(outcome)
    }

    /// Writes the archive reference back to the conversation once, naming every recording
    /// archived under it so far (read from the manifests in S3, so concurrent workers converge
    /// on the same value instead of the last one winning).
    pub async fn write_back_conversation(
        &self,
        conversation: &ConversationId,
        start: DateTime<Utc>,
    ) -> Result<WriteBackOutcome, crate::writeback::WriteBackError> {
        if self.write_back == WriteBack::Disabled {
            return Ok(WriteBackOutcome::Disabled);
        }
        // With routing, one conversation's recordings can be in several targets: the
        // reference names the first folder that holds any (in location order, so every worker
        // picks the same), and lists them all.
        let mut archived = Vec::new();
        let mut reference = None;
        let locations = self.archive_locations();
        for loc in &locations {
            let folder = loc
                .layout
                .conversation_folder(&self.org, conversation, start);
            for key in loc.store.list(folder.as_str()).await? {
                if key.as_str().ends_with(".manifest.json") {
                    if let Some(m) = read_manifest(loc.store.as_ref(), &key).await {
                        archived.push(m);
                        reference.get_or_insert_with(|| {
                            format!("s3://{}/{}", loc.store.bucket(), folder)
                        });
                    }
                }
            }
        }
        let Some(reference) = reference else {
            return Ok(WriteBackOutcome::NothingArchived);
        };
        let target = crate::writeback::Target {
            mode: self.write_back,
            external_tag_policy: self.external_tag_policy,
            schema_id: self.custom_attributes_schema_id.as_deref(),
            ours_prefixes: locations
                .iter()
                .map(|loc| {
                    format!(
                        "s3://{}/{}",
                        loc.store.bucket(),
                        if loc.layout.prefix().is_empty() {
                            String::new()
                        } else {
                            format!("{}/", loc.layout.prefix())
                        }
                    )
                })
                .collect(),
        };
        let outcome = crate::writeback::write_back(
            &self.genesys,
            &target,
            conversation,
            &reference,
            &archived,
        )
        .await;
        match &outcome {
            Ok(WriteBackOutcome::ForeignTagKept { .. }) => {
                tracing::warn!("the conversation's externalTag belongs to another integration; left as it is (ARCHIVE_EXTERNAL_TAG=overwrite replaces it)");
                metrics::emit(
                    &[
                        ("Function", &self.function),
                        ("Outcome", "foreign_tag_kept"),
                    ],
                    &[Metric::count("WriteBackSkipped", 1.0)],
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "write-back to Genesys Cloud failed; will retry on redelivery");
                metrics::emit(
                    &[
                        ("Function", &self.function),
                        ("Outcome", "write_back_failed"),
                    ],
                    &[Metric::count("WriteBackFailures", 1.0)],
                );
            }
        }
        outcome
    }

    fn base_record(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        started: Instant,
        worker_id: &str,
    ) -> AuditRecord {
        self.base_record_for(conversation, recording.as_str(), started, worker_id)
    }

    fn base_record_for(
        &self,
        conversation: &ConversationId,
        recording: &str,
        started: Instant,
        worker_id: &str,
    ) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            outcome: String::new(),
            org_id: self.org.to_string(),
            conversation_id: conversation.to_string(),
            recording_id: recording.to_string(),
            object_key: None,
            plaintext_sha256: None,
            bytes: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            retries: 0,
            url_refreshes: 0,
            invocations: 1,
            reason_code: None,
            reason: None,
            worker_id: worker_id.to_string(),
            function: self.function.clone(),
            target: None,
            conversation_end: None,
        }
    }

    /// An audit record about the conversation as a whole (e.g. a write-back left undone).
    pub async fn audit_conversation(
        &self,
        conversation: &ConversationId,
        outcome: &str,
        reason: &str,
        worker_id: &str,
    ) {
        let mut record = self.base_record_for(conversation, "", Instant::now(), worker_id);
        record.outcome = outcome.into();
        record.reason_code = Some(outcome.into());
        record.reason = Some(reason.into());
        self.audit(record).await;
    }

    async fn audit(&self, record: AuditRecord) {
        if let Err(e) = audit::write(self.store.as_ref(), self.layout(), &record).await {
            tracing::warn!(error = %e, "audit record could not be written");
        }
    }

    async fn record_success(
        &self,
        manifest: &Manifest,
        store: &dyn ObjectStore,
        conversation_end: Option<DateTime<Utc>>,
        started: Instant,
        worker_id: &str,
    ) {
        let elapsed = started.elapsed();
        let conversation = ConversationId::parse(&manifest.conversation_id).ok();
        let recording = RecordingId::parse(&manifest.recording_id).ok();
        if let (Some(c), Some(r)) = (conversation, recording) {
            self.audit(AuditRecord {
                outcome: "archived".into(),
                object_key: Some(manifest.object_key.clone()),
                plaintext_sha256: Some(manifest.plaintext.sha256.clone()),
                bytes: manifest.plaintext.size,
                retries: manifest.timings.chunk_retries,
                url_refreshes: manifest.timings.url_refreshes,
                invocations: manifest.timings.invocations,
                target: manifest.route.as_ref().map(|r| r.target.clone()),
                conversation_end,
                ..self.base_record(&c, &r, started, worker_id)
            })
            .await;
        }
        let secs = elapsed.as_secs_f64().max(1e-6);
        metrics::emit(
            &[("Function", &self.function), ("Outcome", "archived")],
            &[
                Metric::count("Recordings", 1.0),
                Metric {
                    name: "Bytes",
                    value: manifest.plaintext.size as f64,
                    unit: "Bytes",
                },
                Metric {
                    name: "Duration",
                    value: elapsed.as_millis() as f64,
                    unit: "Milliseconds",
                },
                Metric {
                    name: "Throughput",
                    value: manifest.plaintext.size as f64 / secs,
                    unit: "Bytes/Second",
                },
                Metric::count("Retries", manifest.timings.chunk_retries as f64),
                Metric::count("UrlRefreshes", manifest.timings.url_refreshes as f64),
                Metric::count(
                    "Resumes",
                    manifest.timings.invocations.saturating_sub(1) as f64,
                ),
            ],
        );
        self.publish_archived(manifest, store).await;
        tracing::info!(
            bytes = manifest.plaintext.size,
            ms = elapsed.as_millis() as u64,
            key = %manifest.object_key,
            "recording archived"
        );
    }

    /// Sends the result event of an archive found already done, unless its outbox marker says
    /// it went out (cheap when it did: one HEAD).
    pub async fn ensure_published(&self, store: &dyn ObjectStore, manifest_key: &ObjectKey) {
        if self.notifier.is_empty() {
            return;
        }
        let stem = manifest_key
            .as_str()
            .strip_suffix(".manifest.json")
            .unwrap_or(manifest_key.as_str());
        if let Ok(true) = store
            .exists(&ObjectKey::new(format!("{stem}.published.json")))
            .await
        {
            return;
        }
        if let Some(m) = read_manifest(store, manifest_key).await {
            self.publish_archived(&m, store).await;
        }
    }

    /// The manifest key of a recording's only media stream.
    pub fn manifest_key(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        start: DateTime<Utc>,
    ) -> ObjectKey {
        self.layout()
            .manifest_key(&self.org, conversation, recording, None, start)
    }

    /// The result event of an archive, derived from its manifest alone (same id and body
    /// whenever it is sent), then its outbox marker: a worker that died after writing the
    /// manifest has its event sent by the next delivery (`ensure_published`).
    async fn publish_archived(&self, manifest: &Manifest, store: &dyn ObjectStore) {
        if self.notifier.is_empty() {
            return;
        }
        // Callers know the marker is absent: a fresh archive has none yet, and
        // `ensure_published` looked before calling.
        let marker = published_marker(&manifest.object_key);
        let result = ArchiveResult {
            id: format!("archived-{}", manifest.encryption.message_id),
            kind: DETAIL_ARCHIVED.into(),
            org_id: manifest.org_id.clone(),
            conversation_id: manifest.conversation_id.clone(),
            recording_id: manifest.recording_id.clone(),
            bucket: Some(manifest.bucket.clone()),
            object_key: Some(manifest.object_key.clone()),
            manifest_key: None,
            sha256: Some(manifest.plaintext.sha256.clone()),
            size: Some(manifest.plaintext.size),
            reason_code: None,
            reason: None,
            at: manifest.timings.completed_at,
        };
        let errors = self.notifier.publish(&result).await;
        for e in &errors {
            tracing::warn!(error = %e, "result notification failed; the next delivery sends it again");
        }
        if errors.is_empty() {
            let body = serde_json::json!({"id": result.id, "publishedAt": Utc::now()});
            if let Err(e) = store
                .put_if_absent(
                    &marker,
                    bytes::Bytes::from(body.to_string()),
                    "application/json",
                )
                .await
            {
                tracing::warn!(error = %e, "could not record the published result");
            }
        }
    }

    /// Reports a failure. Transient failures (the message will be retried) are only logged
    /// and counted; permanent ones are also audited and notified.
    pub async fn record_failure(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        error: &TransferError,
        started: Instant,
        worker_id: &str,
    ) {
        self.record_failure_at(conversation, recording, error, started, worker_id, None)
            .await
    }

    /// [`ArchiveService::record_failure`] of a recording already routed to a target.
    async fn record_failure_at(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
        error: &TransferError,
        started: Instant,
        worker_id: &str,
        route: Option<&RecordedRoute>,
    ) {
        let code = error.reason_code();
        metrics::emit(
            &[
                ("Function", &self.function),
                ("Outcome", "failed"),
                ("Reason", code),
            ],
            &[Metric::count("Failures", 1.0)],
        );
        if error.is_transient() {
            tracing::warn!(error = %error, reason = code, "transfer will be retried");
            return;
        }
        if error.is_infrastructure() {
            // Not the recording's fault: nothing is reported as failed or discarded; the
            // invocation fails (Lambda's Errors alarm) and this metric names the cause.
            tracing::error!(error = %error, reason = code, "infrastructure failure: fix the deployment; nothing was discarded");
            metrics::emit(
                &[("Function", &self.function), ("Reason", code)],
                &[Metric::count("InfrastructureFailures", 1.0)],
            );
            return;
        }
        tracing::error!(error = %error, reason = code, "recording could not be archived");
        self.audit(AuditRecord {
            outcome: match error {
                TransferError::Unavailable { .. } => "not_available".into(),
                TransferError::ArchivedInGenesys => "archived_in_genesys".into(),
                _ => "failed".into(),
            },
            reason_code: Some(code.into()),
            reason: Some(error.to_string()),
            target: route.map(|r| r.target.clone()),
            ..self.base_record(conversation, recording, started, worker_id)
        })
        .await;
        let result = ArchiveResult {
            id: String::new(),
            kind: DETAIL_FAILED.into(),
            org_id: self.org.to_string(),
            conversation_id: conversation.to_string(),
            recording_id: recording.to_string(),
            bucket: None,
            object_key: None,
            manifest_key: None,
            sha256: None,
            size: None,
            reason_code: Some(code.into()),
            reason: Some(error.to_string()),
            at: Utc::now(),
        };
        for e in self.notifier.publish(&result).await {
            tracing::warn!(error = %e, "failure notification failed");
        }
    }
}

async fn read_manifest(store: &dyn ObjectStore, key: &ObjectKey) -> Option<Manifest> {
    let obj = store.get(key).await.ok()??;
    serde_json::from_slice(&obj.body).ok()
}

/// The outbox marker of an archive's result event: `{stem}.published.json` beside its
/// `{stem}.{ext}.enc` object and `{stem}.manifest.json`.
fn published_marker(object_key: &str) -> ObjectKey {
    let without_enc = object_key.strip_suffix(".enc").unwrap_or(object_key);
    let stem = without_enc
        .rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(without_enc);
    ObjectKey::new(format!("{stem}.published.json"))
}

/// The delay before retrying a message that has been received `receive_count` times:
/// exponential from `base`, capped at 15 minutes.
pub fn redelivery_delay(base: Duration, receive_count: u32) -> Duration {
    let factor = 1u32 << receive_count.saturating_sub(1).min(10);
    (base * factor).min(Duration::from_secs(900))
}
