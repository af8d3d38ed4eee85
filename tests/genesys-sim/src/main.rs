//! `gc-sim`: run the Genesys Cloud API simulator from the command line.

use clap::Parser;
use genesys_sim::{SeedSpec, SimConfig, Simulator};

/// Genesys Cloud Platform API simulator (OAuth, recordings, signed media, analytics) with
/// fault injection via `POST /__sim/faults`.
#[derive(Parser, Debug)]
#[command(name = "gc-sim", version)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Conversations to generate.
    #[arg(long, default_value_t = 20)]
    conversations: usize,
    /// Spread conversation start times over the last N days.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
    #[arg(long, default_value = "sim-client")]
    client_id: String,
    #[arg(long, default_value = "sim-secret")]
    client_secret: String,
    /// Access token lifetime (seconds).
    #[arg(long, default_value_t = 86_400)]
    token_ttl: u64,
    /// Signed media URL lifetime (seconds).
    #[arg(long, default_value_t = 3_600)]
    url_ttl: u64,
    /// Ignore Range headers on media URLs (always 200 with the full body).
    #[arg(long)]
    ignore_range: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let a = Args::parse();
    let cfg = SimConfig {
        client_id: a.client_id,
        client_secret: a.client_secret,
        token_ttl_secs: a.token_ttl,
        media_url_ttl_secs: a.url_ttl,
        ignore_range: a.ignore_range,
        seed: Some(SeedSpec {
            conversations: a.conversations,
            days: a.days,
            rng_seed: a.rng_seed,
        }),
        ..SimConfig::default()
    };
    let sim = Simulator::start_on(cfg, std::net::SocketAddr::new(a.host, a.port)).await?;
    let base = sim.base_url();
    let convs = sim.conversations();
    let example = convs.iter().rev().find(|c| !c.recordings.is_empty());
    println!("Genesys Cloud simulator listening on {base}");
    println!("  API base and login base: {base}");
    println!("  client id:     {}", sim.client_id());
    println!("  client secret: {}", sim.client_secret());
    println!("  org id:        {}", sim.org_id());
    println!("  conversations: {}", convs.len());
    println!();
    println!("Examples:");
    println!(
        "  TOKEN=$(curl -s -u {}:{} -d grant_type=client_credentials {base}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')",
        sim.client_id(),
        sim.client_secret()
    );
    if let Some(c) = example {
        let r = &c.recordings[0];
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v2/conversations/{}/recordingmetadata",
            c.id
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/api/v2/conversations/{}/recordings/{}?formatId=NONE'",
            c.id, r.id
        );
        println!("  curl -s -r 0-1023 -o part.bin '<mediaUri from the previous answer>'   # Range request, 206");
    }
    println!("  curl -s {base}/__sim/conversations");
    println!(
        "  curl -s -X POST -H 'Content-Type: application/json' {base}/__sim/faults -d '{{\"target\":{{\"Media\":{{\"recording_id\":null}}}},\"fault\":{{\"Status\":{{\"status\":503,\"retry_after_secs\":2}}}},\"skip\":0,\"times\":1}}'"
    );
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
