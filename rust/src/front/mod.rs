//! The native HTTP front of `tensor-wasm serve`.
//!
//! It listens on the server's port and answers `POST /functions/{id}/invoke`
//! itself, without Python: authentication, the acting tenant, the rate
//! limit, the invoke (on a blocking thread), the response, the metrics and
//! the audit record, with the same answers the Python app gives. Every
//! other request, and every invoke it cannot answer exactly as the app
//! would (a refusal, a function bound to TensorCast artifacts, a body or
//! tensor input the app would refuse or read differently), is forwarded to the FastAPI app over a Unix
//! socket that only this process can reach (`proxy`). Both sides share one
//! rate limiter, one set of HTTP counters and one audit writer, so a client
//! cannot tell which side answered.

pub mod audit;
pub mod auth;
pub mod invoke;
pub mod limiter;
pub mod proxy;
pub mod stats;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::RwLock;
use tokio::sync::watch;

use self::audit::AuditSink;
use self::auth::{Auth, Principal};
use self::limiter::RateLimiter;
use self::proxy::{ReqBody, Upstream};
use self::stats::{HttpStats, Slots};
use crate::exec;

pub type RespBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// The route template the front serves (metrics and audit name it so).
pub const INVOKE_ROUTE: &str = "/functions/{id}/invoke";
const TENANT_HEADER: &str = "x-tensorwasm-tenant";
/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A deployed function the front may invoke.
pub struct FunctionEntry {
    pub tenant: u64,
    pub function: exec::Function,
}

/// The functions the front serves, by id; the app adds and removes them as
/// they are deployed, loaded and deleted. Functions bound to artifacts are
/// never here (the app loads them against the artifacts of the moment).
#[derive(Default)]
pub struct FunctionTable {
    map: RwLock<HashMap<String, Arc<FunctionEntry>>>,
}

impl FunctionTable {
    pub fn insert(&self, id: String, entry: FunctionEntry) {
        self.map.write().insert(id, Arc::new(entry));
    }

    pub fn remove(&self, id: &str) -> bool {
        self.map.write().remove(id).is_some()
    }

    pub fn get(&self, id: &str) -> Option<Arc<FunctionEntry>> {
        self.map.read().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the front checks and shares with the app.
pub struct Settings {
    pub auth: Auth,
    pub require_tenant: bool,
    pub limiter: Option<Arc<RateLimiter>>,
    pub stats: Arc<HttpStats>,
    pub invoke_slots: Arc<Slots>,
    pub audit: Option<Arc<AuditSink>>,
    pub table: Arc<FunctionTable>,
    pub max_body_bytes: u64,
    pub max_args: usize,
    pub request_timeout: Duration,
    /// false: forward every request (the app makes tracing spans).
    pub serve_invokes: bool,
}

struct State {
    s: Settings,
    upstream: Arc<Upstream>,
    rid_prefix: String,
    rid_counter: AtomicU64,
}

impl State {
    /// Hands the request to the app.
    async fn forward(&self, req: Request<ReqBody>, peer: SocketAddr) -> Response<RespBody> {
        self.s.stats.forwarded();
        self.upstream.forward(req, peer).await
    }

    /// 32 hex digits: a random per-front prefix and a counter.
    fn next_request_id(&self) -> String {
        let n = self.rid_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:016x}", self.rid_prefix)
    }
}

/// A running front: its own Tokio runtime, an accept loop and the
/// connections it serves.
pub struct Front {
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    addr: SocketAddr,
}

impl Front {
    /// Serves `listener` until `stop_accepting`; `upstream` is the app's socket.
    pub fn start(
        settings: Settings,
        listener: std::net::TcpListener,
        upstream: PathBuf,
        workers: usize,
        blocking_threads: usize,
    ) -> io::Result<Front> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .max_blocking_threads(blocking_threads.max(1))
            .thread_name("tw-front")
            .enable_all()
            .build()?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let mut prefix = [0u8; 8];
        getrandom::fill(&mut prefix).map_err(|e| io::Error::other(e.to_string()))?;
        let state = Arc::new(State {
            s: settings,
            upstream: Upstream::new(upstream),
            rid_prefix: prefix.iter().map(|b| format!("{b:02x}")).collect(),
            rid_counter: AtomicU64::new(1),
        });
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(accept_loop(listener, state, stopped));
        Ok(Front {
            runtime: Some(runtime),
            stop,
            task: Some(task),
            addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener; each connection ends after its current request.
    pub fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting and waits up to `timeout` for every connection to
    /// end; false if some were still open.
    pub fn drain(&mut self, timeout: Duration) -> bool {
        self.stop_accepting();
        let (Some(rt), Some(task)) = (self.runtime.as_ref(), self.task.as_mut()) else {
            return true;
        };
        let done = rt.block_on(async { tokio::time::timeout(timeout, task).await.is_ok() });
        if done {
            self.task = None;
        }
        done
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop_accepting();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(200));
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let st = state.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, peer, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                // Out of descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn handle(st: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<RespBody> {
    let target = invoke_target(req.uri().path()).map(str::to_owned);
    if let (true, Some(id)) = (st.s.serve_invokes && req.method() == Method::POST, target) {
        return serve_invoke(&st, peer, req, id).await;
    }
    st.forward(req.map(BodyExt::boxed), peer).await
}

/// The `{id}` of `/functions/{id}/invoke` (as the app's router matches it).
fn invoke_target(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/functions/")?.strip_suffix("/invoke")?;
    (!id.is_empty() && !id.contains(['/', '%'])).then_some(id)
}

/// What the request's headers say, when the front can serve it.
struct Head<'a> {
    principal: Principal<'a>,
    tenant: u64,
    request_id: Option<String>,
}

/// `None` when a header appears more than once; else the value, if any.
fn single<'h>(h: &'h HeaderMap, name: &str) -> Option<Option<&'h [u8]>> {
    let mut all = h.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return None;
    }
    Some(first.map(HeaderValue::as_bytes))
}

