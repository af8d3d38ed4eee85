//! The one logging set-up every function (and the CLI) uses. Library crates that log request
//! URLs, headers or bodies at DEBUG/TRACE (reqwest logs redirect URLs, which are signed media
//! URLs; the AWS SDK's smithy runtime and sigv4 log requests and responses, KMS responses hold
//! data keys) are pinned at `info` whatever level is asked for: a TRACE deployment must not
//! leak a credential. Our own crates follow the level given.

use tracing_subscriber::EnvFilter;

/// Crates held at `info` in every level mapping.
pub const PINNED_AT_INFO: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "tower",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_smithy_json",
    "aws_smithy_xml",
    "aws_smithy_query",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "aws_credential_types",
    "aws_sdk_s3",
    "aws_sdk_kms",
    "aws_sdk_sqs",
    "aws_sdk_secretsmanager",
    "aws_sdk_eventbridge",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "lambda_runtime",
    "lambda_runtime_api_client",
];

/// A filter for `spec` (RUST_LOG syntax, or a bare level such as Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`), with [`PINNED_AT_INFO`] forced to `info`: directives in `spec` that
/// name those crates (or their modules) are dropped.
pub fn filter(spec: &str) -> EnvFilter {
    let pinned = |target: &str| {
        PINNED_AT_INFO
            .iter()
            .any(|p| target == *p || target.starts_with(&format!("{p}::")))
    };
    let kept: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| match d.split_once('=') {
            Some((target, _)) => !pinned(target.split('[').next().unwrap_or("").trim()),
            None => true,
        })
        .collect();
    let mut directives = if kept.is_empty() {
        "info".to_string()
    } else {
        kept.join(",").to_ascii_lowercase()
    };
    for p in PINNED_AT_INFO {
        directives.push_str(&format!(",{p}=info"));
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| {
        let mut fallback = "info".to_string();
        for p in PINNED_AT_INFO {
            fallback.push_str(&format!(",{p}=info"));
        }
        EnvFilter::new(fallback)
    })
}

/// The level asked for by the environment: Lambda's `AWS_LAMBDA_LOG_LEVEL` (set from the
/// function's ApplicationLogLevel), else `RUST_LOG`, else `info`.
pub fn spec_from_env() -> String {
    std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into())
}

/// Installs the subscriber for a Lambda function: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`
/// (the template sets it), plain text otherwise, to stdout.
pub fn init_lambda() {
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(&spec_from_env()));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        fmt.json().try_init()
    } else {
        fmt.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_keeps_library_crates_at_info() {
        let f = filter("trace").to_string();
        assert!(f.contains("reqwest=info"), "{f}");
        assert!(f.contains("aws_smithy_runtime=info"), "{f}");
        assert!(f.contains("trace"), "{f}");
    }

    #[test]
    fn directives_for_pinned_crates_are_dropped() {
        let f = filter("debug,reqwest=trace,aws_smithy_runtime::client=trace,gc_archive=trace")
            .to_string();
        assert!(!f.contains("reqwest=trace"), "{f}");
        assert!(!f.contains("client=trace"), "{f}");
        assert!(f.contains("gc_archive=trace"), "{f}");
    }
}
