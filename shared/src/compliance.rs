//! Compliance checks of a storage target's bucket: what a compliance team needs to be true
//! before a recording is written there, each check with its verdict and the fix.
//!
//! The bucket's settings are read once ([`BucketSettings`], by [`S3Inspector`] or a test's own
//! values) and judged by [`evaluate`], a pure function, so every rule is testable without AWS.
//! A target with a failed *required* check is refused by the router: its recordings wait (the
//! invocation fails as an infrastructure problem, nothing is discarded) until the bucket is
//! fixed.
//!
//! What is checked (each one names its API and the IAM action it needs):
//! * reachable: a one-key `ListObjectsV2` (`s3:ListBucket`);
//! * default encryption SSE-KMS, or the target's `minimumEncryption` (`GetBucketEncryption`);
//! * Block Public Access, all four settings on (`GetPublicAccessBlock`);
//! * versioning enabled (`GetBucketVersioning`);
//! * Object Lock enabled when the target is `worm`, and its default retention against
//!   `retentionDays` (`GetObjectLockConfiguration`);
//! * a bucket policy that denies requests without TLS (`aws:SecureTransport` false)
//!   (`GetBucketPolicy`);
//! * a lifecycle rule aborting incomplete multipart uploads (`GetBucketLifecycleConfiguration`);
//! * replication (CRR) status, reported, never required (`GetBucketReplication`);
//! * a write/read/delete probe under `{prefix}/_probe/` ([`probe`]; storage-router only: the
//!   archive functions' own writes are their probe).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::routing::{EncryptionMinimum, StorageTarget};
use crate::store::{Conditional, ObjectKey, ObjectStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub id: String,
    pub status: Status,
    /// A required check that fails makes the target non-compliant.
    pub required: bool,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    pub target: String,
    pub bucket: String,
    pub checked_at: DateTime<Utc>,
    pub checks: Vec<Check>,
}

impl TargetReport {
    /// No required check failed.
    pub fn compliant(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| c.required && c.status == Status::Fail)
    }

    /// The failed required checks, one line each (for errors and logs).
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.required && c.status == Status::Fail)
            .map(|c| format!("{}: {}", c.id, c.detail))
            .collect()
    }
}

