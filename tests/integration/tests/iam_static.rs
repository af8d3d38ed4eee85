//! The functions' IAM policies checked against the code, statically: what `iam_enforced.rs`
//! cannot prove because moto ignores conditions and matches some resources as `"*"` (see
//! `gc_archive_it::iam`).
//!
//! The policies come from template.yaml through `tools/template_policies.py`, for two
//! deployments with real-looking ARNs: an existing bucket and KMS key with a webhook, and a
//! created bucket and key without one. The AWS operations come from the Rust sources of
//! `shared/src` and `functions/*/src` (both pipeline functions link all of `shared`, so every
//! operation needs a grant in both their roles); the CLI runs with the operator's own
//! credentials and is not scanned. recording-sweep also links `shared` but runs only the sweep,
//! the backfills and the reconciliation, which reach AWS only through the `ObjectStore` and
//! `ArchiveQueue` traits: its role is checked against the list of what those do
//! ([`Deployment::sweep_needs`]), which `iam_enforced.rs` proves against moto both ways (the role
//! suffices, and each S3 and SQS grant is needed). An operation is a zero-argument call whose name is an operation of one of the AWS
//! SDK crates in the build (`.put_object()`), followed by `.send()` or by a method of that
//! operation's fluent builder (`.bucket(`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gc_archive_it::iam::{granted_actions, granting, statements, strings, template_policies};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const ORG: &str = "3f6d2a9e-8b41-4c7a-9e25-1d0b6c8f4a73";
const PREFIX: &str = "archive/genesys";
const KEY_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const CREATED_KEY_ARN: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/0f0e0d0c-0b0a-4988-8776-655443322110";
const CREATED_BUCKET: &str = "gc-archive-archivebucket-1a2b3c4d5e6f";
const GENESYS_SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:gc-archive/genesys-AbC123";
const UPLOAD_TICKET_SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:gc-archive/upload-tickets-AbCdEf";
const WEBHOOK_SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:gc-archive/webhook-XyZ789";
const RESULT_BUS: &str = "archive-results";
/// The routing deployment: its other target buckets and their key.
const ROUTED_PATTERN: &str = "acme-rec-*";
const ROUTED_BUCKET: &str = "acme-rec-sales";
const TARGET_KEY_ARN: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/99990000-aaaa-4bbb-8ccc-dddddddddddd";

/// What the ESM does with the function role, and what Lambda's logging needs; no code of ours
/// calls these, yet the roles must grant them. (`sqs:ChangeMessageVisibility` is ours too.)
const ESM_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
];
const LOG_ACTIONS: [&str; 2] = ["logs:CreateLogStream", "logs:PutLogEvents"];

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

fn log_group_arn(function: &str) -> String {
    format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/gc-archive/{function}:*")
}

/// One deployment's inputs and what its ARNs are.
struct Deployment {
    name: &'static str,
    bucket: &'static str,
    key_arn: &'static str,
    webhook: bool,
    /// RoutingConfigKey, RoutingBucketPattern and RoutingKmsKeyArns set.
    routing: bool,
    policies: Value,
}

impl Deployment {
    async fn resolve(
        name: &'static str,
        existing: bool,
        webhook: bool,
        routing: bool,
    ) -> anyhow::Result<Deployment> {
        let (bucket, key_arn) = if existing {
            ("acme-call-archive", KEY_ARN)
        } else {
            (CREATED_BUCKET, CREATED_KEY_ARN)
        };
        let parameters = json!({
            "GenesysOrgId": ORG,
            "GenesysCredentialsSecretArn": GENESYS_SECRET,
            "GenesysEventBusName": format!("aws.partner/genesys.com/cloud/{ORG}/gc-archive"),
            "ArchiveBucketName": if existing { bucket } else { "" },
            "ArchivePrefix": PREFIX,
            "KmsKeyArn": if existing { key_arn } else { "" },
            "ResultEventBusName": RESULT_BUS,
            "WebhookUrl": if webhook { "https://hooks.example.com/gc-archive" } else { "" },
            "WebhookSecretArn": if webhook { WEBHOOK_SECRET } else { "" },
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "call-archive",
            "RoutingConfigKey": if routing { "_config/routing.yaml" } else { "" },
            "RoutingBucketPattern": if routing { ROUTED_PATTERN } else { "" },
            "RoutingKmsKeyArns": if routing { TARGET_KEY_ARN } else { "" },
            "EventStreamEnabled": "true",
            "UploadProxyEnabled": "true",
            "UploadProxyAuth": if webhook { "AWS_IAM" } else { "TICKET" },
        });
        let mut resources = json!({
            "ArchiveOnEventLogGroup": {"Arn": log_group_arn("archive-on-event")},
            "ChunkRecordingLogGroup": {"Arn": log_group_arn("chunk-recording")},
            "RecordingSweepLogGroup": {"Arn": log_group_arn("recording-sweep")},
            "StorageRouterLogGroup": {"Arn": log_group_arn("storage-router")},
            "EventStreamLogGroup": {"Arn": log_group_arn("event-stream")},
            "UploadProxyLogGroup": {"Arn": log_group_arn("upload-proxy")},
            "UploadTicketSecret": {"Ref": UPLOAD_TICKET_SECRET},
        });
        for (id, name) in [
            ("ArchiveQueue", "archive"),
            ("ArchiveDeadLetterQueue", "archive-dlq"),
            ("TransferQueue", "transfer"),
            ("TransferDeadLetterQueue", "transfer-dlq"),
        ] {
            resources[id] = json!({
                "Ref": format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"),
                "Arn": queue_arn(name),
            });
        }
        if !existing {
            resources["ArchiveBucket"] =
                json!({"Ref": bucket, "Arn": format!("arn:aws:s3:::{bucket}")});
            resources["ArchiveKey"] =
                json!({"Ref": "0f0e0d0c-0b0a-4988-8776-655443322110", "Arn": key_arn});
        }
        Ok(Deployment {
            name,
            bucket,
            key_arn,
            webhook,
            routing,
            policies: template_policies(&parameters, &resources).await?,
        })
    }

    async fn all() -> Vec<Deployment> {
        vec![
            Deployment::resolve("existing bucket and key, webhook", true, true, false)
                .await
                .unwrap(),
            Deployment::resolve("created bucket and key, no webhook", false, false, false)
                .await
                .unwrap(),
            Deployment::resolve(
                "existing bucket and key, routing to acme-rec-* with its own key",
                true,
                false,
                true,
            )
            .await
            .unwrap(),
        ]
    }

    fn policy(&self, function: &str) -> &Value {
        &self.policies[function]
    }

    fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    fn object_arn(&self, key_under_prefix: &str) -> String {
        format!("arn:aws:s3:::{}/{PREFIX}/{key_under_prefix}", self.bucket)
    }

    /// Archive objects, manifests, audit records: where PutObject/GetObject go.
    fn archive_keys(&self) -> Vec<String> {
        [
            format!("{ORG}/year=2026/month=03/day=04/hour=05/c-1/r-1.wav.enc"),
            format!("{ORG}/year=2026/month=03/day=04/hour=05/c-1/r-1.manifest.json"),
            "_audit/year=2026/month=03/day=04/20260304T050607Z-r-1-archived.json".to_string(),
        ]
        .iter()
        .map(|k| self.object_arn(k))
        .collect()
    }

    fn checkpoint_arn(&self) -> String {
        self.object_arn("_state/transfers/r-1.json")
    }

    /// With routing: an archive, a manifest and a checkpoint in another target bucket.
    fn routed_objects(&self) -> Vec<String> {
        if !self.routing {
            return Vec::new();
        }
        [
            format!("calls/{ORG}/year=2026/month=03/day=04/hour=05/c-1/r-1.wav.enc"),
            format!("calls/{ORG}/year=2026/month=03/day=04/hour=05/c-1/r-1.manifest.json"),
            "calls/_state/transfers/r-1.json".to_string(),
        ]
        .iter()
        .map(|k| format!("arn:aws:s3:::{ROUTED_BUCKET}/{k}"))
        .collect()
    }

    /// The buckets the compliance gate reads the settings of.
    fn target_buckets(&self) -> Vec<String> {
        if self.routing {
            vec![self.bucket_arn(), format!("arn:aws:s3:::{ROUTED_BUCKET}")]
        } else {
            Vec::new()
        }
    }

    fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.key_arn.to_string()];
        if self.routing {
            keys.push(TARGET_KEY_ARN.to_string());
        }
        keys
    }

    fn quarantine_arn(&self) -> String {
        self.object_arn(&format!("_quarantine/{ORG}/c-1/r-1.wav.enc"))
    }

    /// The queue an SQS event source feeds the function from (recording-sweep has none).
    fn source_queue(function: &str) -> Option<String> {
        match function {
            "archive-on-event" => Some(queue_arn("archive")),
            "chunk-recording" => Some(queue_arn("transfer")),
            _ => None,
        }
    }

    /// The queues a function sends to: the TransferQueue (hand-off, re-queue) and its own DLQ;
    /// recording-sweep only the ArchiveQueue.
    fn send_queues(function: &str) -> BTreeSet<String> {
        match function {
            "archive-on-event" => [queue_arn("transfer"), queue_arn("archive-dlq")].into(),
            "chunk-recording" => [queue_arn("transfer"), queue_arn("transfer-dlq")].into(),
            "recording-sweep" | "event-stream" => [queue_arn("archive")].into(),
            _ => BTreeSet::new(),
        }
    }

    fn secrets(&self, function: &str) -> Vec<String> {
        if function == "storage-router" {
            return Vec::new();
        }
        let mut s = vec![GENESYS_SECRET.to_string()];
        if function == "upload-proxy" {
            // TICKET in the deployments without a webhook, AWS_IAM in the others.
            if !self.webhook {
                s.push(UPLOAD_TICKET_SECRET.to_string());
            }
            return s;
        }
        if self.webhook && function != "recording-sweep" && function != "event-stream" {
            s.push(WEBHOOK_SECRET.to_string());
        }
        s
    }

    /// The sweep's own objects: watermark, journal, backfill progress, report.
    fn sweep_state_arns(&self) -> Vec<String> {
        [
            "_state/sweep/watermark.json",
            "_state/enqueued/2026/03/04/05.json",
            "_state/backfill/20250101T000000Z_20250701T000000Z.json",
            "_reports/reconcile/20260303T000000Z_20260304T000000Z.json",
        ]
        .iter()
        .map(|k| self.object_arn(k))
        .collect()
    }

    /// What recording-sweep does, as (IAM action, resource): its `ObjectStore` calls (list an
    /// hour folder; get and conditionally put its state and reports; get audit records) and
    /// its `ArchiveQueue` sends, SSE-KMS through S3, the Genesys secret, its logs.
    fn sweep_needs(&self) -> Vec<(&'static str, String)> {
        let mut needs = vec![("s3:GetObject", self.archive_keys()[2].clone())];
        needs.extend(self.producer_needs("recording-sweep", self.sweep_state_arns()));
        needs
    }

    /// What event-stream does: its state and the enqueue journal (get, conditional put), the
    /// hour folders' listings (what is archived), its ArchiveQueue sends, SSE-KMS through S3,
    /// the Genesys secret, its logs; with routing, the document and the targets' listings.
    fn stream_needs(&self) -> Vec<(&'static str, String)> {
        let state = [
            "_state/stream/state.json",
            "_state/enqueued/2026/03/04/05.json",
        ];
        self.producer_needs(
            "event-stream",
            state.iter().map(|k| self.object_arn(k)).collect(),
        )
    }

    /// What the ArchiveQueue's producers (recording-sweep, event-stream) share: list the hour
    /// folders, get and conditionally put their `state` objects, send to the ArchiveQueue,
    /// SSE-KMS through S3, the Genesys secret, their logs; with routing, the document and the
    /// other targets' hour folders.
    fn producer_needs(&self, function: &str, state: Vec<String>) -> Vec<(&'static str, String)> {
        let mut needs = vec![
            ("s3:ListBucket", self.bucket_arn()),
            ("sqs:SendMessage", queue_arn("archive")),
            ("secretsmanager:GetSecretValue", GENESYS_SECRET.to_string()),
            ("kms:GenerateDataKey", self.key_arn.to_string()),
            ("kms:Decrypt", self.key_arn.to_string()),
        ];
        for arn in state {
            needs.push(("s3:GetObject", arn.clone()));
            needs.push(("s3:PutObject", arn));
        }
        if self.routing {
            needs.push(("s3:GetObject", self.object_arn("_config/routing.yaml")));
            needs.push(("s3:ListBucket", format!("arn:aws:s3:::{ROUTED_BUCKET}")));
        }
        needs.extend(LOG_ACTIONS.iter().map(|a| (*a, log_group_arn(function))));
        needs
    }

    /// What upload-proxy does: multipart uploads, read-back, delete and abort in the
    /// conversation folders' `attachments/`, its records (get, conditional put), audit
    /// records, listings (rate marks, 404s), SSE-KMS through S3, the Genesys secret (and the
    /// ticket key with tickets), the "Attachment Verified" event, its logs.
    fn upload_needs(&self) -> Vec<(&'static str, String)> {
        let attachment = self.object_arn(&format!(
            "{ORG}/year=2026/month=03/day=04/hour=05/conversation_id=c1/attachments/u1/report.pdf"
        ));
        let record = self.object_arn("_state/uploads/u1.json");
        let mut needs = vec![
            ("s3:PutObject", attachment.clone()),
            ("s3:GetObject", attachment.clone()),
            ("s3:DeleteObject", attachment.clone()),
            ("s3:AbortMultipartUpload", attachment.clone()),
            ("s3:ListMultipartUploadParts", attachment),
            ("s3:GetObject", record.clone()),
            ("s3:PutObject", record),
            (
                "s3:PutObject",
                self.object_arn("_audit/year=2026/month=03/day=04/x.json"),
            ),
            ("s3:ListBucket", self.bucket_arn()),
            ("secretsmanager:GetSecretValue", GENESYS_SECRET.to_string()),
            ("kms:GenerateDataKey", self.key_arn.to_string()),
            ("kms:Decrypt", self.key_arn.to_string()),
            (
                "events:PutEvents",
                format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{RESULT_BUS}"),
            ),
        ];
        if !self.webhook {
            // The TICKET deployments.
            needs.push((
                "secretsmanager:GetSecretValue",
                UPLOAD_TICKET_SECRET.to_string(),
            ));
        }
        needs.extend(
            LOG_ACTIONS
                .iter()
                .map(|a| (*a, log_group_arn("upload-proxy"))),
        );
        needs
    }

    /// What upload-proxy must not be able to do: read, write or delete recordings, manifests,
    /// checkpoints, the sweep's watermark, the stream's state or audit records; any queue;
    /// the ticket key in IAM deployments.
    fn upload_denied(&self) -> Vec<(&'static str, String)> {
        let mut denied = vec![
            ("s3:PutObject", self.checkpoint_arn()),
            ("s3:GetObject", self.checkpoint_arn()),
            (
                "s3:PutObject",
                self.object_arn("_state/sweep/watermark.json"),
            ),
            ("s3:GetObject", self.object_arn("_state/stream/state.json")),
            ("s3:GetObject", self.object_arn("_audit/2026/03/04/x.json")),
            (
                "s3:DeleteObject",
                self.object_arn("_audit/2026/03/04/x.json"),
            ),
            ("sqs:SendMessage", queue_arn("archive")),
            ("sqs:SendMessage", queue_arn("transfer")),
            ("kms:Encrypt", self.key_arn.to_string()),
        ];
        for key in &self.archive_keys()[..2] {
            denied.push(("s3:GetObject", key.clone()));
            denied.push(("s3:PutObject", key.clone()));
            denied.push(("s3:DeleteObject", key.clone()));
        }
        if self.webhook {
            denied.push((
                "secretsmanager:GetSecretValue",
                UPLOAD_TICKET_SECRET.to_string(),
            ));
        }
        denied
    }

    /// What event-stream must not be able to do: touch recordings, manifests, checkpoints,
    /// the sweep's watermark or audit records; feed the transfer path; consume a queue.
    fn stream_denied(&self) -> Vec<(&'static str, String)> {
        let mut denied = vec![
            ("s3:PutObject", self.checkpoint_arn()),
            ("s3:GetObject", self.checkpoint_arn()),
            (
                "s3:PutObject",
                self.object_arn("_state/sweep/watermark.json"),
            ),
            ("s3:GetObject", self.object_arn("_audit/2026/03/04/x.json")),
            ("sqs:SendMessage", queue_arn("transfer")),
            ("sqs:ReceiveMessage", queue_arn("archive")),
        ];
        for key in &self.archive_keys()[..2] {
            denied.push(("s3:GetObject", key.clone()));
            denied.push(("s3:PutObject", key.clone()));
            denied.push(("s3:DeleteObject", key.clone()));
        }
        denied
    }

    /// What storage-router does: list and read audit records, read the routing document,
    /// replace its reports, probe each target under `_probe/`, read each target bucket's
    /// settings, SSE-KMS through S3, its logs.
    fn router_needs(&self) -> Vec<(&'static str, String)> {
        const SETTINGS: [&str; 8] = [
            "s3:ListBucket",
            "s3:GetEncryptionConfiguration",
            "s3:GetBucketPublicAccessBlock",
            "s3:GetBucketVersioning",
            "s3:GetBucketObjectLockConfiguration",
            "s3:GetBucketPolicy",
            "s3:GetLifecycleConfiguration",
            "s3:GetReplicationConfiguration",
        ];
        let mut needs = vec![
            ("s3:GetObject", self.archive_keys()[2].clone()),
            ("s3:GetObject", self.object_arn("_config/routing.yaml")),
            ("kms:GenerateDataKey", self.key_arn.to_string()),
            ("kms:Decrypt", self.key_arn.to_string()),
        ];
        for report in [
            "_reports/compliance/latest.json",
            "_reports/audit/20260303T000000Z_20260304T000000Z.html",
        ] {
            needs.push(("s3:GetObject", self.object_arn(report)));
            needs.push(("s3:PutObject", self.object_arn(report)));
        }
        let mut probes = vec![self.object_arn("_probe/20260304T050607-x.txt")];
        let mut buckets = vec![self.bucket_arn()];
        if self.routing {
            probes.push(format!(
                "arn:aws:s3:::{ROUTED_BUCKET}/calls/_probe/20260304T050607-x.txt"
            ));
            buckets.push(format!("arn:aws:s3:::{ROUTED_BUCKET}"));
            needs.push(("kms:GenerateDataKey", TARGET_KEY_ARN.to_string()));
            needs.push(("kms:Decrypt", TARGET_KEY_ARN.to_string()));
        }
        for p in probes {
            for a in ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"] {
                needs.push((a, p.clone()));
            }
        }
        for b in buckets {
            needs.extend(SETTINGS.iter().map(|a| (*a, b.clone())));
        }
        needs.extend(
            LOG_ACTIONS
                .iter()
                .map(|a| (*a, log_group_arn("storage-router"))),
        );
        needs
    }

    /// What storage-router must not be able to do: read or write recordings, manifests,
    /// checkpoints or audit records, delete outside _probe/, send to any queue.
    fn router_denied(&self) -> Vec<(&'static str, String)> {
        let mut denied = vec![
            ("s3:PutObject", self.checkpoint_arn()),
            ("s3:GetObject", self.checkpoint_arn()),
            ("s3:DeleteObject", self.checkpoint_arn()),
            ("s3:PutObject", self.archive_keys()[2].clone()),
            ("s3:DeleteObject", self.archive_keys()[2].clone()),
            ("sqs:SendMessage", queue_arn("archive")),
            ("secretsmanager:GetSecretValue", GENESYS_SECRET.to_string()),
        ];
        for key in self.archive_keys()[..2]
            .iter()
            .chain(self.routed_objects().iter())
        {
            denied.push(("s3:GetObject", key.clone()));
            denied.push(("s3:PutObject", key.clone()));
            denied.push(("s3:DeleteObject", key.clone()));
        }
        denied
    }

    /// What recording-sweep must not be able to do: read or write recordings and manifests,
    /// touch transfer checkpoints, delete anything, feed the transfer path.
    fn sweep_denied(&self) -> Vec<(&'static str, String)> {
        let mut denied = vec![
            ("s3:PutObject", self.checkpoint_arn()),
            ("s3:GetObject", self.checkpoint_arn()),
            ("sqs:SendMessage", queue_arn("transfer")),
            ("sqs:SendMessage", queue_arn("archive-dlq")),
            ("sqs:ReceiveMessage", queue_arn("archive")),
        ];
        for key in &self.archive_keys()[..2] {
            denied.push(("s3:GetObject", key.clone()));
            denied.push(("s3:PutObject", key.clone()));
            denied.push(("s3:DeleteObject", key.clone()));
        }
        denied
    }

    fn bus_arn() -> String {
        format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{RESULT_BUS}")
    }

    /// The (IAM action, resource) pairs an SDK operation needs in this deployment, or None for
    /// an operation this test does not know (then the test fails: map it).
    fn needs(&self, function: &str, op: &str) -> Option<Vec<(&'static str, String)>> {
        let each = |action: &'static str, resources: Vec<String>| {
            resources.into_iter().map(move |r| (action, r))
        };
        let mut stored = self.archive_keys();
        stored.push(self.checkpoint_arn());
        stored.extend(self.routed_objects());
        let routed = self.routed_objects();
        // Worm targets' archives and manifests carry Object Lock headers (routing only).
        let locked: Vec<String> = if self.routing {
            self.archive_keys()[..2]
                .iter()
                .cloned()
                .chain(routed.iter().take(2).cloned())
                .collect()
        } else {
            Vec::new()
        };
        let mut lists = vec![self.bucket_arn()];
        lists.extend(self.target_buckets().into_iter().skip(1));
        Some(match op {
            "put_object" | "create_multipart_upload" => each("s3:PutObject", stored)
                .chain(each("s3:PutObjectRetention", locked))
                .collect(),
            "upload_part" | "complete_multipart_upload" => each("s3:PutObject", stored).collect(),
            // A missing key is 404 only to a caller allowed s3:ListBucket (else 403), and the
            // code relies on that 404 for every existence check.
            "head_object" | "get_object" => each("s3:GetObject", stored)
                .chain(each("s3:ListBucket", lists))
                .collect(),
            "delete_object" => {
                let mut v = vec![
                    ("s3:DeleteObject", self.checkpoint_arn()),
                    ("s3:DeleteObject", self.archive_keys()[0].clone()),
                ];
                v.extend(routed.iter().map(|r| ("s3:DeleteObject", r.clone())));
                v
            }
            "abort_multipart_upload" => {
                let mut v = vec![("s3:AbortMultipartUpload", self.archive_keys()[0].clone())];
                v.extend(
                    routed
                        .first()
                        .map(|r| ("s3:AbortMultipartUpload", r.clone())),
                );
                v
            }
            // The compliance gate (routing only: bootstrap builds no route table without
            // ROUTING_CONFIG, which the template sets only with RoutingConfigKey).
            "get_bucket_encryption" => {
                each("s3:GetEncryptionConfiguration", self.target_buckets()).collect()
            }
            "get_public_access_block" => {
                each("s3:GetBucketPublicAccessBlock", self.target_buckets()).collect()
            }
            "get_bucket_versioning" => {
                each("s3:GetBucketVersioning", self.target_buckets()).collect()
            }
            "get_object_lock_configuration" => {
                each("s3:GetBucketObjectLockConfiguration", self.target_buckets()).collect()
            }
            "get_bucket_policy" => each("s3:GetBucketPolicy", self.target_buckets()).collect(),
            "get_bucket_lifecycle_configuration" => {
                each("s3:GetLifecycleConfiguration", self.target_buckets()).collect()
            }
            // Read by storage-router's inspector only (the archive functions' gate is built
            // with `replication: false`).
            "get_bucket_replication" => Vec::new(),
            // ROUTING_CONFIG from SSM: the template always points it at S3 (RoutingConfigKey);
            // a deployment outside the template that uses ssm: grants ssm:GetParameter itself.
            "get_parameter" => Vec::new(),
            "copy_object" => vec![
                ("s3:GetObject", self.archive_keys()[0].clone()),
                ("s3:PutObject", self.quarantine_arn()),
            ],
            "list_objects_v2" => {
                let mut v = vec![("s3:ListBucket", self.bucket_arn())];
                v.extend(
                    self.target_buckets()
                        .into_iter()
                        .skip(1)
                        .map(|b| ("s3:ListBucket", b)),
                );
                v
            }
            // SendMessageBatch is authorised as sqs:SendMessage. (Only the ArchiveQueue client
            // batches; the pipeline functions link it without using it.)
            "send_message" | "send_message_batch" => each(
                "sqs:SendMessage",
                Self::send_queues(function).into_iter().collect(),
            )
            .collect(),
            "change_message_visibility" => {
                vec![("sqs:ChangeMessageVisibility", Self::source_queue(function)?)]
            }
            "get_queue_url" => vec![("sqs:GetQueueUrl", Self::source_queue(function)?)],
            "receive_message" => vec![("sqs:ReceiveMessage", Self::source_queue(function)?)],
            "delete_message" => vec![("sqs:DeleteMessage", Self::source_queue(function)?)],
            "get_queue_attributes" => {
                vec![("sqs:GetQueueAttributes", Self::source_queue(function)?)]
            }
            "generate_data_key" => each("kms:GenerateDataKey", self.keys()).collect(),
            "decrypt" => each("kms:Decrypt", self.keys()).collect(),
            "get_secret_value" => {
                each("secretsmanager:GetSecretValue", self.secrets(function)).collect()
            }
            "put_events" => vec![("events:PutEvents", Self::bus_arn())],
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the AWS operations in the code
// ---------------------------------------------------------------------------------------------

/// One SDK operation call in the sources.
#[derive(Debug, Clone)]
struct Call {
    op: String,
    at: String,
}

/// The AWS SDK crates' operations: name → the operation's fluent builder sources (each
/// `src/operation/<name>/builders.rs` of the SDK crates in the build).
struct SdkOperations(BTreeMap<String, Vec<PathBuf>>);

impl SdkOperations {
    fn contains(&self, op: &str) -> bool {
        self.0.contains_key(op)
    }

    /// Whether `method` can follow `.op()` in a fluent chain: `send` or a builder method.
    fn continues(&self, op: &str, method: &str) -> bool {
        method == "send"
            || self.0.get(op).into_iter().flatten().any(|builders| {
                std::fs::read_to_string(builders)
                    .unwrap_or_default()
                    .contains(&format!("pub fn {method}("))
            })
    }

    fn fake(ops: &[(&str, &Path)]) -> SdkOperations {
        SdkOperations(
            ops.iter()
                .map(|(n, p)| (n.to_string(), vec![p.to_path_buf()]))
                .collect(),
        )
    }
}

fn sdk_operations() -> SdkOperations {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        });
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(gc_archive_it::venv::workspace_root());
    if let Some(host) = &host {
        cmd.args(["--filter-platform", host]);
    }
    let out = cmd.output().expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        if !p["name"].as_str().unwrap().starts_with("aws-sdk-") {
            continue;
        }
        let dir = Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .join("src/operation");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                names
                    .entry(name)
                    .or_default()
                    .push(path.join("builders.rs"));
            }
        }
    }
    assert!(
        names.contains_key("put_object") && names.contains_key("send_message"),
        "the AWS SDK crates were not found: {:?}",
        names.keys()
    );
    SdkOperations(names)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file that is compiled outside tests: up to a trailing `#[cfg(test)] mod`, and
