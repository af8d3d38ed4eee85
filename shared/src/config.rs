//! Typed configuration, read once at start-up from the environment and validated as a whole:
//! one error lists every missing or bad setting, so a deploy is fixed in one go.
//!
//! Secrets (the Genesys client secret) are [`SecretString`]s: they never appear in `Debug`,
//! logs or errors. In production they come from AWS Secrets Manager; plain environment
//! variables are accepted for local use only. Fetching the secret is done by
//! [`resolve_credentials`], not here, so parsing stays free of I/O.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::ids::OrgId;

/// Every problem found in the configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Genesys Cloud regions by their API domain (genesys-api.md §1). Also accepted: the SDK's
/// region key (`us_east_1`, `eu_west_2`, …).
pub const GENESYS_REGIONS: &[(&str, &str)] = &[
    ("us_east_1", "mypurecloud.com"),
    ("eu_west_1", "mypurecloud.ie"),
    ("ap_southeast_2", "mypurecloud.com.au"),
    ("ap_northeast_1", "mypurecloud.jp"),
    ("eu_central_1", "mypurecloud.de"),
    ("us_west_2", "usw2.pure.cloud"),
    ("ca_central_1", "cac1.pure.cloud"),
    ("ap_northeast_2", "apne2.pure.cloud"),
    ("eu_west_2", "euw2.pure.cloud"),
    ("ap_south_1", "aps1.pure.cloud"),
    ("us_east_2", "use2.us-gov-pure.cloud"),
    ("sa_east_1", "sae1.pure.cloud"),
    ("me_central_1", "mec1.pure.cloud"),
    ("ap_northeast_3", "apne3.pure.cloud"),
    ("eu_central_2", "euc2.pure.cloud"),
    ("mx_central_1", "mxc1.pure.cloud"),
    ("ap_southeast_1", "apse1.pure.cloud"),
    ("eusc_de_east_1", "edee1.eusc-pure.cloud"),
];

/// Where the Genesys Cloud API and login service live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysEndpoints {
    /// `https://api.{domain}` (or the simulator's base URL).
    pub api_base: Url,
    /// `https://login.{domain}` (or the simulator's base URL).
    pub login_base: Url,
}

impl GenesysEndpoints {
    /// From a region domain (`mypurecloud.com`) or SDK key (`us_east_1`).
    pub fn for_region(region: &str) -> Option<GenesysEndpoints> {
        let region = region.trim().to_ascii_lowercase();
        let domain = GENESYS_REGIONS
            .iter()
            .find(|(key, domain)| *key == region || *domain == region)
            .map(|(_, domain)| *domain)?;
        Some(GenesysEndpoints {
            api_base: Url::parse(&format!("https://api.{domain}")).ok()?,
            login_base: Url::parse(&format!("https://login.{domain}")).ok()?,
        })
    }

    /// Both services at one base URL (the simulator).
    pub fn single(base: Url) -> GenesysEndpoints {
        GenesysEndpoints {
            api_base: base.clone(),
            login_base: base,
        }
    }
}

/// OAuth client credentials (client-credentials grant).
#[derive(Clone)]
pub struct GenesysCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl fmt::Debug for GenesysCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenesysCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// Where the credentials come from.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// A Secrets Manager secret (name or ARN) holding `{"client_id","client_secret"}`.
    SecretsManager { secret_id: String },
    /// Given directly (environment; local use).
    Inline(GenesysCredentials),
}

#[derive(Debug, Clone)]
pub struct GenesysConfig {
    pub endpoints: GenesysEndpoints,
    pub credentials: CredentialSource,
    pub org_id: OrgId,
    /// Which media Genesys is asked for: the original codec (batch download API) or a
    /// transcoded `formatId`.
    pub media_format: MediaFormat,
    /// Timeout for one API request (not for media bodies, which have their own idle timeout).
    pub request_timeout: Duration,
}

/// The audio Genesys Cloud is asked for (genesys-api.md §3.2, §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFormat {
    /// The codec the trunk recorded in, no transcoding loss, through the batch download API
    /// (`POST /api/v2/recording/batchrequests`). The default.
    Original,
    /// A transcoded rendition through `GET .../recordings/{rid}?formatId=…` (`WAV`, `OGG_OPUS`, …).
    Transcoded(String),
}

