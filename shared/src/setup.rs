//! `gc-archive setup`: the Genesys Cloud side of a deployment, checked (`--check` changes
//! nothing) or put right (`--apply`, idempotent: a second run changes nothing).
//!
//! Genesys Cloud has no "storage target" or "webhook" resource (genesys-api.md §8); what the
//! archive needs from the org is real:
//! * an Amazon EventBridge source integration (`amazon-eventbridge-source`) for our AWS
//!   account, region and event source suffix, enabled, whose `eventFilter` lists the
//!   conversation topics the ArchiveRule matches. `--apply` creates it, adds missing topics
//!   (keeping the others) and enables it.
//! * media retention policies that do not delete recordings before the archive has them:
//!   every enabled policy that deletes sooner than `min_retention_days` is a warning. Never
//!   changed by `--apply`: how long Genesys keeps recordings is the org's compliance decision.
//! * the OAuth client's permissions: each endpoint the functions call is probed with a
//!   harmless request (a read, or a write to a conversation that does not exist); a 403 names
//!   the permission the endpoint needs (the .NET SDK's API docs list them).

use reqwest::Method;
use serde::Serialize;

use crate::compliance::Status;
use crate::config::WriteBack;
use crate::genesys::models::{IntegrationConfiguration, PolicyActions, RetentionPolicy};
use crate::genesys::{GenesysClient, GenesysError};

pub const EVENTBRIDGE_TYPE: &str = "amazon-eventbridge-source";

/// The topics the template's ArchiveRule matches (`template.yaml`), as Genesys topic filters.
pub const ARCHIVE_TOPICS: [&str; 4] = [
    "v2.detail.events.conversation.{id}.customer.end",
    "v2.detail.events.conversation.{id}.user.end",
    "v2.detail.events.conversation.{id}.acw",
    "v2.detail.events.conversation.{id}.wrapup",
];

/// A conversation id no conversation has: writes probed against it change nothing.
const NO_CONVERSATION: &str = "00000000-0000-4000-8000-000000000000";

#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub aws_account_id: String,
    pub aws_region: String,
    pub event_source_suffix: String,
    pub topics: Vec<String>,
    /// A retention policy deleting recordings sooner than this is a warning.
    pub min_retention_days: i64,
    /// Which write-back permissions to probe.
    pub write_back: WriteBack,
    pub apply: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub area: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// `--apply` changed something for it.
    pub changed: bool,
}

fn finding(area: &str, status: Status, detail: String, fix: Option<&str>) -> Finding {
    Finding {
        area: area.into(),
        status,
        detail,
        fix: fix.map(str::to_string),
        changed: false,
    }
}

/// Runs every check (and, with `apply`, every fix).
pub async fn run(genesys: &GenesysClient, opts: &SetupOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(eventbridge(genesys, opts).await);
    out.extend(retention(genesys, opts).await);
    out.extend(permissions(genesys, opts).await);
    out
}

fn api_failure(area: &str, what: &str, e: &GenesysError) -> Finding {
    let denied = matches!(e, GenesysError::Api { status: 403, .. });
    finding(
        area,
        Status::Fail,
        format!("{what} failed: {e}"),
        Some(if denied {
            "grant the OAuth client the permission named in the permissions findings"
        } else {
            "check the Genesys Cloud region and the OAuth client, then run again"
        }),
    )
}

