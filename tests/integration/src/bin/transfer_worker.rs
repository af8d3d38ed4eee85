//! One transfer worker as its own process, so a test can SIGKILL it anywhere: it runs
//! [`transfer_recording`] for one recording against the Genesys simulator and moto, built the
//! way [`gc_archive_it::transfer_kit::Kit`] builds its dependencies, and exits 0 once the
//! recording is archived.
//!
//! A checkpoint owned by a worker that died is busy until its lease runs out; like an SQS
//! redelivery, this worker then waits for the lease and tries again.
//!
//! Configuration (environment):
//! * `GCA_SIM_URL`, `GCA_CLIENT_ID`, `GCA_CLIENT_SECRET`: the simulator and its OAuth client.
//! * `GCA_ORG_ID`, `GCA_CONVERSATION_ID`, `GCA_RECORDING_ID`: the recording.
//! * `GCA_S3_ENDPOINT`, `GCA_BUCKET`; `GCA_KMS_ENDPOINT` (default: the S3 endpoint).
//! * `GCA_KMS_KEY_ARN`, or `GCA_RAW_KEY_HEX` (64 hex digits) for the kit's raw AES keyring.
//! * `GCA_WORKER_ID`; optional `GCA_CHUNK_SIZE` (bytes), `GCA_LEASE_MS`, `GCA_FETCH_CONCURRENCY`,
//!   `GCA_UPLOADS_IN_FLIGHT`, `GCA_BUSY_RETRIES`.
//!
//! Output: one line per step on stdout (`started`, `busy until …`, `archived …`). Exit codes:
//! 0 archived, 3 already archived, 4 suspended, 1 any other outcome, 2 bad configuration.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::{BehaviorVersion, Region};
use gc_archive::config::{GenesysCredentials, MediaFormat, RecordingMedia};
use gc_archive::crypto::{Keyring, KmsKeyring, RawAesKeyring};
use gc_archive::genesys::GenesysClient;
use gc_archive::retry::{RetryPolicy, Retryable};
use gc_archive::store::{ArchiveLayout, S3Store};
use gc_archive::transfer::engine::{TransferDeps, TransferJob, TransferSettings};
use gc_archive::transfer::{transfer_recording, TransferError, TransferOutcome};
use gc_archive::{ConversationId, OrgId, RecordingId};
use gc_archive_it::moto::{ACCESS_KEY, REGION, SECRET_KEY};
use gc_archive_it::transfer_kit::{
    CONVERSATION_START, PREFIX, RAW_NAME, RAW_NAMESPACE, SMALL_CHUNK, SMALL_FRAME,
};

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not a number: {e}")),
        Err(_) => Ok(default),
    }
}

struct Config {
    deps: TransferDeps,
    job: TransferJob,
    settings: TransferSettings,
    busy_retries: u32,
}

