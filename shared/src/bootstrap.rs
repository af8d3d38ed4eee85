//! Builds a function's dependencies once per process (cold start) from the environment and the
//! AWS SDK configuration: config, credentials from Secrets Manager, the Genesys client, the S3
//! store, the keyring, notifications and queues. Reused across warm invocations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{
    aws_error_summary, resolve_credentials, Config, ConfigError, CredentialsError, KeySource,
};
use crate::crypto::{Keyring, KmsKeyring, RawAesKeyring};
use crate::genesys::{GenesysClient, GenesysError};
use crate::handlers::{EventPolicy, HandlerDeps};
use crate::notify::{Notifier, Webhook};
use crate::pipeline::ArchiveService;
use crate::queue::SqsQueues;
use crate::store::S3Store;
use crate::transfer::TransferSettings;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Genesys(#[from] GenesysError),
    #[error("archive key: {0}")]
    Key(String),
    #[error("webhook: {0}")]
    Webhook(String),
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("ROUTING_CONFIG {source_name}: {reason}")]
    Routing { source_name: String, reason: String },
}

/// Namespace and name of the raw AES wrapping key in ESDK terms (keyring provider id/info).
pub const RAW_KEY_NAMESPACE: &str = "gc-archive";
pub const RAW_KEY_NAME: &str = "raw-aes-256";

/// Reads a raw AES-256 key file: 32 raw bytes, or 64 hex characters (whitespace ignored).
pub fn load_raw_key(path: &str) -> Result<[u8; 32], InitError> {
    let bytes = std::fs::read(path).map_err(|e| InitError::Key(format!("{path}: {e}")))?;
    if bytes.len() == 32 {
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        return Ok(k);
    }
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let decoded = hex::decode(&text)
        .map_err(|_| InitError::Key(format!("{path}: not 32 bytes or 64 hex characters")))?;
    <[u8; 32]>::try_from(decoded.as_slice())
        .map_err(|_| InitError::Key(format!("{path}: key must be 256 bits")))
}

/// The keyring for a key source.
pub fn keyring_for(
    source: &KeySource,
    kms: aws_sdk_kms::Client,
) -> Result<Arc<dyn Keyring>, InitError> {
    Ok(match source {
        KeySource::Kms { key_id } => Arc::new(KmsKeyring::new(kms, key_id.clone())),
        KeySource::RawKeyFile { path } => Arc::new(
            RawAesKeyring::new(RAW_KEY_NAMESPACE, RAW_KEY_NAME, load_raw_key(path)?)
                .map_err(|e| InitError::Key(e.to_string()))?,
        ),
    })
}

