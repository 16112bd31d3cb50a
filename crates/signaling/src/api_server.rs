//! The HTTP servers of a node: the REST API on API_PORT (plain HTTP, or
//! HTTPS only when API_TLS_CERT and API_TLS_KEY are set) and `/metrics`
//! alone on METRICS_PORT (always plain HTTP).
//!
//! Each port holds at most [`MAX_CONNECTIONS`] connections; one over that
//! is closed as soon as it is accepted. On the HTTPS port the TLS
//! handshake runs in a task of its own under TLS_HANDSHAKE_TIMEOUT, and
//! only a finished handshake reaches the HTTP server: a client that sends
//! nothing, or plain HTTP (not a TLS record, so the handshake fails at
//! once), holds its slot for that long at most and never gets an HTTP
//! answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::serve::Listener;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{Config, Node, api};

/// Connections one port holds at most (TLS handshakes under way
/// included).
pub const MAX_CONNECTIONS: usize = 1024;

/// Finished TLS handshakes waiting for the HTTP server to take them.
const HANDED_OVER: usize = 64;

/// A connection holding its place among [`MAX_CONNECTIONS`] until it is
/// dropped.
pub struct Counted<S> {
    io: S,
    _slot: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A TCP listener that holds at most [`MAX_CONNECTIONS`] connections.
pub struct Bounded {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
    /// The port's setting, for the log.
    var: &'static str,
}

impl Bounded {
    fn new(tcp: TcpListener, var: &'static str) -> Self {
        Self {
            tcp,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            var,
        }
    }
}

impl Listener for Bounded {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // axum's accept: retries (after a pause when out of files)
            let (tcp, peer) = Listener::accept(&mut self.tcp).await;
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => {
                    return (
                        Counted {
                            io: tcp,
                            _slot: slot,
                        },
                        peer,
                    );
                }
                Err(_) => debug!(
                    %peer,
                    port = self.var,
                    max = MAX_CONNECTIONS,
                    "connection refused: the port holds its most connections"
                ),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The HTTPS port as the HTTP server sees it: connections whose TLS
/// handshake is done ([`spawn_handshakes`] makes them).
pub struct TlsListener {
    done: mpsc::Receiver<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = Counted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(c) => c,
            // the handshake task ended (shutdown): nothing comes any more
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts on `tcp` and runs each TLS handshake in its own task within
/// `deadline`; finished ones go to the returned listener.
fn spawn_handshakes(
    mut tcp: Bounded,
    acceptor: TlsAcceptor,
    deadline: Duration,
    shutdown: CancellationToken,
) -> io::Result<(TlsListener, JoinHandle<()>)> {
    let local = tcp.local_addr()?;
    let (tx, done) = mpsc::channel(HANDED_OVER);
    let task = tokio::spawn(async move {
        loop {
            let (conn, peer) = tokio::select! {
                c = tcp.accept() => c,
                _ = shutdown.cancelled() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Counted { io, _slot } = conn;
                match tokio::time::timeout(deadline, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => {
                        // refused only once the server stopped taking them
                        let _ = tx.send((Counted { io: tls, _slot }, peer)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, cause = %e, "REST API: TLS handshake failed"),
                    Err(_) => debug!(
                        %peer,
                        "REST API: no TLS handshake within TLS_HANDSHAKE_TIMEOUT"
                    ),
                }
            });
        }
    });
    Ok((TlsListener { done, local }, task))
}

/// API_PORT as bound: plain, or with the TLS configuration it serves.
enum ApiPort {
    Plain(Bounded),
    Tls(Bounded, Arc<ServerConfig>),
}

/// The bound ports, not serving yet.
pub(crate) struct Ports {
    api: ApiPort,
    pub api_addr: SocketAddr,
    metrics: Option<Bounded>,
    pub metrics_addr: Option<SocketAddr>,
}

/// Binds API_PORT (and METRICS_PORT when set); `tls`: API_PORT speaks
/// HTTPS with it.
///
/// # Errors
/// A port that cannot be bound (the message names its variable).
pub(crate) async fn bind(config: &Config, tls: Option<Arc<ServerConfig>>) -> anyhow::Result<Ports> {
    let listener = TcpListener::bind((config.api_bind, config.api_port))
        .await
        .with_context(|| {
            format!(
                "API_PORT: cannot bind {}:{}",
                config.api_bind, config.api_port
            )
        })?;
    let api_addr = listener.local_addr()?;
    let https = tls.is_some();
    info!(%api_addr, https, "REST API listening");
    let bounded = Bounded::new(listener, "API_PORT");
    let api = match tls {
        Some(server) => ApiPort::Tls(bounded, server),
        None => ApiPort::Plain(bounded),
    };
    let metrics = match config.metrics_port {
        None => None,
        Some(port) => {
            let bind = config.metrics_bind.unwrap_or(config.api_bind);
            let l = TcpListener::bind((bind, port))
                .await
                .with_context(|| format!("METRICS_PORT: cannot bind {bind}:{port}"))?;
            Some(Bounded::new(l, "METRICS_PORT"))
        }
    };
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(addr) = metrics_addr {
        info!(%addr, "/metrics listening without token, plain HTTP (METRICS_PORT)");
    }
    Ok(Ports {
        api,
        api_addr,
        metrics,
        metrics_addr,
    })
}

impl Ports {
    /// Serves the API (and `/metrics` on METRICS_PORT) until `shutdown`.
    ///
    /// # Errors
    /// Only if a bound socket lost its address.
    pub(crate) fn serve(
        self,
        node: Arc<Node>,
        token: String,
        shutdown: CancellationToken,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        let app = api::router(node.clone(), token);
        match self.api {
            ApiPort::Plain(l) => tasks.push(spawn_server(l, app, "REST API", shutdown.clone())),
            ApiPort::Tls(l, server) => {
                let deadline = node.config.tls.handshake_timeout();
                let acceptor = TlsAcceptor::from(server);
                let (l, handshakes) = spawn_handshakes(l, acceptor, deadline, shutdown.clone())?;
                tasks.push(handshakes);
                tasks.push(spawn_server(l, app, "REST API", shutdown.clone()));
            }
        }
        if let Some(l) = self.metrics {
            let app = api::metrics_router(node);
            tasks.push(spawn_server(l, app, "metrics", shutdown));
        }
        Ok(tasks)
    }
}

fn spawn_server<L>(
    listener: L,
    app: Router,
    what: &'static str,
    shutdown: CancellationToken,
) -> JoinHandle<()>
where
    L: Listener<Addr = SocketAddr>,
{
    tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            warn!(cause = %e, "{what} server stopped");
        }
    })
}
