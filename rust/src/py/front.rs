//! The native HTTP front (`crate::front`) and the pieces it shares with the
//! Python app: rate limiter, HTTP counters, concurrency slots, audit writer
//! and function table.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use super::exec::Function;
use super::sysio::os_error;
use crate::front::{self, FunctionEntry, audit, auth, limiter, stats};

/// Per-token token buckets; `check` takes one token from a key's bucket.
#[pyclass(module = "tensorwasm_tc._core", name = "RateLimiter", frozen)]
pub struct RateLimiter {
    inner: Arc<limiter::RateLimiter>,
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (qps, burst, limit_text, max_buckets = 100_000))]
    fn new(qps: f64, burst: f64, limit_text: String, max_buckets: usize) -> PyResult<Self> {
        limiter::RateLimiter::new(qps, burst, limit_text, max_buckets)
            .map(|l| RateLimiter { inner: Arc::new(l) })
            .ok_or_else(|| PyValueError::new_err("qps and burst must be positive"))
    }

    /// `(allowed, retry_after, [(header, value), ...])` at `now` (seconds of
    /// `time.monotonic`; default: now).
    #[pyo3(signature = (key, now = None))]
    fn check(&self, key: &str, now: Option<f64>) -> (bool, u64, Vec<(&'static str, String)>) {
        let d = self
            .inner
            .check(key, now.unwrap_or_else(limiter::monotonic_s));
        (d.allowed, d.retry_after, d.headers)
    }

    fn __len__(&self) -> usize {
        self.inner.buckets()
    }
}

/// HTTP request counters, duration histogram and in-flight gauges, instance
/// spawns and rate-limit refusals.
#[pyclass(module = "tensorwasm_tc._core", name = "HttpStats", frozen)]
#[derive(Default)]
pub struct HttpStats {
    inner: Arc<stats::HttpStats>,
}

type RouteRow = (String, String, i64, Vec<(u16, u64)>, Vec<u64>, f64, u64);

#[pymethods]
impl HttpStats {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn begin(&self, method: &str, route: &str) {
        self.inner.begin(method, route);
    }

    fn end(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.inner.end(method, route, status, seconds);
    }

    fn spawned(&self) {
        self.inner.spawned();
    }

    fn limited(&self) {
        self.inner.limited();
    }

    #[getter]
    fn spawns(&self) -> u64 {
        self.inner.spawns()
    }

    #[getter]
    fn rate_limited(&self) -> u64 {
        self.inner.rate_limited()
    }

    /// `(answered by the native front, handed to the app)`.
    #[getter]
    fn front_requests(&self) -> (u64, u64) {
        self.inner.front_counts()
    }

    /// `[(method, route, in_flight, [(status, count)], per-bucket counts
    /// (last: +Inf), sum, count)]`.
    fn snapshot(&self) -> Vec<RouteRow> {
        self.inner
            .snapshot()
            .into_iter()
            .map(|((m, r), s)| {
                (
                    m,
                    r,
                    s.in_flight,
                    s.statuses,
                    s.buckets.to_vec(),
                    s.sum,
                    s.count,
                )
            })
            .collect()
    }
}

/// A concurrency cap shared by the front and the app.
#[pyclass(module = "tensorwasm_tc._core", name = "Slots", frozen)]
pub struct Slots {
    inner: Arc<stats::Slots>,
}

#[pymethods]
impl Slots {
    #[new]
    fn new(cap: usize) -> Self {
        Slots {
            inner: Arc::new(stats::Slots::new(cap)),
        }
    }

    fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    fn release(&self) {
        self.inner.release();
    }

    #[getter]
    fn used(&self) -> usize {
        self.inner.used()
    }

    #[getter]
    fn cap(&self) -> usize {
        self.inner.cap()
    }
}

/// Whole-line appends to a descriptor under one lock (the audit log).
#[pyclass(module = "tensorwasm_tc._core", name = "AuditSink", frozen)]
pub struct AuditSink {
    inner: Arc<audit::AuditSink>,
}

#[pymethods]
impl AuditSink {
    #[new]
    fn new(fd: i32) -> Self {
        AuditSink {
            inner: Arc::new(audit::AuditSink::new(fd)),
        }
    }

    /// Appends one line (it keeps the GIL: see `write_all`).
    fn write(&self, line: &[u8]) -> PyResult<()> {
        self.inner.write(line).map_err(os_error)
    }

    fn close(&self) {
        self.inner.close();
    }
}

