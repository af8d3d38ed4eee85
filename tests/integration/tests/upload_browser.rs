//! The upload page (`web/upload.html`) in headless Chromium, driven over the DevTools protocol
//! ([`gc_archive_it::chromium`]), against the real upload-proxy: the API as the Lambda builds
//! it, moto and the Genesys simulator ([`UploadRig`]). A file picked through the real file
//! input is hashed by the page, PUT part by part to presigned moto URLs and delivered; what
//! lands in S3 is the file.
//!
//! Failures are staged on the wire, never by imitating the API: the rig's fault proxy
//! ([`gc_archive_it::fault_proxy`]) stands in front of the API (to hold a signing answer) or
//! of moto (to refuse a part's PUT), and the bucket's CORS rule is removed for real. The rig's
//! moto runs with `MOTO_DISABLE_GLOBAL_CORS=1`, so the bucket's own rule is what the browser
//! gets. What the page itself sent is read in the page: a spy ([`SPY`]) wraps `fetch` and
//! `XMLHttpRequest` before the page's script runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::response::Html;
use axum::routing::get;
use gc_archive_it::chromium::Chromium;
use gc_archive_it::fault_proxy::{FaultKind, FaultProxy, FaultRule, RequestClass};
use gc_archive_it::stack::BUCKET;
use gc_archive_it::upload_kit::{b64_sha256, UploadRig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A throwaway page on a loopback port, as the upload page will be: a file input whose pick
/// is read and hashed with `crypto.subtle` (which needs a secure context).
const PICKER_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>picker</title>
<body style="font: 20px sans-serif; background: #fff; color: #123">
<h1>Driver check</h1>
<input type="file" id="file">
<p id="out">nothing picked</p>
<script>
  window.picked = null;
  document.getElementById("file").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    const digest = await crypto.subtle.digest("SHA-256", await f.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    window.picked = { name: f.name, size: f.size, sha256Hex: hex };
    document.getElementById("out").textContent = `${f.name}: ${f.size} bytes`;
  });
</script>"#;

/// Serves `html` at `/` on a free loopback port; the server lives as long as the runtime.
async fn serve(html: &'static str) -> String {
    let app = axum::Router::new().route("/", get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Checks `path` is a PNG of the expected size that shows something: many distinct colours
/// and a fair share of pixels that are not the background (a blank or failed render has
/// neither). Returns (width, height).
fn assert_real_render(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).expect("open the screenshot");
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decode the screenshot");
    let channels = info.color_type.samples();
    let (w, h) = (info.width, info.height);
    assert!(
        (800..=4000).contains(&w) && (600..=4000).contains(&h),
        "screenshot is {w}×{h}"
    );
    let pixels: Vec<[u8; 3]> = buf[..(w * h) as usize * channels]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let background = pixels[0];
    let other = pixels.iter().filter(|p| **p != background).count();
    let mut colours: Vec<[u8; 3]> = pixels.clone();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        other * 200 > pixels.len(),
        "only {other} of {} pixels differ from the background {background:?}: blank render?",
        pixels.len()
    );
    assert!(
        colours.len() >= 16,
        "{} distinct colours: no text rendered?",
        colours.len()
    );
    (w, h)
}

/// `len` bytes that do not compress (so no layer can shortcut them), from a seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9)
}

