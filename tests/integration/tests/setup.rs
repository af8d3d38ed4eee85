//! `gc-archive setup` against the simulator: the EventBridge integration created, completed
//! and enabled by `--apply` and left alone by a second run, retention policies that delete too
//! soon reported (never changed), and a missing OAuth permission named by its probe.

use std::time::Duration;

use gc_archive::compliance::Status;
use gc_archive::config::{GenesysCredentials, GenesysEndpoints, WriteBack};
use gc_archive::genesys::client::http_client;
use gc_archive::genesys::GenesysClient;
use gc_archive::retry::RetryPolicy;
use gc_archive::setup::{self, Finding, SetupOptions, ARCHIVE_TOPICS, EVENTBRIDGE_TYPE};
use genesys_sim::{SimConfig, Simulator};
use serde_json::json;

fn client(sim: &Simulator) -> GenesysClient {
    let endpoints = GenesysEndpoints::single(sim.base_url().parse().unwrap());
    GenesysClient::with_http(
        http_client(Duration::from_secs(10)).unwrap(),
        &endpoints.api_base,
        &endpoints.login_base,
        GenesysCredentials {
            client_id: sim.client_id().to_string(),
            client_secret: sim.client_secret().into(),
        },
        RetryPolicy::default().with_base_delay(Duration::from_millis(5)),
    )
}

fn options(apply: bool) -> SetupOptions {
    SetupOptions {
        aws_account_id: "123456789012".into(),
        aws_region: "eu-west-1".into(),
        event_source_suffix: "gc-archive".into(),
        topics: ARCHIVE_TOPICS.iter().map(|t| t.to_string()).collect(),
        min_retention_days: 14,
        write_back: WriteBack::ExternalTag,
        apply,
    }
}

fn of<'a>(findings: &'a [Finding], area: &str) -> Vec<&'a Finding> {
    findings.iter().filter(|f| f.area == area).collect()
}

fn ours(sim: &Simulator) -> Vec<serde_json::Value> {
    sim.integrations()
        .into_iter()
        .filter(|i| i["integrationType"]["id"] == EVENTBRIDGE_TYPE)
        .collect()
}

#[tokio::test]
async fn check_reports_apply_fixes_and_a_second_apply_changes_nothing() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gc = client(&sim);
    sim.add_retention_policy(json!({
        "name": "Delete calls after 3 days", "enabled": true,
        "mediaPolicies": {"callPolicy": {"actions": {"deleteRecording": true,
            "retentionDuration": {"deleteRetention": {"days": 3}}}}}
    }));
    sim.add_retention_policy(json!({
        "name": "Keep chats a year", "enabled": true,
        "mediaPolicies": {"chatPolicy": {"actions": {"retainRecording": true,
            "retentionDuration": {"deleteRetention": {"days": 365}}}}}
    }));
    sim.add_retention_policy(json!({
        "name": "Old purge (disabled)", "enabled": false,
        "actions": {"alwaysDelete": true}
    }));

    // --check on an org without the integration: it says so and changes nothing.
    let checked = setup::run(&gc, &options(false)).await;
    let eb = of(&checked, "eventbridge-integration");
    assert_eq!(eb.len(), 1);
    assert_eq!(eb[0].status, Status::Fail);
    assert!(
        eb[0]
            .detail
            .contains("no amazon-eventbridge-source integration"),
        "{}",
        eb[0].detail
    );
    assert!(ours(&sim).is_empty());
    let retention = of(&checked, "retention-policies");
    assert_eq!(retention.len(), 1, "{retention:?}");
    assert_eq!(retention[0].status, Status::Warn);
    assert!(retention[0]
        .detail
        .contains("\"Delete calls after 3 days\" deletes calls recordings after 3 days"));
    assert!(
        of(&checked, "permissions")
            .iter()
            .all(|f| f.status == Status::Pass),
        "{checked:?}"
    );
    assert!(checked.iter().all(|f| !f.changed));

    // --apply creates it, configured and enabled.
    let applied = setup::run(&gc, &options(true)).await;
    assert!(of(&applied, "eventbridge-integration")[0].changed);
    let created = ours(&sim);
    assert_eq!(created.len(), 1);
    let i = &created[0];
    assert_eq!(i["intendedState"], "ENABLED");
    let p = &i["config"]["properties"];
    assert_eq!(p["awsAccountId"], "123456789012");
    assert_eq!(p["awsAccountRegion"], "eu-west-1");
    assert_eq!(p["eventSourceSuffix"], "gc-archive");
    assert_eq!(p["eventFilter"], json!(ARCHIVE_TOPICS));
    // The retention policy is reported, never changed.
    assert_eq!(of(&applied, "retention-policies")[0].status, Status::Warn);

    // A second --apply finds everything in place.
    let again = setup::run(&gc, &options(true)).await;
    assert!(again.iter().all(|f| !f.changed), "{again:?}");
    assert_eq!(
        of(&again, "eventbridge-integration")[0].status,
        Status::Pass
    );
    assert_eq!(ours(&sim), created);
}