impl MediaFormat {
    /// The `formatId` values Genesys transcodes to (NONE is metadata only and not one of them).
    pub const TRANSCODED: &'static [&'static str] =
        &["WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3"];

    /// The name used in configuration and manifests (`ORIGINAL`, `WAV`, …).
    pub fn name(&self) -> &str {
        match self {
            MediaFormat::Original => "ORIGINAL",
            MediaFormat::Transcoded(f) => f,
        }
    }

    /// Parses `GENESYS_MEDIA_FORMAT`; the error says what to use instead.
    pub fn parse(value: &str) -> Result<MediaFormat, String> {
        let v = value.trim().to_ascii_uppercase();
        match v.as_str() {
            "ORIGINAL" => Ok(MediaFormat::Original),
            "NONE" => Err("GENESYS_MEDIA_FORMAT=NONE asks Genesys Cloud for metadata only (formatId=NONE returns no media, so nothing would ever be archived); use ORIGINAL (the default: the original codec, no transcoding, through the batch download API) or a transcoded format (WAV, WAV_ULAW, OGG_OPUS, OGG_VORBIS, MP3, WEBM)".into()),
            f if Self::TRANSCODED.contains(&f) => Ok(MediaFormat::Transcoded(f.to_string())),
            other => Err(format!(
                "GENESYS_MEDIA_FORMAT {other:?} is not ORIGINAL or one of {}",
                Self::TRANSCODED.join(", ")
            )),
        }
    }
}

/// The kinds of recording Genesys Cloud keeps (`Recording.media`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMedia {
    Audio,
    Screen,
    Chat,
    Messaging,
    Email,
}

impl RecordingMedia {
    pub const ALL: [RecordingMedia; 5] = [
        RecordingMedia::Audio,
        RecordingMedia::Screen,
        RecordingMedia::Chat,
        RecordingMedia::Messaging,
        RecordingMedia::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingMedia::Audio => "audio",
            RecordingMedia::Screen => "screen",
            RecordingMedia::Chat => "chat",
            RecordingMedia::Messaging => "messaging",
            RecordingMedia::Email => "email",
        }
    }

    /// `Recording.media` → kind; an absent value is audio (the SDK's default use).
    pub fn from_api(value: Option<&str>) -> Option<RecordingMedia> {
        let v = value.unwrap_or("audio").trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|m| m.as_str() == v)
    }
}

impl fmt::Display for RecordingMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when the conversation's `externalTag` holds a value another integration wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalTagPolicy {
    /// Write only when the tag is empty or already ours; otherwise leave it and report.
    KeepForeign,
    /// Always write ours.
    Overwrite,
}

/// How data keys are protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// AWS KMS key id, ARN or alias (production).
    Kms { key_id: String },
    /// A raw AES-256 key in a local file (32 raw bytes or 64 hex characters); tests and
    /// air-gapped use only.
    RawKeyFile { path: String },
}

impl KeySource {
    /// Who can decrypt, as manifests name it (`aws-kms:<key>`, `raw-aes:gc-archive`).
    pub fn provider_name(&self) -> String {
        match self {
            KeySource::Kms { key_id } => format!("aws-kms:{key_id}"),
            KeySource::RawKeyFile { .. } => "raw-aes:gc-archive".to_string(),
        }
    }
}

/// Where the archive's conversation reference is written back in Genesys Cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    CustomAttributes,
    ExternalTag,
    Disabled,
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub key_source: KeySource,
    /// Byte-range size for media downloads; one S3 part per chunk.
    pub chunk_size: u64,
    /// Concurrent range requests per recording.
    pub concurrency: usize,
    pub frame_len: u32,
    pub write_back: WriteBack,
    pub external_tag_policy: ExternalTagPolicy,
    /// Schema id for conversation custom attributes (required with `custom-attributes`).
    pub custom_attributes_schema_id: Option<String>,
    /// Which recording kinds are archived; the others are acknowledged and counted.
    pub media: Vec<RecordingMedia>,
}

pub const MIB: u64 = 1024 * 1024;
/// S3's lower part-size limit; every part but the last must reach it.
pub const S3_MIN_PART: u64 = 5 * MIB;
/// The largest chunk the transfer engine plans (issue: never above 10 MiB).
pub const MAX_CHUNK: u64 = 10 * MIB;

