//! HTTP routes: OAuth, Platform API subset, signed media URLs and `/__sim` admin.

// Handlers return early with a ready `Response` as the error value.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::digest::Md5;
use crate::media::Content;
use crate::model::*;
use crate::state::{
    lock, new_id, AnalyticsJob, Batch, BatchItem, Conv, CustomAttr, Key, Rec, Restore, Shared,
    Store, Target, Variant,
};

type St = State<Arc<Shared>>;

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v2/conversations/{cid}", get(get_conversation))
        .route(
            "/api/v2/conversations/{cid}/recordingmetadata",
            get(list_metadata),
        )
        .route(
            "/api/v2/conversations/{cid}/recordingmetadata/{rid}",
            get(get_metadata),
        )
        .route(
            "/api/v2/conversations/{cid}/recordings/{rid}",
            get(get_recording).put(put_recording),
        )
        .route("/api/v2/recording/batchrequests", post(post_batch))
        .route("/api/v2/recording/batchrequests/{job}", get(get_batch))
        .route(
            "/api/v2/conversations/{cid}/customattributes",
            get(list_custom).put(put_custom).patch(patch_custom),
        )
        .route(
            "/api/v2/conversations/{cid}/customattributes/{aid}",
            get(get_custom).delete(delete_custom),
        )
        .route("/api/v2/conversations/{cid}/tags", put(put_tags))
        .route(
            "/api/v2/analytics/conversations/details/query",
            post(analytics_query),
        )
        .route(
            "/api/v2/analytics/conversations/details/jobs",
            post(post_analytics_job),
        )
        .route(
            "/api/v2/analytics/conversations/details/jobs/{job}",
            get(get_analytics_job),
        )
        .route(
            "/api/v2/analytics/conversations/details/jobs/{job}/results",
            get(get_analytics_job_results),
        )
        .route(
            "/api/v2/organizations/limits/namespaces/{namespace}",
            get(get_limits_namespace),
        )
        .route(
            "/api/v2/integrations",
            get(list_integrations).post(post_integration),
        )
        .route(
            "/api/v2/integrations/{iid}",
            get(get_integration).patch(patch_integration),
        )
        .route(
            "/api/v2/integrations/{iid}/config/current",
            get(get_integration_config).put(put_integration_config),
        )
        .route(
            "/api/v2/recording/mediaretentionpolicies",
            get(list_retention_policies),
        )
        .route(
            "/api/v2/notifications/channels",
            post(crate::notify_api::post_channel),
        )
        .route(
            "/api/v2/notifications/channels/{id}",
            axum::routing::head(crate::notify_api::head_channel),
        )
        .route(
            "/api/v2/notifications/channels/{id}/subscriptions",
            get(crate::notify_api::get_subscriptions)
                .put(crate::notify_api::put_subscriptions)
                .post(crate::notify_api::post_subscriptions),
        )
        .route(
            "/api/v2/routing/queues",
            get(crate::notify_api::list_queues),
        )
        .merge(crate::messaging_api::api_routes())
        .route("/api/v2/{*rest}", axum::routing::any(api_not_found))
        .layer(middleware::from_fn_with_state(sh.clone(), api_mw));
    let admin = Router::new()
        .route(
            "/__sim/faults",
            post(admin_add_fault).delete(admin_clear_faults),
        )
        .route(
            "/__sim/requests",
            get(admin_requests).delete(admin_clear_requests),
        )
        .route(
            "/__sim/conversations",
            get(admin_conversations).post(admin_seed),
        );
    Router::new()
        .route("/oauth/token", post(token))
        .route("/media/{opaque}", get(media))
        .route("/channels/{id}", get(crate::notify_api::socket))
        .merge(crate::messaging_api::upload_routes())
        .merge(api)
        .merge(admin)
        .layer(middleware::from_fn_with_state(sh.clone(), log_mw))
        .with_state(sh)
}

// ---- helpers ------------------------------------------------------------------------------

pub(crate) fn ts(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "message": message,
        "code": code,
        "status": status.as_u16(),
        "contextId": new_id(),
        "details": [],
        "errors": [],
    });
    (status, Json(body)).into_response()
}

fn bad_request(message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad.request", message)
}

fn not_found(message: &str) -> Response {
    api_error(StatusCode::NOT_FOUND, "not.found", message)
}

fn unauthorized() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "bad.credentials",
        "Invalid login credentials.",
    )
}

pub(crate) fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
        new_id()
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn with_retry_after(mut r: Response, secs: Option<u64>) -> Response {
    if let Some(s) = secs {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn status_fault_api(status: u16, retry: Option<u64>) -> Response {
    let sc = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match sc.as_u16() {
        400 => "bad.request",
        401 => "bad.credentials",
        403 => "not.authorized",
        404 => "not.found",
        409 => "conflict",
        429 => "too.many.requests.retry.after",
        503 => "service.unavailable",
        504 => "gateway.timeout",
        _ => "internal.server.error",
    };
    with_retry_after(
        api_error(sc, code, &format!("Simulated fault ({status})")),
        retry,
    )
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

fn query_get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

fn auth_scheme(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| tok.trim().to_string())
}

// ---- body streaming with faults -----------------------------------------------------------

#[derive(Default, Clone)]
struct BodyMods {
    /// (after_bytes, abort_with_error)
    cut: Option<(u64, bool)>,
    rate: Option<u64>,
    content_type: Option<String>,
    shift_range: bool,
}

impl BodyMods {
    fn from_fault(f: &Fault) -> Option<BodyMods> {
        let mut m = BodyMods::default();
        match f {
            Fault::ResetMidBody { after_bytes } => m.cut = Some((*after_bytes, true)),
            Fault::TruncatedBody { after_bytes } => m.cut = Some((*after_bytes, false)),
            Fault::SlowBody { bytes_per_sec } => m.rate = Some((*bytes_per_sec).max(1)),
            Fault::WrongContentType(ct) => m.content_type = Some(ct.clone()),
            Fault::WrongContentRange => m.shift_range = true,
            _ => return None,
        }
        Some(m)
    }
}

const CHUNK: usize = 256 * 1024;

struct StreamState {
    content: Content,
    pos: u64,
    end: u64,
    sent: u64,
    mods: BodyMods,
    done: bool,
}

/// A streaming body of `content[start..end]` (end exclusive) with body faults applied.
fn stream_body(content: Content, start: u64, end: u64, mods: BodyMods) -> Body {
    let st = StreamState {
        content,
        pos: start,
        end,
        sent: 0,
        mods,
        done: false,
    };
    let s = futures::stream::unfold(st, |mut st| async move {
        if st.done || st.pos >= st.end {
            return None;
        }
        let mut max = CHUNK as u64;
        if let Some(rate) = st.mods.rate {
            max = (rate / 20).clamp(1, CHUNK as u64);
        }
        if let Some((after, abort)) = st.mods.cut {
            let left = after.saturating_sub(st.sent);
            if left == 0 {
                st.done = true;
                // Give the already-written headers and bytes a moment to reach the peer.
                tokio::time::sleep(Duration::from_millis(30)).await;
                if abort {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated connection reset",
                    );
                    return Some((Err(e), st));
                }
                return None;
            }
            max = max.min(left);
        }
        let want = max.min(st.end - st.pos) as usize;
        let chunk = st.content.chunk(st.pos, want);
        if chunk.is_empty() {
            return None;
        }
        if let Some(rate) = st.mods.rate {
            let ms = chunk.len() as u64 * 1000 / rate;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        st.pos += chunk.len() as u64;
        st.sent += chunk.len() as u64;
        Some((Ok::<Bytes, std::io::Error>(chunk), st))
    });
    Body::from_stream(s)
}

// ---- request log ----------------------------------------------------------------------------

async fn log_mw(State(sh): St, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/__sim") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = auth_scheme(req.headers());
    let resp = next.run(req).await;
    lock(&sh.requests).push(RequestRecord {
        method,
        path,
        query,
        range,
        auth,
        status: resp.status().as_u16(),
        at: Utc::now(),
    });
    resp
}

// ---- OAuth -----------------------------------------------------------------------------------

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "description": description, "error_description": description})),
    )
        .into_response()
}

