//! Writes where a conversation's recordings were archived back to Genesys Cloud: conversation
//! custom attributes where the org has a schema for them, otherwise the conversation's
//! `externalTag`. Idempotent (the same value may be written again), retried, and never fatal to
//! an archive that already succeeded.

use std::collections::HashMap;

use crate::config::WriteBack;
use crate::genesys::models::{CustomAttributesPatch, CustomAttributesUpdate};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::ConversationId;
use crate::store::manifest::Manifest;

/// The conversation's archive folder: every recording object and manifest of the
/// conversation lives under it.
pub fn conversation_location(manifest: &Manifest) -> String {
    let folder = manifest
        .object_key
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or("");
    format!("s3://{}/{}/", manifest.bucket, folder)
}

/// Writes the location of `manifest`'s archive to its conversation.
pub async fn write_back(
    genesys: &GenesysClient,
    mode: WriteBack,
    schema_id: Option<&str>,
    manifest: &Manifest,
) -> Result<(), GenesysError> {
    let conversation =
        ConversationId::parse(&manifest.conversation_id).map_err(|e| GenesysError::Decode {
            method: "PUT",
            path: "write-back".into(),
            reason: e.to_string(),
        })?;
    match mode {
        WriteBack::Disabled => Ok(()),
        WriteBack::ExternalTag => {
            let location = conversation_location(manifest);
            let current = genesys.conversation(&conversation).await?;
            if current.external_tag.as_deref() == Some(location.as_str()) {
                return Ok(());
            }
            genesys.put_external_tag(&conversation, &location).await
        }
        WriteBack::CustomAttributes => {
            let fields: HashMap<String, serde_json::Value> = [
                ("archiveLocation", conversation_location(manifest)),
                ("archiveBucket", manifest.bucket.clone()),
                ("archiveKey", manifest.object_key.clone()),
                ("archiveSha256", manifest.plaintext.sha256.clone()),
                ("archivedAt", manifest.timings.completed_at.to_rfc3339()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
            // Versioned: re-read and retry when another writer got in between (409).
            let mut last = None;
            for _ in 0..3 {
                let existing = genesys.custom_attributes(&conversation).await?;
                let result = match existing.first() {
                    Some(record) => {
                        genesys
                            .patch_custom_attributes(
                                &conversation,
                                &CustomAttributesPatch {
                                    id: record.id.clone(),
                                    version: record.version,
                                    custom_attributes: fields.clone(),
                                },
                            )
                            .await
                    }
                    None => {
                        genesys
                            .put_custom_attributes(
                                &conversation,
                                &CustomAttributesUpdate {
                                    id: None,
                                    schema_id: schema_id.unwrap_or_default().to_string(),
                                    version: None,
                                    custom_attributes: fields.clone(),
                                },
                            )
                            .await
                    }
                };
                match result {
                    Err(e) if e.status() == Some(409) => last = Some(e),
                    other => return other,
                }
            }
            Err(last.unwrap_or(GenesysError::Decode {
                method: "PATCH",
                path: "customattributes".into(),
                reason: "version conflict persisted".into(),
            }))
        }
    }
}
