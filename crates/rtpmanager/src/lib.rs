//! `switchboard-rtpmanager`: anchors the media of calls.
//!
//! [`engine`] holds the sessions and moves the packets; [`service`] is its
//! gRPC face (`proto/switchboard/rtpmanager/v1`), guarded by [`security`];
//! [`run`] serves both, [`Running::drain_and_shutdown`] stops them
//! gracefully (SIGTERM), and [`probe`] is the `health` subcommand. The
//! signaling server embeds the same engine and service when no external RTP
//! manager is configured.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codec;
pub mod config;
pub mod engine;
pub mod fdlimit;
pub mod ports;
pub mod probe;
pub mod recording;
pub mod security;
pub mod service;
pub mod srtp;
pub mod stream;
pub mod webrtc;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_rtpmanager_api::RtpManagerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{Cli, Command, Config};
pub use engine::{Engine, EngineConfig, EngineError, RtpAddress};
pub use security::GrpcSecurity;
pub use service::Service;

/// HTTP/2 pings to an idle gRPC client, and how long its answer may take.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A started RTP manager.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub engine: Engine,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

/// How long a stopping gRPC server may wait for its calls to finish.
const SERVER_STOP: Duration = Duration::from_secs(5);
/// How often a drain logs how many sessions are left.
const DRAIN_PROGRESS: Duration = Duration::from_secs(60);

/// How [`Running::drain_and_shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// The last session ended.
    Idle,
    /// The grace period ran out; this many sessions were ended.
    GraceExpired(usize),
    /// Interrupted (a second signal); this many sessions were ended.
    Interrupted(usize),
}

impl Running {
    /// Stops accepting gRPC calls, ends every session and waits for the
    /// server task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.engine.shutdown();
        // the server waits for its connections to finish their calls; a
        // client that keeps a stream open is not waited for past this
        if tokio::time::timeout(SERVER_STOP, &mut self.server)
            .await
            .is_err()
        {
            warn!("gRPC calls still open after {SERVER_STOP:?}: not waiting for them");
            self.server.abort();
        }
    }

    /// The graceful stop (SIGTERM): no new sessions from now on (Health
    /// says `draining`, SetDraining cannot undo it), while gRPC keeps
    /// serving (signaling updates, bridges, watches and destroys the live
    /// sessions) and their RTP keeps flowing. Waits until the last session
    /// ends, `grace` passes or `interrupt` resolves, whichever comes first,
    /// then stops everything as [`Running::shutdown`] does.
    pub async fn drain_and_shutdown(
        self,
        grace: Duration,
        interrupt: impl Future<Output = ()>,
    ) -> DrainEnd {
        let health = self.engine.drain_for_shutdown();
        info!(
            sessions = health.sessions,
            grace_seconds = grace.as_secs(),
            "draining: no new sessions; waiting for the live ones to end (SHUTDOWN_GRACE)"
        );
        let start = tokio::time::Instant::now();
        // a SHUTDOWN_GRACE beyond what an Instant holds waits "for ever"
        let deadline = start
            .checked_add(grace)
            .unwrap_or_else(|| start + Duration::from_secs(30 * 365 * 86_400));
        let mut progress = tokio::time::interval_at(start + DRAIN_PROGRESS, DRAIN_PROGRESS);
        tokio::pin!(interrupt);
        let end = loop {
            tokio::select! {
                biased;
                _ = self.engine.idle() => break DrainEnd::Idle,
                _ = &mut interrupt => break DrainEnd::Interrupted(self.engine.health().sessions),
                _ = tokio::time::sleep_until(deadline) => {
                    break DrainEnd::GraceExpired(self.engine.health().sessions);
                }
                _ = progress.tick() => info!(
                    sessions = self.engine.health().sessions,
                    grace_left_seconds = deadline.saturating_duration_since(tokio::time::Instant::now()).as_secs(),
                    "draining"
                ),
            }
        };
        match end {
            DrainEnd::Idle => info!("drained: no session left"),
            DrainEnd::GraceExpired(n) => {
                warn!(
                    sessions = n,
                    "SHUTDOWN_GRACE passed: ending the remaining sessions"
                )
            }
            DrainEnd::Interrupted(n) => warn!(sessions = n, "ending the remaining sessions now"),
        }
        self.shutdown().await;
        end
    }
}

/// Binds the gRPC port and starts the engine.
pub async fn run(config: Config) -> anyhow::Result<Running> {
    let engine_config = config.engine().map_err(anyhow::Error::msg)?;
    let security = config.security().map_err(anyhow::Error::msg)?;
    let engine = Engine::new(engine_config)?;
    let listener = TcpListener::bind(config.grpc_addr())
        .await
        .map_err(|e| anyhow::anyhow!("GRPC_PORT: cannot bind {}: {e}", config.grpc_addr()))?;
    serve_secured(engine, listener, security).await
}

/// HTTP/2 flow-control windows of the gRPC server (see [`serve_secured`]).
const CONNECTION_WINDOW: u32 = 16 << 20;
const STREAM_WINDOW: u32 = 1 << 20;

/// Serves `engine` over gRPC on an already bound listener, without token
/// or TLS (for a loopback listener).
pub async fn serve(engine: Engine, listener: TcpListener) -> anyhow::Result<Running> {
    serve_secured(engine, listener, GrpcSecurity::default()).await
}

/// Serves `engine` over gRPC on an already bound listener, every call
/// checked against `security`'s token, over TLS when it has one.
pub async fn serve_secured(
    engine: Engine,
    listener: TcpListener,
    security: GrpcSecurity,
) -> anyhow::Result<Running> {
    let grpc_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let auth = security::Auth::new(security.token.as_deref());
    let svc = RtpManagerServer::with_interceptor(Service::new(engine.clone()), auth);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // a peer that vanished without closing its connection (a crashed
    // host) is found within a minute, so its event streams end and its
    // sessions become subject to expiry
    //
    // Signaling multiplexes every call's small requests over one HTTP/2
    // connection. h2 bounds the framing overhead of small DATA frames a
    // peer may have buffered at half the connection window and answers
    // more with GOAWAY (ENHANCE_YOUR_CALM): with the 64 KB default, a
    // thousand calls a second on a busy machine tripped it and every
    // request in flight failed. A 16 MB window (8 MB of budget) is far
    // above what one signaling node sends in flight.
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .initial_stream_window_size(Some(STREAM_WINDOW));
    if let Some(tls) = security.tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("GRPC_TLS_CERT/GRPC_TLS_KEY: {e}"))?;
    }
    let server = tokio::spawn(async move {
        let result = builder
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, signal.cancelled_owned())
            .await;
        if let Err(e) = result {
            error!(cause = %e, "gRPC server stopped");
        }
    });
    Ok(Running {
        grpc_addr,
        engine,
        shutdown,
        server,
    })
}
