//! The recording sweep: the safety net behind the events. It asks Genesys Cloud's analytics
//! (`POST /api/v2/analytics/conversations/details/query`, segment dimension `recording`) for
//! the conversations with recordings since its watermark, and puts every ended one that has no
//! archive yet on the ArchiveQueue, as a [`ConversationMessage`] archive-on-event treats like a
//! conversation-end event.
//!
//! Never skipping a conversation rests on three rules:
//! * the watermark (S3, `_state/sweep/watermark.json`, replaced only with `If-Match`) advances
//!   only after every conversation before it was enqueued or found archived, so a crash at any
//!   point re-runs the same windows;
//! * the query matches conversations by their *start*, so a conversation still running holds
//!   the watermark at its start (up to `max_open`): it is seen again once it has ended;
//! * each run looks back `overlap` before the watermark (late analytics data).
//!
//! What was sent is recorded in the enqueue [`journal`] before anything else happens, so
//! re-runs (and the overlap) do not send a conversation again (see the journal for the one
//! instant where a crash can repeat one batch).

use std::collections::HashSet;
use std::time::Duration;

mod backfill;
pub mod journal;

pub(crate) use backfill::job_conversations;
pub use backfill::{
    backfill, continue_backfills, BackfillProgress, BackfillState, PendingJob, DEADLINE_MARGIN,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::genesys::models::{AnalyticsConversation, ConversationDetailsQuery, Paging};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::{ConversationId, OrgId};
use crate::queue::{ArchiveQueue, QueueError};
use crate::store::{ArchiveLayout, Conditional, ObjectKey, ObjectStore, StoreError};

/// The analytics API's longest interval per query.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// The analytics API's largest page.
pub const PAGE_SIZE: u32 = 100;
/// Rows one details query can page through (genesys-api.md §3.7); a window with more is split.
pub const MAX_ROWS_PER_QUERY: u64 = 10_000;
pub const WATERMARK_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("analytics query {interval}: {source}")]
    Query {
        interval: String,
        #[source]
        source: GenesysError,
    },
    #[error("watermark {key}: {reason}")]
    Watermark { key: String, reason: String },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("enqueue conversation {conversation}: {source}")]
    Enqueue {
        conversation: String,
        #[source]
        source: QueueError,
    },
    #[error("sweep settings: {0}")]
    Settings(String),
    /// An async details job ended without its results.
    #[error("analytics job {job} for {interval} is {state}: {reason}")]
    Job {
        interval: String,
        job: String,
        state: String,
        reason: String,
    },
    /// Even a millisecond's window holds more conversations than one query may page through.
    #[error("{total} conversations started in {interval}: more than one query can return")]
    TooDense { interval: String, total: u64 },
}

impl crate::retry::Retryable for SweepError {
    fn retry_class(&self) -> crate::retry::RetryClass {
        use crate::retry::RetryClass;
        match self {
            SweepError::Query { source, .. } => source.retry_class(),
            SweepError::Store(e) => e.retry_class(),
            SweepError::Enqueue { source, .. } if source.denied => RetryClass::Infrastructure,
            // The next run asks again (a failed job, a refused send).
            SweepError::Job { .. } | SweepError::Enqueue { .. } => {
                RetryClass::Transient { retry_after: None }
            }
            SweepError::Watermark { .. }
            | SweepError::Settings(_)
            | SweepError::TooDense { .. } => RetryClass::Permanent,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// How far before the watermark each run looks again (late analytics data).
    pub overlap: Duration,
    /// How far behind now the sweep stays (analytics data settles; events usually win).
    pub settle: Duration,
    /// A conversation not ended after this long no longer holds the watermark back.
    pub max_open: Duration,
    /// Where the very first run starts, before now, when no watermark exists yet.
    pub first_lookback: Duration,
    /// One window per query, at most [`MAX_WINDOW`].
    pub window: Duration,
    /// A window with more conversations than this is split in halves until each fits.
    pub max_rows: u64,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            overlap: Duration::from_secs(3600),
            settle: Duration::from_secs(300),
            max_open: Duration::from_secs(24 * 3600),
            first_lookback: Duration::from_secs(24 * 3600),
            window: Duration::from_secs(24 * 3600),
            max_rows: MAX_ROWS_PER_QUERY,
        }
    }
}

