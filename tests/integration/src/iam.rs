//! The functions' IAM policies, as template.yaml states them, enforced by moto: resolves each
//! role's inline policies with `tools/template_policies.py`, creates an IAM user per function
//! with exactly that policy, and hands out SDK configs signed with the user's key. Also a small
//! policy matcher for the static checks (`tests/iam_static.rs`), the fixtures an IAM-enforced
//! [`crate::stack::LocalStack`] adds (secrets, result bus, webhook receiver), and a [`Queues`]
//! wrapper that records what the handlers asked of SQS and every error they swallowed.
//!
//! It does not evaluate conditions, and neither does moto. What moto 5.2.5's evaluator does,
//! measured with boto3 against `moto_server` with `INITIAL_NO_AUTH_ACTION_COUNT` (each case a
//! user with only the statement shown, over plain HTTP):
//!
//! * **Condition keys are ignored.** Only `StringEquals` on `sts:ExternalId` (the one request
//!   value moto extracts, for AssumeRole) can ever fail; any other condition counts as
//!   satisfied. Measured as ignored: `s3:prefix` on `s3:ListBucket` (`StringLike` and
//!   `StringEquals`: a list outside the prefix is allowed); `kms:EncryptionContext:orgId` on
//!   GenerateDataKey and Decrypt (`StringEquals` and `StringLike`: another org's context is
//!   allowed); `ForAllValues:StringEquals kms:EncryptionContextKeys`; `Bool aws:SecureTransport`
//!   (an Allow conditioned on `"true"` allows over HTTP, a Deny conditioned on `"true"` denies
//!   over HTTP); `ArnEquals` and `StringEquals` on `aws:SourceArn` (a direct SendMessage, which
//!   has no source ARN, is allowed); `StringEquals aws:RequestedRegion`. So an Allow with a
//!   Condition acts as an unconditional Allow and a Deny with one as an unconditional Deny:
//!   under moto a conditioned grant proves only the action and resource, and the conditions are
//!   checked statically.
//! * **Resources** are matched for S3 (object and bucket ARNs) and for SQS SendMessage and
//!   ChangeMessageVisibility (queue ARN). KMS is matched against `"*"`: a grant on the exact key
//!   ARN gets 403. So does `sqs:GetQueueUrl` on the exact queue ARN (and, per moto-notes.md,
//!   Secrets Manager, EventBridge and CloudWatch Logs). See [`widen_for_moto`].
//! * **HeadObject of a missing key** answers 404 to a user without `s3:ListBucket` (AWS: 403).
//! * **Denials of the JSON-protocol services** (KMS, SQS, Secrets Manager, EventBridge) come back
//!   as a 403 whose body is an XML `ErrorResponse` (`Code` AccessDenied) with content type
//!   text/html. The Rust SDK cannot read a code from it, so our error summaries say "unknown
//!   error" and never "AccessDenied". S3 denials are proper `AccessDenied` 403s.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use gc_archive::events::TransferMessage;
use gc_archive::queue::{QueueError, Queues};

/// The functions and the template resources of their execution roles.
pub const FUNCTIONS: [(&str, &str); 6] = [
    ("archive-on-event", "ArchiveOnEventRole"),
    ("chunk-recording", "ChunkRecordingRole"),
    ("recording-sweep", "RecordingSweepRole"),
    ("storage-router", "StorageRouterRole"),
    ("event-stream", "EventStreamRole"),
    ("upload-proxy", "UploadProxyRole"),
];

/// The functions that run the archive pipeline (events, transfers): each links and may run
/// every AWS operation of `shared`. recording-sweep, storage-router and event-stream run known subsets (see
/// `tests/iam_static.rs`).
pub const PIPELINE_FUNCTIONS: [&str; 2] = ["archive-on-event", "chunk-recording"];

/// An IAM access key.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"***")
            .finish()
    }
}