fn get<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl GenesysConfig {
    /// Reads `GENESYS_*` settings from `env`, appending problems to `problems`.
    pub fn from_map(
        env: &HashMap<String, String>,
        problems: &mut Vec<String>,
    ) -> Option<GenesysConfig> {
        let endpoints = match (get(env, "GENESYS_API_BASE_URL"), get(env, "GENESYS_REGION")) {
            (Some(base), _) => match Url::parse(base) {
                Ok(api) => {
                    let login = match get(env, "GENESYS_LOGIN_BASE_URL") {
                        Some(l) => Url::parse(l).ok(),
                        None => Some(api.clone()),
                    };
                    match login {
                        Some(login_base) => Some(GenesysEndpoints {
                            api_base: api,
                            login_base,
                        }),
                        None => {
                            problems.push("GENESYS_LOGIN_BASE_URL is not a URL".into());
                            None
                        }
                    }
                }
                Err(e) => {
                    problems.push(format!("GENESYS_API_BASE_URL is not a URL ({e})"));
                    None
                }
            },
            (None, Some(region)) => {
                let e = GenesysEndpoints::for_region(region);
                if e.is_none() {
                    let known: Vec<&str> = GENESYS_REGIONS.iter().map(|(_, d)| *d).collect();
                    problems.push(format!(
                        "GENESYS_REGION {region:?} is not a Genesys Cloud region (one of: {})",
                        known.join(", ")
                    ));
                }
                e
            }
            (None, None) => {
                problems.push(
                    "GENESYS_REGION is missing (e.g. mypurecloud.com or euw2.pure.cloud), or set GENESYS_API_BASE_URL"
                        .into(),
                );
                None
            }
        };

        let credentials = match (
            get(env, "GENESYS_CLIENT_SECRET_ID"),
            get(env, "GENESYS_CLIENT_ID"),
            get(env, "GENESYS_CLIENT_SECRET"),
        ) {
            (Some(secret_id), _, _) => Some(CredentialSource::SecretsManager {
                secret_id: secret_id.to_string(),
            }),
            (None, Some(id), Some(secret)) => Some(CredentialSource::Inline(GenesysCredentials {
                client_id: id.to_string(),
                client_secret: SecretString::from(secret.to_string()),
            })),
            (None, Some(_), None) => {
                problems.push("GENESYS_CLIENT_SECRET is missing (GENESYS_CLIENT_ID is set)".into());
                None
            }
            (None, None, _) => {
                problems.push(
                    "GENESYS_CLIENT_SECRET_ID is missing (a Secrets Manager secret holding {\"client_id\",\"client_secret\"}); for local use set GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET instead"
                        .into(),
                );
                None
            }
        };

        let org_id = match get(env, "GENESYS_ORG_ID") {
            Some(v) => match OrgId::parse(v) {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(format!("GENESYS_ORG_ID: {e}"));
                    None
                }
            },
            None => {
                problems
                    .push("GENESYS_ORG_ID is missing (your Genesys Cloud organization id)".into());
                None
            }
        };

        let media_format =
            match MediaFormat::parse(get(env, "GENESYS_MEDIA_FORMAT").unwrap_or("ORIGINAL")) {
                Ok(f) => Some(f),
                Err(e) => {
                    problems.push(e);
                    None
                }
            };
        let request_timeout =
            parse_number(env, "GENESYS_REQUEST_TIMEOUT_SECS", 30, 1, 900, problems);

        Some(GenesysConfig {
            endpoints: endpoints?,
            credentials: credentials?,
            org_id: org_id?,
            media_format: media_format?,
            request_timeout: Duration::from_secs(request_timeout),
        })
    }
}

pub(crate) fn parse_number(
    env: &HashMap<String, String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
    problems: &mut Vec<String>,
) -> u64 {
    match get(env, key) {
        None => default,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "{key} {v:?} must be a whole number from {min} to {max}"
                ));
                default
            }
        },
    }
}

