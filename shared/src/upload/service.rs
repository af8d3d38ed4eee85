//! The upload lifecycle: create (policy, rate limits, idempotency, multipart upload), sign
//! parts, state, complete (verify, release, deliver, write back, audit) and abort.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::PartPlan;
use super::policy::{check_content, sniff, DeploymentMedia, Refusal, UploadPolicy};
use super::s3::{MultipartStore, SignedRequest};
use super::state::{self, Delivery, Failure, Held, Phase, UploadRecord, Verified};
use super::ticket::Grant;
use crate::config::{ExternalTagPolicy, WriteBack};
use crate::genesys::webmessaging::{AdditionalMessage, UploadMediaRequest};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::{ConversationId, OrgId};
use crate::store::{ArchiveLayout, Conditional, ObjectKey, ObjectStore, StoreError};

/// How completion checks the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Read every byte back from S3 and hash it (SHA-256 per part and whole, MD5), before
    /// anything is released. The default: it holds whatever S3 implementation is behind.
    Read,
    /// Trust S3: each part's SHA-256 is bound in its signature and checked by S3 on
    /// upload and on completion, so the function reads only the first 4 KiB (the type
    /// check). Whole-file hashes are then the client's; without them, and on a store that
    /// records no part checksums (moto), it reads everything as in `Read`.
    S3,
}

#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub part_url_ttl: Duration,
    pub link_ttl: Duration,
    /// Largest file delivered as a Genesys message attachment (above it: a link). Lowered
    /// further by the deployment's `maxFileSizeKB`.
    pub attach_max_bytes: u64,
    pub deployment_id: Option<String>,
    pub verify: VerifyMode,
    /// How the bytes go to Genesys' `uploadUrl` (PUT; UNCONFIRMED, genesys-api.md §6).
    pub genesys_upload_method: reqwest::Method,
    pub media_status_polls: u32,
    pub media_poll_interval: Duration,
    pub per_conversation_per_hour: usize,
    pub per_caller_per_hour: usize,
    pub min_part_bytes: u64,
    /// A completion in progress older than this is taken over by the next complete call.
    pub completion_lease: Duration,
    pub function: String,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            part_url_ttl: Duration::from_secs(15 * 60),
            link_ttl: Duration::from_secs(3600),
            attach_max_bytes: 10 * 1024 * 1024,
            deployment_id: None,
            verify: VerifyMode::Read,
            genesys_upload_method: reqwest::Method::PUT,
            media_status_polls: 30,
            media_poll_interval: Duration::from_secs(1),
            per_conversation_per_hour: 20,
            per_caller_per_hour: 100,
            min_part_bytes: super::plan::MIN_PART_BYTES,
            completion_lease: Duration::from_secs(5 * 60),
            function: "upload-proxy".into(),
        }
    }
}

/// Who is calling: a ticket's grant, or an IAM principal (Function URL `AWS_IAM`), which
/// names the conversation in the request.
#[derive(Debug, Clone)]
pub enum Caller {
    Ticket(Grant),
    Iam { principal: String },
}

