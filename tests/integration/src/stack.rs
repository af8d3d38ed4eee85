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
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            sim: SimConfig::default(),
            max_receive_count: 5,
            env: Vec::new(),
            s3_min_part: None,
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
        let moto = match &min_part {
            Some(n) => MotoServer::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", n.as_str())]).await,
            None => MotoServer::start().await,
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
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
        })
    }

    /// The environment a deployed `function` would get (template.yaml), pointed at this
    /// stack: for running the real bootstrap binary under [`crate::runtime_api`].
    pub fn lambda_env(&self, function: &str) -> HashMap<String, String> {
        let mut env = self.env.clone();
        let dlq = if function == "archive-on-event" {
            &self.archive_queue.dlq_url
        } else {
            &self.transfer_queue.dlq_url
        };
        env.insert("DEAD_LETTER_QUEUE_URL".into(), dlq.clone());
        env.insert("AWS_ENDPOINT_URL".into(), self.moto.endpoint_url());
        env.insert("AWS_ACCESS_KEY_ID".into(), crate::moto::ACCESS_KEY.into());
        env.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            crate::moto::SECRET_KEY.into(),
        );
        env.insert("AWS_REGION".into(), crate::moto::REGION.into());
        env.insert("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into());
        env.insert("MALLOC_ARENA_MAX".into(), "1".into());
        env
    }

    /// The handler dependencies of `function` (`archive-on-event` or `chunk-recording`), built
    /// exactly as the Lambda builds them, against this stack.
    pub async fn deps(&self, function: &str) -> Result<HandlerDeps> {
        let mut env = self.env.clone();
        let dlq = if function == "archive-on-event" {
            &self.archive_queue.dlq_url
        } else {
            &self.transfer_queue.dlq_url
        };
        env.insert("DEAD_LETTER_QUEUE_URL".into(), dlq.clone());
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
    /// Every key under `prefix`.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(BUCKET)
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

    /// An object's bytes.
    pub async fn get_bytes(&self, key: &str) -> Result<bytes::Bytes> {
        Ok(self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes())
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
        use crate::esm::{poll_once, queue_depth};
        use std::time::{Duration, Instant};
        let start = Instant::now();
        let deadline = || tokio::time::Instant::now() + Duration::from_secs(300);
        let mut idle = 0;
        while start.elapsed() < limit {
            let a = poll_once(
                &self.sqs,
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
            let t = poll_once(
                &self.sqs,
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
            let (archive_waiting, archive_delayed) =
                queue_depth(&self.sqs, &self.archive_queue.url).await?;
            let (transfer_waiting, transfer_in_flight) =
                queue_depth(&self.sqs, &self.transfer_queue.url).await?;
            let state = QueueState {
                archive_waiting,
                archive_delayed,
                transfer_waiting,
                transfer_in_flight,
            };
            progress(state);
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
