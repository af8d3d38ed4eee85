//! upload-bench: upload-proxy's direct-to-S3 path against plain uploads of the same bytes into
//! the same moto, and what the function itself spends in CPU per GiB.
//!
//! This process is "the function": it runs `gc_archive_it::upload_kit`'s rig (the Genesys
//! simulator, moto, the runtime `bootstrap::upload_runtime` builds, the API served on loopback
//! from a tokio task). Every client is a child process of this binary (`--client MODE`, a JSON
//! job on stdin, one JSON line on stdout), so this process's CPU time is the function's alone:
//! the client's hashing, its part PUTs and the SDK uploads are counted in the children, and
//! moto is its own process. Per run, on a fresh key:
//!
//! * **presigned**: `create` (POST /uploads), `parts` (per part: SHA-256, POST
//!   /uploads/{id}/parts, PUT to the presigned URL with the signed headers; `--in-flight` parts
//!   at once, as the page does), `complete` (POST /uploads/{id}/complete: CompleteMultipartUpload,
//!   the read-back verification, the link message). Three children, so the function's CPU is
//!   taken around each phase; the wall times are the children's own, without process start-up.
//! * **sdk-put**: one `PutObject` of the whole file with the AWS SDK.
//! * **sdk-multipart**: an SDK multipart upload, 8 MiB parts, `--in-flight` at once.
//!
//! The SDK clients send no request checksums (`WhenRequired`): plain uploads, for reference.
//! Afterwards a `hash` child times the read-back's hashing alone, in memory, and, unless
//! `--skip-s3-mode`, one presigned upload with declared whole-file hashes against a rig with
//! `UPLOAD_VERIFY=s3` shows which verification the function used on moto.
//!
//! Figures only; nothing is asserted about speed. The uploads' results are checked: the
//! function must answer `delivered` with the SHA-256 of the file sent.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use aws_sdk_s3::primitives::ByteStream;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use gc_archive_bench::{
    current_exe, last_json_line, machine, mbps, peak_rss_mib, print_machine, proc_status_kib_of,
    Generator, Table, MIB,
};
use gc_archive_it::stack::BUCKET;
use gc_archive_it::upload_kit::{RigOptions, UploadRig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// Every generated file starts like a PDF, the type it is declared as (the function checks).
const PDF_HEAD: &[u8] = b"%PDF-1.7\n";
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "upload-proxy: presigned parts vs plain SDK uploads into moto; function CPU per GiB"
)]
struct Args {
    /// File size (MiB).
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Runs of each method (each on a fresh key).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Parts in flight, for the presigned client and the SDK multipart upload.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Part size of the SDK multipart upload (MiB); the function plans 8 MiB parts itself.
    #[arg(long, default_value_t = 8)]
    sdk_part_mib: u64,
    /// Skip the UPLOAD_VERIFY=s3 run.
    #[arg(long)]
    skip_s3_mode: bool,

    // ---- client mode (internal): the job is JSON on stdin ----
    #[arg(long, hide = true)]
    client: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.mib >= 1, "--mib must be at least 1");
    ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
    ensure!(args.sdk_part_mib >= 5, "S3 parts are at least 5 MiB");
    // Blocking-pool threads are kept for the whole run: a thread that exits takes its CPU
    // time out of `/proc/self/task`, which the function's CPU figure sums.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .build()?;
    match args.client.clone() {
        Some(mode) => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let out = rt.block_on(client(&mode, &input))?;
            println!("{out}");
            Ok(())
        }
        None => rt.block_on(parent(args)),
    }
}

// ------------------------------------------------------------------------------------------
// The file, the same in every process that needs it.

fn file_bytes(mib: u64, seed: u64) -> Bytes {
    let mut v = vec![0u8; (mib * MIB) as usize];
    Generator::new(seed).fill(&mut v);
    v[..PDF_HEAD.len()].copy_from_slice(PDF_HEAD);
    Bytes::from(v)
}

fn b64_sha256(bytes: &[u8]) -> String {
    B64.encode(Sha256::digest(bytes))
}

// ------------------------------------------------------------------------------------------
// Clients (child processes).

/// Where the upload API is and the ticket to call it with (a bearer credential: it travels
/// on the child's stdin, never on its command line).
#[derive(Serialize, Deserialize)]
struct Api {
    base_url: String,
    ticket: String,
}

#[derive(Serialize, Deserialize)]
struct CreateJob {
    api: Api,
    name: String,
    mib: u64,
    seed: u64,
    /// Declare the whole file's SHA-256 and MD5 (the page does not).
    declare_hashes: bool,
}

