//! coldstart: Lambda init time of already-built bootstraps, measured by
//! `tools/runtime_emulator.py` (a local Runtime API; spawn → first `/next` over fresh
//! processes), plus the size of every bootstrap given (x86_64 and arm64). Builds nothing:
//! `make coldstart` runs `cargo lambda build` first.
//!
//! The functions read their configuration at init, so the emulator passes the minimum that
//! makes init succeed without any network: inline Genesys credentials (no Secrets Manager call),
//! a Genesys base URL and an AWS endpoint where nothing listens (init makes no call to either).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context as _};
use clap::Parser;
use gc_archive_bench::{last_json_line, machine, print_machine, Table};
use serde_json::{json, Value};

const INIT_TARGET_MS: f64 = 30.0;
const SIZE_TARGET_BYTES: u64 = 12_000_000;

#[derive(Parser, Debug)]
#[command(about = "Cold start (init) time and size of Lambda bootstraps")]
struct Args {
    /// Directory of x86_64 bootstraps to run (`<dir>/<function>/bootstrap`).
    #[arg(long, default_value = "target/lambda-x86_64")]
    x86_64_dir: PathBuf,
    /// Directory of arm64 bootstraps whose size is reported (not run).
    #[arg(long, default_value = "target/lambda-arm64")]
    arm64_dir: PathBuf,
    /// Functions to measure.
    #[arg(long, value_delimiter = ',', default_values_t = ["archive-on-event".to_string(), "chunk-recording".to_string()])]
    functions: Vec<String>,
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// Payload for one invocation per cold start (the handler's answer, /response or /error,
    /// only proves the function is alive; the figure of interest is init).
    #[arg(long, default_value = "{}")]
    event: String,
    #[arg(long, default_value = "tools/runtime_emulator.py")]
    emulator: PathBuf,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Extra `K=V` environment for the functions.
    #[arg(long)]
    env: Vec<String>,
}

/// What `archive-on-event` and `chunk-recording` need at init, pointing nowhere.
const FUNCTION_ENV: &[&str] = &[
    "GENESYS_API_BASE_URL=http://127.0.0.1:9",
    "GENESYS_CLIENT_ID=coldstart-client",
    "GENESYS_CLIENT_SECRET=coldstart-secret",
    "GENESYS_ORG_ID=o1",
    "ARCHIVE_BUCKET=b",
    "ARCHIVE_KMS_KEY_ID=alias/k",
    "AWS_ENDPOINT_URL=http://127.0.0.1:9",
];

fn size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.emulator.exists(),
        "{} not found (run from the workspace root)",
        args.emulator.display()
    );
    let m = machine();
    print_machine(&m);
    println!(
        "coldstart: {} cold starts per function via {} (init = spawn -> first /next)",
        args.runs,
        args.emulator.display()
    );
    let mut results = Vec::new();
    for f in &args.functions {
        let x86 = args.x86_64_dir.join(f).join("bootstrap");
        let arm = args.arm64_dir.join(f).join("bootstrap");
        ensure!(
            x86.exists(),
            "{} is missing: build it with `cargo lambda build --release --x86-64 --lambda-dir {}`",
            x86.display(),
            args.x86_64_dir.display()
        );
        let mut cmd = Command::new(&args.python);
        cmd.arg(&args.emulator)
            .arg(&x86)
            .args(["--runs", &args.runs.to_string()])
            .args(["--function-name", f])
            .args(["--event", &args.event])
            .args(["--allow-error", "--json"]);
        for kv in FUNCTION_ENV
            .iter()
            .copied()
            .chain(args.env.iter().map(String::as_str))
        {
            cmd.args(["--env", kv]);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", args.emulator.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        let emu = last_json_line(&stdout)?;
        ensure!(
            out.status.success(),
            "{f}: the emulator reported a failed run"
        );
        results.push(json!({
            "function": f,
            "x86_64_bytes": size(&x86),
            "arm64_bytes": size(&arm),
            "init_ms": emu["init_ms"],
            "invoke_ms": emu["invoke_ms"],
            "outcomes": emu["outcomes"],
            "sample_body": emu["sample_body"],
        }));
    }
    println!();
    let mut t = Table::new(&[
        "function",
        "x86_64 bytes",
        "arm64 bytes",
        "init min ms",
        "init median ms",
        "invoke median ms",
    ]);
    let ms = |v: &Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.2}"));
    let bytes = |v: &Value| {
        v.as_u64()
            .map_or("not built".to_string(), |x| format!("{x}"))
    };
    let mut all_met = true;
    for r in &results {
        t.row(vec![
            r["function"].as_str().unwrap_or("?").to_string(),
            bytes(&r["x86_64_bytes"]),
            bytes(&r["arm64_bytes"]),
            ms(&r["init_ms"]["min"]),
            ms(&r["init_ms"]["median"]),
            ms(&r["invoke_ms"]["median"]),
        ]);
        let init_ok = r["init_ms"]["median"]
            .as_f64()
            .is_some_and(|x| x <= INIT_TARGET_MS);
        let size_ok = [&r["x86_64_bytes"], &r["arm64_bytes"]]
            .iter()
            .filter_map(|v| v.as_u64())
            .all(|b| b <= SIZE_TARGET_BYTES);
        all_met &= init_ok && size_ok;
    }
    t.print();
    println!(
        "targets: bootstrap <= 12 MB, init median <= {INIT_TARGET_MS} ms: {}",
        if all_met { "MET" } else { "MISSED" }
    );
    println!(
        "{}",
        json!({"bench": "coldstart", "machine": m, "runs": args.runs, "functions": results})
    );
    Ok(())
}