/// A setting that could not be read: the API's error (access denied names the IAM action).
pub type Readable<T> = Result<T, String>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DefaultEncryption {
    /// `aws:kms`, `aws:kms:dsse` or `AES256`.
    pub algorithm: String,
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectLockSettings {
    pub enabled: bool,
    /// `COMPLIANCE` or `GOVERNANCE`, when a default retention is set.
    pub default_mode: Option<String>,
    pub default_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAbortRule {
    pub prefix: String,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRule {
    pub id: String,
    pub enabled: bool,
    pub destination_bucket: String,
}

/// A bucket's configuration as S3 reports it. `Ok(None)` means "not configured".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    pub reachable: Readable<()>,
    pub encryption: Readable<Option<DefaultEncryption>>,
    /// BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets.
    pub public_access_block: Readable<Option<[bool; 4]>>,
    /// `Enabled`, `Suspended`, or None when never enabled.
    pub versioning: Readable<Option<String>>,
    pub object_lock: Readable<Option<ObjectLockSettings>>,
    /// The policy document (JSON text).
    pub policy: Readable<Option<String>>,
    /// Enabled rules with `AbortIncompleteMultipartUpload`.
    pub lifecycle_abort: Readable<Vec<LifecycleAbortRule>>,
    /// None when not read (the archive functions' gate: replication is reported, never
    /// required, so their roles are not granted its read).
    pub replication: Option<Readable<Vec<ReplicationRule>>>,
}

/// Reads a bucket's settings.
#[async_trait]
pub trait BucketInspector: Send + Sync {
    async fn inspect(&self, bucket: &str) -> BucketSettings;
}

fn check(id: &str, status: Status, required: bool, detail: String, fix: Option<&str>) -> Check {
    Check {
        id: id.into(),
        status,
        required,
        detail,
        fix: fix.map(str::to_string),
    }
}

/// A setting that could not be read fails its check with the reason (access denied names the
/// IAM action the role lacks).
fn unreadable(id: &str, required: bool, why: &str) -> Check {
    check(
        id,
        if required { Status::Fail } else { Status::Warn },
        required,
        format!("could not be read: {why}"),
        Some("grant the function's role the read action named in the error, or check the bucket exists in the target's region"),
    )
}

/// Judges a bucket's settings against a target's requirements.
pub fn evaluate(
    name: &str,
    target: &StorageTarget,
    s: &BucketSettings,
    now: DateTime<Utc>,
) -> TargetReport {
    let mut checks = Vec::new();
    checks.push(match &s.reachable {
        Ok(()) => check(
            "reachable",
            Status::Pass,
            true,
            "the bucket answers a listing with our credentials".into(),
            None,
        ),
        Err(e) => check(
            "reachable",
            Status::Fail,
            true,
            format!("listing the bucket failed: {e}"),
            Some("create the bucket, fix targets.<name>.region, or grant s3:ListBucket on it"),
        ),
    });
    checks.push(encryption_check(target, &s.encryption));
    checks.push(match &s.public_access_block {
        Err(e) => unreadable("public-access-block", true, e),
        Ok(Some(flags)) if flags.iter().all(|f| *f) => check(
            "public-access-block",
            Status::Pass,
            true,
            "all four Block Public Access settings are on".into(),
            None,
        ),
        Ok(flags) => {
            let names = [
                "BlockPublicAcls",
                "IgnorePublicAcls",
                "BlockPublicPolicy",
                "RestrictPublicBuckets",
            ];
            let off: Vec<&str> = match flags {
                Some(f) => names
                    .iter()
                    .zip(f)
                    .filter(|(_, on)| !**on)
                    .map(|(n, _)| *n)
                    .collect(),
                None => names.to_vec(),
            };
            check(
                "public-access-block",
                Status::Fail,
                true,
                format!("public access is not fully blocked: {} off", off.join(", ")),
                Some("aws s3api put-public-access-block --bucket <bucket> --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"),
            )
        }
    });
    checks.push(match &s.versioning {
        Err(e) => unreadable("versioning", true, e),
        Ok(Some(v)) if v == "Enabled" => check(
            "versioning",
            Status::Pass,
            true,
            "versioning is enabled".into(),
            None,
        ),
        Ok(v) => check(
            "versioning",
            Status::Fail,
            true,
            format!(
                "versioning is {}",
                v.as_deref().unwrap_or("off (never enabled)")
            ),
            Some("aws s3api put-bucket-versioning --bucket <bucket> --versioning-configuration Status=Enabled"),
        ),
    });
    checks.push(object_lock_check(target, &s.object_lock));
    checks.push(match &s.policy {
        Err(e) => unreadable("tls-only-policy", true, e),
        Ok(Some(doc)) if denies_insecure_transport(doc) => check(
            "tls-only-policy",
            Status::Pass,
            true,
            "the bucket policy denies requests without TLS".into(),
            None,
        ),
        Ok(p) => check(
            "tls-only-policy",
            Status::Fail,
            true,
            match p {
                Some(_) => "the bucket policy has no statement denying requests where aws:SecureTransport is false".into(),
                None => "the bucket has no policy, so requests without TLS are not denied".into(),
            },
            Some(r#"add a statement {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::<bucket>","arn:aws:s3:::<bucket>/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#),
        ),
    });
    checks.push(match &s.lifecycle_abort {
        Err(e) => unreadable("abort-incomplete-multipart", true, e),
        Ok(rules) => match rules
            .iter()
            .filter(|r| target.prefix.starts_with(&r.prefix))
            .min_by_key(|r| r.days)
        {
            Some(r) => check(
                "abort-incomplete-multipart",
                Status::Pass,
                true,
                format!(
                    "incomplete multipart uploads are aborted after {} days (rule prefix {:?})",
                    r.days, r.prefix
                ),
                None,
            ),
            None => check(
                "abort-incomplete-multipart",
                Status::Fail,
                true,
                "no enabled lifecycle rule covering the target's prefix aborts incomplete multipart uploads (abandoned parts are billed forever)".into(),
                Some("add a lifecycle rule with AbortIncompleteMultipartUpload DaysAfterInitiation=7 and an empty filter"),
            ),
        },
    });
    let replication = match &s.replication {
        None => None,
        Some(Err(e)) => Some(unreadable("replication", false, e)),
        Some(Ok(rules)) if rules.is_empty() => Some(check(
            "replication",
            Status::Warn,
            false,
            "no replication: the archive exists in one region only".into(),
            Some("add a replication rule to a bucket in another region if your policy asks for a second copy"),
        )),
        Some(Ok(rules)) => {
            let list: Vec<String> = rules
                .iter()
                .map(|r| {
                    format!(
                        "{} → {} ({})",
                        r.id,
                        r.destination_bucket,
                        if r.enabled { "enabled" } else { "disabled" }
                    )
                })
                .collect();
            Some(check(
                "replication",
                if rules.iter().any(|r| r.enabled) {
                    Status::Pass
                } else {
                    Status::Warn
                },
                false,
                format!("replication: {}", list.join("; ")),
                None,
            ))
        }
    };
    checks.extend(replication);
    TargetReport {
        target: name.into(),
        bucket: target.bucket.clone(),
        checked_at: now,
        checks,
    }
}

fn encryption_check(target: &StorageTarget, e: &Readable<Option<DefaultEncryption>>) -> Check {
    let id = "default-encryption";
    let fix_kms = "aws s3api put-bucket-encryption --bucket <bucket> --server-side-encryption-configuration '{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\",\"KMSMasterKeyID\":\"<key arn>\"},\"BucketKeyEnabled\":true}]}'";
    match e {
        Err(why) => unreadable(id, true, why),
        Ok(None) => check(
            id,
            Status::Fail,
            true,
            "the bucket has no default encryption".into(),
            Some(fix_kms),
        ),
        Ok(Some(enc)) => {
            let kms = enc.algorithm.starts_with("aws:kms");
            let ok = match target.minimum_encryption {
                EncryptionMinimum::Kms => kms,
                EncryptionMinimum::Aes256 => kms || enc.algorithm == "AES256",
            };
            if ok {
                check(
                    id,
                    Status::Pass,
                    true,
                    format!(
                        "default encryption {}{}",
                        enc.algorithm,
                        enc.kms_key
                            .as_deref()
                            .map(|k| format!(" with {k}"))
                            .unwrap_or_default()
                    ),
                    None,
                )
            } else {
                check(
                    id,
                    Status::Fail,
                    true,
                    format!(
                        "default encryption is {}, the target requires {}",
                        enc.algorithm,
                        target.minimum_encryption.as_str()
                    ),
                    Some(fix_kms),
                )
            }
        }
    }
}

fn object_lock_check(target: &StorageTarget, l: &Readable<Option<ObjectLockSettings>>) -> Check {
    let id = "object-lock";
    let need = target.retention_days.unwrap_or(0);
    match l {
        Err(why) => unreadable(id, target.worm, why),
        Ok(Some(lock)) if lock.enabled => match (&lock.default_mode, lock.default_days) {
            (Some(mode), Some(days)) if days < need => check(
                id,
                Status::Warn,
                target.worm,
                format!("Object Lock is on, but its default retention ({mode}, {days} days) is shorter than the target's {need} days; archives are written with their own {need}-day retention"),
                Some("raise the bucket's default retention to the target's retentionDays"),
            ),
            (mode, days) => check(
                id,
                Status::Pass,
                target.worm,
                format!(
                    "Object Lock is on{}",
                    match (mode, days) {
                        (Some(m), Some(d)) => format!(" (default {m}, {d} days)"),
                        _ => " (no default retention; archives carry their own)".into(),
                    }
                ),
                None,
            ),
        },
        Ok(_) if target.worm => check(
            id,
            Status::Fail,
            true,
            "the target is worm, but the bucket has no Object Lock: retention would be enforced by nothing".into(),
            Some("Object Lock can only be enabled on a versioned bucket (aws s3api put-object-lock-configuration --bucket <bucket> --object-lock-configuration ObjectLockEnabled=Enabled), or choose a bucket created with it"),
        ),
        Ok(_) => check(
            id,
            Status::Pass,
            false,
            "Object Lock is off (the target is not worm)".into(),
            None,
        ),
    }
}

/// True when some statement denies every principal any S3 action on the bucket when
/// `aws:SecureTransport` is false.
pub fn denies_insecure_transport(policy: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return false;
    };
    let list = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(o @ serde_json::Value::Object(_)) => vec![o.clone()],
        _ => return false,
    };
    statements.iter().any(|st| {
        let everyone = match st.get("Principal") {
            Some(serde_json::Value::String(s)) => s == "*",
            Some(p) => list(p.get("AWS")).iter().any(|a| a == "*"),
            None => false,
        };
        let actions = list(st.get("Action"));
        let all_s3 = actions.iter().any(|a| a == "s3:*" || a == "*");
        let insecure = st
            .get("Condition")
            .and_then(|c| c.get("Bool"))
            .and_then(|b| b.get("aws:SecureTransport"))
            .is_some_and(|v| v == "false" || v == &serde_json::Value::Bool(false));
        st.get("Effect").and_then(|e| e.as_str()) == Some("Deny") && everyone && all_s3 && insecure
    })
}

/// Writes, reads back and deletes an object under `{prefix}/_probe/`: the bucket takes our
/// writes with our credentials (and our KMS key, through SSE-KMS) and gives them back.
pub async fn probe(store: &dyn ObjectStore, prefix: &str, now: DateTime<Utc>) -> Check {
    let key = ObjectKey::new(format!(
        "{}_probe/{}-{}.txt",
        if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        now.format("%Y%m%dT%H%M%S"),
        uuid::Uuid::new_v4()
    ));
    let body = Bytes::from(format!("gc-archive compliance probe {now}"));
    let fail = |step: &str, e: String| {
        check(
            "probe",
            Status::Fail,
            true,
            format!("{step} {key} failed: {e}"),
            Some("grant the role s3:PutObject, s3:GetObject and s3:DeleteObject on the target's prefix (and kms:GenerateDataKey/Decrypt on the bucket's key)"),
        )
    };
    match store.put_if_absent(&key, body.clone(), "text/plain").await {
        Ok(Conditional::Written(_)) => {}
        Ok(Conditional::PreconditionFailed) => {
            return fail("write", "the probe key already existed".into())
        }
        Err(e) => return fail("write", e.to_string()),
    }
    match store.get(&key).await {
        Ok(Some(o)) if o.body == body => {}
        Ok(Some(_)) => return fail("read", "the bytes read back differ".into()),
        Ok(None) => return fail("read", "the object was not there".into()),
        Err(e) => return fail("read", e.to_string()),
    }
    if let Err(e) = store.delete(&key).await {
        return fail("delete", e.to_string());
    }
    check(
        "probe",
        Status::Pass,
        true,
        format!("wrote, read back and deleted {key}"),
        None,
    )
}

/// [`BucketInspector`] on Amazon S3.
pub struct S3Inspector {
    pub client: aws_sdk_s3::Client,
    /// Also read the replication configuration (storage-router; `s3:GetReplicationConfiguration`).
    pub replication: bool,
}

/// The error of a bucket read, with the IAM action it needs when access was denied.
fn api_error<E>(action: &str, e: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let summary = crate::config::aws_error_summary(e);
    let denied = e.raw_response().map(|r| r.status().as_u16()) == Some(403);
    if denied {
        format!("{summary} (the role needs {action})")
    } else {
        summary
    }
}

/// The "not configured" answer of a bucket-settings read (S3 answers 404 with a code).
fn not_configured<E>(e: &aws_sdk_s3::error::SdkError<E>, codes: &[&str]) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(se) => {
            se.err().code().is_some_and(|c| codes.contains(&c))
        }
        _ => false,
    }
}