impl ArchiveConfig {
    pub fn from_map(
        env: &HashMap<String, String>,
        problems: &mut Vec<String>,
    ) -> Option<ArchiveConfig> {
        let bucket = get(env, "ARCHIVE_BUCKET").map(str::to_string);
        if bucket.is_none() {
            problems
                .push("ARCHIVE_BUCKET is missing (the S3 bucket archives are written to)".into());
        }
        let prefix = get(env, "ARCHIVE_PREFIX")
            .unwrap_or("recordings")
            .trim_matches('/')
            .to_string();
        if prefix.split('/').any(|seg| seg == ".." || seg == ".") || prefix.contains("//") {
            problems.push(format!(
                "ARCHIVE_PREFIX {prefix:?} has an empty or relative segment"
            ));
        }
        let key_source = match (
            get(env, "ARCHIVE_KMS_KEY_ID"),
            get(env, "ARCHIVE_RAW_KEY_FILE"),
        ) {
            (Some(k), None) => Some(KeySource::Kms {
                key_id: k.to_string(),
            }),
            (None, Some(p)) => Some(KeySource::RawKeyFile {
                path: p.to_string(),
            }),
            (Some(_), Some(_)) => {
                problems.push("set only one of ARCHIVE_KMS_KEY_ID and ARCHIVE_RAW_KEY_FILE".into());
                None
            }
            (None, None) => {
                problems
                    .push("ARCHIVE_KMS_KEY_ID is missing (KMS key id, ARN or alias/...)".into());
                None
            }
        };
        let chunk_mib = parse_number(
            env,
            "ARCHIVE_CHUNK_SIZE_MIB",
            8,
            5,
            MAX_CHUNK / MIB,
            problems,
        );
        let concurrency = parse_number(env, "ARCHIVE_CONCURRENCY", 2, 1, 16, problems) as usize;
        let frame_len =
            parse_number(env, "ARCHIVE_FRAME_LEN", 65536, 4096, 1 << 20, problems) as u32;
        if !(chunk_mib * MIB).is_multiple_of(frame_len as u64) {
            problems.push(format!(
                "ARCHIVE_FRAME_LEN {frame_len} must divide the chunk size ({chunk_mib} MiB) so parts end on frame boundaries"
            ));
        }
        let write_back = match get(env, "ARCHIVE_WRITE_BACK").unwrap_or("external-tag") {
            "custom-attributes" => Some(WriteBack::CustomAttributes),
            "external-tag" => Some(WriteBack::ExternalTag),
            "none" => Some(WriteBack::Disabled),
            other => {
                problems.push(format!(
                    "ARCHIVE_WRITE_BACK {other:?} must be custom-attributes, external-tag or none"
                ));
                None
            }
        };
        let external_tag_policy = match get(env, "ARCHIVE_EXTERNAL_TAG").unwrap_or("keep-foreign") {
            "keep-foreign" => Some(ExternalTagPolicy::KeepForeign),
            "overwrite" => Some(ExternalTagPolicy::Overwrite),
            other => {
                problems.push(format!(
                    "ARCHIVE_EXTERNAL_TAG {other:?} must be keep-foreign or overwrite"
                ));
                None
            }
        };
        let mut media = Vec::new();
        for item in get(env, "ARCHIVE_MEDIA").unwrap_or("audio").split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match RecordingMedia::ALL
                .into_iter()
                .find(|m| m.as_str() == item.to_ascii_lowercase())
            {
                Some(m) if !media.contains(&m) => media.push(m),
                Some(_) => {}
                None => problems.push(format!(
                    "ARCHIVE_MEDIA {item:?} is not one of audio, screen, chat, messaging, email"
                )),
            }
        }
        if media.is_empty() {
            problems
                .push("ARCHIVE_MEDIA names no recording kind (e.g. audio or audio,screen)".into());
        }
        media.sort();
        let schema = get(env, "ARCHIVE_CUSTOM_ATTRIBUTES_SCHEMA_ID").map(str::to_string);
        if write_back == Some(WriteBack::CustomAttributes) && schema.is_none() {
            problems.push(
                "ARCHIVE_CUSTOM_ATTRIBUTES_SCHEMA_ID is required with ARCHIVE_WRITE_BACK=custom-attributes".into(),
            );
        }
        Some(ArchiveConfig {
            bucket: bucket?,
            prefix,
            key_source: key_source?,
            chunk_size: chunk_mib * MIB,
            concurrency,
            frame_len,
            write_back: write_back?,
            external_tag_policy: external_tag_policy?,
            custom_attributes_schema_id: schema,
            media,
        })
    }
}