/// nothing of a file that is itself a test module (`tests.rs`).
fn non_test_source(path: &Path, text: &str) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let mut end = text.len();
    let mut search = 0;
    while let Some(i) = text[search..].find("#[cfg(test)]") {
        let at = search + i;
        if text[at + "#[cfg(test)]".len()..]
            .trim_start()
            .starts_with("mod ")
        {
            end = at;
            break;
        }
        search = at + 1;
    }
    text[..end].to_string()
}

/// Zero-argument calls `.name()` whose name is an SDK operation, followed by `.send()` or a
/// method of the operation's builder.
fn find_calls(path: &Path, text: &str, ops: &SdkOperations) -> Vec<Call> {
    let root = gc_archive_it::venv::workspace_root();
    let shown = path
        .strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string();
    let bytes = text.as_bytes();
    let mut calls = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find("()") {
        let close = i + off;
        i = close + 2;
        let mut start = close;
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            start -= 1;
        }
        if start == close || start == 0 || bytes[start - 1] != b'.' {
            continue;
        }
        let name = &text[start..close];
        if !ops.contains(name) {
            continue;
        }
        let Some(next) = text[i..].trim_start().strip_prefix('.') else {
            continue;
        };
        let method: String = next
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !ops.continues(name, &method) {
            continue;
        }
        let line = text[..start].matches('\n').count() + 1;
        calls.push(Call {
            op: name.to_string(),
            at: format!("{shown}:{line}"),
        });
    }
    calls
}

