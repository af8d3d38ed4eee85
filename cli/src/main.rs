//! `gc-archive`: the operator CLI. `demo` runs the whole pipeline on loopback (Genesys Cloud
//! simulator + moto); `archive` archives a conversation or one recording with the deployed
//! configuration (same environment variables as the Lambdas); `encrypt` / `decrypt` handle
//! archive objects; `verify` re-reads an archive and checks it against its manifest.

#![forbid(unsafe_code)]

mod crypt;
mod demo;
mod storage;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gc-archive",
    version,
    about = "Archive Genesys Cloud recordings into your S3, verified and encrypted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct KeyArgs {
    /// AWS KMS key id, ARN or alias/… that protects the data key.
    #[arg(long)]
    kms_key: Option<String>,
    /// Raw AES-256 key file (32 bytes or 64 hex characters); tests and air-gapped use.
    #[arg(long)]
    raw_key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Archive a seeded Genesys Cloud org end to end on loopback (simulator + moto), then
    /// decrypt one archive and compare it with the source.
    Demo(demo::DemoArgs),
    /// Archive one conversation's recordings (or one recording) using the environment's
    /// configuration (GENESYS_*, ARCHIVE_*, as the Lambdas).
    Archive {
        #[arg(long)]
        conversation: String,
        #[arg(long)]
        recording: Option<String>,
    },
    /// Sweep Genesys Cloud's analytics for ended conversations with recordings since the
    /// stored watermark and put every one without an archive on the ArchiveQueue
    /// (ARCHIVE_QUEUE_URL), as the scheduled sweep does. Prints the run's report as JSON.
    Sweep {
        /// Where the first run starts when no watermark exists yet (hours before now).
        #[arg(long, default_value_t = 24)]
        first_lookback_hours: u64,
        /// How far before the watermark each run looks again.
        #[arg(long, default_value_t = 60)]
        overlap_minutes: u64,
        /// How far behind now the sweep stays.
        #[arg(long, default_value_t = 5)]
        settle_minutes: u64,
    },
    /// Issue an upload-proxy ticket for one conversation's communication: prints the ticket
    /// (for the page: `{UploadProxyUrl}#ticket=<ticket>`). The key is the string of the
    /// secret UPLOAD_TICKET_SECRET_ID names (the stack's UploadTicketSecret), or
    /// UPLOAD_TICKET_KEY.
    UploadTicket {
        #[arg(long)]
        conversation: String,
        /// The communication the attachment is sent on (the agent's message communication).
        #[arg(long)]
        communication: String,
        /// Who it is for (rate limits and audit).
        #[arg(long, default_value = "cli")]
        subject: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
    /// Consume Genesys Cloud's Notifications API socket as a long-running service (systemd,
    /// ECS): every conversation end goes to the ArchiveQueue (ARCHIVE_QUEUE_URL), every
    /// interval without a socket is filled from analytics. SIGTERM or Ctrl-C: sends what is
    /// batched, saves the state, releases the channel, prints the report as JSON, exits 0.
    /// Settings as event-stream's (STREAM_* environment variables).
    Stream {
        /// Stop after this many seconds (default: until SIGTERM).
        #[arg(long)]
        seconds: Option<u64>,
        /// Wait this long after the reconnect circuit opened before starting again.
        #[arg(long, default_value_t = 60)]
        cool_off_secs: u64,
    },
    /// Enqueue every ended conversation with recordings that started in a range and has no
    /// archive, through Genesys Cloud's async analytics jobs (history of any age), one job per
    /// window; resumable (a re-run of the same range continues after the last finished
    /// window). Progress on stderr, the final state as JSON on stdout. Needs
    /// ARCHIVE_QUEUE_URL.
    Backfill {
        /// Range start: 2026-01-01 or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// Range end (exclusive), same forms.
        #[arg(long)]
        to: String,
        /// One analytics job per window of this many hours.
        #[arg(long, default_value_t = 24)]
        window_hours: u64,
    },
    /// Compare what Genesys Cloud lists for a window (conversations with recordings that
    /// started in it) with the manifests in S3; print every recording not archived (missing,
    /// pending, skipped) with the last audit outcome and reason. Exit 0 when nothing is
    /// missing, 2 when something is.
    Reconcile {
        /// Window start: 2026-11-01 or 2026-11-01T00:00:00Z.
        #[arg(long)]
        from: String,
        /// Window end (exclusive), same forms.
        #[arg(long)]
        to: String,
        /// Also write the whole report as JSON to this file.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Where each recording of a conversation goes by the routing rules (ROUTING_CONFIG), which
    /// rules it passed over and why, where it was recorded to go, and whether that target is
    /// compliant.
    Route {
        #[arg(long)]
        conversation: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a routing document (YAML or JSON) without deploying it: exit 1 naming the field
    /// or line of the first problem.
    ValidateRouting {
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Check every storage target's bucket (encryption, public access, versioning, Object
    /// Lock, TLS-only policy, multipart lifecycle, replication, a write/read/delete probe under
    /// _probe/); exit 1 when one fails a required check. Uses ARCHIVE_BUCKET, ARCHIVE_PREFIX
    /// and ROUTING_CONFIG.
    Compliance {
        /// Skip the write/read/delete probe.
        #[arg(long)]
        no_probe: bool,
        #[arg(long)]
        json: bool,
    },
    /// The audit report of a period (per target: archived, failed by reason, bytes, success
    /// rate, latency p50/p95/p99 and histogram, oldest unarchived): JSON, Markdown and HTML
    /// written under {prefix}/_reports/audit/, the Markdown printed.
    Report {
        /// Period start: 2026-11-01 or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// Period end (exclusive), same forms.
        #[arg(long)]
        to: String,
        /// Also write the three files to this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The Genesys Cloud side: the EventBridge integration, retention policies that delete
    /// too soon, the OAuth client's permissions. --check changes nothing; --apply creates or
    /// completes the integration (idempotent).
    Setup(storage::SetupArgs),
    /// Decrypt an archive object (file or s3://bucket/key) to a file or stdout (-).
    Decrypt {
        #[arg(long = "in")]
        input: String,
        #[arg(long = "out")]
        output: String,
        #[command(flatten)]
        key: KeyArgs,
        /// Required encryption context entries (key=value), e.g. recordingId=…
        #[arg(long = "context")]
        context: Vec<String>,
    },
    /// Re-read an archive and check it against its manifest (S3 checksum, size, authenticated
    /// decryption with the manifest's encryption context, plaintext SHA-256). Exit 1 on any
    /// problem.
    Verify {
        /// s3://bucket/…/{recordingId}.manifest.json
        #[arg(long)]
        manifest: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Encrypt a file (or s3://…) into the archive format.
    Encrypt {
        #[arg(long = "in")]
        input: String,
        #[arg(long = "out")]
        output: String,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long = "context")]
        context: Vec<String>,
        #[arg(long, default_value_t = gc_archive::crypto::DEFAULT_FRAME_LEN)]
        frame_len: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(gc_archive::logging::filter(
            &std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Archive {
            conversation,
            recording,
        } => archive(conversation, recording).await,
        Command::Reconcile { from, to, out } => reconcile(&from, &to, out).await,
        Command::Route { conversation, json } => storage::route(&conversation, json).await,
        Command::ValidateRouting { file } => storage::validate_routing(&file),
        Command::Compliance { no_probe, json } => storage::compliance(!no_probe, json).await,
        Command::Report { from, to, out } => {
            storage::report(parse_instant(&from)?, parse_instant(&to)?, out).await
        }
        Command::Setup(args) => storage::setup(args).await,
        Command::Backfill {
            from,
            to,
            window_hours,
        } => backfill(&from, &to, window_hours).await,
        Command::Sweep {
            first_lookback_hours,
            overlap_minutes,
            settle_minutes,
        } => {
            sweep(gc_archive::sweep::SweepSettings {
                first_lookback: std::time::Duration::from_secs(first_lookback_hours * 3600),
                overlap: std::time::Duration::from_secs(overlap_minutes * 60),
                settle: std::time::Duration::from_secs(settle_minutes * 60),
                ..Default::default()
            })
            .await
        }
        Command::Stream {
            seconds,
            cool_off_secs,
        } => stream(seconds, cool_off_secs).await,
        Command::UploadTicket {
            conversation,
            communication,
            subject,
            ttl_secs,
        } => {
            use gc_archive::upload::ticket;
            let secret = match (
                std::env::var("UPLOAD_TICKET_SECRET_ID").ok(),
                std::env::var("UPLOAD_TICKET_KEY").ok(),
            ) {
                (Some(id), _) => {
                    let sdk =
                        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                    aws_sdk_secretsmanager::Client::new(&sdk)
                        .get_secret_value()
                        .secret_id(&id)
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("{id}: {}", gc_archive::config::aws_error_summary(&e))
                        })?
                        .secret_string()
                        .unwrap_or_default()
                        .to_string()
                }
                (None, Some(key)) => key,
                (None, None) => anyhow::bail!("set UPLOAD_TICKET_SECRET_ID (or UPLOAD_TICKET_KEY)"),
            };
            let key = ticket::TicketKey::new(secret.as_bytes())?;
            let grant = ticket::Grant {
                conversation: gc_archive::ids::ConversationId::parse(conversation)?,
                communication,
                sub: subject,
                exp: chrono::Utc::now().timestamp() + ttl_secs.max(1),
            };
            println!("{}", ticket::issue(&key, &grant));
            Ok(())
        }
        Command::Decrypt {
            input,
            output,
            key,
            context,
        } => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let keyring = crypt::keyring(&key, &sdk).await?;
            let required = crypt::parse_context(&context)?;
            let info = crypt::decrypt(&input, &output, keyring, required, &sdk).await?;
            eprintln!(
                "decrypted {} bytes; encryption context {}",
                info.plaintext_len,
                serde_json::to_string(info.context.as_map())?
            );
            Ok(())
        }
        Command::Verify { manifest, key } => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let keyring = crypt::keyring(&key, &sdk).await?;
            let (bucket, manifest_key) = manifest
                .strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .context("--manifest must be s3://bucket/key")?;
            let s3 = gc_archive::bootstrap::s3_client(&sdk, &std::env::vars().collect());
            let report =
                gc_archive::verify::verify_archive(&s3, bucket, manifest_key, keyring).await?;
            if report.ok() {
                println!(
                    "OK s3://{bucket}/{}: {} bytes, sha256 {}",
                    report.object_key, report.plaintext_size, report.plaintext_sha256
                );
                Ok(())
            } else {
                for p in &report.problems {
                    eprintln!("FAIL s3://{bucket}/{}: {p}", report.object_key);
                }
                std::process::exit(1);
            }
        }
        Command::Encrypt {
            input,
            output,
            key,
            context,
            frame_len,
        } => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let keyring = crypt::keyring(&key, &sdk).await?;
            let ctx = crypt::parse_context(&context)?;
            let n = crypt::encrypt(&input, &output, keyring, ctx, frame_len, &sdk).await?;
            eprintln!("wrote {n} ciphertext bytes");
            Ok(())
        }
    }
}

/// Exit codes of `gc-archive archive`, so scripts can tell the outcomes apart.
mod exit {
    /// Everything is archived (or was already).
    pub const ARCHIVED: i32 = 0;
    /// Something must wait (transcoding, a batch job, another worker's lease): run again later.
    pub const TRY_LATER: i32 = 75;
    /// A recording was refused for good (see the reason); running again does not help.
    pub const REFUSED: i32 = 65;
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time.
fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 time"))?;
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

async fn reconcile(from: &str, to: &str, out: Option<std::path::PathBuf>) -> Result<()> {
    use gc_archive::reconcile::{reconcile, ReconcileDeps};
    let (from, to) = (parse_instant(from)?, parse_instant(to)?);
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = gc_archive::bootstrap::handler_deps("cli", &env, &sdk).await?;
    let report = reconcile(
        &ReconcileDeps::of(&deps.service),
        from,
        to,
        chrono::Utc::now(),
    )
    .await?;
    println!(
        "{from} .. {to}: {} conversations, {} recordings: {} archived, {} missing, {} pending, {} skipped",
        report.conversations, report.recordings, report.archived, report.missing, report.pending, report.skipped
    );
    for u in &report.unarchived {
        println!(
            "  {:?} conversation {} recording {} ({}): {}",
            u.status,
            u.conversation_id,
            u.recording_id.as_deref().unwrap_or("-"),
            u.media.as_deref().unwrap_or("-"),
            u.reason.as_deref().unwrap_or("-")
        );
    }
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.complete() {
        std::process::exit(2);
    }
    Ok(())
}

async fn backfill(from: &str, to: &str, window_hours: u64) -> Result<()> {
    let (from, to) = (parse_instant(from)?, parse_instant(to)?);
    let runtime = sweep_environment().await?;
    let started = std::time::Instant::now();
    let state = gc_archive::sweep::backfill(
        &runtime.sweep_deps(),
        from,
        to,
        std::time::Duration::from_secs(window_hours.max(1) * 3600),
        None,
        |p| {
            // Rate and ETA from this run's windows (a resumed run skips the finished ones).
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let rate = p.state.conversations_seen as f64 / secs;
            let eta = secs / p.window as f64 * (p.windows - p.window) as f64;
            eprintln!(
                "[{}/{}] {} .. {}: {} conversations seen, {} enqueued, {} already archived ({rate:.0}/s, ETA {eta:.0} s)",
                p.window,
                p.windows,
                p.window_start.format("%Y-%m-%d %H:%M"),
                p.window_end.format("%Y-%m-%d %H:%M"),
                p.state.conversations_seen,
                p.state.enqueued,
                p.state.already_archived
            );
        },
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}

/// recording-sweep's runtime from the environment (the functions' configuration plus
/// `ARCHIVE_QUEUE_URL`), as the Lambda builds it, with the org's rate limit read.
async fn sweep_environment() -> Result<gc_archive::handlers::recording_sweep::SweepRuntime> {
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = gc_archive::bootstrap::sweep_runtime(&env, &sdk).await?;
    runtime.genesys.prime_rate_limit().await;
    Ok(runtime)
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
fn stop_on_signals(stop: tokio_util::sync::CancellationToken) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("stopping: sending what is batched and saving the stream state");
        stop.cancel();
    });
    Ok(())
}

async fn stream(seconds: Option<u64>, cool_off_secs: u64) -> Result<()> {
    use gc_archive::retry::Retryable;
    use gc_archive::stream::{run, StreamError, StreamReport};
    use tokio::time::{Duration, Instant};
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = gc_archive::bootstrap::stream_runtime(&env, &sdk).await?;
    runtime.genesys.prime_rate_limit().await;
    let stop = tokio_util::sync::CancellationToken::new();
    stop_on_signals(stop.clone())?;
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let deps = runtime.deps();
    let mut runs: Vec<StreamReport> = Vec::new();
    // A daemon outlives what stops one run: an open circuit or another holder's lease waits
    // and starts again; a deployment fault (rejected topics, credentials) ends the process.
    while !stop.is_cancelled() && deadline.is_none_or(|d| Instant::now() < d) {
        let wait = match run(&deps, &runtime.settings, stop.clone(), deadline).await {
            Ok(report) => {
                runs.push(report);
                continue;
            }
            Err(
                e @ (StreamError::CircuitOpen { .. }
                | StreamError::Busy { .. }
                | StreamError::Superseded { .. }),
            ) => {
                eprintln!("{e}; starting again in {cool_off_secs} s");
                Duration::from_secs(cool_off_secs)
            }
            Err(e) if e.is_transient() => {
                eprintln!("{e}; starting again in {cool_off_secs} s");
                Duration::from_secs(cool_off_secs)
            }
            Err(e) => return Err(e.into()),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {}
        }
    }
    println!("{}", serde_json::to_string_pretty(&runs)?);
    Ok(())
}

async fn sweep(settings: gc_archive::sweep::SweepSettings) -> Result<()> {
    let runtime = sweep_environment().await?;
    let report =
        gc_archive::sweep::sweep_once(&runtime.sweep_deps(), &settings, chrono::Utc::now()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn archive(conversation: String, recording: Option<String>) -> Result<()> {
    use gc_archive::config::RecordingMedia;
    use gc_archive::ids::{ConversationId, RecordingId};
    use gc_archive::pipeline::ArchiveReport;
    use gc_archive::retry::Retryable;
    use gc_archive::transfer::TransferError;
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = gc_archive::bootstrap::handler_deps("cli", &env, &sdk).await?;
    let conversation = ConversationId::parse(conversation)?;
    let worker = format!("cli-{}", std::process::id());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(6 * 3600);
    match recording {
        Some(r) => {
            let r = RecordingId::parse(r)?;
            let media = deps
                .service
                .genesys
                .recording_metadata(&conversation)
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|m| m.id == r.as_str()))
                .and_then(|m| RecordingMedia::from_api(m.media.as_deref()))
                .unwrap_or(RecordingMedia::Audio);
            match deps
                .service
                .archive(
                    &conversation,
                    &r,
                    media,
                    Default::default(),
                    Some(deadline),
                    &worker,
                )
                .await
            {
                Ok(ArchiveReport::Archived { manifests }) => {
                    for m in &manifests {
                        println!(
                            "archived s3://{}/{} ({} bytes, sha256 {})",
                            m.bucket, m.object_key, m.plaintext.size, m.plaintext.sha256
                        );
                    }
                }
                Ok(ArchiveReport::AlreadyArchived { manifest_keys }) => {
                    for k in &manifest_keys {
                        println!("already archived: {k}");
                    }
                }
                Ok(ArchiveReport::Suspended {
                    parts_done,
                    parts_total,
                }) => {
                    eprintln!("suspended after {parts_done}/{parts_total} parts (checkpoint saved): run again to continue");
                    std::process::exit(exit::TRY_LATER);
                }
                Err(TransferError::Busy { until }) => {
                    eprintln!("busy: another worker owns this transfer until {until}; run again after that");
                    std::process::exit(exit::TRY_LATER);
                }
                Err(e @ TransferError::NotReady { .. }) => {
                    eprintln!("not ready: {e}; run again later");
                    std::process::exit(exit::TRY_LATER);
                }
                Err(e) if e.is_transient() => {
                    eprintln!("failed for now ({}): {e}; run again later", e.reason_code());
                    std::process::exit(exit::TRY_LATER);
                }
                Err(e) if e.is_infrastructure() => {
                    anyhow::bail!("infrastructure ({}): {e}; nothing was discarded, fix the configuration and run again", e.reason_code());
                }
                Err(e) => {
                    eprintln!("refused ({}): {e}", e.reason_code());
                    std::process::exit(exit::REFUSED);
                }
            }
        }
        None => {
            let (tally, retry) = gc_archive::handlers::process_conversation(
                &deps,
                &conversation,
                std::time::Duration::ZERO,
                deadline,
                &worker,
            )
            .await
            .with_context(|| format!("archiving conversation {conversation}"))?;
            println!("{tally:#?}");
            if let Some(reason) = retry {
                eprintln!("not finished: {reason}; run again later");
                std::process::exit(exit::TRY_LATER);
            }
            if tally.failed > 0 {
                eprintln!(
                    "{} recording(s) refused: see the reasons above and in the audit records",
                    tally.failed
                );
                std::process::exit(exit::REFUSED);
            }
        }
    }
    std::process::exit(exit::ARCHIVED)
}