async fn token(State(sh): St, headers: HeaderMap, body: Bytes) -> Response {
    match sh.take_fault(Target::Token) {
        Some(Fault::Status {
            status,
            retry_after_secs,
        }) => {
            let sc = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return with_retry_after(
                oauth_error(sc, "server_error", "simulated fault"),
                retry_after_secs,
            );
        }
        Some(Fault::UnauthorizedToken) | Some(Fault::ExpiredUrl) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "authentication failed",
            )
        }
        Some(f) => {
            let resp = token_inner(&sh, &headers, &body);
            return apply_body_fault(resp, &f).await;
        }
        None => {}
    }
    token_inner(&sh, &headers, &body)
}

fn token_inner(sh: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b)| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let client = creds
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .and_then(|(id, secret)| sh.client_for(id, secret));
    let Some(client) = client else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authentication failed",
        );
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    match query_get(&form, "grant_type") {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant type",
            )
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            )
        }
    }
    let tok = sh.issue_token(&client);
    Json(json!({
        "access_token": tok,
        "token_type": "bearer",
        "expires_in": sh.cfg.token_ttl_secs,
    }))
    .into_response()
}

// ---- /api/v2 middleware: faults, auth, rate limit, headers ----------------------------------

#[derive(Clone, Copy)]
struct ForceTranscoding;

/// OAuth client id of the token that authorised the request.
#[derive(Clone)]
pub(crate) struct Caller(pub String);

struct RateInfo {
    count: u32,
    allowed: u32,
    reset: u64,
}

enum AuthOutcome {
    Ok(RateInfo, String),
    Unauthorized,
    Limited(RateInfo),
}

fn check_token(sh: &Shared, tok: Option<&str>) -> AuthOutcome {
    let Some(tok) = tok else {
        return AuthOutcome::Unauthorized;
    };
    let mut toks = lock(&sh.tokens);
    let now = Instant::now();
    let Some(t) = toks.get_mut(tok) else {
        return AuthOutcome::Unauthorized;
    };
    if now >= t.expires {
        toks.remove(tok);
        return AuthOutcome::Unauthorized;
    }
    // Without a configured limit the simulator enforces none and says so: a budget no test
    // reaches (a client that paces by these headers must not slow down for a fake limit).
    let (allowed, window) = match sh.cfg.rate_limit {
        Some(rl) => (rl.requests, rl.window_secs.max(1)),
        None => (UNLIMITED_REQUESTS, 60),
    };
    if now.duration_since(t.window_start).as_secs() >= window {
        t.window_start = now;
        t.count = 0;
    }
    let reset = window.saturating_sub(now.duration_since(t.window_start).as_secs());
    if sh.cfg.rate_limit.is_some() && t.count >= allowed {
        return AuthOutcome::Limited(RateInfo {
            count: t.count,
            allowed,
            reset: reset.max(1),
        });
    }
    t.count = t.count.saturating_add(1);
    AuthOutcome::Ok(
        RateInfo {
            count: t.count,
            allowed,
            reset,
        },
        t.client_id.clone(),
    )
}