#[derive(Serialize, Deserialize)]
struct PartsJob {
    api: Api,
    upload_id: String,
    part_size: u64,
    part_count: u32,
    mib: u64,
    seed: u64,
    in_flight: usize,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct PartDigest {
    part_number: u32,
    sha256: String,
}

#[derive(Serialize, Deserialize)]
struct CompleteJob {
    api: Api,
    upload_id: String,
    parts: Vec<PartDigest>,
}

#[derive(Serialize, Deserialize)]
struct SdkJob {
    endpoint: String,
    bucket: String,
    key: String,
    mib: u64,
    seed: u64,
    in_flight: usize,
    part_mib: u64,
}

async fn client(mode: &str, input: &str) -> anyhow::Result<Value> {
    match mode {
        "create" => create_client(serde_json::from_str(input)?).await,
        "parts" => parts_client(serde_json::from_str(input)?).await,
        "complete" => complete_client(serde_json::from_str(input)?).await,
        "sdk-put" => sdk_put_client(serde_json::from_str(input)?).await,
        "sdk-multipart" => sdk_multipart_client(serde_json::from_str(input)?).await,
        "hash" => hash_client(serde_json::from_str(input)?),
        other => bail!("unknown client mode {other:?}"),
    }
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?)
}

async fn call(
    http: &reqwest::Client,
    api: &Api,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let response = http
        .post(format!("{}{path}", api.base_url))
        .header("x-upload-ticket", &api.ticket)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn create_client(job: CreateJob) -> anyhow::Result<Value> {
    let size = job.mib * MIB;
    let mut body = json!({"fileName": job.name, "fileType": "application/pdf", "size": size});
    if job.declare_hashes {
        let bytes = file_bytes(job.mib, job.seed);
        body["sha256"] = json!(b64_sha256(&bytes));
        body["md5"] = json!(B64.encode(<md5::Md5 as md5::Digest>::digest(&bytes)));
    }
    let http = http()?;
    let t = Instant::now();
    let (status, created) = call(&http, &job.api, "/uploads", &body).await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(status == 201, "create answered {status}: {created}");
    Ok(json!({
        "secs": secs,
        "upload_id": created["uploadId"],
        "part_size": created["partSize"],
        "part_count": created["partCount"],
    }))
}

/// What one part's hash, sign and PUT took.
struct PartDone {
    digest: PartDigest,
    sign: Duration,
    put: Duration,
    /// The error codes of the sign calls refused (409/503) before one succeeded.
    conflicts: Vec<String>,
}

/// Signs part `n`, again after a 409 or a 503 `busy` (the service's own retries on its record
/// ran out; the page retries a 503 too); returns the signed part and the codes of the
/// refusals it took. Expected to be none: the figure shows whether contention remains.
async fn sign(
    http: &reqwest::Client,
    api: &Api,
    upload_id: &str,
    digest: &PartDigest,
) -> anyhow::Result<(Value, Vec<String>)> {
    let body = json!({ "parts": [digest] });
    let path = format!("/uploads/{upload_id}/parts");
    let mut conflicts = Vec::new();
    for attempt in 0..10u64 {
        let (status, signed) = call(http, api, &path, &body).await?;
        match status {
            200 => return Ok((signed["parts"][0].clone(), conflicts)),
            409 | 503 => {
                conflicts.push(signed["error"]["code"].as_str().unwrap_or("?").to_string());
                tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
            }
            _ => bail!(
                "sign of part {} answered {status}: {signed}",
                digest.part_number
            ),
        }
    }
    bail!(
        "part {} could not be signed in 10 attempts",
        digest.part_number
    )
}

async fn send_part(
    http: reqwest::Client,
    api: std::sync::Arc<Api>,
    upload_id: std::sync::Arc<str>,
    part: Bytes,
    n: u32,
) -> anyhow::Result<PartDone> {
    let hashed = part.clone();
    let sha256 = tokio::task::spawn_blocking(move || b64_sha256(&hashed)).await?;
    let digest = PartDigest {
        part_number: n,
        sha256,
    };
    let t = Instant::now();
    let (signed, conflicts) = sign(&http, &api, &upload_id, &digest).await?;
    let sign_took = t.elapsed();
    let url = signed["url"].as_str().context("signed part without url")?;
    let mut put = http.put(url).body(part);
    for (k, v) in signed["headers"]
        .as_object()
        .context("signed part without headers")?
    {
        put = put.header(k.as_str(), v.as_str().unwrap_or_default());
    }
    let t = Instant::now();
    let response = put.send().await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!(
            "PUT of part {n} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    Ok(PartDone {
        digest,
        sign: sign_took,
        put: t.elapsed(),
        conflicts,
    })
}