fn check_head<'a>(st: &'a State, h: &HeaderMap) -> Option<Head<'a>> {
    let length = single(h, "content-length")??;
    let length: u64 = std::str::from_utf8(length).ok()?.parse().ok()?;
    if length > st.s.max_body_bytes || h.contains_key("transfer-encoding") {
        return None;
    }
    if single(h, "content-type")?.is_some_and(|ctype| !is_json(ctype)) {
        return None;
    }
    let principal = st.s.auth.authenticate(single(h, "authorization")?)?;
    let tenant = match auth::parse_tenant(single(h, TENANT_HEADER)?) {
        auth::TenantHeader::Tenant(t) => t,
        auth::TenantHeader::Absent if !st.s.require_tenant => 0,
        _ => return None,
    };
    if !principal.allows(tenant) {
        return None;
    }
    let request_id = single(h, "x-request-id")?
        .filter(|v| valid_request_id(v))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Some(Head {
        principal,
        tenant,
        request_id,
    })
}

fn is_json(ctype: &[u8]) -> bool {
    let media = ctype.split(|&b| b == b';').next().unwrap_or_default();
    let media = media.trim_ascii().to_ascii_lowercase();
    media == b"application/json"
        || (media.starts_with(b"application/") && media.ends_with(b"+json"))
}

fn valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Releases an invoke slot when the request ends, however it ends.
struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

async fn serve_invoke(
    st: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    id: String,
) -> Response<RespBody> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let Some(head) = check_head(st, &parts.headers) else {
        return st
            .forward(Request::from_parts(parts, body.boxed()), peer)
            .await;
    };
    let read = tokio::time::timeout(st.s.request_timeout, body.collect()).await;
    let bytes = match read {
        Ok(Ok(c)) => c.to_bytes(),
        // Too slow a body, or a client gone mid-body: counted and audited
        // as the app does (504 request_timeout; 500 with no kind).
        failed => {
            let (status, kind) = match failed {
                Err(_) => (504, Some("request_timeout")),
                _ => (500, None),
            };
            st.s.stats.begin("POST", INVOKE_ROUTE);
            let request_id = head
                .request_id
                .clone()
                .unwrap_or_else(|| st.next_request_id());
            record(st, &head, &id, peer, start, &request_id, status, kind);
            let body = match kind {
                Some(k) => invoke::envelope(k, "the request took longer than the server allows"),
                None => invoke::envelope("internal", "the request body could not be read"),
            };
            return response(status, body, vec![("x-request-id", request_id)]);
        }
    };
    let call = invoke::parse(&bytes, st.s.max_args, st.s.max_body_bytes);
    let entry = st.s.table.get(&id).filter(|e| e.tenant == head.tenant);
    let (Some(call), Some(entry)) = (call, entry) else {
        return st
            .forward(Request::from_parts(parts, full(bytes)), peer)
            .await;
    };
    if !st.s.invoke_slots.try_acquire() {
        // The app answers `overloaded` (or serves it, if a slot freed up).
        return st
            .forward(Request::from_parts(parts, full(bytes)), peer)
            .await;
    }
    let _slot = SlotGuard(&st.s.invoke_slots);
    // From here on the request is the front's alone.
    let stats = &st.s.stats;
    stats.served();
    stats.begin("POST", INVOKE_ROUTE);
    let request_id = head
        .request_id
        .clone()
        .unwrap_or_else(|| st.next_request_id());
    let mut headers: Vec<(&'static str, String)> = vec![("x-request-id", request_id.clone())];
    let mut allowed = true;
    if let Some(limiter) = &st.s.limiter {
        let d = limiter.check(head.principal.bucket_key(), limiter::monotonic_s());
        allowed = d.allowed;
        headers.extend(d.headers);
    }
    let (status, kind, body) = if allowed {
        run(st, entry, call, &id).await
    } else {
        stats.limited();
        let kind = "rate_limited";
        (
            429,
            Some(kind),
            invoke::envelope(kind, "rate limit exceeded for this token"),
        )
    };
    record(st, &head, &id, peer, start, &request_id, status, kind);
    response(status, body, headers)
}