async fn api_mw(State(sh): St, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let fault = sh.take_fault(Target::Api(&path));
    let tok = bearer(req.headers());
    let mut info = None;
    let mut resp = match &fault {
        Some(Fault::Status {
            status,
            retry_after_secs,
        }) => status_fault_api(*status, *retry_after_secs),
        Some(Fault::UnauthorizedToken) => unauthorized(),
        Some(Fault::ExpiredUrl) => api_error(
            StatusCode::FORBIDDEN,
            "not.authorized",
            "Simulated expired authorization",
        ),
        _ => {
            match check_token(&sh, tok.as_deref()) {
                AuthOutcome::Unauthorized => unauthorized(),
                AuthOutcome::Limited(ri) => {
                    let r = with_retry_after(
                    api_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too.many.requests.retry.after",
                        &format!("Rate limit exceeded the maximum. Retry the request in [{}] seconds", ri.reset),
                    ),
                    Some(ri.reset),
                );
                    info = Some(ri);
                    r
                }
                AuthOutcome::Ok(ri, client) => {
                    info = Some(ri);
                    let denied = lock(&sh.store).denied_permissions.clone();
                    if let Some(refused) =
                        crate::setup_api::missing_permissions(&denied, req.method(), &path)
                    {
                        return refused;
                    }
                    req.extensions_mut().insert(Caller(client));
                    if matches!(fault, Some(Fault::Transcoding202)) {
                        req.extensions_mut().insert(ForceTranscoding);
                    }
                    let r = next.run(req).await;
                    match &fault {
                        Some(f) => apply_body_fault(r, f).await,
                        None => r,
                    }
                }
            }
        }
    };
    let info = info.unwrap_or(RateInfo {
        count: 0,
        allowed: sh
            .cfg
            .rate_limit
            .map(|r| r.requests)
            .unwrap_or(UNLIMITED_REQUESTS),
        reset: sh.cfg.rate_limit.map(|r| r.window_secs).unwrap_or(60),
    });
    let h = resp.headers_mut();
    for (k, v) in [
        ("inin-ratelimit-count", info.count.to_string()),
        ("inin-ratelimit-allowed", info.allowed.to_string()),
        ("inin-ratelimit-reset", info.reset.to_string()),
        ("ININ-Correlation-Id", new_id()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

/// Re-stream a (small, JSON) response with a body fault applied.
async fn apply_body_fault(resp: Response, f: &Fault) -> Response {
    let Some(mods) = BodyMods::from_fault(f) else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let len = bytes.len() as u64;
    if let Some(ct) = &mods.content_type {
        if let Ok(v) = HeaderValue::from_str(ct) {
            parts.headers.insert(header::CONTENT_TYPE, v);
        }
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(
        parts,
        stream_body(Content::from_static(bytes), 0, len, mods),
    )
}

async fn api_not_found() -> Response {
    not_found("The requested resource was not found.")
}

// ---- conversations ----------------------------------------------------------------------------

async fn get_conversation(State(sh): St, Path(cid): Path<String>) -> Response {
    let st = lock(&sh.store);
    let Some(c) = st.convs.get(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    // `Participant` lists its media sessions by kind (`calls`, `chats`, `messages`, `emails`,
    // `screenshares`), each with its own `direction`.
    let sessions_field = match c
        .recordings
        .first()
        .and_then(|r| st.recs.get(r))
        .map(|r| r.source)
    {
        Some(MediaSource::Chat) => "chats",
        Some(MediaSource::Messaging) => "messages",
        Some(MediaSource::Email) => "emails",
        _ => "calls",
    };
    let participants: Vec<Value> = c
        .participants
        .iter()
        .map(|p| {
            let mut o = json!({
                "id": p.id,
                "startTime": ts(c.start),
                "endTime": ts(c.end),
                "purpose": p.purpose,
                "attributes": p.attributes,
            });
            o[sessions_field] = json!([{
                "id": p.session_id,
                "state": "disconnected",
                "direction": c.direction,
            }]);
            if let Some(code) = &p.wrapup_code {
                o["wrapup"] = json!({"code": code, "name": format!("Wrap-up {code}")});
            }
            if let Some(n) = &p.name {
                o["name"] = json!(n);
            }
            if let Some(u) = &p.user_id {
                o["userId"] = json!(u);
                o["userUri"] = json!(format!("/api/v2/users/{u}"));
            }
            if let Some(q) = &p.queue_id {
                o["queueId"] = json!(q);
            }
            o
        })
        .collect();
    let mut body = json!({
        "id": c.id,
        "startTime": ts(c.start),
        "endTime": ts(c.end),
        "participants": participants,
        "recordingState": "NONE",
        "divisions": [{
            "division": {"id": c.division_id, "selfUri": format!("/api/v2/authorization/divisions/{}", c.division_id)},
            "entities": [],
        }],
        "selfUri": format!("/api/v2/conversations/{}", c.id),
    });
    if let Some(t) = &c.external_tag {
        body["externalTag"] = json!(t);
    }
    Json(body).into_response()
}

fn doc_extension(src: MediaSource, declared: Codec) -> &'static str {
    match src {
        MediaSource::Chat | MediaSource::Messaging => "zip",
        MediaSource::Email => "eml",
        MediaSource::Screen => "webm",
        _ => declared.extension(),
    }
}

fn metadata_json(r: &Rec, state: FileState, region: &str) -> Value {
    let mut o = json!({
        "id": r.id,
        "conversationId": r.conv_id,
        "name": format!("{}.{}", r.id, doc_extension(r.source, r.declared)),
        "startTime": ts(r.start),
        "endTime": ts(r.end),
        "media": r.source.media_type(),
        "annotations": [],
        "fileState": state.as_str(),
        "maxAllowedRestorationsForOrg": 10000,
        "remainingRestorationsAllowedForOrg": 10000,
        "sessionId": r.session_id,
        "region": region,
        "selfUri": format!("/api/v2/conversations/{}/recordingmetadata/{}", r.conv_id, r.id),
    });
    match r.source {
        MediaSource::Screen => o["mediaSubtype"] = json!("Screen"),
        s if s.is_audio() => o["mediaSubtype"] = json!("Trunk"),
        _ => {}
    }
    if state == FileState::Archived || r.restore.is_some() {
        o["archiveDate"] = json!(ts(r.end + chrono::Duration::days(30)));
        o["archiveMedium"] = json!("CLOUDARCHIVE");
    }
    if let (Some(rs), FileState::Restored) = (&r.restore, state) {
        o["restoreExpirationTime"] = json!(ts(rs.expires));
    }
    if state == FileState::Deleted {
        o["deleteDate"] = json!(ts(r.end + chrono::Duration::days(1)));
    }
    for (k, v) in &r.retention {
        o[k.as_str()] = v.clone();
    }
    o
}

/// The `Recording` shape: metadata without `region`, plus output/transcode fields.
fn recording_json(r: &Rec, state: FileState) -> Value {
    let mut o = metadata_json(r, state, REGION);
    if let Some(m) = o.as_object_mut() {
        m.remove("region");
        m.insert(
            "selfUri".into(),
            json!(format!(
                "/api/v2/conversations/{}/recordings/{}",
                r.conv_id, r.id
            )),
        );
        m.insert("outputSizeInBytes".into(), json!(0));
        m.insert("outputDurationMs".into(), json!(0));
        m.insert("estimatedTranscodeTimeMs".into(), json!(0));
        m.insert("actualTranscodeTimeMs".into(), json!(0));
        m.insert("creationTime".into(), json!(ts(r.end)));
    }
    o
}

const REGION: &str = "us-east-1";

async fn list_metadata(State(sh): St, Path(cid): Path<String>) -> Response {
    let mut st = lock(&sh.store);
    let Some(c) = st.convs.get(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    let ids = c.recordings.clone();
    let mut out = Vec::new();
    for rid in ids {
        if let Some(r) = st.recs.get_mut(&rid) {
            let s = r.poll_state();
            out.push(metadata_json(r, s, REGION));
        }
    }
    Json(Value::Array(out)).into_response()
}

async fn get_metadata(State(sh): St, Path((cid, rid)): Path<(String, String)>) -> Response {
    let mut st = lock(&sh.store);
    match st.recs.get_mut(&rid).filter(|r| r.conv_id == cid) {
        Some(r) => {
            let s = r.poll_state();
            Json(metadata_json(r, s, REGION)).into_response()
        }
        None => not_found(&format!("Recording {rid} not found")),
    }
}

/// `formatId` values; `mediaFormats` takes the same minus `NONE`.
const VALID_FORMATS: [&str; 7] = [
    "WAV",
    "WEBM",
    "WAV_ULAW",
    "OGG_VORBIS",
    "OGG_OPUS",
    "MP3",
    "NONE",
];

/// Documented default `formatId`.
const DEFAULT_FORMAT: &str = "WEBM";

/// A 202 from the recording GET, body per [`Behaviour::accepted_body`].
fn accepted(b: &Behaviour, mut o: Value, estimated_ms: u64) -> Response {
    match b.accepted_body {
        AcceptedBody::Empty => StatusCode::ACCEPTED.into_response(),
        AcceptedBody::RecordingJson => {
            o["estimatedTranscodeTimeMs"] = json!(estimated_ms);
            (StatusCode::ACCEPTED, Json(o)).into_response()
        }
    }
}

/// What the recording GET would hand out once the recording is ready.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Metadata,
    Original,
    Rendition(Codec),
}

/// Validate a document format parameter (`chatFormatId` ...) against its two values.
fn doc_format(q: &[(String, String)], name: &str, media_value: &str) -> Result<bool, Response> {
    match query_get(q, name) {
        None => Ok(true),
        Some(v) if v.eq_ignore_ascii_case(media_value) => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("NONE") => Ok(false),
        Some(v) => Err(bad_request(&format!(
            "Invalid {name} value: {v} (expected {media_value} or NONE)"
        ))),
    }
}

async fn get_recording(
    State(sh): St,
    Path((cid, rid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    force: Option<Extension<ForceTranscoding>>,
) -> Response {
    let q = parse_query(q.as_deref());
    let media_formats: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "mediaFormats")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let format_id = query_get(&q, "formatId");
    if let Some(f) = format_id {
        if !VALID_FORMATS.iter().any(|v| v.eq_ignore_ascii_case(f)) {
            return bad_request(&format!("Invalid formatId value: {f}"));
        }
    }
    for f in &media_formats {
        if Codec::from_format_id(f).is_none() {
            return bad_request(&format!("Invalid mediaFormats value: {f}"));
        }
    }
    let (chat, message, email) = match (
        doc_format(&q, "chatFormatId", "ZIP"),
        doc_format(&q, "messageFormatId", "ZIP"),
        doc_format(&q, "emailFormatId", "EML"),
    ) {
        (Ok(c), Ok(m), Ok(e)) => (c, m, e),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    // mediaFormats overrides formatId; the first acceptable format is served.
    let requested = media_formats
        .first()
        .copied()
        .or(format_id)
        .unwrap_or(DEFAULT_FORMAT);
    let b = &sh.cfg.behaviour;
    let none = match b.none_format {
        NoneFormat::MetadataOnly => Want::Metadata,
        NoneFormat::ServesOriginal => Want::Original,
    };
    let mut st = lock(&sh.store);
    let Some(r) = st.recs.get_mut(&rid).filter(|r| r.conv_id == cid) else {
        return not_found(&format!("Recording {rid} not found"));
    };
    let want = match r.source {
        MediaSource::Chat => [Want::Metadata, Want::Original][chat as usize],
        MediaSource::Messaging => [Want::Metadata, Want::Original][message as usize],
        MediaSource::Email => [Want::Metadata, Want::Original][email as usize],
        _ if requested.eq_ignore_ascii_case("NONE") => none,
        MediaSource::Screen => Want::Original,
        _ => Codec::from_format_id(requested).map_or(none, Want::Rendition),
    };
    let state = r.poll_state();
    let mut o = recording_json(r, state);
    match state {
        FileState::Deleted => not_found(&format!("Recording {rid} has been deleted")),
        FileState::Uploading | FileState::Restoring => accepted(b, o, 5000),
        FileState::Archived | FileState::Error => Json(o).into_response(),
        FileState::Available | FileState::Restored => {
            let forced = force.is_some();
            if want == Want::Metadata && !forced {
                return Json(o).into_response();
            }
            if forced || r.transcode_seen < r.transcoding_polls {
                if !forced {
                    r.transcode_seen += 1;
                }
                return accepted(b, o, 2000);
            }
            let ttl = sh.cfg.media_url_ttl_secs;
            let uris: Vec<(&str, Variant)> = match want {
                Want::Rendition(format) => {
                    let encode = r.issue_encode(format, b.transcode_serial);
                    let v = |key| Variant::Rendition {
                        format,
                        key,
                        encode,
                    };
                    match b.media_uri_keys {
                        MediaUriKeys::Single => vec![("S", v(Key::S))],
                        MediaUriKeys::PerChannel => vec![("0", v(Key::Ch0)), ("1", v(Key::Ch1))],
                    }
                }
                _ => vec![("S", Variant::Original)],
            };
            let len = uris
                .first()
                .map(|(_, v)| r.variant_content(*v).len())
                .unwrap_or(0);
            let (rid, dur) = (r.id.clone(), r.duration_ms);
            drop(st);
            let map: Map<String, Value> = uris
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        json!({"mediaUri": sh.media_url(&rid, v, ttl), "waveformData": []}),
                    )
                })
                .collect();
            o["mediaUris"] = Value::Object(map);
            o["outputSizeInBytes"] = json!(len);
            o["outputDurationMs"] = json!(dur);
            o["actualTranscodeTimeMs"] = json!(120);
            Json(o).into_response()
        }
    }
}

/// Retention fields the recording PUT accepts.
const RETENTION_FIELDS: [&str; 3] = ["archiveDate", "deleteDate", "exportDate"];

/// PUT a `Recording`: stores the retention fields; on an ARCHIVED recording an `archiveDate`
/// in the future (or null) starts a restore (RESTORING for 2 polls, then RESTORED).
async fn put_recording(
    State(sh): St,
    Path((cid, rid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let now = Utc::now();
    let mut dates: Vec<(&str, Option<DateTime<Utc>>)> = Vec::new();
    for k in RETENTION_FIELDS {
        match m.get(k) {
            None => {}
            Some(Value::Null) => dates.push((k, None)),
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(d) => dates.push((k, Some(d.with_timezone(&Utc)))),
                Err(_) => return bad_request(&format!("{k} must be an ISO-8601 date-time")),
            },
            Some(_) => return bad_request(&format!("{k} must be an ISO-8601 date-time")),
        }
    }
    let mut st = lock(&sh.store);
    let Some(r) = st.recs.get_mut(&rid).filter(|r| r.conv_id == cid) else {
        return not_found(&format!("Recording {rid} not found"));
    };
    let archive = dates.iter().find(|(k, _)| *k == "archiveDate").map(|d| d.1);
    let restores =
        r.peek_state() == FileState::Archived && archive.is_some_and(|d| d.is_none_or(|d| d > now));
    if restores {
        r.restore = Some(Restore {
            polls_left: 2,
            expires: now + chrono::Duration::hours(48),
        });
    }
    for (k, d) in dates {
        match d {
            Some(d) => r.retention.insert(k.to_string(), json!(ts(d))),
            None => r.retention.remove(k),
        };
    }
    let state = r.peek_state();
    Json(recording_json(r, state)).into_response()
}

// ---- batch downloads ---------------------------------------------------------------------------

const BATCH_MAX: usize = 100;

async fn post_batch(State(sh): St, caller: Option<Extension<Caller>>, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(Value::Array(list)) = m.get("batchDownloadRequestList") else {
        return bad_request("batchDownloadRequestList is required and must be a list");
    };
    if list.is_empty() || list.len() > BATCH_MAX {
        return bad_request(&format!(
            "batchDownloadRequestList must contain between 1 and {BATCH_MAX} requests; it contains {}",
            list.len()
        ));
    }
    let mut requests = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let cid = item.get("conversationId").and_then(Value::as_str);
        let rid = item.get("recordingId");
        match (cid, rid) {
            (Some(c), None | Some(Value::Null)) if !c.is_empty() => {
                requests.push((c.to_string(), None))
            }
            (Some(c), Some(Value::String(r))) if !c.is_empty() => {
                requests.push((c.to_string(), Some(r.clone())))
            }
            _ => {
                return bad_request(&format!(
                    "batchDownloadRequestList[{i}] needs a conversationId and an optional recordingId string"
                ))
            }
        }
    }
    let owner = caller.map(|Extension(Caller(c))| c).unwrap_or_default();
    let mut st = lock(&sh.store);
    let mut items = Vec::new();
    for (cid, rid) in requests {
        match (st.convs.get(&cid), rid) {
            (Some(c), None) => items.extend(c.recordings.iter().map(|r| BatchItem {
                conversation_id: cid.clone(),
                recording_id: Some(r.clone()),
            })),
            (_, rid) => items.push(BatchItem {
                conversation_id: cid,
                recording_id: rid,
            }),
        }
    }
    let id = new_id();
    st.batches.insert(
        id.clone(),
        Batch {
            id: id.clone(),
            owner,
            items,
            gets: 0,
            results: None,
        },
    );
    Json(json!({"id": id, "selfUri": format!("/api/v2/recording/batchrequests/{id}")}))
        .into_response()
}

/// One `BatchDownloadJobResult`.
fn batch_result(
    sh: &Shared,
    convs: &HashMap<String, Conv>,
    recs: &HashMap<String, Rec>,
    item: &BatchItem,
) -> Value {
    let cid = &item.conversation_id;
    let mut o = json!({ "conversationId": cid });
    if let Some(r) = &item.recording_id {
        o["recordingId"] = json!(r);
    }
    let err = |mut o: Value, msg: String| {
        o["errorMsg"] = json!(msg);
        o
    };
    if !convs.contains_key(cid) {
        return err(o, format!("Conversation {cid} was not found."));
    }
    let Some(rid) = &item.recording_id else {
        return err(o, format!("Conversation {cid} has no recordings."));
    };
    let Some(r) = recs.get(rid).filter(|r| &r.conv_id == cid) else {
        return err(
            o,
            format!("Recording {rid} was not found in conversation {cid}."),
        );
    };
    if !r.source.is_audio() {
        return err(
            o,
            format!(
                "Recording {rid} is a {} recording; batch downloads only include audio recordings.",
                r.source.media_type()
            ),
        );
    }
    let msg = match r.peek_state() {
        FileState::Available | FileState::Restored => {
            o["resultUrl"] = json!(sh.media_url(rid, Variant::Original, sh.cfg.batch_url_ttl_secs));
            o["contentType"] = json!(r.content_type(Variant::Original));
            return o;
        }
        FileState::Archived => "is archived; restore it before downloading",
        FileState::Restoring => "is being restored and cannot be downloaded yet",
        FileState::Deleted => "has been deleted",
        FileState::Error => "is in an error state and cannot be downloaded",
        FileState::Uploading => "is not available yet (still uploading)",
    };
    err(o, format!("Recording {rid} {msg}."))
}

async fn get_batch(
    State(sh): St,
    Path(job): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let who = caller.map(|Extension(Caller(c))| c).unwrap_or_default();
    let mut guard = lock(&sh.store);
    let Store {
        convs,
        recs,
        batches,
        ..
    } = &mut *guard;
    let Some(batch) = batches.get_mut(&job).filter(|b| b.owner == who) else {
        return not_found(&format!("Batch request {job} not found"));
    };
    batch.gets = batch.gets.saturating_add(1);
    let expected = batch.items.len();
    let self_uri = format!("/api/v2/recording/batchrequests/{}", batch.id);
    if batch.gets <= sh.cfg.batch_polls {
        return Json(json!({
            "id": batch.id,
            "jobId": batch.id,
            "expectedResultCount": expected,
            "resultCount": 0,
            "errorCount": 0,
            "status": "InProgress",
            "results": [],
            "selfUri": self_uri,
        }))
        .into_response();
    }
    let results = batch
        .results
        .get_or_insert_with(|| {
            batch
                .items
                .iter()
                .map(|i| batch_result(&sh, convs, recs, i))
                .collect()
        })
        .clone();
    let errors = results
        .iter()
        .filter(|r| r.get("errorMsg").is_some())
        .count();
    Json(json!({
        "id": job,
        "jobId": job,
        "expectedResultCount": expected,
        "resultCount": results.len(),
        "errorCount": errors,
        "status": "Completed",
        "results": results,
        "selfUri": self_uri,
    }))
    .into_response()
}

// ---- custom attributes & tags -------------------------------------------------------------------

fn custom_json(cid: &str, a: &CustomAttr) -> Value {
    json!({
        "id": a.id,
        "conversationId": cid,
        "divisions": a.divisions,
        "schema": {"id": a.schema_id, "selfUri": format!("/api/v2/conversations/customattributes/schemas/{}", a.schema_id)},
        "customAttributes": a.attrs,
        "customAttributesTimestamps": a.timestamps,
        "version": a.version,
        "dateCreated": ts(a.created),
        "dateModified": ts(a.modified),
        "selfUri": format!("/api/v2/conversations/{cid}/customattributes/{}", a.id),
    })
}

async fn list_custom(State(sh): St, Path(cid): Path<String>) -> Response {
    let st = lock(&sh.store);
    let Some(c) = st.convs.get(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    let results: Vec<Value> = c.custom.iter().map(|a| custom_json(&cid, a)).collect();
    match sh.cfg.behaviour.custom_attributes_list {
        CustomAttributesListShape::Results => Json(json!({ "results": results })),
        CustomAttributesListShape::Entities => Json(json!({ "entities": results })),
        CustomAttributesListShape::BareArray => Json(Value::Array(results)),
    }
    .into_response()
}

async fn get_custom(State(sh): St, Path((cid, aid)): Path<(String, String)>) -> Response {
    let st = lock(&sh.store);
    match st
        .convs
        .get(&cid)
        .and_then(|c| c.custom.iter().find(|a| a.id == aid))
    {
        Some(a) => Json(custom_json(&cid, a)).into_response(),
        None => not_found("Custom attributes not found"),
    }
}

async fn delete_custom(State(sh): St, Path((cid, aid)): Path<(String, String)>) -> Response {
    let mut st = lock(&sh.store);
    let Some(c) = st.convs.get_mut(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    let before = c.custom.len();
    c.custom.retain(|a| a.id != aid);
    if c.custom.len() == before {
        return not_found("Custom attributes not found");
    }
    StatusCode::NO_CONTENT.into_response()
}

fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request("Request body must be a JSON object")),
        Err(e) => Err(bad_request(&format!("Invalid JSON body: {e}"))),
    }
}

fn conflict(stored: u64, supplied: u64) -> Response {
    api_error(
        StatusCode::CONFLICT,
        "conflict",
        &format!("Version conflict: supplied version {supplied}, current version {stored}"),
    )
}

fn str_list(v: Option<&Value>) -> Result<Option<Vec<String>>, Response> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad_request("divisions must be a list of ids"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad_request("divisions must be a list of ids")),
    }
}

