//! upload-proxy's rig: the simulator and moto ([`LocalStack`]), the upload API built by
//! `bootstrap::upload_runtime` exactly as the Lambda builds it, served over HTTP on loopback
//! (what a Function URL does in AWS), and a client that uploads the way the page does, with
//! knobs to misbehave.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use gc_archive::handlers::upload_proxy::UploadRuntime;
use gc_archive::ids::ConversationId;
use gc_archive::upload::ticket::{self, Grant, TicketKey};
use gc_archive::upload::{handle, ApiRequest};
use genesys_sim::{ConversationSpec, SentMessage};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::stack::{LocalStack, StackOptions, BUCKET};

/// The ticket key the rig's runtime is configured with (`UPLOAD_TICKET_KEY`).
pub const TICKET_KEY: &str = "upload-rig-ticket-key-0123456789abcdef";
pub const COMMUNICATION: &str = "agent-communication-1";

#[derive(Default)]
pub struct RigOptions {
    /// Over the function's environment (e.g. `UPLOAD_ATTACH_MAX_MIB`).
    pub env: Vec<(&'static str, String)>,
    pub iam: bool,
    /// IAM mode: actions taken out of the template's policy (to prove each is needed).
    pub without_actions: Vec<&'static str>,
}

pub struct UploadRig {
    pub stack: LocalStack,
    /// `http://127.0.0.1:PORT`: the page at `/`, the API under `/uploads`.
    pub base_url: String,
    pub conversation_id: String,
    pub http: reqwest::Client,
    /// IAM mode: moto's IAM check fails on presigned (query-signed) requests (HTTP 500), so
    /// [`upload`] sends the parts as UploadPart signed in the header by the same user the
    /// function runs as: the same action under the same policy a part URL carries.
    pub part_client: Option<aws_sdk_s3::Client>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for UploadRig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The environment upload-proxy gets in the rig: the template's, ticket auth, fast polls.
pub fn rig_env(stack: &LocalStack, extra: &[(&'static str, String)]) -> HashMap<String, String> {
    let mut env = stack.function_env("upload-proxy");
    for (k, v) in [
        ("UPLOAD_AUTH", "ticket".to_string()),
        ("UPLOAD_TICKET_KEY", TICKET_KEY.to_string()),
        ("UPLOAD_MEDIA_POLL_MS", "20".to_string()),
        ("UPLOAD_PER_CONVERSATION_PER_HOUR", "1000".to_string()),
        ("UPLOAD_PER_CALLER_PER_HOUR", "1000".to_string()),
    ] {
        env.insert(k.into(), v);
    }
    for (k, v) in extra {
        env.insert((*k).into(), v.clone());
    }
    env
}

/// Serves `runtime`'s API on a loopback port, as a Function URL would.
pub async fn serve(runtime: UploadRuntime) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let runtime = std::sync::Arc::new(runtime);
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let runtime = runtime.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 8 * 1024 * 1024)
                .await
                .unwrap_or_default();
            let headers = gc_archive::upload::api::lowercase_headers(&parts.headers);
            let api = ApiRequest {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                headers,
                body,
                iam_principal: None,
            };
            let answer = handle(&runtime.service, &runtime.auth, api).await;
            let mut response = axum::response::Response::builder().status(answer.status);
            for (k, v) in &answer.headers {
                response = response.header(k.as_str(), v.as_str());
            }
            response
                .body(axum::body::Body::from(answer.body))
                .unwrap_or_default()
        }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), server))
}

impl UploadRig {
    pub async fn start() -> Result<UploadRig> {
        Self::start_with(RigOptions::default()).await
    }