async fn parts_client(job: PartsJob) -> anyhow::Result<Value> {
    let bytes = file_bytes(job.mib, job.seed);
    let size = bytes.len() as u64;
    ensure!(
        u64::from(job.part_count) == size.div_ceil(job.part_size),
        "the plan's {} parts of {} B do not cover {size} B",
        job.part_count,
        job.part_size
    );
    let http = http()?;
    let api = std::sync::Arc::new(job.api);
    let upload_id: std::sync::Arc<str> = job.upload_id.into();
    let t = Instant::now();
    let results: Vec<anyhow::Result<PartDone>> = futures::stream::iter(1..=job.part_count)
        .map(|n| {
            let start = u64::from(n - 1) * job.part_size;
            let end = (start + job.part_size).min(size);
            let part = bytes.slice(start as usize..end as usize);
            tokio::spawn(send_part(
                http.clone(),
                api.clone(),
                upload_id.clone(),
                part,
                n,
            ))
        })
        .buffer_unordered(job.in_flight)
        .map(|joined| joined.map_err(anyhow::Error::from).and_then(|r| r))
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let mut done = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    done.sort_by_key(|d| d.digest.part_number);
    let count = done.len().max(1) as f64;
    let sign_ms = done.iter().map(|d| d.sign.as_secs_f64()).sum::<f64>() * 1e3 / count;
    let put_ms = done.iter().map(|d| d.put.as_secs_f64()).sum::<f64>() * 1e3 / count;
    let conflicts: Vec<&String> = done.iter().flat_map(|d| &d.conflicts).collect();
    Ok(json!({
        "secs": secs,
        "sign_ms_mean": sign_ms,
        "put_ms_mean": put_ms,
        "sign_409s": conflicts.len(),
        "sign_409_codes": conflicts,
        "sha256_hex": hex::encode(Sha256::digest(&bytes)),
        "parts": done.into_iter().map(|d| d.digest).collect::<Vec<_>>(),
    }))
}

