//! A whole gc-archive deployment on loopback: the Genesys Cloud simulator, a moto server with
//! the bucket, KMS key, queues (with DLQs and redrive), an EventBridge bus and rule delivering
//! to the archive queue, and both functions' handler dependencies built by the same
//! `bootstrap::handler_deps` the Lambdas use. The demo and the end-to-end tests run on it.

use std::collections::HashMap;

use anyhow::{Context, Result};
use genesys_sim::{SimConfig, Simulator};

use gc_archive::handlers::HandlerDeps;

use crate::MotoServer;

pub const BUCKET: &str = "gc-archive-demo";
pub const PREFIX: &str = "recordings";
pub const EVENT_BUS: &str = "gc-archive-genesys";
pub const KMS_ALIAS: &str = "alias/gc-archive-demo";

pub struct Queue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

pub struct LocalStack {
    pub sim: Simulator,
    pub moto: MotoServer,
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub archive_queue: Queue,
    pub transfer_queue: Queue,
    pub key_arn: String,
    pub env: HashMap<String, String>,
    /// With [`StackOptions::iam`]: secrets, result bus and webhook receiver (admin-made).
    pub iam: Option<crate::iam::IamFixtures>,
}

/// Settings a test may change before the deps are built.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub sim: SimConfig,
    /// Receives before SQS moves a message to its DLQ.
    pub max_receive_count: u32,
    /// Extra environment for the functions (e.g. `ARCHIVE_RETRY_BASE_SECS`).
    pub env: Vec<(String, String)>,
    /// moto's minimum multipart part size (None: S3's real 5 MiB).
    pub s3_min_part: Option<u64>,
    /// moto's server environment beyond that (e.g. `MOTO_DISABLE_GLOBAL_CORS`).
    pub moto_env: Vec<(&'static str, String)>,
    /// Enforce IAM in moto: setup and inspection run as an admin user, and
    /// [`LocalStack::deps_as`] runs a function under its role's policy from template.yaml.
    /// Adds the Genesys credentials secret, the result event bus and a webhook receiver.
    pub iam: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            sim: SimConfig::default(),
            max_receive_count: 5,
            env: Vec::new(),
            s3_min_part: None,
            moto_env: Vec::new(),
            iam: false,
        }
    }
}

/// Creates a queue (with `attributes`) and returns its URL and ARN.
pub async fn create_queue_with(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(aws_sdk_sqs::types::QueueAttributeName, String)],
) -> Result<(String, String)> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut request = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        request = request.attributes(k.clone(), v);
    }
    let url = request
        .send()
        .await?
        .queue_url()
        .context("queue url")?
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .context("queue arn")?;
    Ok((url, arn))
}

