//! The relay's accept loop, so that no stranger can hold what others need:
//!
//! - a connection budget per remote address and one for all connections together (a connection
//!   over budget gets a `429` with `{code, message}` and is closed at once);
//! - a deadline for a request's headers (hyper's header read timeout: a client trickling
//!   headers is closed);
//! - a minimum rate for request bodies after a short grace, and a limit on silence inside a body
//!   (a 64 MiB upload sent one byte every few seconds is cut off and refused);
//! - the open-file soft limit raised at start to what the configured limits need, or a refusal
//!   to start that says why.
//!
//! The budget guard travels with the socket into upgraded WebSockets, so a worker or a watcher
//! counts against its address for as long as it stays connected.

use crate::error::{Error, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Connection budgets and HTTP deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once from one remote address (workers, watchers and requests).
    pub per_address: usize,
    /// Plain HTTP connections allowed besides the worker and watcher limits.
    pub http_connections: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Longest silence inside a request body.
    pub body_idle: Duration,
    /// A body must average at least `body_min_rate` bytes per second after this grace.
    pub body_grace: Duration,
    pub body_min_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_address: 256,
            http_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_idle: Duration::from_secs(10),
            body_grace: Duration::from_secs(10),
            body_min_rate: 32 << 10,
        }
    }
}

/// File descriptors the relay may need at once: one per allowed connection, and some for the
/// database, blob files, the ledger and the listener.
pub fn descriptors_needed(max_workers: usize, max_watchers: usize, limits: &Limits) -> u64 {
    (max_workers + max_watchers + limits.http_connections) as u64 + 256
}

/// Default worker and watcher connection limits: 20,000 and 10,000 where the hard open-file
/// limit allows, else two thirds and one third of what it leaves besides plain HTTP and the
/// relay's own files. Limits set explicitly are not shrunk: [`raise_fd_limit`] refuses them.
pub fn default_connection_limits(limits: &Limits) -> (usize, usize) {
    let hard = rlimit::Resource::NOFILE.get().map_or(u64::MAX, |(_, hard)| hard);
    let room = hard.saturating_sub(limits.http_connections as u64 + 256);
    let workers = (room * 2 / 3).min(20_000) as usize;
    let watchers = (room / 3).min(10_000) as usize;
    (workers, watchers)
}

/// Raises the soft open-file limit to `needed` (up to the hard limit); refuses if the hard limit
/// is lower, naming both numbers and what to change. Returns the soft limit in force.
pub fn raise_fd_limit(needed: u64) -> Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        return Err(Error::Limit(format!(
            "the relay's connection limits need {needed} open files but the hard limit is {hard}: \
             raise it (ulimit -Hn, or LimitNOFILE= for a systemd service) or lower --max-workers"
        )));
    }
    rlimit::Resource::NOFILE.set(needed, hard)?;
    Ok(needed)
}

