//! The services' HTTP server: what actix-web's `HttpServer` does (actix-server
//! accepting, actix-http's HTTP/1 dispatcher, the app), with one difference:
//! each connection is read through [`Backpressured`], which stops reading
//! while the client leaves our answers unread.
//!
//! Why: one client pipelining thousands of requests and never reading made a
//! service hold hundreds of MB (docs/security.md). Most of it was actix-http
//! decoding every request it had read at once (bounded in its patched copy,
//! srcs/vendor/actix-http). The rest is here: actix waits for its write
//! buffer to drain only while it sends a body, so answers without one (204,
//! HEAD) to a client that never reads would pile up in the buffer for as
//! long as the client sends requests. `HttpServer` offers no way to wrap the
//! connection; actix-server and actix-http, which it is built on, do.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{Extensions, HttpService, Request, Response};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::{AppConfig, Server};
use actix_web::rt::net::TcpStream;
use actix_web::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::health::Draining;
use crate::http::ServerLimits;

/// After an answer to a request whose body was not read (408, 413): how long
/// the rest is read and discarded before the socket closes, so that the
/// client gets to read the answer.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

type OnConnect = Arc<dyn Fn(&dyn Any, &mut Extensions) + Send + Sync>;

/// Builds a service's server, as `HttpServer` would: `new(app factory)`,
/// its settings, then [`serve`](Self::serve) on a bound listener.
pub struct BoundedServer<F> {
    factory: F,
    limits: ServerLimits,
    workers: Option<usize>,
    shutdown_timeout: u64,
    signals: bool,
    on_connect: Option<OnConnect>,
    drain: Option<(Draining, Duration)>,
}

impl<F> BoundedServer<F> {
    /// A server of the app `factory` makes (one app per worker thread), with
    /// the default [`ServerLimits`], actix's worker count (one per core),
    /// a 30 s shutdown timeout and SIGINT/SIGTERM handling.
    pub fn new(factory: F) -> Self {
        Self {
            factory,
            limits: ServerLimits::default(),
            workers: None,
            shutdown_timeout: 30,
            signals: true,
            on_connect: None,
            drain: None,
        }
    }

    /// The connection cap and the keep-alive and request-head timeouts (the
    /// listener's backlog is set where it is bound; the body deadline is
    /// `common::http::bound_requests`' job).
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Worker threads; `None` keeps actix's default (one per core).
    pub fn workers(mut self, workers: Option<usize>) -> Self {
        self.workers = workers;
        self
    }

    /// Seconds requests in flight get to finish once a stop is asked for.
    pub fn shutdown_timeout(mut self, seconds: u64) -> Self {
        self.shutdown_timeout = seconds;
        self
    }

    /// On SIGINT/SIGTERM, drain for `period` before stopping: `draining` is
    /// set (the app's `/health` and `/ready` answer 503) and the server goes
    /// on serving, so a balancer polling them (the gateway's probes of its
    /// inventory replicas, keepalived's of the gateways, Kubernetes') stops
    /// sending new requests before the listener closes; then requests in
    /// flight finish as without a drain. A second signal cuts the period
    /// short. A zero period stops at once, as actix does.
    pub fn drain(mut self, draining: Draining, period: Duration) -> Self {
        self.drain = (!period.is_zero()).then_some((draining, period));
        self
    }

    /// Leaves SIGINT/SIGTERM alone: the owner stops the server itself.
    pub fn disable_signals(mut self) -> Self {
        self.signals = false;
        self
    }