/// Each function's policy document (`{"archive-on-event": {...}, "chunk-recording": {...}}`),
/// resolved from template.yaml (or the template `GC_ARCHIVE_TEMPLATE` names) for these
/// parameter values and resource attributes (see `tools/template_policies.py`). An error
/// carries the script's message.
pub async fn template_policies(parameters: &Value, resources: &Value) -> Result<Value> {
    let root = crate::venv::workspace_root();
    let template = std::env::var_os("GC_ARCHIVE_TEMPLATE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("template.yaml"));
    let input = serde_json::json!({"parameters": parameters, "resources": resources});
    let out = run_python(
        &[
            root.join("tools/template_policies.py")
                .to_string_lossy()
                .as_ref(),
            template.to_string_lossy().as_ref(),
        ],
        &input,
    )
    .await
    .context("tools/template_policies.py")?;
    let policies: Value = serde_json::from_slice(&out)?;
    let on = |p: &str| parameters.get(p).and_then(Value::as_str) == Some("true");
    for (function, _) in FUNCTIONS {
        // event-stream's and upload-proxy's roles exist only when they are enabled.
        let expected = match function {
            "event-stream" => on("EventStreamEnabled"),
            "upload-proxy" => on("UploadProxyEnabled"),
            _ => true,
        };
        anyhow::ensure!(
            policies.get(function).is_some() == expected,
            "policy for {function}: expected {expected}"
        );
    }
    Ok(policies)
}

/// moto only: a copy of `policy` in which every statement whose actions all belong to KMS,
/// Secrets Manager, EventBridge or CloudWatch Logs, or are `sqs:GetQueueUrl`, has
/// `Resource: "*"`. moto evaluates those actions as if the request's resource were `"*"`, so a
/// grant scoped to the exact key, secret, bus, log group or queue ARN is refused with 403
/// although AWS allows it. Everything else (S3, the other SQS actions) keeps its resources,
/// which moto matches. The scoping of the widened statements is checked by
/// `tests/iam_static.rs` instead.
///
/// Also: AWS authorises `SendMessageBatch` as `sqs:SendMessage` (an IAM action
/// `sqs:SendMessageBatch` does not exist: SQS developer guide, "Amazon SQS batch actions"),
/// moto as `sqs:SendMessageBatch` (measured: 403 under a policy granting `sqs:SendMessage`). So
/// a statement granting `sqs:SendMessage` grants `sqs:SendMessageBatch` too, on the same
/// resources; a policy without `sqs:SendMessage` gets neither.
pub fn widen_for_moto(policy: &Value) -> Value {
    const RESOURCE_BLIND: [&str; 4] = ["kms:", "secretsmanager:", "events:", "logs:"];
    let blind = |action: &str| {
        RESOURCE_BLIND.iter().any(|p| action.starts_with(p)) || action == "sqs:GetQueueUrl"
    };
    let mut out = policy.clone();
    if let Some(statements) = out.get_mut("Statement").and_then(Value::as_array_mut) {
        for s in statements {
            let mut actions = strings(s.get("Action"));
            if !actions.is_empty() && actions.iter().all(|a| blind(a)) {
                s["Resource"] = Value::String("*".into());
            }
            if actions.iter().any(|a| a == "sqs:SendMessage") {
                actions.push("sqs:SendMessageBatch".into());
                s["Action"] = Value::from(actions);
            }
        }
    }
    out
}

/// Removes `action` from every statement of `policy` (dropping statements left without an
/// action). Returns how many statements granted it.
pub fn remove_action(policy: &mut Value, action: &str) -> usize {
    let mut removed = 0;
    if let Some(statements) = policy.get_mut("Statement").and_then(Value::as_array_mut) {
        for s in statements.iter_mut() {
            let before = strings(s.get("Action"));
            let after: Vec<String> = before.iter().filter(|a| *a != action).cloned().collect();
            if after.len() != before.len() {
                removed += 1;
                s["Action"] = Value::from(after);
            }
        }
        statements.retain(|s| !strings(s.get("Action")).is_empty());
    }
    removed
}

/// A string or list of strings (an IAM `Action` or `Resource`) as a list.
pub fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM wildcard match: `*` is any run of characters, `?` any one; actions match without case.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// The Allow statements of `policy` that grant `action` on `resource` (conditions not
/// evaluated: the caller looks at them). Panics on `NotAction`/`NotResource`, which this
/// matcher does not model.
pub fn granting<'a>(policy: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
    statements(policy)
        .into_iter()
        .filter(|s| {
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "NotAction/NotResource are not modelled: {s}"
            );
            s["Effect"] == "Allow"
                && strings(s.get("Action"))
                    .iter()
                    .any(|a| action_matches(a, action))
                && strings(s.get("Resource"))
                    .iter()
                    .any(|r| wildcard_match(r, resource))
        })
        .collect()
}