#[tokio::test]
async fn chromium_driver_reads_a_picked_file() {
    let base = serve(PICKER_PAGE).await;
    let mut browser = Chromium::launch().await.expect("launch chromium");
    browser.navigate(&format!("{base}/")).await.expect("load");

    assert_eq!(browser.evaluate("document.title").await.unwrap(), "picker");
    // A loopback http origin is a secure context: the upload page can use crypto.subtle.
    assert_eq!(
        browser
            .evaluate("window.isSecureContext && typeof crypto.subtle.digest === 'function'")
            .await
            .unwrap(),
        true
    );
    assert_eq!(
        browser
            .evaluate("new Promise((ok) => setTimeout(() => ok(6 * 7), 10))")
            .await
            .unwrap(),
        42,
        "promises are awaited"
    );
    let thrown = browser.evaluate("null.x").await.unwrap_err();
    assert!(format!("{thrown:#}").contains("TypeError"), "{thrown:#}");

    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(300_001, seed());
    let path = dir.path().join("picked file.bin");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .unwrap();
    browser.set_file_input("#file", &path).await.unwrap();
    let picked = browser
        .wait_until("window.picked", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(picked["name"], "picked file.bin");
    assert_eq!(picked["size"], 300_001);
    assert_eq!(picked["sha256Hex"], hex::encode(Sha256::digest(&bytes)));
    let no_match = browser.set_file_input("#nope", &path).await.unwrap_err();
    assert!(format!("{no_match}").contains("#nope"), "{no_match}");

    // A fragment-only navigation stays in the document (no load event to wait for).
    browser
        .navigate(&format!("{base}/#ticket=abc"))
        .await
        .unwrap();
    assert_eq!(
        browser.evaluate("location.hash").await.unwrap(),
        "#ticket=abc"
    );
    assert_eq!(
        browser.evaluate("window.picked.size").await.unwrap(),
        300_001
    );

    let shot = dir.path().join("picker.png");
    browser.screenshot(&shot).await.unwrap();
    assert_real_render(&shot);
    let too_late = browser
        .wait_until("window.never", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(format!("{too_late}").contains("window.never"), "{too_late}");
}

// ---- the page against the real upload-proxy -----------------------------------------------

/// upload-proxy's part size: a file above it goes in several parts.
const PART: usize = gc_archive::upload::plan::MIN_PART_BYTES as usize;
/// Headers the page leaves to the browser (`BROWSER_HEADERS` in the page).
const BROWSER_HEADERS: [&str; 3] = ["host", "content-length", "connection"];

/// Installed with `Page.addScriptToEvaluateOnNewDocument`, so it runs before the page's own
/// script in every document (a reload starts a fresh record). `window.__spy` keeps every
/// `fetch` (method, URL, header names, body, status, JSON answer) and every XHR (method, URL,
/// the headers the page set, whether credentials went along, body length, status): what the
/// page sent to the API and to S3, as far as a page decides it. Header values of `fetch` are
/// not kept: one is the ticket.
const SPY: &str = r#"(() => {
  const spy = { fetches: [], xhrs: [] };
  Object.defineProperty(window, "__spy", { value: spy });
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const rec = {
      method: init.method || "GET", url: String(input),
      headers: Object.keys(init.headers || {}).map((h) => h.toLowerCase()),
      body: typeof init.body === "string" ? init.body : null, status: null, answer: null,
    };
    spy.fetches.push(rec);
    const answer = realFetch(input, init);
    answer.then((res) => {
      rec.status = res.status;
      res.clone().json().then((j) => { rec.answer = j; }, () => {});
    }, () => { rec.status = 0; });
    return answer;
  };
  const { open, setRequestHeader, send } = XMLHttpRequest.prototype;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.__rec = { method, url: String(url), headers: {}, status: null };
    return open.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.setRequestHeader = function (name, value) {
    this.__rec.headers[name.toLowerCase()] = value;
    return setRequestHeader.call(this, name, value);
  };
  XMLHttpRequest.prototype.send = function (body) {
    const rec = this.__rec;
    rec.withCredentials = this.withCredentials;
    rec.bytes = body && body.byteLength !== undefined ? body.byteLength : null;
    spy.xhrs.push(rec);
    this.addEventListener("loadend", () => { rec.status = this.status; });
    return send.call(this, body);
  };
})();"#;

/// What [`SPY`] recorded in the current document.
struct Seen {
    fetches: Vec<Value>,
    xhrs: Vec<Value>,
}

impl Seen {
    async fn read(browser: &mut Chromium) -> Seen {
        let spy = browser.evaluate("window.__spy").await.unwrap();
        let list = |name: &str| spy[name].as_array().cloned().unwrap_or_default();
        Seen {
            fetches: list("fetches"),
            xhrs: list("xhrs"),
        }
    }

    /// `"POST uploads"`, `"GET uploads/{id}"`, ... in the order the page made them.
    fn api_calls(&self) -> Vec<String> {
        self.fetches
            .iter()
            .map(|f| format!("{} {}", str_of(&f["method"]), str_of(&f["url"])))
            .collect()
    }

