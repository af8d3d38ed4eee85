//! Backfill: history through Genesys Cloud's async analytics jobs
//! (`/api/v2/analytics/conversations/details/jobs`: no 7-day interval or 10,000-row limit, and
//! the history the sync query cannot reach), one job per window.
//!
//! Progress lives in `{prefix}/_state/backfill/{from}_{to}.json` (replaced with `If-Match`):
//! the windows before `doneUntil` are finished, and a window in progress keeps its job id and
//! results cursor, so a run stopped by its deadline, or killed, continues where it was without
//! a new job. Enqueueing goes through the [`super::journal`], so a restarted window does not
//! send again what it sent before.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::genesys::models::{AnalyticsConversation, AsyncConversationQuery};
use crate::genesys::{GenesysClient, GenesysError};
use crate::ids::ConversationId;
use crate::store::{Conditional, ObjectKey};

use super::journal::Offers;
use super::{windows, SweepDeps, SweepError};

pub const BACKFILL_VERSION: u32 = 1;
/// Polls of one job: quick at first, then once a minute.
const JOB_POLL_WAITS_MS: [u64; 8] = [500, 1000, 2000, 4000, 8000, 15000, 30000, 60000];
/// Without a deadline (the CLI), how long one job may take before the backfill gives up.
const JOB_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
const JOB_PAGE_SIZE: u32 = 1000;
/// Time kept back from a deadline to write the journal and the state.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(60);
const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The window in progress: its job, and how far its results were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingJob {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Where a backfill stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillState {
    pub version: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// One job per window of this many seconds.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    pub done_until: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_job: Option<PendingJob>,
    pub conversations_seen: u64,
    pub enqueued: u64,
    pub already_archived: u64,
    /// Enqueued by an earlier run or the sweep, not archived yet: not sent again.
    #[serde(default)]
    pub already_enqueued: u64,
}

fn default_window_secs() -> u64 {
    DEFAULT_WINDOW.as_secs()
}

impl BackfillState {
    pub fn complete(&self) -> bool {
        self.done_until >= self.to
    }
}

/// After each window (or page of a window cut short): what is done, for a progress line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillProgress {
    pub window: usize,
    pub windows: usize,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub state: BackfillState,
}

/// The state object and the ETag that replaces it.
struct StateFile {
    key: ObjectKey,
    etag: Option<String>,
}

