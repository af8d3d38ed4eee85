//! backfill-bench: a backfill of `--conversations` seeded conversations over `--days` days
//! through the async analytics jobs, against the simulator (over HTTP) enforcing `--limit`
//! requests per `--window-secs` (Genesys: 300 per 60 s per OAuth client), killed `--crashes`
//! times at random points (the run's future dropped mid-flight, as a process kill leaves it)
//! and restarted until complete. Prints how many conversations with recordings reached the
//! ArchiveQueue once, more than once, or not at all; the requests per minute achieved against
//! the limit (target ≥ 85 %) and the share answered 429 (target < 1 %); and the time taken.
//!
//! The archive's state and the queue are in-process stand-ins (`MemoryStore`; a queue that
//! keeps each batch, then answers after `--queue-latency-ms`, so a kill can fall between SQS
//! accepting a batch and the answer arriving, as with the real one): moto's S3 and SQS slow
//! down with every object and message they hold and would be what is measured. The same
//! exactly-once rule is tested against moto in `tests/integration/tests/sweep.rs`.
//!
//! Then `--archive-sample` conversations are backfilled and archived through the real handlers
//! on a simulator + moto stack, counting the Platform API requests one archived conversation
//! costs (the figure docs/scale.md builds on).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use gc_archive::events::ConversationMessage;
use gc_archive::ids::OrgId;
use gc_archive::queue::{ArchiveQueue, QueueError, SqsArchiveQueue};
use gc_archive::store::{ArchiveLayout, MemoryStore, S3Store};
use gc_archive::sweep::{backfill, SweepDeps};
use gc_archive_bench::{machine, print_machine};
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{RateLimit, SeedSpec, SimConfig, Simulator};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Exactly-once and rate-limit utilisation of a backfill killed and restarted")]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    conversations: usize,
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Requests allowed per window.
    #[arg(long, default_value_t = 300)]
    limit: u32,
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// One analytics job per this many hours.
    #[arg(long, default_value_t = 2)]
    window_hours: u64,
    /// Times the backfill is killed before the run that completes it.
    #[arg(long, default_value_t = 3)]
    crashes: u32,
    /// Each kill comes after a random time in [min, max] seconds of running.
    #[arg(long, default_value_t = 20)]
    crash_min_secs: u64,
    #[arg(long, default_value_t = 90)]
    crash_max_secs: u64,
    /// `QUEUED` answers before a job is `FULFILLED` (each costs the backfill a poll wait).
    #[arg(long, default_value_t = 0)]
    job_polls: u32,
    #[arg(long, default_value_t = 11)]
    rng_seed: u64,
    /// How long the queue takes to answer a batch it has kept.
    #[arg(long, default_value_t = 20)]
    queue_latency_ms: u64,
    /// Then, on a fresh stack without a rate limit: this many conversations backfilled and
    /// archived by the real handlers, to count the Genesys API requests one archived
    /// conversation costs (the figure docs/scale.md builds on). 0 skips it.
    #[arg(long, default_value_t = 200)]
    archive_sample: usize,
}

/// An in-process ArchiveQueue: keeps each batch at once (what SQS accepted), then answers
/// after `latency` (the answer's way back, where a kill can fall).
struct Counted {
    latency: Duration,
    messages: std::sync::Mutex<Vec<String>>,
}

