//! A small headless-Chromium driver over the Chrome DevTools Protocol, for tests that need a
//! real browser to run a page's JavaScript (the upload page: file input, `crypto.subtle`,
//! cross-origin `fetch` to presigned S3 URLs).
//!
//! One browser process per [`Chromium`], with its own temporary profile, one page, one
//! WebSocket to the browser target and a flat session on the page. Calls are sequential
//! (`&mut self`); events that arrive meanwhile are read on the way: console messages and
//! uncaught exceptions are kept ([`Chromium::console`]) so a failing test can say what the page
//! said, load events end [`Chromium::navigate`]. The browser (and its profile) goes away on drop.
//!
//! What it deliberately does not do: several pages, input events (clicks go through
//! [`Chromium::evaluate`]), network interception, or anything a test does not need yet.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStderr, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the browser may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one DevTools command may take (an `awaitPromise` evaluation included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a navigation may take to reach its `load` event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Chromium::wait_until`] re-evaluates its condition.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Lines of the browser's stderr kept for error messages.
const STDERR_TAIL: usize = 200;
/// Console lines kept; a page that logs in a loop must not grow a test's memory.
const CONSOLE_KEPT: usize = 1000;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The Chromium binary: `$CHROMIUM`, else Debian's `/usr/bin/chromium` (what `make test`
/// installs).
pub fn binary() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A headless Chromium with one page, killed (with its profile removed) on drop.
pub struct Chromium {
    child: Child,
    socket: Socket,
    session_id: String,
    next_id: u64,
    /// `Page.lifecycleEvent` params seen and not yet consumed by a navigation.
    lifecycle: VecDeque<Value>,
    console: VecDeque<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    // Dropped after the browser is killed (field order): the profile outlives the process.
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts [`binary`] headless on a free DevTools port with a fresh profile and opens a blank
    /// page, 1000×800 CSS pixels at scale 1.
    pub async fn launch() -> anyhow::Result<Chromium> {
        let exe = binary();
        if !exe.exists() {
            bail!(
                "{} is missing: `make test` installs Debian's chromium (or set CHROMIUM)",
                exe.display()
            );
        }
        let profile = tempfile::Builder::new()
            .prefix("gc-archive-chromium-")
            .tempdir()
            .context("create a Chromium profile directory")?;
        let mut child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-quic",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1000,800",
                "--password-store=basic",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so drop can kill the zygotes and renderers with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let stderr = child
            .stderr
            .take()
            .expect("stderr is piped: set on the Command above");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let ws_url = match tokio::time::timeout(LAUNCH_TIMEOUT, devtools_url(stderr, &tail)).await {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => return Err(e.context(tail_text(&tail))),
            Err(_) => bail!(
                "Chromium printed no DevTools address in {LAUNCH_TIMEOUT:?}: {}",
                tail_text(&tail)
            ),
        };
        let (socket, _) = tokio::time::timeout(
            CALL_TIMEOUT,
            tokio_tungstenite::connect_async(ws_url.as_str()),
        )
        .await
        .map_err(|_| anyhow!("connecting to the DevTools socket timed out"))?
        .context("connect to the DevTools socket")?;
        let mut browser = Chromium {
            child,
            socket,
            session_id: String::new(),
            next_id: 0,
            lifecycle: VecDeque::new(),
            console: VecDeque::new(),
            stderr: tail,
            _profile: profile,
        };
        let target = browser
            .call_browser("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = str_field(&target, "targetId")?.to_owned();
        let attached = browser
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        browser.session_id = str_field(&attached, "sessionId")?.to_owned();
        browser.call("Page.enable", json!({})).await?;
        browser
            .call("Page.setLifecycleEventsEnabled", json!({"enabled": true}))
            .await?;
        browser.call("Runtime.enable", json!({})).await?;
        Ok(browser)
    }

    /// Navigates the page to `url` and waits for its `load` event. A navigation within the
    /// document (only the fragment changes) returns as soon as it is done.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        self.lifecycle.clear();
        let nav = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            if !err.is_empty() {
                bail!("navigating to {url}: {err}");
            }
        }
        match nav.get("loaderId").and_then(Value::as_str) {
            Some(loader) => self.wait_for_load(Some(loader.to_owned()), url).await,
            None => Ok(()),
        }
    }

    /// Reloads the page (as the user would: the document and its script start over, storage
    /// stays) and waits for its `load` event.
    pub async fn reload(&mut self) -> anyhow::Result<()> {
        self.lifecycle.clear();
        self.call("Page.reload", json!({"ignoreCache": true}))
            .await?;
        self.wait_for_load(None, "the reload").await
    }

    /// Waits for the `load` lifecycle event of the document `loader` (or, without one, of the
    /// first document whose `init` arrives from now on).
    async fn wait_for_load(
        &mut self,
        mut loader: Option<String>,
        what: &str,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        loop {
            while let Some(e) = self.lifecycle.pop_front() {
                let name = e.get("name").and_then(Value::as_str);
                let id = e.get("loaderId").and_then(Value::as_str).map(str::to_owned);
                if loader.is_none() && name == Some("init") {
                    loader = id.clone();
                }
                if name == Some("load") && loader.is_some() && id == loader {
                    self.lifecycle.clear();
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{what} did not load in {LOAD_TIMEOUT:?}");
            }
            let msg = self.next_message(left).await?;
            self.handle_event(&msg);
        }
    }

    /// Evaluates `js` in the page as an expression and returns its value (JSON; a promise is
    /// awaited). A thrown exception is an error carrying its description.
    pub async fn evaluate(&mut self, js: &str) -> anyhow::Result<Value> {
        let out = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": js,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(details) = out.get("exceptionDetails") {
            bail!("`{js}` threw: {}", exception_text(details));
        }
        let result = out.get("result").cloned().unwrap_or(Value::Null);
        // `undefined` has no `value`; everything returned by value does.
        Ok(result.get("value").cloned().unwrap_or(Value::Null))
    }

    /// Sets the files of the `<input type=file>` matched by `selector` to `path`, as if the user
    /// had picked it (the page sees `input` and `change` events).
    pub async fn set_file_input(&mut self, selector: &str, path: &Path) -> anyhow::Result<()> {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("file to pick: {}", path.display()))?;
        let doc = self.call("DOM.getDocument", json!({"depth": 0})).await?;
        let root = doc
            .pointer("/root/nodeId")
            .and_then(Value::as_i64)
            .ok_or_else(|| anyhow!("DOM.getDocument: no root nodeId in {doc}"))?;
        let found = self
            .call(
                "DOM.querySelector",
                json!({"nodeId": root, "selector": selector}),
            )
            .await?;
        let node = found.get("nodeId").and_then(Value::as_i64).unwrap_or(0);
        if node == 0 {
            bail!("no element matches {selector:?}");
        }
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": node, "files": [path.to_string_lossy()]}),
        )
        .await?;
        Ok(())
    }

    /// Re-evaluates `js_condition` every 100 ms until it is truthy and returns that value. On
    /// timeout the error names the condition, its last value and the page's last console lines.
    pub async fn wait_until(
        &mut self,
        js_condition: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.evaluate(js_condition).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v.to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                let console: Vec<&String> = self.console.iter().rev().take(20).rev().collect();
                bail!(
                    "`{js_condition}` not true after {timeout:?} (last: {last}); console: {console:#?}"
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Writes a PNG of the page's viewport to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": false}),
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(str_field(&shot, "data")?)
            .context("Page.captureScreenshot: data is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// What the page has logged so far (`console.*` calls, uncaught exceptions), oldest first:
    /// `"<level>: <text>"`.
    pub fn console(&self) -> Vec<String> {
        self.console.iter().cloned().collect()
    }

    /// The last lines the browser wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.stderr)
    }

    /// A command to the page's session.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session_id.clone();
        self.send(Some(&session), method, params).await
    }

    /// A command to the browser target itself (`Target.*`, `Browser.*`).
    async fn call_browser(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.send(None, method, params).await
    }

    async fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        tokio::time::timeout(
            CALL_TIMEOUT,
            self.socket.send(Message::text(msg.to_string())),
        )
        .await
        .map_err(|_| anyhow!("{method}: sending timed out"))?
        .with_context(|| format!("{method}: send"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{method}: no answer in {CALL_TIMEOUT:?}");
            }
            let reply = self.next_message(left).await?;
            if reply.get("id").and_then(Value::as_u64) != Some(id) {
                self.handle_event(&reply);
                continue;
            }
            if let Some(err) = reply.get("error") {
                bail!("{method} failed: {err}");
            }
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// The next JSON message from the socket, within `limit`.
    async fn next_message(&mut self, limit: Duration) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(limit, self.socket.next())
                .await
                .map_err(|_| anyhow!("DevTools socket silent for {limit:?}"))?;
            let frame = match frame {
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    return Err(anyhow!(e).context(format!(
                        "DevTools socket failed; browser stderr: {}",
                        self.stderr_tail()
                    )))
                }
                None => bail!(
                    "DevTools socket closed; browser stderr: {}",
                    self.stderr_tail()
                ),
            };
            let text = match frame {
                Message::Text(t) => t,
                Message::Close(c) => bail!("DevTools socket closed: {c:?}"),
                _ => continue,
            };
            return serde_json::from_str(text.as_str()).context("DevTools sent a non-JSON message");
        }
    }

    fn handle_event(&mut self, msg: &Value) {
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        match msg.get("method").and_then(Value::as_str) {
            Some("Page.lifecycleEvent") => self.lifecycle.push_back(params),
            Some("Runtime.consoleAPICalled") => {
                let level = params.get("type").and_then(Value::as_str).unwrap_or("log");
                let text: Vec<String> = params
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|args| args.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                self.keep_console(format!("{level}: {}", text.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let text = params
                    .get("exceptionDetails")
                    .map(exception_text)
                    .unwrap_or_default();
                self.keep_console(format!("exception: {text}"));
            }
            Some("Inspector.targetCrashed") => self.keep_console("crash: the page crashed".into()),
            _ => {}
        }
    }

    fn keep_console(&mut self, line: String) {
        if self.console.len() == CONSOLE_KEPT {
            self.console.pop_front();
        }
        self.console.push_back(line);
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SIGKILL to the whole group (browser, zygotes, GPU process, renderers): killed alone,
        // the browser leaves its children running for a while. tokio reaps the browser.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// Reads stderr until Chromium prints its DevTools address, then keeps draining it into
/// `tail` in the background (a full pipe would block the browser).
async fn devtools_url(
    stderr: ChildStderr,
    tail: &Arc<Mutex<VecDeque<String>>>,
) -> anyhow::Result<String> {
    const PREFIX: &str = "DevTools listening on ";
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let Some(line) = lines.next_line().await.context("read Chromium's stderr")? else {
            bail!("Chromium exited before printing its DevTools address");
        };
        push_tail(tail, &line);
        if let Some(url) = line.trim().strip_prefix(PREFIX) {
            let url = url.trim().to_owned();
            let tail = Arc::clone(tail);
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    push_tail(&tail, &line);
                }
            });
            return Ok(url);
        }
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: &str) {
    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    if tail.len() == STDERR_TAIL {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    tail.iter().cloned().collect::<Vec<_>>().join("\n")
}

fn str_field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no string {name:?} in {v}"))
}

/// JavaScript's truthiness of a value returned by value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A console argument as text: primitives by value, objects by their description.
fn remote_object_text(arg: &Value) -> String {
    match arg.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => arg
            .get("description")
            .and_then(Value::as_str)
            .or_else(|| arg.get("type").and_then(Value::as_str))
            .unwrap_or("?")
            .to_owned(),
    }
}

fn exception_text(details: &Value) -> String {
    details
        .pointer("/exception/description")
        .and_then(Value::as_str)
        .or_else(|| details.get("text").and_then(Value::as_str))
        .unwrap_or("unknown exception")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_follows_javascript() {
        for v in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
            assert!(truthy(&v), "{v}");
        }
        for v in [json!(false), json!(0), json!(""), Value::Null] {
            assert!(!truthy(&v), "{v}");
        }
    }

    #[test]
    fn console_arguments_read_as_text() {
        assert_eq!(
            remote_object_text(&json!({"type": "string", "value": "hi"})),
            "hi"
        );
        assert_eq!(
            remote_object_text(&json!({"type": "number", "value": 3})),
            "3"
        );
        assert_eq!(
            remote_object_text(&json!({"type": "object", "description": "Error: boom"})),
            "Error: boom"
        );
    }
}