/// The statements of a policy document.
pub fn statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

/// Every action a policy grants (as written, wildcards included).
pub fn granted_actions(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = statements(policy)
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(s.get("Action")))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Creates each IAM user with its inline policy and an access key, calling as `caller`.
/// Goes through boto3 in the project virtualenv, so the test kit needs no IAM SDK crate.
pub async fn create_users(
    endpoint: &str,
    caller: &AccessKey,
    users: &[(&str, &Value)],
) -> Result<Vec<AccessKey>> {
    const SCRIPT: &str = r#"
import json, sys
import boto3
from botocore.config import Config
spec = json.load(sys.stdin)
iam = boto3.client("iam", endpoint_url=spec["endpoint"], region_name=spec["region"],
                   aws_access_key_id=spec["key"], aws_secret_access_key=spec["secret"],
                   config=Config(retries={"total_max_attempts": 1}))
keys = []
for user in spec["users"]:
    iam.create_user(UserName=user["name"])
    iam.put_user_policy(UserName=user["name"], PolicyName=user["name"],
                        PolicyDocument=json.dumps(user["policy"]))
    key = iam.create_access_key(UserName=user["name"])["AccessKey"]
    keys.append({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]})
json.dump(keys, sys.stdout)
"#;
    let spec = serde_json::json!({
        "endpoint": endpoint,
        "region": crate::moto::REGION,
        "key": caller.id,
        "secret": caller.secret,
        "users": users.iter().map(|(n, p)| serde_json::json!({"name": n, "policy": p})).collect::<Vec<_>>(),
    });
    let out = run_python(&["-c", SCRIPT], &spec)
        .await
        .context("creating IAM users in moto")?;
    let keys: Vec<BTreeMap<String, String>> = serde_json::from_slice(&out)?;
    Ok(keys
        .into_iter()
        .map(|k| AccessKey {
            id: k["id"].clone(),
            secret: k["secret"].clone(),
        })
        .collect())
}

/// Runs the virtualenv's python with `args`, `input` as JSON on stdin; returns stdout.
async fn run_python(args: &[&str], input: &Value) -> Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(crate::venv::python())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.to_string().as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

// ---------------------------------------------------------------------------------------------
// Fixtures of an IAM-enforced stack
// ---------------------------------------------------------------------------------------------

/// Name of the result event bus of an IAM-enforced stack.
pub const RESULT_BUS: &str = "gc-archive-results";
/// The webhook signing secret's value (Standard Webhooks form).
pub const WEBHOOK_SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// What a webhook receiver got: headers and body of each POST.
pub type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// What an IAM-enforced stack has beyond the plain one, all created by the admin user: the
/// Genesys credentials and the webhook signing key in Secrets Manager, the result event bus
/// with a rule to a capture queue, and a webhook receiver on loopback.
pub struct IamFixtures {
    pub genesys_secret_arn: String,
    pub webhook_secret_arn: String,
    /// upload-proxy's ticket signing key ([`crate::upload_kit::TICKET_KEY`]).
    pub upload_ticket_secret_arn: String,
    pub result_bus_arn: String,
    /// Receives every event on [`RESULT_BUS`] (the full EventBridge envelope).
    pub results_queue_url: String,
    pub webhook_url: String,
    pub webhooks: Received,
    users: std::sync::atomic::AtomicU32,
}