/// How far the sweep has enqueued every ended conversation with recordings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    pub version: u32,
    /// Every conversation that started before this and has ended is enqueued or archived.
    pub swept_until: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The conversation (still running at the last run) that holds the watermark, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub queries: u32,
    pub conversations_seen: u32,
    pub enqueued: u32,
    pub already_archived: u32,
    /// Enqueued by an earlier run, not archived yet: not sent again.
    pub already_enqueued: u32,
    /// The earliest end among the ended conversations seen without an archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unarchived_end: Option<DateTime<Utc>>,
    /// Still running (not enqueued yet; they hold the watermark).
    pub still_open: u32,
    pub watermark: Option<DateTime<Utc>>,
    /// Another sweep replaced the watermark meanwhile: this run's advance was not saved
    /// (what it enqueued stays enqueued).
    pub watermark_conflict: bool,
}

/// The windows covering `[from, to)`, each at most `window` (and [`MAX_WINDOW`]) long.
pub fn windows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    window: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let step = chrono::Duration::from_std(window.min(MAX_WINDOW).max(Duration::from_secs(1)))
        .unwrap_or(chrono::Duration::days(1));
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + step).min(to);
        out.push((at, end));
        at = end;
    }
    out
}

/// The watermark in S3, read and replaced conditionally.
pub struct WatermarkStore<'a> {
    store: &'a dyn ObjectStore,
    key: ObjectKey,
}

