//! The upload page (`web/upload.html`) in headless Chromium, driven over the DevTools protocol
//! ([`gc_archive_it::chromium`]): a file picked through the real file input is hashed by the
//! page, PUT part by part to presigned S3 URLs and delivered; what lands in S3 is the file.
//!
//! Two kinds of test. The page's own behaviour (retries, re-signing, resume, refusals,
//! cancel, no ticket) runs against [`StandIn`], a small in-test imitation of upload-proxy's
//! API over real moto multipart uploads, so each failure can be staged exactly; the real
//! function behind the page is exercised at the bottom of the file (`// needs upload_kit`).
//! moto runs with `MOTO_DISABLE_GLOBAL_CORS=1`: otherwise its server answers every preflight
//! with allow-all headers and the bucket's CORS rules would go untested.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, CorsConfiguration, CorsRule,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use axum::Json;
use gc_archive_it::chromium::Chromium;
use gc_archive_it::MotoServer;
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

// ---- the page against a stand-in API ------------------------------------------------------

/// The page exactly as upload-proxy embeds it.
const UPLOAD_PAGE: &str = include_str!("../../../web/upload.html");
/// upload-proxy's policy for the page (`gc_archive::upload::api`): inline script and style,
/// calls to its own origin and to S3 (loopback in tests).
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' https: http://127.0.0.1:* http://localhost:*; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const BUCKET: &str = "uploads";
const TICKET: &str = "tkt-ab12cd34-not-a-real-ticket";
/// Small parts so a few MiB make several; moto is told to accept them.
const PART_SIZE: u64 = 1024 * 1024;

/// One upload as the stand-in keeps it.
#[derive(Clone)]
struct Upload {
    key: String,
    s3_upload_id: String,
    file_name: String,
    size: u64,
    part_count: u32,
    /// Part number → the base64 SHA-256 it was last signed with.
    signed: BTreeMap<u32, String>,
    state: &'static str,
    sha256_hex: Option<String>,
}

#[derive(Default)]
struct Staged {
    /// Parts whose signing answers 400 (a permanent failure).
    refuse_sign: BTreeSet<u32>,
    /// Parts whose first signed URL is already "expired": it leads to `/expired` (403).
    expire_first_url: BTreeSet<u32>,
    /// Delay before each signing answer.
    slow_sign: Option<Duration>,
    /// Parts `GET /uploads/{id}` lists with a SHA-256 other than the one signed.
    misreport_sha: BTreeSet<u32>,
}

/// An imitation of upload-proxy's HTTP API (same routes, bodies and error shape) over real
/// moto multipart uploads, recording what the page asked for.
struct StandIn {
    s3: aws_sdk_s3::Client,
    s3_endpoint: String,
    base_url: String,
    uploads: Mutex<HashMap<String, Upload>>,
    idempotency: Mutex<HashMap<String, String>>,
    /// `"create"`, `"sign 3"`, `"get"`, `"complete"`, `"delete"`, `"expired 2"`, in order.
    log: Mutex<Vec<String>>,
    /// Headers of the PUTs that reached `/expired`: what the page sends to S3.
    expired_put_headers: Mutex<Vec<HeaderMap>>,
    staged: Mutex<Staged>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The text of the first `<name>` element in `xml`.
fn xml_tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = xml[start..].find('<').map_or(xml.len(), |i| start + i);
    &xml[start..end]
}

