//! What upload-proxy asks of Genesys Cloud (genesys-api.md §6): the web deployment's file
//! upload settings, and the agent/server-side message media flow (create an upload, upload
//! the bytes to its `uploadUrl`, poll its `status`, send a message with its id). Field
//! names are the official SDK's (`UploadMediaRequest`, `MessageMediaUploadData`,
//! `MessageMediaData`, `AdditionalMessage`, `MessageData`,
//! `WebDeploymentActiveConfigurationOnDeployment`).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{GenesysClient, GenesysError};
use crate::ids::ConversationId;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadMediaRequest {
    pub file_name: String,
    pub content_length_bytes: u64,
    /// Base64 of the MD5 digest (the `Content-MD5` form).
    pub content_md5: String,
}

/// Where to send a media file's bytes. The URL is presigned: it never gets the bearer token,
/// and it is never logged.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMediaUploadData {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub upload_url: String,
    #[serde(default)]
    pub upload_headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for MessageMediaUploadData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageMediaUploadData")
            .field("id", &self.id)
            .field("upload_url", &"<presigned>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMediaData {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub content_length_bytes: Option<u64>,
    #[serde(default)]
    pub media_type: Option<String>,
}

/// One of text, media ids or a template (the API refuses a mix).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_body: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageData {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadMode {
    #[serde(default)]
    pub file_types: Vec<String>,
    #[serde(default, rename = "maxFileSizeKB")]
    pub max_file_size_kb: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadSettings {
    #[serde(default)]
    pub enable_attachments: Option<bool>,
    #[serde(default)]
    pub modes: Vec<FileUploadMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessengerSettings {
    #[serde(default)]
    file_upload: Option<FileUploadSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigurationVersion {
    #[serde(default)]
    messenger: Option<MessengerSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActiveConfiguration {
    #[serde(default)]
    configuration_version: Option<ConfigurationVersion>,
}

fn media_path(conversation: &ConversationId, communication: &str) -> String {
    format!("/api/v2/conversations/messages/{conversation}/communications/{communication}/messages")
}

impl GenesysClient {
    /// GET `/api/v2/webdeployments/deployments/{id}/configurations`: the active
    /// configuration's `messenger.fileUpload` (absent when the deployment has none).
    pub async fn deployment_file_upload(
        &self,
        deployment: &str,
    ) -> Result<Option<FileUploadSettings>, GenesysError> {
        let path = format!("/api/v2/webdeployments/deployments/{deployment}/configurations");
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        let active: ActiveConfiguration = Self::decode("GET", &path, &bytes)?;
        Ok(active
            .configuration_version
            .and_then(|v| v.messenger)
            .and_then(|m| m.file_upload))
    }

    /// POST `.../messages/media/uploads`. Retried: a duplicate is an unused media record.
    pub async fn create_message_media_upload(
        &self,
        conversation: &ConversationId,
        communication: &str,
        request: &UploadMediaRequest,
    ) -> Result<MessageMediaUploadData, GenesysError> {
        let path = format!("{}/media/uploads", media_path(conversation, communication));
        let (_, bytes) = self
            .call(Method::POST, &path, &[], Self::json_body(request), true)
            .await?;
        Self::decode("POST", &path, &bytes)
    }

    /// GET `.../messages/media/{mediaId}`.
    pub async fn message_media(
        &self,
        conversation: &ConversationId,
        communication: &str,
        media_id: &str,
    ) -> Result<MessageMediaData, GenesysError> {
        let path = format!(
            "{}/media/{media_id}",
            media_path(conversation, communication)
        );
        let (_, bytes) = self.call(Method::GET, &path, &[], None, true).await?;
        Self::decode("GET", &path, &bytes)
    }

    /// POST `.../communications/{id}/messages`. Never retried: a retry could send the
    /// message twice.
    pub async fn send_message(
        &self,
        conversation: &ConversationId,
        communication: &str,
        message: &AdditionalMessage,
    ) -> Result<MessageData, GenesysError> {
        let path = media_path(conversation, communication);
        let (_, bytes) = self
            .call(Method::POST, &path, &[], Self::json_body(message), false)
            .await?;
        Self::decode("POST", &path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_upload_settings_parse_as_the_sdk_names_them() {
        let active: ActiveConfiguration = serde_json::from_str(
            r#"{"configurationVersion":{"id":"c","version":"3","messenger":{"enabled":true,
            "fileUpload":{"enableAttachments":true,"modes":[{"fileTypes":["image/png","application/pdf"],"maxFileSizeKB":10240}]}}},
            "deployment":{"id":"d"}}"#,
        )
        .unwrap();
        let settings = active
            .configuration_version
            .and_then(|v| v.messenger)
            .and_then(|m| m.file_upload)
            .unwrap();
        assert_eq!(settings.enable_attachments, Some(true));
        assert_eq!(settings.modes[0].max_file_size_kb, Some(10240));
        assert_eq!(settings.modes[0].file_types[1], "application/pdf");
    }

    #[test]
    fn an_upload_target_never_shows_its_url() {
        let data: MessageMediaUploadData = serde_json::from_str(
            r#"{"id":"m1","uploadUrl":"https://up.example/x?X-Amz-Signature=secret","uploadHeaders":{"x-a":"1"}}"#,
        )
        .unwrap();
        assert!(!format!("{data:?}").contains("secret"));
        assert_eq!(data.upload_headers["x-a"], "1");
    }

    #[test]
    fn a_media_message_carries_only_its_ids() {
        let body = serde_json::to_value(AdditionalMessage {
            text_body: None,
            media_ids: vec!["m1".into()],
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"mediaIds":["m1"]}));
    }
}