/// The settings every archiving function needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub genesys: GenesysConfig,
    pub archive: ArchiveConfig,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_map(&std::env::vars().collect())
    }

    pub fn from_map(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let genesys = GenesysConfig::from_map(env, &mut problems);
        let archive = ArchiveConfig::from_map(env, &mut problems);
        match (genesys, archive) {
            (Some(genesys), Some(archive)) if problems.is_empty() => {
                Ok(Config { genesys, archive })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Failure to obtain the Genesys credentials from Secrets Manager.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("could not read secret {secret_id:?} from Secrets Manager: {reason}")]
    Fetch { secret_id: String, reason: String },
    #[error("secret {secret_id:?} must be JSON {{\"client_id\": ..., \"client_secret\": ...}}")]
    Shape { secret_id: String },
}

/// Returns the credentials, fetching them from Secrets Manager when configured so.
pub async fn resolve_credentials(
    source: &CredentialSource,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<GenesysCredentials, CredentialsError> {
    match source {
        CredentialSource::Inline(c) => Ok(c.clone()),
        CredentialSource::SecretsManager { secret_id } => {
            let out = secrets
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|e| CredentialsError::Fetch {
                    secret_id: secret_id.clone(),
                    reason: aws_error_summary(&e),
                })?;
            parse_credentials_json(secret_id, out.secret_string().unwrap_or_default())
        }
    }
}

/// Parses the secret's JSON. The secret value never appears in the error.
pub fn parse_credentials_json(
    secret_id: &str,
    json: &str,
) -> Result<GenesysCredentials, CredentialsError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        client_id: String,
        client_secret: String,
    }
    let raw: Raw = serde_json::from_str(json).map_err(|_| CredentialsError::Shape {
        secret_id: secret_id.to_string(),
    })?;
    if raw.client_id.is_empty() || raw.client_secret.is_empty() {
        return Err(CredentialsError::Shape {
            secret_id: secret_id.to_string(),
        });
    }
    Ok(GenesysCredentials {
        client_id: raw.client_id,
        client_secret: SecretString::from(raw.client_secret),
    })
}