fn version_of(m: &Map<String, Value>) -> Result<Option<u64>, Response> {
    match m.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad_request("version must be a non-negative integer")),
    }
}

fn attrs_of(m: &Map<String, Value>) -> Result<Map<String, Value>, Response> {
    match m.get("customAttributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(bad_request("customAttributes must be an object")),
    }
}

/// PUT: create or replace one record; answers `CustomAttributesIdResponse` `{id}`.
async fn put_custom(State(sh): St, Path(cid): Path<String>, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (version, attrs, divisions) =
        match (version_of(&m), attrs_of(&m), str_list(m.get("divisions"))) {
            (Ok(v), Ok(a), Ok(d)) => (v, a, d.unwrap_or_default()),
            (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
        };
    let id = m.get("id").and_then(Value::as_str).map(str::to_string);
    let schema_id = m
        .get("schemaId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut st = lock(&sh.store);
    let Some(c) = st.convs.get_mut(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    let now = Utc::now();
    let stamp = |attrs: &Map<String, Value>| -> Map<String, Value> {
        attrs.keys().map(|k| (k.clone(), json!(ts(now)))).collect()
    };
    let existing = id
        .as_deref()
        .and_then(|id| c.custom.iter_mut().find(|a| a.id == id));
    match existing {
        Some(a) => {
            if let Some(v) = version {
                if v != a.version {
                    return conflict(a.version, v);
                }
            }
            if let Some(s) = &schema_id {
                if *s != a.schema_id {
                    return bad_request("schemaId cannot be updated");
                }
            }
            a.timestamps = stamp(&attrs);
            a.attrs = attrs;
            a.divisions = divisions;
            a.version += 1;
            a.modified = now;
            Json(json!({"id": a.id})).into_response()
        }
        None => {
            let Some(schema_id) = schema_id else {
                return bad_request("schemaId is required to create custom attributes");
            };
            if let Some(v) = version {
                if v != 0 {
                    return conflict(0, v);
                }
            }
            let id = id.unwrap_or_else(new_id);
            c.custom.push(CustomAttr {
                id: id.clone(),
                schema_id,
                divisions,
                timestamps: stamp(&attrs),
                attrs,
                version: 1,
                created: now,
                modified: now,
            });
            Json(json!({ "id": id })).into_response()
        }
    }
}

/// PATCH: merge into an existing record (JSON `null` removes a key); answers 204.
async fn patch_custom(State(sh): St, Path(cid): Path<String>, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (version, attrs, divisions) =
        match (version_of(&m), attrs_of(&m), str_list(m.get("divisions"))) {
            (Ok(v), Ok(a), Ok(d)) => (v, a, d),
            (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
        };
    let id = m.get("id").and_then(Value::as_str).map(str::to_string);
    let mut st = lock(&sh.store);
    let Some(c) = st.convs.get_mut(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    let target = match &id {
        Some(id) => c.custom.iter_mut().find(|a| &a.id == id),
        None if c.custom.len() == 1 => c.custom.first_mut(),
        None => return bad_request("id is required"),
    };
    let Some(a) = target else {
        return not_found("Custom attributes not found");
    };
    if let Some(v) = version {
        if v != a.version {
            return conflict(a.version, v);
        }
    }
    let now = ts(Utc::now());
    for (k, v) in attrs {
        if v.is_null() {
            a.attrs.remove(&k);
            a.timestamps.remove(&k);
        } else {
            a.attrs.insert(k.clone(), v);
            a.timestamps.insert(k, json!(now));
        }
    }
    if let Some(d) = divisions {
        a.divisions = d;
    }
    a.version += 1;
    a.modified = Utc::now();
    StatusCode::NO_CONTENT.into_response()
}

/// PUT tags: body `ConversationTagsUpdate{externalTag}`; the SDK's response type is `str`.
async fn put_tags(State(sh): St, Path(cid): Path<String>, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let tag = match m.get("externalTag") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return bad_request("externalTag must be a string"),
    };
    let mut st = lock(&sh.store);
    let Some(c) = st.convs.get_mut(&cid) else {
        return not_found(&format!("Conversation {cid} not found"));
    };
    c.external_tag = tag.clone();
    (StatusCode::ACCEPTED, Json(json!(tag.unwrap_or_default()))).into_response()
}

/// The budget reported when no rate limit is configured.
const UNLIMITED_REQUESTS: u32 = 1_000_000;

// ---- analytics ----------------------------------------------------------------------------------

fn wants_recording(filters: Option<&Value>) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Array(a) => a.iter().any(walk),
            Value::Object(o) => {
                let is_pred = o.get("dimension").and_then(Value::as_str) == Some("recording")
                    && o.get("value").and_then(Value::as_str).unwrap_or("true") == "true";
                is_pred
                    || o.get("predicates").is_some_and(walk)
                    || o.get("clauses").is_some_and(walk)
            }
            _ => false,
        }
    }
    filters.is_some_and(walk)
}

fn conversation_ids_filter(filters: Option<&Value>) -> Option<Vec<String>> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                if o.get("dimension").and_then(Value::as_str) == Some("conversationId") {
                    if let Some(s) = o.get("value").and_then(Value::as_str) {
                        out.push(s.to_string());
                    }
                }
                for k in ["predicates", "clauses"] {
                    if let Some(x) = o.get(k) {
                        walk(x, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(filters?, &mut out);
    (!out.is_empty()).then_some(out)
}

/// What a details query (sync or async) selects.
struct Selection {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    only_recorded: bool,
    ids: Option<Vec<String>>,
    order_by_end: bool,
    desc: bool,
}

fn select_conversations<'a>(st: &'a Store, q: &Selection) -> Vec<&'a Conv> {
    let mut convs: Vec<_> = st
        .convs
        .values()
        .filter(|c| c.start >= q.start && c.start < q.end)
        .filter(|c| !q.only_recorded || !c.recordings.is_empty())
        .filter(|c| q.ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .collect();
    convs.sort_by_key(|c| (if q.order_by_end { c.end } else { c.start }, c.id.clone()));
    if q.desc {
        convs.reverse();
    }
    convs
}

/// One `AnalyticsConversation` as the details query and the async jobs return it.
fn render_conversation(st: &Store, c: &Conv) -> Value {
    let recorded = !c.recordings.is_empty();
    let media_type = match c
        .recordings
        .first()
        .and_then(|r| st.recs.get(r))
        .map(|r| r.source)
    {
        Some(MediaSource::Chat) => "chat",
        Some(MediaSource::Messaging) => "message",
        Some(MediaSource::Email) => "email",
        _ => "voice",
    };
    let participants: Vec<Value> = c
        .participants
        .iter()
        .map(|p| {
            let mut session = json!({
                "mediaType": media_type,
                "sessionId": p.session_id,
                "direction": c.direction,
                "segments": [{
                    "segmentStart": ts(c.start),
                    "segmentEnd": ts(c.end),
                    "segmentType": "interact",
                    "disconnectType": "endpoint",
                }],
            });
            if recorded && p.purpose != "acd" {
                session["recording"] = json!(true);
            }
            let mut o = json!({
                "participantId": p.id,
                "purpose": p.purpose,
                "sessions": [session],
            });
            if let Some(n) = &p.name {
                o["participantName"] = json!(n);
            }
            if let Some(u) = &p.user_id {
                o["userId"] = json!(u);
            }
            o
        })
        .collect();
    let mut o = json!({
        "conversationId": c.id,
        "conversationStart": ts(c.start),
        "originatingDirection": c.direction,
        "divisionIds": [c.division_id],
        "participants": participants,
    });
    // A conversation still running has no conversationEnd yet (AnalyticsConversation).
    if c.end <= Utc::now() {
        o["conversationEnd"] = json!(ts(c.end));
    }
    if let Some(t) = &c.external_tag {
        o["externalTag"] = json!(t);
    }
    o
}

async fn analytics_query(State(sh): St, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(interval) = m.get("interval").and_then(Value::as_str) else {
        return bad_request("interval is required");
    };
    let Some((a, b)) = interval.split_once('/') else {
        return bad_request("interval must be <start>/<end> in ISO-8601");
    };
    let (start, end) = match (
        DateTime::parse_from_rfc3339(a.trim()),
        DateTime::parse_from_rfc3339(b.trim()),
    ) {
        (Ok(s), Ok(e)) => (s.with_timezone(&Utc), e.with_timezone(&Utc)),
        _ => return bad_request("interval must be <start>/<end> in ISO-8601"),
    };
    if end <= start {
        return bad_request("interval end must be after its start");
    }
    if end - start > chrono::Duration::days(7) {
        return bad_request("Max interval length exceeded. Maximum interval is 7 days.");
    }
    let paging = m.get("paging");
    let page_size = paging
        .and_then(|p| p.get("pageSize"))
        .map(|v| v.as_u64().ok_or(()))
        .unwrap_or(Ok(25));
    let page_number = paging
        .and_then(|p| p.get("pageNumber"))
        .map(|v| v.as_u64().ok_or(()))
        .unwrap_or(Ok(1));
    let (page_size, page_number) = match (page_size, page_number) {
        (Ok(s), Ok(n)) if (1..=100).contains(&s) && n >= 1 => (s as usize, n as usize),
        _ => return bad_request("paging.pageSize must be 1..100 and paging.pageNumber >= 1"),
    };
    if (page_number - 1).saturating_mul(page_size) >= sh.cfg.analytics_max_rows {
        return bad_request(&format!(
            "paging past {} results is not allowed: narrow the interval or use an async job",
            sh.cfg.analytics_max_rows
        ));
    }
    let desc = m
        .get("order")
        .and_then(Value::as_str)
        .is_some_and(|o| o.eq_ignore_ascii_case("desc"));
    let order_by_end = m.get("orderBy").and_then(Value::as_str) == Some("conversationEnd");
    let only_recorded = wants_recording(m.get("segmentFilters"));
    let ids = conversation_ids_filter(m.get("conversationFilters"));

    let st = lock(&sh.store);
    let convs = select_conversations(
        &st,
        &Selection {
            start,
            end,
            only_recorded,
            ids,
            order_by_end,
            desc,
        },
    );
    let total = convs.len();
    // A query pages through at most `analytics_max_rows` rows (the last page is cut there).
    let first = (page_number - 1).saturating_mul(page_size);
    let page: Vec<Value> = convs
        .iter()
        .skip(first)
        .take(page_size.min(sh.cfg.analytics_max_rows - first))
        .map(|c| render_conversation(&st, c))
        .collect();
    let mut out = json!({ "totalHits": total });
    if !page.is_empty() {
        out["conversations"] = Value::Array(page);
    }
    Json(out).into_response()
}

// ---- async analytics jobs (genesys-api.md 3.7) -----------------------------------------------

/// `GET /api/v2/organizations/limits/namespaces/{namespaceName}` (`LimitsEntityListing` of
/// `Limit {key, namespace, value}`). With [`OrgLimits::PerTokenPerMinute`], `platform.api`
/// carries the per-token request limit the simulator enforces, as requests per minute; by
/// default (the key name is UNCONFIRMED) and in the other known namespaces, nothing is listed.
async fn get_limits_namespace(State(sh): St, Path(namespace): Path<String>) -> Response {
    const KNOWN: [&str; 5] = [
        "platform.api",
        "recording",
        "notifications",
        "web.messaging",
        "analytics",
    ];
    if !KNOWN.contains(&namespace.as_str()) {
        return not_found(&format!("Namespace {namespace} not found"));
    }
    let mut entities = Vec::new();
    if namespace == "platform.api" && sh.cfg.behaviour.org_limits == OrgLimits::PerTokenPerMinute {
        let per_minute = sh.cfg.rate_limit.map_or(UNLIMITED_REQUESTS, |r| {
            u32::try_from(u64::from(r.requests) * 60 / r.window_secs.max(1)).unwrap_or(u32::MAX)
        });
        entities.push(json!({
            "key": "client.credentials.token.rate.per.minute",
            "namespace": "platform.api",
            "value": per_minute,
        }));
    }
    Json(json!({ "entities": entities })).into_response()
}

/// `POST .../details/jobs` (`AsyncConversationQuery`): any interval (history is what the jobs
/// are for), the same filters as the sync query; `202 {jobId}`.
async fn post_analytics_job(
    State(sh): St,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some((a, b)) = m
        .get("interval")
        .and_then(Value::as_str)
        .and_then(|i| i.split_once('/'))
    else {
        return bad_request("interval is required: <start>/<end> in ISO-8601");
    };
    let (start, end) = match (
        DateTime::parse_from_rfc3339(a.trim()),
        DateTime::parse_from_rfc3339(b.trim()),
    ) {
        (Ok(s), Ok(e)) if e > s => (s.with_timezone(&Utc), e.with_timezone(&Utc)),
        _ => return bad_request("interval must be <start>/<end> in ISO-8601, end after start"),
    };
    let id = new_id();
    let owner = caller.map(|Extension(Caller(c))| c).unwrap_or_default();
    lock(&sh.store).analytics_jobs.insert(
        id.clone(),
        AnalyticsJob {
            owner,
            start,
            end,
            only_recorded: wants_recording(m.get("segmentFilters")),
            gets: 0,
        },
    );
    (StatusCode::ACCEPTED, Json(json!({ "jobId": id }))).into_response()
}

/// `GET .../details/jobs/{jobId}`: `QUEUED` for the first [`SimConfig::batch_polls`] polls,
/// then `FULFILLED`. Only the submitting client sees the job.
async fn get_analytics_job(
    State(sh): St,
    Path(job): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let who = caller.map(|Extension(Caller(c))| c).unwrap_or_default();
    let mut st = lock(&sh.store);
    let Some(j) = st.analytics_jobs.get_mut(&job).filter(|j| j.owner == who) else {
        return not_found(&format!("Analytics job {job} not found"));
    };
    j.gets = j.gets.saturating_add(1);
    let state = if j.gets <= sh.cfg.batch_polls {
        "QUEUED"
    } else {
        "FULFILLED"
    };
    Json(json!({
        "state": state,
        "expirationDate": ts(Utc::now() + chrono::Duration::days(1)),
    }))
    .into_response()
}

/// `GET .../details/jobs/{jobId}/results?cursor=&pageSize=`: `{conversations, cursor}`, the
/// cursor absent on the last page. Before the job is fulfilled: 400.
async fn get_analytics_job_results(
    State(sh): St,
    Path(job): Path<String>,
    caller: Option<Extension<Caller>>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = parse_query(q.as_deref());
    let who = caller.map(|Extension(Caller(c))| c).unwrap_or_default();
    let st = lock(&sh.store);
    let Some(j) = st.analytics_jobs.get(&job).filter(|j| j.owner == who) else {
        return not_found(&format!("Analytics job {job} not found"));
    };
    if j.gets <= sh.cfg.batch_polls {
        return bad_request(&format!("Analytics job {job} is not fulfilled yet"));
    }
    let page_size = match query_get(&q, "pageSize").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad_request("pageSize must be 1..1000"),
    };
    let offset =
        match query_get(&q, "cursor").map(|c| c.strip_prefix("after-").map(str::parse::<usize>)) {
            None => 0,
            Some(Some(Ok(n))) => n,
            Some(_) => return bad_request("cursor is not one this job handed out"),
        };
    let convs = select_conversations(
        &st,
        &Selection {
            start: j.start,
            end: j.end,
            only_recorded: j.only_recorded,
            ids: None,
            order_by_end: false,
            desc: false,
        },
    );
    let page: Vec<Value> = convs
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|c| render_conversation(&st, c))
        .collect();
    let mut out = json!({
        "conversations": page,
        "dataAvailabilityDate": ts(Utc::now()),
    });
    if offset + page_size < convs.len() {
        out["cursor"] = json!(format!("after-{}", offset + page_size));
    }
    Json(out).into_response()
}