/// The pipeline's operations: `shared` and the functions, except upload-proxy's own module
/// and function (the pipeline links but never runs them; [`upload_operations`]).
fn code_operations() -> Vec<Call> {
    let root = gc_archive_it::venv::workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src"), &mut files);
    for entry in std::fs::read_dir(root.join("functions")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let upload = root.join("shared/src/upload");
    let upload_fn = root.join("functions/upload-proxy");
    files.retain(|f| !f.starts_with(&upload) && !f.starts_with(&upload_fn));
    operations_in(files)
}

/// What `gc_archive::upload` calls directly (its records, audit and listings go through
/// `ObjectStore`, whose operations the pipeline's scan covers).
fn upload_operations() -> Vec<Call> {
    let root = gc_archive_it::venv::workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src/upload"), &mut files);
    operations_in(files)
}

fn operations_in(files: Vec<PathBuf>) -> Vec<Call> {
    let ops = sdk_operations();
    let mut calls = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        calls.extend(find_calls(&path, &non_test_source(&path, &text), &ops));
    }
    calls
}

#[test]
fn the_operation_scanner_finds_fluent_sdk_calls_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let builders = dir.path().join("builders.rs");
    std::fs::write(
        &builders,
        "impl B {\n    pub fn bucket(mut self, v: String) -> Self { self }\n}\n",
    )
    .unwrap();
    let ops = SdkOperations::fake(&[
        ("put_object", &builders),
        ("verify", &builders),
        ("decrypt", &builders),
    ]);
    let text = "let a = self\n    .client\n    .put_object()\n    .bucket(b);\nlet r = a.send().await;\n\
                let b = report.verify().await;\nlet c = x.decrypt().unwrap();\nlet d = k.decrypt().send();\n\
                #[cfg(test)]\nmod tests { fn t() { c.put_object().send(); } }\n";
    let path = Path::new("x.rs");
    let found: Vec<(String, String)> = find_calls(path, &non_test_source(path, text), &ops)
        .into_iter()
        .map(|c| (c.op, c.at))
        .collect();
    assert_eq!(
        found,
        [
            ("put_object".to_string(), "x.rs:3".to_string()),
            ("decrypt".to_string(), "x.rs:8".to_string())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The code's operations against the roles
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_operation_in_the_code_is_granted_to_both_pipeline_roles_and_nothing_else_is() {
    let calls = code_operations();
    let found: BTreeSet<&str> = calls.iter().map(|c| c.op.as_str()).collect();
    // The scan must see the operations we know are there, or it proves nothing.
    for op in [
        "put_object",
        "head_object",
        "upload_part",
        "complete_multipart_upload",
        "send_message",
        "generate_data_key",
        "decrypt",
        "get_secret_value",
        "put_events",
    ] {
        assert!(found.contains(op), "scan did not find {op}: {found:?}");
    }
    let mut problems = Vec::new();
    for d in Deployment::all().await {
        for function in gc_archive_it::iam::PIPELINE_FUNCTIONS {
            let policy = d.policy(function);
            let mut needed: BTreeSet<String> = ESM_ACTIONS
                .iter()
                .chain(LOG_ACTIONS.iter())
                .map(|a| a.to_string())
                .collect();
            for call in &calls {
                let Some(needs) = d.needs(function, &call.op) else {
                    problems.push(format!(
                        "{}: `{}` is an AWS operation this test does not map to IAM actions: add it to Deployment::needs",
                        call.at, call.op
                    ));
                    continue;
                };
                for (action, resource) in needs {
                    needed.insert(action.to_string());
                    if granting(policy, action, &resource).is_empty() {
                        problems.push(format!(
                            "[{}] {function}: {} calls `{}`, which needs {action} on {resource}: not granted",
                            d.name, call.at, call.op
                        ));
                    }
                }
            }
            for action in granted_actions(policy) {
                if !needed.contains(&action) {
                    problems.push(format!(
                        "[{}] {function} is granted {action}, which neither the code nor the SQS event source needs",
                        d.name
                    ));
                }
            }
            // What the event source mapping and logging need, on the function's own resources.
            let source = Deployment::source_queue(function).expect("a pipeline function's queue");
            for action in ESM_ACTIONS {
                if granting(policy, action, &source).is_empty() {
                    problems.push(format!(
                        "[{}] {function} lacks {action} on its source queue",
                        d.name
                    ));
                }
            }
            for action in LOG_ACTIONS {
                if granting(policy, action, &log_group_arn(function)).is_empty() {
                    problems.push(format!(
                        "[{}] {function} lacks {action} on its log group",
                        d.name
                    ));
                }
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// What moto cannot check: resources it matches as "*", and conditions
// ---------------------------------------------------------------------------------------------

/// The statements of `policy` with an action of `service` (e.g. "kms:").
fn statements_of<'a>(policy: &'a Value, service: &str) -> Vec<&'a Value> {
    statements(policy)
        .into_iter()
        .filter(|s| {
            strings(s.get("Action"))
                .iter()
                .any(|a| a.starts_with(service))
        })
        .collect()
}

fn resources(s: &Value) -> BTreeSet<String> {
    strings(s.get("Resource")).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scope_every_grant_to_the_deployments_own_resources() {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    for d in Deployment::all().await {
        for (function, _) in gc_archive_it::iam::FUNCTIONS {
            let policy = d.policy(function);
            let at = format!("[{}] {function}", d.name);
            for s in statements(policy) {
                check(
                    s["Effect"] == "Allow",
                    format!("{at}: unexpected statement {s}"),
                );
                check(
                    resources(s)
                        .iter()
                        .all(|r| r != "*" && !r.ends_with(":*:*")),
                    format!("{at}: statement on all resources: {s}"),
                );
            }

            // KMS: only the archive key; the functions' own calls only with this org's
            // encryption context ({orgId, conversationId, recordingId}); S3's calls for the
            // bucket's default encryption only via S3 and only for this bucket.
            let kms = statements_of(policy, "kms:");
            let mut org_bound = BTreeSet::new();
            for s in &kms {
                check(
                    resources(s) == BTreeSet::from([d.key_arn.to_string()])
                        || (d.routing && resources(s) == BTreeSet::from([TARGET_KEY_ARN.to_string()])),
                    format!(
                        "{at}: KMS statement not scoped to the archive key {} (or the routing targets' keys): {s}",
                        d.key_arn
                    ),
                );
                let condition = s.get("Condition").cloned().unwrap_or(Value::Null);
                let via_s3 = json!({
                    "StringEquals": {"kms:ViaService": format!("s3.{REGION}.amazonaws.com")},
                });
                if condition == json!({"StringEquals": {"kms:EncryptionContext:orgId": ORG}}) {
                    org_bound.extend(strings(s.get("Action")));
                } else if condition.get("StringEquals") == via_s3.get("StringEquals") {
                    let arns: BTreeSet<String> =
                        strings(condition.pointer("/StringLike/kms:EncryptionContext:aws:s3:arn"))
                            .into_iter()
                            .collect();
                    let mut allowed: BTreeSet<String> = [d.bucket_arn(), d.object_arn("*")].into();
                    if d.routing {
                        allowed.insert(format!("arn:aws:s3:::{ROUTED_PATTERN}"));
                        allowed.insert(format!("arn:aws:s3:::{ROUTED_PATTERN}/*"));
                    }
                    check(
                        !arns.is_empty()
                            && arns.is_subset(&allowed)
                            && condition.as_object().map(|o| o.len()) == Some(2),
                        format!("{at}: S3 encryption grant not bound to the archive (and target) buckets: {s}"),
                    );
                } else {
                    check(false, format!("{at}: KMS statement without the orgId encryption context condition: {s}"));
                }
            }
            if [
                "recording-sweep",
                "storage-router",
                "event-stream",
                "upload-proxy",
            ]
            .contains(&function)
            {
                check(
                    org_bound.is_empty(),
                    format!("{at}: {function} never encrypts, yet is granted the envelope key: {org_bound:?}"),
                );
            } else {
                check(
                    org_bound.contains("kms:GenerateDataKey") && org_bound.contains("kms:Decrypt"),
                    format!("{at}: GenerateDataKey and Decrypt must be granted under kms:EncryptionContext:orgId = GenesysOrgId"),
                );
            }

            // Secrets Manager: exactly the two secrets of the parameters (the webhook's only
            // when configured).
            let secrets: BTreeSet<String> = statements_of(policy, "secretsmanager:")
                .iter()
                .flat_map(|s| resources(s))
                .collect();
            check(
                secrets == d.secrets(function).into_iter().collect(),
                format!(
                    "{at}: secrets granted {secrets:?}, expected {:?}",
                    d.secrets(function)
                ),
            );

            // EventBridge: the result bus only.
            for s in statements_of(policy, "events:") {
                check(
                    resources(s) == BTreeSet::from([Deployment::bus_arn()]),
                    format!("{at}: events statement not scoped to the result bus: {s}"),
                );
            }

            // S3 objects: under `${bucket}/${ArchivePrefix}/` only (and, with routing, in the
            // target buckets RoutingBucketPattern names).
            let object_root = d.object_arn("");
            let routed_root = format!("arn:aws:s3:::{ROUTED_PATTERN}/");
            for s in statements_of(policy, "s3:") {
                let actions = strings(s.get("Action"));
                // (s3:GetBucketObjectLockConfiguration is a bucket setting, not an object.)
                if actions.iter().any(|a| {
                    (a.contains("Object") && !a.starts_with("s3:GetBucket"))
                        || a.contains("Multipart")
                }) {
                    for r in resources(s) {
                        check(
                            r.starts_with(&object_root)
                                || (d.routing && r.starts_with(&routed_root)),
                            format!("{at}: object grant {r} is not under {object_root}"),
                        );
                    }
                }
                // DeleteObject: transfer checkpoints under _state/, and archive objects anywhere
                // under the prefix (checksum mismatch, quarantine move), nowhere else.
                if actions.iter().any(|a| a == "s3:DeleteObject") {
                    let mut allowed: BTreeSet<String> =
                        [d.object_arn("_state/*"), d.object_arn("*")].into();
                    if function == "upload-proxy" {
                        // Refused and aborted attachments only.
                        allowed = [d.object_arn("*/attachments/*")].into();
                    } else if function == "storage-router" {
                        // The probe only.
                        allowed = [d.object_arn("_probe/*")].into();
                        if d.routing {
                            allowed.insert(format!("{routed_root}*_probe/*"));
                        }
                    } else if d.routing {
                        allowed.insert(format!("{routed_root}*"));
                    }
                    check(
                        resources(s).is_subset(&allowed),
                        format!("{at}: DeleteObject beyond checkpoints and archive objects (the probe for storage-router): {s}"),
                    );
                }
                // ListBucket: on the bucket, unconditioned, so that it counts for the
                // HeadObject/GetObject existence checks (which carry no s3:prefix).
                if actions.iter().any(|a| a == "s3:ListBucket") {
                    let buckets: BTreeSet<String> =
                        [d.bucket_arn(), format!("arn:aws:s3:::{ROUTED_PATTERN}")].into();
                    check(
                        !resources(s).is_empty()
                            && resources(s).is_subset(&buckets)
                            && (d.routing || resources(s) == BTreeSet::from([d.bucket_arn()]))
                            && s.get("Condition").is_none(),
                        format!("{at}: s3:ListBucket must be granted on the bucket (and the target buckets) without a condition: {s}"),
                    );
                }
            }

            // SQS: sends only to the TransferQueue and the function's own DLQ; consume only the
            // source queue.
            let mut sends = BTreeSet::new();
            for s in statements_of(policy, "sqs:") {
                let actions = strings(s.get("Action"));
                if actions.iter().any(|a| a == "sqs:SendMessage") {
                    sends.extend(resources(s));
                }
                if actions.iter().any(|a| ESM_ACTIONS.contains(&a.as_str())) {
                    check(
                        Deployment::source_queue(function)
                            .is_some_and(|q| resources(s) == BTreeSet::from([q])),
                        format!("{at}: consuming actions beyond the source queue: {s}"),
                    );
                }
            }
            check(
                sends == Deployment::send_queues(function),
                format!(
                    "{at}: SendMessage to {sends:?}, expected {:?}",
                    Deployment::send_queues(function)
                ),
            );

            for s in statements_of(policy, "logs:") {
                check(
                    resources(s) == BTreeSet::from([log_group_arn(function)]),
                    format!("{at}: logs statement beyond the function's log group: {s}"),
                );
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// `function`'s role in every deployment grants each of `needs`, no action outside them, and
/// none of `denied`.
async fn check_role(
    function: &str,
    needs: impl Fn(&Deployment) -> Vec<(&'static str, String)>,
    denied: impl Fn(&Deployment) -> Vec<(&'static str, String)>,
) {
    let mut problems = Vec::new();
    for d in Deployment::all().await {
        let policy = d.policy(function);
        let needs = needs(&d);
        for (action, resource) in &needs {
            if granting(policy, action, resource).is_empty() {
                problems.push(format!(
                    "[{}] {function} needs {action} on {resource}: not granted",
                    d.name
                ));
            }
        }
        let needed: BTreeSet<&str> = needs.iter().map(|(a, _)| *a).collect();
        for action in granted_actions(policy) {
            if !needed.contains(action.as_str()) {
                problems.push(format!(
                    "[{}] {function} is granted {action}, which it does not use",
                    d.name
                ));
            }
        }
        for (action, resource) in denied(&d) {
            if !granting(policy, action, &resource).is_empty() {
                problems.push(format!(
                    "[{}] {function} may {action} on {resource}",
                    d.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_role_grants_what_the_sweep_does_and_nothing_more() {
    check_role(
        "recording-sweep",
        Deployment::sweep_needs,
        Deployment::sweep_denied,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_role_grants_what_event_stream_does_and_nothing_more() {
    check_role(
        "event-stream",
        Deployment::stream_needs,
        Deployment::stream_denied,
    )
    .await;
}

/// Every S3 or EventBridge operation upload-proxy's module calls is granted on the
/// attachments (the bus), and the scan sees the ones we know are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_the_upload_module_is_granted_to_its_role() {
    let calls = upload_operations();
    let found: BTreeSet<&str> = calls.iter().map(|c| c.op.as_str()).collect();
    for op in [
        "create_multipart_upload",
        "upload_part",
        "list_parts",
        "complete_multipart_upload",
        "put_events",
    ] {
        assert!(found.contains(op), "scan did not find {op}: {found:?}");
    }
    let mut problems = Vec::new();
    for d in Deployment::all().await {
        let policy = d.policy("upload-proxy");
        let attachment = d.object_arn(&format!(
            "{ORG}/year=2026/month=03/day=04/hour=05/conversation_id=c1/attachments/u1/a.pdf"
        ));
        for call in &calls {
            let action = match call.op.as_str() {
                "create_multipart_upload" | "upload_part" | "complete_multipart_upload" => {
                    "s3:PutObject"
                }
                "list_parts" => "s3:ListMultipartUploadParts",
                "abort_multipart_upload" => "s3:AbortMultipartUpload",
                "head_object" | "get_object" => "s3:GetObject",
                "delete_object" => "s3:DeleteObject",
                "put_events" => "events:PutEvents",
                other => {
                    problems.push(format!(
                        "{}: `{other}` is not mapped to an IAM action",
                        call.at
                    ));
                    continue;
                }
            };
            let resource = if action.starts_with("events:") {
                Deployment::bus_arn()
            } else {
                attachment.clone()
            };
            if granting(policy, action, &resource).is_empty() {
                problems.push(format!(
                    "[{}] {} calls `{}`, which needs {action} on {resource}: not granted",
                    d.name, call.at, call.op
                ));
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_role_grants_what_upload_proxy_does_and_nothing_more() {
    check_role(
        "upload-proxy",
        Deployment::upload_needs,
        Deployment::upload_denied,
    )
    .await;
}

/// Without EventStreamEnabled=true there is no event-stream role (nor function).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_is_absent_unless_enabled() {
    let parameters = json!({
        "GenesysOrgId": ORG,
        "GenesysCredentialsSecretArn": GENESYS_SECRET,
        "GenesysEventBusName": format!("aws.partner/genesys.com/cloud/{ORG}/gc-archive"),
        "ArchiveBucketName": "acme-call-archive",
        "ArchivePrefix": PREFIX,
        "KmsKeyArn": KEY_ARN,
        "ResultEventBusName": RESULT_BUS,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
    });
    let mut resources = json!({});
    for (id, name) in [
        ("ArchiveQueue", "archive"),
        ("ArchiveDeadLetterQueue", "archive-dlq"),
        ("TransferQueue", "transfer"),
        ("TransferDeadLetterQueue", "transfer-dlq"),
    ] {
        resources[id] = json!({"Ref": format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"), "Arn": queue_arn(name)});
    }
    for f in [
        "archive-on-event",
        "chunk-recording",
        "recording-sweep",
        "storage-router",
    ] {
        let id = match f {
            "archive-on-event" => "ArchiveOnEventLogGroup",
            "chunk-recording" => "ChunkRecordingLogGroup",
            "recording-sweep" => "RecordingSweepLogGroup",
            _ => "StorageRouterLogGroup",
        };
        resources[id] = json!({"Arn": log_group_arn(f)});
    }
    let policies = template_policies(&parameters, &resources).await.unwrap();
    assert!(policies.get("event-stream").is_none(), "{policies}");
    assert!(policies.get("recording-sweep").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_role_grants_what_storage_router_does_and_nothing_more() {
    check_role(
        "storage-router",
        Deployment::router_needs,
        Deployment::router_denied,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The resolver itself
// ---------------------------------------------------------------------------------------------

/// Runs tools/template_policies.py on `template` text; returns (exit code, stdout, stderr).
fn run_resolver(template: &str, input: &Value) -> (i32, String, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.yaml");
    std::fs::write(&path, template).unwrap();
    let mut child = std::process::Command::new(gc_archive_it::venv::python())
        .arg(gc_archive_it::venv::workspace_root().join("tools/template_policies.py"))
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn role_template(statement: &str) -> String {
    format!(
        r#"Parameters:
  Env:
    Type: String
    Default: prod
    AllowedValues: [prod, test]
  Extra:
    Type: String
    Default: ""
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  HasExtra: !Not [!Equals [!Ref Extra, ""]]
  Both: !And [!Condition IsProd, !Or [!Condition HasExtra, !Equals [a, b]]]
Resources:
  Queue:
    Type: AWS::SQS::Queue
  ArchiveOnEventRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: one
          PolicyDocument:
            Statement:
{statement}
        - PolicyName: two
          PolicyDocument:
            Statement:
              Effect: Allow
              Action: sqs:SendMessage
              Resource: !GetAtt Queue.Arn
  ChunkRecordingRole:
    Type: AWS::IAM::Role
    Properties:
      Policies: []
  RecordingSweepRole:
    Type: AWS::IAM::Role
    Properties:
      Policies: []
  StorageRouterRole:
    Type: AWS::IAM::Role
    Properties:
      Policies: []
  EventStreamRole:
    Type: AWS::IAM::Role
    Condition: HasExtra
    Properties:
      Policies: []
  UploadProxyRole:
    Type: AWS::IAM::Role
    Condition: HasExtra
    Properties:
      Policies: []
"#
    )
}

#[test]
fn the_resolver_evaluates_conditions_and_intrinsics() {
    let statement = r#"              - !If
                - IsProd
                - Effect: Allow
                  Action: s3:GetObject
                  Resource:
                    - !Sub arn:${AWS::Partition}:s3:::${Queue}/${Env}/*
                    - !Sub ["arn:aws:s3:::${B}/x", {B: !Join ["-", [a, !Ref Env, !Ref "AWS::Region"]]}]
                    - !If [HasExtra, !Ref Extra, !Ref AWS::NoValue]
                    - !Sub "${!Literal}-${AWS::AccountId}"
                - !Ref AWS::NoValue
              - !If [Both, {Effect: Allow, Action: "*", Resource: "*"}, !Ref AWS::NoValue]"#;
    let input = json!({
        "parameters": {"AWS::AccountId": "111122223333"},
        "resources": {"Queue": {"Ref": "q-url", "Arn": "arn:aws:sqs:us-east-1:111122223333:q"}},
    });
    let (code, out, err) = run_resolver(&role_template(statement), &input);
    assert_eq!(code, 0, "{err}");
    let policies: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        policies["archive-on-event"]["Statement"],
        json!([
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [
                "arn:aws:s3:::q-url/prod/*",
                "arn:aws:s3:::a-prod-us-east-1/x",
                "${Literal}-111122223333",
            ]},
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:111122223333:q"},
        ])
    );
    assert_eq!(policies["chunk-recording"]["Statement"], json!([]));
    // A role whose condition is false is not created, so it has no policy.
    assert!(policies.get("event-stream").is_none(), "{policies}");
    let with_extra = json!({
        "parameters": {"AWS::AccountId": "111122223333", "Extra": "arn:aws:s3:::x"},
        "resources": {"Queue": {"Ref": "q-url", "Arn": "arn:aws:sqs:us-east-1:111122223333:q"}},
    });
    let (code, out, err) = run_resolver(&role_template(statement), &with_extra);
    assert_eq!(code, 0, "{err}");
    let policies: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(policies["event-stream"]["Statement"], json!([]));
}

#[test]
fn the_resolver_names_what_it_cannot_resolve() {
    let cases = [
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: !Select [0, [a]]}",
            json!({}),
            "unknown intrinsic: Fn::Select",
        ),
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: !GetAtt Queue.Arn}",
            json!({"resources": {}}),
            "GetAtt Queue.Arn",
        ),
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: !Ref Missing}",
            json!({"resources": {"Queue": {"Arn": "q"}}}),
            "Ref Missing",
        ),
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: !Sub \"${Queue.Url}\"}",
            json!({"resources": {"Queue": {"Arn": "q"}}}),
            "GetAtt Queue.Url",
        ),
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: x}",
            json!({"parameters": {"Env": "staging"}, "resources": {"Queue": {"Arn": "q"}}}),
            "Env='staging' is not one of its AllowedValues",
        ),
        (
            "              - {Effect: Allow, Action: s3:GetObject, Resource: x}",
            json!({"parameters": {"Nope": "1"}, "resources": {"Queue": {"Arn": "q"}}}),
            "unknown parameters: Nope",
        ),
    ];
    let mut seen = BTreeMap::new();
    for (statement, input, expected) in cases {
        let (code, _, err) = run_resolver(&role_template(statement), &input);
        assert_eq!(code, 2, "{statement}: {err}");
        assert!(err.contains(expected), "{statement}: {err}");
        seen.insert(expected, err);
    }
    assert_eq!(seen.len(), 6);
}
