//! A started node ([`Running`]): its addresses, and the orderly shutdown
//! that lets live calls finish first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Node;

/// A started node: its addresses and how to stop it.
pub struct Running {
    pub node: Arc<Node>,
    /// UDP (and TCP, same port) SIP addresses, one per BIND address.
    pub sip_addrs: Vec<SocketAddr>,
    /// SIP over TLS addresses (empty when TLS is not served).
    pub tls_addrs: Vec<SocketAddr>,
    /// SIP over WebSocket and secure WebSocket addresses (empty when not
    /// served: WS_PORT, WSS_PORT).
    pub ws_addrs: Vec<SocketAddr>,
    pub wss_addrs: Vec<SocketAddr>,
    pub api_addr: SocketAddr,
    /// METRICS_PORT's address, when set.
    pub metrics_addr: Option<SocketAddr>,
    pub api_token: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the node: new calls get 503 while live calls have up to
    /// `grace` to end; calls still up then are hung up (BYE, CDR), the CDR
    /// writer is flushed, and everything stops with pending writes flushed.
    pub async fn shutdown(self, grace: Duration) {
        self.node.calls.drain();
        let deadline = tokio::time::Instant::now() + grace;
        while self.node.calls.live_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.node.calls.live_count() > 0 {
            warn!(
                calls = self.node.calls.live_count(),
                "shutdown grace over; hanging up the calls still up"
            );
            // each gets BYE on both legs and a CDR saying why
            self.node.calls.end_all();
            // a call's BYEs and its media release each take at most one
            // request timeout; under load, several
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.node.calls.live_count() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.node.calls.live_count() > 0 {
                warn!(
                    calls = self.node.calls.live_count(),
                    "calls still ending after 10 s; their CDRs are not written"
                );
            }
        }
        // every CDR handed over is stored (or spooled) before the store closes
        if tokio::time::timeout(Duration::from_secs(10), self.node.calls.flush_cdrs())
            .await
            .is_err()
        {
            warn!("CDR writer did not finish in time");
        }
        self.shutdown.cancel();
        let all = futures_join(self.tasks);
        // the store flush and the sockets get their own bound
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            warn!("shutdown grace period over; exiting with tasks still running");
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
