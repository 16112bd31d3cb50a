//! switchboard-signaling: registrar, SIP service and REST API of one node.
//!
//! [`run`] builds a [`Node`] from a [`Config`], binds the SIP transports and
//! the API, and returns a [`Running`] handle with the bound addresses; the
//! binary and the tests start the very same server this way. Layout:
//! [`config`] (settings), [`directory`] (accounts and users in memory),
//! [`location`] (bindings, write-behind to the store), [`auth`] +
//! [`ratelimit`] (digest and the failed-auth limiter), [`registrar`]
//! (REGISTER), [`service`] (the SIP transaction user), [`api`] (REST),
//! [`metrics`] (Prometheus).

pub mod api;
pub mod auth;
pub mod calls;
pub mod config;
pub mod dialplan;
pub mod directory;
pub mod location;
pub mod media;
pub mod metrics;
pub mod ratelimit;
pub mod registrar;
pub mod service;
mod stack_metrics;
pub mod trunks;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::transaction::TimerConfig;
use switchboard_sip_stack::transport::Transports;
use switchboard_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;

use crate::auth::Authenticator;
use crate::calls::Calls;
use crate::dialplan::{Dialplan, DialplanError};
use crate::directory::Directory;
use crate::location::Location;
use crate::metrics::{SipMetrics, metric};
use crate::ratelimit::AuthLimiter;
use crate::registrar::{Intervals, Now, Registrar};
use crate::service::SipService;

/// Everything a signaling node shares between SIP and the API.
pub struct Node {
    pub config: Config,
    pub store: Store,
    pub directory: Arc<Directory>,
    pub location: Arc<Location>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<SipMetrics>,
    pub calls: Arc<Calls>,
    pub started: Instant,
    /// Cancelled at shutdown; tasks the API starts (trunk registrations)
    /// watch it.
    pub shutdown: CancellationToken,
    endpoint: std::sync::OnceLock<Arc<Endpoint>>,
}

/// Figures the API reports from the SIP stack.
#[derive(Debug, Default)]
pub struct SipStats {
    pub transactions_live: usize,
    pub tcp_connections: usize,
    pub requests_in: u64,
    pub responses_out: u64,
}

impl Node {
    fn endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.endpoint.get()
    }

    pub fn sip_stats(&self) -> SipStats {
        let Some(ep) = self.endpoint() else {
            return SipStats::default();
        };
        let transports = ep.wire.transports();
        SipStats {
            transactions_live: ep.layer.live(),
            tcp_connections: transports.map(|t| t.connection_count()).unwrap_or(0),
            requests_in: transports
                .map(|t| {
                    t.stats.udp_in.load(Ordering::Relaxed) + t.stats.tcp_in.load(Ordering::Relaxed)
                })
                .unwrap_or(0),
            responses_out: transports
                .map(|t| t.stats.out.load(Ordering::Relaxed))
                .unwrap_or(0),
        }
    }

    /// The whole `/metrics` page.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        let (aors, contacts) = self.location.counts();
        metric(
            &mut out,
            "switchboard_registrations_aors",
            "gauge",
            "Registered addresses-of-record.",
            aors,
        );
        metric(
            &mut out,
            "switchboard_registrations_contacts",
            "gauge",
            "Registered contacts.",
            contacts,
        );
        metric(
            &mut out,
            "switchboard_registrations_expired_total",
            "counter",
            "Contacts removed because they expired.",
            self.location.stats.expired.load(Ordering::Relaxed),
        );
        metric(
            &mut out,
            "switchboard_registrations_persist_failures_total",
            "counter",
            "Failed write-behind flushes of registrations (retried).",
            self.location.stats.persist_failures.load(Ordering::Relaxed),
        );
        let a = &self.auth.stats;
        for (name, help, v) in [
            (
                "switchboard_auth_challenges_total",
                "Digest challenges sent.",
                &a.challenges,
            ),
            (
                "switchboard_auth_successes_total",
                "Successful digest authentications.",
                &a.successes,
            ),
            (
                "switchboard_auth_failures_total",
                "Failed digest authentications.",
                &a.failures,
            ),
            (
                "switchboard_auth_stale_total",
                "Stale nonces answered with stale=true.",
                &a.stale,
            ),
            (
                "switchboard_auth_replays_total",
                "Replayed nonce-counts refused.",
                &a.replays,
            ),
            (
                "switchboard_auth_blocked_total",
                "Requests from blocked sources.",
                &a.blocked,
            ),
        ] {
            metric(&mut out, name, "counter", help, v.load(Ordering::Relaxed));
        }
        metric(
            &mut out,
            "switchboard_auth_blocked_sources",
            "gauge",
            "Source addresses currently blocked after failed authentications.",
            self.auth.limiter.blocked_count(Instant::now()),
        );
        if let Some(ep) = self.endpoint() {
            let s = ep.layer.metrics();
            let created = s.created.client_invite
                + s.created.client_non_invite
                + s.created.server_invite
                + s.created.server_non_invite;
            metric(
                &mut out,
                "switchboard_transactions_live",
                "gauge",
                "Live SIP transactions.",
                ep.layer.live(),
            );
            metric(
                &mut out,
                "switchboard_transactions_created_total",
                "counter",
                "SIP transactions created.",
                created,
            );
            metric(
                &mut out,
                "switchboard_transactions_timeouts_total",
                "counter",
                "SIP transactions that timed out.",
                s.timeouts,
            );
            metric(
                &mut out,
                "switchboard_transactions_retransmissions_sent_total",
                "counter",
                "Messages retransmitted by transaction timers.",
                s.retransmissions_sent,
            );
            metric(
                &mut out,
                "switchboard_transactions_retransmissions_absorbed_total",
                "counter",
                "Retransmitted requests absorbed by server transactions.",
                s.retransmissions_absorbed,
            );
            if let Some(t) = ep.wire.transports() {
                metric(
                    &mut out,
                    "switchboard_tcp_connections",
                    "gauge",
                    "Open SIP TCP connections.",
                    t.connection_count(),
                );
                metric(
                    &mut out,
                    "switchboard_transport_send_errors_total",
                    "counter",
                    "Messages that could not be sent.",
                    t.stats.send_errors.load(Ordering::Relaxed),
                );
            }
        }
        if let Some(ep) = self.endpoint() {
            stack_metrics::render(&mut out, ep);
        }
        self.metrics.render(&mut out);
        self.calls.stats.render(&mut out, self.calls.live_count());
        out
    }
}

