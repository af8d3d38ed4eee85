//! stream-bench: event-stream under load and under a reconnect storm.
//!
//! 1. **Sustained**: the real `gc-archive stream` daemon (built with this profile, next to
//!    this binary) against the simulator's Notifications API, moto's S3 (state, journal) and
//!    an SQS ArchiveQueue. The simulator's generator ends `--events-per-minute / 2`
//!    conversations a minute over `--queues` queue topics (two events each: connected, then
//!    ended) for `--minutes` minutes. Printed: events/s the daemon received, messages that
//!    reached the queue (and how many conversations twice), lag from each conversation's end
//!    (the event's own time) to its message sent (p50/p99/max, from the daemon's report), the
//!    daemon's CPU time (from `/proc/<pid>/stat`: its own process, not the simulator's or
//!    moto's) and peak RSS (`VmHWM`).
//!    moto's SQS takes 180 ms per `SendMessageBatch` on this machine, and more as the queue
//!    grows (520 ms at 5,000 messages), about 50 messages/s at best: it cannot take 10,000
//!    events/min. So the load run's queue is `--sink fast`: a minimal SQS JSON-protocol
//!    endpoint in this process (SendMessage/SendMessageBatch, MD5 of each body, every body
//!    kept and counted), reached through `AWS_ENDPOINT_URL_SQS`; a second run at
//!    `--moto-events-per-minute` goes into moto's real queue and counts what is there.
//! 2. **Reconnect storm**: a consumer in this process whose socket the simulator drops as
//!    soon as it opens, `--drops` times. Every wait it chose is compared with its full-jitter
//!    bound `min(cap, base * 2^(n-1))` for the n-th failure in a row; printed: the largest
//!    wait/bound ratio (≤ 1 means within bounds), the mean, and how long the storm took. Then
//!    the default breaker (8 failures in a row) against a server that refuses every connect:
//!    how many attempts and how long before the circuit opened.
//!
//! Figures only; nothing is asserted.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use gc_archive::store::{ArchiveLayout, MemoryStore};
use gc_archive::stream::{run, StreamDeps, StreamSettings};
use gc_archive_bench::{machine, print_machine, proc_status_kib, proc_status_kib_of};
use gc_archive_it::stack::{LocalStack, StackOptions};
use gc_archive_it::stream_kit::RecordingQueue;
use genesys_sim::GeneratorSpec;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "event-stream throughput, lag, CPU and memory; reconnect backoff bounds")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    events_per_minute: u32,
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    #[arg(long, default_value_t = 50)]
    queues: usize,
    #[arg(long, default_value_t = 100)]
    drops: u32,
    /// The second sustained run, into moto's SQS (0 = skip).
    #[arg(long, default_value_t = 1_200)]
    moto_events_per_minute: u32,
    #[arg(long, default_value_t = 2.0)]
    moto_minutes: f64,
    /// Skip the sustained phase.
    #[arg(long)]
    storm_only: bool,
}

/// utime + stime of a process, from `/proc/<pid>/stat`, in seconds.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some((utime + stime) / ticks)
}

/// The bodies a minimal SQS endpoint received (`AmazonSQS.SendMessage`,
/// `AmazonSQS.SendMessageBatch`, JSON protocol).
#[derive(Default)]
struct Sink {
    bodies: std::sync::Mutex<Vec<String>>,
}

async fn sqs_sink() -> anyhow::Result<(String, std::sync::Arc<Sink>)> {
    use axum::http::{HeaderMap, StatusCode};
    use md5::{Digest, Md5};
    let sink = std::sync::Arc::new(Sink::default());
    let state = sink.clone();
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let sink = state.clone();
        async move {
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let md5 = |b: &str| hex::encode(Md5::digest(b.as_bytes()));
            let reply = match target.as_str() {
                "AmazonSQS.SendMessageBatch" => {
                    let mut ok = Vec::new();
                    let mut bodies = sink.bodies.lock().unwrap_or_else(|p| p.into_inner());
                    for e in request["Entries"].as_array().cloned().unwrap_or_default() {
                        let b = e["MessageBody"].as_str().unwrap_or_default().to_string();
                        ok.push(serde_json::json!({"Id": e["Id"], "MessageId": format!("m-{}", bodies.len()), "MD5OfMessageBody": md5(&b)}));
                        bodies.push(b);
                    }
                    serde_json::json!({"Successful": ok, "Failed": []})
                }
                "AmazonSQS.SendMessage" => {
                    let b = request["MessageBody"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let digest = md5(&b);
                    sink.bodies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(b);
                    serde_json::json!({"MessageId": "m", "MD5OfMessageBody": digest})
                }
                _ => {
                    return (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "application/x-amz-json-1.0")],
                        "{}".to_string(),
                    )
                }
            };
            (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.0")],
                reply.to_string(),
            )
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, sink))
}

