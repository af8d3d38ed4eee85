//! The recording sweep against the simulator's analytics API, moto's S3 and SQS, and the real
//! archive-on-event handler: after lost events it enqueues exactly the conversations without
//! an archive, they are archived through the ArchiveQueue, a conversation still running holds
//! the watermark, and a run that fails part-way leaves the watermark where it was.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use gc_archive::events::ConversationMessage;
use gc_archive::handlers::archive_on_event;
use gc_archive::ids::OrgId;
use gc_archive::queue::{ArchiveQueue, QueueError, SqsArchiveQueue};
use gc_archive::store::{ArchiveLayout, S3Store};
use gc_archive::sweep::{sweep_once, SweepDeps, SweepSettings, WatermarkStore};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec, SimConfig};

fn settings() -> SweepSettings {
    SweepSettings {
        overlap: Duration::from_secs(3600),
        settle: Duration::ZERO,
        max_open: Duration::from_secs(24 * 3600),
        first_lookback: Duration::from_secs(6 * 3600),
        window: Duration::from_secs(3600),
        max_rows: gc_archive::sweep::MAX_ROWS_PER_QUERY,
    }
}

fn ended(minutes_ago: i64) -> ConversationSpec {
    ConversationSpec {
        start: Some(Utc::now() - chrono::Duration::minutes(minutes_ago)),
        duration_secs: 120,
        ..ConversationSpec::default()
    }
}

fn recorded(stack: &LocalStack, spec: ConversationSpec) -> String {
    let cid = stack.sim.add_conversation(spec);
    stack
        .sim
        .add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::WavUlaw)));
    cid
}

