//! Message media upload and sending on a messaging conversation (genesys-api.md §6, agent side)
//! and the web deployment configuration that says which attachments a messenger accepts.
//!
//! Followed as documented (SDK `ConversationsApi`, `WebDeploymentsApi` and their models):
//! `POST .../messages/media/uploads` takes `UploadMediaRequest{fileName, contentLengthBytes,
//! contentMd5}` and answers `MessageMediaUploadData` with an `uploadUrl` and the
//! `uploadHeaders` the upload must carry; `GET .../messages/media/{mediaId}` answers
//! `MessageMediaData` whose `status` is `uploading`, `valid` or `invalid`; `POST .../messages`
//! takes an `AdditionalMessage` with exactly one of `textBody`, `mediaIds`,
//! `messagingTemplate`; `GET /api/v2/webdeployments/deployments/{id}/configurations` answers
//! `WebDeploymentActiveConfigurationOnDeployment`.
//!
//! Left open by the documents, each a switch on [`MessagingHub`] (default = the strictest
//! reading, so a client passing here passes against either): the upload's HTTP method (PUT,
//! [`MessagingHub::set_upload_method`]); the media size limit (10 MiB,
//! [`MessagingHub::set_media_max_bytes`]); whether the upload URL demands a `Content-Length`
//! as an S3 presigned PUT does (yes, [`MessagingHub::set_require_content_length`]); how many
//! media one message may carry (one, as the SDK's "1 textBody, 1 mediaId, or 1
//! messageTemplate" reads, [`MessagingHub::set_max_media_per_message`]); how long the scan
//! after an upload takes ([`MessagingHub::set_uploading_polls`]) and its verdict
//! ([`MessagingHub::set_scan_rejects_uploads`]). Upload faults: [`MessagingHub::fail_uploads`].
//!
//! The upload URL is served by the simulator outside `/api/v2` and, like a presigned URL,
//! carries its own credential (`sig` in the query): no bearer token is needed, and a request
//! with an `Authorization` header is refused (400), since a client must never hand its token
//! to a media URL. Its errors are S3-style XML. The bytes are hashed as they stream in and
//! not kept: tests see their length and SHA-256 ([`MediaRecord`]), not the bytes.
//! Not modelled: message templates' contents, the media download `url`, inbound messages.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::digest::Md5;
use crate::server::{api_error, s3_error, ts};
use crate::state::{lock, new_id, Shared};

/// Default of [`MessagingHub::set_media_max_bytes`]: Genesys' limit for message media is
/// UNCONFIRMED.
pub const DEFAULT_MEDIA_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The `uploadHeaders` entry, besides `Content-Type`, an upload must echo.
pub const UPLOAD_TOKEN_HEADER: &str = "x-gc-upload-token";

/// `contentMd5` of `bytes`: the base64 of their MD5 digest, as `Content-MD5` carries it.
pub fn content_md5(bytes: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(bytes);
    base64::engine::general_purpose::STANDARD.encode(md5.finalize())
}

/// HTTP method the upload URL accepts (UNCONFIRMED in the documents; the other one gets 405).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMethod {
    #[default]
    Put,
    Post,
}

impl UploadMethod {
    fn method(self) -> Method {
        match self {
            UploadMethod::Put => Method::PUT,
            UploadMethod::Post => Method::POST,
        }
    }
}

/// `MessageMediaData.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    Uploading,
    Valid,
    Invalid,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Uploading => "uploading",
            MediaStatus::Valid => "valid",
            MediaStatus::Invalid => "invalid",
        }
    }
}

