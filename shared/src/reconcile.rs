//! Reconciliation: what Genesys Cloud lists for a window against the manifests in S3, so an
//! auditor gets proof that nothing is missing, or the list of what is, each with the latest
//! reason the audit records give.
//!
//! For every conversation with recordings that started in the window (the analytics details
//! query, as the sweep asks it; the async jobs for windows older than the sync query reaches)
//! the recordings come from `GET
//! /api/v2/conversations/{id}/recordingmetadata`. A recording is archived when a manifest for
//! it exists in its conversation's folder (one per media stream); a conversation still running
//! is pending; a recording of a kind this deployment does not archive (`ARCHIVE_MEDIA`) is
//! skipped; everything else is missing, with Genesys' `fileState` and the last audit outcome.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::AuditRecord;
use crate::config::RecordingMedia;
use crate::genesys::models::{AnalyticsConversation, FileState};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::{ConversationId, OrgId};
use crate::store::{ArchiveLayout, ObjectKey, ObjectStore, StoreError};
use crate::sweep::{query_conversations, SweepError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Query(#[from] SweepError),
    #[error("recordings of conversation {conversation}: {source}")]
    Recordings {
        conversation: String,
        #[source]
        source: GenesysError,
    },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the window {from} .. {to} is empty")]
    EmptyWindow {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Archived,
    /// The conversation is still running, or Genesys has not finished the recording.
    Pending,
    /// A kind this deployment does not archive.
    Skipped,
    Missing,
}

/// One recording that is not archived.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unarchived {
    pub conversation_id: String,
    pub recording_id: Option<String>,
    pub conversation_start: Option<DateTime<Utc>>,
    pub status: Status,
    pub media: Option<String>,
    /// Genesys' `fileState` for the recording.
    pub file_state: Option<String>,
    /// The latest audit record's outcome and reason, if any was written.
    pub last_outcome: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub conversations: u32,
    pub recordings: u32,
    pub archived: u32,
    pub pending: u32,
    pub skipped: u32,
    pub missing: u32,
    /// Every recording not archived (pending, skipped and missing), oldest conversation first.
    pub unarchived: Vec<Unarchived>,
}

impl ReconcileReport {
    /// Nothing that should be archived is missing.
    pub fn complete(&self) -> bool {
        self.missing == 0
    }
}

pub struct ReconcileDeps<'a> {
    pub genesys: &'a GenesysClient,
    pub store: &'a dyn ObjectStore,
    pub layout: &'a ArchiveLayout,
    /// Routing targets besides `store` whose manifests count as archived.
    pub targets: &'a [crate::store::ArchiveLocation],
    pub org: &'a OrgId,
    /// The recording kinds this deployment archives.
    pub media: &'a [RecordingMedia],
}

impl<'a> ReconcileDeps<'a> {
    /// A deployment's archive service: its Genesys client, bucket, layout, org and kinds.
    pub fn of(service: &'a crate::pipeline::ArchiveService) -> Self {
        ReconcileDeps {
            genesys: &service.genesys,
            store: service.store.as_ref(),
            layout: &service.settings.layout,
            targets: service.target_locations(),
            org: &service.org,
            media: &service.media,
        }
    }
}

