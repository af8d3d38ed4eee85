//! Storage routing against moto: target buckets set up as the README says, and a bucket
//! inspector that stands in, openly, for the two settings moto cannot serve.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, VersioningConfiguration,
};
use gc_archive::compliance::{BucketInspector, BucketSettings, S3Inspector};

use crate::stack::LocalStack;

/// The README's TLS-only bucket policy for `bucket`.
pub fn tls_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"TlsOnly","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"],"Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}]}}"#
    )
}

/// Creates `bucket` (unless it exists) with everything the README asks of a target bucket,
/// except the TLS-only policy (see [`MotoInspector`]).
pub async fn configure(stack: &LocalStack, bucket: &str, object_lock: bool, versioning: bool) {
    let s3 = &stack.s3;
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(object_lock)
            .send()
            .await
            .expect("moto accepts the bucket setting");
    }
    if versioning && !object_lock {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("moto accepts the bucket setting");
    }
    set_default_encryption(stack, bucket, ServerSideEncryption::AwsKms).await;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .expect("moto accepts the bucket setting");
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("abort-incomplete-multipart")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .abort_incomplete_multipart_upload(
                            AbortIncompleteMultipartUpload::builder()
                                .days_after_initiation(7)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("moto accepts the bucket setting");
}

/// [`S3Inspector`] with two stand-ins for what moto cannot serve, each named:
/// * moto answers GetBucketVersioning with the root element `GetBucketVersioningResponse`
///   where S3 answers `VersioningConfiguration`, which the Rust SDK refuses to parse (boto3 is
///   lenient); that one setting is read with a plain GET of `?versioning`.
/// * With `tls_policy`: moto enforces a Deny for principal `*` on every object GET/PUT and
///   ignores its Condition (moto-notes.md), so a bucket carrying the TLS-only policy cannot be
///   written to on moto at all. The routing test reports the policy the README prescribes for
///   a bucket that has none; `the_compliance_checks_read_each_setting_from_s3` reads the real
///   policy back from buckets that carry it.
pub struct MotoInspector {
    inner: S3Inspector,
    endpoint: String,
    tls_policy: bool,
}

impl MotoInspector {
    pub fn new(stack: &LocalStack, tls_policy: bool) -> MotoInspector {
        MotoInspector {
            inner: S3Inspector {
                client: stack.s3.clone(),
                replication: true,
            },
            endpoint: stack.moto.endpoint_url(),
            tls_policy,
        }
    }
}

#[async_trait::async_trait]
impl BucketInspector for MotoInspector {
    async fn inspect(&self, bucket: &str) -> BucketSettings {
        let mut s = self.inner.inspect(bucket).await;
        let raw = reqwest::get(format!("{}/{bucket}?versioning", self.endpoint)).await;
        s.versioning = match raw {
            Ok(r) if r.status().is_success() => {
                let text = r.text().await.unwrap_or_default();
                Ok(text
                    .split("<Status>")
                    .nth(1)
                    .and_then(|rest| rest.split("</Status>").next())
                    .map(str::to_string))
            }
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        if self.tls_policy && s.policy == Ok(None) {
            s.policy = Ok(Some(tls_policy(bucket)));
        }
        s
    }
}

/// Sets the bucket's default encryption: SSE-KMS with the stack's key, or `AES256` (SSE-S3).
pub async fn set_default_encryption(
    stack: &LocalStack,
    bucket: &str,
    algorithm: ServerSideEncryption,
) {
    let kms = algorithm == ServerSideEncryption::AwsKms;
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(algorithm)
        .set_kms_master_key_id(kms.then(|| stack.key_arn.clone()))
        .build()
        .expect("an algorithm is set");
    stack
        .s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default)
                        .bucket_key_enabled(kms)
                        .build(),
                )
                .build()
                .expect("one rule is set"),
        )
        .send()
        .await
        .expect("moto accepts the bucket setting");
}
