//! `gc-archive encrypt` / `decrypt`: streaming, from a local file or `s3://bucket/key`, to a
//! file (written to a temporary file beside it and renamed only when complete and verified)
//! or stdout.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use gc_archive::crypto::{self, DecryptOptions, EncryptionContext, Keyring};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::KeyArgs;

pub async fn keyring(args: &KeyArgs, sdk: &aws_config::SdkConfig) -> Result<Arc<dyn Keyring>> {
    let source = match (&args.kms_key, &args.raw_key_file) {
        (Some(k), None) => gc_archive::config::KeySource::Kms { key_id: k.clone() },
        (None, Some(p)) => gc_archive::config::KeySource::RawKeyFile {
            path: p.display().to_string(),
        },
        _ => bail!("give exactly one of --kms-key and --raw-key-file"),
    };
    Ok(gc_archive::bootstrap::keyring_for(
        &source,
        aws_sdk_kms::Client::new(sdk),
    )?)
}

pub fn parse_context(pairs: &[String]) -> Result<EncryptionContext> {
    let mut ctx = EncryptionContext::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--context {p:?} must be key=value"))?;
        ctx.insert(k, v);
    }
    Ok(ctx)
}

fn s3_location(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    Some((bucket.to_string(), key.to_string()))
}

pub async fn open_input(
    input: &str,
    sdk: &aws_config::SdkConfig,
) -> Result<Box<dyn AsyncRead + Unpin + Send>> {
    if let Some((bucket, key)) = s3_location(input) {
        let s3 = gc_archive::bootstrap::s3_client(sdk, &std::env::vars().collect());
        let out = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "s3://{bucket}/{key}: {}",
                    gc_archive::config::aws_error_summary(&e)
                )
            })?;
        return Ok(Box::new(out.body.into_async_read()));
    }
    let f = tokio::fs::File::open(input)
        .await
        .with_context(|| format!("opening {input}"))?;
    Ok(Box::new(f))
}

/// Runs `work` writing to `output` ("-" = stdout). A file appears at `output` only if `work`
/// succeeded: it writes to a temporary file in the same directory and renames it.
async fn with_output<F, Fut, T>(output: &str, work: F) -> Result<T>
where
    F: FnOnce(Box<dyn AsyncWrite + Unpin + Send>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    if output == "-" {
        return work(Box::new(tokio::io::stdout())).await;
    }
    let path = Path::new(output);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("temporary file in {}", dir.display()))?;
    let file = tokio::fs::File::from_std(tmp.reopen()?);
    let result = work(Box::new(file)).await?;
    tmp.persist(path)
        .with_context(|| format!("writing {output}"))?;
    Ok(result)
}

pub async fn decrypt(
    input: &str,
    output: &str,
    keyring: Arc<dyn Keyring>,
    required: EncryptionContext,
    sdk: &aws_config::SdkConfig,
) -> Result<crypto::DecryptedInfo> {
    let reader = open_input(input, sdk).await?;
    with_output(output, |w| async move {
        crypto::decrypt_to_writer(
            keyring,
            DecryptOptions {
                required_context: required,
            },
            reader,
            w,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot decrypt {input}: {e}"))
    })
    .await
}

pub async fn encrypt(
    input: &str,
    output: &str,
    keyring: Arc<dyn Keyring>,
    ctx: EncryptionContext,
    frame_len: u32,
    sdk: &aws_config::SdkConfig,
) -> Result<u64> {
    let reader = open_input(input, sdk).await?;
    with_output(output, |w| async move {
        crypto::encrypt_to_writer(keyring.as_ref(), ctx, frame_len, reader, w)
            .await
            .map_err(|e| anyhow::anyhow!("cannot encrypt {input}: {e}"))
    })
    .await
}