/// The end of a request the front answered: its metrics and audit line
/// (written before the response goes out).
#[allow(clippy::too_many_arguments)]
fn record(
    st: &State,
    head: &Head<'_>,
    id: &str,
    peer: SocketAddr,
    start: Instant,
    request_id: &str,
    status: u16,
    kind: Option<&str>,
) {
    st.s.stats
        .end("POST", INVOKE_ROUTE, status, start.elapsed().as_secs_f64());
    let Some(sink) = &st.s.audit else {
        return;
    };
    let record = serde_json::json!({
        "ts_unix_ms": now_ms(),
        "request_id": request_id,
        "actor": head.principal.audit_actor(),
        "action": "invoke_function",
        "resource": {"function_id": id, "instance_id": null, "tenant_id": head.tenant},
        "outcome": {"status_code": status, "error_kind": kind},
        "latency_ms": (start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "peer_addr": proxy::peer_text(peer),
    });
    let mut line = serde_json::to_vec(&record).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = sink.write(&line) {
        eprintln!("tensorwasm_tc.gateway: audit log write failed: {e}");
    }
}

/// Runs the invoke on a blocking thread: (status, error kind, body).
async fn run(
    st: &State,
    entry: Arc<FunctionEntry>,
    call: invoke::Call,
    id: &str,
) -> (u16, Option<&'static str>, Vec<u8>) {
    st.s.stats.spawned();
    let task = tokio::task::spawn_blocking(move || {
        entry
            .function
            .invoke(call.export.as_deref(), &call.args, &call.inputs, None)
            .map(|out| (out, call.b64))
    });
    let failed = |kind: &'static str, message: &str| {
        (
            invoke::status_of(kind),
            Some(kind),
            invoke::envelope(kind, message),
        )
    };
    match tokio::time::timeout(st.s.request_timeout, task).await {
        Err(_) => failed(
            "request_timeout",
            "the request took longer than the server allows",
        ),
        Ok(Err(_)) => failed("internal", "internal server error"),
        Ok(Ok(Err(e))) => {
            let (kind, message) = invoke::api_error(&e);
            failed(kind, &message)
        }
        Ok(Ok(Ok((out, b64)))) => (200, None, invoke::success_body(id, &out, b64)),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn response(
    status: u16,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

/// An error envelope response.
pub fn envelope_response(
    status: u16,
    kind: &str,
    message: &str,
    headers: Vec<(&'static str, String)>,
) -> Response<RespBody> {
    response(status, invoke::envelope(kind, message), headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_paths() {
        assert_eq!(invoke_target("/functions/abc/invoke"), Some("abc"));
        assert_eq!(invoke_target("/functions//invoke"), None);
        assert_eq!(invoke_target("/functions/a/b/invoke"), None);
        assert_eq!(invoke_target("/functions/a%20/invoke"), None);
        assert_eq!(invoke_target("/functions/abc/invoke-async"), None);
    }

    #[test]
    fn json_media_types_and_request_ids() {
        assert!(is_json(b"application/json; charset=utf-8"));
        assert!(is_json(b"Application/vnd.x+json"));
        assert!(!is_json(b"text/plain"));
        assert!(valid_request_id(b"abc-1.2_3"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
    }
}