impl<'a> WatermarkStore<'a> {
    pub fn new(store: &'a dyn ObjectStore, layout: &ArchiveLayout) -> WatermarkStore<'a> {
        WatermarkStore {
            store,
            key: layout.sweep_watermark_key(),
        }
    }

    /// The watermark and the ETag to replace it with, if one exists.
    pub async fn load(&self) -> Result<Option<(Watermark, String)>, SweepError> {
        read_state(self.store, &self.key, WATERMARK_VERSION, |w: &Watermark| {
            w.version
        })
        .await
    }

    /// Writes `w` if the stored one is still `etag` (or absent, for `None`); false when
    /// another writer got there first.
    pub async fn save(&self, w: &Watermark, etag: Option<&str>) -> Result<bool, SweepError> {
        let written = self
            .store
            .put_conditionally(
                &self.key,
                state_body(&self.key, w)?,
                "application/json",
                etag,
            )
            .await?;
        Ok(matches!(written, Conditional::Written(_)))
    }
}

/// One of the sweep's JSON state objects and its ETag, if it exists; one of another version
/// than `version` is refused, not guessed at.
pub(crate) async fn read_state<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> Result<Option<(T, String)>, SweepError> {
    let Some(found) = store.get(key).await? else {
        return Ok(None);
    };
    let bad = |reason: String| SweepError::Watermark {
        key: key.to_string(),
        reason,
    };
    let value: T = serde_json::from_slice(&found.body).map_err(|e| bad(e.to_string()))?;
    if version_of(&value) != version {
        return Err(bad(format!(
            "version {} is not {version}",
            version_of(&value)
        )));
    }
    Ok(Some((value, found.etag)))
}

/// A state object's JSON body.
pub(crate) fn state_body<T: Serialize>(
    key: &ObjectKey,
    value: &T,
) -> Result<bytes::Bytes, SweepError> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(|e| SweepError::Watermark {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

/// What the sweep needs from the deployment.
pub struct SweepDeps<'a> {
    pub genesys: &'a GenesysClient,
    /// The deployment's bucket: the sweep's state and journal, and archives.
    pub store: &'a dyn ObjectStore,
    pub layout: &'a ArchiveLayout,
    /// Routing targets besides `store` whose manifests count as archived (empty without
    /// routing).
    pub targets: &'a [crate::store::ArchiveLocation],
    pub queue: &'a dyn ArchiveQueue,
    pub org: &'a OrgId,
}

/// One sweep from the stored watermark (minus the overlap) to `now - settle`.
pub async fn sweep_once(
    deps: &SweepDeps<'_>,
    settings: &SweepSettings,
    now: DateTime<Utc>,
) -> Result<SweepReport, SweepError> {
    let chrono_of = |d: Duration, what: &str| {
        chrono::Duration::from_std(d).map_err(|e| SweepError::Settings(format!("{what}: {e}")))
    };
    let marks = WatermarkStore::new(deps.store, deps.layout);
    let stored = marks.load().await?;
    let from = match &stored {
        Some((w, _)) => w.swept_until - chrono_of(settings.overlap, "overlap")?,
        None => now - chrono_of(settings.first_lookback, "first lookback")?,
    };
    let to = now - chrono_of(settings.settle, "settle")?;
    let mut report = SweepReport {
        from: Some(from),
        to: Some(to),
        ..SweepReport::default()
    };
    if to <= from {
        report.watermark = stored.as_ref().map(|(w, _)| w.swept_until);
        return Ok(report);
    }
    let oldest_open_allowed = now - chrono_of(settings.max_open, "max open")?;
    let mut offers = journal::Offers::new(deps, "sweep");
    let mut seen: HashSet<String> = HashSet::new();
    // The earliest start of a conversation still running: the watermark may not pass it.
    let mut hold: Option<(DateTime<Utc>, String)> = None;
    for (start, end) in windows(from, to, settings.window) {
        for conv in query_window(deps, start, end, settings.max_rows, &mut report).await? {
            report.conversations_seen += 1;
            let Some(conversation_start) = conv.conversation_start else {
                continue;
            };
            let Some(conversation_end) = conv.conversation_end else {
                if conversation_start >= oldest_open_allowed {
                    report.still_open += 1;
                    if hold.as_ref().is_none_or(|(t, _)| conversation_start < *t) {
                        hold = Some((conversation_start, conv.conversation_id.clone()));
                    }
                }
                continue;
            };
            if !seen.insert(conv.conversation_id.clone()) {
                continue;
            }
            let Ok(conversation) = ConversationId::parse(&conv.conversation_id) else {
                tracing::warn!(id = %conv.conversation_id, "analytics returned an invalid conversation id; skipped");
                continue;
            };
            offers
                .offer(conversation, conversation_start, conversation_end)
                .await?;
        }
    }
    // Everything offered is on the queue and in the journal before the watermark moves.
    offers.finish().await?;
    report.enqueued = offers.counts.enqueued;
    report.already_archived = offers.counts.already_archived;
    report.already_enqueued = offers.counts.already_enqueued;
    report.oldest_unarchived_end = offers.counts.oldest_unarchived_end;
    let swept_until = hold.as_ref().map_or(to, |(t, _)| (*t).min(to));
    // Never move the watermark back (a held run after a later one).
    let swept_until = match &stored {
        Some((w, _)) => swept_until.max(w.swept_until),
        None => swept_until,
    };
    let next = Watermark {
        version: WATERMARK_VERSION,
        swept_until,
        updated_at: now,
        held_by: hold.map(|(_, id)| id),
    };
    let saved = marks
        .save(&next, stored.as_ref().map(|(_, etag)| etag.as_str()))
        .await?;
    report.watermark = Some(swept_until);
    report.watermark_conflict = !saved;
    Ok(report)
}

/// Every conversation with recordings that started in `[start, end)`, all pages.
async fn query_window(
    deps: &SweepDeps<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_rows: u64,
    report: &mut SweepReport,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    let (rows, queries) = query_split(deps.genesys, start, end, max_rows).await?;
    report.queries += queries;
    Ok(rows)
}

/// Every conversation with recordings that started in `[from, to)`, in windows of at most
/// [`MAX_WINDOW`], all pages, each conversation once.
pub async fn query_conversations(
    genesys: &GenesysClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_rows: u64,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (start, end) in windows(from, to, MAX_WINDOW) {
        let (rows, _) = query_split(genesys, start, end, max_rows).await?;
        out.extend(
            rows.into_iter()
                .filter(|c| seen.insert(c.conversation_id.clone())),
        );
    }
    Ok(out)
}

/// All conversations of one window, split in halves while a window holds more than one query
/// may page through; also returns the number of requests made.
async fn query_split(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_rows: u64,
) -> Result<(Vec<AnalyticsConversation>, u32), SweepError> {
    // Iterative (a stack of windows), so no recursion through async.
    let mut todo = vec![(start, end)];
    let mut out = Vec::new();
    let mut queries = 0;
    while let Some((start, end)) = todo.pop() {
        let (rows, total, made) = query_pages(genesys, start, end, max_rows).await?;
        queries += made;
        let half = (end - start) / 2;
        if total > max_rows {
            if half < chrono::Duration::milliseconds(1) {
                return Err(SweepError::TooDense {
                    interval: format!("{start}/{end}"),
                    total,
                });
            }
            // Later half first on the stack, so windows come out oldest first.
            todo.push((start + half, end));
            todo.push((start, start + half));
            continue;
        }
        out.extend(rows);
    }
    Ok((out, queries))
}

/// The pages of one query: its rows, its total, the requests made. Stops after the first page
/// when the total is more than `max_rows` (the caller splits the window).
async fn query_pages(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_rows: u64,
) -> Result<(Vec<AnalyticsConversation>, u64, u32), SweepError> {
    let mut out = Vec::new();
    let mut queries = 0;
    let mut total = 0;
    for page_number in 1.. {
        let query = ConversationDetailsQuery::with_recordings(
            start,
            end,
            Paging {
                page_size: PAGE_SIZE,
                page_number,
            },
        );
        queries += 1;
        let page = genesys
            .conversation_details_query(&query)
            .await
            .map_err(|source| SweepError::Query {
                interval: query.interval.clone(),
                source,
            })?;
        let rows = page.conversations.len();
        out.extend(page.conversations);
        total = page.total_hits.unwrap_or(0);
        if total > max_rows || rows < PAGE_SIZE as usize || out.len() as u64 >= total {
            break;
        }
    }
    Ok((out, total, queries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn windows_cover_the_range_without_gaps_and_respect_the_api_limit() {
        let w = windows(
            t("2026-01-01T00:00:00Z"),
            t("2026-01-20T12:00:00Z"),
            Duration::from_secs(30 * 24 * 3600),
        );
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].0, t("2026-01-01T00:00:00Z"));
        assert_eq!(w[0].1, t("2026-01-08T00:00:00Z"), "at most 7 days");
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0), "no gap, no overlap");
        assert_eq!(w[2].1, t("2026-01-20T12:00:00Z"));
        assert!(windows(
            t("2026-01-02T00:00:00Z"),
            t("2026-01-01T00:00:00Z"),
            MAX_WINDOW
        )
        .is_empty());
    }

