//! `gc-sim`: run the Genesys Cloud API simulator from the command line.

#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use genesys_sim::{
    AcceptedBody, Behaviour, CustomAttributesListShape, ExpiredUrl, MediaContentType, MediaUriKeys,
    NoneFormat, OrgLimits, RangeSupport, SeedSpec, SimConfig, Simulator, TranscodeSerial,
};

/// Genesys Cloud Platform API simulator (OAuth, recordings with renditions in every formatId,
/// batch downloads, signed media, custom attributes, analytics) with fault injection via
/// `POST /__sim/faults`. Defaults follow the API documentation; where it is silent, the
/// default is the behaviour that assumes least about the service, and a flag selects the other.
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
    /// Batch download resultUrl lifetime (seconds).
    #[arg(long, default_value_t = 3_600)]
    batch_url_ttl: u64,
    /// Batch job GETs answering InProgress before the job is Completed.
    #[arg(long, default_value_t = 1)]
    batch_polls: u32,
    /// Media URLs ignore Range and answer 200 with the full body (the default; kept as an alias).
    #[arg(long, conflicts_with = "range_honoured")]
    ignore_range: bool,
    /// Media URLs honour Range (206 with Content-Range, 416).
    #[arg(long)]
    range_honoured: bool,
    /// formatId=NONE hands out a media URL of the original bytes (default: metadata only, as documented).
    #[arg(long)]
    none_serves_original: bool,
    /// mediaUris keys "0" and "1" (two streams) instead of the single key "S".
    #[arg(long)]
    per_channel_uris: bool,
    /// The org limits list client.credentials.token.rate.per.minute (platform.api).
    #[arg(long)]
    list_org_limits: bool,
    /// Content-Type of media URL responses.
    #[arg(long, value_enum, default_value_t = ContentTypeArg::OctetStream)]
    content_type: ContentTypeArg,
    /// Body of a 202 from the recording GET.
    #[arg(long, value_enum, default_value_t = AcceptedBodyArg::Empty)]
    accepted_body: AcceptedBodyArg,
    /// Status of expired or invalidated media URLs.
    #[arg(long, value_enum, default_value_t = ExpiredArg::Forbidden)]
    expired_url: ExpiredArg,
    /// Shape of the custom attributes listing.
    #[arg(long, value_enum, default_value_t = ListArg::Results)]
    custom_attributes_list: ListArg,
    /// MD5 ETag and x-amz-checksum-sha256 (with x-amz-checksum-mode: ENABLED) on media.
    #[arg(long)]
    media_checksums: bool,
    /// Ogg renditions are the same bytes every time (default: a fresh encode per URL).
    #[arg(long)]
    stable_transcodes: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ContentTypeArg {
    OctetStream,
    Accurate,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AcceptedBodyArg {
    Empty,
    RecordingJson,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExpiredArg {
    Forbidden,
    BadRequest,
    Unauthorized,
    Gone,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ListArg {
    Results,
    Entities,
    BareArray,
}

fn behaviour(a: &Args) -> Behaviour {
    Behaviour {
        none_format: if a.none_serves_original {
            NoneFormat::ServesOriginal
        } else {
            NoneFormat::MetadataOnly
        },
        media_uri_keys: if a.per_channel_uris {
            MediaUriKeys::PerChannel
        } else {
            MediaUriKeys::Single
        },
        media_content_type: match a.content_type {
            ContentTypeArg::OctetStream => MediaContentType::OctetStream,
            ContentTypeArg::Accurate => MediaContentType::Accurate,
        },
        accepted_body: match a.accepted_body {
            AcceptedBodyArg::Empty => AcceptedBody::Empty,
            AcceptedBodyArg::RecordingJson => AcceptedBody::RecordingJson,
        },
        range: if a.range_honoured && !a.ignore_range {
            RangeSupport::Honoured
        } else {
            RangeSupport::Ignored
        },
        expired_url: match a.expired_url {
            ExpiredArg::Forbidden => ExpiredUrl::Forbidden,
            ExpiredArg::BadRequest => ExpiredUrl::BadRequest,
            ExpiredArg::Unauthorized => ExpiredUrl::Unauthorized,
            ExpiredArg::Gone => ExpiredUrl::Gone,
        },
        custom_attributes_list: match a.custom_attributes_list {
            ListArg::Results => CustomAttributesListShape::Results,
            ListArg::Entities => CustomAttributesListShape::Entities,
            ListArg::BareArray => CustomAttributesListShape::BareArray,
        },
        media_checksums: a.media_checksums,
        transcode_serial: if a.stable_transcodes {
            TranscodeSerial::Stable
        } else {
            TranscodeSerial::PerEncode
        },
        org_limits: if a.list_org_limits {
            OrgLimits::PerTokenPerMinute
        } else {
            OrgLimits::Unlisted
        },
    }
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
        behaviour: behaviour(&a),
        client_id: a.client_id,
        client_secret: a.client_secret,
        token_ttl_secs: a.token_ttl,
        media_url_ttl_secs: a.url_ttl,
        batch_url_ttl_secs: a.batch_url_ttl,
        batch_polls: a.batch_polls,
        seed: Some(SeedSpec {
            conversations: a.conversations,
            days: a.days,
            rng_seed: a.rng_seed,
        }),
        ..SimConfig::default()
    };
    let b = cfg.behaviour.clone();
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
    println!(
        "  behaviour:     NONE={:?} mediaUris={:?} Content-Type={:?} 202 body={:?} Range={:?} expired URL={:?} custom attributes list={:?} checksums={} Ogg serial={:?}",
        b.none_format,
        b.media_uri_keys,
        b.media_content_type,
        b.accepted_body,
        b.range,
        b.expired_url,
        b.custom_attributes_list,
        b.media_checksums,
        b.transcode_serial
    );
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
        println!("  # a rendition in any formatId (WAV, WEBM, WAV_ULAW, OGG_VORBIS, OGG_OPUS, MP3; default WEBM);");
        println!("  # formatId=NONE is metadata only (no mediaUris)");
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/api/v2/conversations/{}/recordings/{}?formatId=OGG_OPUS'",
            c.id, r.id
        );
        println!("  curl -s -o media.bin '<a mediaUris.*.mediaUri from the previous answer>'   # signed URL, no token");
        println!("  # original bytes (no transcode) via a batch download job:");
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' {base}/api/v2/recording/batchrequests -d '{{\"batchDownloadRequestList\":[{{\"conversationId\":\"{}\"}}]}}'",
            c.id
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v2/recording/batchrequests/<id>   # InProgress, then Completed with resultUrl"
        );
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