fn get<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn secs(env: &HashMap<String, String>, key: &str, default: u64) -> Duration {
    Duration::from_secs(
        get(env, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// An S3 client; `ARCHIVE_S3_FORCE_PATH_STYLE=true` for S3-compatible endpoints (moto).
pub fn s3_client(sdk: &aws_config::SdkConfig, env: &HashMap<String, String>) -> aws_sdk_s3::Client {
    let path_style = get(env, "ARCHIVE_S3_FORCE_PATH_STYLE") == Some("true");
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        // Archives are multipart objects with composite checksums, which the SDK cannot
        // validate on GET; integrity is checked by decryption and the manifest instead.
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Everything a handler needs, built from `env` (the process environment in Lambda).
pub async fn handler_deps(
    function: &str,
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<HandlerDeps, InitError> {
    let config = Config::from_map(env)?;
    // aws-lc's CPU detection and RNG seeding (tens of ms) belong to the init phase, not to the
    // first invocation's first encryption.
    crate::crypto::warm_up().map_err(|e| InitError::Key(format!("crypto warm-up: {e}")))?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let credentials = resolve_credentials(&config.genesys.credentials, &secrets).await?;
    let genesys = GenesysClient::new(&config.genesys, credentials)?;
    let keyring = keyring_for(&config.archive.key_source, aws_sdk_kms::Client::new(sdk))?;
    let store = Arc::new(S3Store::new(
        s3_client(sdk, env),
        config.archive.bucket.clone(),
    ));

    let mut notifier = Notifier::default();
    if let Some(bus) = get(env, "RESULT_EVENT_BUS") {
        notifier.eventbridge = Some((aws_sdk_eventbridge::Client::new(sdk), bus.to_string()));
    }
    if let Some(url) = get(env, "WEBHOOK_URL") {
        let url =
            url::Url::parse(url).map_err(|e| InitError::Webhook(format!("WEBHOOK_URL: {e}")))?;
        let secret_id = get(env, "WEBHOOK_SECRET_ID").ok_or_else(|| {
            InitError::Webhook("WEBHOOK_SECRET_ID is required with WEBHOOK_URL".into())
        })?;
        let out = secrets
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| InitError::Webhook(format!("{secret_id}: {}", aws_error_summary(&e))))?;
        let secret = out
            .secret_string()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| InitError::Webhook(format!("{secret_id} has no string value")))?;
        notifier.webhook = Some(Webhook {
            url,
            secret: SecretString::from(secret.to_string()),
        });
        notifier.http = Some(genesys.http().clone());
    }

    let mut settings =
        TransferSettings::from_config(&config.archive, &config.genesys.media_format, function);
    if function == "archive-on-event" {
        // Small recordings inline; larger ones go to chunk-recording through the TransferQueue.
        settings.max_bytes = Some(
            get(env, "ARCHIVE_INLINE_MAX_MIB")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(64)
                * 1024
                * 1024,
        );
    }
    let routes = route_table(env, sdk, &config.archive.key_source).await?;
    let service = ArchiveService {
        org: config.genesys.org_id.clone(),
        genesys,
        store,
        keyring,
        routes,
        settings,
        write_back: config.archive.write_back,
        external_tag_policy: config.archive.external_tag_policy,
        custom_attributes_schema_id: config.archive.custom_attributes_schema_id.clone(),
        media: config.archive.media.clone(),
        notifier,
        function: function.to_string(),
    };
    let transfer_queue = get(env, "TRANSFER_QUEUE_URL").map(str::to_string);
    let queues = Arc::new(SqsQueues::new(
        aws_sdk_sqs::Client::new(sdk),
        transfer_queue.clone(),
        get(env, "DEAD_LETTER_QUEUE_URL").map(str::to_string),
        get(env, "SOURCE_QUEUE_URL").map(str::to_string),
    ));
    let policy = EventPolicy {
        retry_base: secs(env, "ARCHIVE_RETRY_BASE_SECS", 30),
        pending_horizon: secs(env, "ARCHIVE_PENDING_HORIZON_SECS", 24 * 3600),
        // The CLI has no Lambda deadline to beat: it archives inline whatever the size.
        inline_budget: secs(
            env,
            "ARCHIVE_INLINE_BUDGET_SECS",
            if function == "cli" { 6 * 3600 } else { 120 },
        ),
        empty_horizon: secs(env, "ARCHIVE_EMPTY_HORIZON_SECS", 15 * 60),
        max_receives: get(env, "MAX_RECEIVE_COUNT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        can_hand_off: transfer_queue.is_some(),
    };
    Ok(HandlerDeps {
        service,
        queues,
        policy,
    })
}

/// The configuration and a Genesys client from `env` alone (the CLI's `setup`): no AWS
/// resource is touched except the credentials secret when one is configured.
pub async fn genesys_from_env(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<(Config, GenesysClient), InitError> {
    let config = Config::from_map(env)?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let credentials = resolve_credentials(&config.genesys.credentials, &secrets).await?;
    let genesys = GenesysClient::new(&config.genesys, credentials)?;
    Ok((config, genesys))
}

/// Where a routing document is kept (`ROUTING_CONFIG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingSource {
    /// `s3://bucket/key`
    S3 { bucket: String, key: String },
    /// `ssm:/parameter/name` (String or SecureString)
    Ssm { name: String },
    /// `file:/path` (the CLI and the demo)
    File { path: String },
}

impl RoutingSource {
    pub fn parse(value: &str) -> Result<RoutingSource, String> {
        if let Some(rest) = value.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(RoutingSource::S3 {
                        bucket: bucket.into(),
                        key: key.into(),
                    })
                }
                _ => Err(
                    "an s3:// source needs a bucket and a key (s3://bucket/routing.yaml)".into(),
                ),
            };
        }
        if let Some(name) = value.strip_prefix("ssm:") {
            return if name.is_empty() {
                Err("an ssm: source needs a parameter name (ssm:/gc-archive/routing)".into())
            } else {
                Ok(RoutingSource::Ssm { name: name.into() })
            };
        }
        if let Some(path) = value.strip_prefix("file:") {
            return Ok(RoutingSource::File { path: path.into() });
        }
        Err("is not s3://bucket/key, ssm:/name or file:/path".into())
    }

    /// The document's text and a name with its version (`s3://b/k#etag`, `ssm:/p#3`).
    pub async fn read(
        &self,
        sdk: &aws_config::SdkConfig,
        env: &HashMap<String, String>,
    ) -> Result<(String, String), String> {
        match self {
            RoutingSource::S3 { bucket, key } => {
                let out = s3_client(sdk, env)
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| aws_error_summary(&e))?;
                let etag = out
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string();
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_bytes();
                let text =
                    String::from_utf8(bytes.to_vec()).map_err(|_| "is not UTF-8".to_string())?;
                Ok((text, format!("s3://{bucket}/{key}#{etag}")))
            }
            RoutingSource::Ssm { name } => {
                let out = aws_sdk_ssm::Client::new(sdk)
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| aws_error_summary(&e))?;
                let p = out.parameter().ok_or("has no value")?;
                Ok((
                    p.value().unwrap_or_default().to_string(),
                    format!("ssm:{name}#{}", p.version()),
                ))
            }
            RoutingSource::File { path } => std::fs::read_to_string(path)
                .map(|t| (t, format!("file:{path}")))
                .map_err(|e| e.to_string()),
        }
    }
}