// ---- signed media ------------------------------------------------------------------------------

enum RangeReq {
    Full,
    Partial(u64, u64), // inclusive
    Unsatisfiable,
}

fn parse_range(h: Option<&str>, total: u64) -> RangeReq {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full; // multi-range: like S3, serve the whole object
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // suffix range
        return match b.parse::<u64>() {
            Ok(0) => RangeReq::Unsatisfiable,
            Ok(n) if total > 0 => RangeReq::Partial(total.saturating_sub(n), total - 1),
            Ok(_) => RangeReq::Unsatisfiable,
            Err(_) => RangeReq::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return RangeReq::Full,
        }
    };
    if start >= total {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Partial(start, end.unwrap_or(total - 1).min(total - 1))
}

/// An expired or invalidated signed URL, status per [`Behaviour::expired_url`].
fn expired(sh: &Shared) -> Response {
    let e = sh.cfg.behaviour.expired_url;
    let sc = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    let code = match e {
        ExpiredUrl::BadRequest => "ExpiredToken",
        _ => "AccessDenied",
    };
    s3_error(sc, code, "Request has expired")
}

fn no_such_key() -> Response {
    s3_error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
    )
}

/// S3 multipart part size used for the opaque `ETag` part count.
const ETAG_PART: u64 = 8 * 1024 * 1024;