/// A one-line summary of an AWS SDK error: the service's code and message, never a request.
/// The HTTP status is named when the service's body gave no code (a 403 then still reads as
/// access denied).
pub fn aws_error_summary<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let status = se.raw().status().as_u16();
            match e.code() {
                Some(code) => format!("{code}: {}", e.message().unwrap_or("no message")),
                None if status == 403 => {
                    format!(
                        "HTTP 403 (access denied): {}",
                        e.message().unwrap_or("no message")
                    )
                }
                None => format!("HTTP {status}: {}", e.message().unwrap_or("no message")),
            }
        }
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                "timed out connecting".into()
            } else if d.is_io() {
                "connection failed".into()
            } else {
                "request could not be sent".into()
            }
        }
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        _ => "unknown failure".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("GENESYS_REGION", "euw2.pure.cloud"),
            ("GENESYS_CLIENT_SECRET_ID", "gc-archive/genesys"),
            ("GENESYS_ORG_ID", "9a1b2c3d-0000-4000-8000-000000000001"),
            ("ARCHIVE_BUCKET", "acme-recordings"),
            ("ARCHIVE_KMS_KEY_ID", "alias/gc-archive"),
        ]
    }

    #[test]
    fn every_region_in_the_table_resolves_by_domain_and_by_key() {
        for (key, domain) in GENESYS_REGIONS {
            let a = GenesysEndpoints::for_region(domain).unwrap();
            let b = GenesysEndpoints::for_region(key).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.api_base.as_str(), format!("https://api.{domain}/"));
            assert_eq!(a.login_base.as_str(), format!("https://login.{domain}/"));
        }
    }

    #[test]
    fn minimal_production_config_parses_with_defaults() {
        let c = Config::from_map(&env(&minimal())).unwrap();
        assert_eq!(c.genesys.media_format, MediaFormat::Original);
        assert_eq!(c.archive.media, vec![RecordingMedia::Audio]);
        assert_eq!(
            c.archive.external_tag_policy,
            ExternalTagPolicy::KeepForeign
        );
        assert_eq!(c.archive.chunk_size, 8 * MIB);
        assert_eq!(c.archive.prefix, "recordings");
        assert_eq!(c.archive.write_back, WriteBack::ExternalTag);
        assert!(matches!(
            c.genesys.credentials,
            CredentialSource::SecretsManager { .. }
        ));
    }

    #[test]
    fn one_error_names_every_missing_setting() {
        let err = Config::from_map(&env(&[])).unwrap_err();
        let text = err.to_string();
        for key in [
            "GENESYS_REGION",
            "GENESYS_CLIENT_SECRET_ID",
            "GENESYS_ORG_ID",
            "ARCHIVE_BUCKET",
            "ARCHIVE_KMS_KEY_ID",
        ] {
            assert!(text.contains(key), "{key} not named in: {text}");
        }
        assert_eq!(err.problems.len(), 5);
    }

    #[test]
    fn bad_values_are_each_reported() {
        let mut e = minimal();
        e.retain(|(k, _)| *k != "GENESYS_REGION");
        e.push(("GENESYS_REGION", "mars.pure.cloud"));
        e.push(("ARCHIVE_CHUNK_SIZE_MIB", "64"));
        e.push(("GENESYS_MEDIA_FORMAT", "flac"));
        let err = Config::from_map(&env(&e)).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let mut e = minimal();
        e.retain(|(k, _)| *k != "GENESYS_CLIENT_SECRET_ID");
        e.push(("GENESYS_CLIENT_ID", "client-123"));
        e.push(("GENESYS_CLIENT_SECRET", "s3cr3t-value-xyz"));
        let c = Config::from_map(&env(&e)).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-value-xyz"), "{dbg}");
        assert!(dbg.contains("client-123"));
        let CredentialSource::Inline(creds) = &c.genesys.credentials else {
            panic!("inline credentials expected")
        };
        assert_eq!(creds.client_secret.expose_secret(), "s3cr3t-value-xyz");
    }

    #[test]
    fn credentials_json_errors_do_not_echo_the_secret() {
        let err =
            parse_credentials_json("id", "{\"client_id\":\"a\",\"clientsecret\":\"hunter2\"}")
                .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let ok =
            parse_credentials_json("id", "{\"client_id\":\"a\",\"client_secret\":\"hunter2\"}")
                .unwrap();
        assert_eq!(ok.client_secret.expose_secret(), "hunter2");
    }

    #[test]
    fn media_format_none_is_refused_with_the_reason_and_the_fix() {
        let mut e = minimal();
        e.push(("GENESYS_MEDIA_FORMAT", "none"));
        let err = Config::from_map(&env(&e)).unwrap_err().to_string();
        assert!(err.contains("metadata only"), "{err}");
        assert!(err.contains("ORIGINAL"), "{err}");
        let mut e = minimal();
        e.push(("GENESYS_MEDIA_FORMAT", "ogg_opus"));
        let c = Config::from_map(&env(&e)).unwrap();
        assert_eq!(
            c.genesys.media_format,
            MediaFormat::Transcoded("OGG_OPUS".into())
        );
    }

    #[test]
    fn archive_media_lists_recording_kinds() {
        let mut e = minimal();
        e.push(("ARCHIVE_MEDIA", "screen, audio,email"));
        let c = Config::from_map(&env(&e)).unwrap();
        assert_eq!(
            c.archive.media,
            vec![
                RecordingMedia::Audio,
                RecordingMedia::Screen,
                RecordingMedia::Email
            ]
        );
        let mut e = minimal();
        e.push(("ARCHIVE_MEDIA", "audio,video"));
        assert!(Config::from_map(&env(&e))
            .unwrap_err()
            .to_string()
            .contains("\"video\""));
    }

    #[test]
    fn simulator_base_url_serves_api_and_login() {
        let mut e = minimal();
        e.retain(|(k, _)| *k != "GENESYS_REGION");
        e.push(("GENESYS_API_BASE_URL", "http://127.0.0.1:8080"));
        let c = Config::from_map(&env(&e)).unwrap();
        assert_eq!(c.genesys.endpoints.api_base, c.genesys.endpoints.login_base);
    }
}