    pub async fn start_with(options: RigOptions) -> Result<UploadRig> {
        let stack = LocalStack::start(StackOptions {
            iam: options.iam,
            // moto answers every preflight with allow-all CORS unless told not to; then the
            // bucket's own rule below is what a browser gets, as on S3.
            moto_env: vec![("MOTO_DISABLE_GLOBAL_CORS", "1".into())],
            ..StackOptions::default()
        })
        .await?;
        let conversation_id = stack.sim.add_conversation(ConversationSpec::default());
        stack
            .sim
            .messaging()
            .add_conversation(&conversation_id, COMMUNICATION);
        // Browsers PUT parts straight to the bucket from the page's origin.
        stack
            .s3
            .put_bucket_cors()
            .bucket(BUCKET)
            .cors_configuration(
                aws_sdk_s3::types::CorsConfiguration::builder()
                    .cors_rules(
                        aws_sdk_s3::types::CorsRule::builder()
                            .allowed_origins("*")
                            .allowed_methods("PUT")
                            .allowed_headers("*")
                            .expose_headers("ETag")
                            .build()?,
                    )
                    .build()?,
            )
            .send()
            .await?;
        let mut env = rig_env(&stack, &options.env);
        let mut part_client = None;
        let runtime = if options.iam {
            // As deployed: the key from Secrets Manager, every AWS call signed as a user
            // holding only the template's upload-proxy policy (and so are the part URLs).
            env.remove("UPLOAD_TICKET_KEY");
            let secret = stack
                .iam
                .as_ref()
                .map(|i| i.upload_ticket_secret_arn.clone())
                .context("IAM fixtures")?;
            env.insert("UPLOAD_TICKET_SECRET_ID".into(), secret);
            let mut policy = stack.function_policy("upload-proxy").await?;
            for action in &options.without_actions {
                anyhow::ensure!(
                    crate::iam::remove_action(&mut policy, action) > 0,
                    "the policy does not grant {action}"
                );
            }
            let (runtime, sdk) = stack.upload_runtime_with_policy(&policy, &env).await?;
            part_client = Some(gc_archive::bootstrap::s3_client(&sdk, &env));
            runtime
        } else {
            gc_archive::bootstrap::upload_runtime(&env, &stack.sdk).await?
        };
        let (base_url, server) = serve(runtime).await?;
        Ok(UploadRig {
            stack,
            base_url,
            conversation_id,
            http: reqwest::Client::new(),
            part_client,
            server,
        })
    }

    /// A ticket for the rig's conversation, valid for an hour.
    pub fn ticket(&self) -> String {
        self.ticket_for(&self.conversation_id, COMMUNICATION, 3600)
    }

    pub fn ticket_for(&self, conversation: &str, communication: &str, ttl_secs: i64) -> String {
        let key = TicketKey::new(TICKET_KEY.as_bytes()).expect("rig key");
        ticket::issue(
            &key,
            &Grant {
                conversation: ConversationId::parse(conversation).expect("conversation id"),
                communication: communication.to_string(),
                sub: "upload-rig".into(),
                exp: chrono::Utc::now().timestamp() + ttl_secs,
            },
        )
    }

    /// One API call with the rig's ticket: status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        self.call_with(method, path, body, Some(&self.ticket()))
            .await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        ticket: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut request = self.http.request(
            method.parse().context("method")?,
            format!("{}{path}", self.base_url),
        );
        if let Some(t) = ticket {
            request = request.header("x-upload-ticket", t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// The SHA-256 (hex) of what landed in S3 for the upload, read back from the bucket.
    pub async fn object_sha256(&self, upload_id: &str) -> Option<String> {
        let state = self.upload_record(upload_id).await?;
        let key = state["key"].as_str()?;
        let bytes = self.stack.get_bytes(key).await.ok()?;
        Some(hex::encode(Sha256::digest(&bytes)))
    }

    /// The upload's record in `_state/uploads/`.
    pub async fn upload_record(&self, upload_id: &str) -> Option<Value> {
        let key = format!("{}/_state/uploads/{upload_id}.json", crate::stack::PREFIX);
        let bytes = self.stack.get_bytes(&key).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.stack.sim.messaging().sent_messages()
    }

    /// Every key under the conversation folders' `attachments/` (objects and records).
    pub async fn attachment_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .stack
            .list_keys(crate::stack::PREFIX)
            .await?
            .into_iter()
            .filter(|k| k.contains("/attachments/"))
            .collect())
    }

    /// Multipart uploads still open in the bucket.
    pub async fn open_multipart_uploads(&self) -> Result<usize> {
        let out = self
            .stack
            .s3
            .list_multipart_uploads()
            .bucket(BUCKET)
            .send()
            .await?;
        Ok(out.uploads().len())
    }
}