#[async_trait]
impl BucketInspector for S3Inspector {
    async fn inspect(&self, bucket: &str) -> BucketSettings {
        let c = &self.client;
        // A one-key listing rather than HeadBucket: the same permission (s3:ListBucket) and the
        // call the archive functions depend on; moto 5.2.5 refuses HeadBucket under IAM
        // enforcement even with s3:ListBucket granted.
        let reachable = c
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| api_error("s3:ListBucket", &e));
        let encryption = match c.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => Ok(out
                .server_side_encryption_configuration()
                .and_then(|cfg| cfg.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| DefaultEncryption {
                    algorithm: d.sse_algorithm().as_str().to_string(),
                    kms_key: d.kms_master_key_id().map(str::to_string),
                })),
            Err(e) if not_configured(&e, &["ServerSideEncryptionConfigurationNotFoundError"]) => {
                Ok(None)
            }
            Err(e) => Err(api_error("s3:GetEncryptionConfiguration", &e)),
        };
        let public_access_block = match c.get_public_access_block().bucket(bucket).send().await {
            Ok(out) => Ok(out.public_access_block_configuration().map(|p| {
                [
                    p.block_public_acls().unwrap_or(false),
                    p.ignore_public_acls().unwrap_or(false),
                    p.block_public_policy().unwrap_or(false),
                    p.restrict_public_buckets().unwrap_or(false),
                ]
            })),
            Err(e) if not_configured(&e, &["NoSuchPublicAccessBlockConfiguration"]) => Ok(None),
            Err(e) => Err(api_error("s3:GetBucketPublicAccessBlock", &e)),
        };
        let versioning = c
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map(|out| out.status().map(|s| s.as_str().to_string()))
            .map_err(|e| api_error("s3:GetBucketVersioning", &e));
        let object_lock = match c
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.object_lock_configuration().map(|cfg| {
                let rule = cfg.rule().and_then(|r| r.default_retention());
                ObjectLockSettings {
                    enabled: cfg.object_lock_enabled().map(|e| e.as_str()) == Some("Enabled"),
                    default_mode: rule.and_then(|r| r.mode()).map(|m| m.as_str().to_string()),
                    default_days: rule.and_then(|r| {
                        r.days()
                            .filter(|d| *d > 0)
                            .or(r.years().filter(|y| *y > 0).map(|y| y * 365))
                            .map(|d| d.max(0) as u32)
                    }),
                }
            })),
            Err(e) if not_configured(&e, &["ObjectLockConfigurationNotFoundError"]) => Ok(None),
            Err(e) => Err(api_error("s3:GetBucketObjectLockConfiguration", &e)),
        };
        let policy = match c.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => Ok(out.policy().map(str::to_string)),
            Err(e) if not_configured(&e, &["NoSuchBucketPolicy"]) => Ok(None),
            Err(e) => Err(api_error("s3:GetBucketPolicy", &e)),
        };
        let lifecycle_abort = match c
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .rules()
                .iter()
                .filter(|r| r.status().as_str() == "Enabled")
                .filter_map(|r| {
                    let days = r
                        .abort_incomplete_multipart_upload()?
                        .days_after_initiation()?;
                    #[allow(deprecated)]
                    let prefix = r
                        .filter()
                        .and_then(|f| f.prefix().map(str::to_string))
                        .or_else(|| r.prefix().map(str::to_string))
                        .unwrap_or_default();
                    Some(LifecycleAbortRule {
                        prefix,
                        days: days.max(0) as u32,
                    })
                })
                .collect()),
            Err(e) if not_configured(&e, &["NoSuchLifecycleConfiguration"]) => Ok(Vec::new()),
            Err(e) => Err(api_error("s3:GetLifecycleConfiguration", &e)),
        };
        let replication = if self.replication {
            Some(
                match c.get_bucket_replication().bucket(bucket).send().await {
                    Ok(out) => Ok(out
                        .replication_configuration()
                        .map(|cfg| {
                            cfg.rules()
                                .iter()
                                .map(|r| ReplicationRule {
                                    id: r.id().unwrap_or("-").to_string(),
                                    enabled: r.status().as_str() == "Enabled",
                                    destination_bucket: r
                                        .destination()
                                        .map(|d| d.bucket().to_string())
                                        .unwrap_or_default(),
                                })
                                .collect()
                        })
                        .unwrap_or_default()),
                    Err(e) if not_configured(&e, &["ReplicationConfigurationNotFoundError"]) => {
                        Ok(Vec::new())
                    }
                    Err(e) => Err(api_error("s3:GetReplicationConfiguration", &e)),
                },
            )
        } else {
            None
        };
        BucketSettings {
            reachable,
            encryption,
            public_access_block,
            versioning,
            object_lock,
            policy,
            lifecycle_abort,
            replication,
        }
    }
}

