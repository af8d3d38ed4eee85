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
use super::{read_state, state_body, windows, SweepDeps, SweepError};

pub const BACKFILL_VERSION: u32 = 1;
/// Polls of one job: quick at first, then once a minute.
const JOB_POLL_WAITS_MS: [u64; 8] = [500, 1000, 2000, 4000, 8000, 15000, 30000, 60000];
/// Without a deadline (the CLI), how long one job may take before the backfill gives up.
const JOB_MAX_WAIT: Duration = Duration::from_secs(15 * 60);
const JOB_PAGE_SIZE: u32 = 1000;
/// Time kept back from a deadline to write the journal and the state.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(60);
const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A job submitted for a window not finished yet: a later run reads it instead of asking again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingJob {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub job_id: String,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_jobs: Vec<PendingJob>,
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

/// After each window: what is done, for a progress line.
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
        let found = read_state(deps.store, &key, BACKFILL_VERSION, |s: &BackfillState| {
            s.version
        })
        .await?;
        Ok(match found {
            Some((state, etag)) => (
                Some(state),
                StateFile {
                    key,
                    etag: Some(etag),
                },
            ),
            None => (None, StateFile { key, etag: None }),
        })
    }

    async fn save(
        &mut self,
        deps: &SweepDeps<'_>,
        state: &BackfillState,
    ) -> Result<(), SweepError> {
        let body = state_body(&self.key, state)?;
        let written = deps
            .store
            .put_conditionally(&self.key, body, "application/json", self.etag.as_deref())
            .await?;
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

/// Jobs in flight at once: the next windows' jobs run (in Genesys) and are read while the
/// current window's conversations are checked and sent, so neither waits for the other.
const PREFETCH: usize = 3;

/// Enqueues every ended conversation with recordings that started in `[from, to)` and has no
/// archive, one analytics job per `window`, [`PREFETCH`] jobs ahead. A re-run of the same range
/// continues the stored state (with the window it was started with) and reads the jobs it had
/// submitted. With a `deadline` (Lambda) it stops [`DEADLINE_MARGIN`] before it, state saved,
/// and returns an incomplete state; without one a job not fulfilled within [`JOB_MAX_WAIT`] is
/// an error.
/// How long a stopping backfill lets the windows already fetching record their jobs.
const SETTLE_IN_FLIGHT: Duration = Duration::from_secs(3);

pub async fn backfill(
    deps: &SweepDeps<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    window: Duration,
    deadline: Option<Instant>,
    mut progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillState, SweepError> {
    use futures::StreamExt as _;
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
        pending_jobs: Vec::new(),
        conversations_seen: 0,
        enqueued: 0,
        already_archived: 0,
        already_enqueued: 0,
    });
    if state.complete() {
        return Ok(state);
    }
    let stop_at = deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d));
    let all = windows(from, to, Duration::from_secs(state.window_secs.max(60)));
    let total = all.len();
    let todo: Vec<(usize, DateTime<Utc>, DateTime<Utc>)> = all
        .into_iter()
        .enumerate()
        .filter(|(_, (_, end))| *end > state.done_until)
        .map(|(i, (start, end))| (i, start, end))
        .collect();
    // Every job this run submitted or took over, so that a stop can hand them on.
    let jobs: std::sync::Mutex<Vec<PendingJob>> = std::sync::Mutex::new(state.pending_jobs.clone());
    let earlier = state.pending_jobs.clone();
    let genesys = deps.genesys;
    let jobs_ref = &jobs;
    // Set when the run stops early: windows not started yet submit nothing.
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let stopping_ref = &stopping;
    let mut fetched = futures::stream::iter(todo)
        .map(|(i, start, end)| {
            let reuse = earlier
                .iter()
                .find(|p| p.window_start == start && p.window_end == end)
                .map(|p| p.job_id.clone());
            async move {
                if stopping_ref.load(std::sync::atomic::Ordering::SeqCst) {
                    return (i, start, end, Ok(None));
                }
                let rows = window_rows(genesys, start, end, reuse, stop_at, jobs_ref).await;
                (i, start, end, rows)
            }
        })
        .buffered(PREFETCH);
    let mut offers = Offers::new(deps, "backfill");
    let mut seen: HashSet<String> = HashSet::new();
    let base = state.clone();
    let mut rows_seen = 0u64;
    let mut failure = None;
    while let Some((i, start, end, rows)) = fetched.next().await {
        let rows = match rows {
            Ok(Some(rows)) => rows,
            // Still running at the deadline: the next run reads the same jobs.
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let sent: Result<(), SweepError> = async {
            for conv in &rows {
                offer_ended(&mut offers, &mut seen, conv).await?;
            }
            offers.finish().await
        }
        .await;
        if let Err(e) = sent {
            failure = Some(e);
            break;
        }
        rows_seen += rows.len() as u64;
        state.done_until = end;
        state.conversations_seen = base.conversations_seen + rows_seen;
        state.enqueued = base.enqueued + u64::from(offers.counts.enqueued);
        state.already_archived = base.already_archived + u64::from(offers.counts.already_archived);
        state.already_enqueued = base.already_enqueued + u64::from(offers.counts.already_enqueued);
        state.pending_jobs = pending_after(&jobs, state.done_until);
        file.save(deps, &state).await?;
        progress(&BackfillProgress {
            window: i + 1,
            windows: total,
            window_start: start,
            window_end: end,
            state: state.clone(),
        });
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
    }
    // Windows already fetching may have a job submitted whose id is not recorded yet: they
    // are given a moment to record it (so the next run reads that job instead of submitting
    // the window again), then dropped.
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(SETTLE_IN_FLIGHT, async {
        while fetched.next().await.is_some() {}
    })
    .await;
    drop(fetched);
    let pending = pending_after(&jobs, state.done_until);
    if pending != state.pending_jobs {
        state.pending_jobs = pending;
        file.save(deps, &state).await?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(state),
    }
}

