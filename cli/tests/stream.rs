//! `gc-archive stream` as a long-running service against the simulator and moto: it consumes
//! the socket, and SIGTERM makes it send what it has, save the state with the channel
//! released, print its report and exit 0.

use std::process::Stdio;
use std::time::Duration;

use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::GeneratorSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_saves_and_exits_zero() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let hub = stack.sim.notifications();
    hub.set_heartbeat(Duration::from_millis(200));
    let queue = hub.add_queue("Support");
    let env = stack.lambda_env("event-stream");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gc-archive"))
        .arg("stream")
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while hub.open_sockets() == 0 {
        assert!(tokio::time::Instant::now() < give_up, "no socket opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = stack
        .sim
        .generate_conversations(GeneratorSpec {
            count: 6,
            per_second: 30.0,
            queue_ids: vec![queue],
            duration_secs: 60,
            recording_bytes: 2_000,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["stopped"], "stopped", "{runs}");
    assert_eq!(runs[0]["enqueued"], 6, "{runs}");
    let state: serde_json::Value = serde_json::from_slice(
        &stack
            .get_bytes(&format!("{PREFIX}/_state/stream/state.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(state["lease"].is_null(), "{state}");
    assert_eq!(state["stopped"], "handoff");
    assert_eq!(hub.open_sockets(), 0, "the socket was closed");
    let mut sent = stack.archive_queue_conversations().await.unwrap();
    sent.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(sent, want);
}