/// A queue with its dead-letter queue and redrive after `max_receive` receives.
async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, max_receive: u32) -> Result<Queue> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let (dlq_url, dlq_arn) = create_queue_with(sqs, &format!("{name}-dlq"), &[]).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive});
    let (url, arn) = create_queue_with(
        sqs,
        name,
        &[
            (A::VisibilityTimeout, "60".to_string()),
            (A::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await?;
    Ok(Queue { url, arn, dlq_url })
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> Result<LocalStack> {
        let sim = Simulator::start(options.sim.clone()).await?;
        let min_part = options.s3_min_part.map(|n| n.to_string());
        let moto_env: Vec<(&str, &str)> = min_part
            .iter()
            .map(|n| ("S3_UPLOAD_PART_MIN_SIZE", n.as_str()))
            .chain(options.moto_env.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let moto = if options.iam {
            MotoServer::start_iam_enforced(&moto_env).await?
        } else {
            MotoServer::start_with_env(&moto_env).await
        };
        let sdk = moto.sdk_config().await;
        let s3 = moto.s3().await;
        s3.create_bucket().bucket(BUCKET).send().await?;
        let kms = moto.kms().await;
        let key = kms
            .create_key()
            .description("gc-archive demo key")
            .send()
            .await?;
        let key_arn = key
            .key_metadata()
            .map(|m| m.arn().unwrap_or_default().to_string())
            .context("key arn")?;
        kms.create_alias()
            .alias_name(KMS_ALIAS)
            .target_key_id(&key_arn)
            .send()
            .await?;
        let sqs = moto.sqs().await;
        let archive_queue =
            create_queue(&sqs, "gc-archive-archive", options.max_receive_count).await?;
        let transfer_queue =
            create_queue(&sqs, "gc-archive-transfer", options.max_receive_count).await?;
        let eventbridge = moto.eventbridge().await;
        eventbridge
            .create_event_bus()
            .name(EVENT_BUS)
            .send()
            .await?;
        let pattern = serde_json::json!({"detail": {"topicName": [
            {"wildcard": "v2.detail.events.conversation.*.customer.end"},
            {"wildcard": "v2.detail.events.conversation.*.user.end"},
            {"wildcard": "v2.detail.events.conversation.*.acw"},
            {"wildcard": "v2.detail.events.conversation.*.wrapup"}]}});
        eventbridge
            .put_rule()
            .name("gc-archive-conversation-end")
            .event_bus_name(EVENT_BUS)
            .event_pattern(pattern.to_string())
            .send()
            .await?;
        eventbridge
            .put_targets()
            .rule("gc-archive-conversation-end")
            .event_bus_name(EVENT_BUS)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("archive-queue")
                    .arn(&archive_queue.arn)
                    .build()?,
            )
            .send()
            .await?;

        let mut env: HashMap<String, String> = [
            ("GENESYS_API_BASE_URL", sim.base_url()),
            ("GENESYS_CLIENT_ID", sim.client_id().to_string()),
            ("GENESYS_CLIENT_SECRET", sim.client_secret().to_string()),
            ("GENESYS_ORG_ID", sim.org_id().to_string()),
            ("ARCHIVE_BUCKET", BUCKET.to_string()),
            ("ARCHIVE_PREFIX", PREFIX.to_string()),
            ("ARCHIVE_KMS_KEY_ID", KMS_ALIAS.to_string()),
            ("ARCHIVE_S3_FORCE_PATH_STYLE", "true".to_string()),
            ("TRANSFER_QUEUE_URL", transfer_queue.url.clone()),
            ("ARCHIVE_WRITE_BACK", "external-tag".to_string()),
            // The handler dead-letters on the last receive the queue allows, as in AWS.
            ("MAX_RECEIVE_COUNT", options.max_receive_count.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let iam = match options.iam {
            true => Some(crate::iam::IamFixtures::create(&moto, &sim).await?),
            false => None,
        };
        if let Some(iam) = &iam {
            iam.apply_env(&mut env);
        }
        for (k, v) in &options.env {
            env.insert(k.clone(), v.clone());
        }
        Ok(LocalStack {
            sim,
            moto,
            sdk,
            s3,
            sqs,
            eventbridge,
            archive_queue,
            transfer_queue,
            key_arn,
            env,
            iam,
        })
    }

    /// The environment a deployed `function` would get (template.yaml), pointed at this
    /// stack: for running the real bootstrap binary under [`crate::runtime_api`].
    pub fn lambda_env(&self, function: &str) -> HashMap<String, String> {
        let mut env = self.function_env(function);
        env.insert("AWS_ENDPOINT_URL".into(), self.moto.endpoint_url());
        env.insert("AWS_ACCESS_KEY_ID".into(), crate::moto::ACCESS_KEY.into());
        env.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            crate::moto::SECRET_KEY.into(),
        );
        env.insert("AWS_REGION".into(), crate::moto::REGION.into());
        env.insert("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into());
        env
    }

    /// The handler dependencies of `function` (`archive-on-event` or `chunk-recording`), built
    /// exactly as the Lambda builds them, against this stack.
    pub async fn deps(&self, function: &str) -> Result<HandlerDeps> {
        let env = self.function_env(function);
        Ok(gc_archive::bootstrap::handler_deps(function, &env, &self.sdk).await?)
    }

    /// A TransferQueue job (chunk-recording's message body) for one recording of this org.
    pub fn transfer_job(&self, conversation_id: &str, recording_id: &str) -> serde_json::Value {
        serde_json::json!({
            "version": gc_archive::events::TRANSFER_MESSAGE_VERSION,
            "orgId": self.sim.org_id(),
            "conversationId": conversation_id,
            "recordingId": recording_id,
        })
    }

    /// A Genesys Cloud conversation-end event, in the real EventBridge envelope.
    pub fn conversation_event(
        &self,
        conversation_id: &str,
        topic_suffix: &str,
    ) -> serde_json::Value {
        let org = self.sim.org_id();
        serde_json::json!({
            "topicName": format!("v2.detail.events.conversation.{conversation_id}.{topic_suffix}"),
            "version": "2",
            "eventBody": {
                "eventTime": chrono::Utc::now().timestamp_millis(),
                "conversationId": conversation_id,
                "participantId": format!("p-{conversation_id}"),
                "sessionId": format!("s-{conversation_id}"),
                "mediaType": "VOICE",
                "provider": "Edge",
                "direction": "INBOUND",
                "disconnectType": "CLIENT"
            },
            "metadata": {"CorrelationId": format!("corr-{conversation_id}")},
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "orgId": org
        })
    }

    /// Every message body now on the ArchiveQueue, as JSON (each received once; with
    /// `keep`, made visible again afterwards for the handlers, else hidden for 10 minutes).
    pub async fn archive_queue_bodies(&self, keep: bool) -> Result<Vec<serde_json::Value>> {
        let mut bodies = Vec::new();
        let mut receipts = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.archive_queue.url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await?;
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                bodies.push(serde_json::from_str(m.body().unwrap_or_default())?);
                receipts.extend(m.receipt_handle().map(str::to_string));
            }
        }
        if keep {
            for r in receipts {
                self.sqs
                    .change_message_visibility()
                    .queue_url(&self.archive_queue.url)
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .send()
                    .await?;
            }
        }
        Ok(bodies)
    }

    /// The `conversationId` of every message now on the ArchiveQueue (hidden for 10 minutes).
    pub async fn archive_queue_conversations(&self) -> Result<Vec<String>> {
        Ok(self
            .archive_queue_bodies(false)
            .await?
            .iter()
            .filter_map(|b| b["conversationId"].as_str().map(str::to_string))
            .collect())
    }

    /// Publishes conversation-end events through EventBridge (rule → archive queue), with the
    /// partner event source name Genesys Cloud uses.
    pub async fn publish_conversation_ends(
        &self,
        conversation_ids: &[String],
        topic_suffix: &str,
    ) -> Result<()> {
        let source = format!(
            "aws.partner/genesys.com/cloud/{}/gc-archive",
            self.sim.org_id()
        );
        for batch in conversation_ids.chunks(10) {
            let entries: Vec<_> = batch
                .iter()
                .map(|cid| {
                    let mut detail = self.conversation_event(cid, topic_suffix);
                    if let Some(o) = detail.as_object_mut() {
                        o.remove("orgId");
                    }
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(EVENT_BUS)
                        .source(&source)
                        .detail_type(format!(
                            "v2.detail.events.conversation.{{id}}.{topic_suffix}"
                        ))
                        .detail(detail.to_string())
                        .build()
                })
                .collect();
            let out = self
                .eventbridge
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await?;
            anyhow::ensure!(out.failed_entry_count() == 0, "PutEvents rejected entries");
        }
        Ok(())
    }
}

/// Queue depths after one round of [`LocalStack::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    pub archive_waiting: u64,
    pub archive_delayed: u64,
    pub transfer_waiting: u64,
    pub transfer_in_flight: u64,
}

impl LocalStack {
    /// Every key under `prefix` in the deployment's bucket.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_keys_in(BUCKET, prefix).await
    }

    /// Every key under `prefix` in `bucket` (all pages).
    pub async fn list_keys_in(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(keys),
            }
        }
    }

    /// An object's bytes in the deployment's bucket.
    pub async fn get_bytes(&self, key: &str) -> Result<bytes::Bytes> {
        self.get_bytes_in(BUCKET, key).await
    }

    /// An object's bytes in `bucket`.
    pub async fn get_bytes_in(&self, bucket: &str, key: &str) -> Result<bytes::Bytes> {
        Ok(self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes())
    }

    /// Writes `body` at `key` in `bucket`; returns its ETag (unquoted).
    pub async fn put_bytes_in(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<String> {
        let out = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await?;
        Ok(out
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// Drives both queues through the real handlers, as Lambda's event source mappings would
    /// (archive queue in batches of 10, transfer queue one message at a time), until both are
    /// empty for two rounds in a row. Errors if `limit` passes first. `progress` sees the
    /// queue depths after every round.
    pub async fn drain(
        &self,
        archive: &HandlerDeps,
        transfer: &HandlerDeps,
        limit: std::time::Duration,
        mut progress: impl FnMut(QueueState),
    ) -> Result<()> {
        self.drain_with(
            (archive, &self.sqs),
            (transfer, &self.sqs),
            limit,
            |state, _| {
                progress(state);
                Ok(())
            },
        )
        .await
    }

    /// [`LocalStack::drain`] under each function's own credentials: the event-source stand-in
    /// receives, deletes and reads its queue's depth with the function's SQS client, as
    /// Lambda's event source mapping does with the function role. Handler errors are recorded
    /// in the function's [`FunctionDeps::errors`]; the first round in which either function
    /// has an error (a failed batch, or an SQS error its handler swallowed) ends the drain
    /// with those errors, rather than waiting out the redeliveries they cause.
    pub async fn drain_as(
        &self,
        archive: &FunctionDeps,
        transfer: &FunctionDeps,
        limit: std::time::Duration,
        mut progress: impl FnMut(QueueState),
    ) -> Result<()> {
        self.drain_with(
            (&archive.deps, &archive.sqs),
            (&transfer.deps, &transfer.sqs),
            limit,
            |state, handler_errors| {
                progress(state);
                let mut errors = Vec::new();
                for (f, e) in [archive, transfer].into_iter().zip(handler_errors) {
                    if let Some(e) = e {
                        f.errors
                            .lock()
                            .expect("error log lock")
                            .push(format!("handler: {e}"));
                    }
                    errors.extend(
                        f.all_errors()
                            .into_iter()
                            .map(|e| format!("{}: {e}", f.function)),
                    );
                }
                anyhow::ensure!(errors.is_empty(), "errors while draining: {errors:#?}");
                Ok(())
            },
        )
        .await
    }

    async fn drain_with(
        &self,
        (archive, archive_sqs): (&HandlerDeps, &aws_sdk_sqs::Client),
        (transfer, transfer_sqs): (&HandlerDeps, &aws_sdk_sqs::Client),
        limit: std::time::Duration,
        mut after_round: impl FnMut(QueueState, [Option<String>; 2]) -> Result<()>,
    ) -> Result<()> {
        use crate::esm::{poll, queue_depth};
        use std::time::{Duration, Instant};
        let start = Instant::now();
        let deadline = || tokio::time::Instant::now() + Duration::from_secs(300);
        let mut idle = 0;
        while start.elapsed() < limit {
            let a = poll(
                archive_sqs,
                &self.archive_queue.url,
                &self.archive_queue.arn,
                10,
                |p| async {
                    gc_archive::handlers::archive_on_event(
                        archive,
                        p,
                        deadline(),
                        "local-archive-on-event",
                    )
                    .await
                    .map_err(anyhow::Error::from)
                },
            )
            .await?;
            let t = poll(
                transfer_sqs,
                &self.transfer_queue.url,
                &self.transfer_queue.arn,
                1,
                |p| async {
                    gc_archive::handlers::chunk_recording(
                        transfer,
                        p,
                        deadline(),
                        "local-chunk-recording",
                    )
                    .await
                    .map_err(anyhow::Error::from)
                },
            )
            .await?;
            let handler_errors = [a.handler_error, t.handler_error];
            let (a, t) = (a.received, t.received);
            let (archive_waiting, archive_delayed) =
                queue_depth(archive_sqs, &self.archive_queue.url).await?;
            let (transfer_waiting, transfer_in_flight) =
                queue_depth(transfer_sqs, &self.transfer_queue.url).await?;
            let state = QueueState {
                archive_waiting,
                archive_delayed,
                transfer_waiting,
                transfer_in_flight,
            };
            after_round(state, handler_errors)?;
            if a + t == 0
                && archive_waiting + archive_delayed + transfer_waiting + transfer_in_flight == 0
            {
                idle += 1;
                if idle >= 2 {
                    return Ok(());
                }
            } else {
                idle = 0;
            }
            if a + t == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        anyhow::bail!("queues not drained within {limit:?}")
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .context("queue arn")
}

/// A function's handler dependencies built under its own IAM user (see [`LocalStack::deps_as`]).
pub struct FunctionDeps {
    pub function: String,
    pub deps: HandlerDeps,
    /// Signed with the function user's key.
    pub sdk: aws_config::SdkConfig,
    /// The event-source stand-in's client: the function's credentials.
    pub sqs: aws_sdk_sqs::Client,
    /// The policy the user has, as template.yaml states it (before [`crate::iam::widen_for_moto`]).
    pub policy: serde_json::Value,
    /// What the handlers asked of SQS, and the errors they swallowed.
    pub queue_log: std::sync::Arc<crate::iam::QueueLog>,
    /// Handler errors seen by [`LocalStack::drain_as`].
    pub errors: std::sync::Mutex<Vec<String>>,
}

impl FunctionDeps {
    /// Every error recorded for this function: failed handler batches and swallowed queue errors.
    pub fn all_errors(&self) -> Vec<String> {
        let mut all = self.errors.lock().expect("error log lock").clone();
        all.extend(self.queue_log.errors());
        all
    }
}

impl LocalStack {
    /// The environment `function` gets (template.yaml), pointed at this stack, with
    /// `SOURCE_QUEUE_URL` the queue it consumes.
    pub fn function_env(&self, function: &str) -> HashMap<String, String> {
        let mut env = self.env.clone();
        if function == "recording-sweep" || function == "event-stream" {
            env.insert("ARCHIVE_QUEUE_URL".into(), self.archive_queue.url.clone());
            return env;
        }
        if function == "storage-router" || function == "upload-proxy" {
            return env;
        }
        let (source, dlq) = if function == "archive-on-event" {
            (&self.archive_queue.url, &self.archive_queue.dlq_url)
        } else {
            (&self.transfer_queue.url, &self.transfer_queue.dlq_url)
        };
        env.insert("DEAD_LETTER_QUEUE_URL".into(), dlq.clone());
        env.insert("SOURCE_QUEUE_URL".into(), source.clone());
        env
    }

    /// template.yaml's parameters and resource attributes for this stack (IAM mode only), as
    /// `tools/template_policies.py` takes them: the existing bucket and KMS key, the secrets,
    /// the result bus and the real queue ARNs.
    pub async fn template_inputs(&self) -> Result<(serde_json::Value, serde_json::Value)> {
        let iam = self
            .iam
            .as_ref()
            .context("template inputs need StackOptions::iam")?;
        let org = self.sim.org_id();
        let parameters = serde_json::json!({
            "GenesysOrgId": org,
            "GenesysCredentialsSecretArn": iam.genesys_secret_arn,
            "GenesysEventBusName": format!("aws.partner/genesys.com/cloud/{org}/gc-archive"),
            "ArchiveBucketName": BUCKET,
            "ArchivePrefix": PREFIX,
            "KmsKeyArn": self.key_arn,
            "ResultEventBusName": crate::iam::RESULT_BUS,
            "WebhookSecretArn": iam.webhook_secret_arn,
            "EventStreamEnabled": "true",
            "UploadProxyEnabled": "true",
            "AWS::Region": crate::moto::REGION,
            "AWS::AccountId": crate::moto::ACCOUNT_ID,
        });
        let log_group = |name: &str| {
            format!(
                "arn:aws:logs:{}:{}:log-group:/aws/lambda/gc-archive/{name}:*",
                crate::moto::REGION,
                crate::moto::ACCOUNT_ID
            )
        };
        let resources = serde_json::json!({
            "ArchiveQueue": {"Ref": self.archive_queue.url, "Arn": self.archive_queue.arn},
            "ArchiveDeadLetterQueue": {"Ref": self.archive_queue.dlq_url, "Arn": queue_arn(&self.sqs, &self.archive_queue.dlq_url).await?},
            "TransferQueue": {"Ref": self.transfer_queue.url, "Arn": self.transfer_queue.arn},
            "TransferDeadLetterQueue": {"Ref": self.transfer_queue.dlq_url, "Arn": queue_arn(&self.sqs, &self.transfer_queue.dlq_url).await?},
            "ArchiveOnEventLogGroup": {"Arn": log_group("archive-on-event")},
            "ChunkRecordingLogGroup": {"Arn": log_group("chunk-recording")},
            "RecordingSweepLogGroup": {"Arn": log_group("recording-sweep")},
            "StorageRouterLogGroup": {"Arn": log_group("storage-router")},
            "EventStreamLogGroup": {"Arn": log_group("event-stream")},
            "UploadProxyLogGroup": {"Arn": log_group("upload-proxy")},
            "UploadTicketSecret": {"Ref": iam.upload_ticket_secret_arn},
        });
        Ok((parameters, resources))
    }

    /// `function`'s policy from template.yaml, resolved for this stack (IAM mode only).
    pub async fn function_policy(&self, function: &str) -> Result<serde_json::Value> {
        let (parameters, resources) = self.template_inputs().await?;
        let policies = crate::iam::template_policies(&parameters, &resources).await?;
        policies
            .get(function)
            .cloned()
            .with_context(|| format!("no policy for {function}"))
    }

    /// The handler dependencies of `function`, built by `bootstrap::handler_deps` exactly as
    /// the Lambda builds them, but signed as a fresh IAM user holding only the function role's
    /// policy from template.yaml (IAM mode only).
    pub async fn deps_as(&self, function: &str) -> Result<FunctionDeps> {
        let policy = self.function_policy(function).await?;
        self.deps_with_policy(function, policy).await
    }

    /// An SDK config signed as a fresh IAM user holding `policy` (IAM mode only).
    async fn sdk_as_user(
        &self,
        function: &str,
        policy: &serde_json::Value,
    ) -> Result<aws_config::SdkConfig> {
        let iam = self
            .iam
            .as_ref()
            .context("an IAM user needs StackOptions::iam")?;
        let user = iam.next_user(function);
        let moto_policy = crate::iam::widen_for_moto(policy);
        let key = crate::iam::create_users(
            &self.moto.endpoint_url(),
            self.moto.credentials(),
            &[(user.as_str(), &moto_policy)],
        )
        .await?
        .into_iter()
        .next()
        .context("an access key")?;
        Ok(self.moto.sdk_config_as(&key).await)
    }

    /// recording-sweep's runtime, built by `bootstrap::sweep_runtime` exactly as the Lambda
    /// builds it, signed as a fresh IAM user holding `policy` (the template's role from
    /// [`LocalStack::function_policy`], or a changed one). IAM mode only.
    pub async fn sweep_runtime_with_policy(
        &self,
        policy: &serde_json::Value,
    ) -> Result<gc_archive::handlers::recording_sweep::SweepRuntime> {
        let sdk = self.sdk_as_user("recording-sweep", policy).await?;
        Ok(
            gc_archive::bootstrap::sweep_runtime(&self.function_env("recording-sweep"), &sdk)
                .await?,
        )
    }

    /// event-stream's runtime, built by `bootstrap::stream_runtime` as the Lambda builds it
    /// (with `env` over the function's environment), signed as a fresh IAM user holding
    /// `policy`. IAM mode only.
    pub async fn stream_runtime_with_policy(
        &self,
        policy: &serde_json::Value,
        env: &HashMap<String, String>,
    ) -> Result<gc_archive::handlers::event_stream::StreamRuntime> {
        let sdk = self.sdk_as_user("event-stream", policy).await?;
        let mut full = self.function_env("event-stream");
        full.extend(env.clone());
        Ok(gc_archive::bootstrap::stream_runtime(&full, &sdk).await?)
    }

    /// upload-proxy's runtime, built by `bootstrap::upload_runtime` as the Lambda builds it
    /// (with `env` over the function's environment), signed as a fresh IAM user holding
    /// `policy`. IAM mode only.
    pub async fn upload_runtime_with_policy(
        &self,
        policy: &serde_json::Value,
        env: &HashMap<String, String>,
    ) -> Result<(
        gc_archive::handlers::upload_proxy::UploadRuntime,
        aws_config::SdkConfig,
    )> {
        let sdk = self.sdk_as_user("upload-proxy", policy).await?;
        let mut full = self.function_env("upload-proxy");
        full.extend(env.clone());
        let runtime = gc_archive::bootstrap::upload_runtime(&full, &sdk).await?;
        Ok((runtime, sdk))
    }

    /// storage-router's runtime, built by `bootstrap::router_runtime` as the Lambda builds it,
    /// signed as a fresh IAM user holding `policy`. IAM mode only.
    pub async fn router_runtime_with_policy(
        &self,
        policy: &serde_json::Value,
    ) -> Result<gc_archive::handlers::storage_router::RouterRuntime> {
        let sdk = self.sdk_as_user("storage-router", policy).await?;
        Ok(
            gc_archive::bootstrap::router_runtime(&self.function_env("storage-router"), &sdk)
                .await?,
        )
    }

    /// [`LocalStack::deps_as`] with a given policy (e.g. the template's with an action removed).
    pub async fn deps_with_policy(
        &self,
        function: &str,
        policy: serde_json::Value,
    ) -> Result<FunctionDeps> {
        let sdk = self.sdk_as_user(function, &policy).await?;
        let mut deps =
            gc_archive::bootstrap::handler_deps(function, &self.function_env(function), &sdk)
                .await?;
        let queue_log = std::sync::Arc::new(crate::iam::QueueLog::default());
        deps.queues = std::sync::Arc::new(crate::iam::ObservedQueues {
            inner: deps.queues.clone(),
            log: queue_log.clone(),
        });
        Ok(FunctionDeps {
            function: function.to_string(),
            deps,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sdk,
            policy,
            queue_log,
            errors: Default::default(),
        })
    }
}