fn api_error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid status in the stand-in");
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl StandIn {
    /// moto (with bucket-level CORS only) and the stand-in on free loopback ports; the bucket
    /// lets the stand-in's origin PUT with any header.
    async fn start() -> (Arc<StandIn>, MotoServer) {
        StandIn::start_with(true).await
    }

    /// As [`StandIn::start`], the bucket's CORS rule for the page's origin only if `cors`.
    async fn start_with(cors: bool) -> (Arc<StandIn>, MotoServer) {
        let min_part = PART_SIZE.to_string();
        let moto = MotoServer::start_with_env(&[
            ("MOTO_DISABLE_GLOBAL_CORS", "1"),
            ("S3_UPLOAD_PART_MIN_SIZE", min_part.as_str()),
        ])
        .await;
        let conf = aws_sdk_s3::config::Builder::from(&moto.sdk_config().await)
            .force_path_style(true)
            // A presigned part carries only the checksum the page declared.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let rule = CorsRule::builder()
            .allowed_origins(&base_url)
            .allowed_methods("PUT")
            .allowed_headers("*")
            .expose_headers("ETag")
            .max_age_seconds(600)
            .build()
            .unwrap();
        if cors {
            s3.put_bucket_cors()
                .bucket(BUCKET)
                .cors_configuration(
                    CorsConfiguration::builder()
                        .cors_rules(rule)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        let stand_in = Arc::new(StandIn {
            s3,
            s3_endpoint: moto.endpoint_url(),
            base_url,
            uploads: Mutex::default(),
            idempotency: Mutex::default(),
            log: Mutex::default(),
            expired_put_headers: Mutex::default(),
            staged: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/", get(page))
            .route("/expired/{n}", put(expired))
            .fallback(api)
            .with_state(Arc::clone(&stand_in));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (stand_in, moto)
    }

    fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    fn note(&self, entry: String) {
        lock(&self.log).push(entry);
    }

    fn upload(&self, id: &str) -> Option<Upload> {
        lock(&self.uploads).get(id).cloned()
    }

    async fn object_sha256_hex(&self, key: &str) -> Option<String> {
        let got = self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .ok()?;
        let body = got.body.collect().await.ok()?.into_bytes();
        Some(hex::encode(Sha256::digest(&body)))
    }

    /// Part number → (size, ETag) of what S3 holds. A ListParts read by hand: moto 5.2.5
    /// answers with a `ListPartsResponse` root, which the SDK's parser refuses (it wants
    /// `ListPartsResult`); unsigned, which moto without IAM enforcement accepts.
    async fn listed_parts(&self, up: &Upload) -> BTreeMap<u32, (u64, String)> {
        let url = format!(
            "{}/{BUCKET}/{}?uploadId={}",
            self.s3_endpoint, up.key, up.s3_upload_id
        );
        let xml = reqwest::get(url)
            .await
            .and_then(|r| r.error_for_status())
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Part>")
            .skip(1)
            .map(|part| {
                let n = xml_tag(part, "PartNumber").parse().unwrap();
                let size = xml_tag(part, "Size").parse().unwrap();
                let etag = xml_tag(part, "ETag")
                    .replace("&#34;", "\"")
                    .replace("&quot;", "\"");
                (n, (size, etag))
            })
            .collect()
    }

    async fn view(&self, up: &Upload) -> Value {
        let mut uploaded = Vec::new();
        if up.state == "uploading" {
            let misreport = lock(&self.staged).misreport_sha.clone();
            for (n, (size, _)) in self.listed_parts(up).await {
                let sha = if misreport.contains(&n) {
                    Some(base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        [0u8; 32],
                    ))
                } else {
                    up.signed.get(&n).cloned()
                };
                uploaded.push(json!({"partNumber": n, "size": size, "sha256": sha}));
            }
        }
        let mut v = json!({
            "uploadId": up.key,
            "state": up.state,
            "fileName": up.file_name,
            "fileType": "application/octet-stream",
            "size": up.size,
            "partSize": PART_SIZE,
            "partCount": up.part_count,
            "uploadedParts": uploaded,
        });
        if let Some(h) = &up.sha256_hex {
            v["sha256Hex"] = json!(h);
            v["delivery"] =
                json!({"kind": "attachment", "mediaId": "media-1", "messageId": "msg-1"});
        }
        v
    }

    async fn create(&self, body: &Value) -> Response {
        let (Some(name), Some(size), Some(key)) = (
            body["fileName"].as_str(),
            body["size"].as_u64(),
            body["idempotencyKey"].as_str(),
        ) else {
            return api_error(
                400,
                "bad_request",
                "fileName, size and idempotencyKey are required",
            );
        };
        self.note("create".into());
        if name.to_ascii_lowercase().ends_with(".exe") {
            return api_error(
                422,
                "blocked_extension",
                "files ending in .exe are not accepted",
            );
        }
        let known = lock(&self.idempotency).get(key).cloned();
        if let Some(id) = known {
            let up = self
                .upload(&id)
                .expect("an idempotency key names a known upload");
            return (StatusCode::OK, Json(self.created(&up, true))).into_response();
        }
        let id = format!("up-{}", lock(&self.uploads).len() + 1);
        let s3_upload_id = self
            .s3
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&id)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let up = Upload {
            key: id.clone(),
            s3_upload_id,
            file_name: name.to_string(),
            size,
            part_count: size.div_ceil(PART_SIZE) as u32,
            signed: BTreeMap::new(),
            state: "uploading",
            sha256_hex: None,
        };
        lock(&self.uploads).insert(id.clone(), up.clone());
        lock(&self.idempotency).insert(key.to_string(), id);
        (StatusCode::CREATED, Json(self.created(&up, false))).into_response()
    }

    fn created(&self, up: &Upload, replayed: bool) -> Value {
        json!({
            "uploadId": up.key, "state": up.state, "fileName": up.file_name,
            "partSize": PART_SIZE, "partCount": up.part_count,
            "expiresAt": "2099-01-01T00:00:00Z", "parts": [], "replayed": replayed,
        })
    }

    async fn sign(&self, id: &str, body: &Value) -> Response {
        let Some(mut up) = self.upload(id) else {
            return api_error(404, "not_found", "no such upload");
        };
        let delay = lock(&self.staged).slow_sign;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut out = Vec::new();
        for p in body["parts"].as_array().cloned().unwrap_or_default() {
            let (Some(n), Some(sha)) = (p["partNumber"].as_u64(), p["sha256"].as_str()) else {
                return api_error(400, "bad_request", "parts need partNumber and sha256");
            };
            let n = n as u32;
            self.note(format!("sign {n}"));
            if lock(&self.staged).refuse_sign.contains(&n) {
                return api_error(400, "bad_request", &format!("part {n} cannot be signed"));
            }
            up.signed.insert(n, sha.to_string());
            if lock(&self.staged).expire_first_url.remove(&n) {
                out.push(json!({
                    "partNumber": n,
                    "url": format!("{}/expired/{n}", self.base_url),
                    "headers": {"x-amz-checksum-sha256": sha},
                    "expiresAt": "2099-01-01T00:00:00Z",
                }));
                continue;
            }
            let presigned = self
                .s3
                .upload_part()
                .bucket(BUCKET)
                .key(&up.key)
                .upload_id(&up.s3_upload_id)
                .part_number(n as i32)
                .checksum_sha256(sha)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(900)).unwrap())
                .await
                .unwrap();
            let headers: BTreeMap<String, String> = presigned
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            out.push(json!({
                "partNumber": n,
                "url": presigned.uri(),
                "headers": headers,
                "expiresAt": "2099-01-01T00:00:00Z",
            }));
        }
        lock(&self.uploads).insert(id.to_string(), up);
        Json(json!({ "parts": out })).into_response()
    }

    async fn complete(&self, id: &str, body: &Value) -> Response {
        let Some(mut up) = self.upload(id) else {
            return api_error(404, "not_found", "no such upload");
        };
        self.note("complete".into());
        if up.state == "delivered" {
            return Json(self.view(&up).await).into_response();
        }
        let declared: BTreeMap<u32, String> = body["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                Some((
                    p["partNumber"].as_u64()? as u32,
                    p["sha256"].as_str()?.to_string(),
                ))
            })
            .collect();
        if declared != up.signed || declared.len() != up.part_count as usize {
            return api_error(
                409,
                "parts_mismatch",
                "the parts listed are not the parts signed",
            );
        }
        let listed = self.listed_parts(&up).await;
        if listed.len() != up.part_count as usize {
            return api_error(409, "parts_missing", "some parts are not uploaded");
        }
        let parts: Vec<CompletedPart> = listed
            .iter()
            .map(|(n, (_, etag))| {
                CompletedPart::builder()
                    .part_number(*n as i32)
                    .e_tag(etag)
                    .checksum_sha256(&up.signed[n])
                    .build()
            })
            .collect();
        self.s3
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(&up.key)
            .upload_id(&up.s3_upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        up.sha256_hex = self.object_sha256_hex(&up.key).await;
        up.state = "delivered";
        lock(&self.uploads).insert(id.to_string(), up.clone());
        Json(self.view(&up).await).into_response()
    }

    async fn abort(&self, id: &str) -> Response {
        let Some(mut up) = self.upload(id) else {
            return api_error(404, "not_found", "no such upload");
        };
        self.note("delete".into());
        let _ = self
            .s3
            .abort_multipart_upload()
            .bucket(BUCKET)
            .key(&up.key)
            .upload_id(&up.s3_upload_id)
            .send()
            .await;
        up.state = "aborted";
        lock(&self.uploads).insert(id.to_string(), up.clone());
        Json(self.view(&up).await).into_response()
    }
}