    #[tokio::test]
    async fn the_watermark_is_replaced_only_by_whoever_read_the_current_one() {
        let store = crate::store::MemoryStore::new("b");
        let layout = ArchiveLayout::new("p");
        let marks = WatermarkStore::new(&store, &layout);
        assert!(marks.load().await.unwrap().is_none());
        let w = |at: &str| Watermark {
            version: WATERMARK_VERSION,
            swept_until: t(at),
            updated_at: t(at),
            held_by: None,
        };
        assert!(marks.save(&w("2026-01-01T00:00:00Z"), None).await.unwrap());
        // A second first run loses: the watermark exists now.
        assert!(!marks.save(&w("2026-01-02T00:00:00Z"), None).await.unwrap());
        let (read, etag) = marks.load().await.unwrap().unwrap();
        assert_eq!(read, w("2026-01-01T00:00:00Z"));
        assert!(marks
            .save(&w("2026-01-03T00:00:00Z"), Some(&etag))
            .await
            .unwrap());
        // A run that read the old one cannot overwrite the newer one.
        assert!(!marks
            .save(&w("2026-01-02T00:00:00Z"), Some(&etag))
            .await
            .unwrap());
        assert_eq!(
            marks.load().await.unwrap().unwrap().0.swept_until,
            t("2026-01-03T00:00:00Z")
        );
        // A watermark of another version is refused, not guessed at.
        store
            .put_if_match(
                &layout.sweep_watermark_key(),
                r#"{"version":9,"sweptUntil":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}"#.into(),
                "application/json",
                &marks.load().await.unwrap().unwrap().1,
            )
            .await
            .unwrap();
        assert!(matches!(
            marks.load().await,
            Err(SweepError::Watermark { .. })
        ));
    }
}
