//! Shared helpers for the gc-archive benchmark binaries (`crypto-bench`, `transfer-bench`,
//! `coldstart`): peak-RSS readout, a fast deterministic data generator, throughput units, the
//! machine description printed with every run, and a plain-text table.
//!
//! Benchmarks print figures; they assert nothing about speed. Throughput is in decimal MB/s
//! (10^6 bytes per second), the unit `openssl speed` uses, so ratios against it are direct.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

pub const MIB: u64 = 1024 * 1024;

/// A field of `/proc/self/status` in KiB (`VmHWM` = peak RSS, `VmRSS` = current RSS).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    proc_status_kib_of("self", field)
}

/// [`proc_status_kib`] of another process (`pid` as `/proc` names it, or `self`).
pub fn proc_status_kib_of(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Peak resident set size of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_status_kib("VmHWM").unwrap_or(0) as f64 / 1024.0
}

pub fn rss_mib() -> f64 {
    proc_status_kib("VmRSS").unwrap_or(0) as f64 / 1024.0
}

/// CPU time the calling thread has run (user + system), from `/proc/thread-self/schedstat`. The
/// kernel updates it at least every scheduler tick, so it is exact to a few milliseconds: read
/// it around intervals of a second or more, not around single calls.
pub fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Decimal megabytes per second.
pub fn mbps(bytes: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return 0.0;
    }
    bytes as f64 / s / 1e6
}

/// Fills `buf` with xorshift64* output: incompressible, deterministic, ~several GB/s, and
/// generated in place so a benchmark's input never has to exist in memory as a whole.
pub struct Generator(u64);

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut x = self.0;
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        for b in words.into_remainder() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *b = x as u8;
        }
        self.0 = x;
    }
}

/// One line describing the machine: CPU model, core count, load average at the time of the run.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let flags = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let features: Vec<&str> = [
        "aes",
        "vaes",
        "vpclmulqdq",
        "sha_ni",
        "avx2",
        "avx512f",
        "avx512dq",
        "avx512bw",
        "avx512vl",
    ]
    .into_iter()
    .filter(|f| has(f))
    .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "cpu_features": features,
        "loadavg": load,
        "arch": std::env::consts::ARCH,
        "date_utc": utc_now(),
    })
}

pub fn print_machine(m: &serde_json::Value) {
    println!(
        "machine: {} | {} cores | {} | features: {} | loadavg {} | {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["arch"].as_str().unwrap_or("?"),
        m["cpu_features"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        m["loadavg"].as_str().unwrap_or("?"),
        m["date_utc"].as_str().unwrap_or("?"),
    );
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A plain-text table with right-aligned columns after the first.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Self {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let n = self.head.len();
        let mut w = vec![0usize; n];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = (0..n)
                .map(|i| {
                    let c = r.get(i).map(String::as_str).unwrap_or("");
                    if i == 0 {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        println!("{}", line(&self.head));
        let sep: Vec<String> = w.iter().map(|x| "-".repeat(*x)).collect();
        println!("|-{}-|", sep.join("-|-"));
        for r in &self.rows {
            println!("{}", line(r));
        }
    }
}

/// This executable, for re-running itself as a child process (one process per RSS figure).
pub fn current_exe() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// The last line of `stdout` that parses as a JSON object: how parents read their children.
pub fn last_json_line(stdout: &str) -> anyhow::Result<serde_json::Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.starts_with('{')
                .then(|| serde_json::from_str::<serde_json::Value>(l).ok())
                .flatten()
        })
        .ok_or_else(|| anyhow::anyhow!("no JSON line in child output:\n{stdout}"))
}

/// Runs `openssl speed -evp aes-256-gcm -bytes 16384 -seconds N` and returns MB/s, or why not.
pub fn openssl_aes_gcm_mbps(seconds: u32) -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            "16384",
            "-seconds",
            &seconds.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("openssl is not available ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "could not parse the openssl speed output".to_string())
}

/// The last figure of the `AES-256-GCM ... 1234.56k` result row, in MB/s ('k' = 1000 B/s).
pub fn parse_openssl_speed(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.strip_suffix('k'))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|k| k / 1000.0)
}

/// A Genesys client of the simulator's org (its OAuth client, the default retry policy), as
/// the functions build one.
pub fn simulator_client(
    sim: &genesys_sim::Simulator,
) -> anyhow::Result<gc_archive::genesys::GenesysClient> {
    let base: url::Url = sim.base_url().parse()?;
    Ok(gc_archive::genesys::GenesysClient::with_http(
        gc_archive::genesys::client::http_client(Duration::from_secs(30))?,
        &base,
        &base,
        gc_archive::config::GenesysCredentials {
            client_id: sim.client_id().to_string(),
            client_secret: sim.client_secret().to_string().into(),
        },
        gc_archive::retry::RetryPolicy::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_openssl_speed_result_row() {
        let out = "version: 3.0.19\nThe 'numbers' are in 1000s of bytes per second processed.\n\
                   type          16384 bytes\nAES-256-GCM    5498141.62k\n";
        assert_eq!(parse_openssl_speed(out), Some(5498.14162));
    }

    #[test]
    fn generator_is_deterministic_and_fills_odd_lengths() {
        let (mut a, mut b) = (vec![0u8; 1001], vec![0u8; 1001]);
        Generator::new(5).fill(&mut a);
        Generator::new(5).fill(&mut b);
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    fn finds_the_last_json_line() {
        let v = last_json_line("table\n{\"a\":1}\nnoise\n{\"b\":2}\n").unwrap();
        assert_eq!(v["b"], 2);
    }
}
