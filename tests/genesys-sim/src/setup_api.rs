//! What `gc-archive setup` reads and changes on the Genesys side: integrations (the Amazon
//! EventBridge source), media retention policies, and which permissions the OAuth client has.
//!
//! Shapes follow the SDK models (`Integration`, `IntegrationConfiguration`,
//! `CreateIntegrationRequest`, `Policy`, `PolicyEntityListing`); permissions per endpoint
//! follow the .NET SDK's API docs ("Requires ANY permissions"). Two things the documents leave
//! open, decided on the strict side: a config PUT must carry the current `version` (409
//! otherwise, as other versioned Genesys resources answer), and a missing permission is a 403
//! whose body's exact wording is not relied on by the client (it names the permission from
//! its own table).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The permissions an endpoint asks for (ANY of them), for the endpoints gc-archive calls.
pub(crate) fn required_permissions(method: &Method, path: &str) -> Option<&'static [&'static str]> {
    const RECORDING_VIEW: &[&str] = &[
        "recording:recording:view",
        "recording:recordingSegment:view",
        "recording:snippetRecording:view",
        "recording:screenRecording:view",
    ];
    const ANALYTICS: &[&str] = &[
        "analytics:conversationDetail:view",
        "analytics:agentConversationDetail:view",
    ];
    let parts: Vec<&str> = path.trim_start_matches("/api/v2/").split('/').collect();
    Some(match (method.as_str(), parts.as_slice()) {
        ("GET", ["conversations", _]) => &["conversation:communication:view"],
        ("GET", ["conversations", _, "recordingmetadata", ..])
        | ("GET", ["conversations", _, "recordings", ..])
        | ("POST", ["recording", "batchrequests"]) => RECORDING_VIEW,
        ("PUT", ["conversations", _, "tags"]) => &["conversation:externalTag:edit"],
        (_, ["conversations", _, "customattributes", ..]) if method != Method::GET => {
            &["conversation:customAttributes:edit"]
        }
        (_, ["analytics", "conversations", "details", ..]) => ANALYTICS,
        ("GET", ["integrations", ..]) => &["integrations:integration:view"],
        ("POST", ["integrations"]) => &["integrations:integration:add"],
        ("PUT", ["integrations", _, "config", "current"]) | ("PATCH", ["integrations", _]) => {
            &["integrations:integration:edit"]
        }
        ("GET", ["recording", "mediaretentionpolicies", ..]) => &["recording:retentionPolicy:view"],
        ("GET", ["routing", "queues"]) => &["routing:queue:view"],
        _ => return None,
    })
}

/// The 403 of a request the client has none of the permissions for.
pub(crate) fn missing_permissions(
    denied: &BTreeSet<String>,
    method: &Method,
    path: &str,
) -> Option<Response> {
    let needed = required_permissions(method, path)?;
    if needed.iter().any(|p| !denied.contains(*p)) {
        return None;
    }
    let list = needed.join(", ");
    Some(
        (
            StatusCode::FORBIDDEN,
            Json(json!({
                "message": format!("You are missing the following permission(s): [{list}]"),
                "code": "missing.permissions",
                "status": 403,
                "messageParams": {"permissions": list},
                "details": [], "errors": [],
            })),
        )
            .into_response(),
    )
}

/// One integration and its current configuration.
#[derive(Debug, Clone)]
pub(crate) struct Integration {
    pub id: String,
    pub name: String,
    pub type_id: String,
    pub intended_state: String,
    pub config_version: u64,
    pub config: Value,
}

impl Integration {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "integrationType": {"id": self.type_id, "name": self.type_id},
            "intendedState": self.intended_state,
            "reportedState": {"code": if self.intended_state == "ENABLED" { "ACTIVE" } else { "INACTIVE" }},
            "config": {"current": {"id": self.id, "version": self.config_version}},
            "selfUri": format!("/api/v2/integrations/{}", self.id),
        })
    }

    pub fn render_config(&self) -> Value {
        let mut c = self.config.clone();
        c["id"] = json!(self.id);
        c["version"] = json!(self.config_version);
        c["selfUri"] = json!(format!("/api/v2/integrations/{}/config/current", self.id));
        c
    }
}

/// An entity listing page (`pageSize`, `pageNumber`, `total`, `pageCount`).
pub(crate) fn listing(all: Vec<Value>, page_size: usize, page_number: usize) -> Value {
    let total = all.len();
    let page_size = page_size.clamp(1, 100);
    let page_number = page_number.max(1);
    let entities: Vec<Value> = all
        .into_iter()
        .skip((page_number - 1) * page_size)
        .take(page_size)
        .collect();
    json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": total.div_ceil(page_size).max(1),
    })
}
