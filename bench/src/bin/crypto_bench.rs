//! crypto-bench: single-core throughput of the archive encryption (ESDK v2 frames, raw AES
//! keyring), of encryption plus one SHA-256 (the single-core limit the transfer benchmark
//! compares against) and of SHA-256 alone, against `openssl speed` measured in the same run; the
//! decryption round trip; the latency of the first encryption in a new process with and without
//! `gc_archive::crypto::warm_up`; and peak RSS for a small and a large input, each in its own
//! child process, to show memory does not grow with the input.
//!
//! Throughput is divided by the thread's CPU time, as `openssl speed` divides by its user CPU
//! time, so that other builds on a shared machine do not skew the ratio; wall-clock figures are
//! printed next to them. The input is generated chunk by chunk (never held whole).

#![forbid(unsafe_code)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use clap::Parser;
use gc_archive::crypto::{
    warm_up, DecryptOptions, EncryptionContext, FrameEncryptor, Keyring, RawAesKeyring,
    StreamDecryptor,
};
use gc_archive::transfer::hash::ResumableSha256;
use gc_archive_bench::{
    current_exe, last_json_line, machine, mbps, openssl_aes_gcm_mbps, peak_rss_mib, print_machine,
    thread_cpu_time, Generator, Table, MIB,
};
use serde_json::{json, Value};
use sha2::Digest as _;

/// `OPENSSL_ia32cap` value that hides AVX512F/DQ/BW/VL from aws-lc (and OpenSSL), so a child
/// measures the AES-NI/AVX2 GCM code that machines without AVX-512 run.
const MASK_AVX512: &str = ":~0xC0030000";

#[derive(Parser, Debug)]
#[command(
    about = "Encryption, decryption and SHA-256 throughput; first-encryption latency; \
                   peak RSS vs input size"
)]
struct Args {
    /// Input size of the encrypt/decrypt round trip (MiB).
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Plaintext handed to the encryptor per call (MiB); the transfer's part size.
    #[arg(long, default_value_t = 8)]
    chunk_mib: u64,
    /// ESDK frame length (bytes).
    #[arg(long, default_value_t = 65536)]
    frame_len: u32,
    /// Minimum duration of each throughput measurement (seconds).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Rounds of `openssl speed` followed at once by our encryption; the ratio is the median of
    /// the rounds' ratios, so a machine whose speed drifts compares like with like.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `openssl speed -seconds`, per round.
    #[arg(long, default_value_t = 1)]
    openssl_seconds: u32,
    /// Child processes per first-encryption case (without and with warm-up).
    #[arg(long, default_value_t = 5)]
    first_runs: usize,
    /// Input sizes (MiB) whose peak RSS is measured, each in a fresh child process.
    #[arg(long, value_delimiter = ',', default_values_t = [16u64, 1024])]
    rss_sizes_mib: Vec<u64>,
    /// Only run the encrypt+decrypt round trip of --size-mib and print one JSON line (the mode
    /// the parent uses for its per-size peak-RSS children).
    #[arg(long)]
    json: bool,
    /// Child mode: only the encryption throughput, as one JSON line.
    #[arg(long, hide = true)]
    child_encrypt: bool,
    /// Child mode: the other throughput measurements, as one JSON line.
    #[arg(long, hide = true)]
    child_throughput: bool,
    /// Child mode: time the first encryption of this process, as one JSON line.
    #[arg(long, hide = true)]
    child_first_encrypt: bool,
    /// With --child-first-encrypt: call `warm_up` first, as a Lambda's init would.
    #[arg(long, hide = true)]
    warm_up: bool,
}

fn keyring() -> anyhow::Result<Arc<dyn Keyring>> {
    Ok(Arc::new(RawAesKeyring::new(
        "gc-archive-bench",
        "crypto-bench",
        [0x42; 32],
    )?))
}

fn context() -> EncryptionContext {
    EncryptionContext::new()
        .with("orgId", "bench")
        .with("recordingId", "crypto-bench")
}

/// Bytes processed in a measured interval, with its wall-clock and (if readable) CPU time.
#[derive(Clone, Copy, Debug)]
struct Measure {
    bytes: u64,
    wall: Duration,
    cpu: Option<Duration>,
}