/// The EventBridge source integration of this account, region and suffix.
async fn eventbridge(genesys: &GenesysClient, opts: &SetupOptions) -> Vec<Finding> {
    const AREA: &str = "eventbridge-integration";
    let integrations = match genesys.integrations().await {
        Ok(all) => all,
        Err(e) => return vec![api_failure(AREA, "listing integrations", &e)],
    };
    let mut ours = None;
    let mut others = Vec::new();
    for i in integrations.iter().filter(|i| {
        i.integration_type.as_ref().map(|t| t.id.as_str()) == Some(EVENTBRIDGE_TYPE)
            && i.intended_state.as_deref() != Some("DELETED")
    }) {
        let config = match genesys.integration_config(&i.id).await {
            Ok(c) => c,
            Err(e) => return vec![api_failure(AREA, "reading an integration's config", &e)],
        };
        let prop = |k: &str| {
            config
                .properties
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        if prop("awsAccountId") == opts.aws_account_id
            && prop("eventSourceSuffix") == opts.event_source_suffix
        {
            ours = Some((i.clone(), config));
            break;
        }
        others.push(format!(
            "{} (account {}, suffix {})",
            i.name.as_deref().unwrap_or(&i.id),
            prop("awsAccountId"),
            prop("eventSourceSuffix")
        ));
    }
    let source = format!(
        "aws.partner/genesys.com/cloud/{{orgId}}/{}",
        opts.event_source_suffix
    );
    let Some((integration, config)) = ours else {
        if !opts.apply {
            return vec![finding(
                AREA,
                Status::Fail,
                format!(
                    "no {EVENTBRIDGE_TYPE} integration for AWS account {} with suffix {:?}{}",
                    opts.aws_account_id,
                    opts.event_source_suffix,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" (others: {})", others.join("; "))
                    }
                ),
                Some("run gc-archive setup --apply, then associate the partner event source with the event bus (EventBusName)"),
            )];
        }
        return vec![create_integration(genesys, opts, &source).await];
    };
    let mut findings = Vec::new();
    let listed: Vec<String> = config
        .properties
        .get("eventFilter")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&String> = opts.topics.iter().filter(|t| !listed.contains(t)).collect();
    let region = config
        .properties
        .get("awsAccountRegion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if missing.is_empty() && region == opts.aws_region {
        findings.push(finding(
            AREA,
            Status::Pass,
            format!(
                "integration {:?} sends the {} archive topics to {source} in {region}",
                integration.name.as_deref().unwrap_or(&integration.id),
                opts.topics.len()
            ),
            None,
        ));
    } else if opts.apply {
        let mut properties = config.properties.clone();
        let mut topics = listed.clone();
        topics.extend(missing.iter().map(|t| t.to_string()));
        properties["eventFilter"] = serde_json::json!(topics);
        properties["awsAccountRegion"] = serde_json::json!(opts.aws_region);
        let update = IntegrationConfiguration {
            properties,
            ..config.clone()
        };
        findings.push(
            match genesys
                .put_integration_config(&integration.id, &update)
                .await
            {
                Ok(_) => Finding {
                    changed: true,
                    ..finding(
                        AREA,
                        Status::Pass,
                        format!(
                            "added {} topic(s) to the integration's eventFilter{}",
                            missing.len(),
                            if region != opts.aws_region {
                                format!(" and set its region to {}", opts.aws_region)
                            } else {
                                String::new()
                            }
                        ),
                        None,
                    )
                },
                Err(e) => api_failure(AREA, "updating the integration's config", &e),
            },
        );
    } else {
        findings.push(finding(
            AREA,
            Status::Fail,
            format!(
                "the integration's eventFilter lacks {}{}",
                if missing.is_empty() {
                    "nothing".to_string()
                } else {
                    missing
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if region != opts.aws_region {
                    format!("; its region is {region:?}, not {}", opts.aws_region)
                } else {
                    String::new()
                }
            ),
            Some("run gc-archive setup --apply (it adds the topics and keeps the others)"),
        ));
    }
    if integration.intended_state.as_deref() != Some("ENABLED") {
        findings.push(if opts.apply {
            match genesys
                .set_integration_state(&integration.id, "ENABLED")
                .await
            {
                Ok(_) => Finding {
                    changed: true,
                    ..finding(AREA, Status::Pass, "enabled the integration".into(), None)
                },
                Err(e) => api_failure(AREA, "enabling the integration", &e),
            }
        } else {
            finding(
                AREA,
                Status::Fail,
                format!(
                    "the integration is {}",
                    integration
                        .intended_state
                        .as_deref()
                        .unwrap_or("not enabled")
                ),
                Some("run gc-archive setup --apply (it enables it)"),
            )
        });
    }
    findings
}

