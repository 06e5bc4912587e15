//! The accept loop: what axum::serve does, plus the bounds a server facing
//! strangers needs (docs/http-api.md, "Limits under load"):
//!
//! - at most `max_connections` connections are served at once, WebSocket
//!   sessions included (the permit lives in the socket, so it outlives the
//!   HTTP exchange that upgraded it);
//! - past that, a connection gets one answer and is closed: `/healthz` and
//!   `/metrics` as usual (an operator can always look), anything else 503
//!   `overloaded` with `Retry-After`; at most `max_connections / 8 + 16`
//!   such answers are in progress at once, and beyond those a connection
//!   is closed unread;
//! - a request head must arrive within `header_timeout_secs` (also the
//!   longest a kept-alive connection may sit idle between requests), and a
//!   request body within `body_timeout_secs` of its head (a total, not a
//!   per-read timeout: a body that trickles in a byte at a time is cut
//!   too).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::ApiError;

/// The bounds of [`serve`], from the settings, and what it counts.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Connections served now, within the limit (a metric).
    pub open: Gauge,
    /// Connections past the limit (a metric).
    pub refused: Counter,
}

impl Limits {
    /// Answers to connections past the limit in progress at once.
    fn refusals(&self) -> usize {
        self.max_connections / 8 + 16
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits until every connection's requests in flight are
/// answered (each kept-alive connection is closed after its current
/// request; upgraded connections are the sessions' own business).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(limits.refusals()));
    let refusing = limited_router(router.clone());
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    // Each connection's task holds a clone; the loop's end waits for all.
    let (open, mut all_closed) = watch::channel(());
    let mut stopping = stopped.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: the error is
                    // the listener's, not a connection's; wait, then go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping_of(&mut stopping) => break,
        };
        let _ = stream.set_nodelay(true);
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let io = TokioIo::new(Counted::new(stream, permit, Some(limits.open.clone())));
                let service = TowerToHyperService::new(router.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout);
                let (mut stopped, open) = (stopped.clone(), open.clone());
                tokio::spawn(async move {
                    let conn = builder.serve_connection(io, service).with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    let ended = tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = stopping_of(&mut stopped) => {
                            // The request in flight is answered; then the
                            // connection closes.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!("connection ended: {e}");
                    }
                    drop(open);
                });
            }
            Err(_) => {
                limits.refused.inc();
                let Ok(permit) = refusals.clone().try_acquire_owned() else {
                    // Past the limit and past the answers to it: closed
                    // unread, which costs nothing to keep.
                    continue;
                };
                let io = TokioIo::new(Counted::new(stream, permit, None));
                let service = TowerToHyperService::new(refusing.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(REFUSAL_HEAD.min(limits.header_timeout))
                    .keep_alive(false);
                tokio::spawn(async move {
                    let conn = builder.serve_connection(io, service);
                    // One answer, however slow the client: then it is gone.
                    let _ = tokio::time::timeout(REFUSAL_TOTAL, conn).await;
                });
            }
        }
    }
    drop(open);
    drop(listener);
    let _ = all_closed.wait_for(|_| false).await;
}

/// Completes once the server stops.
async fn stopping_of(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// How long a connection past the limit may take to send its request head.
const REFUSAL_HEAD: Duration = Duration::from_secs(2);
/// How long a connection past the limit is kept in all.
const REFUSAL_TOTAL: Duration = Duration::from_secs(5);

/// What a connection past the limit may still ask: `/healthz`, `/metrics`;
/// everything else is 503 `overloaded` with `Retry-After`.
fn limited_router(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(only_health))
}

async fn only_health(request: Request, next: axum::middleware::Next) -> Response {
    match request.uri().path() {
        "/healthz" | "/metrics" => next.run(request).await,
        _ => ApiError::overloaded(
            "the server is at its connection limit (max_connections); try again",
        )
        .into_response(),
    }
}

/// A socket that holds its connection permit for as long as it is open,
/// whatever protocol it ends up speaking.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// The gauge of connections served, for one within the limit.
    open: Option<Gauge>,
}

impl Counted {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, open: Option<Gauge>) -> Counted {
        if let Some(open) = &open {
            open.inc();
        }
        Counted {
            stream,
            _permit: permit,
            open,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.dec();
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Middleware: the request's body must arrive, whole, within `timeout` of
/// its head.
async fn body_deadline(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    // A request without a body (most GETs) needs no timer.
    if http_body::Body::size_hint(request.body()).exact() == Some(0) {
        return next.run(request).await;
    }
    let request = request.map(|body| {
        Body::new(Deadline {
            body,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        })
    });
    next.run(request).await
}

/// A body that fails with [`std::io::ErrorKind::TimedOut`] once its
/// deadline passes before its end.
struct Deadline {
    body: Body,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (body_timeout_secs)", .0.as_secs_f64())]
pub(crate) struct BodyTimedOut(Duration);

/// Whether a body rejection comes from [`BodyTimedOut`].
pub(crate) fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        cause = e.source();
    }
    false
}