async fn complete_client(job: CompleteJob) -> anyhow::Result<Value> {
    let http = http()?;
    let t = Instant::now();
    let (status, view) = call(
        &http,
        &job.api,
        &format!("/uploads/{}/complete", job.upload_id),
        &json!({ "parts": job.parts }),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(status == 200, "complete answered {status}: {view}");
    Ok(json!({
        "secs": secs,
        "state": view["state"],
        "sha256_hex": view["sha256Hex"],
        "delivery": view["delivery"]["kind"],
        "key": view["object"]["key"],
    }))
}

#[derive(Serialize, Deserialize)]
struct HashJob {
    mib: u64,
    seed: u64,
}

/// What the read-back verification computes over every byte, without the I/O: SHA-256 of
/// the whole file, SHA-256 of each 8 MiB part and MD5, each a pass of its own over bytes in
/// memory, then all three over each 64 KiB chunk in turn (as `read_back` feeds the chunks of
/// the GetObject body), timed by this thread's CPU time.
fn hash_client(job: HashJob) -> anyhow::Result<Value> {
    let bytes = file_bytes(job.mib, job.seed);
    let cpu = || gc_archive_bench::thread_cpu_time().context("/proc/thread-self/schedstat");
    let t0 = cpu()?;
    let whole = Sha256::digest(&bytes);
    let t1 = cpu()?;
    let parts: Vec<_> = bytes
        .chunks(gc_archive::upload::plan::MIN_PART_BYTES as usize)
        .map(Sha256::digest)
        .collect();
    let t2 = cpu()?;
    let md5 = <md5::Md5 as md5::Digest>::digest(&bytes);
    let t3 = cpu()?;
    let part_len = gc_archive::upload::plan::MIN_PART_BYTES as usize;
    let (mut all, mut part, mut md) = (Sha256::new(), Sha256::new(), md5::Md5::default());
    let mut part_digests = Vec::new();
    for (i, chunk) in bytes.chunks(64 * 1024).enumerate() {
        all.update(chunk);
        part.update(chunk);
        md5::Digest::update(&mut md, chunk);
        if ((i + 1) * 64 * 1024).is_multiple_of(part_len) {
            part_digests.push(std::mem::take(&mut part).finalize());
        }
    }
    if !bytes.len().is_multiple_of(part_len) {
        part_digests.push(part.finalize());
    }
    let together = (all.finalize(), md5::Digest::finalize(md));
    let t4 = cpu()?;
    let gib = bytes.len() as f64 / GIB;
    let per_gib = |d: Duration| d.as_secs_f64() * 1e3 / gib;
    Ok(json!({
        "sha256_ms_per_gib": per_gib(t1 - t0),
        "part_sha256_ms_per_gib": per_gib(t2 - t1),
        "md5_ms_per_gib": per_gib(t3 - t2),
        "interleaved_ms_per_gib": per_gib(t4 - t3),
        "agree": together.0 == whole && together.1 == md5 && part_digests == parts,
    }))
}

async fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(gc_archive_it::moto::REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            gc_archive_it::moto::ACCESS_KEY,
            gc_archive_it::moto::SECRET_KEY,
            None,
            None,
            "upload-bench",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

async fn sdk_put_client(job: SdkJob) -> anyhow::Result<Value> {
    let bytes = file_bytes(job.mib, job.seed);
    let s3 = sdk_client(&job.endpoint).await;
    let t = Instant::now();
    s3.put_object()
        .bucket(&job.bucket)
        .key(&job.key)
        .content_type("application/pdf")
        .body(ByteStream::from(bytes))
        .send()
        .await
        .context("PutObject")?;
    Ok(json!({ "secs": t.elapsed().as_secs_f64() }))
}

async fn sdk_multipart_client(job: SdkJob) -> anyhow::Result<Value> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let bytes = file_bytes(job.mib, job.seed);
    let size = bytes.len() as u64;
    let part_size = job.part_mib * MIB;
    let count = size.div_ceil(part_size) as i32;
    let s3 = sdk_client(&job.endpoint).await;
    let t = Instant::now();
    let id = s3
        .create_multipart_upload()
        .bucket(&job.bucket)
        .key(&job.key)
        .content_type("application/pdf")
        .send()
        .await
        .context("CreateMultipartUpload")?
        .upload_id()
        .context("no upload id")?
        .to_string();
    let results: Vec<anyhow::Result<CompletedPart>> = futures::stream::iter(1..=count)
        .map(|n| {
            let start = (n - 1) as u64 * part_size;
            let end = (start + part_size).min(size);
            let part = bytes.slice(start as usize..end as usize);
            let (s3, bucket, key, id) =
                (s3.clone(), job.bucket.clone(), job.key.clone(), id.clone());
            tokio::spawn(async move {
                let out = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .with_context(|| format!("UploadPart {n}"))?;
                Ok(CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().unwrap_or_default())
                    .build())
            })
        })
        .buffer_unordered(job.in_flight)
        .map(|joined| joined.map_err(anyhow::Error::from).and_then(|r| r))
        .collect()
        .await;
    let mut parts = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    parts.sort_by_key(|p| p.part_number());
    let parts_secs = t.elapsed().as_secs_f64();
    let c = Instant::now();
    s3.complete_multipart_upload()
        .bucket(&job.bucket)
        .key(&job.key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .context("CompleteMultipartUpload")?;
    Ok(json!({
        "secs": t.elapsed().as_secs_f64(),
        "parts_secs": parts_secs,
        "complete_secs": c.elapsed().as_secs_f64(),
    }))
}

// ------------------------------------------------------------------------------------------
// This process's CPU time.

/// CPU time of this process: every thread's run time from `/proc/self/task/*/schedstat`
/// (nanoseconds), and utime + stime from `/proc/self/stat` (clock ticks, 10 ms, but also
/// counting threads that have exited).
struct CpuSnapshot {
    threads: HashMap<String, u64>,
    ticks: u64,
}

fn cpu_snapshot() -> anyhow::Result<CpuSnapshot> {
    let mut threads = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        // A thread can exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .context("schedstat without run time")?;
        threads.insert(task.file_name().to_string_lossy().into_owned(), ns);
    }
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("/proc/self/stat field")?.parse()?)
    };
    Ok(CpuSnapshot {
        threads,
        ticks: field(11)? + field(12)?,
    })
}