async fn page() -> Response {
    (
        [
            ("content-security-policy", PAGE_CSP),
            ("referrer-policy", "no-referrer"),
        ],
        Html(UPLOAD_PAGE),
    )
        .into_response()
}

/// Where a staged "expired" URL leads: S3's answer to an expired signature.
async fn expired(
    State(s): State<Arc<StandIn>>,
    axum::extract::Path(n): axum::extract::Path<u32>,
    headers: HeaderMap,
) -> Response {
    s.note(format!("expired {n}"));
    lock(&s.expired_put_headers).push(headers);
    (
        StatusCode::FORBIDDEN,
        "<Error><Code>AccessDenied</Code></Error>",
    )
        .into_response()
}

async fn api(
    State(s): State<Arc<StandIn>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-upload-ticket").and_then(|v| v.to_str().ok()) != Some(TICKET) {
        return api_error(401, "unauthorized", "an x-upload-ticket header is required");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["uploads"]) => s.create(&body).await,
        ("POST", ["uploads", id, "parts"]) => s.sign(id, &body).await,
        ("POST", ["uploads", id, "complete"]) => s.complete(id, &body).await,
        ("GET", ["uploads", id]) => {
            s.note("get".into());
            match s.upload(id) {
                Some(up) => Json(s.view(&up).await).into_response(),
                None => api_error(404, "not_found", "no such upload"),
            }
        }
        ("DELETE", ["uploads", id]) => s.abort(id).await,
        _ => api_error(404, "not_found", "no such route"),
    }
}

