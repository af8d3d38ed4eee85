//! `gc-sim` as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn help_describes_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_gc-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--port",
        "--conversations",
        "--client-id",
        "--ignore-range",
        "--range-honoured",
        "--none-serves-original",
        "--per-channel-uris",
        "--content-type",
        "--accepted-body",
        "--expired-url",
        "--custom-attributes-list",
        "--media-checksums",
        "--stable-transcodes",
        "--batch-polls",
    ] {
        assert!(text.contains(opt), "{opt} not in --help: {text}");
    }
}

#[test]
fn serves_a_token_a_user_can_curl() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gc-sim"))
        .args(["--port", "0", "--conversations", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut base = None;
    for line in BufReader::new(stdout).lines().take(40) {
        let line = line.unwrap();
        if let Some(i) = line.find("http://127.0.0.1:") {
            let url: String = line[i..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            base = Some(url.trim_end_matches('/').to_string());
            break;
        }
    }
    let base = base.expect("gc-sim printed its base URL");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!(
                "{}/oauth/token",
                base.split("/api").next().unwrap()
            ))
            .basic_auth("sim-client", Some("sim-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.unwrap(), 200);
}
