//! Writes where a conversation's recordings were archived back to Genesys Cloud, once per
//! conversation: conversation custom attributes where the org has a schema for them, otherwise
//! the conversation's `externalTag`. The value is derived from every manifest under the
//! conversation's folder, so it names every archived recording and concurrent writers converge.
//! Idempotent (an equal value is not written again), retried by redelivery, never fatal to an
//! archive that already succeeded, and it respects a tag another integration set.

use std::collections::HashMap;

use crate::config::{ExternalTagPolicy, WriteBack};
use crate::genesys::models::{CustomAttributesPatch, CustomAttributesUpdate};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::ConversationId;
use crate::pipeline::WriteBackOutcome;
use crate::store::manifest::Manifest;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error("write-back: {0}")]
    Genesys(#[from] GenesysError),
    #[error("write-back: listing the archived recordings: {0}")]
    Store(#[from] StoreError),
    #[error("write-back: custom attributes version conflict persisted after 3 tries")]
    Conflict,
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub mode: WriteBack,
    pub external_tag_policy: ExternalTagPolicy,
    pub schema_id: Option<&'a str>,
    /// `s3://bucket/prefix/` of every place our archives are: a tag starting with one of
    /// them is ours to replace.
    pub ours_prefixes: Vec<String>,
}

/// One archived recording, as the custom attribute `archiveRecordings` lists it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    recording_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_key: Option<&'a str>,
    media: &'a str,
    object_key: &'a str,
    sha256: &'a str,
}

/// The custom attribute fields for the conversation (the schema must define them).
pub fn custom_attribute_fields(
    location: &str,
    archived: &[Manifest],
) -> HashMap<String, serde_json::Value> {
    let mut sorted: Vec<&Manifest> = archived.iter().collect();
    sorted.sort_by(|a, b| a.object_key.cmp(&b.object_key));
    let listed: Vec<Listed> = sorted
        .iter()
        .map(|m| Listed {
            recording_id: &m.recording_id,
            media_key: m.source.media_key.as_deref(),
            media: &m.plaintext.media,
            object_key: &m.object_key,
            sha256: &m.plaintext.sha256,
        })
        .collect();
    let latest = sorted
        .iter()
        .map(|m| m.timings.completed_at)
        .max()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let bucket = sorted.first().map(|m| m.bucket.clone()).unwrap_or_default();
    [
        ("archiveLocation", location.to_string()),
        ("archiveBucket", bucket),
        (
            "archiveRecordings",
            serde_json::to_string(&listed).unwrap_or_default(),
        ),
        ("archivedAt", latest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
    .collect()
}

/// Writes the conversation's archive reference. `location` is its archive folder URL.
pub async fn write_back(
    genesys: &GenesysClient,
    target: &Target<'_>,
    conversation: &ConversationId,
    location: &str,
    archived: &[Manifest],
) -> Result<WriteBackOutcome, WriteBackError> {
    match target.mode {
        WriteBack::Disabled => Ok(WriteBackOutcome::Disabled),
        WriteBack::ExternalTag => {
            let current = genesys.conversation(conversation).await?;
            let tag = current.external_tag.unwrap_or_default();
            if tag == location {
                return Ok(WriteBackOutcome::Unchanged);
            }
            let ours =
                tag.trim().is_empty() || target.ours_prefixes.iter().any(|p| tag.starts_with(p));
            if !ours && target.external_tag_policy == ExternalTagPolicy::KeepForeign {
                return Ok(WriteBackOutcome::ForeignTagKept { tag });
            }
            genesys.put_external_tag(conversation, location).await?;
            Ok(WriteBackOutcome::Written)
        }
        WriteBack::CustomAttributes => {
            let fields = custom_attribute_fields(location, archived);
            merge_custom_attributes(genesys, conversation, target.schema_id, |record| {
                let unchanged = record.is_some_and(|r| {
                    fields
                        .iter()
                        .all(|(k, v)| r.custom_attributes.get(k) == Some(v))
                });
                (!unchanged).then(|| fields.clone())
            })
            .await
        }
    }
}

/// One uploaded attachment, as the custom attribute `archiveAttachments` lists it.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ListedAttachment<'a> {
    pub upload_id: &'a str,
    pub file_name: &'a str,
    pub object_key: &'a str,
    pub sha256: &'a str,
}

/// Writes an attachment's archive reference (upload-proxy). The `externalTag` mode writes
/// the conversation's archive folder, as for recordings (the attachment is inside it); the
/// custom-attributes mode merges the attachment into `archiveAttachments` (a JSON list),
/// leaving the recordings' fields alone.
pub async fn write_back_attachment(
    genesys: &GenesysClient,
    target: &Target<'_>,
    conversation: &ConversationId,
    location: &str,
    attachment: &ListedAttachment<'_>,
) -> Result<WriteBackOutcome, WriteBackError> {
    match target.mode {
        WriteBack::Disabled => Ok(WriteBackOutcome::Disabled),
        WriteBack::ExternalTag => write_back(genesys, target, conversation, location, &[]).await,
        WriteBack::CustomAttributes => {
            merge_custom_attributes(genesys, conversation, target.schema_id, |record| {
                let mut listed: Vec<serde_json::Value> = record
                    .and_then(|r| r.custom_attributes.get("archiveAttachments"))
                    .and_then(|v| v.as_str())
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                if listed
                    .iter()
                    .any(|v| v["uploadId"].as_str() == Some(attachment.upload_id))
                {
                    return None;
                }
                listed.push(serde_json::to_value(attachment).unwrap_or_default());
                Some(
                    [(
                        "archiveAttachments".to_string(),
                        serde_json::Value::String(serde_json::Value::Array(listed).to_string()),
                    )]
                    .into_iter()
                    .collect(),
                )
            })
            .await
        }
    }
}

/// Writes the fields `change` derives from the conversation's custom attributes record (or
/// its absence): PATCH (merge) over the version read, PUT when there is none; `None` from
/// `change` means nothing to write. Versioned: re-read and retry when another writer got in
/// between (409).
async fn merge_custom_attributes(
    genesys: &GenesysClient,
    conversation: &ConversationId,
    schema_id: Option<&str>,
    change: impl Fn(
        Option<&crate::genesys::models::CustomAttributes>,
    ) -> Option<HashMap<String, serde_json::Value>>,
) -> Result<WriteBackOutcome, WriteBackError> {
    for _ in 0..3 {
        let existing = genesys.custom_attributes(conversation).await?;
        let record = existing.first();
        let Some(fields) = change(record) else {
            return Ok(WriteBackOutcome::Unchanged);
        };
        let result = match record {
            Some(r) => {
                genesys
                    .patch_custom_attributes(
                        conversation,
                        &CustomAttributesPatch {
                            id: r.id.clone(),
                            version: r.version,
                            custom_attributes: fields,
                        },
                    )
                    .await
            }
            None => {
                genesys
                    .put_custom_attributes(
                        conversation,
                        &CustomAttributesUpdate {
                            id: None,
                            schema_id: schema_id.unwrap_or_default().to_string(),
                            version: None,
                            custom_attributes: fields,
                        },
                    )
                    .await
            }
        };
        match result {
            Err(e) if e.status() == Some(409) => continue,
            Err(e) => return Err(e.into()),
            Ok(()) => return Ok(WriteBackOutcome::Written),
        }
    }
    Err(WriteBackError::Conflict)
}