async fn queue_depth(stack: &LocalStack) -> anyhow::Result<u64> {
    Ok(
        gc_archive_it::esm::queue_depth(&stack.sqs, &stack.archive_queue.url)
            .await?
            .0,
    )
}

/// Where the daemon's ArchiveQueue messages go.
enum SinkKind {
    Fast,
    Moto,
}

async fn sustained(
    args: &Args,
    kind: SinkKind,
    events_per_minute: u32,
    minutes: f64,
) -> anyhow::Result<()> {
    let stack = LocalStack::start(StackOptions::default()).await?;
    let hub = stack.sim.notifications();
    hub.set_heartbeat(Duration::from_secs(10));
    let queues: Vec<String> = (0..args.queues)
        .map(|i| hub.add_queue(&format!("queue-{i:03}")))
        .collect();
    let cli = std::env::current_exe()?
        .parent()
        .context("bench directory")?
        .join("gc-archive");
    anyhow::ensure!(
        cli.exists(),
        "{} is missing: build it with `cargo build --profile bench-fast -p gc-archive-cli`",
        cli.display()
    );
    let mut env = stack.lambda_env("event-stream");
    env.insert("STREAM_GAP_SETTLE_SECS".into(), "0".into());
    env.insert("STREAM_GAP_MARGIN_SECS".into(), "5".into());
    let sink = match kind {
        SinkKind::Fast => {
            let (url, sink) = sqs_sink().await?;
            env.insert("AWS_ENDPOINT_URL_SQS".into(), url.clone());
            env.insert(
                "ARCHIVE_QUEUE_URL".into(),
                format!("{url}/123456789012/archive"),
            );
            Some(sink)
        }
        SinkKind::Moto => None,
    };
    let child = tokio::process::Command::new(&cli)
        .arg("stream")
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("daemon pid")?;
    while hub.open_sockets() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_before = process_cpu_secs(pid).unwrap_or(0.0);
    let conversations_per_second = f64::from(events_per_minute) / 2.0 / 60.0;
    let count = (conversations_per_second * 60.0 * minutes).round() as usize;
    println!(
        "sustained into {}: {events_per_minute} events/min ({conversations_per_second:.1} conversations/s, 2 events each) over {} queue topics for {minutes} min: {count} conversations",
        match kind { SinkKind::Fast => "the fast SQS endpoint", SinkKind::Moto => "moto's SQS" },
        args.queues,
    );
    let started = Instant::now();
    let generated = stack
        .sim
        .generate_conversations(GeneratorSpec {
            count,
            per_second: conversations_per_second,
            queue_ids: queues,
            duration_secs: 180,
            recording_bytes: 0,
        })
        .await?;
    let generated_in = started.elapsed();
    let arrived = |sink: &Option<std::sync::Arc<Sink>>| {
        sink.as_ref()
            .map(|s| s.bodies.lock().map(|b| b.len()).unwrap_or(0) as u64)
    };
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut depth = match arrived(&sink) {
        Some(n) => n,
        None => queue_depth(&stack).await?,
    };
    while depth < generated.len() as u64 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        depth = match arrived(&sink) {
            Some(n) => n,
            None => queue_depth(&stack).await?,
        };
    }
    let cpu = process_cpu_secs(pid).unwrap_or(0.0) - cpu_before;
    let rss = proc_status_kib_of(&pid.to_string(), "VmHWM").unwrap_or(0) as f64 / 1024.0;
    let wall = started.elapsed();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("daemon did not stop")??;
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).context("daemon report")?;
    let r = &runs[0];
    let events = r["conversationEvents"].as_f64().unwrap_or(0.0);
    let stats = hub.stats();
    println!(
        "  generated in {:.1} s; daemon received {events} conversation events ({:.1}/s), {} heartbeats; simulator lost {} (no socket)",
        generated_in.as_secs_f64(),
        events / generated_in.as_secs_f64(),
        r["heartbeats"],
        stats.lost
    );
    let twice = match &sink {
        Some(sink) => {
            let bodies = sink.bodies.lock().map(|b| b.clone()).unwrap_or_default();
            let ids: std::collections::BTreeSet<String> = bodies
                .iter()
                .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .filter_map(|v| v["conversationId"].as_str().map(str::to_string))
                .collect();
            format!(
                "{} distinct conversations, {} sent twice",
                ids.len(),
                bodies.len() - ids.len()
            )
        }
        None => "moto's ApproximateNumberOfMessages".into(),
    };
    println!(
        "  ArchiveQueue: {depth} messages for {} conversations ({twice}); daemon enqueued {}",
        generated.len(),
        r["enqueued"],
    );
    println!(
        "  lag end -> sent: p50 {} ms, p99 {} ms, max {} ms",
        r["lagP50Ms"], r["lagP99Ms"], r["lagMaxMs"]
    );
    println!(
        "  daemon CPU {cpu:.2} s over {:.1} s wall ({:.1} % of one core; {:.0} µs per event); peak RSS {rss:.1} MiB",
        wall.as_secs_f64(),
        100.0 * cpu / wall.as_secs_f64(),
        1e6 * cpu / events.max(1.0)
    );
    println!(
        "  reconnects {}, heartbeat misses {}",
        r["reconnects"], r["heartbeatMisses"]
    );
    Ok(())
}