async fn create_integration(genesys: &GenesysClient, opts: &SetupOptions, source: &str) -> Finding {
    const AREA: &str = "eventbridge-integration";
    let created = match genesys
        .create_integration(EVENTBRIDGE_TYPE, "gc-archive EventBridge source")
        .await
    {
        Ok(i) => i,
        Err(e) => return api_failure(AREA, "creating the integration", &e),
    };
    let current = match genesys.integration_config(&created.id).await {
        Ok(c) => c,
        Err(e) => return api_failure(AREA, "reading the new integration's config", &e),
    };
    let config = IntegrationConfiguration {
        name: Some("Amazon EventBridge Source".into()),
        properties: serde_json::json!({
            "awsAccountId": opts.aws_account_id,
            "awsAccountRegion": opts.aws_region,
            "eventSourceSuffix": opts.event_source_suffix,
            "eventFilter": opts.topics,
        }),
        advanced: serde_json::json!({}),
        notes: Some("gc-archive: conversation-end topics for the recording archive".into()),
        ..current
    };
    if let Err(e) = genesys.put_integration_config(&created.id, &config).await {
        return api_failure(AREA, "configuring the new integration", &e);
    }
    if let Err(e) = genesys.set_integration_state(&created.id, "ENABLED").await {
        return api_failure(AREA, "enabling the new integration", &e);
    }
    Finding {
        changed: true,
        ..finding(
            AREA,
            Status::Pass,
            format!("created and enabled integration {} for {source}", created.id),
            Some("associate the partner event source with an event bus of the same name in EventBridge (it appears within minutes)"),
        )
    }
}

/// The days after which `actions` deletes recordings, if it does.
fn deletes_after(actions: &PolicyActions) -> Option<i64> {
    if actions.always_delete == Some(true) {
        return Some(0);
    }
    let days = actions
        .retention_duration
        .as_ref()
        .and_then(|d| d.delete_retention.as_ref())
        .and_then(|d| d.days);
    match (actions.delete_recording, days) {
        (Some(true), d) => Some(d.unwrap_or(0)),
        (_, Some(d)) => Some(d),
        _ => None,
    }
}

fn policy_deletions(p: &RetentionPolicy) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    if let Some(a) = &p.actions {
        if let Some(d) = deletes_after(a) {
            out.push(("all media", d));
        }
    }
    if let Some(m) = &p.media_policies {
        for (kind, policy) in [
            ("calls", &m.call_policy),
            ("chats", &m.chat_policy),
            ("emails", &m.email_policy),
            ("messages", &m.message_policy),
        ] {
            if let Some(d) = policy
                .as_ref()
                .and_then(|p| p.actions.as_ref())
                .and_then(deletes_after)
            {
                out.push((kind, d));
            }
        }
    }
    out
}

async fn retention(genesys: &GenesysClient, opts: &SetupOptions) -> Vec<Finding> {
    const AREA: &str = "retention-policies";
    let policies = match genesys.retention_policies().await {
        Ok(p) => p,
        Err(e) => return vec![api_failure(AREA, "listing media retention policies", &e)],
    };
    let mut findings = Vec::new();
    for p in policies.iter().filter(|p| p.enabled != Some(false)) {
        for (kind, days) in policy_deletions(p) {
            if days < opts.min_retention_days {
                findings.push(finding(
                    AREA,
                    Status::Warn,
                    format!(
                        "policy {:?} deletes {kind} recordings after {days} days, sooner than the {} days the archive may need (sweep lag, retries, backfills)",
                        p.name.as_deref().or(p.id.as_deref()).unwrap_or("?"),
                        opts.min_retention_days
                    ),
                    Some("lengthen its deleteRetention (PUT /api/v2/recording/mediaretentionpolicies/{policyId}); gc-archive never changes retention policies"),
                ));
            }
        }
    }
    if findings.is_empty() {
        findings.push(finding(
            AREA,
            Status::Pass,
            format!(
                "no enabled policy of {} deletes recordings within {} days",
                policies.len(),
                opts.min_retention_days
            ),
            None,
        ));
    }
    findings
}