/// A started node: its addresses and how to stop it.
pub struct Running {
    pub node: Arc<Node>,
    /// UDP (and TCP, same port) SIP addresses, one per BIND address.
    pub sip_addrs: Vec<SocketAddr>,
    pub api_addr: SocketAddr,
    pub api_token: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, flushes pending registrations, and waits (at most
    /// `grace`) for background tasks.
    /// Stops the node: new calls get 503 while live calls have up to
    /// `grace` to end, then everything stops and pending writes flush.
    pub async fn shutdown(self, grace: Duration) {
        self.node.calls.drain();
        let deadline = tokio::time::Instant::now() + grace;
        while self.node.calls.live_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.node.calls.live_count() > 0 {
            warn!(
                calls = self.node.calls.live_count(),
                "shutdown grace over; ending with calls up"
            );
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

/// The API token: configured, or read from / generated into DATA_DIR.
fn api_token(config: &Config) -> anyhow::Result<String> {
    if let Some(t) = &config.api_token {
        if t.is_empty() {
            anyhow::bail!("API_TOKEN: must not be empty");
        }
        return Ok(t.clone());
    }
    let path = config.data_dir.join("api_token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            info!(path = %path.display(), "API token read from file");
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, &token)
        .with_context(|| format!("DATA_DIR: cannot write {}", path.display()))?;
    info!(path = %path.display(), "API token generated (API_TOKEN unset)");
    Ok(token)
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())
}

/// The dialplan at `path`, or the built-in one when the file does not exist.
fn load_dialplan(path: &Path) -> anyhow::Result<Dialplan> {
    if !path.exists() {
        info!(path = %path.display(), "no dialplan file; using the built-in plan (numbers dial users)");
        return Ok(Dialplan::builtin());
    }
    Dialplan::load(path).map_err(|e| anyhow::anyhow!("DIALPLAN_PATH: {e}"))
}

impl Node {
    /// Re-reads DIALPLAN_PATH (SIGHUP). A bad file leaves the running
    /// dialplan in place and returns why.
    pub fn reload_dialplan(&self) -> Result<usize, DialplanError> {
        let d = load_dialplan(&self.config.dialplan_path).map_err(|e| DialplanError {
            path: self.config.dialplan_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let n = d.len();
        self.calls.set_dialplan(d);
        Ok(n)
    }

    /// Writes a dialplan to DIALPLAN_PATH (atomically: temp file, rename).
    pub fn save_dialplan(&self, d: &Dialplan) -> std::io::Result<()> {
        let path = &self.config.dialplan_path;
        let text = serde_json::to_string_pretty(&d.file).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)
    }
}

/// Starts a node. Returns once every socket is bound.
///
/// # Errors
/// Bad configuration, an unreachable store at start-up, or a port in use.
pub async fn run(config: Config) -> anyhow::Result<Running> {
    config.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("DATA_DIR: cannot create {}", config.data_dir.display()))?;
    let store = Store::open_sqlite(&config.data_dir)
        .await
        .with_context(|| {
            format!(
                "DATA_DIR: cannot open the database in {}",
                config.data_dir.display()
            )
        })?;
    let token = api_token(&config)?;
    let shutdown = CancellationToken::new();

    let directory = Arc::new(Directory::new(config.realm.clone()));
    let (accounts, users) = directory.load(&store).await?;
    info!(accounts, users, "directory loaded");

    let (persist_tx, persist_rx) = mpsc::unbounded_channel();
    let location = Arc::new(Location::new(config.max_contacts, Some(persist_tx)));
    location::restore_from(&store, &location, Now::current().unix_ms).await?;

    let limiter = AuthLimiter::new(
        config.auth_fail_limit,
        Duration::from_secs(config.auth_fail_window),
        Duration::from_secs(config.auth_block_seconds),
    );
    let auth = Arc::new(Authenticator::new(
        rand::random(),
        config.nonce_ttl,
        config.auth_algorithms.clone(),
        limiter,
        config.auth_block_action == "drop",
    ));
    let metrics = Arc::new(SipMetrics::default());
    let dialplan = load_dialplan(&config.dialplan_path)?;
    let trunks = Arc::new(
        trunks::Trunks::load(&config.trunks_path)
            .map_err(|e| anyhow::anyhow!("TRUNKS_PATH: {e}"))?,
    );
    info!(routes = dialplan.len(), path = %config.dialplan_path.display(), "dialplan loaded");
    let media = Arc::new(media::MediaPool::from_config(&config)?);
    let calls = Calls::new(calls::CallsSetup {
        directory: directory.clone(),
        location: location.clone(),
        auth: auth.clone(),
        trunks: trunks.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        dialplan,
        node: config.node_name(),
        limit_code: config.limit_response,
        media: media.clone(),
    });
    let node = Arc::new(Node {
        calls: calls.clone(),
        shutdown: shutdown.clone(),
        store: store.clone(),
        directory: directory.clone(),
        location: location.clone(),
        auth: auth.clone(),
        metrics: metrics.clone(),
        started: Instant::now(),
        endpoint: std::sync::OnceLock::new(),
        config: config.clone(),
    });

    let mut tasks = Vec::new();
    tasks.push(location::spawn_persister(
        store.clone(),
        persist_rx,
        location.clone(),
        shutdown.clone(),
    ));
    tasks.push(spawn_sweeper(node.clone(), shutdown.clone()));
    tasks.push(media.spawn_health_checks(shutdown.clone()));

    let service = Arc::new(SipService {
        registrar: Registrar {
            directory,
            location,
            auth,
            intervals: Intervals {
                default: config.default_expires,
                min: config.min_expires,
                max: config.max_expires,
            },
        },
        metrics,
        calls: calls.clone(),
    });
    let endpoint = Endpoint::with_limits(service, TimerConfig::default(), config.sip_limits());
    calls.set_endpoint(&endpoint);
    for t in trunks.list() {
        calls.start_trunk_registration(t, shutdown.clone());
    }
    let transports = Transports::bind(config.transport(), endpoint.clone(), shutdown.clone())
        .await
        .with_context(|| {
            format!(
                "PORT/BIND: cannot bind SIP on port {} of {:?}",
                config.port, config.bind
            )
        })?;
    endpoint.wire.set(transports.clone());
    let _ = node.endpoint.set(endpoint);
    let sip_addrs = transports.local_addrs();

    let listener = tokio::net::TcpListener::bind((config.api_bind, config.api_port))
        .await
        .with_context(|| {
            format!(
                "API_PORT: cannot bind {}:{}",
                config.api_bind, config.api_port
            )
        })?;
    let api_addr = listener.local_addr()?;
    info!(%api_addr, "REST API listening");
    let app = api::router(node.clone(), token.clone());
    let api_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { api_shutdown.cancelled().await });
        if let Err(e) = serve.await {
            warn!(cause = %e, "REST API server stopped");
        }
    }));

    Ok(Running {
        node,
        sip_addrs,
        api_addr,
        api_token: token,
        shutdown,
        tasks,
    })
}

/// Expires bindings and forgets quiet rate-limit entries, once a second.
fn spawn_sweeper(node: Arc<Node>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let gone = node.location.expire(Now::current().unix_ms);
            for (aor, contact) in gone {
                info!(%aor, %contact, "registration expired");
            }
            node.auth.limiter.sweep(Instant::now());
        }
    })
}