    /// Runs `f` on every new connection, as `HttpServer::on_connect` does
    /// (the `&dyn Any` is the connection's `TcpStream`).
    pub fn on_connect(
        mut self,
        f: impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static,
    ) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Serves on `listener` (bound with its backlog by
    /// `common::startup::listen`); the server runs once awaited or spawned.
    pub fn serve<I, S, B>(self, listener: TcpListener) -> io::Result<Server>
    where
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<Error> + 'static,
        S::InitError: fmt::Debug,
        S::Response: Into<Response<B>> + 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let addr = listener.local_addr()?;
        let Self {
            factory,
            limits,
            workers,
            shutdown_timeout,
            signals,
            on_connect,
            drain,
        } = self;
        let mut builder = actix_web::dev::Server::build()
            .max_concurrent_connections(limits.max_connections)
            .shutdown_timeout(shutdown_timeout);
        if let Some(n) = workers {
            builder = builder.workers(n);
        }
        // With a drain period the signals are ours (below), not actix's.
        if !signals || drain.is_some() {
            builder = builder.disable_signals();
        }
        // Lets idle keep-alive connections close as soon as a stop begins,
        // as `HttpServer` does.
        let stopping = builder.graceful_shutdown_signal();
        let builder = builder.listen(format!("http-{addr}"), listener, move || {
            let stopping = stopping.clone();
            let mut http = HttpService::<Backpressured, _, _>::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.request_head_timeout)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(addr);
            if let Some(f) = on_connect.clone() {
                http = http.on_connect_ext(move |io: &Backpressured, ext: &mut Extensions| {
                    f(&io.stream as &dyn Any, ext);
                });
            }
            let app = factory()
                .into_factory()
                .map_err(|err| err.into().error_response());
            // The services build no URLs from the app's host and address
            // (no `url_for`, no `connection_info`), so actix's default stands.
            let h1 = http.h1(map_config(app, |()| AppConfig::default()));
            fn_service(|stream: TcpStream| async move {
                let peer = stream.peer_addr().ok();
                Ok((Backpressured::new(stream), peer))
            })
            .and_then(h1)
        })?;
        let server = builder.run();
        if let (Some((draining, period)), true) = (drain, signals) {
            let handle = server.handle();
            actix_web::rt::spawn(async move {
                if let Err(e) = stop_signal().await {
                    log::error!(
                        "cannot catch SIGTERM/SIGINT ({e}): this server stops only when killed"
                    );
                    return;
                }
                draining.start();
                log::info!(
                    "stop asked: draining for {} ms (/health and /ready answer 503, requests are still served), then stopping event=draining",
                    period.as_millis()
                );
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    _ = stop_signal() => log::info!("second stop signal: stopping now"),
                }
                handle.stop(true).await;
            });
        }
        Ok(server)
    }
}

/// The next SIGTERM or SIGINT (Ctrl-C where there is no SIGTERM). An error
/// means the handler could not be installed: the server then runs until
/// killed, as it would have without a drain.
async fn stop_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// A connection that is not read while the client is not reading: once a
/// write found the socket full, reads wait (Pending) until the socket takes
/// output again. actix-http's dispatcher decodes requests only from what it
/// has read, so a client that pipelines requests and never reads its answers
/// gets no more decoded, answered and buffered than what fits in what was
/// already read; the rest waits in the kernel's buffers, and TCP's flow
/// control then stops the client.
pub struct Backpressured {
    stream: TcpStream,
    /// The last write returned Pending: the socket's send buffer is full.
    write_blocked: bool,
}

impl Backpressured {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            write_blocked: false,
        }
    }
}

impl AsyncRead for Backpressured {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.write_blocked {
            // Registers this task for the socket's write readiness: the
            // dispatcher is woken when it drains, flushes, and reads again.
            match self.stream.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                // Writable again (or failed: the read below or the next write
                // reports it).
                Poll::Ready(_) => self.write_blocked = false,
            }
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Backpressured {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.write_blocked = result.is_pending();
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.write_blocked = result.is_pending();
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use actix_web::{web, App, HttpResponse};
    use tokio::io::AsyncWriteExt;

    /// A client pipelining requests whose answers have no body (where actix
    /// itself never waits for its write buffer to drain) and never reading
    /// them: the server answers what it had read and what the socket
    /// buffers hold, then stops reading, instead of answering every request
    /// into its write buffer (20,000 × 8 KiB here).
    #[actix_web::test]
    async fn a_client_that_does_not_read_stops_being_read() {
        const REQUESTS: usize = 20_000;
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&answered);
        let (listener, port) = crate::startup::listen("127.0.0.1", 0, 16).unwrap();
        let server = BoundedServer::new(move || {
            let counter = Arc::clone(&counter);
            App::new().route(
                "/",
                web::get().to(move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async {
                        HttpResponse::NoContent()
                            .insert_header(("x-pad", "x".repeat(8192)))
                            .finish()
                    }
                }),
            )
        })
        .workers(Some(1))
        .disable_signals()
        .serve(listener)
        .unwrap();
        let handle = server.handle();
        actix_web::rt::spawn(server);

        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_read, mut write) = stream.into_split();
        let burst = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(REQUESTS);
        // The server stops reading, so this write may never finish.
        let writer = tokio::spawn(async move {
            let _ = write.write_all(burst.as_bytes()).await;
            std::future::pending::<()>().await;
            drop(write);
        });
        let mut last = usize::MAX;
        // Until the count settles (the server has done what it will do).
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = answered.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        // What the server had read (up to 128 KiB of requests, ~4,800 of
        // these) and what loopback's socket buffers hold (a few MiB).
        assert!(
            last < REQUESTS / 2,
            "{last} of {REQUESTS} requests answered to a client that read none"
        );
        writer.abort();
        handle.stop(false).await;
    }
}