/// (MD5, SHA-256) of a whole variant, computed once per distinct byte stream.
async fn digests(sh: &Shared, id: String, content: Content) -> ([u8; 16], [u8; 32]) {
    if let Some(d) = lock(&sh.digests).get(&id) {
        return *d;
    }
    let d = tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut md5 = Md5::new();
        let mut sha = sha2::Sha256::new();
        let mut off = 0u64;
        loop {
            let c = content.chunk(off, 1024 * 1024);
            if c.is_empty() {
                break;
            }
            md5.update(&c);
            sha.update(&c);
            off += c.len() as u64;
        }
        let sha: [u8; 32] = sha.finalize().into();
        (md5.finalize(), sha)
    })
    .await
    .unwrap_or(([0; 16], [0; 32]));
    lock(&sh.digests).insert(id, d);
    d
}

async fn media(
    State(sh): St,
    Path(opaque): Path<String>,
    RawQuery(q): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let q = parse_query(q.as_deref());
    let (Some(expires), Some(sig)) = (
        query_get(&q, "expires").and_then(|e| e.parse::<i64>().ok()),
        query_get(&q, "sig"),
    ) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the expires and sig parameters",
        );
    };
    let gen = sh.media_gen.load(Ordering::SeqCst);
    if sh.sign(&opaque, expires, gen) != sig {
        let old = (0..gen)
            .rev()
            .take(64)
            .any(|g| sh.sign(&opaque, expires, g) == sig);
        return if old {
            expired(&sh)
        } else {
            s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        };
    }
    if Utc::now().timestamp() > expires {
        return expired(&sh);
    }
    let Some((rid, variant)) = Shared::parse_opaque(&opaque) else {
        return no_such_key();
    };
    let found = {
        let st = lock(&sh.store);
        st.recs.get(&rid).map(|r| {
            (
                r.variant_content(variant),
                r.content_type(variant),
                r.peek_state(),
            )
        })
    };
    let Some((content, accurate_type, state)) = found else {
        return no_such_key();
    };
    if state == FileState::Deleted {
        return no_such_key();
    }
    let mut mods = BodyMods::default();
    match sh.take_fault(Target::Media(&rid)) {
        Some(Fault::Status {
            status,
            retry_after_secs,
        }) => {
            let sc = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status {
                503 => "SlowDown",
                403 => "AccessDenied",
                404 => "NoSuchKey",
                _ => "InternalError",
            };
            return with_retry_after(s3_error(sc, code, "Simulated fault"), retry_after_secs);
        }
        Some(Fault::ExpiredUrl) | Some(Fault::UnauthorizedToken) => return expired(&sh),
        Some(Fault::Transcoding202) => return StatusCode::ACCEPTED.into_response(),
        Some(f) => mods = BodyMods::from_fault(&f).unwrap_or_default(),
        None => {}
    }
    let b = &sh.cfg.behaviour;
    let total = content.len();
    let range_hdr = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = if sh.ignore_range.load(Ordering::SeqCst) {
        RangeReq::Full
    } else {
        parse_range(range_hdr, total)
    };
    let ct = mods.content_type.clone().unwrap_or_else(|| {
        match b.media_content_type {
            MediaContentType::OctetStream => "binary/octet-stream",
            MediaContentType::Accurate => accurate_type,
        }
        .to_string()
    });
    let bytes_id = variant.bytes_id(&rid);
    let checksums = if b.media_checksums {
        Some(digests(&sh, bytes_id.clone(), content.clone()).await)
    } else {
        None
    };
    let etag = match &checksums {
        Some((md5, _)) => format!("\"{}\"", hex::encode(md5)),
        None => format!(
            "\"{}-{}\"",
            &sh.sign(&bytes_id, 0, 0)[..32],
            total.div_ceil(ETAG_PART).max(1)
        ),
    };
    let mut b = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, ct)
        .header(header::ETAG, etag)
        .header("x-amz-request-id", new_id());
    let (status, start, end_incl) = match range {
        RangeReq::Unsatisfiable => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .header(header::CONTENT_TYPE, "application/xml")
                .body(Body::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>",
                ))
                .unwrap_or_else(|_| StatusCode::RANGE_NOT_SATISFIABLE.into_response());
        }
        RangeReq::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeReq::Full if mods.shift_range && total > 0 => {
            (StatusCode::PARTIAL_CONTENT, 0, total - 1)
        }
        RangeReq::Full => (StatusCode::OK, 0, total.saturating_sub(1)),
    };
    let len = if total == 0 { 0 } else { end_incl - start + 1 };
    let checksum_mode = headers
        .get("x-amz-checksum-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("ENABLED"));
    if let (Some((_, sha)), true, true) = (&checksums, checksum_mode, len == total) {
        b = b.header(
            "x-amz-checksum-sha256",
            base64::engine::general_purpose::STANDARD.encode(sha),
        );
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let (s, e) = if mods.shift_range {
            (start + WRONG_RANGE_SHIFT, end_incl + WRONG_RANGE_SHIFT)
        } else {
            (start, end_incl)
        };
        b = b.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{total}"));
    }
    b = b.status(status).header(header::CONTENT_LENGTH, len);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        stream_body(content, start, start + len, mods)
    };
    b.body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// ---- admin -------------------------------------------------------------------------------------

