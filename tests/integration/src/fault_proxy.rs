//! A fault-injecting HTTP reverse proxy for end-to-end tests: it sits in front of one upstream
//! (the Genesys Cloud simulator) on a free loopback port and breaks responses on the wire, the
//! way networks, load balancers and CDNs break them.
//!
//! It is written independently of the simulator on purpose: the simulator's own fault injection
//! shares its authors' assumptions about what a fault looks like, this one only knows HTTP.
//! Requests are classified as [`RequestClass::Token`] (`POST /oauth/token`),
//! [`RequestClass::Api`] (`/api/v2/...`) or [`RequestClass::Media`] (everything else: the signed
//! media URLs). The upstream's origin is rewritten to the proxy's own inside JSON bodies, so the
//! media URLs the API hands out lead back through the proxy.
//!
//! Bodies stream in both directions; only JSON bodies (small API answers) are read whole, to
//! rewrite them. What it deliberately does not do: TLS, HTTP/2, or any knowledge of the Genesys
//! API beyond the three path classes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which kind of endpoint a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// `POST /oauth/token`.
    Token,
    /// `/api/v2/...`.
    Api,
    /// Anything else: the signed media URLs.
    Media,
}

impl RequestClass {
    pub fn of(method: &Method, path: &str) -> RequestClass {
        if method == Method::POST && path == "/oauth/token" {
            RequestClass::Token
        } else if path.starts_with("/api/v2/") {
            RequestClass::Api
        } else {
            RequestClass::Media
        }
    }
}

/// What the proxy does to a request or its response. Every fault is applied by the proxy
/// itself; body offsets count from the start of this response's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Send the headers and `after_bytes` body bytes, then abort the connection (TCP RST).
    Reset { after_bytes: u64 },
    /// Keep the upstream `Content-Length` but end the body after `after_bytes` bytes, closing
    /// the connection cleanly (FIN).
    Truncate { after_bytes: u64 },
    /// XOR `0x01` into the body byte at `offset` (no change if the body is shorter).
    FlipByte { offset: u64 },
    /// Remove the `Range` header from the upstream request: the upstream answers 200 with the
    /// whole body.
    DropRange,
    /// Add `shift` to the start and end of the response's `Content-Range`.
    WrongContentRange { shift: i64 },
    /// Pause the body for `for_ms` after `after_bytes` bytes.
    Stall { after_bytes: u64, for_ms: u64 },
    /// Answer `status` without contacting the upstream: a small JSON body for API and token
    /// requests, an S3-style XML error for media.
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Answer 401 `bad.credentials` without contacting the upstream, as Genesys does for an
    /// expired or revoked access token.
    ExpireToken,
    /// Replace the response's `Content-Type`.
    WrongContentType(String),
}

/// When to apply a fault: to requests of `class` whose path contains `path_contains`, after
/// letting `skip` of them through, `times` times (`u32::MAX` = forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub class: RequestClass,
    pub path_contains: Option<String>,
    pub kind: FaultKind,
    pub skip: u32,
    pub times: u32,
}

impl FaultRule {
    /// The next matching request, once.
    pub fn new(class: RequestClass, kind: FaultKind) -> FaultRule {
        FaultRule {
            class,
            path_contains: None,
            kind,
            skip: 0,
            times: 1,
        }
    }

    pub fn skip(mut self, skip: u32) -> FaultRule {
        self.skip = skip;
        self
    }

    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = times;
        self
    }

    pub fn forever(self) -> FaultRule {
        self.times(u32::MAX)
    }

    pub fn path_contains(mut self, fragment: impl Into<String>) -> FaultRule {
        self.path_contains = Some(fragment.into());
        self
    }

    fn matches(&self, class: RequestClass, path: &str) -> bool {
        self.class == class
            && self
                .path_contains
                .as_deref()
                .is_none_or(|fragment| path.contains(fragment))
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub class: RequestClass,
    pub method: String,
    /// Without the query string (signed URLs carry their signature there).
    pub path: String,
    /// The `Range` header the client sent.
    pub range: Option<String>,
    /// The status the client received (502 when the upstream could not be reached).
    pub status: u16,
    /// The `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date` headers sent.
    pub object_lock: Option<(String, String)>,
    /// The fault applied to this request, if any.
    pub fault: Option<FaultKind>,
}