impl IamFixtures {
    pub async fn create(
        moto: &crate::MotoServer,
        sim: &genesys_sim::Simulator,
    ) -> Result<IamFixtures> {
        let secrets = moto.secrets().await;
        let credentials = serde_json::json!({
            "client_id": sim.client_id(),
            "client_secret": sim.client_secret(),
        });
        let genesys_secret_arn = secrets
            .create_secret()
            .name("gc-archive/genesys-client")
            .secret_string(credentials.to_string())
            .send()
            .await?
            .arn()
            .context("secret arn")?
            .to_string();
        let webhook_secret_arn = secrets
            .create_secret()
            .name("gc-archive/webhook")
            .secret_string(WEBHOOK_SECRET)
            .send()
            .await?
            .arn()
            .context("secret arn")?
            .to_string();
        let upload_ticket_secret_arn = secrets
            .create_secret()
            .name("gc-archive/upload-tickets")
            .secret_string(crate::upload_kit::TICKET_KEY)
            .send()
            .await?
            .arn()
            .context("secret arn")?
            .to_string();
        let eventbridge = moto.eventbridge().await;
        let result_bus_arn = eventbridge
            .create_event_bus()
            .name(RESULT_BUS)
            .send()
            .await?
            .event_bus_arn()
            .context("bus arn")?
            .to_string();
        let sqs = moto.sqs().await;
        let (results_queue_url, results_arn) =
            crate::stack::create_queue_with(&sqs, "gc-archive-results", &[]).await?;
        eventbridge
            .put_rule()
            .name("results")
            .event_bus_name(RESULT_BUS)
            .event_pattern(r#"{"source":["gc-archive","gc-archive.upload-proxy"]}"#)
            .send()
            .await?;
        eventbridge
            .put_targets()
            .rule("results")
            .event_bus_name(RESULT_BUS)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("capture")
                    .arn(results_arn)
                    .build()?,
            )
            .send()
            .await?;

        let webhooks: Received = Arc::default();
        let sink = webhooks.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("webhook log lock").push((headers, body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let webhook_url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });

        Ok(IamFixtures {
            genesys_secret_arn,
            webhook_secret_arn,
            upload_ticket_secret_arn,
            result_bus_arn,
            results_queue_url,
            webhook_url,
            webhooks,
            users: Default::default(),
        })
    }

    /// The function environment this adds: credentials from Secrets Manager (not inline),
    /// results to the bus and the webhook.
    pub fn apply_env(&self, env: &mut std::collections::HashMap<String, String>) {
        env.remove("GENESYS_CLIENT_ID");
        env.remove("GENESYS_CLIENT_SECRET");
        for (k, v) in [
            ("GENESYS_CLIENT_SECRET_ID", &self.genesys_secret_arn),
            ("RESULT_EVENT_BUS", &RESULT_BUS.to_string()),
            ("WEBHOOK_URL", &self.webhook_url),
            ("WEBHOOK_SECRET_ID", &self.webhook_secret_arn),
        ] {
            env.insert(k.to_string(), v.clone());
        }
    }

    /// A fresh IAM user name for `function` (one per [`crate::stack::LocalStack::deps_as`]).
    pub fn next_user(&self, function: &str) -> String {
        let n = self
            .users
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{function}-{n}")
    }