/// What the simulator knows of one message media, for tests to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    pub id: String,
    pub conversation_id: String,
    pub communication_id: String,
    /// `fileName` of the upload request.
    pub name: String,
    /// The `Content-Type` the upload must carry (derived from the file name).
    pub content_type: String,
    pub declared_length: u64,
    /// `contentMd5` as sent (base64 of the MD5 digest).
    pub declared_md5: String,
    /// Bytes of the last accepted upload; `None` before one completed.
    pub received_length: Option<u64>,
    /// Lower-case hex SHA-256 of those bytes.
    pub received_sha256: Option<String>,
    /// The verdict, without the delay of [`MessagingHub::set_uploading_polls`].
    pub status: MediaStatus,
    /// Requests to the upload URL (refused ones included).
    pub upload_attempts: u32,
    /// HTTP method of the last of them.
    pub upload_method: Option<String>,
}

/// A message sent with `POST .../communications/{communicationId}/messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub id: String,
    pub conversation_id: String,
    pub communication_id: String,
    pub text_body: Option<String>,
    pub media_ids: Vec<String>,
    pub messaging_template: Option<Value>,
    pub at: DateTime<Utc>,
}

/// A web deployment's messenger attachment settings (`FileUploadSettings` with one mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub enable_attachments: bool,
    /// MIME types, e.g. `image/png`.
    pub file_types: Vec<String>,
    /// `maxFileSizeKB`; `None` leaves it out.
    pub max_file_size_kb: Option<u64>,
}

struct Media {
    conversation_id: String,
    communication_id: String,
    name: String,
    content_type: String,
    declared_length: u64,
    declared_md5: String,
    md5: [u8; 16],
    sig: String,
    token: String,
    received: Option<(u64, String)>,
    status: MediaStatus,
    /// GETs still answering `uploading` after the upload.
    polls_left: u32,
    upload_attempts: u32,
    upload_method: Option<String>,
}

#[derive(Default)]
struct HubState {
    /// Conversation id → its communication ids.
    conversations: HashMap<String, HashSet<String>>,
    media: HashMap<String, Media>,
    /// Creation order of `media`.
    media_order: Vec<String>,
    messages: Vec<SentMessage>,
    deployments: HashMap<String, DeploymentSpec>,
    /// The next this many upload requests answer this status.
    failing_uploads: Option<(u32, StatusCode)>,
}

/// The messaging side of the simulator; reach it with `Simulator::messaging()`.
pub struct MessagingHub {
    state: Mutex<HubState>,
    upload_post: AtomicBool,
    max_bytes: AtomicU64,
    uploading_polls: AtomicU32,
    scan_rejects: AtomicBool,
    require_content_length: AtomicBool,
    max_media_per_message: AtomicU32,
}

impl Default for MessagingHub {
    fn default() -> Self {
        MessagingHub {
            state: Mutex::new(HubState::default()),
            upload_post: AtomicBool::new(false),
            max_bytes: AtomicU64::new(DEFAULT_MEDIA_MAX_BYTES),
            uploading_polls: AtomicU32::new(0),
            scan_rejects: AtomicBool::new(false),
            require_content_length: AtomicBool::new(true),
            max_media_per_message: AtomicU32::new(1),
        }
    }
}

impl MessagingHub {
    /// Registers a messaging conversation's communication (call again for more
    /// communications of the same conversation). Media and messages of anything else are 404.
    pub fn add_conversation(&self, conversation_id: &str, communication_id: &str) {
        lock(&self.state)
            .conversations
            .entry(conversation_id.to_string())
            .or_default()
            .insert(communication_id.to_string());
    }

    /// The method the upload URL accepts (default PUT).
    pub fn set_upload_method(&self, method: UploadMethod) {
        self.upload_post
            .store(method == UploadMethod::Post, Ordering::SeqCst);
    }

    /// Largest `contentLengthBytes` an upload request may declare (default
    /// [`DEFAULT_MEDIA_MAX_BYTES`]); above it the request is a 400.
    pub fn set_media_max_bytes(&self, max: u64) {
        self.max_bytes.store(max, Ordering::SeqCst);
    }

    /// After an upload, the media's GET answers `uploading` this many times before the
    /// verdict (default 0).
    pub fn set_uploading_polls(&self, polls: u32) {
        self.uploading_polls.store(polls, Ordering::SeqCst);
    }