/// Every target's checks, as storage-router writes them to `_reports/compliance/latest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceReport {
    pub checked_at: DateTime<Utc>,
    /// The routing document the targets came from (`ROUTING_CONFIG` with its version), or
    /// `ARCHIVE_BUCKET` when there is none.
    pub config: String,
    pub targets: Vec<TargetReport>,
}

impl ComplianceReport {
    pub fn compliant(&self) -> bool {
        self.targets.iter().all(TargetReport::compliant)
    }
}

/// A target to check: its name, what it asks of its bucket, and the bucket's store (probe).
pub struct CheckedTarget {
    pub name: String,
    pub target: StorageTarget,
    pub store: std::sync::Arc<dyn ObjectStore>,
}

/// Checks every target (with the write/read/delete probe when `probe`).
pub async fn check_all(
    targets: &[CheckedTarget],
    inspector: &dyn BucketInspector,
    probe_writes: bool,
    config: &str,
    now: DateTime<Utc>,
) -> ComplianceReport {
    let mut reports = Vec::new();
    for t in targets {
        let settings = inspector.inspect(&t.target.bucket).await;
        let mut report = evaluate(&t.name, &t.target, &settings, now);
        if probe_writes {
            report
                .checks
                .push(probe(t.store.as_ref(), &t.target.prefix, now).await);
        }
        reports.push(report);
    }
    ComplianceReport {
        checked_at: now,
        config: config.to_string(),
        targets: reports,
    }
}

/// A readable rendering: one line per check, the fix under each that is not a pass.
pub fn to_text(report: &ComplianceReport) -> String {
    let mut out = format!(
        "compliance of {} target(s) from {} at {}\n",
        report.targets.len(),
        report.config,
        report.checked_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for t in &report.targets {
        out.push_str(&format!(
            "\n{} (s3://{}): {}\n",
            t.target,
            t.bucket,
            if t.compliant() {
                "compliant"
            } else {
                "NOT COMPLIANT: its recordings wait"
            }
        ));
        for c in &t.checks {
            let mark = match c.status {
                Status::Pass => "pass",
                Status::Warn => "WARN",
                Status::Fail if c.required => "FAIL",
                Status::Fail => "fail",
            };
            out.push_str(&format!("  {mark:4} {:27} {}\n", c.id, c.detail));
            if c.status != Status::Pass {
                if let Some(fix) = &c.fix {
                    out.push_str(&format!("       fix: {fix}\n"));
                }
            }
        }
    }
    out
}

/// How long a verdict is trusted by the archive functions before the bucket is read again.
pub const VERDICT_TTL: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests;