impl Counted {
    fn messages(&self) -> Vec<String> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ArchiveQueue for Counted {
    async fn enqueue_conversation(&self, m: &ConversationMessage) -> Result<(), QueueError> {
        self.enqueue_conversations(std::slice::from_ref(m))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn enqueue_conversations(
        &self,
        messages: &[ConversationMessage],
    ) -> Vec<Result<(), QueueError>> {
        if let Ok(mut kept) = self.messages.lock() {
            kept.extend(messages.iter().map(|m| m.conversation_id.to_string()));
        }
        tokio::time::sleep(self.latency).await;
        messages.iter().map(|_| Ok(())).collect()
    }
}

/// A small xorshift: the kill times vary with `--rng-seed` and nothing else.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    print_machine(&machine());
    let sim = Simulator::start(SimConfig {
        rate_limit: Some(RateLimit {
            requests: args.limit,
            window_secs: args.window_secs,
        }),
        seed: Some(SeedSpec {
            conversations: args.conversations,
            days: args.days,
            rng_seed: 7,
        }),
        batch_polls: args.job_polls,
        behaviour: genesys_sim::Behaviour {
            org_limits: genesys_sim::OrgLimits::PerTokenPerMinute,
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let with_recordings: BTreeSet<String> = sim
        .conversations()
        .into_iter()
        .filter(|c| !c.recordings.is_empty())
        .map(|c| c.id)
        .collect();
    let genesys = gc_archive_bench::simulator_client(&sim)?;
    genesys.prime_rate_limit().await;
    let store = MemoryStore::new(BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(sim.org_id())?;
    let queue = Counted {
        latency: Duration::from_millis(args.queue_latency_ms),
        messages: Default::default(),
    };
    let deps = SweepDeps {
        genesys: &genesys,
        store: &store,
        layout: &layout,
        targets: &[],
        queue: &queue,
        org: &org,
    };
    let now = chrono::Utc::now();
    let (from, to) = (now - chrono::Duration::days(i64::from(args.days)), now);
    let window = Duration::from_secs(args.window_hours.max(1) * 3600);

    let mut rng = args.rng_seed.max(1);
    let mut runs = Vec::new();
    let started = Instant::now();
    let mut state = None;
    for run in 0..=args.crashes {
        let run_started = Instant::now();
        let future = backfill(&deps, from, to, window, None, |_| {});
        if run < args.crashes {
            let span = args
                .crash_max_secs
                .saturating_sub(args.crash_min_secs)
                .max(1);
            let kill = Duration::from_millis(
                args.crash_min_secs * 1000 + next_random(&mut rng) % (span * 1000),
            );
            match tokio::time::timeout(kill, future).await {
                Err(_) => {
                    runs.push(json!({"run": run + 1, "killed_after_secs": kill.as_secs_f64()}))
                }
                Ok(done) => {
                    state = Some(done?);
                    runs.push(json!({"run": run + 1, "completed_before_kill": true}));
                    break;
                }
            }
        } else {
            state = Some(future.await.context("the final backfill run")?);
            runs.push(
                json!({"run": run + 1, "completed_secs": run_started.elapsed().as_secs_f64()}),
            );
        }
    }
    let elapsed = started.elapsed();
    let state = state.context("no run completed")?;

    let on_queue = queue.messages().len();
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for cid in queue.messages() {
        *sent.entry(cid).or_insert(0) += 1;
    }
    let missing = with_recordings
        .iter()
        .filter(|c| !sent.contains_key(*c))
        .count();
    let strangers = sent
        .keys()
        .filter(|c| !with_recordings.contains(*c))
        .count();
    let repeated: usize = sent.values().map(|n| n.saturating_sub(1)).sum();
    let once = with_recordings
        .iter()
        .filter(|c| sent.get(*c) == Some(&1))
        .count();
    let requests = sim.requests();
    let analytics: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/analytics/"))
        .collect();
    let refused = analytics.iter().filter(|r| r.status == 429).count();
    let answered = analytics.len() - refused;
    let per_minute = answered as f64 * 60.0 / elapsed.as_secs_f64();
    let limit_per_minute = f64::from(args.limit) * 60.0 / args.window_secs as f64;
    println!(
        "backfill-bench: {} conversations ({} with recordings) over {} days, one job per {} h; {} kill(s), then completed",
        args.conversations,
        with_recordings.len(),
        args.days,
        args.window_hours,
        args.crashes
    );
    println!(
        "ArchiveQueue: {on_queue} messages for {} conversations with recordings: {once} exactly once, {repeated} repeats, {missing} missing, {strangers} not expected; backfill state: {} enqueued, {} seen",
        with_recordings.len(),
        state.enqueued, state.conversations_seen
    );
    println!(
        "{} analytics requests ({answered} answered, {refused} refused with 429 = {:.2} %, target < 1 %) in {:.1} s: {per_minute:.0}/min = {:.0} % of the {limit_per_minute:.0}/min limit (target >= 85 %)",
        analytics.len(),
        refused as f64 * 100.0 / analytics.len().max(1) as f64,
        elapsed.as_secs_f64(),
        per_minute * 100.0 / limit_per_minute
    );
    println!(
        "{}",
        json!({
            "bench": "backfill-bench",
            "conversations": args.conversations,
            "with_recordings": with_recordings.len(),
            "days": args.days,
            "window_hours": args.window_hours,
            "limit_per_minute": limit_per_minute,
            "runs": runs,
            "on_queue": on_queue,
            "exactly_once": once,
            "repeated": repeated,
            "missing": missing,
            "requests": analytics.len(),
            "refused_429": refused,
            "per_minute": per_minute,
            "utilisation": per_minute / limit_per_minute,
            "secs": elapsed.as_secs_f64(),
        })
    );
    if args.archive_sample > 0 {
        archive_cost(args.archive_sample).await?;
    }
    Ok(())
}

/// Genesys API requests per archived conversation, by endpoint, through the real handlers.
async fn archive_cost(conversations: usize) -> anyhow::Result<()> {
    let stack = LocalStack::start(StackOptions {
        sim: SimConfig {
            seed: Some(SeedSpec {
                conversations,
                days: 2,
                rng_seed: 5,
            }),
            ..SimConfig::default()
        },
        ..StackOptions::default()
    })
    .await?;
    let archive = stack.deps("archive-on-event").await?;
    let transfer = stack.deps("chunk-recording").await?;
    let store = S3Store::new(stack.s3.clone(), BUCKET);
    let layout = ArchiveLayout::new(PREFIX);
    let org = OrgId::parse(stack.sim.org_id())?;
    let queue = SqsArchiveQueue::new(stack.sqs.clone(), stack.archive_queue.url.clone());
    let deps = SweepDeps {
        genesys: &archive.service.genesys,
        store: &store,
        layout: &layout,
        targets: &[],
        queue: &queue,
        org: &org,
    };
    let now = chrono::Utc::now();
    let state = backfill(
        &deps,
        now - chrono::Duration::days(3),
        now,
        Duration::from_secs(24 * 3600),
        None,
        |_| {},
    )
    .await?;
    let listed = stack.sim.requests().len();
    stack.sim.clear_requests();
    let started = Instant::now();
    stack
        .drain(&archive, &transfer, Duration::from_secs(1800), |_| {})
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let recordings: usize = stack
        .sim
        .conversations()
        .iter()
        .map(|c| c.recordings.len())
        .sum();
    let mut by_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    let mut api = 0usize;
    for r in stack.sim.requests() {
        // Media comes from the signed URLs' host, not the Platform API's rate limit.
        if !r.path.starts_with("/api/v2/") {
            continue;
        }
        api += 1;
        let endpoint = r
            .path
            .split('/')
            .map(|seg| {
                if seg.len() >= 32 && seg.contains('-') {
                    "{id}"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        *by_endpoint
            .entry(format!("{} {endpoint}", r.method))
            .or_insert(0) += 1;
    }
    let archived = state.enqueued.max(1) as f64;
    println!(
        "archive cost: {} conversations enqueued ({} recordings) by a backfill of {listed} requests, archived in {secs:.1} s with {api} Platform API requests = {:.2} per conversation:",
        state.enqueued,
        recordings,
        api as f64 / archived
    );
    for (endpoint, n) in &by_endpoint {
        println!("  {:>6.2}  {endpoint}", *n as f64 / archived);
    }
    println!(
        "{}",
        json!({
            "bench": "backfill-bench/archive-cost",
            "conversations": state.enqueued,
            "recordings": recordings,
            "api_requests": api,
            "per_conversation": api as f64 / archived,
            "by_endpoint": by_endpoint,
        })
    );
    Ok(())
}