async fn storm(args: &Args) -> anyhow::Result<()> {
    let (sim, queues) = gc_archive_it::stream_kit::simulator(1).await;
    let _ = queues;
    let genesys = gc_archive_it::transfer_kit::genesys_client(&sim);
    let store = MemoryStore::new("bench");
    let layout = ArchiveLayout::new("gc");
    let queue = RecordingQueue::default();
    let org = gc_archive::ids::OrgId::parse(sim.org_id())?;
    let deps = StreamDeps {
        genesys: &genesys,
        store: &store,
        layout: &layout,
        targets: &[],
        queue: &queue,
        org: &org,
    };
    let base = Duration::from_millis(50);
    let cap = Duration::from_secs(2);
    let settings = StreamSettings {
        reconnect_base: base,
        reconnect_cap: cap,
        breaker_failures: args.drops + 10,
        first_lookback: Duration::ZERO,
        gap_settle: Duration::from_secs(3600),
        holder: "storm".into(),
        ..StreamSettings::default()
    };
    let stop = CancellationToken::new();
    let hub = sim.notifications().clone();
    let drops = args.drops;
    let dropper = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut done = 0;
            while done < drops {
                if hub.open_sockets() > 0 {
                    hub.drop_sockets();
                    done += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            while hub.open_sockets() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.cancel();
        }
    });
    let started = Instant::now();
    let report = run(&deps, &settings, stop, None).await?;
    let took = started.elapsed();
    dropper.await?;
    let ratios: Vec<f64> = report
        .backoff_ms
        .iter()
        .enumerate()
        .map(|(i, wait)| {
            let n = (i as u32).min(16);
            let bound = base.saturating_mul(1 << n).min(cap).as_millis() as f64;
            *wait as f64 / bound
        })
        .collect();
    let max_ratio = ratios.iter().cloned().fold(0.0, f64::max);
    let mean_wait = report.backoff_ms.iter().sum::<u64>() as f64 / ratios.len().max(1) as f64;
    println!(
        "reconnect storm: {} drops right after connecting, base {:?}, cap {:?}: {} reconnects, {} waits, largest wait/bound {max_ratio:.3} (<= 1: within bounds), mean wait {mean_wait:.0} ms (full jitter at the cap: {} ms expected), storm took {:.1} s; simulator saw {} connections",
        args.drops,
        base,
        cap,
        report.reconnects.values().sum::<u32>(),
        report.backoff_ms.len(),
        cap.as_millis() / 2,
        took.as_secs_f64(),
        sim.notifications().stats().connections
    );

    // The default breaker against a server that refuses every connect.
    sim.notifications().refuse_connections(u32::MAX);
    let settings = StreamSettings {
        holder: "breaker".into(),
        first_lookback: Duration::ZERO,
        gap_settle: Duration::from_secs(3600),
        ..StreamSettings::default()
    };
    let started = Instant::now();
    let outcome = run(&deps, &settings, CancellationToken::new(), None).await;
    println!(
        "circuit breaker (defaults: {} failures, base {:?}, cap {:?}): opened after {:.1} s: {}",
        settings.breaker_failures,
        settings.reconnect_base,
        settings.reconnect_cap,
        started.elapsed().as_secs_f64(),
        match outcome {
            Err(e) => e.to_string(),
            Ok(_) => "did not open".into(),
        }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    print_machine(&machine());
    println!(
        "bench process RSS at start {:.1} MiB",
        proc_status_kib("VmRSS").unwrap_or(0) as f64 / 1024.0
    );
    if !args.storm_only {
        sustained(&args, SinkKind::Fast, args.events_per_minute, args.minutes).await?;
        if args.moto_events_per_minute > 0 {
            sustained(
                &args,
                SinkKind::Moto,
                args.moto_events_per_minute,
                args.moto_minutes,
            )
            .await?;
        }
    }
    storm(&args).await
}