    /// While set, every upload completed from now on ends `invalid` whatever its bytes (a
    /// malware scan's verdict). Default off.
    pub fn set_scan_rejects_uploads(&self, reject: bool) {
        self.scan_rejects.store(reject, Ordering::SeqCst);
    }

    /// Whether an upload without `Content-Length` (a chunked body) is refused with 411, as
    /// an S3 presigned PUT refuses it (default true).
    pub fn set_require_content_length(&self, require: bool) {
        self.require_content_length.store(require, Ordering::SeqCst);
    }

    /// How many `mediaIds` one message may carry (default 1).
    pub fn set_max_media_per_message(&self, max: u32) {
        self.max_media_per_message
            .store(max.max(1), Ordering::SeqCst);
    }

    /// The next `n` requests to an upload URL answer `status` (S3-style body) and store
    /// nothing; they still count as attempts.
    pub fn fail_uploads(&self, n: u32, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        lock(&self.state).failing_uploads = (n > 0).then_some((n, status));
    }

    /// Adds or replaces a web deployment (`GET .../deployments/{id}/configurations`).
    pub fn set_deployment(&self, deployment_id: &str, spec: DeploymentSpec) {
        lock(&self.state)
            .deployments
            .insert(deployment_id.to_string(), spec);
    }

    pub fn media(&self, media_id: &str) -> Option<MediaRecord> {
        lock(&self.state)
            .media
            .get(media_id)
            .map(|m| m.record(media_id))
    }

    /// Every media, in the order the upload requests created them.
    pub fn all_media(&self) -> Vec<MediaRecord> {
        let st = lock(&self.state);
        st.media_order
            .iter()
            .filter_map(|id| st.media.get(id).map(|m| m.record(id)))
            .collect()
    }

    /// Every message sent, oldest first.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.state).messages.clone()
    }

    fn upload_method(&self) -> Method {
        if self.upload_post.load(Ordering::SeqCst) {
            UploadMethod::Post.method()
        } else {
            UploadMethod::Put.method()
        }
    }
}

impl Media {
    fn record(&self, id: &str) -> MediaRecord {
        MediaRecord {
            id: id.to_string(),
            conversation_id: self.conversation_id.clone(),
            communication_id: self.communication_id.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            declared_length: self.declared_length,
            declared_md5: self.declared_md5.clone(),
            received_length: self.received.as_ref().map(|r| r.0),
            received_sha256: self.received.as_ref().map(|r| r.1.clone()),
            status: self.status,
            upload_attempts: self.upload_attempts,
            upload_method: self.upload_method.clone(),
        }
    }

    fn upload_url(&self, base: &str, id: &str) -> String {
        format!("{base}/message-media/{id}?sig={}", self.sig)
    }