/// The conversation-end event of `cid` delivered straight to archive-on-event, as an
/// EventBridge rule with a Lambda target would (the events that did arrive).
async fn deliver(
    stack: &LocalStack,
    archive: &gc_archive::handlers::HandlerDeps,
    cid: &str,
) -> Result<serde_json::Value, gc_archive::handlers::HandlerError> {
    let event = serde_json::json!({
        "version": "0", "id": format!("ev-{cid}"), "detail-type": "conversation",
        "source": format!("aws.partner/genesys.com/cloud/{}/gc-archive", stack.sim.org_id()),
        "account": "123456789012", "time": Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": [], "detail": stack.conversation_event(cid, "customer.end"),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    archive_on_event(archive, event, deadline, "direct").await
}

/// The ArchiveQueue in SQS, failing every message after the first `ok` (a crash of the run);
/// records what SQS accepted.
struct FailingQueue {
    inner: SqsArchiveQueue,
    ok: u32,
    sent: AtomicU32,
    accepted: std::sync::Mutex<Vec<String>>,
}

impl FailingQueue {
    fn new(stack: &LocalStack, ok: u32) -> FailingQueue {
        FailingQueue {
            inner: SqsArchiveQueue::new(stack.sqs.clone(), stack.archive_queue.url.clone()),
            ok,
            sent: AtomicU32::new(0),
            accepted: Default::default(),
        }
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

#[async_trait]
impl ArchiveQueue for FailingQueue {
    async fn enqueue_conversation(&self, m: &ConversationMessage) -> Result<(), QueueError> {
        if self.sent.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(QueueError::new("SendMessage", "injected"));
        }
        self.inner.enqueue_conversation(m).await?;
        self.accepted
            .lock()
            .unwrap()
            .push(m.conversation_id.as_str().to_string());
        Ok(())
    }
}

/// How often each conversation was accepted by the queue, over all `runs`.
fn sends(runs: &[&FailingQueue]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for cid in runs.iter().flat_map(|q| q.accepted()) {
        *out.entry(cid).or_insert(0) += 1;
    }
    out
}

async fn manifests(stack: &LocalStack, cid: &str) -> usize {
    stack
        .list_keys(&format!("{PREFIX}/"))
        .await
        .unwrap()
        .iter()
        .filter(|k| k.contains(cid) && k.ends_with(".manifest.json"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_after_lost_events_archives_exactly_the_missing_conversations() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    // Six ended conversations with a recording over the last five hours; the events of three
    // of them arrived (archived directly), the other three were lost.
    let all: Vec<String> = (0..6)
        .map(|i| recorded(&stack, ended(290 - i * 50)))
        .collect();
    let (delivered, lost) = all.split_at(3);
    for cid in delivered {
        deliver(&stack, &archive, cid).await.unwrap();
        assert_eq!(manifests(&stack, cid).await, 1);
    }
    // A conversation without recordings, and one still running (with a recording).
    stack.sim.add_conversation(ended(100));
    let running = recorded(
        &stack,
        ConversationSpec {
            start: Some(Utc::now() - chrono::Duration::minutes(30)),
            duration_secs: 7200,
            ..ConversationSpec::default()
        },
    );

    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let queue = SqsArchiveQueue::new(stack.sqs.clone(), stack.archive_queue.url.clone());
    let genesys = archive.service.genesys.clone();
    let deps = SweepDeps {
        genesys: &genesys,
        store: &store,
        layout: &layout,
        targets: &[],
        queue: &queue,
        org: &org,
    };

    // A first run whose queue fails after one message: it stops with an error and the
    // watermark is not written, so nothing before it can be skipped.
    let failing = FailingQueue::new(&stack, 1);
    let crashed = sweep_once(
        &SweepDeps {
            queue: &failing,
            ..deps
        },
        &settings(),
        Utc::now(),
    )
    .await;
    assert!(crashed.is_err(), "{crashed:?}");
    assert!(WatermarkStore::new(&store, &layout)
        .load()
        .await
        .unwrap()
        .is_none());

    let counted = FailingQueue::new(&stack, u32::MAX);
    let report = sweep_once(
        &SweepDeps {
            queue: &counted,
            ..deps
        },
        &settings(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(report.already_archived, 3, "{report:?}");
    assert_eq!(
        (report.enqueued, report.already_enqueued),
        (2, 1),
        "the three lost ones, the one the crashed run sent not again: {report:?}"
    );
    let mut lost_sorted = lost.to_vec();
    lost_sorted.sort();
    assert_eq!(
        sends(&[&failing, &counted]),
        lost_sorted.iter().map(|c| (c.clone(), 1)).collect(),
        "each lost conversation sent exactly once over both runs"
    );
    assert_eq!(report.still_open, 1, "{report:?}");
    let running_start = stack
        .sim
        .conversations()
        .into_iter()
        .find(|c| c.id == running)
        .unwrap()
        .start_time
        // Analytics reports milliseconds.
        .trunc_subsecs(3);
    assert_eq!(
        report.watermark,
        Some(running_start),
        "the running conversation holds the watermark"
    );

    // The ArchiveQueue through the real handlers: the lost conversations get archived.
    stack
        .drain(&archive, &transfer, Duration::from_secs(120), |_| {})
        .await
        .unwrap();
    for cid in lost {
        assert_eq!(manifests(&stack, cid).await, 1, "{cid}");
    }
    for cid in delivered {
        assert_eq!(manifests(&stack, cid).await, 1, "still one archive: {cid}");
    }
    assert_eq!(manifests(&stack, &running).await, 0);

    // Nothing is missing any more: the next run (from the watermark minus the overlap) finds
    // every ended conversation archived and enqueues nothing; the watermark stays held by the
    // conversation that is still running.
    let again = sweep_once(&deps, &settings(), Utc::now()).await.unwrap();
    assert_eq!(again.from, Some(running_start - chrono::Duration::hours(1)));
    assert_eq!(again.enqueued, 0, "{again:?}");
    assert!(again.already_archived >= 1, "{again:?}");
    assert_eq!(
        again.already_archived + again.still_open,
        again.conversations_seen,
        "{again:?}"
    );
    assert_eq!(again.watermark, Some(running_start));
    let (stored, _) = WatermarkStore::new(&store, &layout)
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.held_by.as_deref(), Some(running.as_str()));
}

/// Reconciliation after a mixed day: one conversation archived, one whose event was lost, one
/// whose recording Genesys holds in an error state (the attempt failed and was audited), one
/// still running and one chat (not archived here): exactly the lost and the failed recording
/// are missing, each with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_lists_exactly_what_is_missing_with_its_reason() {
    use gc_archive::reconcile::{reconcile, ReconcileDeps, Status};
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let archived = recorded(&stack, ended(200));
    deliver(&stack, &archive, &archived).await.unwrap();
    let lost = recorded(&stack, ended(150));
    let failed = stack.sim.add_conversation(ended(120));
    let failed_rid = stack.sim.add_recording(
        &failed,
        RecordingSpec {
            file_state_override: Some(genesys_sim::FileState::Error),
            ..RecordingSpec::new(MediaSource::Real(Codec::WavUlaw))
        },
    );
    // The conversation is done; its refused recording went to the DLQ as its own job.
    deliver(&stack, &archive, &failed).await.unwrap();
    let running = recorded(
        &stack,
        ConversationSpec {
            start: Some(Utc::now() - chrono::Duration::minutes(30)),
            duration_secs: 7200,
            ..ConversationSpec::default()
        },
    );
    let chat = stack.sim.add_conversation(ended(90));
    stack
        .sim
        .add_recording(&chat, RecordingSpec::new(MediaSource::Chat));

    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let now = Utc::now();
    let report = reconcile(
        &ReconcileDeps {
            genesys: &archive.service.genesys,
            store: &store,
            layout: &layout,
            targets: &[],
            org: &org,
            media: &archive.service.media,
        },
        now - chrono::Duration::hours(6),
        now,
        now,
    )
    .await
    .unwrap();
    assert_eq!(report.conversations, 5, "{report:#?}");
    assert_eq!(report.archived, 1, "{report:#?}");
    assert_eq!(report.missing, 2, "{report:#?}");
    assert_eq!(report.pending, 1, "{report:#?}");
    assert_eq!(report.skipped, 1, "{report:#?}");
    assert!(!report.complete());
    let of = |cid: &str| {
        report
            .unarchived
            .iter()
            .find(|u| u.conversation_id == cid)
            .unwrap_or_else(|| panic!("{cid} not listed: {report:#?}"))
    };
    assert_eq!(of(&lost).status, Status::Missing);
    assert_eq!(
        of(&lost).reason.as_deref(),
        Some("no audit record: no transfer was attempted")
    );
    let f = of(&failed);
    assert_eq!(f.status, Status::Missing);
    assert_eq!(f.recording_id.as_deref(), Some(failed_rid.as_str()));
    assert_eq!(f.file_state.as_deref(), Some("ERROR"));
    assert!(
        f.last_outcome.is_some(),
        "the failed attempt's audit: {f:?}"
    );
    assert!(f.reason.is_some(), "{f:?}");
    assert_eq!(of(&running).status, Status::Pending);
    assert_eq!(of(&chat).status, Status::Skipped);
    assert!(report
        .unarchived
        .iter()
        .all(|u| u.conversation_id != archived));
}

/// A window holding more conversations than one query may page through (10,000 in Genesys;
/// 5 here) is split until each part fits: every conversation is still found, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_with_more_conversations_than_a_query_returns_is_split() {
    let stack = LocalStack::start(StackOptions {
        sim: SimConfig {
            analytics_max_rows: 5,
            ..SimConfig::default()
        },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let all: Vec<String> = (0..12)
        .map(|i| recorded(&stack, ended(280 - i * 20)))
        .collect();
    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let recorder = gc_archive_it::stream_kit::RecordingQueue::default();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let report = sweep_once(
        &SweepDeps {
            genesys: &archive.service.genesys,
            store: &store,
            layout: &layout,
            targets: &[],
            queue: &recorder,
            org: &org,
        },
        &SweepSettings {
            window: Duration::from_secs(6 * 3600),
            max_rows: 5,
            ..settings()
        },
        Utc::now(),
    )
    .await
    .unwrap();
    let mut sent = recorder.sent();
    sent.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(sent, want, "every conversation once: {report:?}");
    assert!(report.queries > 3, "the window was split: {report:?}");
    // Genesys refuses paging past the limit, so an unsplit query could not have found them.
    let refused = stack
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/details/query") && r.status == 400)
        .count();
    assert_eq!(refused, 0, "no page past the limit was asked for");
}

/// A backfill over three weeks through the async analytics jobs, cut short by a failing queue
/// and run again: the second run starts after the finished window with the jobs already
/// submitted,
/// every conversation without an archive is sent exactly once over both runs, and after the
/// queue is drained each has exactly one archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_through_analytics_jobs_resumes_after_its_last_finished_window() {
    use gc_archive::sweep::backfill;
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let transfer = stack.deps("chunk-recording").await.unwrap();
    let day = 24 * 60;
    // Windows of 5 days from 21 days ago: [20, 18] [15a, 13] [10a, 8, 7] [5a, 3] [0.5].
    let unarchived: Vec<String> = [
        20 * day,
        18 * day,
        13 * day,
        8 * day,
        7 * day,
        3 * day,
        day / 2,
    ]
    .iter()
    .map(|m| recorded(&stack, ended(*m)))
    .collect();
    let archived: Vec<String> = [15 * day, 10 * day, 5 * day]
        .iter()
        .map(|m| recorded(&stack, ended(*m)))
        .collect();
    for cid in &archived {
        deliver(&stack, &archive, cid).await.unwrap();
    }
    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let genesys = archive.service.genesys.clone();
    let queue = SqsArchiveQueue::new(stack.sqs.clone(), stack.archive_queue.url.clone());
    let deps = SweepDeps {
        genesys: &genesys,
        store: &store,
        layout: &layout,
        targets: &[],
        queue: &queue,
        org: &org,
    };
    let now = Utc::now();
    let (from, to) = (now - chrono::Duration::days(21), now);
    let window = Duration::from_secs(5 * 24 * 3600);

    // The queue fails at the third message: the first window (two conversations) finishes.
    let failing = FailingQueue::new(&stack, 2);
    let mut first_windows = Vec::new();
    let cut = backfill(
        &SweepDeps {
            queue: &failing,
            ..deps
        },
        from,
        to,
        window,
        None,
        |p| first_windows.push(p.window),
    )
    .await;
    assert!(cut.is_err(), "{cut:?}");
    assert_eq!(first_windows, vec![1]);

    let counted = FailingQueue::new(&stack, u32::MAX);
    let mut second_windows = Vec::new();
    let state = backfill(
        &SweepDeps {
            queue: &counted,
            ..deps
        },
        from,
        to,
        window,
        None,
        |p| second_windows.push(p.window),
    )
    .await
    .unwrap();
    let mut want = unarchived.clone();
    want.sort();
    assert_eq!(
        sends(&[&failing, &counted]),
        want.iter().map(|c| (c.clone(), 1)).collect(),
        "every conversation without an archive sent exactly once over both runs"
    );
    assert_eq!(
        second_windows,
        vec![2, 3, 4, 5],
        "the finished window is not asked again"
    );
    assert_eq!(state.enqueued, 7, "{state:?}");
    assert_eq!(state.already_archived, 3, "{state:?}");
    assert_eq!(state.done_until, to);
    let jobs = stack
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/details/jobs"))
        .count();
    assert_eq!(
        jobs, 5,
        "one job per window over both runs: the second reads the jobs the cut run had submitted"
    );
    assert!(
        state.pending_jobs.is_empty() && state.complete(),
        "{state:?}"
    );

    stack
        .drain(&archive, &transfer, Duration::from_secs(120), |_| {})
        .await
        .unwrap();
    for cid in unarchived.iter().chain(&archived) {
        assert_eq!(manifests(&stack, cid).await, 1, "{cid}");
    }
}

/// A reconciliation reaching further back than the sync details query may (about 35 days) asks
/// the async analytics jobs instead, and still names what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_window_is_reconciled_through_analytics_jobs() {
    use gc_archive::reconcile::{reconcile, ReconcileDeps, Status};
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let archive = stack.deps("archive-on-event").await.unwrap();
    let old = recorded(&stack, ended(50 * 24 * 60));
    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let now = Utc::now();
    let report = reconcile(
        &ReconcileDeps {
            genesys: &archive.service.genesys,
            store: &store,
            layout: &layout,
            targets: &[],
            org: &org,
            media: &archive.service.media,
        },
        now - chrono::Duration::days(60),
        now - chrono::Duration::days(40),
        now,
    )
    .await
    .unwrap();
    assert_eq!(report.missing, 1, "{report:#?}");
    assert_eq!(report.unarchived[0].conversation_id, old);
    assert_eq!(report.unarchived[0].status, Status::Missing);
    let requests = stack.sim.requests();
    assert!(requests
        .iter()
        .any(|r| r.method == "POST" && r.path.ends_with("/details/jobs")));
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/details/query")),
        "the sync query is not asked for a window it cannot reach"
    );
}

/// More messages than one SQS batch holds go out as several batches, some at the same time;
/// each message reaches the queue once and the results are in the order given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_batch_is_sent_in_several_each_message_once() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let queue = SqsArchiveQueue::new(stack.sqs.clone(), stack.archive_queue.url.clone());
    let org = OrgId::parse(stack.sim.org_id()).unwrap();
    let messages: Vec<ConversationMessage> = (0..47)
        .map(|i| ConversationMessage {
            version: gc_archive::events::CONVERSATION_MESSAGE_VERSION,
            org_id: org.clone(),
            conversation_id: gc_archive::ids::ConversationId::parse(format!("c-{i:03}")).unwrap(),
            origin: "stream".into(),
            conversation_end: None,
        })
        .collect();
    let results = queue.enqueue_conversations(&messages).await;
    assert_eq!(results.len(), 47);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut got = stack.archive_queue_conversations().await.unwrap();
    got.sort();
    let want: Vec<String> = (0..47).map(|i| format!("c-{i:03}")).collect();
    assert_eq!(got, want);
}
