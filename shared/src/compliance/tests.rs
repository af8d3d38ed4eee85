use super::*;

const TLS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"TlsOnly","Effect":"Deny","Principal":"*","Action":"s3:*",
   "Resource":["arn:aws:s3:::acme-archive","arn:aws:s3:::acme-archive/*"],
   "Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;

fn target(worm: bool) -> StorageTarget {
    StorageTarget {
        bucket: "acme-archive".into(),
        prefix: "genesys".into(),
        region: None,
        kms_key_id: None,
        retention_days: Some(2555),
        worm,
        object_lock_mode: Default::default(),
        minimum_encryption: EncryptionMinimum::Kms,
    }
}

/// A bucket set up as the README says.
fn good() -> BucketSettings {
    BucketSettings {
        reachable: Ok(()),
        encryption: Ok(Some(DefaultEncryption {
            algorithm: "aws:kms".into(),
            kms_key: Some("arn:aws:kms:us-east-1:1:key/k".into()),
        })),
        public_access_block: Ok(Some([true; 4])),
        versioning: Ok(Some("Enabled".into())),
        object_lock: Ok(Some(ObjectLockSettings {
            enabled: true,
            default_mode: Some("COMPLIANCE".into()),
            default_days: Some(2555),
        })),
        policy: Ok(Some(TLS_POLICY.into())),
        lifecycle_abort: Ok(vec![LifecycleAbortRule {
            prefix: String::new(),
            days: 7,
        }]),
        replication: Some(Ok(Vec::new())),
    }
}

fn status_of(report: &TargetReport, id: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.status)
        .unwrap_or_else(|| panic!("no check {id}"))
}

#[test]
fn a_bucket_set_up_as_documented_passes_every_required_check() {
    let r = evaluate("legal", &target(true), &good(), Utc::now());
    assert!(r.compliant(), "{:?}", r.failures());
    assert_eq!(status_of(&r, "replication"), Status::Warn);
    assert_eq!(r.checks.len(), 8);
}

#[test]
fn each_missing_setting_fails_its_own_check_with_a_fix() {
    type Edit = fn(&mut BucketSettings);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "default-encryption",
            |s| s.encryption = Ok(None),
            "no default encryption",
        ),
        (
            "default-encryption",
            |s| {
                s.encryption = Ok(Some(DefaultEncryption {
                    algorithm: "AES256".into(),
                    kms_key: None,
                }))
            },
            "is AES256, the target requires aws:kms",
        ),
        (
            "public-access-block",
            |s| s.public_access_block = Ok(Some([true, true, false, true])),
            "BlockPublicPolicy off",
        ),
        (
            "public-access-block",
            |s| s.public_access_block = Ok(None),
            "RestrictPublicBuckets",
        ),
        ("versioning", |s| s.versioning = Ok(None), "never enabled"),
        (
            "versioning",
            |s| s.versioning = Ok(Some("Suspended".into())),
            "Suspended",
        ),
        (
            "object-lock",
            |s| s.object_lock = Ok(None),
            "no Object Lock",
        ),
        ("tls-only-policy", |s| s.policy = Ok(None), "no policy"),
        (
            "tls-only-policy",
            |s| s.policy = Ok(Some(TLS_POLICY.replace("\"false\"", "\"true\""))),
            "no statement denying",
        ),
        (
            "abort-incomplete-multipart",
            |s| s.lifecycle_abort = Ok(Vec::new()),
            "no enabled lifecycle rule",
        ),
        (
            "abort-incomplete-multipart",
            |s| {
                s.lifecycle_abort = Ok(vec![LifecycleAbortRule {
                    prefix: "other/".into(),
                    days: 7,
                }])
            },
            "covering the target's prefix",
        ),
        (
            "reachable",
            |s| s.reachable = Err("404 NotFound".into()),
            "listing the bucket failed",
        ),
        (
            "versioning",
            |s| s.versioning = Err("AccessDenied (the role needs s3:GetBucketVersioning)".into()),
            "s3:GetBucketVersioning",
        ),
    ];
    for (id, edit, words) in cases {
        let mut s = good();
        edit(&mut s);
        let r = evaluate("legal", &target(true), &s, Utc::now());
        assert!(!r.compliant(), "{id}: {words}");
        let failed: Vec<&Check> = r
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect();
        assert_eq!(failed.len(), 1, "{id}: {failed:?}");
        assert_eq!(failed[0].id, id);
        assert!(
            failed[0].detail.contains(words),
            "{id}: {}",
            failed[0].detail
        );
        assert!(failed[0].fix.is_some(), "{id} has no fix");
    }
}

#[test]
fn aes256_is_enough_only_when_the_target_says_so_and_object_lock_only_for_worm() {
    let mut s = good();
    s.encryption = Ok(Some(DefaultEncryption {
        algorithm: "AES256".into(),
        kms_key: None,
    }));
    s.object_lock = Ok(None);
    let mut t = target(false);
    t.minimum_encryption = EncryptionMinimum::Aes256;
    let r = evaluate("ops", &t, &s, Utc::now());
    assert!(r.compliant(), "{:?}", r.failures());
    assert_eq!(status_of(&r, "object-lock"), Status::Pass);
}

#[test]
fn a_shorter_default_retention_warns_because_archives_carry_their_own() {
    let mut s = good();
    s.object_lock = Ok(Some(ObjectLockSettings {
        enabled: true,
        default_mode: Some("GOVERNANCE".into()),
        default_days: Some(30),
    }));
    let r = evaluate("legal", &target(true), &s, Utc::now());
    assert!(r.compliant());
    assert_eq!(status_of(&r, "object-lock"), Status::Warn);
}

#[test]
fn the_tls_policy_is_recognised_in_its_usual_spellings_only() {
    assert!(denies_insecure_transport(TLS_POLICY));
    let single = r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":["*"]},"Action":["s3:*"],"Resource":"*","Condition":{"Bool":{"aws:SecureTransport":false}}}}"#;
    assert!(denies_insecure_transport(single));
    for not in [
        TLS_POLICY.replace("Deny", "Allow"),
        TLS_POLICY.replace(
            "\"Principal\":\"*\"",
            "\"Principal\":{\"AWS\":\"arn:aws:iam::1:root\"}",
        ),
        TLS_POLICY.replace("\"s3:*\"", "\"s3:GetObject\""),
        "not json".to_string(),
    ] {
        assert!(!denies_insecure_transport(&not), "{not}");
    }
}

#[tokio::test]
async fn the_probe_writes_reads_back_and_deletes() {
    let store = crate::store::MemoryStore::new("acme-archive");
    let c = probe(&store, "genesys", Utc::now()).await;
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(store.list("genesys/_probe/").await.unwrap().is_empty());
}

#[test]
fn replication_is_reported_only_when_it_was_read() {
    let mut s = good();
    s.replication = None;
    let r = evaluate("legal", &target(true), &s, Utc::now());
    assert_eq!(r.checks.len(), 7);
    assert!(!r.checks.iter().any(|c| c.id == "replication"));
    s.replication = Some(Ok(vec![ReplicationRule {
        id: "crr".into(),
        enabled: true,
        destination_bucket: "arn:aws:s3:::acme-archive-dr".into(),
    }]));
    let r = evaluate("legal", &target(true), &s, Utc::now());
    let c = r.checks.iter().find(|c| c.id == "replication").unwrap();
    assert_eq!(c.status, Status::Pass);
    assert!(c
        .detail
        .contains("crr → arn:aws:s3:::acme-archive-dr (enabled)"));
}