impl Measure {
    /// MB/s over CPU time, the divisor `openssl speed` uses; wall time if CPU time is unknown.
    fn mbps(&self) -> f64 {
        mbps(self.bytes, self.cpu.unwrap_or(self.wall))
    }

    fn wall_mbps(&self) -> f64 {
        mbps(self.bytes, self.wall)
    }

    fn json(&self) -> Value {
        json!({
            "bytes": self.bytes,
            "mbps": self.mbps(),
            "wall_mbps": self.wall_mbps(),
            "wall_s": self.wall.as_secs_f64(),
            "cpu_s": self.cpu.map(|c| c.as_secs_f64()),
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(Measure {
            bytes: v["bytes"].as_u64()?,
            wall: Duration::from_secs_f64(v["wall_s"].as_f64()?),
            cpu: v["cpu_s"].as_f64().map(Duration::from_secs_f64),
        })
    }
}

/// Runs `step` (which returns the plaintext bytes it processed) once untimed, so first-touch
/// page faults of reused buffers are not counted, then repeatedly for at least `min`.
fn time_boxed(
    min: Duration,
    mut step: impl FnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<Measure> {
    step()?;
    let cpu0 = thread_cpu_time();
    let t0 = Instant::now();
    let mut bytes = 0;
    loop {
        bytes += step()?;
        if t0.elapsed() >= min {
            break;
        }
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu0)
        .map(|(b, a)| b.saturating_sub(a));
    Ok(Measure { bytes, wall, cpu })
}

/// One generated plaintext chunk, encrypted again and again as the successive parts of one
/// message: every throughput figure is taken on these same bytes.
fn plaintext_chunk(chunk: usize) -> Vec<u8> {
    let mut plain = vec![0u8; chunk];
    Generator::new(0x9e37_79b9_7f4a_7c15).fill(&mut plain);
    plain
}

fn output_capacity(chunk: usize, frame_len: u32) -> usize {
    chunk + (chunk / frame_len as usize + 2) * 40
}

fn new_encryptor(
    rt: &tokio::runtime::Runtime,
    keyring: &dyn Keyring,
    frame_len: u32,
) -> anyhow::Result<FrameEncryptor> {
    Ok(rt.block_on(FrameEncryptor::new(keyring, context(), frame_len))?)
}

/// `encrypt_regular` of the chunk into one reused output buffer, one thread.
fn encrypt_only(
    rt: &tokio::runtime::Runtime,
    plain: &[u8],
    frame_len: u32,
    min: Duration,
) -> anyhow::Result<Measure> {
    let keyring = keyring()?;
    let mut enc = new_encryptor(rt, keyring.as_ref(), frame_len)?;
    let mut out: Vec<u8> = Vec::with_capacity(output_capacity(plain.len(), frame_len));
    time_boxed(min, || {
        out.clear();
        enc.encrypt_regular(plain, &mut out)?;
        Ok(plain.len() as u64)
    })
}

/// The other single-core figures, on the same chunk.
struct Throughput {
    /// `encrypt_regular` into a new `Vec` per chunk, as the transfer engine allocates its parts.
    encrypt_fresh: Measure,
    /// Encrypt, then SHA-256 (`sha2`) of the ciphertext part: encryption plus one hash.
    encrypt_sha256: Measure,
    sha2: Measure,
    resumable: Measure,
}

impl Throughput {
    fn json(&self) -> Value {
        json!({
            "encrypt_fresh_buffer": self.encrypt_fresh.json(),
            "encrypt_sha256": self.encrypt_sha256.json(),
            "sha256_sha2": self.sha2.json(),
            "sha256_resumable": self.resumable.json(),
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(Throughput {
            encrypt_fresh: Measure::from_json(&v["encrypt_fresh_buffer"])?,
            encrypt_sha256: Measure::from_json(&v["encrypt_sha256"])?,
            sha2: Measure::from_json(&v["sha256_sha2"])?,
            resumable: Measure::from_json(&v["sha256_resumable"])?,
        })
    }
}

fn throughput(
    rt: &tokio::runtime::Runtime,
    plain: &[u8],
    frame_len: u32,
    min: Duration,
) -> anyhow::Result<Throughput> {
    let keyring = keyring()?;
    let chunk = plain.len() as u64;
    let out_cap = output_capacity(plain.len(), frame_len);

    let mut enc = new_encryptor(rt, keyring.as_ref(), frame_len)?;
    let encrypt_fresh = time_boxed(min, || {
        let mut out = Vec::with_capacity(out_cap);
        enc.encrypt_regular(plain, &mut out)?;
        std::hint::black_box(out);
        Ok(chunk)
    })?;

    let mut enc = new_encryptor(rt, keyring.as_ref(), frame_len)?;
    let mut out: Vec<u8> = Vec::with_capacity(out_cap);
    let encrypt_sha256 = time_boxed(min, || {
        out.clear();
        enc.encrypt_regular(plain, &mut out)?;
        let digest: [u8; 32] = sha2::Sha256::digest(&out).into();
        std::hint::black_box(digest);
        Ok(chunk)
    })?;

    let mut h = sha2::Sha256::new();
    let sha2 = time_boxed(min, || {
        h.update(plain);
        Ok(chunk)
    })?;
    std::hint::black_box(h.finalize());

    let mut h = ResumableSha256::new();
    let resumable = time_boxed(min, || {
        h.update(plain);
        Ok(chunk)
    })?;
    std::hint::black_box(h.finalize());

    let mut a = ResumableSha256::new();
    a.update(plain);
    let b: [u8; 32] = sha2::Sha256::digest(plain).into();
    ensure!(
        a.finalize() == b,
        "ResumableSha256 and sha2::Sha256 disagree"
    );

    Ok(Throughput {
        encrypt_fresh,
        encrypt_sha256,
        sha2,
        resumable,
    })
}

/// One round: `openssl speed`, then our encryption natively and (in a child) with AVX-512
/// masked, back to back.
struct Round {
    openssl: Result<f64, String>,
    native: Measure,
    masked: Option<Measure>,
}

impl Round {
    fn ratio(&self, m: &Measure) -> Option<f64> {
        self.openssl.as_ref().ok().map(|o| m.mbps() / o)
    }
}

struct RoundTrip {
    plaintext: u64,
    ciphertext: u64,
    encrypt: Duration,
    decrypt: Duration,
}

/// Encrypts a generated `size`-byte message chunk by chunk and feeds each ciphertext chunk to
/// the streaming decryptor at once, checking the plaintext comes back. Only the encryptor and
/// decryptor calls are timed (wall clock).
async fn round_trip(size: u64, chunk: u64, frame_len: u32) -> anyhow::Result<RoundTrip> {
    let keyring = keyring()?;
    let mut enc = Some(FrameEncryptor::new(keyring.as_ref(), context(), frame_len).await?);
    let mut dec = StreamDecryptor::new(keyring.clone(), DecryptOptions::default());
    let mut gen = Generator::new(0x9e37_79b9_7f4a_7c15);
    let chunk = chunk as usize;
    let mut plain = vec![0u8; chunk];
    let mut out: Vec<u8> = Vec::with_capacity(chunk + (chunk / frame_len as usize + 2) * 40 + 4096);
    let (mut t_enc, mut t_dec) = (Duration::ZERO, Duration::ZERO);
    let (mut done, mut ciphertext) = (0u64, 0u64);
    while done < size {
        let n = (size - done).min(chunk as u64) as usize;
        let last = done + n as u64 == size;
        gen.fill(&mut plain[..n]);
        out.clear();
        let t = Instant::now();
        let e = enc.as_mut().context("encryptor already finished")?;
        if done == 0 {
            out.extend_from_slice(e.header());
        }
        if last {
            enc.take()
                .context("encryptor already finished")?
                .finish(&plain[..n], &mut out)?;
        } else {
            e.encrypt_regular(&plain[..n], &mut out)?;
        }
        t_enc += t.elapsed();
        let t = Instant::now();
        let back = dec.push(&out).await?;
        t_dec += t.elapsed();
        ensure!(
            back[..] == plain[..n],
            "decrypted chunk at {done} differs from the plaintext"
        );
        ciphertext += out.len() as u64;
        done += n as u64;
    }
    let info = dec.finish()?;
    ensure!(info.plaintext_len == size, "decrypted length differs");
    Ok(RoundTrip {
        plaintext: size,
        ciphertext,
        encrypt: t_enc,
        decrypt: t_dec,
    })
}

/// The first encryption of this process (a one-frame message), on a fresh thread as the
/// transfer engine's `spawn_blocking` would run it; optionally after `warm_up` on the main
/// thread, as a Lambda's init would call it. The keyring is built before, as `main` does.
fn first_encrypt(frame_len: u32, warm: bool) -> anyhow::Result<Value> {
    let keyring = keyring()?;
    let (mut warm_up_ms, mut warm_up_again_us) = (None, None);
    if warm {
        let t = Instant::now();
        warm_up()?;
        warm_up_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        warm_up()?;
        warm_up_again_us = Some(t.elapsed().as_secs_f64() * 1e6);
    }
    let worker = std::thread::spawn(move || -> anyhow::Result<(f64, f64)> {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let plain = vec![0x5a_u8; frame_len as usize];
        let once = || -> anyhow::Result<f64> {
            let t = Instant::now();
            let enc = rt.block_on(FrameEncryptor::new(keyring.as_ref(), context(), frame_len))?;
            let mut out = enc.header().to_vec();
            enc.finish(&plain, &mut out)?;
            std::hint::black_box(out);
            Ok(t.elapsed().as_secs_f64() * 1e3)
        };
        Ok((once()?, once()?))
    });
    let (first_ms, second_ms) = worker
        .join()
        .map_err(|_| anyhow::anyhow!("first-encryption thread panicked"))??;
    Ok(json!({
        "bench": "crypto-bench-first-encrypt",
        "warm_up": warm,
        "first_encrypt_ms": first_ms,
        "second_encrypt_ms": second_ms,
        "warm_up_ms": warm_up_ms,
        "warm_up_again_us": warm_up_again_us,
    }))
}

fn child_json(size_mib: u64, rt: &RoundTrip) -> Value {
    json!({
        "bench": "crypto-bench-child",
        "size_mib": size_mib,
        "encrypt_mbps": mbps(rt.plaintext, rt.encrypt),
        "decrypt_mbps": mbps(rt.plaintext, rt.decrypt),
        "peak_rss_mib": peak_rss_mib(),
    })
}

/// Runs this binary with `args` (and `env`), returning the last JSON line it printed.
fn child(args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Value> {
    let mut cmd = Command::new(current_exe()?);
    cmd.args(args).stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    ensure!(out.status.success(), "child {args:?} failed");
    last_json_line(&String::from_utf8_lossy(&out.stdout))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Median of a non-empty list of measures, by throughput.
fn median_measure(v: &[Measure]) -> Option<Measure> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.mbps().total_cmp(&b.mbps()));
    v.get(v.len() / 2).copied()
}

fn spread(v: &[f64], scale: f64, unit: &str) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min) * scale;
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max) * scale;
    match median(v.to_vec()) {
        Some(m) => format!("{:.0}{unit} (range {lo:.0}..{hi:.0}{unit})", m * scale),
        None => "n/a".into(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.size_mib > 0 && args.chunk_mib > 0,
        "sizes must be positive"
    );
    ensure!(
        (args.chunk_mib * MIB).is_multiple_of(u64::from(args.frame_len)),
        "the frame length must divide the chunk size"
    );
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    let size = args.size_mib * MIB;
    let chunk = args.chunk_mib * MIB;
    let min = Duration::from_secs_f64(args.seconds);
    let common = [
        "--chunk-mib".to_string(),
        args.chunk_mib.to_string(),
        "--frame-len".to_string(),
        args.frame_len.to_string(),
        "--seconds".to_string(),
        args.seconds.to_string(),
    ];

    if args.child_first_encrypt {
        println!("{}", first_encrypt(args.frame_len, args.warm_up)?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.child_encrypt || args.child_throughput {
        let plain = plaintext_chunk(chunk as usize);
        let v = if args.child_encrypt {
            json!({"bench": "crypto-bench-encrypt",
                   "encrypt": encrypt_only(&rt, &plain, args.frame_len, min)?.json()})
        } else {
            json!({"bench": "crypto-bench-throughput",
                   "throughput": throughput(&rt, &plain, args.frame_len, min)?.json()})
        };
        println!("{v}");
        return Ok(());
    }
    if args.json {
        let r = rt.block_on(round_trip(size, chunk, args.frame_len))?;
        println!("{}", child_json(args.size_mib, &r));
        return Ok(());
    }

    let m = machine();
    print_machine(&m);
    let cpu = m["cpu"].as_str().unwrap_or("?").to_string();
    let features: Vec<&str> = m["cpu_features"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // aws-lc takes its AVX-512 (VAES, VPCLMULQDQ) AES-GCM path only with all of these.
    let avx512_gcm = [
        "avx512f",
        "avx512dq",
        "avx512bw",
        "avx512vl",
        "vaes",
        "vpclmulqdq",
    ]
    .iter()
    .all(|f| features.contains(f));
    let preset_mask = std::env::var("OPENSSL_ia32cap").ok();
    let run_masked = avx512_gcm && preset_mask.is_none();
    println!(
        "crypto-bench: one {} MiB chunk per call, frame {} B, raw AES keyring, 1 thread, \
         >= {} s per figure, {} rounds of openssl + encrypt; MB/s = 10^6 B/s of plaintext over \
         CPU time (wall in brackets)",
        args.chunk_mib, args.frame_len, args.seconds, args.rounds
    );

    let plain = plaintext_chunk(chunk as usize);
    let child_args = |mode: &str| {
        let mut a = vec![mode.to_string()];
        a.extend(common.iter().cloned());
        a
    };
    let mut rounds = Vec::new();
    for _ in 0..args.rounds.max(1) {
        let openssl = openssl_aes_gcm_mbps(args.openssl_seconds);
        let native = encrypt_only(&rt, &plain, args.frame_len, min)?;
        // aws-lc reads the mask when it starts, so the masked figure needs its own process.
        let masked = if run_masked {
            let v = child(
                &child_args("--child-encrypt"),
                &[("OPENSSL_ia32cap", MASK_AVX512)],
            )?;
            Some(Measure::from_json(&v["encrypt"]).context("encrypt child JSON")?)
        } else {
            None
        };
        rounds.push(Round {
            openssl,
            native,
            masked,
        });
    }
    let native = throughput(&rt, &plain, args.frame_len, min)?;
    let masked = if run_masked {
        let v = child(
            &child_args("--child-throughput"),
            &[("OPENSSL_ia32cap", MASK_AVX512)],
        )?;
        Some(Throughput::from_json(&v["throughput"]).context("throughput child JSON")?)
    } else {
        None
    };
    drop(plain);
    let r = rt.block_on(round_trip(size, chunk, args.frame_len))?;

    let mut first = Vec::new();
    for warm in [false, true] {
        let mut runs = Vec::new();
        for _ in 0..args.first_runs.max(1) {
            let mut a = vec!["--child-first-encrypt".to_string()];
            if warm {
                a.push("--warm-up".into());
            }
            a.extend(common.iter().cloned());
            runs.push(child(&a, &[])?);
        }
        first.push(runs);
    }

    let mut children = Vec::new();
    for &s in &args.rss_sizes_mib {
        let mut a = vec![
            "--json".to_string(),
            "--size-mib".to_string(),
            s.to_string(),
        ];
        a.extend(common.iter().cloned());
        children.push(child(&a, &[])?);
    }

    // ---- report ----
    let aes_path = if preset_mask.is_some() {
        "as masked by OPENSSL_ia32cap in the environment"
    } else if avx512_gcm {
        "aws-lc AVX-512 VAES path"
    } else {
        "aws-lc AES-NI/AVX path (no AVX-512)"
    };
    let openssl_all: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.openssl.as_ref().ok().copied())
        .collect();
    let openssl_err = rounds
        .iter()
        .find_map(|r| r.openssl.as_ref().err().cloned());
    let enc_native = median_measure(&rounds.iter().map(|r| r.native).collect::<Vec<_>>())
        .context("no rounds")?;
    let enc_masked = median_measure(&rounds.iter().filter_map(|r| r.masked).collect::<Vec<_>>());
    let ratios_native: Vec<f64> = rounds.iter().filter_map(|r| r.ratio(&r.native)).collect();
    let ratios_masked: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.masked.as_ref().and_then(|m| r.ratio(m)))
        .collect();
    let r_native = median(ratios_native.clone());
    let r_masked = median(ratios_masked.clone());

    let cell = |x: &Measure| format!("{:.0} ({:.0})", x.mbps(), x.wall_mbps());
    let mut t = Table::new(&[
        "measure, one thread, same 8 MiB chunk",
        "MB/s CPU (wall)",
        "note",
    ]);
    let rows = |t: &mut Table, enc: &Measure, tp: &Throughput, tag: &str| {
        t.row(vec![
            format!("encrypt (FrameEncryptor.encrypt_regular){tag}"),
            cell(enc),
            "median of the rounds".into(),
        ]);
        t.row(vec![
            format!("encrypt, new output Vec per chunk{tag}"),
            cell(&tp.encrypt_fresh),
            "as the transfer engine allocates parts".into(),
        ]);
        t.row(vec![
            format!("encrypt + SHA-256 of the ciphertext{tag}"),
            cell(&tp.encrypt_sha256),
            "single-core limit for encrypt + hash".into(),
        ]);
    };
    rows(&mut t, &enc_native, &native, "");
    t.row(vec![
        "SHA-256 sha2::Sha256".into(),
        cell(&native.sha2),
        "SHA-NI if the CPU has it".into(),
    ]);
    t.row(vec![
        "SHA-256 ResumableSha256".into(),
        cell(&native.resumable),
        "same digest as sha2".into(),
    ]);
    t.row(vec![
        "openssl speed -evp aes-256-gcm -bytes 16384".into(),
        median(openssl_all.clone()).map_or("n/a".into(), |o| format!("{o:.0}")),
        openssl_err.clone().unwrap_or_else(|| {
            format!(
                "median of {} x {} s, user CPU time",
                openssl_all.len(),
                args.openssl_seconds
            )
        }),
    ]);
    if let (Some(enc), Some(tp)) = (&enc_masked, &masked) {
        rows(&mut t, enc, tp, ", AVX-512 masked");
    }
    println!();
    println!("CPU: {cpu} ({aes_path})");
    t.print();
    println!();
    let mut t = Table::new(&[
        "round",
        "openssl MB/s",
        "encrypt MB/s",
        "ratio",
        "masked MB/s",
        "ratio",
    ]);
    for (i, r) in rounds.iter().enumerate() {
        let pct = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{:.0}%", x * 100.0));
        t.row(vec![
            (i + 1).to_string(),
            r.openssl
                .as_ref()
                .map_or("n/a".into(), |o| format!("{o:.0}")),
            format!("{:.0}", r.native.mbps()),
            pct(r.ratio(&r.native)),
            r.masked
                .as_ref()
                .map_or("-".into(), |m| format!("{:.0}", m.mbps())),
            pct(r.masked.as_ref().and_then(|m| r.ratio(m))),
        ]);
    }
    t.print();
    let verdict = |x: f64| if x >= 0.8 { "MET" } else { "MISSED" };
    match r_native {
        Some(x) => println!(
            "{cpu}: encrypt / openssl AES-256-GCM = {} ({aes_path}; target >= 80%): {}",
            spread(&ratios_native, 100.0, "%"),
            verdict(x)
        ),
        None => println!("encrypt / openssl: not measured (openssl missing or failed)"),
    }
    if let Some(x) = r_masked {
        println!(
            "{cpu}: encrypt / openssl AES-256-GCM = {} with AVX-512 masked \
             (OPENSSL_ia32cap={MASK_AVX512}: the path of CPUs without AVX-512; target >= 80%): {}",
            spread(&ratios_masked, 100.0, "%"),
            verdict(x)
        );
    }
    println!(
        "{cpu}: single-core limit for encrypt + hash (encrypt, then SHA-256 of the part): \
         {:.0} MB/s{}",
        native.encrypt_sha256.mbps(),
        masked
            .as_ref()
            .map(|mk| format!("; {:.0} MB/s with AVX-512 masked", mk.encrypt_sha256.mbps()))
            .unwrap_or_default()
    );

    println!();
    let mut t = Table::new(&["round trip, wall clock", "MB/s", "note"]);
    t.row(vec![
        "encrypt (encrypt_regular / finish)".into(),
        format!("{:.0}", mbps(r.plaintext, r.encrypt)),
        format!(
            "{} MiB in {:.3} s; ciphertext {} B",
            args.size_mib,
            r.encrypt.as_secs_f64(),
            r.ciphertext
        ),
    ]);
    t.row(vec![
        "decrypt (StreamDecryptor.push)".into(),
        format!("{:.0}", mbps(r.plaintext, r.decrypt)),
        format!("{:.3} s, plaintext verified", r.decrypt.as_secs_f64()),
    ]);
    t.print();

    println!();
    let field = |runs: &[Value], k: &str| -> Vec<f64> {
        runs.iter().filter_map(|v| v[k].as_f64()).collect()
    };
    let ms = |v: Vec<f64>| -> String {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        median(v).map_or("n/a".into(), |m| format!("{m:.2} ({lo:.2}..{hi:.2})"))
    };
    let mut t = Table::new(&[
        "first encryption of a process (child each)",
        "first ms: median (range)",
        "second ms",
    ]);
    for (runs, name) in first
        .iter()
        .zip(["without warm_up", "after warm_up in init"])
    {
        t.row(vec![
            format!("{name}, {} runs", runs.len()),
            ms(field(runs, "first_encrypt_ms")),
            ms(field(runs, "second_encrypt_ms")),
        ]);
    }
    t.print();
    let warm_cost = median(field(&first[1], "warm_up_ms"));
    let warm_again = median(field(&first[1], "warm_up_again_us"));
    println!(
        "{cpu}: warm_up() costs {} ms the first time and {} us when called again (medians); \
         timed: FrameEncryptor::new + finish of one frame on a fresh thread, keyring built before",
        warm_cost.map_or("?".into(), |x| format!("{x:.2}")),
        warm_again.map_or("?".into(), |x| format!("{x:.2}")),
    );

    println!();
    let mut t = Table::new(&[
        "input (child process)",
        "peak RSS (VmHWM) MiB",
        "encrypt MB/s",
    ]);
    for c in &children {
        t.row(vec![
            format!("{} MiB", c["size_mib"]),
            format!("{:.1}", c["peak_rss_mib"].as_f64().unwrap_or(0.0)),
            format!("{:.0}", c["encrypt_mbps"].as_f64().unwrap_or(0.0)),
        ]);
    }
    t.print();
    let rss: Vec<f64> = children
        .iter()
        .filter_map(|c| c["peak_rss_mib"].as_f64())
        .collect();
    if let (Some(lo), Some(hi)) = (rss.first(), rss.last()) {
        println!(
            "peak RSS growth from smallest to largest input: {:+.1} MiB (flat = independent of size)",
            hi - lo
        );
    }
    println!(
        "{}",
        json!({
            "bench": "crypto-bench",
            "machine": m,
            "aes_gcm_path": aes_path,
            "size_mib": args.size_mib,
            "chunk_mib": args.chunk_mib,
            "frame_len": args.frame_len,
            "encrypt_mbps": enc_native.mbps(),
            "encrypt_sha256_mbps": native.encrypt_sha256.mbps(),
            "sha256_sha2_mbps": native.sha2.mbps(),
            "sha256_resumable_mbps": native.resumable.mbps(),
            "openssl_aes_256_gcm_mbps": median(openssl_all),
            "openssl_error": openssl_err,
            "encrypt_vs_openssl": r_native,
            "encrypt_avx512_masked_mbps": enc_masked.map(|m| m.mbps()),
            "encrypt_sha256_avx512_masked_mbps": masked.as_ref().map(|t| t.encrypt_sha256.mbps()),
            "encrypt_vs_openssl_avx512_masked": r_masked,
            "rounds": rounds.iter().map(|r| json!({
                "openssl_mbps": r.openssl.as_ref().ok(),
                "encrypt": r.native.json(),
                "encrypt_avx512_masked": r.masked.map(|m| m.json()),
            })).collect::<Vec<_>>(),
            "throughput": native.json(),
            "throughput_avx512_masked": masked.as_ref().map(Throughput::json),
            "round_trip": {
                "encrypt_mbps": mbps(r.plaintext, r.encrypt),
                "decrypt_mbps": mbps(r.plaintext, r.decrypt),
            },
            "first_encrypt": {
                "without_warm_up": first[0],
                "with_warm_up": first[1],
            },
            "rss": children,
        })
    );
    Ok(())
}
