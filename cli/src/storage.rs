//! The storage-routing commands: `route`, `validate-routing`, `compliance`, `report` and
//! `setup`. Each builds what it needs from the environment as the functions do and calls the
//! library; nothing here decides anything.

use anyhow::{Context, Result};
use clap::Args;

use gc_archive::compliance::Status;

#[derive(Args)]
pub struct SetupArgs {
    /// Report only; change nothing.
    #[arg(long, conflicts_with = "apply")]
    check: bool,
    /// Create or complete the EventBridge integration (idempotent). Retention policies are
    /// only ever reported.
    #[arg(long)]
    apply: bool,
    /// The AWS account the Genesys Cloud EventBridge source sends to (AWS_ACCOUNT_ID).
    #[arg(long, env = "AWS_ACCOUNT_ID")]
    aws_account_id: String,
    /// Its region (AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    aws_region: String,
    /// The partner event source's suffix: aws.partner/genesys.com/cloud/{orgId}/{suffix}.
    #[arg(long, default_value = "gc-archive")]
    event_source_suffix: String,
    /// A retention policy deleting recordings sooner than this many days is a warning.
    #[arg(long, default_value_t = 14)]
    min_retention_days: i64,
}

fn env() -> std::collections::HashMap<String, String> {
    std::env::vars().collect()
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// `gc-archive route --conversation`: where each recording goes by the current rules and where
/// it went, and why.
pub async fn route(conversation: &str, json: bool) -> Result<()> {
    let conversation = gc_archive::ConversationId::parse(conversation)?;
    let deps = gc_archive::bootstrap::handler_deps("cli", &env(), &sdk().await).await?;
    let explained = deps.service.explain_routes(&conversation).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explained)?);
        return Ok(());
    }
    let source = deps
        .service
        .routes
        .as_ref()
        .map(|t| t.source.clone())
        .unwrap_or_default();
    println!("conversation {conversation} (rules from {source})");
    for e in &explained {
        println!(
            "\n  recording {} ({})",
            e.recording_id,
            e.media.as_deref().unwrap_or("unknown kind")
        );
        println!("    facts: {}", e.facts);
        for line in &e.passed_over {
            println!("    passed over: {line}");
        }
        match &e.decision {
            Ok(r) => println!(
                "    the rules send it to target {:?} (s3://{}/{}) by {}",
                r.target,
                r.bucket,
                r.prefix,
                r.rule
                    .as_deref()
                    .map(|n| format!("rule {n:?}"))
                    .unwrap_or_else(|| "the default target".into())
            ),
            Err(reason) => println!("    the rules send it nowhere: {reason}"),
        }
        if let Some(r) = &e.recorded {
            println!(
                "    recorded: target {:?} (s3://{}/{}) by {}, decided {} from {}; this wins over the current rules",
                r.target,
                r.bucket,
                r.prefix,
                r.rule.as_deref().map(|n| format!("rule {n:?}")).unwrap_or_else(|| "the default target".into()),
                r.decided_at.format("%Y-%m-%d %H:%M:%S UTC"),
                r.config
            );
        }
        if e.refused.is_empty() {
            println!("    its target passes every required compliance check");
        } else {
            println!("    its target is refused, the recording waits:");
            for f in &e.refused {
                println!("      {f}");
            }
        }
    }
    Ok(())
}

/// `gc-archive validate-routing --file`: exit 0 when valid, 1 with the field or line.
pub fn validate_routing(file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match gc_archive::routing::RoutingConfig::from_document(&text) {
        Ok(c) => {
            println!(
                "{}: valid: {} targets ({}), {} rules, default {}",
                file.display(),
                c.targets.len(),
                c.targets.keys().cloned().collect::<Vec<_>>().join(", "),
                c.rules.len(),
                c.default_target
                    .as_deref()
                    .unwrap_or("none (unmatched recordings wait)")
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            std::process::exit(1);
        }
    }
}

/// `gc-archive compliance`: every target's checks; exit 1 when one fails a required check.
pub async fn compliance(probe: bool, json: bool) -> Result<()> {
    let rt = gc_archive::bootstrap::router_runtime(&env(), &sdk().await).await?;
    let report = gc_archive::compliance::check_all(
        &rt.targets,
        rt.inspector.as_ref(),
        probe,
        &rt.config_source,
        chrono::Utc::now(),
    )
    .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", gc_archive::compliance::to_text(&report));
    }
    if !report.compliant() {
        std::process::exit(1);
    }
    Ok(())
}

/// `gc-archive report --from --to`: the audit report, written to S3 (and `--out`), the
/// Markdown on stdout.
pub async fn report(
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    out: Option<std::path::PathBuf>,
) -> Result<()> {
    let rt = gc_archive::bootstrap::router_runtime(&env(), &sdk().await).await?;
    let (r, keys) =
        gc_archive::handlers::storage_router::audit_report(&rt, from, to, chrono::Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", gc_archive::audit::report::to_markdown(&r));
    for k in &keys {
        eprintln!("wrote s3://{}/{k}", rt.store.bucket());
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir)?;
        for (name, body) in [
            ("audit-report.json", serde_json::to_string_pretty(&r)?),
            (
                "audit-report.md",
                gc_archive::audit::report::to_markdown(&r),
            ),
            ("audit-report.html", gc_archive::audit::report::to_html(&r)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// `gc-archive setup --check | --apply`: exit 1 when something fails (after `--apply`, what
/// it could not fix).
pub async fn setup(args: SetupArgs) -> Result<()> {
    anyhow::ensure!(args.check || args.apply, "say --check or --apply");
    let (config, genesys) = gc_archive::bootstrap::genesys_from_env(&env(), &sdk().await).await?;
    let options = gc_archive::setup::SetupOptions {
        aws_account_id: args.aws_account_id,
        aws_region: args.aws_region,
        event_source_suffix: args.event_source_suffix,
        topics: gc_archive::setup::ARCHIVE_TOPICS
            .iter()
            .map(|t| t.to_string())
            .collect(),
        min_retention_days: args.min_retention_days,
        write_back: config.archive.write_back,
        apply: args.apply,
    };
    let findings = gc_archive::setup::run(&genesys, &options).await;
    for f in &findings {
        let mark = match f.status {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!(
            "{mark:4} {:24} {}{}",
            f.area,
            f.detail,
            if f.changed { " [changed]" } else { "" }
        );
        if f.status != Status::Pass {
            if let Some(fix) = &f.fix {
                println!("     {:24} fix: {fix}", "");
            }
        }
    }
    if findings.iter().any(|f| f.status == Status::Fail) {
        std::process::exit(1);
    }
    Ok(())
}