/// Reconciles the conversations that started in `[from, to)`; `now` bounds the audit days read.
pub async fn reconcile(
    deps: &ReconcileDeps<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<ReconcileReport, ReconcileError> {
    if to <= from {
        return Err(ReconcileError::EmptyWindow { from, to });
    }
    let mut report = ReconcileReport {
        from: Some(from),
        to: Some(to),
        ..ReconcileReport::default()
    };
    let conversations = conversations_in(deps.genesys, from, to, now).await?;
    for conv in conversations {
        report.conversations += 1;
        let Ok(conversation) = ConversationId::parse(&conv.conversation_id) else {
            continue;
        };
        let start = conv.conversation_start;
        let base = Unarchived {
            conversation_id: conversation.to_string(),
            recording_id: None,
            conversation_start: start,
            status: Status::Pending,
            media: None,
            file_state: None,
            last_outcome: None,
            reason: None,
        };
        let (Some(start), Some(_)) = (start, conv.conversation_end) else {
            report.pending += 1;
            report.unarchived.push(Unarchived {
                reason: Some("the conversation is still running".into()),
                ..base
            });
            continue;
        };
        let recordings = deps
            .genesys
            .recording_metadata(&conversation)
            .await
            .map_err(|source| ReconcileError::Recordings {
                conversation: conversation.to_string(),
                source,
            })?;
        let archived = manifests_in(deps, &conversation, start).await?;
        for rec in recordings {
            report.recordings += 1;
            let kind = RecordingMedia::from_api(rec.media.as_deref());
            let entry = Unarchived {
                recording_id: Some(rec.id.clone()),
                media: rec.media.clone(),
                file_state: rec
                    .file_state
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .and_then(|v| v.as_str().map(str::to_string)),
                ..base.clone()
            };
            if archived.contains(&rec.id) {
                report.archived += 1;
            } else if !kind.is_some_and(|k| deps.media.contains(&k)) {
                report.skipped += 1;
                report.unarchived.push(Unarchived {
                    status: Status::Skipped,
                    reason: Some("a kind this deployment does not archive (ARCHIVE_MEDIA)".into()),
                    ..entry
                });
            } else if rec.file_state.is_some_and(FileState::is_pending) {
                report.pending += 1;
                report.unarchived.push(Unarchived {
                    status: Status::Pending,
                    reason: Some("Genesys has not finished the recording".into()),
                    ..entry
                });
            } else {
                report.missing += 1;
                report.unarchived.push(Unarchived {
                    status: Status::Missing,
                    ..entry
                });
            }
        }
    }
    explain_missing(deps, &mut report, from, now).await?;
    Ok(report)
}

/// How far back the sync details query reaches (genesys-api.md §3.7: 35 days; a margin kept).
const SYNC_QUERY_REACH: chrono::Duration = chrono::Duration::days(30);

/// The window's conversations with recordings: the sync query for recent windows, the async
/// jobs (one per 7 days) for a window reaching further back than the sync query may.
async fn conversations_in(
    genesys: &GenesysClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    if from >= now - SYNC_QUERY_REACH {
        return query_conversations(genesys, from, to, crate::sweep::MAX_ROWS_PER_QUERY).await;
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (start, end) in crate::sweep::windows(from, to, crate::sweep::MAX_WINDOW) {
        out.extend(
            crate::sweep::job_conversations(genesys, start, end)
                .await?
                .into_iter()
                .filter(|c| seen.insert(c.conversation_id.clone())),
        );
    }
    Ok(out)
}

/// Recording ids with a manifest in the conversation's folder (`{rid}[.{key}].manifest.json`).
async fn manifests_in(
    deps: &ReconcileDeps<'_>,
    conversation: &ConversationId,
    start: DateTime<Utc>,
) -> Result<HashSet<String>, StoreError> {
    let mut ids = HashSet::new();
    let places = std::iter::once((deps.store, deps.layout))
        .chain(deps.targets.iter().map(|t| (t.store.as_ref(), &t.layout)));
    for (store, layout) in places {
        let folder = layout.conversation_folder(deps.org, conversation, start);
        ids.extend(store.list(folder.as_str()).await?.iter().filter_map(|k| {
            let name = k.as_str().rsplit('/').next()?;
            let stem = name.strip_suffix(".manifest.json")?;
            Some(stem.split('.').next().unwrap_or(stem).to_string())
        }));
    }
    Ok(ids)
}

/// Adds the latest audit outcome and reason to every missing recording, from the audit
/// records of the days since the window's start (records are filed by the day they were
/// written, `{HHMMSSmmm}-{recordingId}-{outcome}-{worker}.json`).
async fn explain_missing(
    deps: &ReconcileDeps<'_>,
    report: &mut ReconcileReport,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let wanted: HashSet<String> = report
        .unarchived
        .iter()
        .filter(|u| u.status == Status::Missing)
        .filter_map(|u| u.recording_id.clone())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // Latest key per recording: keys sort by day, then time of day.
    let mut latest: BTreeMap<String, ObjectKey> = BTreeMap::new();
    let mut day = from.date_naive();
    while day <= now.date_naive() {
        for key in deps
            .store
            .list(deps.layout.audit_day_prefix(day).as_str())
            .await?
        {
            let Some(rid) = wanted
                .iter()
                .find(|rid| key.as_str().contains(&format!("-{rid}-")))
            else {
                continue;
            };
            let newer = latest.get(rid).is_none_or(|k| k.as_str() < key.as_str());
            if newer {
                latest.insert(rid.clone(), key);
            }
        }
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    for entry in report
        .unarchived
        .iter_mut()
        .filter(|u| u.status == Status::Missing)
    {
        let Some(key) = entry.recording_id.as_ref().and_then(|r| latest.get(r)) else {
            entry.reason = Some("no audit record: no transfer was attempted".into());
            continue;
        };
        match deps.store.get(key).await? {
            Some(found) => match serde_json::from_slice::<AuditRecord>(&found.body) {
                Ok(record) => {
                    entry.last_outcome = Some(record.outcome);
                    entry.reason = record.reason.or(record.reason_code);
                }
                Err(e) => entry.reason = Some(format!("audit record {key} unreadable: {e}")),
            },
            None => entry.reason = Some("no audit record: no transfer was attempted".into()),
        }
    }
    Ok(())
}
