//! crypto-bench: single-thread throughput of the archive encryption (ESDK v2 frames, raw AES
//! keyring) and its decryption, of SHA-256 (the resumable hasher the checkpoints need and plain
//! `sha2`), against `openssl speed` measured in the same run; and peak RSS for a small and a
//! large input, each in its own child process, to show memory does not grow with the input.
//!
//! The input is generated chunk by chunk (never held whole), so the only memory that should
//! count is one plaintext chunk, its ciphertext and the decryptor's buffers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use clap::Parser;
use gc_archive::crypto::{
    DecryptOptions, EncryptionContext, FrameEncryptor, Keyring, RawAesKeyring, StreamDecryptor,
};
use gc_archive::transfer::hash::ResumableSha256;
use gc_archive_bench::{
    current_exe, last_json_line, machine, mbps, openssl_aes_gcm_mbps, peak_rss_mib, print_machine,
    Generator, Table, MIB,
};
use serde_json::json;
use sha2::Digest as _;

#[derive(Parser, Debug)]
#[command(about = "Encryption, decryption and SHA-256 throughput; peak RSS vs input size")]
struct Args {
    /// Input size for the throughput figures (MiB).
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Only run the encrypt+decrypt round trip of --size-mib and print one JSON line (the mode
    /// the parent uses for its per-size peak-RSS children).
    #[arg(long)]
    json: bool,
    /// Plaintext handed to the encryptor per call (MiB); the transfer's part size.
    #[arg(long, default_value_t = 8)]
    chunk_mib: u64,
    /// ESDK frame length (bytes).
    #[arg(long, default_value_t = 65536)]
    frame_len: u32,
    /// `openssl speed -seconds`.
    #[arg(long, default_value_t = 3)]
    openssl_seconds: u32,
    /// Input sizes (MiB) whose peak RSS is measured, each in a fresh child process.
    #[arg(long, value_delimiter = ',', default_values_t = [16u64, 1024])]
    rss_sizes_mib: Vec<u64>,
}

struct RoundTrip {
    plaintext: u64,
    ciphertext: u64,
    encrypt: Duration,
    decrypt: Duration,
}

/// Encrypts a generated `size`-byte message chunk by chunk and feeds each ciphertext chunk to
/// the streaming decryptor at once, checking the plaintext comes back. Only the encryptor and
/// decryptor calls are timed.
async fn round_trip(size: u64, chunk: u64, frame_len: u32) -> anyhow::Result<RoundTrip> {
    let keyring: Arc<dyn Keyring> = Arc::new(RawAesKeyring::new(
        "gc-archive-bench",
        "crypto-bench",
        [0x42; 32],
    )?);
    let ctx = EncryptionContext::new()
        .with("orgId", "bench")
        .with("recordingId", "crypto-bench");
    let mut enc = Some(FrameEncryptor::new(keyring.as_ref(), ctx, frame_len).await?);
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

/// SHA-256 of `size` bytes fed in `chunk`-sized slices of one generated buffer, with both
/// hashers; checks they agree.
fn sha_bench(size: u64, chunk: u64) -> anyhow::Result<(Duration, Duration)> {
    let mut buf = vec![0u8; chunk as usize];
    Generator::new(7).fill(&mut buf);
    let mut resumable = ResumableSha256::new();
    let t = Instant::now();
    let mut done = 0;
    while done < size {
        let n = (size - done).min(chunk) as usize;
        resumable.update(&buf[..n]);
        done += n as u64;
    }
    let a = resumable.finalize();
    let t_resumable = t.elapsed();
    let mut plain = sha2::Sha256::new();
    let t = Instant::now();
    let mut done = 0;
    while done < size {
        let n = (size - done).min(chunk) as usize;
        plain.update(&buf[..n]);
        done += n as u64;
    }
    let b: [u8; 32] = plain.finalize().into();
    let t_sha2 = t.elapsed();
    ensure!(a == b, "ResumableSha256 and sha2::Sha256 disagree");
    Ok((t_resumable, t_sha2))
}

fn child_json(size_mib: u64, rt: &RoundTrip) -> serde_json::Value {
    json!({
        "bench": "crypto-bench-child",
        "size_mib": size_mib,
        "encrypt_mbps": mbps(rt.plaintext, rt.encrypt),
        "decrypt_mbps": mbps(rt.plaintext, rt.decrypt),
        "peak_rss_mib": peak_rss_mib(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.size_mib > 0 && args.chunk_mib > 0,
        "sizes must be positive"
    );
    ensure!(
        (args.chunk_mib * MIB) % u64::from(args.frame_len) == 0,
        "the frame length must divide the chunk size"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let size = args.size_mib * MIB;
    let chunk = args.chunk_mib * MIB;

    if args.json {
        let r = rt.block_on(round_trip(size, chunk, args.frame_len))?;
        println!("{}", child_json(args.size_mib, &r));
        return Ok(());
    }

    let m = machine();
    print_machine(&m);
    println!(
        "crypto-bench: {} MiB in {} MiB chunks, frame {} B, raw AES keyring, 1 thread; MB/s = 10^6 B/s",
        args.size_mib, args.chunk_mib, args.frame_len
    );
    let r = rt.block_on(round_trip(size, chunk, args.frame_len))?;
    let (t_res, t_sha2) = sha_bench(size, chunk)?;
    let openssl = openssl_aes_gcm_mbps(args.openssl_seconds);

    let mut children = Vec::new();
    for &s in &args.rss_sizes_mib {
        let out = std::process::Command::new(current_exe()?)
            .args([
                "--json",
                "--size-mib",
                &s.to_string(),
                "--chunk-mib",
                &args.chunk_mib.to_string(),
                "--frame-len",
                &args.frame_len.to_string(),
            ])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        ensure!(out.status.success(), "child for {s} MiB failed");
        children.push(last_json_line(&String::from_utf8_lossy(&out.stdout))?);
    }

    let enc = mbps(r.plaintext, r.encrypt);
    let dec = mbps(r.plaintext, r.decrypt);
    let res = mbps(size, t_res);
    let sha2 = mbps(size, t_sha2);
    let mut t = Table::new(&["measure", "MB/s", "note"]);
    t.row(vec![
        "encrypt (FrameEncryptor, ESDK v2 0x0478)".into(),
        format!("{enc:.0}"),
        format!(
            "{} MiB in {:.3} s; ciphertext {} B",
            args.size_mib,
            r.encrypt.as_secs_f64(),
            r.ciphertext
        ),
    ]);
    t.row(vec![
        "decrypt (StreamDecryptor.push)".into(),
        format!("{dec:.0}"),
        format!("{:.3} s, plaintext verified", r.decrypt.as_secs_f64()),
    ]);
    t.row(vec![
        "SHA-256 ResumableSha256".into(),
        format!("{res:.0}"),
        format!("{:.3} s", t_res.as_secs_f64()),
    ]);
    t.row(vec![
        "SHA-256 sha2::Sha256".into(),
        format!("{sha2:.0}"),
        format!("{:.3} s; same digest", t_sha2.as_secs_f64()),
    ]);
    let (openssl_mbps, ratio) = match &openssl {
        Ok(o) => {
            t.row(vec![
                "openssl speed -evp aes-256-gcm -bytes 16384".into(),
                format!("{o:.0}"),
                format!("{} s run", args.openssl_seconds),
            ]);
            (Some(*o), Some(enc / o))
        }
        Err(why) => {
            t.row(vec![
                "openssl speed -evp aes-256-gcm".into(),
                "n/a".into(),
                why.clone(),
            ]);
            (None, None)
        }
    };
    println!();
    t.print();
    println!();
    match ratio {
        Some(x) => println!(
            "encrypt / openssl AES-256-GCM = {:.0}% (target >= 80%): {}",
            x * 100.0,
            if x >= 0.8 { "MET" } else { "MISSED" }
        ),
        None => println!("encrypt / openssl: not measured (openssl missing or failed)"),
    }
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
            "size_mib": args.size_mib,
            "chunk_mib": args.chunk_mib,
            "frame_len": args.frame_len,
            "encrypt_mbps": enc,
            "decrypt_mbps": dec,
            "sha256_resumable_mbps": res,
            "sha256_sha2_mbps": sha2,
            "openssl_aes_256_gcm_mbps": openssl_mbps,
            "openssl_error": openssl.err(),
            "encrypt_vs_openssl": ratio,
            "rss": children,
        })
    );
    Ok(())
}
