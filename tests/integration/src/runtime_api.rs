//! A minimal AWS Lambda Runtime API on loopback, to run a real function bootstrap the way
//! Lambda does: the bootstrap long-polls `GET /2018-06-01/runtime/invocation/next`, gets one
//! event with its request id and deadline headers, and posts the result to
//! `/invocation/{id}/response` (or `/error`). Only what one invocation needs.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};

#[derive(Default)]
struct Shared {
    event: Option<serde_json::Value>,
    deadline_ms: u64,
    result: Option<(String, serde_json::Value)>,
}

type St = Arc<Mutex<Shared>>;

async fn next(State(st): State<St>) -> impl IntoResponse {
    // Hand out the event once; afterwards keep the poller waiting, as Lambda does between events.
    let taken = st.lock().map(|mut s| (s.event.take(), s.deadline_ms)).ok();
    match taken {
        Some((Some(event), deadline)) => {
            let mut h = HeaderMap::new();
            h.insert(
                "lambda-runtime-aws-request-id",
                "req-1".parse().expect("static header"),
            );
            h.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().expect("digits"),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local"
                    .parse()
                    .expect("static header"),
            );
            h.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000"
                    .parse()
                    .expect("static header"),
            );
            (StatusCode::OK, h, event.to_string()).into_response()
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn respond(
    State(st): State<St>,
    Path((_id, kind)): Path<(String, String)>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    if let Ok(mut s) = st.lock() {
        s.result = Some((kind, value));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(st): State<St>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    if let Ok(mut s) = st.lock() {
        s.result = Some(("init-error".into(), value));
    }
    StatusCode::ACCEPTED
}

/// The outcome of one invocation: `("response" | "error" | "init-error", body)`.
pub type InvocationResult = (String, serde_json::Value);

/// Runs `bootstrap` with `env` under the Runtime API for one `event` with `timeout` to live.
pub async fn invoke_once(
    bootstrap: &str,
    env: &HashMap<String, String>,
    event: serde_json::Value,
    timeout: Duration,
) -> Result<InvocationResult> {
    Ok(invoke_capturing(bootstrap, env, event, timeout).await?.0)
}

/// [`invoke_once`], also returning what the bootstrap printed on stdout (logs, EMF lines).
pub async fn invoke_capturing(
    bootstrap: &str,
    env: &HashMap<String, String>,
    event: serde_json::Value,
    timeout: Duration,
) -> Result<(InvocationResult, String)> {
    let deadline_ms =
        (chrono::Utc::now() + chrono::Duration::from_std(timeout)?).timestamp_millis() as u64;
    let st: St = Arc::new(Mutex::new(Shared {
        event: Some(event),
        deadline_ms,
        result: None,
    }));
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(respond))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut child: Child = Command::new(bootstrap)
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "local")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drained on a thread, so a chatty bootstrap never blocks on a full pipe.
    let stdout = child.stdout.take().map(|mut pipe| {
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    });
    let started = Instant::now();
    let result = loop {
        if let Some(r) = st.lock().ok().and_then(|mut s| s.result.take()) {
            break Ok(r);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lambda shows what an init failure printed; so do we.
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read as _;
                let _ = pipe.read_to_string(&mut stderr);
            }
            break Err(anyhow::anyhow!(
                "bootstrap exited with {status} before answering: {stderr}"
            ));
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!("no answer within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let printed = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    match result {
        Ok(r) => Ok((r, printed)),
        Err(e) => bail!(e),
    }
}

/// A sample event from the workspace's `events/` folder.
pub fn sample_event(name: &str) -> serde_json::Value {
    let path = crate::venv::workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The EMF line of a bootstrap's stdout that carries `metric`, if it printed one.
pub fn emf_line(stdout: &str, metric: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("_aws").is_some() && v.get(metric).is_some())
}