async fn admin_add_fault(State(sh): St, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultRule>(&body) {
        Ok(rule) => {
            sh.add_fault(rule);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&format!("Invalid FaultRule: {e}")),
    }
}

async fn admin_clear_faults(State(sh): St) -> Response {
    sh.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_requests(State(sh): St) -> Response {
    Json(lock(&sh.requests).clone()).into_response()
}

async fn admin_clear_requests(State(sh): St) -> Response {
    lock(&sh.requests).clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_conversations(State(sh): St) -> Response {
    Json(sh.summaries()).into_response()
}

/// Body: `SeedSpec` (`{"conversations":5,"days":2,"rng_seed":7}`; `rng_seed` optional).
async fn admin_seed(State(sh): St, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(n) = m.get("conversations").and_then(Value::as_u64) else {
        return bad_request("conversations (integer) is required");
    };
    let days = m.get("days").and_then(Value::as_u64).unwrap_or(1).min(365) as u32;
    let rng_seed = m
        .get("rng_seed")
        .and_then(Value::as_u64)
        .unwrap_or_else(rand::random);
    let ids = sh.seed(SeedSpec {
        conversations: n.min(100_000) as usize,
        days,
        rng_seed,
    });
    let all = sh.summaries();
    let out: Vec<_> = all.into_iter().filter(|c| ids.contains(&c.id)).collect();
    (StatusCode::CREATED, Json(out)).into_response()
}

// ---- integrations and retention policies (gc-archive setup) ---------------------------------

fn page_of(q: &[(String, String)]) -> (usize, usize) {
    let n = |k: &str, d: usize| {
        query_get(q, k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(d)
    };
    (n("pageSize", 25), n("pageNumber", 1))
}

async fn list_integrations(State(sh): St, RawQuery(q): RawQuery) -> Response {
    let q = parse_query(q.as_deref());
    let (size, number) = page_of(&q);
    let all = lock(&sh.store)
        .integrations
        .iter()
        .map(|i| i.render())
        .collect();
    Json(crate::setup_api::listing(all, size, number)).into_response()
}

async fn post_integration(State(sh): St, body: Bytes) -> Response {
    let m = match parse_json_object(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(type_id) = m
        .get("integrationType")
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
    else {
        return bad_request("integrationType.id is required");
    };
    let integration = crate::setup_api::Integration {
        id: new_id(),
        name: m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(type_id)
            .to_string(),
        type_id: type_id.to_string(),
        intended_state: "DISABLED".into(),
        config_version: 1,
        config: json!({"name": type_id, "properties": {}, "advanced": {}, "notes": "", "credentials": {}}),
    };
    let out = integration.render();
    lock(&sh.store).integrations.push(integration);
    Json(out).into_response()
}

async fn get_integration(State(sh): St, Path(iid): Path<String>) -> Response {
    match lock(&sh.store).integrations.iter().find(|i| i.id == iid) {
        Some(i) => Json(i.render()).into_response(),
        None => not_found(&format!("Integration {iid} not found")),
    }
}

/// Runs `change` on integration `iid` with the request's JSON object; 404 and 400 answered.
fn change_integration(
    sh: &Shared,
    iid: &str,
    body: &[u8],
    change: impl FnOnce(&mut crate::setup_api::Integration, Map<String, Value>) -> Response,
) -> Response {
    let m = match parse_json_object(body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut st = lock(&sh.store);
    match st.integrations.iter_mut().find(|i| i.id == iid) {
        Some(i) => change(i, m),
        None => not_found(&format!("Integration {iid} not found")),
    }
}

async fn patch_integration(State(sh): St, Path(iid): Path<String>, body: Bytes) -> Response {
    change_integration(&sh, &iid, &body, |i, m| {
        if let Some(state) = m.get("intendedState").and_then(Value::as_str) {
            if !["ENABLED", "DISABLED"].contains(&state) {
                return bad_request("intendedState must be ENABLED or DISABLED");
            }
            i.intended_state = state.to_string();
        }
        Json(i.render()).into_response()
    })
}

async fn get_integration_config(State(sh): St, Path(iid): Path<String>) -> Response {
    match lock(&sh.store).integrations.iter().find(|i| i.id == iid) {
        Some(i) => Json(i.render_config()).into_response(),
        None => not_found(&format!("Integration {iid} not found")),
    }
}

async fn put_integration_config(State(sh): St, Path(iid): Path<String>, body: Bytes) -> Response {
    change_integration(&sh, &iid, &body, |i, m| {
        let supplied = m.get("version").and_then(Value::as_u64).unwrap_or(0);
        if supplied != i.config_version {
            return conflict(i.config_version, supplied);
        }
        if !m.get("properties").is_some_and(Value::is_object) {
            return bad_request("properties must be an object");
        }
        i.config_version += 1;
        i.config = json!({
            "name": m.get("name").cloned().unwrap_or(json!(i.type_id)),
            "properties": m["properties"],
            "advanced": m.get("advanced").cloned().unwrap_or(json!({})),
            "notes": m.get("notes").cloned().unwrap_or(json!("")),
            "credentials": m.get("credentials").cloned().unwrap_or(json!({})),
        });
        Json(i.render_config()).into_response()
    })
}

async fn list_retention_policies(State(sh): St, RawQuery(q): RawQuery) -> Response {
    let q = parse_query(q.as_deref());
    let (size, number) = page_of(&q);
    let all = lock(&sh.store).retention_policies.clone();
    Json(crate::setup_api::listing(all, size, number)).into_response()
}
