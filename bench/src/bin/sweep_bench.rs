//! sweep-bench: how close the client's pacing (`genesys::throttle`) runs the analytics queries
//! of a sweep to the org's rate limit. The simulator enforces `--limit` requests per
//! `--window-secs` per token and answers 429 above it; the sweep's query pages
//! (`sweep::query_conversations` over `--days` days of seeded conversations) run from
//! `--tasks` concurrent tasks through one client. Prints requests per window achieved against
//! the limit (target ≥ 85 %) and the share answered 429 (target < 1 %).

#![forbid(unsafe_code)]

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use gc_archive_bench::{machine, print_machine};
use genesys_sim::{RateLimit, SeedSpec, SimConfig, Simulator};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Rate-limit utilisation of the sweep's analytics queries")]
struct Args {
    /// Requests allowed per window (Genesys: 300 per 60 s per OAuth client by default).
    #[arg(long, default_value_t = 60)]
    limit: u32,
    #[arg(long, default_value_t = 5)]
    window_secs: u64,
    /// Seeded conversations, spread over `--days` days.
    #[arg(long, default_value_t = 20_000)]
    conversations: usize,
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Concurrent query tasks, one day each at a time.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
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
        ..SimConfig::default()
    })
    .await?;
    let client = gc_archive_bench::simulator_client(&sim)?;
    let now = chrono::Utc::now();
    let days: Vec<_> = (0..args.days)
        .map(|d| {
            let end = now - chrono::Duration::days(i64::from(d));
            (end - chrono::Duration::days(1), end)
        })
        .collect();
    let started = Instant::now();
    let mut found = 0usize;
    for batch in days.chunks(args.tasks.max(1)) {
        let runs = batch.iter().map(|(from, to)| {
            let client = client.clone();
            let (from, to) = (*from, *to);
            async move {
                gc_archive::sweep::query_conversations(
                    &client,
                    from,
                    to,
                    gc_archive::sweep::MAX_ROWS_PER_QUERY,
                )
                .await
            }
        });
        for r in futures::future::join_all(runs).await {
            found += r.context("query")?.len();
        }
    }
    let elapsed = started.elapsed();
    let requests = sim.requests();
    let queries: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/details/query"))
        .collect();
    let refused = queries.iter().filter(|r| r.status == 429).count();
    let answered = queries.len() - refused;
    let windows = elapsed.as_secs_f64() / args.window_secs as f64;
    // Requests per second achieved against the limit's rate. A run of a few windows is
    // flattered by the first window's burst and penalised by its last, partial one.
    let utilisation = (answered as f64 / elapsed.as_secs_f64())
        / (f64::from(args.limit) / args.window_secs as f64);
    println!(
        "sweep-bench: {} conversations found over {} days; {} query requests ({} answered, {} refused with 429) in {:.1} s",
        found,
        args.days,
        queries.len(),
        answered,
        refused,
        elapsed.as_secs_f64()
    );
    println!(
        "limit {} per {} s ({:.0}/min): achieved {:.0}/min = {:.0} % of the limit over {:.1} windows (target >= 85 %); 429s {:.2} % (target < 1 %)",
        args.limit,
        args.window_secs,
        f64::from(args.limit) * 60.0 / args.window_secs as f64,
        answered as f64 * 60.0 / elapsed.as_secs_f64(),
        utilisation * 100.0,
        windows,
        refused as f64 * 100.0 / queries.len().max(1) as f64
    );
    println!(
        "{}",
        json!({
            "bench": "sweep-bench",
            "limit": args.limit,
            "window_secs": args.window_secs,
            "conversations_found": found,
            "requests": queries.len(),
            "refused_429": refused,
            "secs": elapsed.as_secs_f64(),
            "utilisation": utilisation,
        })
    );
    Ok(())
}