/// CPU seconds between two snapshots: the threads' sum, unless a thread exited in between
/// (then the coarser tick count, which still holds its time); and the tick figure.
fn cpu_between(before: &CpuSnapshot, after: &CpuSnapshot, clk_tck: f64) -> (f64, f64) {
    let ticks = (after.ticks.saturating_sub(before.ticks)) as f64 / clk_tck;
    let vanished = before
        .threads
        .keys()
        .any(|t| !after.threads.contains_key(t));
    if vanished {
        return (ticks, ticks);
    }
    let ns: u64 = after
        .threads
        .iter()
        .map(|(t, a)| a.saturating_sub(before.threads.get(t).copied().unwrap_or(0)))
        .sum();
    (ns as f64 / 1e9, ticks)
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// Child processes of this process whose command line names `moto_server`.
fn moto_pids() -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("moto_server") {
                pids.insert(pid);
            }
        }
    }
    pids
}

// ------------------------------------------------------------------------------------------
// Parent: the rig (the function), the clients, the report.

async fn run_client(mode: &str, job: &impl Serialize) -> anyhow::Result<Value> {
    let mut child = tokio::process::Command::new(current_exe()?)
        .args(["--client", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("the client's stdin")?;
    stdin
        .write_all(serde_json::to_string(job)?.as_bytes())
        .await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    ensure!(out.status.success(), "client {mode} failed");
    last_json_line(&String::from_utf8_lossy(&out.stdout))
}

/// One presigned upload through the rig: wall times from the clients, the function's CPU
/// around each phase.
struct Presigned {
    create_secs: f64,
    parts_secs: f64,
    complete_secs: f64,
    create_cpu: f64,
    sign_cpu: f64,
    complete_cpu: f64,
    part_count: u32,
    sign_ms_mean: f64,
    put_ms_mean: f64,
    sign_409_codes: Vec<String>,
    upload_id: String,
    cpu_ticks: [f64; 3],
}

impl Presigned {
    fn total_secs(&self) -> f64 {
        self.create_secs + self.parts_secs + self.complete_secs
    }
}

async fn presigned_run(
    rig: &UploadRig,
    args: &Args,
    seed: u64,
    declare_hashes: bool,
    tck: f64,
) -> anyhow::Result<Presigned> {
    let api = || Api {
        base_url: rig.base_url.clone(),
        ticket: rig.ticket(),
    };
    let c0 = cpu_snapshot()?;
    let created = run_client(
        "create",
        &CreateJob {
            api: api(),
            name: format!("upload-bench-{seed}.pdf"),
            mib: args.mib,
            seed,
            declare_hashes,
        },
    )
    .await?;
    let c1 = cpu_snapshot()?;
    let upload_id = created["upload_id"]
        .as_str()
        .context("upload id")?
        .to_string();
    let part_size = created["part_size"].as_u64().context("part size")?;
    let part_count = created["part_count"].as_u64().context("part count")? as u32;
    let parts = run_client(
        "parts",
        &PartsJob {
            api: api(),
            upload_id: upload_id.clone(),
            part_size,
            part_count,
            mib: args.mib,
            seed,
            in_flight: args.in_flight,
        },
    )
    .await?;
    let c2 = cpu_snapshot()?;
    let digests: Vec<PartDigest> = serde_json::from_value(parts["parts"].clone())?;
    let completed = run_client(
        "complete",
        &CompleteJob {
            api: api(),
            upload_id: upload_id.clone(),
            parts: digests,
        },
    )
    .await?;
    let c3 = cpu_snapshot()?;
    ensure!(
        completed["state"] == "delivered",
        "the upload ended {}, not delivered",
        completed["state"]
    );
    ensure!(
        completed["sha256_hex"] == parts["sha256_hex"],
        "the function verified SHA-256 {}, the file's is {}",
        completed["sha256_hex"],
        parts["sha256_hex"]
    );
    // The object is not needed any more: moto keeps every object on disk and in memory.
    if let Some(key) = completed["key"].as_str() {
        rig.stack
            .s3
            .delete_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await?;
    }
    let (create_cpu, t0) = cpu_between(&c0, &c1, tck);
    let (sign_cpu, t1) = cpu_between(&c1, &c2, tck);
    let (complete_cpu, t2) = cpu_between(&c2, &c3, tck);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Presigned {
        create_secs: f(&created, "secs"),
        parts_secs: f(&parts, "secs"),
        complete_secs: f(&completed, "secs"),
        create_cpu,
        sign_cpu,
        complete_cpu,
        part_count,
        sign_ms_mean: f(&parts, "sign_ms_mean"),
        put_ms_mean: f(&parts, "put_ms_mean"),
        sign_409_codes: serde_json::from_value(parts["sign_409_codes"].clone())?,
        upload_id,
        cpu_ticks: [t0, t1, t2],
    })
}

struct SdkRun {
    secs: f64,
    parts_secs: Option<f64>,
    complete_secs: Option<f64>,
    /// This process's CPU while the SDK client uploaded: the function is idle, so this is
    /// the measurement's floor.
    idle_cpu: f64,
}

async fn sdk_run(
    rig: &UploadRig,
    args: &Args,
    mode: &str,
    seed: u64,
    tck: f64,
) -> anyhow::Result<SdkRun> {
    let key = format!("upload-bench/{mode}-{seed}");
    let c0 = cpu_snapshot()?;
    let out = run_client(
        mode,
        &SdkJob {
            endpoint: rig.stack.moto.endpoint_url(),
            bucket: BUCKET.to_string(),
            key: key.clone(),
            mib: args.mib,
            seed,
            in_flight: args.in_flight,
            part_mib: args.sdk_part_mib,
        },
    )
    .await?;
    let c1 = cpu_snapshot()?;
    let head = rig
        .stack
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await?;
    ensure!(
        head.content_length() == Some((args.mib * MIB) as i64),
        "{key} is {:?} bytes in moto",
        head.content_length()
    );
    rig.stack
        .s3
        .delete_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await?;
    Ok(SdkRun {
        secs: out["secs"].as_f64().unwrap_or(0.0),
        parts_secs: out["parts_secs"].as_f64(),
        complete_secs: out["complete_secs"].as_f64(),
        idle_cpu: cpu_between(&c0, &c1, tck).0,
    })
}

/// Median and range of a sample.
fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    (median, v[0], v[v.len() - 1])
}

