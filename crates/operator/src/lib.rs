//! switchboard-operator: starts one Kubernetes Job per call, over an HTTP
//! API compatible with sipstuff-k8s-operator's (README, "Operator").
//!
//! - [`request`]: the `POST /call` body and its validation (422s naming
//!   the field);
//! - [`job`]: the Job (and per-Job Secret) of a call, a pure function of
//!   the request and the [`config`];
//! - [`api`]: the HTTP routes over the Kubernetes API;
//! - [`status`]: what `GET /jobs` shows (phase, times, the call's report).

pub mod api;
pub mod config;
pub mod job;
pub mod request;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use api::{AppState, router};
pub use config::OperatorConfig;
pub use job::{build_job, job_name, resolve_env};
pub use request::{CallRequest, FieldError};

/// A Kubernetes client from KUBECONFIG (when set), else the pod's service
/// account; the error says which was tried.
pub async fn kube_client() -> Result<kube::Client, String> {
    let config = match std::env::var_os("KUBECONFIG") {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| format!("KUBECONFIG {}: {e}", path.to_string_lossy()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("KUBECONFIG {}: {e}", path.to_string_lossy()))?
        }
        None => kube::Config::incluster().map_err(|e| {
            format!("no in-cluster Kubernetes configuration ({e}); outside a pod set KUBECONFIG")
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// A running API server.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting; requests in flight get up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Serves the API for `state` on `listener`.
pub fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(Arc::clone(&state));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    Ok(Running {
        addr,
        state,
        shutdown: tx,
        task,
    })
}