/// The jobs of windows after `done_until`.
fn pending_after(
    jobs: &std::sync::Mutex<Vec<PendingJob>>,
    done_until: DateTime<Utc>,
) -> Vec<PendingJob> {
    let jobs = jobs.lock().map(|j| j.clone()).unwrap_or_default();
    let mut out: Vec<PendingJob> = jobs
        .into_iter()
        .filter(|p| p.window_end > done_until)
        .collect();
    out.sort_by_key(|p| p.window_start);
    out.dedup_by(|a, b| a.window_start == b.window_start);
    out
}

/// One window's conversations from its job (`reuse`, or a new one), or None when `stop_at`
/// comes before the job is fulfilled. A reused job Genesys no longer has is replaced.
async fn window_rows(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reuse: Option<String>,
    stop_at: Option<Instant>,
    jobs: &std::sync::Mutex<Vec<PendingJob>>,
) -> Result<Option<Vec<AnalyticsConversation>>, SweepError> {
    let record = |job_id: &str| {
        if let Ok(mut j) = jobs.lock() {
            j.retain(|p| p.window_start != start);
            j.push(PendingJob {
                window_start: start,
                window_end: end,
                job_id: job_id.to_string(),
            });
        }
    };
    let wait_until = stop_at.unwrap_or_else(|| Instant::now() + JOB_MAX_WAIT);
    let (mut job, reused) = match reuse {
        Some(job) => (job, true),
        None => {
            let job = submit(genesys, start, end).await?;
            record(&job);
            (job, false)
        }
    };
    let ready = match wait_for_job(genesys, &job, start, end, wait_until).await {
        Err(e) if reused => {
            tracing::warn!(job = %job, error = %e, "backfill job gone; submitting the window again");
            job = submit(genesys, start, end).await?;
            record(&job);
            wait_for_job(genesys, &job, start, end, wait_until).await?
        }
        other => other?,
    };
    if !ready {
        if stop_at.is_some() {
            return Ok(None);
        }
        return Err(SweepError::Job {
            interval: interval(start, end),
            job,
            state: "QUEUED".into(),
            reason: format!("not fulfilled after {} s", JOB_MAX_WAIT.as_secs()),
        });
    }
    read_results(genesys, &job, start, end).await.map(Some)
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
) -> Result<String, SweepError> {
    let query = AsyncConversationQuery::with_recordings(start, end);
    Ok(genesys
        .submit_conversation_details_job(&query)
        .await
        .map_err(query_failed(start, end))?
        .job_id)
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

/// Every page of a fulfilled job's results.
async fn read_results(
    genesys: &GenesysClient,
    job: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = genesys
            .conversation_details_job_results(job, cursor.as_deref(), JOB_PAGE_SIZE)
            .await
            .map_err(query_failed(start, end))?;
        out.extend(page.conversations);
        match page.cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}

/// One async details job for `[start, end)`: submitted, polled until fulfilled (at most
/// [`JOB_MAX_WAIT`]), and read to the last page.
pub(crate) async fn job_conversations(
    genesys: &GenesysClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<AnalyticsConversation>, SweepError> {
    let job = submit(genesys, start, end).await?;
    if !wait_for_job(genesys, &job, start, end, Instant::now() + JOB_MAX_WAIT).await? {
        return Err(SweepError::Job {
            interval: interval(start, end),
            job,
            state: "QUEUED".into(),
            reason: format!("not fulfilled after {} s", JOB_MAX_WAIT.as_secs()),
        });
    }
    read_results(genesys, &job, start, end).await
}