    fn sign_calls(&self) -> impl Iterator<Item = &Value> {
        self.fetches
            .iter()
            .filter(|f| f["method"] == "POST" && str_of(&f["url"]).ends_with("/parts"))
    }

    /// The part numbers the page asked to have signed, in order.
    fn signed(&self) -> Vec<u32> {
        self.sign_calls()
            .flat_map(|f| {
                let body: Value = serde_json::from_str(str_of(&f["body"])).unwrap_or_default();
                body["parts"].as_array().cloned().unwrap_or_default()
            })
            .filter_map(|p| p["partNumber"].as_u64().map(|n| n as u32))
            .collect()
    }

    /// The headers upload-proxy signed part `n` with, the last time it answered (lowercase
    /// names, without those the browser sets itself).
    fn signed_headers(&self, n: u32) -> Value {
        let part = self
            .sign_calls()
            .flat_map(|f| f["answer"]["parts"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["partNumber"] == n)
            .last()
            .unwrap_or_else(|| panic!("no signing answer for part {n}"));
        let headers: serde_json::Map<String, Value> = part["headers"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .filter(|(k, _)| !BROWSER_HEADERS.contains(&k.as_str()))
            .collect();
        Value::Object(headers)
    }

    /// The part PUTs, in the order they were sent: (part number, what the spy kept).
    fn puts(&self) -> Vec<(u32, &Value)> {
        self.xhrs
            .iter()
            .filter(|x| x["method"] == "PUT")
            .map(|x| {
                let n = query(str_of(&x["url"]), "partNumber")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a part URL names its part: {x}"));
                (n, x)
            })
            .collect()
    }

    fn parts_put(&self) -> Vec<u32> {
        sorted(self.puts().into_iter().map(|(n, _)| n))
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn sorted(items: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = items.into_iter().collect();
    v.sort_unstable();
    v
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Where screenshots are kept for a person to look at: the workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// A file of `len` incompressible bytes in `dir`, starting with a line no file type sniffs
/// as (upload-proxy refuses octet-stream bytes that look like an executable or an image);
/// its bytes back.
fn write_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    write_with_head(dir, name, len, b"gc-it:\n")
}

/// As [`write_file`], starting as a PDF does (upload-proxy checks a `.pdf`'s first bytes).
fn write_pdf(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    write_with_head(dir, name, len, b"%PDF-1.7\n")
}

fn write_with_head(dir: &Path, name: &str, len: usize, head: &[u8]) -> (PathBuf, Vec<u8>) {
    let mut bytes = noise(len, seed());
    let n = head.len().min(len);
    bytes[..n].copy_from_slice(&head[..n]);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Part `n` (1-based) of `bytes` in upload-proxy's plan.
fn part(bytes: &[u8], n: u32) -> &[u8] {
    let start = (n as usize - 1) * PART;
    &bytes[start..(start + PART).min(bytes.len())]
}

/// `6303801` → `"6,303,801"`, as the page writes sizes.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A browser with [`SPY`] installed, on the page at `base_url`.
async fn open_page(base_url: &str, fragment: &str) -> Chromium {
    let mut browser = Chromium::launch().await.expect("launch chromium");
    browser
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": SPY }),
        )
        .await
        .expect("install the spy");
    browser
        .navigate(&format!("{base_url}/{fragment}"))
        .await
        .expect("the upload page loads");
    assert_eq!(
        browser
            .evaluate("Array.isArray(window.__spy.fetches)")
            .await
            .unwrap(),
        true,
        "the spy runs in the page"
    );
    browser
}

async fn pick_and_start(browser: &mut Chromium, path: &Path) {
    browser.set_file_input("#file", path).await.unwrap();
    browser
        .wait_until(
            "!document.getElementById('start').disabled",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .evaluate("document.getElementById('start').click()")
        .await
        .unwrap();
}

/// Picks `path`, starts, and waits until the page is done; fails with the page's state and
/// console when it failed instead.
async fn upload_to_done(browser: &mut Chromium, path: &Path, timeout: Duration) -> Value {
    pick_and_start(browser, path).await;
    let st = wait_phase(browser, "['done','failed']", timeout).await;
    assert_eq!(
        st["phase"],
        "done",
        "{st:#}; console: {:#?}",
        browser.console()
    );
    st
}

async fn wait_phase(browser: &mut Chromium, phases: &str, timeout: Duration) -> Value {
    browser
        .wait_until(
            &format!("{phases}.includes(window.uploadState.phase) && window.uploadState"),
            timeout,
        )
        .await
        .unwrap()
}

async fn text_of(browser: &mut Chromium, id: &str) -> String {
    browser
        .evaluate(&format!("document.getElementById('{id}').innerText"))
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_ticket_not_in_console(browser: &Chromium, ticket: &str) {
    let console = browser.console().join("\n");
    assert!(
        !console.contains(ticket),
        "the ticket reached the console: {console}"
    );
}

/// The upload's state as the API answers `GET /uploads/{id}`.
async fn api_state(rig: &UploadRig, id: &str) -> Value {
    let (status, state) = rig
        .call("GET", &format!("/uploads/{id}"), None)
        .await
        .expect("GET the upload");
    assert_eq!(status, 200, "{state}");
    state
}

/// `(partNumber, sha256)` of the parts the API lists as in S3.
fn listed_parts(state: &Value) -> Vec<(u64, String)> {
    state["uploadedParts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["partNumber"].as_u64().unwrap_or_default(),
                str_of(&p["sha256"]).to_string(),
            )
        })
        .collect()
}

/// Signs part `n` of upload `id` for `body` and PUTs it straight to S3, as another session
/// of the page would have.
async fn send_part(rig: &UploadRig, id: &str, n: u32, body: &[u8]) {
    let parts = json!({"parts": [{"partNumber": n, "sha256": b64_sha256(body)}]});
    let (status, signed) = rig
        .call("POST", &format!("/uploads/{id}/parts"), Some(parts))
        .await
        .expect("sign a part");
    assert_eq!(status, 200, "{signed}");
    let signed = &signed["parts"][0];
    let mut put = rig.http.put(str_of(&signed["url"])).body(body.to_vec());
    for (k, v) in signed["headers"].as_object().cloned().unwrap_or_default() {
        put = put.header(k.as_str(), str_of(&v));
    }
    let answer = put.send().await.expect("PUT the part");
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    assert_eq!(status, 200, "part {n}: {text}");
}

/// Answers of the API's `POST /uploads/{id}/parts` that reach the browser with their headers
/// and then nothing for a minute: the API has signed, the page waits for its URL.
fn hold_signing() -> FaultRule {
    FaultRule::new(
        RequestClass::Media,
        FaultKind::Stall {
            after_bytes: 0,
            for_ms: 60_000,
        },
    )
    .path_contains("/parts")
    .forever()
}

/// Waits until `proxy` has answered `count` requests whose path contains `fragment`.
async fn wait_for_requests(proxy: &FaultProxy, fragment: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = proxy
            .requests()
            .iter()
            .filter(|r| r.path.contains(fragment))
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {count} requests to {fragment:?}: {:#?}",
            proxy.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// upload-proxy as [`UploadRig`] builds it, but with its S3 calls (and so its part URLs)
/// going through a fault proxy in front of moto.
struct ApiBehindS3Proxy {
    base_url: String,
    s3: FaultProxy,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ApiBehindS3Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ApiBehindS3Proxy {
    async fn start(rig: &UploadRig, env: &[(&'static str, String)]) -> ApiBehindS3Proxy {
        let s3 = FaultProxy::start(&rig.stack.moto.endpoint_url())
            .await
            .expect("start the S3 proxy");
        let sdk = rig
            .stack
            .sdk
            .to_builder()
            .endpoint_url(s3.base_url())
            .build();
        let env = gc_archive_it::upload_kit::rig_env(&rig.stack, env);
        let runtime = gc_archive::bootstrap::upload_runtime(&env, &sdk)
            .await
            .expect("build upload-proxy");
        let (base_url, server) = gc_archive_it::upload_kit::serve(runtime)
            .await
            .expect("serve upload-proxy");
        ApiBehindS3Proxy {
            base_url,
            s3,
            server,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_puts_every_part_straight_to_presigned_moto_urls_and_shows_the_delivery() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_pdf(dir.path(), "report 2026.pdf", PART + 1_012_345);
    let want = hex::encode(Sha256::digest(&bytes));
    let ticket = rig.ticket();
    let mut browser = open_page(&rig.base_url, &format!("#ticket={ticket}")).await;
    let st = upload_to_done(&mut browser, &path, Duration::from_secs(60)).await;
    assert_eq!(st["result"]["sha256Hex"], want.as_str());
    assert_eq!(st["result"]["delivery"]["kind"], "attachment");
    assert_eq!(st["bytesDone"], bytes.len());
    let id = str_of(&st["uploadId"]).to_string();

    // S3 holds the file, no upload is left open, and Genesys got the same bytes in one
    // message.
    assert_eq!(rig.object_sha256(&id).await.as_deref(), Some(want.as_str()));
    assert_eq!(rig.open_multipart_uploads().await.unwrap(), 0);
    let media = rig.stack.sim.messaging().all_media();
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].received_sha256.as_deref(), Some(want.as_str()));
    let sent = rig.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].media_ids, vec![media[0].id.clone()]);

    // Both parts were signed once and PUT once, straight to moto, with exactly the headers
    // they were signed with (their own checksum among them), no ticket, no credentials.
    let record = rig.upload_record(&id).await.expect("the upload's record");
    let seen = Seen::read(&mut browser).await;
    assert_eq!(sorted(seen.signed()), [1, 2], "{:#?}", seen.api_calls());
    assert_eq!(seen.parts_put(), [1, 2]);
    let moto = format!("{}/{BUCKET}/", rig.stack.moto.endpoint_url());
    for (n, put) in seen.puts() {
        let url = str_of(&put["url"]);
        assert!(url.starts_with(&moto), "part {n} went to {url}");
        assert_eq!(
            query(url, "uploadId").as_deref(),
            record["s3UploadId"].as_str()
        );
        assert!(!url.contains(&ticket), "part {n}'s URL carries the ticket");
        assert_eq!(put["status"], 200, "part {n}");
        assert_eq!(put["bytes"], part(&bytes, n).len(), "part {n}");
        assert_eq!(put["headers"], seen.signed_headers(n), "part {n}");
        assert_eq!(
            put["headers"]["x-amz-checksum-sha256"],
            b64_sha256(part(&bytes, n)),
            "part {n}"
        );
        assert_eq!(put["withCredentials"], false, "part {n}");
    }
    // The API calls stay on the page's own origin, each with the ticket.
    for f in &seen.fetches {
        let url = str_of(&f["url"]);
        assert!(!url.contains("://"), "an API call left the origin: {url}");
        assert!(
            f["headers"]
                .as_array()
                .is_some_and(|h| h.contains(&json!("x-upload-ticket"))),
            "{f}"
        );
    }

    let result = text_of(&mut browser, "result").await;
    let size = format!("{} bytes", grouped(bytes.len()));
    for needle in [
        "Delivered as an attachment",
        "report 2026.pdf",
        want.as_str(),
        size.as_str(),
    ] {
        assert!(result.contains(needle), "{needle:?} not in {result:?}");
    }
    assert_eq!(
        browser
            .evaluate("document.getElementById('progress').value")
            .await
            .unwrap(),
        bytes.len()
    );
    assert_eq!(
        browser.evaluate("localStorage.length").await.unwrap(),
        0,
        "a delivered upload leaves nothing to resume"
    );
    assert_ticket_not_in_console(&browser, &ticket);
    let shot = target_dir().join("upload-page-delivered.png");
    browser.screenshot(&shot).await.unwrap();
    assert_real_render(&shot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_signs_a_part_again_when_its_put_fails_close_to_the_urls_expiry() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    // Part URLs valid for 20 s, inside the page's 30 s margin: a retry asks for a fresh one.
    let api = ApiBehindS3Proxy::start(&rig, &[("UPLOAD_PART_URL_TTL_SECS", "20".into())]).await;
    // The object's path sees the API's CreateMultipartUpload, the page's preflight, then its
    // PUT: that PUT is refused as S3 refuses an expired URL. Not covered: the page's own 403
    // branch (sign again however fresh the URL). Real S3 sends CORS headers with its errors,
    // so the page can read that 403; moto enforces no expiry and, like the fault proxy,
    // sends no CORS headers with an error, so here the browser only sees a failed request.
    api.s3.add(
        FaultRule::new(
            RequestClass::Media,
            FaultKind::Status {
                status: 403,
                retry_after_secs: None,
            },
        )
        .path_contains("/attachments/")
        .skip(2),
    );
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(dir.path(), "minutes.bin", 3 << 20);
    let want = hex::encode(Sha256::digest(&bytes));
    let ticket = rig.ticket();
    let mut browser = open_page(&api.base_url, &format!("#ticket={ticket}")).await;
    let st = upload_to_done(&mut browser, &path, Duration::from_secs(60)).await;
    assert_eq!(st["result"]["sha256Hex"], want.as_str());
    let id = str_of(&st["uploadId"]);
    assert_eq!(rig.object_sha256(id).await.as_deref(), Some(want.as_str()));

    // S3's side: the first PUT was refused before it reached moto, the second went in.
    let to_s3: Vec<(String, u16, bool)> = api
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/attachments/") && r.method != "OPTIONS")
        .map(|r| (r.method, r.status, r.fault.is_some()))
        .take(3)
        .collect();
    assert_eq!(
        to_s3,
        [
            ("POST".to_string(), 200, false),
            ("PUT".to_string(), 403, true),
            ("PUT".to_string(), 200, false)
        ],
        "{:#?}",
        api.s3.requests()
    );
    // The page's side: a failed request, a fresh URL, the part.
    let seen = Seen::read(&mut browser).await;
    assert_eq!(seen.signed(), [1, 1], "{:#?}", seen.api_calls());
    let statuses: Vec<&Value> = seen.puts().iter().map(|(_, x)| &x["status"]).collect();
    assert_eq!(statuses, [&json!(0), &json!(200)]);
    let console = browser.console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("part 1: attempt 1 failed (network); retrying")),
        "{console:#?}"
    );
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_resumes_after_a_reload_sending_only_the_missing_parts() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    let api = FaultProxy::start(&rig.base_url)
        .await
        .expect("start the API proxy");
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(dir.path(), "survey.bin", 2 * PART + 777_777);
    let want = hex::encode(Sha256::digest(&bytes));
    let ticket = rig.ticket();

    // First visit: the page creates the upload and asks for its three part URLs, whose
    // answers never come; the tab is reloaded. No byte went to S3 from this visit.
    api.add(hold_signing());
    let mut browser = open_page(&api.base_url(), &format!("#ticket={ticket}")).await;
    pick_and_start(&mut browser, &path).await;
    wait_for_requests(&api, "/parts", 3).await;
    assert!(Seen::read(&mut browser).await.xhrs.is_empty());
    let id = browser
        .evaluate("window.uploadState.uploadId")
        .await
        .unwrap()
        .as_str()
        .expect("the upload was created")
        .to_string();
    browser.reload().await.unwrap();
    api.clear();
    assert_eq!(
        browser.evaluate("window.uploadState.phase").await.unwrap(),
        "idle"
    );

    // Meanwhile S3 got part 1 as the page cuts it, and a part 3 with other bytes than the
    // page's (so with another checksum): the page must send part 3 again, and part 2.
    send_part(&rig, &id, 1, part(&bytes, 1)).await;
    let mut other = part(&bytes, 3).to_vec();
    other[0] ^= 0xff;
    send_part(&rig, &id, 3, &other).await;
    assert_eq!(
        listed_parts(&api_state(&rig, &id).await),
        [(1, b64_sha256(part(&bytes, 1))), (3, b64_sha256(&other))]
    );

    // The user picks the same file again.
    browser.set_file_input("#file", &path).await.unwrap();
    assert!(
        text_of(&mut browser, "file-info")
            .await
            .contains("will be continued"),
        "the page says it resumes"
    );
    let st = upload_to_done(&mut browser, &path, Duration::from_secs(60)).await;
    assert_eq!(st["uploadId"], id.as_str(), "the same upload, resumed");
    assert_eq!(st["result"]["sha256Hex"], want.as_str());
    assert_eq!(rig.object_sha256(&id).await.as_deref(), Some(want.as_str()));

    let seen = Seen::read(&mut browser).await;
    let calls = seen.api_calls();
    assert_eq!(
        calls.first().map(String::as_str),
        Some(format!("GET uploads/{id}").as_str()),
        "the page asks what S3 has first: {calls:#?}"
    );
    assert!(!calls.contains(&"POST uploads".to_string()), "{calls:#?}");
    assert_eq!(sorted(seen.signed()), [2, 3], "{calls:#?}");
    assert_eq!(seen.parts_put(), [2, 3]);
    assert_eq!(browser.evaluate("localStorage.length").await.unwrap(), 0);
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_the_services_refusal_and_uploads_nothing() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "setup.exe", 1000);
    let ticket = rig.ticket();
    let mut browser = open_page(&rig.base_url, &format!("#ticket={ticket}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(20)).await;
    assert_eq!(st["phase"], "failed", "{st:#}");
    assert_eq!(st["error"]["code"], "blocked_extension");
    assert_eq!(
        text_of(&mut browser, "error").await,
        "files ending in .exe are not accepted"
    );
    assert_eq!(
        browser
            .evaluate("getComputedStyle(document.getElementById('error')).display !== 'none'")
            .await
            .unwrap(),
        true
    );
    let seen = Seen::read(&mut browser).await;
    assert_eq!(seen.api_calls(), ["POST uploads"]);
    assert_eq!(seen.fetches[0]["status"], 400);
    assert!(seen.xhrs.is_empty(), "{:#?}", seen.xhrs);
    assert_eq!(browser.evaluate("localStorage.length").await.unwrap(), 0);
    // Nothing of it in S3: no upload begun, no object, no record.
    assert_eq!(rig.open_multipart_uploads().await.unwrap(), 0);
    let keys = rig
        .stack
        .list_keys(gc_archive_it::stack::PREFIX)
        .await
        .unwrap();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("/attachments/") || k.contains("/_state/uploads/")),
        "{keys:#?}"
    );
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_without_a_ticket_says_so_and_cannot_upload() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    // The page itself needs no ticket: upload-proxy serves it to anyone, with its policy.
    let page = rig
        .http
        .get(format!("{}/", rig.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap_or_default().contains("connect-src")));

    let mut browser = open_page(&rig.base_url, "").await;
    let st = browser.evaluate("window.uploadState").await.unwrap();
    assert_eq!(
        (st["phase"].as_str(), st["error"]["code"].as_str()),
        (Some("failed"), Some("no_ticket"))
    );
    assert!(text_of(&mut browser, "error").await.contains("upload link"));
    assert_eq!(
        browser.evaluate("document.getElementById('file').disabled && document.getElementById('start').disabled").await.unwrap(),
        true
    );
    // The link arriving later (a fragment change) makes the page usable.
    let ticket = rig.ticket();
    browser
        .navigate(&format!("{}/#ticket={ticket}", rig.base_url))
        .await
        .unwrap();
    browser
        .wait_until(
            "!document.getElementById('file').disabled",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        browser.evaluate("window.uploadState.error").await.unwrap(),
        Value::Null
    );
    // Nothing was asked of the API or S3 before a file was picked.
    let seen = Seen::read(&mut browser).await;
    assert!(seen.fetches.is_empty() && seen.xhrs.is_empty());
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_aborts_the_upload_and_leaves_nothing_in_s3() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    // One part's URL comes back, the other's does not: the upload is under way, with one
    // part in S3, when the user cancels.
    let api = FaultProxy::start(&rig.base_url)
        .await
        .expect("start the API proxy");
    api.add(hold_signing().skip(1));
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "long.bin", PART + 500_000);
    let ticket = rig.ticket();
    let mut browser = open_page(&api.base_url(), &format!("#ticket={ticket}")).await;
    pick_and_start(&mut browser, &path).await;
    browser
        .wait_until(
            "window.uploadState.bytesDone > 0 && !document.getElementById('cancel').disabled",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let id = str_of(
        &browser
            .evaluate("window.uploadState.uploadId")
            .await
            .unwrap(),
    )
    .to_string();
    assert_eq!(listed_parts(&api_state(&rig, &id).await).len(), 1);

    browser
        .evaluate("document.getElementById('cancel').click()")
        .await
        .unwrap();
    let st = wait_phase(&mut browser, "['idle','failed']", Duration::from_secs(20)).await;
    assert_eq!(st["phase"], "idle", "{st:#}");
    assert!(text_of(&mut browser, "status").await.contains("cancelled"));
    let record = rig.upload_record(&id).await.expect("the upload's record");
    assert_eq!(record["phase"], "aborted");
    assert_eq!(rig.open_multipart_uploads().await.unwrap(), 0);
    assert_eq!(rig.attachment_keys().await.unwrap(), Vec::<String>::new());
    assert_eq!(browser.evaluate("localStorage.length").await.unwrap(), 0);

    // Nothing was completed or sent, and nothing starts again by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = Seen::read(&mut browser).await.api_calls();
    assert!(
        calls.contains(&format!("DELETE uploads/{id}")),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.ends_with("/complete")),
        "{calls:#?}"
    );
    assert_eq!(
        browser.evaluate("window.uploadState.phase").await.unwrap(),
        "idle"
    );
    assert!(rig.sent_messages().is_empty());
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_fails_clearly_when_the_bucket_has_no_cors_rule_for_its_origin() {
    // The rig's lesson: S3 must answer the page's preflight, or no byte leaves the browser.
    let rig = UploadRig::start().await.expect("start the upload rig");
    rig.stack
        .s3
        .delete_bucket_cors()
        .bucket(BUCKET)
        .send()
        .await
        .expect("remove the bucket's CORS rule");
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "a.bin", 1000);
    let ticket = rig.ticket();
    let mut browser = open_page(&rig.base_url, &format!("#ticket={ticket}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(60)).await;
    assert_eq!(st["phase"], "failed", "{st:#}");
    assert_eq!(st["error"]["code"], "network");
    assert!(text_of(&mut browser, "error").await.contains("storage"));
    let id = str_of(&st["uploadId"]);
    assert_eq!(listed_parts(&api_state(&rig, id).await), []);
    assert_eq!(rig.attachment_keys().await.unwrap(), Vec::<String>::new());

    // The first attempt and PART_RETRIES (4) retries, all with the one URL signed (a network
    // error keeps it), none answered.
    let seen = Seen::read(&mut browser).await;
    assert_eq!(seen.signed(), [1], "{:#?}", seen.api_calls());
    let puts = seen.puts();
    assert_eq!(puts.len(), 5, "{puts:#?}");
    assert!(puts
        .iter()
        .all(|(n, x)| *n == 1 && x["status"] == 0 && x["url"] == puts[0].1["url"]));
    let console = browser.console();
    let retries = console.iter().filter(|l| l.contains("retrying")).count();
    assert_eq!(retries, 4, "{console:#?}");
    assert_ticket_not_in_console(&browser, &ticket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uploads_50_mib_through_the_page() {
    let rig = UploadRig::start().await.expect("start the upload rig");
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(dir.path(), "site survey.bin", 50 << 20);
    let want = hex::encode(Sha256::digest(&bytes));
    drop(bytes);
    let ticket = rig.ticket();

    let mut browser = open_page(&rig.base_url, &format!("#ticket={ticket}")).await;
    let st = upload_to_done(&mut browser, &path, Duration::from_secs(240)).await;
    assert_eq!(st["result"]["sha256Hex"], want.as_str());
    assert_eq!(st["bytesDone"], 50 << 20);
    let id = st["uploadId"]
        .as_str()
        .expect("a delivered upload has an id");
    assert_eq!(rig.object_sha256(id).await.as_deref(), Some(want.as_str()));
    assert!(
        !rig.sent_messages().is_empty(),
        "the conversation got the file"
    );
    // Seven parts, each PUT once straight to moto.
    let seen = Seen::read(&mut browser).await;
    assert_eq!(seen.parts_put(), (1..=7).collect::<Vec<u32>>());
    let moto = format!("{}/{BUCKET}/", rig.stack.moto.endpoint_url());
    assert!(seen
        .puts()
        .iter()
        .all(|(_, x)| str_of(&x["url"]).starts_with(&moto) && x["status"] == 200));

    let result = text_of(&mut browser, "result").await;
    for needle in [
        "Delivered as",
        "site survey.bin",
        want.as_str(),
        "52,428,800 bytes",
    ] {
        assert!(result.contains(needle), "{needle:?} not in {result:?}");
    }
    assert_ticket_not_in_console(&browser, &ticket);
    let shot = target_dir().join("upload-browser.png");
    browser.screenshot(&shot).await.unwrap();
    assert_real_render(&shot);
}