/// Counts connections per address and in all.
#[derive(Debug, Default)]
struct Budget {
    per_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Holds one connection's place in the budget until dropped.
#[derive(Debug)]
struct Place {
    budget: Arc<Mutex<Budget>>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut b = self.budget.lock().expect("budget lock");
        b.total -= 1;
        if let Some(n) = b.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                b.per_address.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was not admitted.
fn admit(
    budget: &Arc<Mutex<Budget>>,
    ip: IpAddr,
    per_address: usize,
    total: usize,
) -> std::result::Result<Place, &'static str> {
    let mut b = budget.lock().expect("budget lock");
    if b.total >= total {
        return Err("the relay is at its connection limit; retry later");
    }
    let mine = b.per_address.entry(ip).or_default();
    if *mine >= per_address {
        return Err("too many connections from your address; close some and retry");
    }
    *mine += 1;
    b.total += 1;
    Ok(Place { budget: budget.clone(), ip })
}

/// A socket that keeps its budget place for as long as it is open (also after an upgrade to a
/// WebSocket, when hyper hands the socket to the handler).
struct Guarded {
    tcp: TcpStream,
    _place: Place,
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Refuses a connection over budget with a plain `429` and `{code, message}`, without reading
/// its request.
pub(crate) async fn refuse(tcp: TcpStream, message: &str) {
    refuse_with(tcp, starling_protocol::ErrorCode::RateLimited, message).await
}

/// Answers a connection with `code`'s status and `{code, message}` without reading its request,
/// and closes it. A `503` says when to retry.
pub(crate) async fn refuse_with(mut tcp: TcpStream, code: starling_protocol::ErrorCode, message: &str) {
    let body =
        serde_json::to_string(&starling_protocol::ErrorBody::new(code, message)).expect("error bodies serialize");
    let status = code.http_status();
    let reason = axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let retry = if status == 503 { "retry-after: 1\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
enum BodyTooSlow {
    #[error("request body stalled for {0:?}")]
    Idle(Duration),
    #[error("request body arrives slower than {0} bytes per second")]
    Slow(u64),
}

/// Wraps a request body so it fails once it stalls longer than `idle`, or once, after `grace`,
/// fewer than `min_rate` bytes per second have arrived on average since the grace ended.
fn bounded_body(body: Body, limits: Limits) -> Body {
    struct State {
        inner: axum::body::BodyDataStream,
        started: Instant,
        received: u64,
        failed: bool,
    }
    let state = State { inner: body.into_data_stream(), started: Instant::now(), received: 0, failed: false };
    let stream = futures_util::stream::unfold(state, move |mut s| async move {
        if s.failed {
            return None;
        }
        let next = match tokio::time::timeout(limits.body_idle, s.inner.next()).await {
            Err(_) => Some(Err(axum::Error::new(BodyTooSlow::Idle(limits.body_idle)))),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some(Err(e)),
            Ok(Some(Ok(chunk))) => {
                s.received += chunk.len() as u64;
                let elapsed = s.started.elapsed();
                let owed = elapsed.saturating_sub(limits.body_grace).as_secs_f64() * limits.body_min_rate as f64;
                if (s.received as f64) < owed {
                    Some(Err(axum::Error::new(BodyTooSlow::Slow(limits.body_min_rate))))
                } else {
                    Some(Ok(chunk))
                }
            }
        };
        let item = next?;
        s.failed = item.is_err();
        Some((item, s))
    });
    Body::from_stream(stream)
}

/// Serves `app` on `listener` until `shutdown` resolves, within `limits` and at most `total`
/// connections at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    total: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    serve_incoming(accepted(listener), app, limits, total, shutdown).await
}

/// The connections `listener` accepts, each with its remote address.
pub fn accepted(listener: TcpListener) -> impl futures_util::Stream<Item = (TcpStream, SocketAddr)> + Send {
    futures_util::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok(a) => return Some((a, listener)),
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving
                    // the others, and do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
}

/// [`serve`] over connections from anywhere: each comes with the address its budget and the
/// handlers see (a cluster's front relays hand over connections with their client's address).
pub async fn serve_incoming(
    incoming: impl futures_util::Stream<Item = (TcpStream, SocketAddr)> + Send,
    app: Router,
    limits: Limits,
    total: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let budget = Arc::new(Mutex::new(Budget::default()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    tokio::pin!(incoming);
    loop {
        let (tcp, peer) = tokio::select! {
            next = incoming.next() => match next {
                Some(a) => a,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let place = match admit(&budget, peer.ip(), limits.per_address, total) {
            Ok(place) => place,
            Err(message) => {
                tracing::debug!(%peer, message, "connection refused");
                tokio::spawn(refuse(tcp, message));
                continue;
            }
        };
        // Small frames (an ack then an assign) must not wait on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let service =
            tower::ServiceExt::map_request(app.clone(), move |req: axum::http::Request<hyper::body::Incoming>| {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                axum::http::Request::from_parts(parts, bounded_body(Body::new(body), limits))
            });
        let io = TokioIo::new(Guarded { tcp, _place: place });
        let builder = builder.clone();
        let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    // Requests in flight get a moment to finish; upgraded sockets are closed by their owners.
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// The remote address of a request served by [`serve`] (absent when a test calls the router
/// directly).
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