/// One endpoint the functions call, how to probe it harmlessly, and the permissions it
/// accepts (any of them; .NET SDK API docs).
struct Probe {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    permissions: &'static [&'static str],
}

fn probes(opts: &SetupOptions) -> Vec<Probe> {
    let c = NO_CONVERSATION;
    let now = chrono::Utc::now();
    let interval = format!(
        "{}/{}",
        (now - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let mut list = vec![
        Probe {
            what: "read a conversation (facts, participants)",
            method: Method::GET,
            path: format!("/api/v2/conversations/{c}"),
            body: None,
            permissions: &["conversation:communication:view"],
        },
        Probe {
            what: "read recording metadata and media",
            method: Method::GET,
            path: format!("/api/v2/conversations/{c}/recordingmetadata"),
            body: None,
            permissions: &[
                "recording:recording:view",
                "recording:recordingSegment:view",
                "recording:snippetRecording:view",
                "recording:screenRecording:view",
            ],
        },
        Probe {
            what: "query conversation details (sweep, backfill, reconcile)",
            method: Method::POST,
            path: "/api/v2/analytics/conversations/details/query".into(),
            body: Some(
                serde_json::json!({"interval": interval, "paging": {"pageSize": 1, "pageNumber": 1}}),
            ),
            permissions: &[
                "analytics:conversationDetail:view",
                "analytics:agentConversationDetail:view",
            ],
        },
        Probe {
            what: "list integrations (setup)",
            method: Method::GET,
            path: "/api/v2/integrations".into(),
            body: None,
            permissions: &["integrations:integration:view"],
        },
        Probe {
            what: "list media retention policies (setup)",
            method: Method::GET,
            path: "/api/v2/recording/mediaretentionpolicies".into(),
            body: None,
            permissions: &["recording:retentionPolicy:view"],
        },
    ];
    match opts.write_back {
        WriteBack::ExternalTag => list.push(Probe {
            what: "write the archive reference (externalTag)",
            method: Method::PUT,
            path: format!("/api/v2/conversations/{c}/tags"),
            body: Some(serde_json::json!({"externalTag": "gc-archive permission probe"})),
            permissions: &["conversation:externalTag:edit"],
        }),
        WriteBack::CustomAttributes => list.push(Probe {
            what: "write the archive reference (custom attributes)",
            method: Method::PUT,
            path: format!("/api/v2/conversations/{c}/customattributes"),
            body: Some(serde_json::json!({"schemaId": "gc-archive-probe", "customAttributes": {}})),
            permissions: &["conversation:customAttributes:edit"],
        }),
        WriteBack::Disabled => {}
    }
    list
}

async fn permissions(genesys: &GenesysClient, opts: &SetupOptions) -> Vec<Finding> {
    const AREA: &str = "permissions";
    let mut findings = Vec::new();
    for p in probes(opts) {
        let line = format!("{} {}", p.method, p.path);
        findings.push(match genesys.probe(p.method, &p.path, p.body).await {
            Ok(403) => finding(
                AREA,
                Status::Fail,
                format!("cannot {}: {line} answered 403; it needs any of {}", p.what, p.permissions.join(", ")),
                Some("add a role with that permission to the OAuth client (Admin > Integrations > OAuth > Roles)"),
            ),
            Ok(401) => finding(AREA, Status::Fail, format!("{line} answered 401: the token was refused"), Some("check the OAuth client credentials")),
            Ok(status) => finding(
                AREA,
                Status::Pass,
                format!("can {} ({line} answered {status})", p.what),
                None,
            ),
            Err(e) => finding(AREA, Status::Warn, format!("{line} could not be probed: {e}"), None),
        });
    }
    if opts.apply {
        findings.push(finding(
            AREA,
            Status::Pass,
            "--apply also needs integrations:integration:add and integrations:integration:edit (not probed: only a real change shows them)".into(),
            None,
        ));
    }
    findings
}