fn stats_json(values: &[f64]) -> Value {
    let (median, min, max) = stats(values);
    json!({"median": median, "min": min, "max": max, "runs": values})
}

fn row(table: &mut Table, name: &str, unit: &str, values: &[f64], digits: usize) {
    let (median, min, max) = stats(values);
    table.row(vec![
        name.to_string(),
        unit.to_string(),
        format!("{median:.digits$}"),
        format!("{min:.digits$} – {max:.digits$}"),
    ]);
}

async fn parent(args: Args) -> anyhow::Result<()> {
    let m = machine();
    print_machine(&m);
    let tck = clk_tck();
    let bytes = args.mib * MIB;
    let gib = bytes as f64 / GIB;
    eprintln!("[upload-bench] starting the rig (simulator, moto, upload-proxy runtime) ...");
    let before = moto_pids();
    let rig = UploadRig::start().await?;
    let moto_pid = moto_pids().difference(&before).next().copied();
    let moto_version = tokio::process::Command::new(gc_archive_it::venv::bin("python"))
        .args(["-c", "import moto; print(moto.__version__)"])
        .output()
        .await
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();

    let mut presigned = Vec::new();
    let mut puts = Vec::new();
    let mut multiparts = Vec::new();
    for run in 0..args.runs {
        let seed = 1000 + u64::from(run);
        eprintln!(
            "[upload-bench] run {}/{}: presigned parts, SDK PutObject, SDK multipart ({} MiB each) ...",
            run + 1,
            args.runs,
            args.mib
        );
        presigned.push(presigned_run(&rig, &args, seed, false, tck).await?);
        puts.push(sdk_run(&rig, &args, "sdk-put", seed, tck).await?);
        multiparts.push(sdk_run(&rig, &args, "sdk-multipart", seed, tck).await?);
    }
    let peak_rss = peak_rss_mib();
    let moto_peak_rss = moto_pid
        .and_then(|p| proc_status_kib_of(&p.to_string(), "VmHWM"))
        .map(|k| k as f64 / 1024.0);
    drop(rig);

    // UPLOAD_VERIFY=s3 with declared hashes: which verification the function really ran.
    let mut s3_mode = Value::Null;
    if !args.skip_s3_mode {
        eprintln!("[upload-bench] UPLOAD_VERIFY=s3 run (declared SHA-256 and MD5) ...");
        let rig = UploadRig::start_with(RigOptions {
            env: vec![("UPLOAD_VERIFY", "s3".to_string())],
            ..RigOptions::default()
        })
        .await?;
        let r = presigned_run(&rig, &args, 2000, true, tck).await?;
        let record = rig
            .upload_record(&r.upload_id)
            .await
            .context("the upload's record")?;
        let method = record["verified"]["method"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let s3_checked = record["s3CheckedParts"].as_bool();
        s3_mode = json!({
            "method": method,
            "s3_checked_parts": s3_checked,
            "complete_secs": r.complete_secs,
            "complete_cpu_ms": r.complete_cpu * 1e3,
            "complete_cpu_ms_per_gib": r.complete_cpu * 1e3 / gib,
        });
    }

    // What the read-back's hashing alone costs, in memory, in a child of its own.
    let mut hashing = Vec::new();
    for run in 0..args.runs {
        hashing.push(
            run_client(
                "hash",
                &HashJob {
                    mib: args.mib.min(256),
                    seed: 3000 + u64::from(run),
                },
            )
            .await?,
        );
    }

    // ---- report ----
    let col = |f: &dyn Fn(&Presigned) -> f64| presigned.iter().map(f).collect::<Vec<f64>>();
    let e2e = col(&|p| mbps(bytes, Duration::from_secs_f64(p.total_secs())));
    let parts_mbps = col(&|p| mbps(bytes, Duration::from_secs_f64(p.parts_secs)));
    let complete_secs = col(&|p| p.complete_secs);
    let create_ms = col(&|p| p.create_secs * 1e3);
    let sign_ms_mean = col(&|p| p.sign_ms_mean);
    let put_ms_mean = col(&|p| p.put_ms_mean);
    let put_mbps: Vec<f64> = puts
        .iter()
        .map(|r| mbps(bytes, Duration::from_secs_f64(r.secs)))
        .collect();
    let mpu_mbps: Vec<f64> = multiparts
        .iter()
        .map(|r| mbps(bytes, Duration::from_secs_f64(r.secs)))
        .collect();
    let mpu_parts_mbps: Vec<f64> = multiparts
        .iter()
        .map(|r| mbps(bytes, Duration::from_secs_f64(r.parts_secs.unwrap_or(0.0))))
        .collect();
    let mpu_complete: Vec<f64> = multiparts
        .iter()
        .map(|r| r.complete_secs.unwrap_or(0.0))
        .collect();
    let part_count = presigned.first().map_or(0, |p| p.part_count);
    let sign_409_codes: Vec<&String> = presigned.iter().flat_map(|p| &p.sign_409_codes).collect();
    let sign_409s = sign_409_codes.len();
    let signs: u32 = presigned.iter().map(|p| p.part_count).sum();
    let per_run_409s: Vec<usize> = presigned.iter().map(|p| p.sign_409_codes.len()).collect();

    println!();
    println!(
        "Throughput: {} MiB file into moto {moto_version}, {} runs each on a fresh key, {} in flight (MB/s = 10^6 B/s)",
        args.mib, args.runs, args.in_flight
    );
    let mut t = Table::new(&["method", "unit", "median", "range"]);
    row(&mut t, "a. presigned parts, end to end", "MB/s", &e2e, 1);
    row(
        &mut t,
        "   parts phase (hash + sign + PUT)",
        "MB/s",
        &parts_mbps,
        1,
    );
    row(&mut t, "   create", "ms", &create_ms, 1);
    row(
        &mut t,
        "   sign latency per part (mean)",
        "ms",
        &sign_ms_mean,
        1,
    );
    row(
        &mut t,
        "   PUT latency per part (mean)",
        "ms",
        &put_ms_mean,
        1,
    );
    row(
        &mut t,
        "   complete (join + Read verify + deliver)",
        "s",
        &complete_secs,
        2,
    );
    row(&mut t, "b. SDK PutObject", "MB/s", &put_mbps, 1);
    row(&mut t, "c. SDK multipart, end to end", "MB/s", &mpu_mbps, 1);
    row(&mut t, "   parts phase", "MB/s", &mpu_parts_mbps, 1);
    row(&mut t, "   CompleteMultipartUpload", "s", &mpu_complete, 2);
    t.print();
    if sign_409s > 0 {
        println!(
            "note: {sign_409s} of {signs} sign calls were refused ({}; per upload {per_run_409s:?}) and retried by the bench client",
            sign_409_codes.iter().map(|c| c.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
        );
    }

    let per_gib = |v: f64| v * 1e3 / gib;
    let create_cpu = col(&|p| p.create_cpu * 1e3);
    let sign_cpu = col(&|p| p.sign_cpu * 1e3);
    let sign_cpu_part = col(&|p| p.sign_cpu * 1e3 / f64::from(p.part_count.max(1)));
    let sign_cpu_gib = col(&|p| per_gib(p.sign_cpu));
    let complete_cpu = col(&|p| p.complete_cpu * 1e3);
    let complete_cpu_gib = col(&|p| per_gib(p.complete_cpu));
    let idle_cpu: Vec<f64> = puts.iter().map(|r| r.idle_cpu * 1e3).collect();
    println!();
    println!(
        "The function's CPU (this process; clients are child processes), {part_count} parts of 8 MiB per upload"
    );
    let mut t = Table::new(&["phase", "unit", "median", "range"]);
    row(&mut t, "create (1 call)", "ms", &create_cpu, 1);
    row(&mut t, "sign, all parts", "ms", &sign_cpu, 1);
    row(&mut t, "sign, per part", "ms", &sign_cpu_part, 2);
    row(&mut t, "sign, per GiB", "ms/GiB", &sign_cpu_gib, 0);
    row(&mut t, "complete, VerifyMode::Read", "ms", &complete_cpu, 0);
    row(
        &mut t,
        "complete, VerifyMode::Read, per GiB",
        "ms/GiB",
        &complete_cpu_gib,
        0,
    );
    let hashed = |k: &str| {
        hashing
            .iter()
            .map(|h| h[k].as_f64().unwrap_or(0.0))
            .collect::<Vec<_>>()
    };
    for (name, k) in [
        ("in memory: SHA-256 of the whole file", "sha256_ms_per_gib"),
        ("in memory: SHA-256 of each part", "part_sha256_ms_per_gib"),
        ("in memory: MD5", "md5_ms_per_gib"),
        (
            "in memory: all three per 64 KiB chunk",
            "interleaved_ms_per_gib",
        ),
    ] {
        row(&mut t, name, "ms/GiB", &hashed(k), 0);
    }
    row(
        &mut t,
        "floor: idle during an SDK PutObject",
        "ms",
        &idle_cpu,
        1,
    );
    t.print();
    if !s3_mode.is_null() {
        println!(
            "UPLOAD_VERIFY=s3 on moto: verified by {:?} (s3CheckedParts {}), complete {:.2} s, {:.0} ms CPU ({:.0} ms/GiB){}",
            s3_mode["method"].as_str().unwrap_or("?"),
            s3_mode["s3_checked_parts"],
            s3_mode["complete_secs"].as_f64().unwrap_or(0.0),
            s3_mode["complete_cpu_ms"].as_f64().unwrap_or(0.0),
            s3_mode["complete_cpu_ms_per_gib"].as_f64().unwrap_or(0.0),
            if s3_mode["method"] == "read" {
                ": moto lists no part checksums, so S3 mode fell back to reading everything"
            } else {
                ""
            }
        );
    }
    println!(
        "peak RSS: this process (function + simulator) {peak_rss:.0} MiB; moto {}",
        moto_peak_rss.map_or("?".to_string(), |v| format!("{v:.0} MiB"))
    );

    println!(
        "{}",
        json!({
            "bench": "upload-bench",
            "machine": m,
            "moto_version": moto_version,
            "mib": args.mib,
            "runs": args.runs,
            "in_flight": args.in_flight,
            "part_count": part_count,
            "presigned": {
                "end_to_end_mbps": stats_json(&e2e),
                "parts_phase_mbps": stats_json(&parts_mbps),
                "create_ms": stats_json(&create_ms),
                "sign_latency_ms_mean": stats_json(&sign_ms_mean),
                "put_latency_ms_mean": stats_json(&put_ms_mean),
                "complete_secs": stats_json(&complete_secs),
                "sign_409s": sign_409s,
                "sign_409_codes": sign_409_codes,
                "signs": signs,
                "sign_409s_per_upload": per_run_409s,
            },
            "sdk_put_mbps": stats_json(&put_mbps),
            "sdk_multipart": {
                "end_to_end_mbps": stats_json(&mpu_mbps),
                "parts_phase_mbps": stats_json(&mpu_parts_mbps),
                "complete_secs": stats_json(&mpu_complete),
            },
            "function_cpu": {
                "create_ms": stats_json(&create_cpu),
                "sign_ms": stats_json(&sign_cpu),
                "sign_ms_per_part": stats_json(&sign_cpu_part),
                "sign_ms_per_gib": stats_json(&sign_cpu_gib),
                "complete_read_ms": stats_json(&complete_cpu),
                "complete_read_ms_per_gib": stats_json(&complete_cpu_gib),
                "idle_floor_ms": stats_json(&idle_cpu),
                "tick_cross_check_secs": presigned.iter().map(|p| p.cpu_ticks.to_vec()).collect::<Vec<_>>(),
            },
            "s3_mode": s3_mode,
            "hashing_in_memory": hashing,
            "peak_rss_mib": peak_rss,
            "moto_peak_rss_mib": moto_peak_rss,
        })
    );
    Ok(())
}