impl StateFile {
    async fn load(
        deps: &SweepDeps<'_>,
        key: ObjectKey,
    ) -> Result<(Option<BackfillState>, StateFile), SweepError> {
        let Some(found) = deps.store.get(&key).await? else {
            return Ok((None, StateFile { key, etag: None }));
        };
        let state: BackfillState =
            serde_json::from_slice(&found.body).map_err(|e| SweepError::Watermark {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        if state.version != BACKFILL_VERSION {
            return Err(SweepError::Watermark {
                key: key.to_string(),
                reason: format!("version {} is not {BACKFILL_VERSION}", state.version),
            });
        }
        Ok((
            Some(state),
            StateFile {
                key,
                etag: Some(found.etag),
            },
        ))
    }

    async fn save(
        &mut self,
        deps: &SweepDeps<'_>,
        state: &BackfillState,
    ) -> Result<(), SweepError> {
        let body = serde_json::to_vec(state).map_err(|e| SweepError::Watermark {
            key: self.key.to_string(),
            reason: e.to_string(),
        })?;
        let written = match &self.etag {
            Some(tag) => {
                deps.store
                    .put_if_match(&self.key, body.into(), "application/json", tag)
                    .await?
            }
            None => {
                deps.store
                    .put_if_absent(&self.key, body.into(), "application/json")
                    .await?
            }
        };
        match written {
            Conditional::Written(tag) => {
                self.etag = Some(tag);
                Ok(())
            }
            Conditional::PreconditionFailed => Err(SweepError::Watermark {
                key: self.key.to_string(),
                reason: "another backfill of the same range is running".into(),
            }),
        }
    }
}

/// Enqueues every ended conversation with recordings that started in `[from, to)` and has no
/// archive, one analytics job per `window`. A re-run of the same range continues the stored
/// state (with the window it was started with). With a `deadline` (Lambda) it stops
/// [`DEADLINE_MARGIN`] before it, state saved, and returns an incomplete state; without one a
/// job not fulfilled within [`JOB_MAX_WAIT`] is an error.
pub async fn backfill(
    deps: &SweepDeps<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    window: Duration,
    deadline: Option<Instant>,
    mut progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillState, SweepError> {
    if to <= from {
        return Err(SweepError::Settings(format!(
            "the range {from} .. {to} is empty"
        )));
    }
    let (stored, mut file) =
        StateFile::load(deps, deps.layout.backfill_state_key(from, to)).await?;
    let mut state = stored.unwrap_or(BackfillState {
        version: BACKFILL_VERSION,
        from,
        to,
        window_secs: window.max(Duration::from_secs(60)).as_secs(),
        done_until: from,
        pending_job: None,
        conversations_seen: 0,
        enqueued: 0,
        already_archived: 0,
        already_enqueued: 0,
    });
    if state.complete() {
        return Ok(state);
    }
    let stop_at = deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d));
    let past = |at: Option<Instant>| at.is_some_and(|t| Instant::now() >= t);
    let all = windows(from, to, Duration::from_secs(state.window_secs.max(60)));
    let total = all.len();
    let mut offers = Offers::new(deps, "backfill");
    let mut seen: HashSet<String> = HashSet::new();
    let base = state.clone();
    let tally = |state: &mut BackfillState, offers: &Offers<'_>, seen: u64| {
        state.conversations_seen = base.conversations_seen + seen;
        state.enqueued = base.enqueued + u64::from(offers.counts.enqueued);
        state.already_archived = base.already_archived + u64::from(offers.counts.already_archived);
        state.already_enqueued = base.already_enqueued + u64::from(offers.counts.already_enqueued);
    };
    let mut rows_seen = 0u64;
    for (i, (start, end)) in all.into_iter().enumerate() {
        if end <= state.done_until {
            continue;
        }
        if past(stop_at) {
            break;
        }
        let resumed = state
            .pending_job
            .clone()
            .filter(|p| p.window_start == start && p.window_end == end);
        let was_resumed = resumed.is_some();
        let mut pending = match resumed {
            Some(p) => p,
            None => {
                let p = submit(deps.genesys, start, end).await?;
                state.pending_job = Some(p.clone());
                file.save(deps, &state).await?;
                p
            }
        };
        let wait_until = stop_at.unwrap_or_else(|| Instant::now() + JOB_MAX_WAIT);
        match wait_for_job(deps.genesys, &pending.job_id, start, end, wait_until).await {
            Ok(true) => {}
            Ok(false) if deadline.is_some() => {
                // Still running at the deadline: the next run polls the same job.
                break;
            }
            Ok(false) => {
                return Err(SweepError::Job {
                    interval: interval(start, end),
                    job: pending.job_id,
                    state: "QUEUED".into(),
                    reason: format!("not fulfilled after {} s", JOB_MAX_WAIT.as_secs()),
                })
            }
            // A job of an earlier run that Genesys no longer has (expired, failed): a new one.
            Err(e) if was_resumed => {
                tracing::warn!(job = %pending.job_id, error = %e, "backfill job gone; submitting the window again");
                pending = submit(deps.genesys, start, end).await?;
                state.pending_job = Some(pending.clone());
                file.save(deps, &state).await?;
                if !wait_for_job(deps.genesys, &pending.job_id, start, end, wait_until).await? {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
        let mut cut_short = false;
        loop {
            let page = deps
                .genesys
                .conversation_details_job_results(
                    &pending.job_id,
                    pending.cursor.as_deref(),
                    JOB_PAGE_SIZE,
                )
                .await
                .map_err(query_failed(start, end))?;
            for conv in page.conversations {
                rows_seen += 1;
                offer_ended(&mut offers, &mut seen, &conv).await?;
            }
            match page.cursor {
                Some(next) if Some(&next) != pending.cursor.as_ref() => pending.cursor = Some(next),
                _ => break,
            }
            if past(stop_at) {
                cut_short = true;
                break;
            }
        }
        offers.finish().await?;
        if cut_short {
            state.pending_job = Some(pending);
        } else {
            state.pending_job = None;
            state.done_until = end;
        }
        tally(&mut state, &offers, rows_seen);
        file.save(deps, &state).await?;
        progress(&BackfillProgress {
            window: i + 1,
            windows: total,
            window_start: start,
            window_end: end,
            state: state.clone(),
        });
        if cut_short {
            break;
        }
    }
    Ok(state)
}

/// Continues every stored backfill that is not complete, until `deadline`.
pub async fn continue_backfills(
    deps: &SweepDeps<'_>,
    deadline: Instant,
) -> Result<Vec<BackfillState>, SweepError> {
    let prefix = deps.layout.backfill_state_prefix();
    let mut out = Vec::new();
    for key in deps.store.list(prefix.as_str()).await? {
        if !key.as_str().ends_with(".json") {
            continue;
        }
        if Instant::now() + DEADLINE_MARGIN >= deadline {
            break;
        }
        let (Some(state), _) = StateFile::load(deps, key).await? else {
            continue;
        };
        if state.complete() {
            continue;
        }
        let window = Duration::from_secs(state.window_secs);
        out.push(backfill(deps, state.from, state.to, window, Some(deadline), |_| {}).await?);
    }
    Ok(out)
}

async fn offer_ended(
    offers: &mut Offers<'_>,
    seen: &mut HashSet<String>,
    conv: &AnalyticsConversation,
) -> Result<(), SweepError> {
    let (Some(start), Some(end)) = (conv.conversation_start, conv.conversation_end) else {
        return Ok(());
    };
    if !seen.insert(conv.conversation_id.clone()) {
        return Ok(());
    }
    let Ok(conversation) = ConversationId::parse(&conv.conversation_id) else {
        tracing::warn!(id = %conv.conversation_id, "analytics returned an invalid conversation id; skipped");
        return Ok(());
    };
    offers.offer(conversation, start, end).await
}

fn interval(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    AsyncConversationQuery::with_recordings(start, end).interval
}

fn query_failed(start: DateTime<Utc>, end: DateTime<Utc>) -> impl Fn(GenesysError) -> SweepError {
    move |source| SweepError::Query {
        interval: interval(start, end),
        source,
    }
}

async fn submit(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<PendingJob, SweepError> {
    let query = AsyncConversationQuery::with_recordings(start, end);
    let job_id = genesys
        .submit_conversation_details_job(&query)
        .await
        .map_err(query_failed(start, end))?
        .job_id;
    Ok(PendingJob {
        window_start: start,
        window_end: end,
        job_id,
        cursor: None,
    })
}

/// Polls `job` until it is fulfilled (true) or `until` comes first (false); a failed,
/// cancelled or expired job is an error.
async fn wait_for_job(
    genesys: &GenesysClient,
    job: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    until: Instant,
) -> Result<bool, SweepError> {
    let mut waits = JOB_POLL_WAITS_MS.iter().chain(std::iter::repeat(&60_000));
    loop {
        let status = genesys
            .conversation_details_job(job)
            .await
            .map_err(query_failed(start, end))?;
        match status.state.as_str() {
            "FULFILLED" => return Ok(true),
            "QUEUED" | "PENDING" => {}
            other => {
                return Err(SweepError::Job {
                    interval: interval(start, end),
                    job: job.to_string(),
                    state: other.to_string(),
                    reason: status.error_message.unwrap_or_default(),
                })
            }
        }
        let wait = Duration::from_millis(*waits.next().unwrap_or(&60_000));
        if Instant::now() + wait > until {
            return Ok(false);
        }
        tokio::time::sleep(wait).await;
    }
}

/// One async details job for `[start, end)`: submitted, polled until fulfilled (at most
/// [`JOB_MAX_WAIT`]), and read to the last page.
pub(crate) async fn job_conversations(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    let job = submit(genesys, start, end).await?.job_id;
    if !wait_for_job(genesys, &job, start, end, Instant::now() + JOB_MAX_WAIT).await? {
        return Err(SweepError::Job {
            interval: interval(start, end),
            job,
            state: "QUEUED".into(),
            reason: format!("not fulfilled after {} s", JOB_MAX_WAIT.as_secs()),
        });
    }
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = genesys
            .conversation_details_job_results(&job, cursor.as_deref(), JOB_PAGE_SIZE)
            .await
            .map_err(query_failed(start, end))?;
        out.extend(page.conversations);
        match page.cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}
