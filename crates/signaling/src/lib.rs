//! switchboard-signaling: registrar, SIP service and REST API of one node.
//!
//! [`run`] builds a [`Node`] from a [`Config`], binds the SIP transports and
//! the API, and returns a [`Running`] handle with the bound addresses; the
//! binary and the tests start the very same server this way. Layout:
//! [`config`] (settings), [`directory`] (accounts and users in memory),
//! [`location`] (bindings, write-behind to the store; [`flow_close`]
//! removes those of closed connections), [`auth`] +
//! [`ratelimit`] (digest and the failed-auth limiter), [`registrar`]
//! (REGISTER), [`service`] (the SIP transaction user), [`api`] (REST),
//! [`metrics`] (Prometheus), [`secrets`] (files only their owner reads),
//! [`probe`] (the `health` subcommand), [`tls`] (the certificates of SIP
//! over TLS and of the API, and their reloads); [`api_server`] binds and
//! serves the API's port (HTTP or HTTPS) and METRICS_PORT.

pub mod api;
pub mod api_server;
pub mod auth;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod dialplan;
pub mod directory;
pub mod flow_close;
pub mod location;
pub mod media;
pub mod metrics;
pub mod probe;
pub mod ratelimit;
pub mod registrar;
mod running;
pub mod secrets;
pub mod service;
mod stack_metrics;
pub mod tls;
pub mod trunks;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_sip_stack::endpoint::Endpoint;
use switchboard_sip_stack::target::TransportKind;
use switchboard_sip_stack::transaction::TimerConfig;
use switchboard_sip_stack::transport::Transports;
use switchboard_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;
pub use running::Running;

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
    /// The platform this node is part of (a node of its own without Redis).
    pub cluster: Arc<cluster::Cluster>,
    /// Calls, registrations, sessions and RTP managers as events.
    pub events: switchboard_events::EventBus,
    /// Told when another replica changed accounts, users, trunks or the
    /// dialplan (the shared database is read again at once).
    pub config_changed: tokio::sync::Notify,
    pub started: Instant,
    /// Cancelled at shutdown; tasks the API starts (trunk registrations)
    /// watch it.
    pub shutdown: CancellationToken,
    /// The TLS listener's certificate, when TLS is served.
    pub tls: Option<Arc<tls::TlsCert>>,
    /// The REST API's certificate, when API_PORT speaks HTTPS.
    pub api_tls: Option<Arc<tls::TlsCert>>,
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
                    t.stats.udp_in.load(Ordering::Relaxed)
                        + t.stats.tcp_in.load(Ordering::Relaxed)
                        + t.stats.tls_in.load(Ordering::Relaxed)
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
        metric(
            &mut out,
            "switchboard_registrations_persist_dropped_total",
            "counter",
            "Registration changes not queued for the store (queue full while a write stalled).",
            self.location.stats.persist_dropped.load(Ordering::Relaxed),
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
                "Requests from blocked sources or for blocked usernames.",
                &a.blocked,
            ),
            (
                "switchboard_auth_foreign_nonces_total",
                "Credentials with a nonce not issued to their source (forged, or a spoofed source address); challenged, never counted as failures.",
                &a.foreign_nonces,
            ),
            (
                "switchboard_auth_uri_mismatches_total",
                "Credentials whose digest uri was not the Request-URI (answered 403).",
                &a.uri_mismatches,
            ),
        ] {
            metric(&mut out, name, "counter", help, v.load(Ordering::Relaxed));
        }
        let now = Instant::now();
        let limiter = &self.auth.limiter;
        let (sources, usernames, trusted) = limiter.sizes();
        for (name, help, v) in [
            (
                "switchboard_auth_blocked_sources",
                "Sources (IPv4 addresses, IPv6 /64s) currently blocked after failed authentications.",
                limiter.blocked_count(now),
            ),
            (
                "switchboard_auth_blocked_usernames",
                "Usernames currently blocked for untrusted sources after failed authentications.",
                limiter.blocked_users_count(now),
            ),
            (
                "switchboard_auth_limiter_sources",
                "Sources the failed-authentication limiter tracks (bounded at 262144).",
                sources,
            ),
            (
                "switchboard_auth_limiter_usernames",
                "Usernames the failed-authentication limiter tracks (bounded at 262144).",
                usernames,
            ),
            (
                "switchboard_auth_trusted_users",
                "User–source pairs remembered as trusted after a success (bounded at 262144).",
                trusted,
            ),
        ] {
            metric(&mut out, name, "gauge", help, v);
        }
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
                    "Open SIP stream connections (TCP, TLS, WS and WSS).",
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
        flow_close::render_metrics(self, &mut out);
        self.metrics.render(&mut out);
        self.calls.render_metrics(&mut out);
        self.calls.media.render_metrics(&mut out);
        self.cluster.render_metrics(&mut out);
        let ev = self.events.stats();
        for (name, kind, help, v) in [
            (
                "switchboard_events_published_total",
                "counter",
                "Events published (acked by JetStream, or handed to local subscribers).",
                ev.published,
            ),
            (
                "switchboard_events_spooled_total",
                "counter",
                "Events written to the spool while NATS was unreachable.",
                ev.spooled,
            ),
            (
                "switchboard_events_spool",
                "gauge",
                "Events in the spool now.",
                ev.spool_len,
            ),
            (
                "switchboard_events_queue",
                "gauge",
                "Events waiting for the publisher.",
                ev.queue_len,
            ),
            (
                "switchboard_events_dropped_total",
                "counter",
                "Events dropped: the publisher's queue was full.",
                ev.dropped,
            ),
            (
                "switchboard_events_spool_dropped_total",
                "counter",
                "Events dropped: the spool was full (an alarm).",
                ev.spool_dropped,
            ),
        ] {
            metric(&mut out, name, kind, help, v);
        }
        out
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
            // a token file from before files were written 0600
            secrets::restrict(&path)
                .with_context(|| format!("DATA_DIR: cannot chmod 600 {}", path.display()))?;
            info!(path = %path.display(), "API token read from file");
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    secrets::write_private(&path, &token)
        .with_context(|| format!("DATA_DIR: cannot write {}", path.display()))?;
    info!(path = %path.display(), "API token generated (API_TOKEN unset)");
    Ok(token)
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
    /// Reads TLS_CERT and TLS_KEY again (SIGHUP); `Ok(false)` when TLS is
    /// not served.
    ///
    /// # Errors
    /// The new files do not load; the certificate in use stays.
    pub fn reload_tls(&self) -> anyhow::Result<bool> {
        match &self.tls {
            Some(cert) => cert.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Reads API_TLS_CERT and API_TLS_KEY again (SIGHUP); `Ok(false)` when
    /// the API speaks plain HTTP.
    ///
    /// # Errors
    /// The new files do not load; the certificate in use stays.
    pub fn reload_api_tls(&self) -> anyhow::Result<bool> {
        match &self.api_tls {
            Some(cert) => cert.reload().map(|()| true),
            None => Ok(false),
        }
    }

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
    secrets::create_private_dir(&config.data_dir)
        .with_context(|| format!("DATA_DIR: cannot create {}", config.data_dir.display()))?;
    let replica = cluster::start::replica_id(&config);
    let parts = cluster::start::open(&config, &replica).await?;
    let store = parts.store.clone();
    let shared_db = config.cluster.database_url.is_some();
    let token = api_token(&config)?;
    let shutdown = CancellationToken::new();
    let (tls_setup, tls_cert) = tls::setup(&config.tls)?;
    let api_tls = tls::api_setup(&config.api_tls)?;

    let directory = Arc::new(Directory::new(config.realm.clone()));
    match directory.load(&store).await {
        Ok((accounts, users)) => info!(accounts, users, "directory loaded"),
        // a shared database that does not answer yet: the sync task loads
        // the directory as soon as it does
        Err(e) if shared_db => warn!(cause = %e, "directory not loaded yet"),
        Err(e) => return Err(e.into()),
    }

    let (persist_tx, persist_rx) = mpsc::channel(location::PERSIST_QUEUE);
    let location = Arc::new(Location::new(config.max_contacts, Some(persist_tx)));
    // With Redis the bindings other replicas made are there, and this
    // node's own come back with its phones; restoring the shared table's
    // rows here would claim flows other replicas hold.
    if parts.shared.is_none()
        && let Err(e) = location::restore_from(
            &store,
            &location,
            Now::current().unix_ms,
            config.flows.unregister_on_close.kinds(),
        )
        .await
    {
        if !shared_db {
            return Err(e);
        }
        warn!(cause = %e, "registrations not restored");
    }

    let limiter = AuthLimiter::new(ratelimit::Limits {
        source_limit: config.auth_fail_limit,
        user_limit: config.auth_user_fail_limit,
        window: Duration::from_secs(config.auth_fail_window),
        block: Duration::from_secs(config.auth_block_seconds),
        trust: ratelimit::DEFAULT_TRUST,
    });
    // With CLUSTER_SECRET every replica mints and checks the same nonces,
    // so a challenge from one is answered to another.
    let cluster = Arc::new(cluster::Cluster::new(
        replica.clone(),
        parts.shared.clone(),
        config.cluster.derived_key("edge-flow"),
    ));
    let auth = Arc::new(Authenticator::new(
        config
            .cluster
            .derived_key("digest-nonce")
            .unwrap_or_else(rand::random),
        config.nonce_ttl,
        config.auth_algorithms.clone(),
        limiter,
        config.auth_block_action == "drop",
    ));
    let metrics = Arc::new(SipMetrics::default());
    let mut dialplan = load_dialplan(&config.dialplan_path)?;
    if shared_db {
        dialplan = cluster::dialplan_from_store(&store, dialplan).await;
    }
    let trunks = Arc::new(
        trunks::Trunks::load(&config.trunks_path, |id| {
            directory.account(id).map(|a| a.realm.clone())
        })
        .map_err(|e| anyhow::anyhow!("TRUNKS_PATH: {e}"))?,
    );
    info!(routes = dialplan.len(), path = %config.dialplan_path.display(), "dialplan loaded");
    let media = Arc::new(media::MediaPool::from_config(&config)?);
    // the Kubernetes client is made before anything listens: a pod without
    // a service account, or a bad KUBECONFIG, stops start-up
    let discovery = match media.discovery() {
        Some(settings) => Some(media::discovery::connect(settings).await?),
        None => None,
    };
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
        limits: calls::CallLimits {
            max_duration: Duration::from_secs(config.max_call_duration),
            session_expires: config.session_expires,
            min_se: config.min_se,
            max_calls: config.max_calls,
        },
        spool_dir: config.data_dir.clone(),
        cdr_stream: parts.cdrs.clone(),
        cluster: cluster.clone(),
        events: parts.events.clone(),
    });
    let node = Arc::new(Node {
        calls: calls.clone(),
        cluster: cluster.clone(),
        events: parts.events.clone(),
        config_changed: tokio::sync::Notify::new(),
        shutdown: shutdown.clone(),
        store: store.clone(),
        directory: directory.clone(),
        location: location.clone(),
        auth: auth.clone(),
        metrics: metrics.clone(),
        started: Instant::now(),
        endpoint: std::sync::OnceLock::new(),
        tls: tls_cert.clone(),
        api_tls: api_tls.as_ref().map(|(cert, _)| Arc::clone(cert)),
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
    tasks.push(cluster::calls::spawn(
        &calls,
        parts.shared.clone(),
        parts.events.clone(),
        replica.clone(),
        shutdown.clone(),
    ));
    if let Some(cdrs) = &parts.cdrs {
        // every replica takes part in storing the stream's CDRs; each is
        // stored once whichever replica fetches it
        tasks.push(switchboard_events::spawn_cdr_consumer(
            cdrs,
            store.clone(),
            "cdr-writer",
            shutdown.clone(),
        ));
    }
    if shared_db {
        if let Err(e) = cluster::trunks::seed(&node).await {
            warn!(cause = %e, "trunks not seeded into the database");
        }
        if let Err(e) = cluster::trunks::reload(&node).await {
            warn!(cause = %e, "trunks not loaded from the database yet");
        }
    }
    tasks.extend(cluster::sync::spawn(node.clone(), shutdown.clone()));
    let (lost_calls, moved_calls) = (Arc::downgrade(&calls), Arc::downgrade(&calls));
    let (events, watcher) = (parts.events.clone(), Arc::clone(&cluster));
    let hooks = Arc::new(media::PoolHooks {
        lost: Box::new(move |name| {
            if let Some(calls) = lost_calls.upgrade() {
                let n = calls.manager_lost(name);
                info!(
                    manager = name,
                    calls = n,
                    "calls on a lost RTP manager move or end"
                );
            }
        }),
        migrate: Box::new(move |name| {
            if let Some(calls) = moved_calls.upgrade() {
                let n = calls.migrate_from(name);
                info!(
                    manager = name,
                    calls = n,
                    "calls on a terminating RTP manager move"
                );
            }
        }),
        changed: Box::new(move |m, change| {
            // every replica checks the managers; one speaks for them all
            if watcher.speaks_for_all() {
                media::publish_change(&events, m, change);
            }
        }),
    });
    tasks.push(media.spawn_health_checks(shutdown.clone(), Arc::clone(&hooks)));
    if let Some(watch) = discovery {
        tasks.push(media::discovery::spawn(
            Arc::clone(&media),
            watch,
            shutdown.clone(),
            hooks,
        ));
    }

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
        cluster: cluster.clone(),
        events: parts.events.clone(),
        nonce_ttl: config.nonce_ttl,
    });
    let endpoint = Endpoint::with_limits(service, TimerConfig::default(), config.sip_limits());
    if let Some(key) = cluster.edge_key() {
        endpoint.set_edge(switchboard_sip_stack::edge::Edge::new(key.clone()));
    }
    calls.set_endpoint(&endpoint);
    for t in trunks.list() {
        calls.start_trunk_tasks(t, shutdown.clone(), false);
    }
    let mut transport = config.transport();
    transport.tls = Some(tls_setup);
    let (closes, closed) = flow_close::reports(config.flows.unregister_on_close).unzip();
    transport.closes = closes;
    tasks.extend(closed.map(|rx| flow_close::spawn(node.clone(), rx, shutdown.clone())));
    let transports = Transports::bind(transport, endpoint.clone(), shutdown.clone())
        .await
        .with_context(|| {
            format!(
                "PORT/BIND/TLS_PORT/WS_PORT/WSS_PORT: cannot bind SIP on port {} (TLS {}, WS {:?}, WSS {:?}) of {:?}",
                config.port, config.tls.tls_port, config.tls.ws_port, config.tls.wss_port, config.bind
            )
        })?;
    transports.set_tls_peers(Arc::new(tls::trunk_peers(trunks.clone())));
    // the edge's Record-Route for phones on TLS names our TLS port
    if let (Some(edge), Some(tls)) = (endpoint.edge(), transports.tls_addrs().first()) {
        edge.set_tls_port(tls.port());
    }
    // and for phones on WebSocket our WS/WSS port
    if let Some(edge) = endpoint.edge() {
        for (kind, addrs) in [
            (TransportKind::Ws, transports.ws_addrs()),
            (TransportKind::Wss, transports.wss_addrs()),
        ] {
            if let Some(a) = addrs.first() {
                edge.set_ws_port(kind, a.port());
            }
        }
    }
    if let Some(every) = config.tls.reload_interval() {
        for cert in tls_cert.into_iter().chain(node.api_tls.clone()) {
            tasks.push(tls::spawn_watcher(cert, every, shutdown.clone()));
        }
    }
    endpoint.wire.set(transports.clone());
    let _ = node.endpoint.set(endpoint);
    let sip_addrs = transports.local_addrs();
    let tls_addrs = transports.tls_addrs().to_vec();
    let ws_addrs = transports.ws_addrs().to_vec();
    let wss_addrs = transports.wss_addrs().to_vec();
    if let Some(addr) = config
        .cluster
        .cluster_addr
        .or_else(|| sip_addrs.iter().find(|a| !a.ip().is_unspecified()).copied())
    {
        cluster.set_addr(addr);
    }

    let ports = api_server::bind(&config, api_tls.map(|(_, server)| server)).await?;
    let (api_addr, metrics_addr) = (ports.api_addr, ports.metrics_addr);
    tasks.extend(cluster::tasks::spawn(
        node.clone(),
        api_addr,
        shutdown.clone(),
    ));
    tasks.extend(ports.serve(node.clone(), token.clone(), shutdown.clone())?);

    Ok(Running {
        node,
        sip_addrs,
        tls_addrs,
        ws_addrs,
        wss_addrs,
        api_addr,
        metrics_addr,
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
                // with Redis the replica that claims the shared binding's
                // expiry says so, once for the whole platform
                if node.cluster.shared.is_none() {
                    node.events.publish(switchboard_events::Event::registration(
                        switchboard_events::RegistrationVerb::Expired,
                        switchboard_events::RegistrationEvent {
                            aor,
                            contact,
                            expires: 0,
                            ..Default::default()
                        },
                    ));
                }
            }
            node.auth.limiter.sweep(Instant::now());
        }
    })
}