async fn config() -> anyhow::Result<Config> {
    let sim: url::Url = var("GCA_SIM_URL")?.parse().context("GCA_SIM_URL")?;
    let genesys = GenesysClient::with_http(
        gc_archive::genesys::client::http_client(Duration::from_secs(10))?,
        &sim,
        &sim,
        GenesysCredentials {
            client_id: var("GCA_CLIENT_ID")?,
            client_secret: var("GCA_CLIENT_SECRET")?.into(),
        },
        RetryPolicy::default().with_base_delay(Duration::from_millis(5)),
    );
    let s3_endpoint = var("GCA_S3_ENDPOINT")?;
    let kms_endpoint = std::env::var("GCA_KMS_ENDPOINT").unwrap_or_else(|_| s3_endpoint.clone());
    let sdk = |endpoint: String| {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "moto",
            ))
            .load()
    };
    let s3_conf = aws_sdk_s3::config::Builder::from(&sdk(s3_endpoint).await)
        .force_path_style(true)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_conf);
    let store = Arc::new(S3Store::new(s3, var("GCA_BUCKET")?));

    let (keyring, key_providers): (Arc<dyn Keyring>, Vec<String>) = match (
        std::env::var("GCA_KMS_KEY_ARN"),
        std::env::var("GCA_RAW_KEY_HEX"),
    ) {
        (Ok(arn), _) => {
            let kms = aws_sdk_kms::Client::new(&sdk(kms_endpoint).await);
            (
                Arc::new(KmsKeyring::new(kms, arn.clone())),
                vec![format!("aws-kms:{arn}")],
            )
        }
        (Err(_), Ok(raw)) => {
            let key: [u8; 32] = hex::decode(raw.trim())
                .context("GCA_RAW_KEY_HEX is not hex")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("GCA_RAW_KEY_HEX is not 32 bytes"))?;
            (
                Arc::new(RawAesKeyring::new(RAW_NAMESPACE, RAW_NAME, key)?),
                vec![format!("{RAW_NAMESPACE}/{RAW_NAME}")],
            )
        }
        (Err(_), Err(_)) => bail!("set GCA_KMS_KEY_ARN or GCA_RAW_KEY_HEX"),
    };

    let job = TransferJob {
        org: OrgId::parse(var("GCA_ORG_ID")?)?,
        conversation: ConversationId::parse(var("GCA_CONVERSATION_ID")?)?,
        recording: RecordingId::parse(var("GCA_RECORDING_ID")?)?,
        conversation_start: CONVERSATION_START
            .parse()
            .context("the kit's conversation start")?,
        participants: Vec::new(),
        media: RecordingMedia::Audio,
        media_key: None,
        route: None,
    };
    let settings = TransferSettings {
        layout: ArchiveLayout::new(PREFIX),
        media_format: MediaFormat::Original,
        chunk_size: number("GCA_CHUNK_SIZE", SMALL_CHUNK)?,
        fetch_concurrency: number("GCA_FETCH_CONCURRENCY", 3)?,
        uploads_in_flight: number("GCA_UPLOADS_IN_FLIGHT", 2)?,
        frame_len: SMALL_FRAME,
        lease: Duration::from_millis(number("GCA_LEASE_MS", 3000)?),
        suspend_margin: Duration::ZERO,
        worker_id: var("GCA_WORKER_ID")?,
        key_providers,
        max_bytes: None,
    };
    Ok(Config {
        deps: TransferDeps {
            genesys,
            store,
            keyring,
        },
        job,
        settings,
        busy_retries: number("GCA_BUSY_RETRIES", 20)?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = match config().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transfer_worker: {e:#}");
            return ExitCode::from(2);
        }
    };
    let me = cfg.settings.worker_id.clone();
    println!("worker {me}: started pid={}", std::process::id());
    let mut busy = 0;
    loop {
        match transfer_recording(&cfg.deps, &cfg.job, &cfg.settings, None).await {
            Ok(TransferOutcome::Archived(m)) => {
                println!(
                    "worker {me}: archived {} parts={} invocations={}",
                    m.object_key, m.ciphertext.parts, m.timings.invocations
                );
                return ExitCode::SUCCESS;
            }
            Ok(TransferOutcome::AlreadyArchived { manifest_key }) => {
                println!("worker {me}: already archived {manifest_key}");
                return ExitCode::from(3);
            }
            Ok(TransferOutcome::Suspended { parts_done, .. }) => {
                println!("worker {me}: suspended after {parts_done} parts");
                return ExitCode::from(4);
            }
            Err(TransferError::Busy { until }) if busy < cfg.busy_retries => {
                busy += 1;
                println!("worker {me}: busy until {until}; waiting for the lease");
                let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait + Duration::from_millis(100)).await;
            }
            Err(e) => {
                let kind = if e.is_transient() {
                    "transient"
                } else {
                    "permanent"
                };
                eprintln!("worker {me}: {kind} error: {e}");
                return ExitCode::from(1);
            }
        }
    }
}
