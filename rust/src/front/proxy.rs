//! Forwarding to the Python app over its Unix socket: keep-alive
//! connections in a small pool, request and response bodies streamed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::UnixStream;

use super::{RespBody, envelope_response};

pub type ReqBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// The header that carries the client's address to the Python app. The
/// front always sets it (dropping any value a client sent); the app trusts
/// it because only the front can reach the app's socket.
pub const PEER_HEADER: &str = "x-tensorwasm-peer";

/// Idle connections kept for reuse (more are closed after their response).
const MAX_IDLE: usize = 64;

/// Connection-scoped headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

pub struct Upstream {
    path: PathBuf,
    idle: Mutex<Vec<SendRequest<ReqBody>>>,
}

impl Upstream {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Upstream {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` to the app and streams its answer back; 503 `not_ready`
    /// when the app cannot be reached.
    pub async fn forward(
        self: &Arc<Self>,
        req: Request<ReqBody>,
        peer: SocketAddr,
    ) -> Response<RespBody> {
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove("transfer-encoding");
        parts.headers.remove(PEER_HEADER);
        if let Ok(v) = HeaderValue::from_str(&peer_text(peer)) {
            parts
                .headers
                .insert(HeaderName::from_static(PEER_HEADER), v);
        }
        // Origin form: the app routes on the path and query alone.
        if let Some(pq) = parts.uri.path_and_query().cloned() {
            parts.uri = pq.as_str().parse().unwrap_or_default();
        }
        let req = Request::from_parts(parts, body);
        let Some(mut sender) = self.checkout().await else {
            return unavailable();
        };
        match sender.send_request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The connection to the client frames the body its own way.
                parts.headers.remove("transfer-encoding");
                let pooled = PooledBody {
                    inner: body,
                    give_back: Some((sender, self.clone())),
                };
                Response::from_parts(parts, pooled.boxed())
            }
            Err(_) => unavailable(),
        }
    }

    /// A pooled connection that is free, or a new one; `None` when the app
    /// cannot be reached.
    async fn checkout(&self) -> Option<SendRequest<ReqBody>> {
        loop {
            let pooled = self.idle.lock().pop();
            let Some(mut sender) = pooled else { break };
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        let stream = UnixStream::connect(&self.path).await.ok()?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(sender)
    }

    fn give_back(&self, sender: SendRequest<ReqBody>) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }
}

/// `ip:port` as the Python app prints a peer (no brackets around IPv6).
pub fn peer_text(peer: SocketAddr) -> String {
    format!("{}:{}", peer.ip(), peer.port())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are connection-scoped too.
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name.as_str());
    }
}

fn unavailable() -> Response<RespBody> {
    envelope_response(
        503,
        "not_ready",
        "the server is not ready; retry shortly",
        Vec::new(),
    )
}

/// A response body from the app that returns its connection to the pool
/// once read to the end (a body dropped early takes its connection with it).
struct PooledBody {
    inner: Incoming,
    give_back: Option<(SendRequest<ReqBody>, Arc<Upstream>)>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r
            && let Some((sender, up)) = self.give_back.take()
        {
            up.give_back(sender);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