#[tokio::test]
async fn an_incomplete_disabled_integration_is_completed_keeping_other_topics() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gc = client(&sim);
    // Someone else's integration (another account) and ours with one topic, disabled.
    for (account, topics) in [
        ("999999999999", vec!["v2.users.{id}.presence"]),
        (
            "123456789012",
            vec![
                "v2.detail.events.conversation.{id}.customer.end",
                "v2.audits.entitytype.{id}.entityid.{id}",
            ],
        ),
    ] {
        let i = gc
            .create_integration(EVENTBRIDGE_TYPE, "pre-existing")
            .await
            .unwrap();
        let cfg = gc.integration_config(&i.id).await.unwrap();
        gc.put_integration_config(
            &i.id,
            &gc_archive::genesys::models::IntegrationConfiguration {
                properties: json!({"awsAccountId": account, "awsAccountRegion": "eu-west-1",
                    "eventSourceSuffix": "gc-archive", "eventFilter": topics}),
                ..cfg
            },
        )
        .await
        .unwrap();
    }
    let checked = setup::run(&gc, &options(false)).await;
    let eb = of(&checked, "eventbridge-integration");
    assert_eq!(eb.len(), 2, "{eb:?}");
    assert!(
        eb[0]
            .detail
            .contains("lacks v2.detail.events.conversation.{id}.user.end"),
        "{}",
        eb[0].detail
    );
    assert!(eb[1].detail.contains("DISABLED"), "{}", eb[1].detail);

    let applied = setup::run(&gc, &options(true)).await;
    assert!(of(&applied, "eventbridge-integration")
        .iter()
        .all(|f| f.changed && f.status == Status::Pass));
    let all = ours(&sim);
    let mine = all
        .iter()
        .find(|i| i["config"]["properties"]["awsAccountId"] == "123456789012")
        .unwrap();
    let filter = mine["config"]["properties"]["eventFilter"]
        .as_array()
        .unwrap();
    assert_eq!(filter.len(), 5, "{filter:?}");
    assert!(filter.contains(&json!("v2.audits.entitytype.{id}.entityid.{id}")));
    assert_eq!(mine["intendedState"], "ENABLED");
    let theirs = all
        .iter()
        .find(|i| i["config"]["properties"]["awsAccountId"] == "999999999999")
        .unwrap();
    assert_eq!(
        theirs["config"]["properties"]["eventFilter"],
        json!(["v2.users.{id}.presence"])
    );
    assert_eq!(theirs["intendedState"], "DISABLED");
}

#[tokio::test]
async fn a_missing_permission_is_named_by_its_probe() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gc = client(&sim);
    sim.deny_permissions(&[
        "conversation:externalTag:edit",
        "recording:retentionPolicy:view",
    ]);
    let findings = setup::run(&gc, &options(false)).await;
    let failed: Vec<&Finding> = of(&findings, "permissions")
        .into_iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    assert_eq!(failed.len(), 2, "{findings:?}");
    assert!(failed
        .iter()
        .any(|f| f.detail.contains("PUT /api/v2/conversations/")
            && f.detail.contains("conversation:externalTag:edit")));
    assert!(failed
        .iter()
        .any(|f| f.detail.contains("recording:retentionPolicy:view")));
    let retention = of(&findings, "retention-policies");
    assert_eq!(retention[0].status, Status::Fail);
    assert!(
        retention[0].detail.contains("403"),
        "{}",
        retention[0].detail
    );
    // One of several accepted permissions is enough.
    sim.deny_permissions(&[
        "recording:recording:view",
        "recording:recordingSegment:view",
    ]);
    let findings = setup::run(&gc, &options(false)).await;
    assert!(
        of(&findings, "permissions")
            .iter()
            .all(|f| f.status == Status::Pass),
        "{findings:?}"
    );
}