/// How [`upload`] misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Misbehave {
    /// These parts are sent with their first byte flipped (the checksum signed is of the
    /// true bytes).
    pub corrupt_parts: Vec<u32>,
    /// Declared whole-file SHA-256 (base64) instead of the true one.
    pub declared_sha256: Option<String>,
    pub declare_hashes: bool,
    /// Parts not sent before complete.
    pub skip_parts: Vec<u32>,
    /// Declared size instead of the file's.
    pub declared_size: Option<u64>,
    pub file_type: Option<String>,
}

/// What [`upload`] saw.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub upload_id: String,
    pub created: Value,
    pub part_statuses: Vec<u16>,
    pub complete_status: u16,
    pub completed: Value,
}

pub fn b64_sha256(bytes: &[u8]) -> String {
    B64.encode(Sha256::digest(bytes))
}

/// Creates an upload, signs and PUTs every part straight to S3, then completes, as the page
/// does.
pub async fn upload(
    rig: &UploadRig,
    name: &str,
    bytes: &[u8],
    how: &Misbehave,
) -> Result<Uploaded> {
    let mut create = json!({
        "fileName": name,
        "fileType": how.file_type.clone().unwrap_or_else(|| "application/pdf".into()),
        "size": how.declared_size.unwrap_or(bytes.len() as u64),
    });
    if how.declare_hashes || how.declared_sha256.is_some() {
        create["sha256"] = json!(how
            .declared_sha256
            .clone()
            .unwrap_or_else(|| b64_sha256(bytes)));
        let md5 = <md5::Md5 as md5::Digest>::digest(bytes);
        create["md5"] = json!(B64.encode(md5));
    }
    let (status, created) = rig.call("POST", "/uploads", Some(create)).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {created}");
    let id = created["uploadId"]
        .as_str()
        .context("uploadId")?
        .to_string();
    let part_size = created["partSize"].as_u64().context("partSize")? as usize;
    let count = created["partCount"].as_u64().context("partCount")? as u32;
    let mut statuses = Vec::new();
    let mut listed = Vec::new();
    for n in 1..=count {
        let start = (n as usize - 1) * part_size;
        let end = (start + part_size).min(bytes.len());
        let part = bytes.get(start..end).unwrap_or_default();
        let sha = b64_sha256(part);
        listed.push(json!({"partNumber": n, "sha256": sha}));
        if how.skip_parts.contains(&n) {
            continue;
        }
        let (status, signed) = rig
            .call(
                "POST",
                &format!("/uploads/{id}/parts"),
                Some(json!({"parts": [{"partNumber": n, "sha256": sha}]})),
            )
            .await?;
        anyhow::ensure!(status == 200, "sign answered {status}: {signed}");
        let url = signed["parts"][0]["url"].as_str().context("url")?;
        let mut body = part.to_vec();
        if how.corrupt_parts.contains(&n) {
            if let Some(b) = body.first_mut() {
                *b ^= 0xff;
            }
        }
        if let Some(client) = &rig.part_client {
            let record = rig.upload_record(&id).await.context("upload record")?;
            let sent = client
                .upload_part()
                .bucket(BUCKET)
                .key(record["key"].as_str().unwrap_or_default())
                .upload_id(record["s3UploadId"].as_str().unwrap_or_default())
                .part_number(n as i32)
                .checksum_sha256(&sha)
                .body(body.into())
                .send()
                .await;
            statuses.push(if sent.is_ok() { 200 } else { 403 });
            continue;
        }
        let mut put = rig.http.put(url).body(body);
        for (k, v) in signed["parts"][0]["headers"]
            .as_object()
            .context("headers")?
        {
            put = put.header(k.as_str(), v.as_str().unwrap_or_default());
        }
        let response = put.send().await?;
        let status = response.status().as_u16();
        if status != 200 {
            eprintln!(
                "part {n}: HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        statuses.push(status);
    }
    let (complete_status, completed) = rig
        .call(
            "POST",
            &format!("/uploads/{id}/complete"),
            Some(json!({ "parts": listed })),
        )
        .await?;
    Ok(Uploaded {
        upload_id: id,
        created,
        part_statuses: statuses,
        complete_status,
        completed,
    })
}
