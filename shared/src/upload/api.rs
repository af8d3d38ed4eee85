//! The upload API over HTTP, independent of how requests arrive (a Lambda Function URL in
//! production, a local server in tests and `gc-archive upload-proxy serve`):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /` | the upload page (`web/upload.html`) |
//! | `POST /uploads` | 201 plan and upload id (200 when an idempotency key replays) |
//! | `POST /uploads/{id}/parts` | presigned part URLs for the part checksums given |
//! | `GET /uploads/{id}` | the upload's state, with the parts S3 holds |
//! | `POST /uploads/{id}/complete` | verify, release, deliver: the final state |
//! | `DELETE /uploads/{id}` | abort |
//!
//! Every error is `{"error":{"code","message"}}` with a 4xx/5xx status.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::Utc;
use serde::de::DeserializeOwned;

use super::service::{Caller, UploadError, UploadService};
use super::ticket::{self, TicketKey};

/// The upload page, embedded so the function serves it from its own origin.
pub const UPLOAD_PAGE: &str = include_str!("../../../web/upload.html");

/// How callers prove who they are.
pub enum AuthMode {
    /// The Function URL's `AWS_IAM` auth verified the SigV4 signature; the principal is in
    /// the request context.
    Iam,
    /// Signed tickets (`x-upload-ticket`), for browsers.
    Ticket(TicketKey),
}

#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The caller's ARN when the Function URL authenticated it (AWS_IAM).
    pub iam_principal: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl ApiResponse {
    fn json(status: u16, value: &impl serde::Serialize) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    fn error(e: &UploadError) -> ApiResponse {
        // A storage error names bucket keys and S3's words: the log has them, the caller
        // gets what it can act on.
        let message = match e {
            UploadError::Store(_) => "storage is unavailable at the moment; try again".to_string(),
            other => other.to_string(),
        };
        let mut response = ApiResponse::json(
            e.status(),
            &serde_json::json!({"error": {"code": e.code(), "message": message}}),
        );
        match e {
            UploadError::RateLimited { retry_after, .. } => response
                .headers
                .push(("retry-after".into(), retry_after.as_secs().to_string())),
            UploadError::Busy(_) => response.headers.push(("retry-after".into(), "1".into())),
            _ => {}
        }
        response
    }

    fn page() -> ApiResponse {
        ApiResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/html; charset=utf-8".into()),
                // Inline script and style only; the page talks to its own origin and to S3.
                (
                    "content-security-policy".into(),
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' https: http://127.0.0.1:* http://localhost:*; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'".into(),
                ),
                ("referrer-policy".into(), "no-referrer".into()),
                ("x-content-type-options".into(), "nosniff".into()),
            ],
            body: Bytes::from_static(UPLOAD_PAGE.as_bytes()),
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, UploadError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let reason = crate::text::redact_quoted(&e.inner().to_string());
        UploadError::BadRequest(if path == "." {
            format!("the body is not the expected JSON: {reason}")
        } else {
            format!("{path}: {reason}")
        })
    })
}

fn caller(auth: &AuthMode, request: &ApiRequest) -> Result<Caller, UploadError> {
    match auth {
        AuthMode::Iam => request
            .iam_principal
            .clone()
            .map(|principal| Caller::Iam { principal })
            .ok_or_else(|| UploadError::Unauthorized("the request is not signed".into())),
        AuthMode::Ticket(key) => {
            let t = request.headers.get("x-upload-ticket").ok_or_else(|| {
                UploadError::Unauthorized("an x-upload-ticket header is required".into())
            })?;
            ticket::verify(key, t, Utc::now())
                .map(Caller::Ticket)
                .map_err(|e| UploadError::Unauthorized(e.to_string()))
        }
    }
}

/// Header names lower-cased; values that are not visible ASCII are dropped.
pub fn lowercase_headers(map: &aws_lambda_events::http::HeaderMap) -> HashMap<String, String> {
    map.iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect()
}

/// Answers one request.
pub async fn handle(service: &UploadService, auth: &AuthMode, request: ApiRequest) -> ApiResponse {
    let path = request.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.to_ascii_uppercase();
    if method == "GET" && (segments.is_empty() || segments == ["index.html"]) {
        return ApiResponse::page();
    }
    let route = match segments.as_slice() {
        ["uploads"] => "/uploads",
        ["uploads", _] => "/uploads/{id}",
        ["uploads", _, "parts"] => "/uploads/{id}/parts",
        ["uploads", _, "complete"] => "/uploads/{id}/complete",
        _ => "",
    };
    let result = answer(service, auth, &request, &method, &segments).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(%method, route, status = e.status(), code = %e.code(), error = %e, "upload request failed");
            }
            ApiResponse::error(&e)
        }
    };
    tracing::info!(%method, route, status = response.status, "upload request");
    response
}

async fn answer(
    service: &UploadService,
    auth: &AuthMode,
    request: &ApiRequest,
    method: &str,
    segments: &[&str],
) -> Result<ApiResponse, UploadError> {
    let not_found = || UploadError::NotFound(format!("no route {method} {}", request.path));
    if !matches!(segments.first(), Some(&"uploads")) {
        return Err(not_found());
    }
    let caller = caller(auth, request)?;
    match (method, segments) {
        ("POST", ["uploads"]) => {
            let create = parse(&request.body)?;
            let header_key = request.headers.get("idempotency-key").map(String::as_str);
            let (status, created) = service.create(&caller, create, header_key).await?;
            Ok(ApiResponse::json(status, &created))
        }
        ("POST", ["uploads", id, "parts"]) => {
            let parts = parse(&request.body)?;
            let signed = service.sign_parts(&caller, id, parts).await?;
            Ok(ApiResponse::json(
                200,
                &serde_json::json!({ "parts": signed }),
            ))
        }
        ("POST", ["uploads", id, "complete"]) => {
            let parts = parse(&request.body)?;
            Ok(ApiResponse::json(
                200,
                &service.complete(&caller, id, parts).await?,
            ))
        }
        ("GET", ["uploads", id]) => Ok(ApiResponse::json(200, &service.view(&caller, id).await?)),
        ("DELETE", ["uploads", id]) => {
            Ok(ApiResponse::json(200, &service.abort(&caller, id).await?))
        }
        _ => Err(not_found()),
    }
}
