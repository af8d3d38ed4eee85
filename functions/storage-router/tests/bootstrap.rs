//! The real `storage-router` binary under the Lambda Runtime API, fed the sample events of
//! `events/`: the scheduled check reports the deployment bucket's compliance (the test stack's
//! bucket is bare, so it fails, named check by check), writes the compliance and audit reports
//! and emits the metrics; a routing document is validated; a bad input is refused.

use std::time::Duration;

use gc_archive_it::runtime_api::{emf_line as emf, invoke_capturing, sample_event as sample};
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_checks_reports_validates_and_refuses_what_it_does_not_know() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let env = stack.lambda_env("storage-router");
    let bin = env!("CARGO_BIN_EXE_storage-router");
    let limit = Duration::from_secs(60);

    let ((kind, result), stdout) =
        invoke_capturing(bin, &env, sample("compliance-check.json"), limit)
            .await
            .unwrap();
    assert_eq!(kind, "response", "{result}");
    assert_eq!(result["compliant"], false, "{result}");
    let failures = result["targets"][0]["failures"].to_string();
    for id in [
        "default-encryption",
        "public-access-block",
        "tls-only-policy",
    ] {
        assert!(failures.contains(id), "{id}: {failures}");
    }
    let metric = emf(&stdout, "NonCompliantTargets").expect("the check's EMF line");
    assert_eq!(metric["NonCompliantTargets"], 1.0);
    assert_eq!(metric["Function"], "storage-router");
    let keys = stack
        .list_keys(&format!("{PREFIX}/_reports/"))
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with("compliance/latest.json")),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.contains("/_reports/audit/"))
            .count(),
        3,
        "{keys:?}"
    );
    // The probe cleaned up after itself.
    assert!(stack
        .list_keys(&format!("{PREFIX}/_probe/"))
        .await
        .unwrap()
        .is_empty());

    let ((kind, result), _) = invoke_capturing(bin, &env, sample("validate-routing.json"), limit)
        .await
        .unwrap();
    assert_eq!(
        (kind.as_str(), &result["valid"]),
        ("response", &serde_json::json!(true)),
        "{result}"
    );
    let bad = serde_json::json!({"action": "validate", "document": "version: 1\ntargets:\n  a:\n    bucket: Bad_Bucket\n"});
    let ((_, result), _) = invoke_capturing(bin, &env, bad, limit).await.unwrap();
    assert_eq!(result["valid"], false);
    assert!(
        result["error"]
            .as_str()
            .unwrap()
            .contains("targets.a.bucket"),
        "{result}"
    );

    let ((kind, result), _) =
        invoke_capturing(bin, &env, serde_json::json!({"action": "reroute"}), limit)
            .await
            .unwrap();
    assert_eq!(kind, "error", "{result}");
    assert!(
        result
            .to_string()
            .contains("expected {\\\"action\\\":\\\"check\\\"}"),
        "{result}"
    );
}