/// The functions the front invokes itself, by id.
#[pyclass(module = "tensorwasm_tc._core", name = "FunctionTable", frozen)]
#[derive(Default)]
pub struct FunctionTable {
    inner: Arc<front::FunctionTable>,
}

#[pymethods]
impl FunctionTable {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn insert(&self, id: String, tenant: u64, function: PyRef<'_, Function>) {
        self.inner.insert(
            id,
            FunctionEntry {
                tenant,
                function: function.inner.clone(),
            },
        );
    }

    fn remove(&self, id: &str) -> bool {
        self.inner.remove(id)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, id: &str) -> bool {
        self.inner.get(id).is_some()
    }
}

/// The HTTP front: serves invokes on `host:port` and forwards the rest to
/// the app on the Unix socket `upstream`.
#[pyclass(module = "tensorwasm_tc._core", name = "Front")]
pub struct Front {
    inner: Mutex<Option<front::Front>>,
    address: (String, u16),
}

#[pymethods]
impl Front {
    #[new]
    #[pyo3(signature = (host, port, upstream, *, tokens, dev, require_tenant, limiter, stats,
        invoke_slots, audit, table, max_body_bytes, max_args, request_timeout_s, workers,
        blocking_threads, serve_invokes))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        upstream: PathBuf,
        tokens: Vec<(String, String, Option<Vec<u64>>)>,
        dev: bool,
        require_tenant: bool,
        limiter: Option<PyRef<'_, RateLimiter>>,
        stats: PyRef<'_, HttpStats>,
        invoke_slots: PyRef<'_, Slots>,
        audit: Option<PyRef<'_, AuditSink>>,
        table: PyRef<'_, FunctionTable>,
        max_body_bytes: u64,
        max_args: usize,
        request_timeout_s: f64,
        workers: usize,
        blocking_threads: usize,
        serve_invokes: bool,
    ) -> PyResult<Self> {
        if !(request_timeout_s > 0.0 && request_timeout_s.is_finite()) {
            return Err(PyValueError::new_err("request_timeout_s must be positive"));
        }
        let settings = front::Settings {
            auth: auth::Auth::new(
                dev,
                tokens
                    .into_iter()
                    .map(|(secret, id, tenants)| auth::TokenEntry::new(&secret, id, tenants))
                    .collect(),
            ),
            require_tenant,
            limiter: limiter.map(|l| l.inner.clone()),
            stats: stats.inner.clone(),
            invoke_slots: invoke_slots.inner.clone(),
            audit: audit.map(|a| a.inner.clone()),
            table: table.inner.clone(),
            max_body_bytes,
            max_args,
            request_timeout: Duration::from_secs_f64(request_timeout_s),
            serve_invokes,
        };
        let host = host.to_owned();
        let started = py.detach(move || {
            let addrs: Vec<_> = (host.as_str(), port).to_socket_addrs()?.collect();
            let listener = std::net::TcpListener::bind(&addrs[..])?;
            front::Front::start(settings, listener, upstream, workers, blocking_threads)
        });
        let front = started.map_err(|e| {
            PyOSError::new_err((e.raw_os_error().unwrap_or(0), format!("cannot listen: {e}")))
        })?;
        let addr = front.local_addr();
        Ok(Front {
            inner: Mutex::new(Some(front)),
            address: (addr.ip().to_string(), addr.port()),
        })
    }

    /// `(host, port)` it listens on.
    #[getter]
    fn address(&self) -> (String, u16) {
        self.address.clone()
    }

    /// Closes the listener; open connections end after their current request.
    fn stop_accepting(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(f) = self.inner.lock().as_ref() {
                f.stop_accepting();
            }
        });
    }

    /// Stops accepting and waits up to `timeout_s` for open connections;
    /// false if some were still open.
    fn drain(&self, py: Python<'_>, timeout_s: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout_s.clamp(0.0, 86_400.0));
        py.detach(|| match self.inner.lock().as_mut() {
            Some(f) => f.drain(timeout),
            None => true,
        })
    }

    /// Stops everything now (connections still open are dropped).
    fn close(&self, py: Python<'_>) {
        let taken = py.detach(|| self.inner.lock().take());
        py.detach(move || drop(taken));
    }
}

/// `[(kind, status)]` of the error kinds the front answers with.
#[pyfunction]
pub fn front_status_table() -> Vec<(&'static str, u16)> {
    front::invoke::STATUS.to_vec()
}
