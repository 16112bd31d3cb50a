//! `switchboard-rtpmanager`: anchors the media of calls.
//!
//! [`engine`] holds the sessions and moves the packets; [`service`] is its
//! gRPC face (`proto/switchboard/rtpmanager/v1`); [`run`] serves both. The
//! signaling server embeds the same engine and service when no external
//! RTP manager is configured.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod engine;
pub mod ports;
pub mod service;
pub mod stream;

use std::net::SocketAddr;

use switchboard_rtpmanager_api::RtpManagerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use config::Config;
pub use engine::{Engine, EngineConfig, EngineError, RtpAddress};
pub use service::Service;

/// A started RTP manager.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub engine: Engine,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting gRPC calls, ends every session and waits for the
    /// server task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.engine.shutdown();
        let _ = self.server.await;
    }
}

/// Binds the gRPC port and starts the engine.
pub async fn run(config: Config) -> anyhow::Result<Running> {
    let engine_config = config.engine().map_err(anyhow::Error::msg)?;
    let engine = Engine::new(engine_config)?;
    let listener = TcpListener::bind(config.grpc_addr())
        .await
        .map_err(|e| anyhow::anyhow!("GRPC_PORT: cannot bind {}: {e}", config.grpc_addr()))?;
    serve(engine, listener).await
}

/// Serves `engine` over gRPC on an already bound listener.
pub async fn serve(engine: Engine, listener: TcpListener) -> anyhow::Result<Running> {
    let grpc_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let svc = RtpManagerServer::new(Service::new(engine.clone()));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
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