    /// `uploadHeaders`: what the upload must send, by the name it is listed under.
    fn upload_headers(&self) -> [(&'static str, String); 2] {
        [
            ("Content-Type", self.content_type.clone()),
            (UPLOAD_TOKEN_HEADER, self.token.clone()),
        ]
    }
}

/// MIME type of a file name, by extension.
fn content_type_of(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" | "opus" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "eml" => "message/rfc822",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// `ConversationContentAttachment.mediaType` of a MIME type.
fn attachment_kind(content_type: &str) -> &'static str {
    match content_type.split('/').next() {
        Some("image") => "Image",
        Some("video") => "Video",
        Some("audio") => "Audio",
        _ => "File",
    }
}

fn bad_request(message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad.request", message)
}

fn not_found(message: &str) -> Response {
    api_error(StatusCode::NOT_FOUND, "not.found", message)
}

fn media_path(cid: &str, comm: &str) -> String {
    format!("/api/v2/conversations/messages/{cid}/communications/{comm}/messages/media")
}

type St = State<Arc<Shared>>;

/// The `/api/v2` routes (behind the OAuth middleware).
pub(crate) fn api_routes() -> Router<Arc<Shared>> {
    const COMM: &str = "/api/v2/conversations/messages/{cid}/communications/{comm}/messages";
    Router::new()
        .route(COMM, post(post_message))
        .route(&format!("{COMM}/media/uploads"), post(post_upload))
        .route(&format!("{COMM}/media/{{mid}}"), get(get_media))
        .route(
            "/api/v2/webdeployments/deployments/{did}/configurations",
            get(get_deployment_configurations),
        )
}

/// The upload URLs (no bearer token: they carry their own signature).
pub(crate) fn upload_routes() -> Router<Arc<Shared>> {
    Router::new().route("/message-media/{mid}", any(upload))
}

/// The 404 of an unregistered conversation or communication, if it is one.
fn conversation_missing(st: &HubState, cid: &str, comm: &str) -> Option<Response> {
    match st.conversations.get(cid) {
        None => Some(not_found(&format!("Conversation {cid} not found"))),
        Some(comms) if !comms.contains(comm) => Some(not_found(&format!(
            "Communication {comm} not found on conversation {cid}"
        ))),
        Some(_) => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadMediaRequest {
    file_name: Option<String>,
    content_length_bytes: Option<i64>,
    content_md5: Option<String>,
}

async fn post_upload(
    State(sh): St,
    Path((cid, comm)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let hub = &sh.messaging;
    if let Some(r) = conversation_missing(&lock(&hub.state), &cid, &comm) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<UploadMediaRequest>(&body) else {
        return bad_request("The request body must be an UploadMediaRequest");
    };
    let name = match req.file_name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return bad_request("fileName is required"),
    };
    let length = match req.content_length_bytes {
        Some(n) if n > 0 => n as u64,
        _ => return bad_request("contentLengthBytes must be a positive number of bytes"),
    };
    let max = hub.max_bytes.load(Ordering::SeqCst);
    if length > max {
        return bad_request(&format!(
            "contentLengthBytes {length} exceeds the maximum media size of {max} bytes"
        ));
    }
    let declared_md5 = req.content_md5.unwrap_or_default();
    let md5 = match base64::engine::general_purpose::STANDARD
        .decode(declared_md5.as_bytes())
        .ok()
        .and_then(|d| <[u8; 16]>::try_from(d).ok())
    {
        Some(d) => d,
        None => return bad_request("contentMd5 must be the base64 of a 16-byte MD5 digest"),
    };
    let id = new_id();
    let media = Media {
        conversation_id: cid.clone(),
        communication_id: comm.clone(),
        content_type: content_type_of(&name).to_string(),
        name,
        declared_length: length,
        declared_md5,
        md5,
        sig: hex::encode(rand::random::<[u8; 16]>()),
        token: hex::encode(rand::random::<[u8; 16]>()),
        received: None,
        status: MediaStatus::Uploading,
        polls_left: 0,
        upload_attempts: 0,
        upload_method: None,
    };
    let body = json!({
        "id": id,
        "name": media.name,
        "uploadUrl": media.upload_url(sh.base(), &id),
        "uploadHeaders": media.upload_headers().into_iter().collect::<HashMap<_, _>>(),
        "selfUri": format!("{}/{id}", media_path(&cid, &comm)),
    });
    let mut st = lock(&hub.state);
    st.media.insert(id.clone(), media);
    st.media_order.push(id);
    drop(st);
    Json(body).into_response()
}

async fn get_media(
    State(sh): St,
    Path((cid, comm, mid)): Path<(String, String, String)>,
) -> Response {
    let mut st = lock(&sh.messaging.state);
    if let Some(r) = conversation_missing(&st, &cid, &comm) {
        return r;
    }
    let Some(m) = st
        .media
        .get_mut(&mid)
        .filter(|m| m.conversation_id == cid && m.communication_id == comm)
    else {
        return not_found(&format!("Media {mid} not found"));
    };
    let status = if m.polls_left > 0 {
        m.polls_left -= 1;
        MediaStatus::Uploading
    } else {
        m.status
    };
    Json(json!({
        "id": mid,
        "name": m.name,
        "mediaType": m.content_type,
        "contentLengthBytes": m.declared_length,
        "uploadUrl": m.upload_url(sh.base(), &mid),
        "status": status.as_str(),
        "conversationId": cid,
        "communicationId": comm,
        "selfUri": format!("{}/{mid}", media_path(&cid, &comm)),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalMessage {
    text_body: Option<String>,
    media_ids: Option<Vec<String>>,
    messaging_template: Option<Value>,
}

async fn post_message(
    State(sh): St,
    Path((cid, comm)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let hub = &sh.messaging;
    if let Some(r) = conversation_missing(&lock(&hub.state), &cid, &comm) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<AdditionalMessage>(&body) else {
        return bad_request("The request body must be an AdditionalMessage");
    };
    let given = [
        req.text_body.is_some(),
        req.media_ids.is_some(),
        req.messaging_template.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return bad_request(
            "Exactly one of textBody, mediaIds and messagingTemplate must be given",
        );
    }
    if req.text_body.as_deref() == Some("") {
        return bad_request("textBody must not be empty");
    }
    let media_ids = req.media_ids.unwrap_or_default();
    if req.messaging_template.is_none() && req.text_body.is_none() && media_ids.is_empty() {
        return bad_request("mediaIds must not be empty");
    }
    let max_media = hub.max_media_per_message.load(Ordering::SeqCst) as usize;
    if media_ids.len() > max_media {
        return bad_request(&format!(
            "A message may carry at most {max_media} media, not {}",
            media_ids.len()
        ));
    }
    let mut st = lock(&hub.state);
    let mut attachments = Vec::new();
    for id in &media_ids {
        let m = st
            .media
            .get(id)
            .filter(|m| m.conversation_id == cid && m.communication_id == comm);
        match m {
            Some(m) if m.status == MediaStatus::Valid && m.polls_left == 0 => {
                attachments.push(json!({"contentType": "Attachment", "attachment": {
                    "id": id, "mediaType": attachment_kind(&m.content_type),
                    "mime": m.content_type, "filename": m.name,
                    "contentSizeBytes": m.received.as_ref().map(|r| r.0)}}));
            }
            Some(m) => {
                return bad_request(&format!(
                    "Media {id} is {}, not valid",
                    if m.polls_left > 0 {
                        "uploading"
                    } else {
                        m.status.as_str()
                    }
                ))
            }
            None => {
                return bad_request(&format!(
                    "Media {id} is not a media of communication {comm}"
                ))
            }
        }
    }
    let sent = SentMessage {
        id: new_id(),
        conversation_id: cid.clone(),
        communication_id: comm,
        text_body: req.text_body,
        media_ids,
        messaging_template: req.messaging_template,
        at: Utc::now(),
    };
    let mut normalized = json!({"id": sent.id, "type": "Text", "status": "Sent",
        "direction": "Outbound"});
    if let Some(t) = &sent.text_body {
        normalized["text"] = json!(t);
    }
    if !attachments.is_empty() {
        normalized["content"] = json!(attachments);
    }
    let body = json!({
        "id": sent.id,
        "timestamp": ts(sent.at),
        "direction": "outbound",
        "status": "sent",
        "normalizedMessage": normalized,
        "conversationId": cid,
        "selfUri": format!("/api/v2/conversations/messages/{cid}/messages/{}", sent.id),
    });
    st.messages.push(sent);
    drop(st);
    Json(body).into_response()
}

async fn get_deployment_configurations(State(sh): St, Path(did): Path<String>) -> Response {
    let Some(spec) = lock(&sh.messaging.state).deployments.get(&did).cloned() else {
        return not_found(&format!("Deployment {did} not found"));
    };
    // One configuration per deployment, derived from its id so repeated GETs agree.
    let config_id = format!("cfg-{did}");
    let mut mode = json!({"fileTypes": spec.file_types});
    if let Some(kb) = spec.max_file_size_kb {
        mode["maxFileSizeKB"] = json!(kb);
    }
    let modes = if spec.file_types.is_empty() && spec.max_file_size_kb.is_none() {
        json!([])
    } else {
        json!([mode])
    };
    let config_uri = format!("/api/v2/webdeployments/configurations/{config_id}/versions/1");
    Json(json!({
        "configurationVersion": {
            "id": config_id,
            "name": format!("Configuration of {did}"),
            "version": "1",
            "status": "Active",
            "messenger": {
                "enabled": true,
                "fileUpload": {"enableAttachments": spec.enable_attachments, "modes": modes},
            },
            "selfUri": config_uri,
        },
        "deployment": {
            "id": did,
            "name": format!("Deployment {did}"),
            "status": "Active",
            "configuration": {"id": config_id, "version": "1", "selfUri": config_uri},
            "selfUri": format!("/api/v2/webdeployments/deployments/{did}"),
        },
    }))
    .into_response()
}

/// The upload URL. Checks, in this order: signature, `Authorization` absent, method, the
/// `uploadHeaders`, `Content-Length`; then streams and hashes the body and gives the verdict.
async fn upload(
    State(sh): St,
    Path(mid): Path<String>,
    RawQuery(q): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let hub = &sh.messaging;
    let sig = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned());
    let expected = {
        let mut st = lock(&hub.state);
        let Some(m) = st.media.get_mut(&mid) else {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
        };
        if sig.as_deref() != Some(m.sig.as_str()) {
            return s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            );
        }
        m.upload_attempts += 1;
        m.upload_method = Some(method.to_string());
        let headers = m.upload_headers();
        if let Some((n, status)) = st.failing_uploads {
            st.failing_uploads = (n > 1).then_some((n - 1, status));
            return s3_error(status, "ServiceUnavailable", "Simulated fault");
        }
        headers
    };
    if headers.contains_key(header::AUTHORIZATION) {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let allowed = hub.upload_method();
    if method != allowed {
        let mut r = s3_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The specified method is not allowed against this resource ({allowed} is)."),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_str(allowed.as_str()).expect("a method name is a header value"),
        );
        return r;
    }
    for (name, value) in &expected {
        let sent = headers.get(*name).and_then(|v| v.to_str().ok());
        if sent != Some(value.as_str()) {
            return s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                &format!("The signed header {name} is missing or differs from uploadHeaders."),
            );
        }
    }
    if hub.require_content_length.load(Ordering::SeqCst)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        return s3_error(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        );
    }
    if let Some(m) = lock(&hub.state).media.get_mut(&mid) {
        m.status = MediaStatus::Uploading;
        m.polls_left = 0;
    }
    let max = hub.max_bytes.load(Ordering::SeqCst);
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    let mut too_large = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The client went away mid-body: nothing stored, still uploading.
            return s3_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            );
        };
        len += chunk.len() as u64;
        if len > max {
            too_large = true;
            break;
        }
        md5.update(&chunk);
        sha.update(&chunk);
    }
    let md5 = md5.finalize();
    let sha = hex::encode(sha.finalize());
    let polls = hub.uploading_polls.load(Ordering::SeqCst);
    let rejects = hub.scan_rejects.load(Ordering::SeqCst);
    let mut st = lock(&hub.state);
    let Some(m) = st.media.get_mut(&mid) else {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
    };
    if too_large {
        m.status = MediaStatus::Invalid;
        m.received = None;
        return s3_error(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            &format!("Your proposed upload exceeds the maximum allowed size of {max} bytes."),
        );
    }
    let intact = len == m.declared_length && md5 == m.md5;
    m.status = if intact && !rejects {
        MediaStatus::Valid
    } else {
        MediaStatus::Invalid
    };
    m.received = Some((len, sha));
    m.polls_left = polls;
    drop(st);
    let etag = format!("\"{}\"", hex::encode(md5));
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a header value"),
    );
    r
}