/// How long a body waits after its last byte was taken before the connection is cut, so the
/// server has flushed those bytes to the socket first.
const SETTLE: Duration = Duration::from_millis(50);

struct Inner {
    upstream_base: String,
    upstream_origin: String,
    own_origin: String,
    client: reqwest::Client,
    rules: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<ProxiedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Every matching rule still skipping counts the request; the first matching rule with
    /// nothing left to skip and budget left applies.
    fn take_fault(&self, class: RequestClass, path: &str) -> Option<FaultKind> {
        let mut rules = lock(&self.rules);
        let mut chosen = None;
        for rule in rules.iter_mut().filter(|r| r.matches(class, path)) {
            if rule.skip > 0 {
                rule.skip -= 1;
            } else if chosen.is_none() && rule.times > 0 {
                if rule.times != u32::MAX {
                    rule.times -= 1;
                }
                chosen = Some(rule.kind.clone());
            }
        }
        chosen
    }

    fn record(&self, entry: ProxiedRequest) {
        lock(&self.log).push(entry);
    }
}

/// A running proxy. Dropping it stops the server.
pub struct FaultProxy {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (e.g. `http://127.0.0.1:4321`).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let upstream_url = url::Url::parse(upstream).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{upstream}: {e}"))
        })?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            upstream_base: upstream.trim_end_matches('/').to_string(),
            upstream_origin: upstream_url.origin().ascii_serialization(),
            own_origin: format!("http://{addr}"),
            client,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(inner.clone())
            .into_make_service_with_connect_info::<ConnHandle>();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(ResettableListener(listener), app).await {
                eprintln!("fault proxy stopped: {e}");
            }
        });
        Ok(FaultProxy { inner, addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.inner.own_origin.clone()
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.inner.own_origin).expect("the proxy's own origin is a URL")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn add(&self, rule: FaultRule) {
        lock(&self.inner.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.inner.rules).clear();
    }

    /// The requests seen so far, in the order their responses started.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.inner.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    /// How many requests had a fault applied.
    pub fn faults_applied(&self) -> usize {
        lock(&self.inner.log)
            .iter()
            .filter(|r| r.fault.is_some())
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- connections that can be reset ----------------------------------------------------------

/// Accepts TCP connections whose handlers can ask for them to end with a RST.
struct ResettableListener(TcpListener);

/// The per-connection switch a handler flips to have the connection reset when it closes.
#[derive(Clone)]
struct ConnHandle {
    reset: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("reset", &self.reset.load(Ordering::Relaxed))
            .finish()
    }
}

impl ConnHandle {
    fn reset_on_close(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

struct ConnIo {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // SO_LINGER 0: closing sends a RST instead of a FIN.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Listener for ResettableListener {
    type Io = ConnIo;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (ConnIo, ConnHandle) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let reset = Arc::new(AtomicBool::new(false));
                    let handle = ConnHandle {
                        reset: reset.clone(),
                    };
                    return (ConnIo { stream, reset }, handle);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnHandle> {
        // Only the per-connection handles carry meaning; the listener's is a placeholder.
        self.0.local_addr().map(|_| ConnHandle {
            reset: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

// ---- the proxy ------------------------------------------------------------------------------

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::HOST,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in HOP_BY_HOP {
        out.remove(name);
    }
    out.remove(header::UPGRADE);
    out.remove("keep-alive");
    out
}

type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

async fn proxy(
    State(p): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let class = RequestClass::of(&parts.method, &path);
    let range = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = p.take_fault(class, &path);
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let object_lock = header_text("x-amz-object-lock-mode").map(|mode| {
        (
            mode,
            header_text("x-amz-object-lock-retain-until-date").unwrap_or_default(),
        )
    });
    let log = |status: u16| ProxiedRequest {
        class,
        method: parts.method.to_string(),
        path: path.clone(),
        range: range.clone(),
        status,
        object_lock: object_lock.clone(),
        fault: fault.clone(),
    };

    match &fault {
        Some(FaultKind::Status {
            status,
            retry_after_secs,
        }) => {
            let response = status_response(class, *status, *retry_after_secs);
            p.record(log(response.status().as_u16()));
            return response;
        }
        Some(FaultKind::ExpireToken) => {
            p.record(log(401));
            return json_response(
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Invalid login credentials.","code":"bad.credentials","status":401}"#
                    .to_string(),
            );
        }
        _ => {}
    }

    let mut headers = end_to_end(&parts.headers);
    if fault == Some(FaultKind::DropRange) {
        headers.remove(header::RANGE);
    }
    let target = format!(
        "{}{}",
        p.upstream_base,
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut upstream_req = p
        .client
        .request(parts.method.clone(), target)
        .headers(headers);
    if has_body {
        upstream_req = upstream_req.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let upstream = match upstream_req.send().await {
        Ok(r) => r,
        Err(e) => {
            p.record(log(502));
            return text_response(
                StatusCode::BAD_GATEWAY,
                format!("fault proxy: upstream: {e}"),
            );
        }
    };
    let status = upstream.status();
    let mut out_headers = end_to_end(upstream.headers());
    let is_json = out_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let body: BodyStream = if is_json {
        // API answers are small; read them whole to point their URLs at the proxy.
        let bytes = match upstream.bytes().await {
            Ok(b) => b,
            Err(e) => {
                p.record(log(502));
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    format!("fault proxy: upstream body: {e}"),
                );
            }
        };
        let rewritten = rewrite_origin(&bytes, &p.upstream_origin, &p.own_origin);
        out_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
        futures::stream::once(async move { Ok(rewritten) }).boxed()
    } else {
        upstream
            .bytes_stream()
            .map_err(std::io::Error::other)
            .boxed()
    };

    match &fault {
        Some(FaultKind::WrongContentRange { shift }) => {
            if let Some(shifted) = out_headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| shift_content_range(v, *shift))
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                out_headers.insert(header::CONTENT_RANGE, shifted);
            }
        }
        Some(FaultKind::WrongContentType(ct)) => match HeaderValue::from_str(ct) {
            Ok(v) => {
                out_headers.insert(header::CONTENT_TYPE, v);
            }
            Err(_) => {
                out_headers.remove(header::CONTENT_TYPE);
            }
        },
        _ => {}
    }
    let body = match &fault {
        Some(
            kind @ (FaultKind::Reset { .. }
            | FaultKind::Truncate { .. }
            | FaultKind::FlipByte { .. }
            | FaultKind::Stall { .. }),
        ) => faulty_body(body, kind.clone(), conn),
        _ => body,
    };
    p.record(log(status.as_u16()));
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

/// Replaces `from` by `to` everywhere in `body`, also in the `\/`-escaped form JSON allows.
fn rewrite_origin(body: &[u8], from: &str, to: &str) -> Bytes {
    let mut out = replace_all(body, from.as_bytes(), to.as_bytes());
    let escaped = |s: &str| s.replace('/', "\\/");
    out = replace_all(&out, escaped(from).as_bytes(), escaped(to).as_bytes());
    Bytes::from(out)
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if !from.is_empty() && haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// `bytes a-b/t` → `bytes (a+shift)-(b+shift)/t`; other forms (`bytes */t`) are left alone.
fn shift_content_range(value: &str, shift: i64) -> Option<String> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let move_by = |n: &str| {
        n.trim()
            .parse::<u64>()
            .ok()
            .map(|n| n.saturating_add_signed(shift))
    };
    Some(format!(
        "bytes {}-{}/{total}",
        move_by(start)?,
        move_by(end)?
    ))
}

/// Streams `upstream` to the client through `kind`. A pump task feeds a rendezvous channel, so
/// the pump knows when the server has taken each piece and can cut or pause right there.
fn faulty_body(mut upstream: BodyStream, kind: FaultKind, conn: ConnHandle) -> BodyStream {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(0);
    let cut = match kind {
        FaultKind::Reset { after_bytes }
        | FaultKind::Truncate { after_bytes }
        | FaultKind::Stall { after_bytes, .. } => Some(after_bytes),
        _ => None,
    };
    tokio::spawn(async move {
        let mut sent: u64 = 0;
        let mut cut_done = false;
        let mut pending: Option<Bytes> = None;
        loop {
            if cut == Some(sent) && !cut_done {
                cut_done = true;
                match kind {
                    FaultKind::Reset { .. } => {
                        tokio::time::sleep(SETTLE).await;
                        conn.reset_on_close();
                        let _ = tx
                            .send(Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "fault proxy: connection reset",
                            )))
                            .await;
                        return;
                    }
                    FaultKind::Truncate { .. } => {
                        tokio::time::sleep(SETTLE).await;
                        return;
                    }
                    FaultKind::Stall { for_ms, .. } => {
                        tokio::time::sleep(Duration::from_millis(for_ms)).await;
                    }
                    _ => {}
                }
            }
            let mut piece = match pending.take() {
                Some(p) => p,
                None => match upstream.next().await {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => return,
                },
            };
            if piece.is_empty() {
                continue;
            }
            if let Some(at) = cut.filter(|_| !cut_done) {
                if sent < at && sent + piece.len() as u64 > at {
                    pending = Some(piece.split_off((at - sent) as usize));
                }
            }
            if let FaultKind::FlipByte { offset } = kind {
                if offset >= sent && offset < sent + piece.len() as u64 {
                    let mut flipped = BytesMut::from(&piece[..]);
                    flipped[(offset - sent) as usize] ^= 0x01;
                    piece = flipped.freeze();
                }
            }
            sent += piece.len() as u64;
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
    });
    rx.boxed()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn status_response(class: RequestClass, status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match class {
        RequestClass::Api | RequestClass::Token => {
            let name = match code.as_u16() {
                429 => "too.many.requests",
                500 => "internal.server.error",
                502 => "bad.gateway",
                503 => "service.unavailable",
                504 => "gateway.timeout",
                _ => "fault.proxy",
            };
            json_response(
                code,
                format!(
                    r#"{{"message":"Injected by the fault proxy","code":"{name}","status":{}}}"#,
                    code.as_u16()
                ),
            )
        }
        RequestClass::Media => {
            let name = match code.as_u16() {
                403 => "AccessDenied",
                404 => "NoSuchKey",
                503 => "SlowDown",
                _ => "InternalError",
            };
            let mut r = Response::new(Body::from(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{name}</Code>\
                 <Message>Injected by the fault proxy</Message></Error>"
            )));
            *r.status_mut() = code;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            r
        }
    };
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State as AxState;
    use axum::routing::{get, post};

    const BODY_LEN: usize = 10_000;

    fn media_body() -> Vec<u8> {
        (0..BODY_LEN).map(|i| (i % 251) as u8).collect()
    }

    /// What the tiny upstream saw: `(path, Range header)` of every request.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

    struct Upstream {
        base: String,
        seen: Seen,
        _task: JoinHandle<()>,
    }

    /// `GET /media/x` honours `Range`, `GET /api/v2/thing` answers JSON with absolute URLs,
    /// `POST /oauth/token` echoes its body.
    async fn upstream() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        async fn media(AxState(st): AxState<(String, Seen)>, headers: HeaderMap) -> Response {
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            lock(&st.1).push(("/media/x".into(), range.clone()));
            let body = media_body();
            let parsed = range.as_deref().and_then(|r| {
                let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
            });
            let mut r = match parsed {
                Some((a, b)) => {
                    let b = b.min(BODY_LEN - 1);
                    let mut r = Response::new(Body::from(body[a..=b].to_vec()));
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes {a}-{b}/{BODY_LEN}")).unwrap(),
                    );
                    r
                }
                None => Response::new(Body::from(body)),
            };
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
            r
        }
        async fn api(AxState(st): AxState<(String, Seen)>) -> Response {
            lock(&st.1).push(("/api/v2/thing".into(), None));
            let base = &st.0;
            json_response(
                StatusCode::OK,
                format!(
                    r#"{{"mediaUris":{{"S":{{"mediaUri":"{base}/media/x?sig=1"}}}},"resultUrl":"{}/r","other":"{base}"}}"#,
                    base.replace('/', "\\/")
                ),
            )
        }
        async fn token(AxState(st): AxState<(String, Seen)>, body: Bytes) -> Response {
            lock(&st.1).push(("/oauth/token".into(), None));
            json_response(
                StatusCode::OK,
                format!(
                    r#"{{"got":{}}}"#,
                    serde_json::json!(String::from_utf8_lossy(&body))
                ),
            )
        }
        let app = axum::Router::new()
            .route("/media/x", get(media))
            .route("/api/v2/thing", get(api))
            .route("/oauth/token", post(token))
            .with_state((base.clone(), seen.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream {
            base,
            seen,
            _task: task,
        }
    }

    async fn pair() -> (Upstream, FaultProxy) {
        let up = upstream().await;
        let proxy = FaultProxy::start(&up.base).await.unwrap();
        (up, proxy)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn media_url(proxy: &FaultProxy) -> String {
        format!("{}/media/x?sig=secret", proxy.base_url())
    }

    /// Reads a body piece by piece: the bytes that arrived, and the error that ended it.
    async fn read_all(resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
        let mut got = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(p) => got.extend_from_slice(&p),
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    }

    /// The error and all its sources, for asserting on the cause.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(" / ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            source = s.source();
        }
        None
    }

    #[tokio::test]
    async fn passes_every_class_through_and_logs_it() {
        let (up, proxy) = pair().await;
        let c = client();
        let resp = c
            .get(media_url(&proxy))
            .header(header::RANGE, "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes 100-199/10000");
        assert_eq!(resp.content_length(), Some(100));
        assert_eq!(resp.bytes().await.unwrap(), media_body()[100..200]);

        let token = c
            .post(format!("{}/oauth/token", proxy.base_url()))
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(
            token.text().await.unwrap(),
            r#"{"got":"grant_type=client_credentials"}"#
        );
        let api = c
            .get(format!("{}/api/v2/thing?x=1", proxy.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 200);

        let log = proxy.requests();
        let summary: Vec<_> = log
            .iter()
            .map(|r| {
                (
                    r.class,
                    r.method.as_str(),
                    r.path.as_str(),
                    r.range.as_deref(),
                    r.status,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    RequestClass::Media,
                    "GET",
                    "/media/x",
                    Some("bytes=100-199"),
                    206
                ),
                (RequestClass::Token, "POST", "/oauth/token", None, 200),
                (RequestClass::Api, "GET", "/api/v2/thing", None, 200),
            ]
        );
        assert!(log.iter().all(|r| r.fault.is_none()));
        assert_eq!(proxy.faults_applied(), 0);
        assert_eq!(lock(&up.seen).len(), 3);
        proxy.clear_requests();
        assert!(proxy.requests().is_empty());
    }

    #[tokio::test]
    async fn points_urls_in_json_bodies_at_the_proxy() {
        let (up, proxy) = pair().await;
        let resp = client()
            .get(format!("{}/api/v2/thing", proxy.base_url()))
            .send()
            .await
            .unwrap();
        let announced = resp.content_length();
        let body = resp.text().await.unwrap();
        assert_eq!(
            announced,
            Some(body.len() as u64),
            "Content-Length adjusted"
        );
        assert!(!body.contains(&up.base), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let own = proxy.base_url();
        assert_eq!(
            v["mediaUris"]["S"]["mediaUri"],
            format!("{own}/media/x?sig=1")
        );
        assert_eq!(v["resultUrl"], format!("{own}/r"), "escaped slashes too");
        assert_eq!(v["other"], own);
    }

    #[tokio::test]
    async fn reset_sends_the_headers_and_some_bytes_then_aborts_the_connection() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::Reset { after_bytes: 1000 },
        ));
        let resp = client().get(media_url(&proxy)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(BODY_LEN as u64));
        let (got, err) = read_all(resp).await;
        assert_eq!(got, media_body()[..1000]);
        let err = err.expect("the body fails");
        assert_eq!(
            io_kind(&err),
            Some(std::io::ErrorKind::ConnectionReset),
            "{}",
            chain(&err)
        );
        assert_eq!(
            proxy.requests()[0].fault,
            Some(FaultKind::Reset { after_bytes: 1000 })
        );
        // Once only: the next request passes.
        let resp = client().get(media_url(&proxy)).send().await.unwrap();
        assert_eq!(resp.bytes().await.unwrap(), media_body());
    }

    #[tokio::test]
    async fn truncate_keeps_the_content_length_and_closes_cleanly_early() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::Truncate { after_bytes: 1234 },
        ));
        let resp = client()
            .get(media_url(&proxy))
            .header(header::RANGE, "bytes=0-4999")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.content_length(), Some(5000));
        let (got, err) = read_all(resp).await;
        assert_eq!(got, media_body()[..1234]);
        let err = err.expect("a short body is an error");
        assert_ne!(
            io_kind(&err),
            Some(std::io::ErrorKind::ConnectionReset),
            "a clean close, not a reset: {}",
            chain(&err)
        );
    }

    #[tokio::test]
    async fn flip_byte_changes_exactly_one_byte_at_the_offset() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::FlipByte { offset: 4321 },
        ));
        let got = client()
            .get(media_url(&proxy))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut expected = media_body();
        expected[4321] ^= 0x01;
        assert_eq!(got.len(), BODY_LEN);
        assert!(got == expected);
    }

    #[tokio::test]
    async fn drop_range_makes_the_upstream_answer_the_whole_body() {
        let (up, proxy) = pair().await;
        proxy.add(FaultRule::new(RequestClass::Media, FaultKind::DropRange));
        let resp = client()
            .get(media_url(&proxy))
            .header(header::RANGE, "bytes=0-99")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get(header::CONTENT_RANGE).is_none());
        assert_eq!(resp.bytes().await.unwrap(), media_body());
        assert_eq!(lock(&up.seen)[0], ("/media/x".to_string(), None));
        // The log keeps what the client asked for.
        assert_eq!(proxy.requests()[0].range.as_deref(), Some("bytes=0-99"));
    }

    #[tokio::test]
    async fn wrong_content_range_shifts_start_and_end() {
        let (_up, proxy) = pair().await;
        proxy.add(
            FaultRule::new(
                RequestClass::Media,
                FaultKind::WrongContentRange { shift: 7 },
            )
            .times(2),
        );
        let c = client();
        for (range, expected) in [
            ("bytes=0-99", "bytes 7-106/10000"),
            ("bytes=9900-9999", "bytes 9907-10006/10000"),
        ] {
            let resp = c
                .get(media_url(&proxy))
                .header(header::RANGE, range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.headers()[header::CONTENT_RANGE], expected);
            assert_eq!(resp.bytes().await.unwrap().len(), 100, "body untouched");
        }
        assert_eq!(
            shift_content_range("bytes 10-20/30", -5).as_deref(),
            Some("bytes 5-15/30")
        );
        assert_eq!(shift_content_range("bytes */30", 5), None);
    }

    #[tokio::test]
    async fn a_stall_longer_than_the_read_timeout_times_the_client_out() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::Stall {
                after_bytes: 500,
                for_ms: 5_000,
            },
        ));
        let c = reqwest::Client::builder()
            .no_proxy()
            .read_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let resp = c.get(media_url(&proxy)).send().await.unwrap();
        let (got, err) = read_all(resp).await;
        assert_eq!(got, media_body()[..500]);
        let err = err.expect("the read times out");
        assert!(err.is_timeout(), "{}", chain(&err));
    }

    #[tokio::test]
    async fn a_short_stall_only_delays_the_body() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::Stall {
                after_bytes: 500,
                for_ms: 100,
            },
        ));
        let got = client()
            .get(media_url(&proxy))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got, media_body());
    }

    #[tokio::test]
    async fn status_answers_without_the_upstream_in_the_class_dialect() {
        let (up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Api,
            FaultKind::Status {
                status: 429,
                retry_after_secs: Some(3),
            },
        ));
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::Status {
                status: 503,
                retry_after_secs: None,
            },
        ));
        let c = client();
        let api = c
            .get(format!("{}/api/v2/thing", proxy.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 429);
        assert_eq!(api.headers()[header::RETRY_AFTER], "3");
        let v: serde_json::Value = api.json().await.unwrap();
        assert_eq!(v["status"], 429);
        let media = c.get(media_url(&proxy)).send().await.unwrap();
        assert_eq!(media.status(), 503);
        assert!(media.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(media.headers()[header::CONTENT_TYPE], "application/xml");
        assert!(media
            .text()
            .await
            .unwrap()
            .contains("<Code>SlowDown</Code>"));
        assert!(lock(&up.seen).is_empty(), "the upstream was not contacted");
        let statuses: Vec<_> = proxy.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![429, 503]);
    }

    #[tokio::test]
    async fn expire_token_answers_bad_credentials_without_the_upstream() {
        let (up, proxy) = pair().await;
        proxy.add(FaultRule::new(RequestClass::Api, FaultKind::ExpireToken));
        let resp = client()
            .get(format!("{}/api/v2/thing", proxy.base_url()))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.text().await.unwrap(),
            r#"{"message":"Invalid login credentials.","code":"bad.credentials","status":401}"#
        );
        assert!(lock(&up.seen).is_empty());
    }

    #[tokio::test]
    async fn wrong_content_type_replaces_the_header() {
        let (_up, proxy) = pair().await;
        proxy.add(FaultRule::new(
            RequestClass::Media,
            FaultKind::WrongContentType("text/html".into()),
        ));
        let resp = client().get(media_url(&proxy)).send().await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html");
        assert_eq!(resp.bytes().await.unwrap(), media_body());
    }

    #[tokio::test]
    async fn rules_skip_count_down_match_paths_and_clear() {
        let (_up, proxy) = pair().await;
        let teapot = |status| FaultKind::Status {
            status,
            retry_after_secs: None,
        };
        proxy.add(
            FaultRule::new(RequestClass::Media, teapot(500))
                .path_contains("/elsewhere")
                .forever(),
        );
        proxy.add(
            FaultRule::new(RequestClass::Media, teapot(502))
                .skip(1)
                .times(2),
        );
        proxy.add(FaultRule::new(RequestClass::Media, teapot(503)).forever());
        let c = client();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                c.get(media_url(&proxy))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        // Request 1: the 502 rule is still skipping, the 503 rule applies; 2–3: the 502 rule;
        // then the 503 rule forever. The path-bound rule never matches.
        assert_eq!(statuses, vec![503, 502, 502, 503, 503]);
        proxy.clear();
        let ok = c.get(media_url(&proxy)).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(proxy.faults_applied(), 5);
        // A fault on another class leaves media alone.
        proxy.add(FaultRule::new(RequestClass::Token, teapot(500)));
        assert_eq!(c.get(media_url(&proxy)).send().await.unwrap().status(), 200);
    }
}
