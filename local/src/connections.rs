//! Connections of the local server: how many at once, and how long each may keep the server waiting.
//!
//! A connection costs a file descriptor, a task and hyper's buffers whatever it sends, so these limits
//! come before any request is parsed (issue 11: connections with unfinished headers and idle ones
//! stayed open indefinitely):
//! - at most `max_connections` at once; the next one waits in the kernel's accept queue until a slot
//!   frees (it is not refused: a busy server answers late rather than never);
//! - a request's head (request line and headers) must arrive within `header_timeout` of its first
//!   byte;
//! - a connection with no request being handled and no bytes moving either way is closed after
//!   `idle_timeout` (between keep-alive requests, and a client that stops reading its answer);
//! - the body, once a handler reads it, must arrive within `body_timeout` (`crate::api_entry`).
//!
//! The two clocks on the socket are kept by `Watched`, which sees every read and write, and by a guard
//! the service holds while a request is being handled: while one is, the handler's own limits apply.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use media_shared::config::{self, ConfigError, Env};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The settings of the README's configuration table (`MEDIA_HEADER_TIMEOUT_SECS`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            // A 4 MiB chunk at 70 KB/s; the official client's 200 KB chunks need 3.5 KB/s.
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let d = ConnectionLimits::default();
        let secs = |var, default: Duration| {
            config::u64_var(env, var, default.as_secs(), 1).map(Duration::from_secs)
        };
        Ok(ConnectionLimits {
            max_connections: config::u64_var(
                env,
                "MEDIA_MAX_CONNECTIONS",
                d.max_connections as u64,
                1,
            )?
            .try_into()
            .unwrap_or(usize::MAX),
            header_timeout: secs("MEDIA_HEADER_TIMEOUT_SECS", d.header_timeout)?,
            body_timeout: secs("MEDIA_BODY_TIMEOUT_SECS", d.body_timeout)?,
            idle_timeout: secs("MEDIA_IDLE_TIMEOUT_SECS", d.idle_timeout)?,
        })
    }
}

/// hyper's own ceilings, above the JSON answers of `crate::guards` (which answer 414/431 for heads
/// over its smaller limits): a head that does not even fit these gets hyper's bare 431. They also
/// bound what a connection buffers before a handler asks for its body.
const MAX_BUF: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// How long a stopping server lets requests in flight finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `limits` until `stop` completes, then lets the requests in
/// flight finish (for up to `DRAIN`).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // The head's clock is `Watched`'s, which starts at the head's first byte.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(Clock::new());
        let io = TokioIo::new(Watched::new(stream, clock.clone(), limits.clone()));
        let service = per_connection(router.clone(), peer, clock);
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
}

/// The router as one connection's service: each request carries the peer's address and holds the
/// connection's clock as busy while it is handled.
fn per_connection(
    router: axum::Router,
    peer: SocketAddr,
    clock: Arc<Clock>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::new(clock.clone());
        let mut router = router.clone();
        async move {
            let resp = router.call(req).await;
            drop(busy);
            resp
        }
    })
}

/// One connection's clocks.
struct Clock(Mutex<ClockState>);

struct ClockState {
    /// Requests being handled (at most one on HTTP/1, but counted, not assumed).
    busy: usize,
    /// The last time bytes moved either way, or a request finished.
    last_progress: Instant,
    /// When the first byte of the next request's head arrived, if it has.
    head_started: Option<Instant>,
    /// The task last waiting to read. hyper may not read again after answering until the socket
    /// wakes it; a finished request wakes it instead, so that the idle clock starts.
    reader: Option<Waker>,
}

impl Clock {
    fn new() -> Self {
        Clock(Mutex::new(ClockState {
            busy: 0,
            last_progress: Instant::now(),
            head_started: None,
            reader: None,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_progress(&self) {
        let mut s = self.state();
        let now = Instant::now();
        s.last_progress = now;
        if s.busy == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
        }
    }

    fn waiting_to_read(&self, waker: &Waker) {
        let mut s = self.state();
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.reader = Some(waker.clone());
        }
    }

    fn write_progress(&self) {
        self.state().last_progress = Instant::now();
    }

    /// When waiting on the socket must end: none while a handler runs (its own limits apply).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let s = self.state();
        if s.busy > 0 {
            return None;
        }
        Some(match s.head_started {
            Some(t) => t + limits.header_timeout,
            None => s.last_progress + limits.idle_timeout,
        })
    }
}

/// Held while a request is being handled.
struct Busy(Arc<Clock>);

impl Busy {
    fn new(clock: Arc<Clock>) -> Self {
        {
            let mut s = clock.state();
            s.busy += 1;
            s.head_started = None;
        }
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let reader = {
            let mut s = self.0.state();
            s.busy -= 1;
            s.last_progress = Instant::now();
            s.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }
}

/// A socket that fails with `TimedOut` when it has waited past its clock's deadline.
struct Watched<IO> {
    io: IO,
    clock: Arc<Clock>,
    limits: ConnectionLimits,
    timer: Pin<Box<Sleep>>,
}

impl<IO> Watched<IO> {
    fn new(io: IO, clock: Arc<Clock>, limits: ConnectionLimits) -> Self {
        Watched {
            io,
            clock,
            limits,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Called when the socket is not ready: arms the timer for the current deadline and reports
    /// whether it has passed (the timer wakes the task when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.clock.deadline(&self.limits) else {
            return false;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client kept the connection waiting too long",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.clock.read_progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                self.clock.waiting_to_read(cx.waker());
                if self.expired(cx) {
                    return Poll::Ready(Err(timed_out()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.clock.write_progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.clock.write_progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        assert_eq!(
            ConnectionLimits::from_env(&[("X", "1")]).unwrap(),
            ConnectionLimits::default()
        );
        let l = ConnectionLimits::from_env(&[
            ("MEDIA_MAX_CONNECTIONS", "3"),
            ("MEDIA_HEADER_TIMEOUT_SECS", "2"),
            ("MEDIA_BODY_TIMEOUT_SECS", "4"),
            ("MEDIA_IDLE_TIMEOUT_SECS", "5"),
        ])
        .unwrap();
        assert_eq!(
            l,
            ConnectionLimits {
                max_connections: 3,
                header_timeout: Duration::from_secs(2),
                body_timeout: Duration::from_secs(4),
                idle_timeout: Duration::from_secs(5),
            }
        );
        for var in [
            "MEDIA_MAX_CONNECTIONS",
            "MEDIA_HEADER_TIMEOUT_SECS",
            "MEDIA_BODY_TIMEOUT_SECS",
            "MEDIA_IDLE_TIMEOUT_SECS",
        ] {
            assert_eq!(
                ConnectionLimits::from_env(&[(var, "0")]).unwrap_err().var,
                var
            );
        }
    }
}