/// Where screenshots are kept for a person to look at: the workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// A file of `len` incompressible bytes in `dir`; its bytes back.
fn write_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let bytes = noise(len, seed());
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

async fn open_page(s: &StandIn, fragment: &str) -> Chromium {
    let mut browser = Chromium::launch().await.expect("launch chromium");
    browser
        .navigate(&format!("{}/{fragment}", s.base_url))
        .await
        .expect("the upload page loads");
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

#[tokio::test]
async fn page_uploads_every_part_to_presigned_moto_urls_and_shows_the_delivery() {
    let (s, _moto) = StandIn::start().await;
    lock(&s.staged).expire_first_url.insert(2);
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(
        dir.path(),
        "report 2026.pdf",
        6 * PART_SIZE as usize + 12_345,
    );
    let mut browser = open_page(&s, &format!("#ticket={TICKET}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(60)).await;
    assert_eq!(
        st["phase"],
        "done",
        "{st:#}; console: {:#?}",
        browser.console()
    );

    let want = hex::encode(Sha256::digest(&bytes));
    assert_eq!(st["result"]["sha256Hex"], want.as_str());
    assert_eq!(st["bytesDone"], bytes.len());
    let up = s.upload(st["uploadId"].as_str().unwrap()).unwrap();
    assert_eq!(
        s.object_sha256_hex(&up.key).await.as_deref(),
        Some(want.as_str())
    );

    // Part 2's first URL answered 403: the page signed it again and sent it to S3.
    let log = s.log();
    let signs_of_2 = log.iter().filter(|l| *l == "sign 2").count();
    assert_eq!(signs_of_2, 2, "{log:?}");
    assert!(log.contains(&"expired 2".to_string()), "{log:?}");
    for n in [1, 3, 4, 5, 6, 7] {
        let count = log.iter().filter(|l| **l == format!("sign {n}")).count();
        assert_eq!(count, 1, "part {n}: {log:?}");
    }
    // What went to the part URL: the signed checksum, never the ticket.
    let put = lock(&s.expired_put_headers)[0].clone();
    assert_eq!(put["x-amz-checksum-sha256"], up.signed[&2].as_str());
    assert!(put.get("x-upload-ticket").is_none(), "{put:?}");
    assert!(
        put.get("cookie").is_none() && put.get("referer").is_none(),
        "{put:?}"
    );

    let result = text_of(&mut browser, "result").await;
    for needle in [
        "Delivered as an attachment",
        "report 2026.pdf",
        want.as_str(),
        "6,303,801 bytes",
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
    let console = browser.console().join("\n");
    assert!(
        !console.contains(TICKET),
        "the ticket reached the console: {console}"
    );
    let shot = target_dir().join("upload-page-stand-in.png");
    browser.screenshot(&shot).await.unwrap();
    assert_real_render(&shot);
}

#[tokio::test]
async fn page_fails_clearly_when_the_bucket_has_no_cors_rule_for_its_origin() {
    // The rig's lesson: S3 must answer the page's preflight, or no byte leaves the browser.
    let (s, _moto) = StandIn::start_with(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "a.bin", 1000);
    let mut browser = open_page(&s, &format!("#ticket={TICKET}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(60)).await;
    assert_eq!(st["phase"], "failed", "{st:#}");
    assert_eq!(st["error"]["code"], "network");
    assert!(text_of(&mut browser, "error").await.contains("storage"));
    let up = s.upload(st["uploadId"].as_str().unwrap()).unwrap();
    assert!(s.listed_parts(&up).await.is_empty());
    // First attempt and PART_RETRIES (4) retries, each signed once (a network error keeps
    // the URL).
    let console = browser.console();
    let retries = console.iter().filter(|l| l.contains("retrying")).count();
    assert_eq!(retries, 4, "{console:#?}");
    assert_eq!(s.log(), ["create", "sign 1"]);
}

#[tokio::test]
async fn page_resumes_after_a_reload_sending_only_the_missing_parts() {
    let (s, _moto) = StandIn::start().await;
    lock(&s.staged).refuse_sign.extend(5..=7);
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(dir.path(), "big.bin", 6 * PART_SIZE as usize + 1);
    let mut browser = open_page(&s, &format!("#ticket={TICKET}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(60)).await;
    assert_eq!(st["phase"], "failed", "{st:#}");
    assert!(
        text_of(&mut browser, "error")
            .await
            .contains("cannot be signed"),
        "the service's message is shown"
    );
    let id = st["uploadId"].as_str().unwrap().to_string();
    let up = s.upload(&id).unwrap();
    let in_s3: BTreeSet<u32> = s.listed_parts(&up).await.into_keys().collect();
    assert!(
        !in_s3.is_empty(),
        "part 5 is asked for only after a part is in"
    );

    // A reload: the page has forgotten the file, the user picks it again. One part S3 holds
    // is listed with another checksum than the page's: it must be sent again.
    let odd = *in_s3.first().expect("checked non-empty above");
    {
        let mut staged = lock(&s.staged);
        staged.refuse_sign.clear();
        staged.misreport_sha.insert(odd);
    }
    let before = s.log().len();
    browser.reload().await.unwrap();
    assert_eq!(
        browser.evaluate("window.uploadState.phase").await.unwrap(),
        "idle"
    );
    browser.set_file_input("#file", &path).await.unwrap();
    assert!(
        text_of(&mut browser, "file-info")
            .await
            .contains("will be continued"),
        "the page says it resumes"
    );
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(60)).await;
    assert_eq!(
        st["phase"],
        "done",
        "{st:#}; console: {:#?}",
        browser.console()
    );
    assert_eq!(st["uploadId"], id.as_str(), "the same upload, resumed");
    assert_eq!(
        st["result"]["sha256Hex"],
        hex::encode(Sha256::digest(&bytes))
    );

    let second: Vec<String> = s.log()[before..].to_vec();
    assert!(!second.contains(&"create".to_string()), "{second:?}");
    assert_eq!(
        second.first().map(String::as_str),
        Some("get"),
        "{second:?}"
    );
    let signed_again: BTreeSet<u32> = second
        .iter()
        .filter_map(|l| l.strip_prefix("sign ")?.parse().ok())
        .collect();
    let mut expected: BTreeSet<u32> = (1..=7).filter(|n| !in_s3.contains(n)).collect();
    expected.insert(odd);
    assert_eq!(
        signed_again, expected,
        "the parts S3 lacked and the one it listed with another checksum; S3 had {in_s3:?}, log {second:?}"
    );
}

#[tokio::test]
async fn page_shows_the_services_refusal_and_uploads_nothing() {
    let (s, _moto) = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "setup.exe", 1000);
    let mut browser = open_page(&s, &format!("#ticket={TICKET}")).await;
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(20)).await;
    assert_eq!(st["phase"], "failed");
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
    assert_eq!(s.log(), ["create"]);
    assert!(lock(&s.uploads).is_empty());
    assert_eq!(browser.evaluate("localStorage.length").await.unwrap(), 0);
}

#[tokio::test]
async fn page_without_a_ticket_says_so_and_cannot_upload() {
    let (s, _moto) = StandIn::start().await;
    let mut browser = open_page(&s, "").await;
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
    browser
        .navigate(&format!("{}/#ticket={TICKET}", s.base_url))
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
    assert!(s.log().is_empty());
}

#[tokio::test]
async fn cancel_aborts_the_upload_and_forgets_it() {
    let (s, _moto) = StandIn::start().await;
    lock(&s.staged).slow_sign = Some(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), "slow.bin", 6 * PART_SIZE as usize);
    let mut browser = open_page(&s, &format!("#ticket={TICKET}")).await;
    pick_and_start(&mut browser, &path).await;
    browser
        .wait_until(
            "window.uploadState.uploadId && !document.getElementById('cancel').disabled",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    browser
        .evaluate("document.getElementById('cancel').click()")
        .await
        .unwrap();
    let st = wait_phase(&mut browser, "['idle','failed']", Duration::from_secs(20)).await;
    assert_eq!(st["phase"], "idle", "{st:#}");
    assert!(text_of(&mut browser, "status").await.contains("cancelled"));
    let up = s.upload(st["uploadId"].as_str().unwrap()).unwrap();
    assert_eq!(up.state, "aborted");
    assert!(s.log().contains(&"delete".to_string()));
    assert_eq!(browser.evaluate("localStorage.length").await.unwrap(), 0);
    // Nothing was completed, and nothing starts again by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!s.log().contains(&"complete".to_string()), "{:?}", s.log());
    assert_eq!(
        browser.evaluate("window.uploadState.phase").await.unwrap(),
        "idle"
    );
}

// ---- needs upload_kit ----------------------------------------------------------------------
// needs upload_kit: the real upload-proxy behind the page (`gc_archive_it::upload_kit::UploadRig`:
// the API as the Lambda builds it on `rig.base_url`, serving the page at `/`; moto; the Genesys
// simulator).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uploads_50_mib_through_the_page() {
    let rig = gc_archive_it::upload_kit::UploadRig::start()
        .await
        .expect("start the upload rig");
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = write_file(dir.path(), "site survey.bin", 50 << 20);
    let want = hex::encode(Sha256::digest(&bytes));
    drop(bytes);
    let ticket = rig.ticket();

    let mut browser = Chromium::launch().await.expect("launch chromium");
    browser
        .navigate(&format!("{}/#ticket={ticket}", rig.base_url))
        .await
        .expect("the upload page loads");
    pick_and_start(&mut browser, &path).await;
    let st = wait_phase(&mut browser, "['done','failed']", Duration::from_secs(240)).await;
    assert_eq!(
        st["phase"],
        "done",
        "{st:#}; console: {:#?}",
        browser.console()
    );
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

    let result = text_of(&mut browser, "result").await;
    for needle in [
        "Delivered as",
        "site survey.bin",
        want.as_str(),
        "52,428,800 bytes",
    ] {
        assert!(result.contains(needle), "{needle:?} not in {result:?}");
    }
    let console = browser.console().join("\n");
    assert!(
        !console.contains(&ticket),
        "the ticket reached the console: {console}"
    );
    let shot = target_dir().join("upload-browser.png");
    browser.screenshot(&shot).await.unwrap();
    assert_real_render(&shot);
}