    /// Every event that reached the capture queue so far (drains it).
    pub async fn result_events(&self, sqs: &aws_sdk_sqs::Client) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let r = sqs
                .receive_message()
                .queue_url(&self.results_queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            if r.messages().is_empty() {
                return Ok(out);
            }
            for m in r.messages() {
                out.push(serde_json::from_str(m.body().unwrap_or_default())?);
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&self.results_queue_url)
                        .receipt_handle(h)
                        .send()
                        .await?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the handlers asked of SQS
// ---------------------------------------------------------------------------------------------

/// One call the handlers made through [`Queues`], and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueCall {
    EnqueueTransfer { recording_id: String },
    DelayRedelivery { delay: Duration },
    DeadLetter { reason: String },
}

/// Calls and errors seen by an [`ObservedQueues`]. The handlers swallow some queue errors
/// (a failed delay is only logged), so this is where a denied SQS call shows.
#[derive(Debug, Default)]
pub struct QueueLog {
    pub calls: Mutex<Vec<QueueCall>>,
    pub errors: Mutex<Vec<QueueError>>,
}

impl QueueLog {
    pub fn calls(&self) -> Vec<QueueCall> {
        self.calls.lock().expect("queue log lock").clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .expect("queue log lock")
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn record(&self, call: QueueCall, result: &Result<(), QueueError>) {
        self.calls.lock().expect("queue log lock").push(call);
        if let Err(e) = result {
            self.errors.lock().expect("queue log lock").push(e.clone());
        }
    }
}

/// [`Queues`] that forwards to `inner` and records every call and error in `log`.
pub struct ObservedQueues {
    pub inner: Arc<dyn Queues>,
    pub log: Arc<QueueLog>,
}

type QueueFuture<'a> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;

// Written out as `async_trait` expands it (the test kit does not depend on that macro crate).
impl Queues for ObservedQueues {
    fn enqueue_transfer<'life0, 'life1, 'async_trait>(
        &'life0 self,
        job: &'life1 TransferMessage,
        delay: Duration,
    ) -> QueueFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let result = self.inner.enqueue_transfer(job, delay).await;
            let call = QueueCall::EnqueueTransfer {
                recording_id: job.recording_id.to_string(),
            };
            self.log.record(call, &result);
            result
        })
    }

    fn delay_redelivery<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        source_arn: &'life1 str,
        receipt_handle: &'life2 str,
        delay: Duration,
    ) -> QueueFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let result = self
                .inner
                .delay_redelivery(source_arn, receipt_handle, delay)
                .await;
            self.log
                .record(QueueCall::DelayRedelivery { delay }, &result);
            result
        })
    }

    fn dead_letter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        body: &'life1 str,
        reason: &'life2 str,
    ) -> QueueFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let result = self.inner.dead_letter(body, reason).await;
            let call = QueueCall::DeadLetter {
                reason: reason.to_string(),
            };
            self.log.record(call, &result);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match(
            "arn:aws:s3:::b/recordings/*",
            "arn:aws:s3:::b/recordings/_state/x.json"
        ));
        assert!(!wildcard_match(
            "arn:aws:s3:::b/recordings/*",
            "arn:aws:s3:::b/other/x"
        ));
        assert!(!wildcard_match("arn:aws:s3:::b", "arn:aws:s3:::b/x"));
        assert!(wildcard_match("s3:*Object", "s3:GetObject"));
        assert!(wildcard_match("a?c", "abc") && !wildcard_match("a?c", "ac"));
        assert!(action_matches("S3:getobject", "s3:GetObject"));
    }

    #[test]
    fn only_resource_blind_statements_are_widened() {
        let policy = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "arn:aws:kms:r:1:key/k"},
            {"Effect": "Allow", "Action": "sqs:GetQueueUrl", "Resource": "arn:aws:sqs:r:1:q"},
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"], "Resource": "arn:aws:sqs:r:1:q"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/*"},
        ]});
        let wide = widen_for_moto(&policy);
        let resources: Vec<&Value> = statements(&wide).iter().map(|s| &s["Resource"]).collect();
        assert_eq!(
            resources,
            ["*", "*", "arn:aws:sqs:r:1:q", "arn:aws:s3:::b/p/*"]
        );
        // moto's name for the batch send, where SendMessage is granted and nowhere else.
        assert_eq!(
            granting(&wide, "sqs:SendMessageBatch", "arn:aws:sqs:r:1:q").len(),
            1
        );
        assert!(granting(&wide, "sqs:SendMessageBatch", "arn:aws:sqs:r:1:other").is_empty());
    }

    #[test]
    fn removing_an_action_drops_emptied_statements() {
        let mut policy = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"},
            {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": "*"},
        ]});
        assert_eq!(remove_action(&mut policy, "kms:GenerateDataKey"), 2);
        assert_eq!(granted_actions(&policy), ["kms:Decrypt"]);
        assert!(granting(&policy, "kms:GenerateDataKey", "arn:aws:kms:r:1:key/k").is_empty());
    }
}