/// The routing document `ROUTING_CONFIG` names, read and validated; None when it is unset.
pub async fn routing_config(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Option<(crate::routing::RoutingConfig, String)>, InitError> {
    let Some(value) = get(env, "ROUTING_CONFIG") else {
        return Ok(None);
    };
    let fail = |reason: String| InitError::Routing {
        source_name: value.to_string(),
        reason,
    };
    let source = RoutingSource::parse(value).map_err(fail)?;
    let (text, version) = source.read(sdk, env).await.map_err(fail)?;
    let config =
        crate::routing::RoutingConfig::from_document(&text).map_err(|e| fail(e.to_string()))?;
    Ok(Some((config, version)))
}

/// Where the routing targets keep their archives (for finding manifests only: no keyrings,
/// no compliance); empty without `ROUTING_CONFIG`.
pub async fn target_locations(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Vec<crate::store::ArchiveLocation>, InitError> {
    let Some((config, _)) = routing_config(env, sdk).await? else {
        return Ok(Vec::new());
    };
    let mut seen = std::collections::BTreeSet::new();
    Ok(config
        .targets
        .values()
        .filter(|t| seen.insert((t.bucket.clone(), t.prefix.clone())))
        .map(|t| crate::store::ArchiveLocation {
            store: Arc::new(S3Store::new(
                s3_client(&regional_sdk(sdk, t.region.as_deref()), env),
                t.bucket.clone(),
            )),
            layout: crate::store::ArchiveLayout::new(&t.prefix),
        })
        .collect())
}

fn regional_sdk(sdk: &aws_config::SdkConfig, region: Option<&str>) -> aws_config::SdkConfig {
    match region {
        Some(r) => sdk
            .to_builder()
            .region(aws_config::Region::new(r.to_string()))
            .build(),
        None => sdk.clone(),
    }
}

/// The route table of `ROUTING_CONFIG` (None when unset): one S3 store per target (in the
/// target's region, Object Lock for worm targets), its own KMS keyring when it names a key.
pub async fn route_table(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
    key_source: &KeySource,
) -> Result<Option<Arc<crate::routing::table::RouteTable>>, InitError> {
    let Some((config, version)) = routing_config(env, sdk).await? else {
        return Ok(None);
    };
    let home_keyring = keyring_for(key_source, aws_sdk_kms::Client::new(sdk))?;
    let home_providers = vec![key_source.provider_name()];
    let mut destinations = Vec::new();
    for (name, target) in &config.targets {
        let regional = regional_sdk(sdk, target.region.as_deref());
        let sdk_for = &regional;
        let mut store = S3Store::new(s3_client(sdk_for, env), target.bucket.clone());
        if target.worm {
            store =
                store.with_object_lock(target.object_lock_mode, target.retention_days.unwrap_or(1));
        }
        let (keyring, key_providers) = match &target.kms_key_id {
            None => (home_keyring.clone(), home_providers.clone()),
            Some(key_id) => {
                if matches!(key_source, KeySource::RawKeyFile { .. }) {
                    return Err(InitError::Routing {
                        source_name: version.clone(),
                        reason: format!("targets.{name}.kmsKeyId needs ARCHIVE_KMS_KEY_ID (a KMS deployment), not a raw key file"),
                    });
                }
                let source = KeySource::Kms {
                    key_id: key_id.clone(),
                };
                (
                    keyring_for(&source, aws_sdk_kms::Client::new(sdk_for))?,
                    vec![source.provider_name()],
                )
            }
        };
        destinations.push(crate::routing::table::Destination {
            name: name.clone(),
            target: target.clone(),
            store: Arc::new(store),
            layout: crate::store::ArchiveLayout::new(&target.prefix),
            keyring,
            key_providers,
        });
    }
    let inspector = Arc::new(crate::compliance::S3Inspector {
        client: s3_client(sdk, env),
        replication: false,
    });
    let table =
        crate::routing::table::RouteTable::new(config, version.clone(), destinations, inspector)
            .map_err(|e| InitError::Routing {
                source_name: version,
                reason: e.to_string(),
            })?;
    Ok(Some(Arc::new(table)))
}

/// storage-router's dependencies: the deployment's bucket (ARCHIVE_BUCKET, ARCHIVE_PREFIX)
/// and the storage targets of `ROUTING_CONFIG` (or the deployment's bucket alone). No
/// Genesys credentials, no keyring: it reads bucket settings and audit records only.
pub async fn router_runtime(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<crate::handlers::storage_router::RouterRuntime, InitError> {
    let bucket = get(env, "ARCHIVE_BUCKET").ok_or(InitError::Missing("ARCHIVE_BUCKET"))?;
    let prefix = get(env, "ARCHIVE_PREFIX")
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    let (targets, config_source) = match routing_config(env, sdk).await? {
        Some((config, version)) => (config.targets, version),
        None => (
            std::collections::BTreeMap::from([(
                "default".to_string(),
                crate::routing::StorageTarget {
                    bucket: bucket.to_string(),
                    prefix: prefix.clone(),
                    region: None,
                    kms_key_id: None,
                    retention_days: None,
                    worm: false,
                    object_lock_mode: Default::default(),
                    minimum_encryption: Default::default(),
                },
            )]),
            format!("ARCHIVE_BUCKET {bucket}"),
        ),
    };
    let targets = targets
        .into_iter()
        .map(|(name, target)| {
            let client = s3_client(&regional_sdk(sdk, target.region.as_deref()), env);
            crate::compliance::CheckedTarget {
                store: Arc::new(S3Store::new(client, target.bucket.clone())),
                name,
                target,
            }
        })
        .collect();
    Ok(crate::handlers::storage_router::RouterRuntime {
        store: Arc::new(S3Store::new(s3_client(sdk, env), bucket.to_string())),
        layout: crate::store::ArchiveLayout::new(&prefix),
        targets,
        config_source,
        inspector: Arc::new(crate::compliance::S3Inspector {
            client: s3_client(sdk, env),
            replication: true,
        }),
    })
}

/// What the conversation producers (recording-sweep, event-stream) share: Genesys, the
/// deployment bucket, the routing targets' manifests, the ArchiveQueue.
struct Producer {
    config: Config,
    genesys: GenesysClient,
    store: Arc<dyn crate::store::ObjectStore>,
    layout: crate::store::ArchiveLayout,
    targets: Vec<crate::store::ArchiveLocation>,
    queue: Arc<dyn crate::queue::ArchiveQueue>,
}

async fn producer(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Producer, InitError> {
    let config = Config::from_map(env)?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let credentials = resolve_credentials(&config.genesys.credentials, &secrets).await?;
    Ok(Producer {
        genesys: GenesysClient::new(&config.genesys, credentials)?,
        store: Arc::new(S3Store::new(
            s3_client(sdk, env),
            config.archive.bucket.clone(),
        )),
        layout: crate::store::ArchiveLayout::new(&config.archive.prefix),
        targets: target_locations(env, sdk).await?,
        queue: Arc::new(archive_queue(sdk, env)?),
        config,
    })
}

/// recording-sweep's dependencies: only what the sweep, the backfills and the reconciliation
/// use (no keyring, no notifications: the function's role grants neither).
pub async fn sweep_runtime(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<crate::handlers::recording_sweep::SweepRuntime, InitError> {
    let p = producer(env, sdk).await?;
    let defaults = crate::sweep::SweepSettings::default();
    let settings = crate::sweep::SweepSettings {
        overlap: secs(env, "SWEEP_OVERLAP_SECS", defaults.overlap.as_secs()),
        settle: secs(env, "SWEEP_SETTLE_SECS", defaults.settle.as_secs()),
        max_open: secs(env, "SWEEP_MAX_OPEN_SECS", defaults.max_open.as_secs()),
        first_lookback: secs(
            env,
            "SWEEP_FIRST_LOOKBACK_SECS",
            defaults.first_lookback.as_secs(),
        ),
        ..defaults
    };
    Ok(crate::handlers::recording_sweep::SweepRuntime {
        org: p.config.genesys.org_id.clone(),
        media: p.config.archive.media.clone(),
        genesys: p.genesys,
        store: p.store,
        layout: p.layout,
        targets: p.targets,
        queue: p.queue,
        settings,
        rate_limit_read: Default::default(),
    })
}

/// event-stream's dependencies: Genesys, the deployment bucket (state, journal, manifests),
/// the routing targets' manifests, and the ArchiveQueue. Settings from the environment:
/// `STREAM_QUEUE_TOPICS` (`false` = only `STREAM_EXTRA_TOPICS`, comma-separated),
/// `STREAM_HEARTBEAT_WINDOW_SECS`, `STREAM_GAP_SETTLE_SECS`, `STREAM_GAP_MARGIN_SECS`,
/// `STREAM_GAP_LOOKBACK_SECS`,
/// `STREAM_HANDOFF_MARGIN_SECS`.
pub async fn stream_runtime(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<crate::handlers::event_stream::StreamRuntime, InitError> {
    let p = producer(env, sdk).await?;
    Ok(crate::handlers::event_stream::StreamRuntime {
        org: p.config.genesys.org_id.clone(),
        genesys: p.genesys,
        store: p.store,
        layout: p.layout,
        targets: p.targets,
        queue: p.queue,
        settings: stream_settings(env),
        handoff_margin: secs(env, "STREAM_HANDOFF_MARGIN_SECS", 20),
    })
}

/// [`crate::stream::StreamSettings`] from the environment (see [`stream_runtime`]).
pub fn stream_settings(env: &HashMap<String, String>) -> crate::stream::StreamSettings {
    let d = crate::stream::StreamSettings::default();
    let holder = [get(env, "AWS_LAMBDA_LOG_STREAM_NAME"), get(env, "HOSTNAME")]
        .into_iter()
        .flatten()
        .next()
        .map_or(d.holder.clone(), |h| {
            format!("{h}/pid-{}", std::process::id())
        });
    crate::stream::StreamSettings {
        queue_topics: get(env, "STREAM_QUEUE_TOPICS") != Some("false"),
        extra_topics: list(env, "STREAM_EXTRA_TOPICS").unwrap_or_default(),
        heartbeat_window: secs(
            env,
            "STREAM_HEARTBEAT_WINDOW_SECS",
            d.heartbeat_window.as_secs(),
        ),
        gap_settle: secs(env, "STREAM_GAP_SETTLE_SECS", d.gap_settle.as_secs()),
        gap_margin: secs(env, "STREAM_GAP_MARGIN_SECS", d.gap_margin.as_secs()),
        gap_lookback: secs(env, "STREAM_GAP_LOOKBACK_SECS", d.gap_lookback.as_secs()),
        holder,
        ..d
    }
}

/// The ArchiveQueue our own producers (the recording sweep) send conversations to
/// (`ARCHIVE_QUEUE_URL`).
pub fn archive_queue(
    sdk: &aws_config::SdkConfig,
    env: &HashMap<String, String>,
) -> Result<crate::queue::SqsArchiveQueue, InitError> {
    let url = get(env, "ARCHIVE_QUEUE_URL").ok_or(InitError::Missing("ARCHIVE_QUEUE_URL"))?;
    Ok(crate::queue::SqsArchiveQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        url,
    ))
}

/// Converts the Lambda deadline (epoch milliseconds) into a monotonic instant.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    tokio::time::Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// A comma-separated list, items trimmed, empty items dropped.
fn list(env: &HashMap<String, String>, key: &str) -> Option<Vec<String>> {
    get(env, key).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// upload-proxy's dependencies. `UPLOAD_AUTH` is `iam` (the Function URL's `AWS_IAM`) or
/// `ticket` (signed tickets; the key is the string of `UPLOAD_TICKET_SECRET_ID`, or of
/// `UPLOAD_TICKET_KEY` for local runs). Limits: `UPLOAD_MAX_MIB`, `UPLOAD_ALLOWED_TYPES`,
/// `UPLOAD_BLOCKED_EXTENSIONS` (added to the defaults), `UPLOAD_DEPLOYMENT_ID` (its
/// `fileUpload` settings apply too), `UPLOAD_ATTACH_MAX_MIB`, `UPLOAD_PER_CONVERSATION_PER_HOUR`,
/// `UPLOAD_PER_CALLER_PER_HOUR`; `UPLOAD_VERIFY` (`read` | `s3`), `UPLOAD_LINK_TTL_SECS`,
/// `UPLOAD_PART_URL_TTL_SECS`, `UPLOAD_MEDIA_POLLS`, `UPLOAD_MEDIA_POLL_MS`,
/// `GENESYS_MEDIA_UPLOAD_METHOD` (`PUT` | `POST`), `UPLOAD_EVENT_BUS`.
pub async fn upload_runtime(
    env: &HashMap<String, String>,
    sdk: &aws_config::SdkConfig,
) -> Result<crate::handlers::upload_proxy::UploadRuntime, InitError> {
    use crate::upload::{policy::UploadPolicy, AuthMode, UploadSettings, VerifyMode};
    let config = Config::from_map(env)?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let credentials = resolve_credentials(&config.genesys.credentials, &secrets).await?;
    let genesys = GenesysClient::new(&config.genesys, credentials)?;
    let bad = |name: &str, why: String| {
        InitError::Config(ConfigError {
            problems: vec![format!("{name}: {why}")],
        })
    };
    let auth = match get(env, "UPLOAD_AUTH").unwrap_or("iam") {
        "iam" => AuthMode::Iam,
        "ticket" => {
            let secret = match (
                get(env, "UPLOAD_TICKET_SECRET_ID"),
                get(env, "UPLOAD_TICKET_KEY"),
            ) {
                (Some(id), _) => {
                    let out = secrets
                        .get_secret_value()
                        .secret_id(id)
                        .send()
                        .await
                        .map_err(|e| bad("UPLOAD_TICKET_SECRET_ID", aws_error_summary(&e)))?;
                    out.secret_string().unwrap_or_default().to_string()
                }
                (None, Some(key)) => key.to_string(),
                (None, None) => return Err(InitError::Missing("UPLOAD_TICKET_SECRET_ID")),
            };
            AuthMode::Ticket(
                crate::upload::ticket::TicketKey::new(secret.as_bytes())
                    .map_err(|e| bad("UPLOAD_TICKET_SECRET_ID", e.to_string()))?,
            )
        }
        other => {
            return Err(bad(
                "UPLOAD_AUTH",
                format!("{other:?} is not iam or ticket"),
            ))
        }
    };
    let defaults = UploadSettings::default();
    // Every number is checked: a typo is an init error naming the variable, never a silent
    // default.
    let mut problems = Vec::new();
    let mut number = |key: &str, default: u64, min: u64, max: u64| {
        crate::config::parse_number(env, key, default, min, max, &mut problems)
    };
    let mut policy = UploadPolicy::default();
    if let Some(types) = list(env, "UPLOAD_ALLOWED_TYPES") {
        policy.allowed_types = types;
    }
    if let Some(more) = list(env, "UPLOAD_BLOCKED_EXTENSIONS") {
        policy.blocked_extensions.extend(more);
    }
    // 5,242,880 MiB is S3's largest object (5 TiB).
    policy.max_bytes = number("UPLOAD_MAX_MIB", policy.max_bytes >> 20, 1, 5_242_880) << 20;
    // Presigned URLs live at most 7 days (SigV4).
    let part_url_ttl = number(
        "UPLOAD_PART_URL_TTL_SECS",
        defaults.part_url_ttl.as_secs(),
        1,
        604_800,
    );
    let link_ttl = number(
        "UPLOAD_LINK_TTL_SECS",
        defaults.link_ttl.as_secs(),
        60,
        604_800,
    );
    let attach_max_mib = number(
        "UPLOAD_ATTACH_MAX_MIB",
        defaults.attach_max_bytes >> 20,
        1,
        1024,
    );
    let media_status_polls = number("UPLOAD_MEDIA_POLLS", 30, 1, 1000);
    let media_poll_ms = number("UPLOAD_MEDIA_POLL_MS", 1000, 1, 60_000);
    // 0 = no limit.
    let per_conversation = number("UPLOAD_PER_CONVERSATION_PER_HOUR", 20, 0, 1_000_000);
    let per_caller = number("UPLOAD_PER_CALLER_PER_HOUR", 100, 0, 1_000_000);
    if !problems.is_empty() {
        return Err(InitError::Config(ConfigError { problems }));
    }
    let verify = match get(env, "UPLOAD_VERIFY").unwrap_or("read") {
        "read" => VerifyMode::Read,
        "s3" => VerifyMode::S3,
        other => return Err(bad("UPLOAD_VERIFY", format!("{other:?} is not read or s3"))),
    };
    let method = match get(env, "GENESYS_MEDIA_UPLOAD_METHOD").unwrap_or("PUT") {
        "PUT" => reqwest::Method::PUT,
        "POST" => reqwest::Method::POST,
        other => {
            return Err(bad(
                "GENESYS_MEDIA_UPLOAD_METHOD",
                format!("{other:?} is not PUT or POST"),
            ))
        }
    };
    let settings = UploadSettings {
        part_url_ttl: Duration::from_secs(part_url_ttl),
        link_ttl: Duration::from_secs(link_ttl),
        attach_max_bytes: attach_max_mib << 20,
        deployment_id: get(env, "UPLOAD_DEPLOYMENT_ID").map(str::to_string),
        verify,
        genesys_upload_method: method,
        media_status_polls: media_status_polls as u32,
        media_poll_interval: Duration::from_millis(media_poll_ms),
        per_conversation_per_hour: per_conversation as usize,
        per_caller_per_hour: per_caller as usize,
        ..defaults
    };
    let s3 = s3_client(sdk, env);
    let service = crate::upload::UploadService {
        org: config.genesys.org_id.clone(),
        genesys,
        store: Arc::new(S3Store::new(s3.clone(), config.archive.bucket.clone())),
        multipart: crate::upload::s3::MultipartStore::new(s3, config.archive.bucket.clone()),
        layout: crate::store::ArchiveLayout::new(&config.archive.prefix),
        policy,
        settings,
        write_back: config.archive.write_back,
        external_tag_policy: config.archive.external_tag_policy,
        custom_attributes_schema_id: config.archive.custom_attributes_schema_id.clone(),
        events: get(env, "UPLOAD_EVENT_BUS")
            .map(|bus| (aws_sdk_eventbridge::Client::new(sdk), bus.to_string())),
        deployment_cache: std::sync::Mutex::new(None),
    };
    Ok(crate::handlers::upload_proxy::UploadRuntime { service, auth })
}