impl Caller {
    pub fn subject(&self) -> &str {
        match self {
            Caller::Ticket(g) => &g.sub,
            Caller::Iam { principal } => principal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The client can fix it and call again (upload the missing part, wait).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A check of the uploaded bytes failed: the upload was refused and removed.
    #[error("{message}")]
    Rejected {
        code: String,
        message: String,
        status: u16,
    },
    #[error("more than {limit} uploads this hour for this {scope}")]
    RateLimited {
        scope: &'static str,
        limit: usize,
        retry_after: Duration,
    },
    #[error("Genesys Cloud: {0}")]
    Genesys(#[from] GenesysError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("delivering to Genesys Cloud: {0}")]
    Delivery(String),
    /// Contention on our side; retrying soon succeeds.
    #[error("{0}")]
    Busy(String),
}

impl UploadError {
    pub fn status(&self) -> u16 {
        match self {
            UploadError::Refused(r) => r.status(),
            UploadError::BadRequest(_) => 400,
            UploadError::Unauthorized(_) => 401,
            UploadError::Forbidden(_) => 403,
            UploadError::NotFound(_) => 404,
            UploadError::Conflict { .. } => 409,
            UploadError::Rejected { status, .. } => *status,
            UploadError::RateLimited { .. } => 429,
            UploadError::Genesys(e) if e.status() == Some(404) => 404,
            UploadError::Genesys(_) | UploadError::Delivery(_) => 502,
            UploadError::Store(_) | UploadError::Busy(_) => 503,
        }
    }

    pub fn code(&self) -> String {
        match self {
            UploadError::Refused(r) => match r {
                Refusal::NameInvalid => "name_invalid",
                Refusal::BlockedExtension { .. } => "blocked_extension",
                Refusal::TypeNotAllowed { .. } => "type_not_allowed",
                Refusal::TooLarge { .. } => "too_large",
                Refusal::Empty => "empty",
                Refusal::ContentMismatch { .. } => "content_mismatch",
            }
            .into(),
            UploadError::BadRequest(_) => "bad_request".into(),
            UploadError::Unauthorized(_) => "unauthorized".into(),
            UploadError::Forbidden(_) => "forbidden".into(),
            UploadError::NotFound(_) => "not_found".into(),
            UploadError::Conflict { code, .. } => (*code).into(),
            UploadError::Rejected { code, .. } => code.clone(),
            UploadError::RateLimited { .. } => "rate_limited".into(),
            UploadError::Genesys(_) => "genesys_error".into(),
            UploadError::Store(_) => "storage_error".into(),
            UploadError::Delivery(_) => "delivery_failed".into(),
            UploadError::Busy(_) => "busy".into(),
        }
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> UploadError {
    UploadError::Conflict {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartChecksum {
    pub part_number: u32,
    /// Base64 of the part's SHA-256 (the `x-amz-checksum-sha256` form).
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
    #[serde(default)]
    pub communication_id: Option<String>,
    pub file_name: String,
    pub file_type: String,
    pub size: u64,
    /// Base64 SHA-256 of the whole file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Base64 MD5 of the whole file.
    #[serde(default)]
    pub md5: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub parts: Vec<PartChecksum>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartsRequest {
    pub parts: Vec<PartChecksum>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedPart {
    pub part_number: u32,
    #[serde(flatten)]
    pub request: SignedRequest,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateResponse {
    pub upload_id: String,
    pub state: Phase,
    pub file_name: String,
    pub part_size: u64,
    pub part_count: u32,
    pub expires_at: DateTime<Utc>,
    pub parts: Vec<SignedPart>,
    /// True when an idempotency key found an upload created earlier.
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartState {
    pub part_number: u32,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What `GET /uploads/{id}` (and complete) answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadView {
    pub upload_id: String,
    pub state: Phase,
    pub conversation_id: String,
    pub file_name: String,
    pub file_type: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub uploaded_parts: Vec<PartState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    pub bucket: String,
    pub key: String,
}

/// The document beside a released attachment (`*.attachment.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub upload_id: String,
    pub org_id: String,
    pub conversation_id: String,
    pub file_name: String,
    pub file_type: String,
    pub size: u64,
    pub sha256_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5_b64: Option<String>,
    pub bucket: String,
    pub key: String,
    pub part_size: u64,
    pub part_sha256: Vec<String>,
    pub verified: String,
    pub verified_at: DateTime<Utc>,
    pub caller: String,
    pub tool: String,
}

pub struct UploadService {
    pub org: OrgId,
    pub genesys: GenesysClient,
    /// Upload records, idempotency and rate marks, attachment records, audit (the archive
    /// bucket).
    pub store: Arc<dyn ObjectStore>,
    pub multipart: MultipartStore,
    pub layout: ArchiveLayout,
    pub policy: UploadPolicy,
    pub settings: UploadSettings,
    pub write_back: WriteBack,
    pub external_tag_policy: ExternalTagPolicy,
    pub custom_attributes_schema_id: Option<String>,
    /// EventBridge bus for the "Attachment Verified" event (a malware-scan or DLP hook).
    pub events: Option<(aws_sdk_eventbridge::Client, String)>,
    pub deployment_cache: Mutex<Option<(Instant, Option<DeploymentMedia>)>>,
}

fn decode_digest(value: &str, len: usize, what: &str) -> Result<(), UploadError> {
    match B64.decode(value.trim()) {
        Ok(d) if d.len() == len => Ok(()),
        _ => Err(UploadError::BadRequest(format!(
            "{what} must be the base64 of a {len}-byte digest"
        ))),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The composite checksum S3 reports for a multipart object with SHA-256 parts: the SHA-256
/// of the parts' digests joined, then `-N`.
pub fn composite_sha256(parts: &[String]) -> Option<String> {
    let mut joined = Vec::with_capacity(parts.len() * 32);
    for p in parts {
        joined.extend(B64.decode(p).ok()?);
    }
    Some(format!(
        "{}-{}",
        B64.encode(Sha256::digest(&joined)),
        parts.len()
    ))
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a full read of the object found.
struct ReadBack {
    sha256_hex: String,
    md5_b64: Option<String>,
    parts: Vec<String>,
    head: Vec<u8>,
    size: u64,
}

impl UploadService {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn deployment_media(&self) -> Result<Option<DeploymentMedia>, UploadError> {
        let Some(deployment) = self.settings.deployment_id.as_deref() else {
            return Ok(None);
        };
        if let Some((at, cached)) = self
            .deployment_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            if at.elapsed() < Duration::from_secs(300) {
                return Ok(cached);
            }
        }
        let settings = self.genesys.deployment_file_upload(deployment).await?;
        let media = settings.map(|s| {
            let enabled = s.enable_attachments != Some(false);
            DeploymentMedia {
                file_types: if enabled {
                    s.modes.iter().flat_map(|m| m.file_types.clone()).collect()
                } else {
                    Vec::new()
                },
                max_file_size_kb: s.modes.iter().filter_map(|m| m.max_file_size_kb).max(),
                blocked_extensions: Vec::new(),
            }
        });
        *self
            .deployment_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), media.clone()));
        Ok(media)
    }

    fn authorize(&self, caller: &Caller, record: &UploadRecord) -> Result<(), UploadError> {
        let ok = match caller {
            Caller::Ticket(g) => {
                g.conversation == record.conversation_id
                    && g.communication == record.communication_id
            }
            Caller::Iam { principal } => *principal == record.caller,
        };
        if ok {
            Ok(())
        } else {
            // Not 403: whether another conversation's upload exists is not the caller's
            // business.
            Err(UploadError::NotFound(format!(
                "no upload {} for this caller",
                record.upload_id
            )))
        }
    }

    async fn held(&self, caller: &Caller, upload_id: &str) -> Result<Held, UploadError> {
        if uuid::Uuid::parse_str(upload_id).is_err() {
            return Err(UploadError::NotFound(format!("no upload {upload_id}")));
        }
        let held = state::load(self.store.as_ref(), &self.layout, upload_id)
            .await?
            .ok_or_else(|| UploadError::NotFound(format!("no upload {upload_id}")))?;
        self.authorize(caller, &held.record)?;
        Ok(held)
    }

    async fn save(&self, held: &Held, record: UploadRecord) -> Result<Held, UploadError> {
        let mut record = record;
        record.updated_at = self.now();
        state::save(self.store.as_ref(), &self.layout, &record, Some(&held.etag))
            .await?
            .ok_or_else(|| {
                conflict(
                    "concurrent_update",
                    "another request changed this upload at the same time; try again",
                )
            })
    }

    async fn rate_check(
        &self,
        scope: &'static str,
        subject: &str,
        limit: usize,
        upload_id: &str,
    ) -> Result<(), UploadError> {
        if limit == 0 {
            return Ok(());
        }
        let now = self.now();
        let digest = hex_sha256(format!("{scope}\n{subject}").as_bytes());
        let prefix = self.layout.upload_rate_prefix(&digest[..32], now);
        let used = self.store.list(prefix.as_str()).await?.len();
        if used >= limit {
            let next_hour = 3600 - (now.timestamp() % 3600) as u64;
            return Err(UploadError::RateLimited {
                scope,
                limit,
                retry_after: Duration::from_secs(next_hour),
            });
        }
        let mark = ObjectKey::new(format!("{}{upload_id}", prefix.as_str()));
        self.store
            .put_if_absent(&mark, Bytes::new(), "application/octet-stream")
            .await?;
        Ok(())
    }

    /// `POST /uploads`.
    pub async fn create(
        &self,
        caller: &Caller,
        request: CreateRequest,
        header_key: Option<&str>,
    ) -> Result<(u16, CreateResponse), UploadError> {
        let (conversation, communication) =
            match caller {
                Caller::Ticket(g) => {
                    if request
                        .conversation_id
                        .as_ref()
                        .is_some_and(|c| *c != g.conversation)
                        || request
                            .communication_id
                            .as_deref()
                            .is_some_and(|c| c != g.communication)
                    {
                        return Err(UploadError::Forbidden(
                            "the ticket is for another conversation".into(),
                        ));
                    }
                    (g.conversation.clone(), g.communication.clone())
                }
                Caller::Iam { .. } => (
                    request.conversation_id.clone().ok_or_else(|| {
                        UploadError::BadRequest("conversationId is required".into())
                    })?,
                    request.communication_id.clone().ok_or_else(|| {
                        UploadError::BadRequest("communicationId is required".into())
                    })?,
                ),
            };
        if crate::ids::ConversationId::parse(communication.clone()).is_err() {
            return Err(UploadError::BadRequest(
                "communicationId is not a Genesys id".into(),
            ));
        }
        if let Some(s) = &request.sha256 {
            decode_digest(s, 32, "sha256")?;
        }
        if let Some(m) = &request.md5 {
            decode_digest(m, 16, "md5")?;
        }
        for p in &request.parts {
            decode_digest(&p.sha256, 32, "a part's sha256")?;
        }
        let key = request
            .idempotency_key
            .as_deref()
            .or(header_key)
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if key.is_some_and(|k| k.len() > 200) {
            return Err(UploadError::BadRequest(
                "idempotencyKey is longer than 200 characters".into(),
            ));
        }
        let fingerprint = hex_sha256(
            serde_json::json!([
                conversation.as_str(),
                communication,
                request.file_name,
                request.file_type,
                request.size,
                request.sha256,
                request.md5
            ])
            .to_string()
            .as_bytes(),
        );
        let idempotency = key.map(|k| {
            let digest = hex_sha256(format!("{}\n{k}", caller.subject()).as_bytes());
            (self.layout.upload_idempotency_key(&digest), digest)
        });
        // An earlier request with the key: its answer, or (it stopped before its record was
        // written) its upload id, to finish creating.
        let mut earlier_id = None;
        if let Some((ikey, _)) = &idempotency {
            match self.replay(caller, ikey, &fingerprint).await? {
                Replay::Answered(found) => return Ok((200, found)),
                Replay::Unfinished(id) => earlier_id = Some(id),
                Replay::None => {}
            }
        }

        let mut policy = self.policy.clone();
        policy.deployment = self.deployment_media().await?;
        let admitted = policy.admit(&request.file_name, &request.file_type, request.size)?;
        let plan = PartPlan::for_size(request.size, self.settings.min_part_bytes).ok_or(
            Refusal::TooLarge {
                size: request.size,
                limit: admitted.limit,
            },
        )?;
        for p in &request.parts {
            if p.part_number == 0 || p.part_number > plan.part_count {
                return Err(UploadError::BadRequest(format!(
                    "part {} is outside 1..={}",
                    p.part_number, plan.part_count
                )));
            }
        }

        let upload_id = earlier_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let (Some((ikey, _)), None) = (&idempotency, &earlier_id) {
            let body = serde_json::json!({"uploadId": upload_id, "fingerprint": fingerprint});
            match self
                .store
                .put_if_absent(ikey, Bytes::from(body.to_string()), "application/json")
                .await?
            {
                Conditional::Written(_) => {}
                Conditional::PreconditionFailed => {
                    // A concurrent request with the same key won.
                    return match self.replay(caller, ikey, &fingerprint).await? {
                        Replay::Answered(found) => Ok((200, found)),
                        Replay::Unfinished(_) | Replay::None => Err(conflict(
                            "in_progress",
                            "a request with this idempotency key is still being handled",
                        )),
                    };
                }
            }
        }
        self.rate_check(
            "conversation",
            conversation.as_str(),
            self.settings.per_conversation_per_hour,
            &upload_id,
        )
        .await?;
        self.rate_check(
            "caller",
            caller.subject(),
            self.settings.per_caller_per_hour,
            &upload_id,
        )
        .await?;
        let record = self
            .start(
                caller,
                upload_id,
                conversation,
                communication,
                admitted.file_name,
                request,
                plan,
                idempotency.map(|(_, d)| d),
            )
            .await?;
        let parts = record.1;
        Ok((201, self.create_response(&record.0.record, parts, false)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        caller: &Caller,
        upload_id: String,
        conversation: ConversationId,
        communication: String,
        file_name: String,
        request: CreateRequest,
        plan: PartPlan,
        idempotency_digest: Option<String>,
    ) -> Result<(Held, Vec<SignedPart>), UploadError> {
        let start = self
            .genesys
            .conversation(&conversation)
            .await?
            .start_time
            .unwrap_or_else(|| self.now());
        let key =
            self.layout
                .attachment_key(&self.org, &conversation, start, &upload_id, &file_name);
        let record_key =
            self.layout
                .attachment_record_key(&self.org, &conversation, start, &upload_id);
        let s3_upload_id = self.multipart.create(&key, &request.file_type).await?;
        let now = self.now();
        let record = UploadRecord {
            upload_id: upload_id.clone(),
            s3_upload_id,
            bucket: self.multipart.bucket().to_string(),
            key: key.to_string(),
            record_key: record_key.to_string(),
            conversation_id: conversation,
            communication_id: communication,
            caller: caller.subject().to_string(),
            file_name,
            file_type: request.file_type.clone(),
            plan,
            declared_sha256: request.sha256.clone(),
            declared_md5: request.md5.clone(),
            signed: request
                .parts
                .iter()
                .map(|p| (p.part_number, p.sha256.trim().to_string()))
                .collect(),
            idempotency_digest,
            phase: Phase::Uploading,
            s3_checked_parts: false,
            created_at: now,
            updated_at: now,
            conversation_start: start,
            verified: None,
            delivery: None,
            error: None,
        };
        let held = state::save(self.store.as_ref(), &self.layout, &record, None)
            .await?
            .ok_or_else(|| conflict("in_progress", "upload id collision; try again"))?;
        let parts = self.presign(&record, &request.parts).await?;
        Ok((held, parts))
    }

    async fn replay(
        &self,
        caller: &Caller,
        ikey: &ObjectKey,
        fingerprint: &str,
    ) -> Result<Replay, UploadError> {
        let Some(found) = self.store.get(ikey).await? else {
            return Ok(Replay::None);
        };
        let stored: serde_json::Value = serde_json::from_slice(&found.body).unwrap_or_default();
        if stored["fingerprint"].as_str() != Some(fingerprint) {
            return Err(UploadError::Rejected {
                code: "idempotency_key_reused".into(),
                message: "this idempotency key was used for a different upload".into(),
                status: 422,
            });
        }
        let id = stored["uploadId"].as_str().unwrap_or_default();
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(UploadError::BadRequest(
                "the idempotency record is unreadable; use another key".into(),
            ));
        }
        match state::load(self.store.as_ref(), &self.layout, id).await? {
            Some(held) => {
                self.authorize(caller, &held.record)?;
                Ok(Replay::Answered(self.create_response(
                    &held.record,
                    Vec::new(),
                    true,
                )))
            }
            None => Ok(Replay::Unfinished(id.to_string())),
        }
    }

    fn create_response(
        &self,
        record: &UploadRecord,
        parts: Vec<SignedPart>,
        replayed: bool,
    ) -> CreateResponse {
        CreateResponse {
            upload_id: record.upload_id.clone(),
            state: record.phase,
            file_name: record.file_name.clone(),
            part_size: record.plan.part_size,
            part_count: record.plan.part_count,
            expires_at: self.now()
                + chrono::Duration::from_std(self.settings.part_url_ttl).unwrap_or_default(),
            parts,
            replayed,
        }
    }

    async fn presign(
        &self,
        record: &UploadRecord,
        parts: &[PartChecksum],
    ) -> Result<Vec<SignedPart>, UploadError> {
        let key = ObjectKey::new(record.key.clone());
        let expires_at =
            self.now() + chrono::Duration::from_std(self.settings.part_url_ttl).unwrap_or_default();
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let request = self
                .multipart
                .presign_part(
                    &key,
                    &record.s3_upload_id,
                    p.part_number,
                    p.sha256.trim(),
                    self.settings.part_url_ttl,
                )
                .await?;
            out.push(SignedPart {
                part_number: p.part_number,
                request,
                expires_at,
            });
        }
        Ok(out)
    }

    /// `POST /uploads/{id}/parts`: URLs for parts whose SHA-256 the client now knows. A
    /// part may be signed again (a retry after a failed PUT, or with another checksum before
    /// its bytes are sent): the last checksum signed is the one completion holds it to.
    pub async fn sign_parts(
        &self,
        caller: &Caller,
        upload_id: &str,
        request: PartsRequest,
    ) -> Result<Vec<SignedPart>, UploadError> {
        if request.parts.is_empty() || request.parts.len() > 1000 {
            return Err(UploadError::BadRequest(
                "parts must list 1 to 1000 parts".into(),
            ));
        }
        // Parts are signed concurrently (the page has 4 in flight) and each signing adds its
        // checksum to the one record: a lost If-Match race re-reads and tries again after a
        // short random pause, which spreads the writers out.
        const ATTEMPTS: u32 = 12;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let pause = rand::random_range(5..=25 * u64::from(attempt.min(4)));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let held = self.held(caller, upload_id).await?;
            if held.record.phase != Phase::Uploading {
                return Err(conflict(
                    "not_uploading",
                    format!(
                        "upload {upload_id} is {:?}, not uploading",
                        held.record.phase
                    ),
                ));
            }
            let mut record = held.record.clone();
            for p in &request.parts {
                if p.part_number == 0 || p.part_number > record.plan.part_count {
                    return Err(UploadError::BadRequest(format!(
                        "part {} is outside 1..={}",
                        p.part_number, record.plan.part_count
                    )));
                }
                decode_digest(&p.sha256, 32, "a part's sha256")?;
                record
                    .signed
                    .insert(p.part_number, p.sha256.trim().to_string());
            }
            if record.signed != held.record.signed {
                match self.save(&held, record.clone()).await {
                    Ok(_) => {}
                    Err(UploadError::Conflict {
                        code: "concurrent_update",
                        ..
                    }) => continue,
                    Err(e) => return Err(e),
                }
            }
            return self.presign(&record, &request.parts).await;
        }
        Err(UploadError::Busy(format!(
            "the upload's record kept changing under {ATTEMPTS} attempts; try again"
        )))
    }

    /// `GET /uploads/{id}`.
    pub async fn view(&self, caller: &Caller, upload_id: &str) -> Result<UploadView, UploadError> {
        let held = self.held(caller, upload_id).await?;
        self.view_of(&held.record).await
    }

    async fn view_of(&self, record: &UploadRecord) -> Result<UploadView, UploadError> {
        let uploaded_parts = if record.phase == Phase::Uploading {
            self.multipart
                .list_parts(&ObjectKey::new(record.key.clone()), &record.s3_upload_id)
                .await?
                .unwrap_or_default()
                .into_iter()
                .map(|p| PartState {
                    part_number: p.part_number,
                    size: p.size,
                    // What S3 verified, else what the part was signed with.
                    sha256: p
                        .sha256
                        .or_else(|| record.signed.get(&p.part_number).cloned()),
                })
                .collect()
        } else {
            Vec::new()
        };
        let released = matches!(record.phase, Phase::Delivering | Phase::Delivered);
        Ok(UploadView {
            upload_id: record.upload_id.clone(),
            state: record.phase,
            conversation_id: record.conversation_id.to_string(),
            file_name: record.file_name.clone(),
            file_type: record.file_type.clone(),
            size: record.plan.size,
            part_size: record.plan.part_size,
            part_count: record.plan.part_count,
            uploaded_parts,
            sha256_hex: record.verified.as_ref().map(|v| v.sha256_hex.clone()),
            object: released.then(|| ObjectView {
                bucket: record.bucket.clone(),
                key: record.key.clone(),
            }),
            delivery: record.delivery.clone(),
            error: record.error.clone(),
        })
    }

    /// `DELETE /uploads/{id}`: aborts an upload not yet released, removing what it left.
    pub async fn abort(&self, caller: &Caller, upload_id: &str) -> Result<UploadView, UploadError> {
        let held = self.held(caller, upload_id).await?;
        match held.record.phase {
            Phase::Aborted | Phase::Refused => return self.view_of(&held.record).await,
            Phase::Delivering | Phase::Delivered => {
                return Err(conflict(
                    "already_released",
                    "the file was verified and released to the conversation; it can no longer be aborted",
                ))
            }
            Phase::Uploading | Phase::Verifying => {}
        }
        let mut record = held.record.clone();
        record.phase = Phase::Aborted;
        let held = self.save(&held, record).await?;
        self.remove_object(&held.record).await?;
        self.audit(&held.record, "attachment_aborted", None).await;
        self.view_of(&held.record).await
    }

    async fn remove_object(&self, record: &UploadRecord) -> Result<(), UploadError> {
        let key = ObjectKey::new(record.key.clone());
        self.multipart.abort(&key, &record.s3_upload_id).await?;
        self.multipart.delete(&key).await?;
        self.store
            .delete(&ObjectKey::new(record.record_key.clone()))
            .await?;
        Ok(())
    }

    /// `POST /uploads/{id}/complete`: verify, release, deliver. Called again after a
    /// failure or timeout it resumes where the upload is; called after delivery it answers
    /// the same.
    pub async fn complete(
        &self,
        caller: &Caller,
        upload_id: &str,
        parts: PartsRequest,
    ) -> Result<UploadView, UploadError> {
        let mut held = self.held(caller, upload_id).await?;
        let started = Instant::now();
        match held.record.phase {
            Phase::Delivered => return self.view_of(&held.record).await,
            Phase::Refused => {
                let failure = held.record.error.clone().unwrap_or(Failure {
                    code: "refused".into(),
                    message: "the upload was refused".into(),
                });
                return Err(UploadError::Rejected {
                    code: failure.code,
                    message: failure.message,
                    status: 422,
                });
            }
            Phase::Aborted => {
                return Err(conflict(
                    "aborted",
                    format!("upload {upload_id} was aborted"),
                ))
            }
            Phase::Verifying | Phase::Delivering => {
                let age = (self.now() - held.record.updated_at)
                    .to_std()
                    .unwrap_or_default();
                if age < self.settings.completion_lease {
                    return Err(conflict(
                        "in_progress",
                        "the upload is being completed by another request; ask for its state",
                    ));
                }
                // The request that held it is gone: take over.
                let record = held.record.clone();
                held = self.save(&held, record).await?;
            }
            Phase::Uploading => {
                self.check_part_list(&held.record, &parts)?;
                let listed = self.check_uploaded(&held.record).await?;
                let mut record = held.record.clone();
                record.phase = Phase::Verifying;
                record.s3_checked_parts = listed.iter().all(|p| {
                    p.sha256.is_some() && p.sha256.as_ref() == record.signed.get(&p.part_number)
                });
                held = self.save(&held, record).await?;
                let key = ObjectKey::new(held.record.key.clone());
                let list: Vec<(u32, String, String)> = listed
                    .iter()
                    .map(|p| {
                        (
                            p.part_number,
                            p.etag.clone(),
                            held.record
                                .signed
                                .get(&p.part_number)
                                .cloned()
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                match self
                    .multipart
                    .complete(&key, &held.record.s3_upload_id, &list)
                    .await
                {
                    // Already completed (the key is this upload's own, so only an earlier
                    // completion of it can be there): verification goes on.
                    Ok(()) | Err(StoreError::NoSuchUpload { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if held.record.phase == Phase::Verifying {
            held = self.verify(held).await?;
        }
        let delivered = self.deliver(held).await?;
        crate::metrics::emit(
            &[("Function", self.settings.function.as_str())],
            &[
                crate::metrics::Metric::count("AttachmentsDelivered", 1.0),
                crate::metrics::Metric {
                    name: "AttachmentBytes",
                    value: delivered.record.plan.size as f64,
                    unit: "Bytes",
                },
                crate::metrics::Metric {
                    name: "CompleteMs",
                    value: started.elapsed().as_millis() as f64,
                    unit: "Milliseconds",
                },
            ],
        );
        self.view_of(&delivered.record).await
    }

    fn check_part_list(
        &self,
        record: &UploadRecord,
        parts: &PartsRequest,
    ) -> Result<(), UploadError> {
        let count = record.plan.part_count as usize;
        let mut seen = vec![false; count];
        for p in &parts.parts {
            let index = (p.part_number as usize).wrapping_sub(1);
            if index >= count || seen[index] {
                return Err(UploadError::BadRequest(format!(
                    "parts must list each of 1..={count} once (part {} is not)",
                    p.part_number
                )));
            }
            seen[index] = true;
            match record.signed.get(&p.part_number) {
                None => {
                    return Err(conflict(
                        "parts_missing",
                        format!("part {} was never signed or uploaded", p.part_number),
                    ))
                }
                Some(signed) if signed != p.sha256.trim() => {
                    return Err(UploadError::Rejected {
                        code: "part_checksum_mismatch".into(),
                        message: format!(
                            "part {}'s sha256 is not the one its URL was signed with; upload it again with that checksum",
                            p.part_number
                        ),
                        status: 422,
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(UploadError::BadRequest(format!(
                "parts must list each of 1..={count} (part {} is missing)",
                missing + 1
            )));
        }
        Ok(())
    }

    async fn check_uploaded(
        &self,
        record: &UploadRecord,
    ) -> Result<Vec<super::s3::ListedPart>, UploadError> {
        let listed = self
            .multipart
            .list_parts(&ObjectKey::new(record.key.clone()), &record.s3_upload_id)
            .await?
            .ok_or_else(|| {
                conflict(
                    "upload_gone",
                    "S3 no longer has this upload (aborted or expired); start a new one",
                )
            })?;
        let missing: Vec<u32> = (1..=record.plan.part_count)
            .filter(|n| !listed.iter().any(|p| p.part_number == *n))
            .collect();
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(10).map(u32::to_string).collect();
            return Err(conflict(
                "parts_missing",
                format!(
                    "{} part(s) not uploaded yet: {}{}",
                    missing.len(),
                    shown.join(", "),
                    if missing.len() > 10 { ", …" } else { "" }
                ),
            ));
        }
        for p in &listed {
            let want = record.plan.part_len(p.part_number);
            if want != Some(p.size) {
                return Err(conflict(
                    "part_size_mismatch",
                    format!(
                        "part {} is {} bytes; the plan says {}: upload it again",
                        p.part_number,
                        p.size,
                        want.unwrap_or_default()
                    ),
                ));
            }
            if let (Some(s3), Some(signed)) = (&p.sha256, record.signed.get(&p.part_number)) {
                if s3 != signed {
                    return Err(conflict(
                        "part_checksum_mismatch",
                        format!(
                            "S3 holds part {} with another sha256 than the one signed last: upload it again",
                            p.part_number
                        ),
                    ));
                }
            }
        }
        // Every listed part is one of the plan's: any other failed the size check above.
        Ok(listed)
    }

    /// Reads the object back and hashes it. MD5 (the costliest of the three hashes, 1.8 s of
    /// CPU per GiB in upload-bench) only when `with_md5`: Genesys' media upload and a declared
    /// MD5 need it, a file delivered as a link does not.
    async fn read_back(
        &self,
        record: &UploadRecord,
        with_md5: bool,
    ) -> Result<ReadBack, UploadError> {
        let key = ObjectKey::new(record.key.clone());
        let mut body = self.multipart.read(&key, 0, None).await?;
        let mut whole = Sha256::new();
        let mut md5 = with_md5.then(Md5::default);
        let mut part = Sha256::new();
        let mut parts = Vec::with_capacity(record.plan.part_count as usize);
        let mut head = Vec::with_capacity(4096);
        let mut position: u64 = 0;
        let mut part_number = 1u32;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Request {
                operation: "GetObject",
                key: record.key.clone(),
                reason: e.to_string(),
                transient: true,
            })?;
            whole.update(&chunk);
            if let Some(m) = md5.as_mut() {
                md5::Digest::update(m, &chunk);
            }
            if head.len() < 4096 {
                let take = (4096 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                // Bytes beyond the plan's last part are only counted: the size check refuses
                // the upload.
                let Some((_, end)) = record.plan.range(part_number) else {
                    position += rest.len() as u64;
                    break;
                };
                let take = ((end - position) as usize).min(rest.len());
                part.update(&rest[..take]);
                position += take as u64;
                rest = &rest[take..];
                if position == end {
                    parts.push(B64.encode(std::mem::take(&mut part).finalize()));
                    part_number += 1;
                }
            }
        }
        Ok(ReadBack {
            sha256_hex: hex::encode(whole.finalize()),
            md5_b64: md5.map(|m| B64.encode(md5::Digest::finalize(m))),
            parts,
            head,
            size: position,
        })
    }

    async fn read_head(&self, record: &UploadRecord) -> Result<Vec<u8>, UploadError> {
        let key = ObjectKey::new(record.key.clone());
        let body = self
            .multipart
            .read(&key, 0, Some(4096.min(record.plan.size)))
            .await?;
        let bytes = body.collect().await.map_err(|e| StoreError::Request {
            operation: "GetObject",
            key: record.key.clone(),
            reason: e.to_string(),
            transient: true,
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn refuse(
        &self,
        held: Held,
        code: &str,
        message: String,
        status: u16,
    ) -> Result<Held, UploadError> {
        let mut record = held.record.clone();
        record.phase = Phase::Refused;
        record.error = Some(Failure {
            code: code.to_string(),
            message: message.clone(),
        });
        // Removed first, then recorded: a crash in between leaves a Verifying record that
        // the next complete takes over, never an object nobody owns.
        self.remove_object(&held.record).await?;
        let held = self.save(&held, record).await?;
        self.audit(&held.record, "attachment_refused", Some((code, &message)))
            .await;
        crate::metrics::emit(
            &[("Function", self.settings.function.as_str())],
            &[crate::metrics::Metric::count("AttachmentsRefused", 1.0)],
        );
        Err(UploadError::Rejected {
            code: code.to_string(),
            message,
            status,
        })
    }

    /// Checks the completed object and releases it (writes its attachment record).
    async fn verify(&self, held: Held) -> Result<Held, UploadError> {
        let record = held.record.clone();
        let key = ObjectKey::new(record.key.clone());
        let signed: Vec<String> = (1..=record.plan.part_count)
            .map(|n| record.signed.get(&n).cloned().unwrap_or_default())
            .collect();
        let Some((size, reported)) = self.multipart.head(&key).await? else {
            return Err(conflict(
                "upload_gone",
                "the completed object is missing; start a new upload",
            ));
        };
        if size != record.plan.size {
            let message = format!(
                "the object is {size} bytes, not the {} declared",
                record.plan.size
            );
            return self.refuse(held, "size_mismatch", message, 422).await;
        }
        // S3's composite of the parts it holds (real S3 and moto both compute it from the
        // bytes): a mismatch means a part is not what was signed; the read-back below names
        // which.
        let composite_ok = match (&reported, composite_sha256(&signed)) {
            (Some(reported), Some(expected)) => {
                crate::store::composite_matches(&expected, reported)
            }
            _ => true,
        };
        let trust_s3 = self.settings.verify == VerifyMode::S3
            && composite_ok
            && record.s3_checked_parts
            && reported.is_some()
            && record.declared_sha256.is_some();
        let (sha256_hex, md5_b64, head, method) = if trust_s3 {
            let head = self.read_head(&record).await?;
            let sha = record
                .declared_sha256
                .as_deref()
                .and_then(|s| B64.decode(s).ok())
                .map(hex::encode)
                .unwrap_or_default();
            (sha, record.declared_md5.clone(), head, "s3")
        } else {
            let with_md5 =
                record.declared_md5.is_some() || record.plan.size <= self.settings.attach_max_bytes;
            let read = self.read_back(&record, with_md5).await?;
            if read.size != record.plan.size {
                let message = format!(
                    "read {} bytes, not the {} declared",
                    read.size, record.plan.size
                );
                return self.refuse(held, "size_mismatch", message, 422).await;
            }
            let bad: Vec<String> = signed
                .iter()
                .zip(read.parts.iter().chain(std::iter::repeat(&String::new())))
                .enumerate()
                .filter(|(_, (want, got))| want != got)
                .map(|(i, _)| (i + 1).to_string())
                .take(10)
                .collect();
            if !bad.is_empty() {
                let message = format!(
                    "the bytes of part {} do not hash to the sha256 the part was signed with",
                    bad.join(", ")
                );
                return self
                    .refuse(held, "part_checksum_mismatch", message, 422)
                    .await;
            }
            if !composite_ok {
                let message =
                    "S3's checksum of the object does not match the parts' checksums".to_string();
                return self
                    .refuse(held, "part_checksum_mismatch", message, 422)
                    .await;
            }
            if let Some(declared) = &record.declared_sha256 {
                let declared_hex = B64.decode(declared).map(hex::encode).unwrap_or_default();
                if declared_hex != read.sha256_hex {
                    let message = format!(
                        "the file's SHA-256 is {}, not the {declared_hex} declared",
                        read.sha256_hex
                    );
                    return self.refuse(held, "file_hash_mismatch", message, 422).await;
                }
            }
            if let (Some(declared), Some(md5)) = (&record.declared_md5, &read.md5_b64) {
                if declared.trim() != md5 {
                    let message = format!(
                        "the file's MD5 is {md5}, not the {} declared",
                        declared.trim()
                    );
                    return self.refuse(held, "file_hash_mismatch", message, 422).await;
                }
            }
            (read.sha256_hex, read.md5_b64, read.head, "read")
        };
        if let Err(refusal) = check_content(&record.file_type, &head) {
            let status = refusal.status();
            return self
                .refuse(held, "content_mismatch", refusal.to_string(), status)
                .await;
        }
        let now = self.now();
        let verified = Verified {
            sha256_hex: sha256_hex.clone(),
            md5_b64: md5_b64.clone(),
            method: method.into(),
            sniffed: sniff(&head).name().into(),
            at: now,
        };
        let attachment = AttachmentRecord {
            upload_id: record.upload_id.clone(),
            org_id: self.org.to_string(),
            conversation_id: record.conversation_id.to_string(),
            file_name: record.file_name.clone(),
            file_type: record.file_type.clone(),
            size: record.plan.size,
            sha256_hex,
            md5_b64,
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            part_size: record.plan.part_size,
            part_sha256: signed,
            verified: method.into(),
            verified_at: now,
            caller: record.caller.clone(),
            tool: concat!("gc-archive ", env!("CARGO_PKG_VERSION")).into(),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&attachment).unwrap_or_default());
        self.store
            .put_if_absent(
                &ObjectKey::new(record.record_key.clone()),
                body,
                "application/json",
            )
            .await?;
        self.publish_verified(&attachment).await;
        let mut next = record;
        next.verified = Some(verified);
        next.phase = Phase::Delivering;
        self.save(&held, next).await
    }

    /// The hook for a malware scanner or DLP tool: an EventBridge event per verified
    /// attachment. Never fatal (the attachment is already verified).
    async fn publish_verified(&self, attachment: &AttachmentRecord) {
        let Some((client, bus)) = &self.events else {
            return;
        };
        let detail = serde_json::to_string(attachment).unwrap_or_default();
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source("gc-archive.upload-proxy")
            .detail_type("Attachment Verified")
            .detail(detail)
            .build();
        if let Err(e) = client.put_events().entries(entry).send().await {
            tracing::warn!(error = %crate::config::aws_error_summary(&e), "Attachment Verified event not published");
        }
    }

    fn attach_limit(&self, deployment: Option<&DeploymentMedia>) -> u64 {
        deployment
            .and_then(|d| d.max_file_size_kb)
            .map_or(self.settings.attach_max_bytes, |kb| {
                kb.saturating_mul(1024).min(self.settings.attach_max_bytes)
            })
    }

    /// Hands a verified attachment to the conversation: as message media within Genesys'
    /// limits, else as a link.
    async fn deliver(&self, held: Held) -> Result<Held, UploadError> {
        let mut held = held;
        let record = held.record.clone();
        let deployment = self.deployment_media().await.unwrap_or(None);
        let limit = self.attach_limit(deployment.as_ref());
        let mut reason = None;
        let mut delivery = record.delivery.clone();
        if delivery
            .as_ref()
            .and_then(|d| d.message_id.as_ref())
            .is_none()
        {
            if record.plan.size <= limit {
                match self.deliver_attachment(&mut held).await {
                    Ok(d) => delivery = Some(d),
                    Err(AttachOutcome::TooLargeForGenesys(why)) => reason = Some(why),
                    Err(AttachOutcome::Rejected(why)) => {
                        return self.refuse(held, "genesys_rejected", why, 422).await;
                    }
                    Err(AttachOutcome::Failed(e)) => return Err(e),
                }
            } else {
                reason = Some(format!(
                    "{} is above the {} Genesys attachments are accepted up to",
                    human_size(record.plan.size),
                    human_size(limit)
                ));
            }
            if delivery.is_none() {
                delivery = Some(self.deliver_link(&held.record, reason).await?);
            }
        }
        let mut delivery = delivery.unwrap_or(Delivery {
            kind: "link".into(),
            media_id: None,
            message_id: None,
            link_expires_at: None,
            reason: None,
            write_back: None,
        });
        delivery.write_back = Some(self.write_back(&held.record).await);
        let mut next = held.record.clone();
        next.delivery = Some(delivery);
        next.phase = Phase::Delivered;
        let held = self.save(&held, next).await?;
        self.audit(&held.record, "attachment_delivered", None).await;
        Ok(held)
    }

    async fn deliver_attachment(&self, held: &mut Held) -> Result<Delivery, AttachOutcome> {
        let record = held.record.clone();
        let conversation = &record.conversation_id;
        let communication = record.communication_id.as_str();
        let media_id = match record.delivery.as_ref().and_then(|d| d.media_id.clone()) {
            Some(id) => id,
            None => {
                let md5 = match record.verified.as_ref().and_then(|v| v.md5_b64.clone()) {
                    Some(m) => m,
                    None => self
                        .read_back(&record, true)
                        .await
                        .map_err(AttachOutcome::Failed)?
                        .md5_b64
                        .unwrap_or_default(),
                };
                let upload = match self
                    .genesys
                    .create_message_media_upload(
                        conversation,
                        communication,
                        &UploadMediaRequest {
                            file_name: record.file_name.clone(),
                            content_length_bytes: record.plan.size,
                            content_md5: md5,
                        },
                    )
                    .await
                {
                    Ok(u) => u,
                    Err(e) if matches!(e.status(), Some(400 | 413)) => {
                        return Err(AttachOutcome::TooLargeForGenesys(format!(
                            "Genesys Cloud refused it as message media ({e}); sent as a link"
                        )))
                    }
                    Err(e) => return Err(AttachOutcome::Failed(e.into())),
                };
                self.send_bytes(&record, &upload.upload_url, &upload.upload_headers)
                    .await
                    .map_err(AttachOutcome::Failed)?;
                let mut next = record.clone();
                next.delivery = Some(Delivery {
                    kind: "attachment".into(),
                    media_id: Some(upload.id.clone()),
                    message_id: None,
                    link_expires_at: None,
                    reason: None,
                    write_back: None,
                });
                *held = self.save(held, next).await.map_err(AttachOutcome::Failed)?;
                upload.id
            }
        };
        let mut polls = 0;
        loop {
            let media = self
                .genesys
                .message_media(conversation, communication, &media_id)
                .await
                .map_err(|e| AttachOutcome::Failed(e.into()))?;
            match media.status.as_deref() {
                Some("valid") => break,
                Some("invalid") => {
                    return Err(AttachOutcome::Rejected(
                        "Genesys Cloud marked the uploaded media invalid".into(),
                    ))
                }
                _ => {}
            }
            polls += 1;
            if polls >= self.settings.media_status_polls {
                return Err(AttachOutcome::Failed(UploadError::Delivery(format!(
                    "media {media_id} still uploading after {polls} checks; complete again to resume"
                ))));
            }
            tokio::time::sleep(self.settings.media_poll_interval).await;
        }
        let sent = self
            .genesys
            .send_message(
                conversation,
                communication,
                &AdditionalMessage {
                    text_body: None,
                    media_ids: vec![media_id.clone()],
                },
            )
            .await
            .map_err(|e| AttachOutcome::Failed(e.into()))?;
        Ok(Delivery {
            kind: "attachment".into(),
            media_id: Some(media_id),
            message_id: Some(sent.id),
            link_expires_at: None,
            reason: None,
            write_back: None,
        })
    }

    /// Streams the object from S3 to Genesys' upload URL with the headers it asked for
    /// (never the bearer token: the URL is presigned).
    async fn send_bytes(
        &self,
        record: &UploadRecord,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), UploadError> {
        let body = self
            .multipart
            .read(&ObjectKey::new(record.key.clone()), 0, None)
            .await?;
        let stream = futures::stream::unfold(body, |mut b| async move {
            b.next()
                .await
                .map(|r| (r.map_err(std::io::Error::other), b))
        });
        let mut request = self
            .genesys
            .http()
            .request(self.settings.genesys_upload_method.clone(), url)
            .header(reqwest::header::CONTENT_LENGTH, record.plan.size)
            .body(reqwest::Body::wrap_stream(stream));
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let response = request
            .send()
            .await
            .map_err(|e| UploadError::Delivery(format!("upload to {host}: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(UploadError::Delivery(format!(
                "upload to {host}: HTTP {}",
                response.status().as_u16()
            )));
        }
        Ok(())
    }

    async fn deliver_link(
        &self,
        record: &UploadRecord,
        reason: Option<String>,
    ) -> Result<Delivery, UploadError> {
        let key = ObjectKey::new(record.key.clone());
        let link = self
            .multipart
            .presign_get(&key, &record.file_name, self.settings.link_ttl)
            .await?;
        let expires =
            self.now() + chrono::Duration::from_std(self.settings.link_ttl).unwrap_or_default();
        let sha = record
            .verified
            .as_ref()
            .map(|v| v.sha256_hex.clone())
            .unwrap_or_default();
        let text = format!(
            "{} ({}, SHA-256 {sha}) can be downloaded until {} UTC: {}",
            record.file_name,
            human_size(record.plan.size),
            expires.format("%Y-%m-%d %H:%M"),
            link.url
        );
        let sent = self
            .genesys
            .send_message(
                &record.conversation_id,
                &record.communication_id,
                &AdditionalMessage {
                    text_body: Some(text),
                    media_ids: Vec::new(),
                },
            )
            .await?;
        Ok(Delivery {
            kind: "link".into(),
            media_id: None,
            message_id: Some(sent.id),
            link_expires_at: Some(expires),
            reason,
            write_back: None,
        })
    }

    /// The conversation's archive reference (its folder, which holds the attachment);
    /// reported, never fatal.
    async fn write_back(&self, record: &UploadRecord) -> String {
        let folder = self.layout.conversation_folder(
            &self.org,
            &record.conversation_id,
            record.conversation_start,
        );
        let location = format!("s3://{}/{}", record.bucket, folder);
        let prefix = self.layout.prefix();
        let target = crate::writeback::Target {
            mode: self.write_back,
            external_tag_policy: self.external_tag_policy,
            schema_id: self.custom_attributes_schema_id.as_deref(),
            // A tag under our archive prefix is ours to replace, as the pipeline has it.
            ours_prefixes: vec![if prefix.is_empty() {
                format!("s3://{}/", record.bucket)
            } else {
                format!("s3://{}/{prefix}/", record.bucket)
            }],
        };
        let result = crate::writeback::write_back_attachment(
            &self.genesys,
            &target,
            &record.conversation_id,
            &location,
            &crate::writeback::ListedAttachment {
                upload_id: &record.upload_id,
                file_name: &record.file_name,
                object_key: &record.key,
                sha256: record
                    .verified
                    .as_ref()
                    .map(|v| v.sha256_hex.as_str())
                    .unwrap_or_default(),
            },
        )
        .await;
        match result {
            Ok(outcome) => format!("{outcome:?}"),
            Err(e) => {
                tracing::warn!(upload = %record.upload_id, error = %e, "attachment write-back failed");
                format!("failed: {e}")
            }
        }
    }

    async fn audit(&self, record: &UploadRecord, outcome: &str, failure: Option<(&str, &str)>) {
        let audit = crate::audit::AuditRecord {
            at: self.now(),
            outcome: outcome.to_string(),
            org_id: self.org.to_string(),
            conversation_id: record.conversation_id.to_string(),
            recording_id: record.upload_id.clone(),
            object_key: matches!(record.phase, Phase::Delivering | Phase::Delivered)
                .then(|| record.key.clone()),
            plaintext_sha256: record.verified.as_ref().map(|v| v.sha256_hex.clone()),
            bytes: record.plan.size,
            duration_ms: (self.now() - record.created_at).num_milliseconds().max(0) as u64,
            retries: 0,
            url_refreshes: 0,
            invocations: 1,
            reason_code: failure.map(|(c, _)| c.to_string()),
            reason: failure.map(|(_, m)| m.to_string()),
            worker_id: record.upload_id.clone(),
            function: self.settings.function.clone(),
            target: None,
            conversation_end: None,
        };
        if let Err(e) = crate::audit::write(self.store.as_ref(), &self.layout, &audit).await {
            tracing::warn!(upload = %record.upload_id, error = %e, "audit record not written");
        }
    }
}

/// What an idempotency key found.
enum Replay {
    None,
    Answered(CreateResponse),
    /// The request that claimed the key stopped before writing its upload record.
    Unfinished(String),
}

enum AttachOutcome {
    /// Genesys would not take it as media (size or type): a link instead.
    TooLargeForGenesys(String),
    /// Genesys took the bytes and judged them invalid (its scan): refused.
    Rejected(String),
    Failed(UploadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_composite_is_the_hash_of_the_part_hashes() {
        let a = B64.encode(Sha256::digest(b"a"));
        let b = B64.encode(Sha256::digest(b"b"));
        let mut joined = Sha256::digest(b"a").to_vec();
        joined.extend(Sha256::digest(b"b"));
        assert_eq!(
            composite_sha256(&[a.clone(), b]).unwrap(),
            format!("{}-2", B64.encode(Sha256::digest(&joined)))
        );
        assert_eq!(composite_sha256(&[a, "not base64!".into()]), None);
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_size(1), "1 bytes");
        assert_eq!(human_size(50 * 1024 * 1024), "50.0 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn errors_map_to_the_status_and_code_the_api_answers() {
        let e = UploadError::from(Refusal::BlockedExtension {
            extension: "exe".into(),
        });
        assert_eq!((e.status(), e.code().as_str()), (400, "blocked_extension"));
        let e = UploadError::from(Refusal::TooLarge { size: 2, limit: 1 });
        assert_eq!((e.status(), e.code().as_str()), (413, "too_large"));
        let e = conflict("parts_missing", "x");
        assert_eq!((e.status(), e.code().as_str()), (409, "parts_missing"));
        assert!(decode_digest("AAAA", 32, "sha256").is_err());
        assert!(decode_digest(&B64.encode([0u8; 32]), 32, "sha256").is_ok());
    }
}
