//! The RTP managers a call's media is anchored on.
//!
//! Without `RTPMANAGER_ADDRS` or `RTPMANAGER_SERVICE` the pool holds one
//! member, the engine of `switchboard-rtpmanager` running inside this
//! process, reached through the same gRPC service implementation (no socket
//! in between). With `RTPMANAGER_ADDRS`, every member is a gRPC client of a
//! fixed list; with `RTPMANAGER_SERVICE` the members come and go with a
//! Kubernetes Service's endpoints ([`discovery`]). All are driven through
//! [`Manager`], so the call code has one path.
//!
//! New calls go round-robin to members that are healthy, not draining and
//! (discovered ones) ready; both legs of a call stay on the member that
//! took the first one. Calls hold their member's `Arc<Manager>` (and its
//! name), so a member that leaves the pool stays reachable for the calls
//! still on it. A member is checked every [`HEALTH_EVERY`]; one that fails
//! a check or a call is skipped for new calls until a check succeeds
//! again, and one that fails [`LOST_AFTER`] checks in a row is lost: the
//! calls on it move to another member or end (with a CDR saying so).
//!
//! Remote members are reached with `RTPMANAGER_TOKEN` on every call and,
//! with `RTPMANAGER_TLS_CA`, over TLS (a client certificate too with
//! `RTPMANAGER_TLS_CERT`/`RTPMANAGER_TLS_KEY`). When parts fail, nothing
//! leaks: a destroy that fails is retried in the background
//! ([`Manager::destroy`]), and a session's event stream is resumed after
//! an error ([`watch_session_events`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use switchboard_rtpmanager::{Engine, EngineConfig, RtpAddress, Service};
use switchboard_rtpmanager_api::RtpManagerClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{info, warn};

use crate::Config;
use manager::Client;
pub use manager::{
    BoxStream, DESTROY_RETRY_FOR, EndpointState, LOST_AFTER, MAX_DESTROY_RETRIES, Manager,
    MediaCounters, parse_member,
};
pub use recovery::{WATCH_BACKOFF_MAX, WATCH_BACKOFF_MIN, watch_session_events};

pub mod discovery;
mod manager;
mod metrics;
mod recovery;

/// How often members are health-checked.
pub const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// Members health-checked at once (a pool of unreachable members must not
/// make one round take a connect timeout per member).
const HEALTH_CONCURRENCY: usize = 32;

/// What happened to an RTP manager, as the health checks and discovery
/// saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerChange {
    /// Reachable (its first passed check, or back after failing), or
    /// taking new calls again after it drained or its endpoint was not
    /// ready.
    Up,
    /// It failed a check, or left the discovered pool.
    Down,
    /// It takes no new calls: draining, or its endpoint is not ready or
    /// terminating.
    Draining,
}

/// A member as the events last told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Told {
    healthy: bool,
    /// Not draining and (discovered members) ready.
    open: bool,
}

/// The events that tell a member's move from `before` (`None`: nothing
/// told yet) to `now`.
fn changes(before: Option<Told>, now: Told) -> Vec<ManagerChange> {
    let mut out = Vec::new();
    if before.map(|b| b.healthy) != Some(now.healthy) && (now.healthy || before.is_some()) {
        out.push(if now.healthy {
            ManagerChange::Up
        } else {
            ManagerChange::Down
        });
    }
    match before {
        None | Some(Told { open: true, .. }) if !now.open => out.push(ManagerChange::Draining),
        Some(Told { open: false, .. })
            if now.open && now.healthy && !out.contains(&ManagerChange::Up) =>
        {
            out.push(ManagerChange::Up);
        }
        _ => {}
    }
    out
}

/// Hears a member's [`ManagerChange`].
pub type ChangeHook = Box<dyn Fn(&Manager, ManagerChange) + Send + Sync>;

/// What the pool asks of the rest of signaling.
pub struct PoolHooks {
    /// A member is lost (it failed [`LOST_AFTER`] checks in a row, or left
    /// the discovered pool): the calls on it move or end.
    pub lost: Box<dyn Fn(&str) + Send + Sync>,
    /// A terminating member's Service asks for its calls to move.
    pub migrate: Box<dyn Fn(&str) + Send + Sync>,
    /// A change to publish ([`publish_change`]).
    pub changed: ChangeHook,
}

/// How remote members are reached: `RTPMANAGER_TOKEN` and the
/// `RTPMANAGER_TLS_*` files, the same for a configured member and a
/// discovered one.
#[derive(Clone)]
struct Remote {
    tls: Option<ClientTlsConfig>,
    auth: Option<MetadataValue<Ascii>>,
}

impl Remote {
    fn from_config(config: &Config) -> anyhow::Result<Remote> {
        let tls = client_tls(config)?;
        let auth = match &config.rtpmanager_token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow::anyhow!("RTPMANAGER_TOKEN: not a valid header value"))?,
            ),
            None => None,
        };
        Ok(Remote { tls, auth })
    }

    /// A gRPC client of the manager at `addr` (`host:port`); it connects
    /// on its first call.
    fn member(
        &self,
        name: String,
        addr: String,
        discovered: bool,
        counters: &Arc<MediaCounters>,
    ) -> anyhow::Result<Manager> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        // every call's requests and event streams share this one HTTP/2
        // connection: windows large enough that h2's budget for small DATA
        // frames never cuts it under load (the manager's server sets the
        // same, see switchboard_rtpmanager::serve_secured)
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .initial_connection_window_size(16 << 20)
            .initial_stream_window_size(1 << 20)
            // a request that timed out resets its stream; the manager's late
            // answer on it must be ignored, not taken for a protocol error:
            // h2 remembers only 50 reset streams, for 1 s, by default, and 1,024
            // answers on forgotten ones made it close the connection
            // (GOAWAY ENHANCE_YOUR_CALM) under overload, which ended every
            // call on the manager as "lost" (seen in `make soak`). The
            // manager is our own, authenticated peer: remember many, and do
            // not cut the connection over them
            .http2_max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
            .http2_max_local_error_reset_streams(None);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| anyhow::anyhow!("RTPMANAGER_TLS_*: {e}"))?;
        }
        Ok(Manager::new(
            name,
            addr,
            Client::Remote(RtpManagerClient::new(endpoint.connect_lazy())),
            self.auth.clone(),
            discovered,
            counters,
        ))
    }
}

/// Reset streams (requests given up on) a manager's connection remembers,
/// so that their late answers are dropped quietly; each costs a few hundred
/// bytes for h2's reset-stream duration (1 s).
const RESET_STREAMS_REMEMBERED: usize = 16_384;

/// The RTP managers of this node.
///
/// The member list is a snapshot replaced whole when discovery changes it
/// (readers clone the `Arc` and never wait on the writer for long).
pub struct MediaPool {
    members: RwLock<Arc<[Arc<Manager>]>>,
    next: AtomicUsize,
    counters: Arc<MediaCounters>,
    /// How remote members are reached (`None` with the embedded engine).
    remote: Option<Remote>,
    /// `RTPMANAGER_SERVICE`: the members are discovered.
    discovery: Option<discovery::Settings>,
    /// Discovery's own figures, for /metrics.
    discovery_stats: discovery::Stats,
    /// Each member as the events last told it, by name.
    told: Mutex<HashMap<String, Told>>,
}

/// The client side of the managers' TLS, from the RTPMANAGER_TLS_* files.
fn client_tls(config: &Config) -> anyhow::Result<Option<ClientTlsConfig>> {
    let read = |var: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("{var}: {}: {e}", p.display()))
    };
    let Some(ca) = &config.rtpmanager_tls_ca else {
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("RTPMANAGER_TLS_CA", ca)?));
    if let (Some(cert), Some(key)) = (&config.rtpmanager_tls_cert, &config.rtpmanager_tls_key) {
        tls = tls.identity(Identity::from_pem(
            read("RTPMANAGER_TLS_CERT", cert)?,
            read("RTPMANAGER_TLS_KEY", key)?,
        ));
    }
    Ok(Some(tls))
}

impl MediaPool {
    fn with_members(
        members: Vec<Arc<Manager>>,
        counters: Arc<MediaCounters>,
        remote: Option<Remote>,
        discovery: Option<discovery::Settings>,
    ) -> MediaPool {
        MediaPool {
            members: RwLock::new(members.into()),
            next: AtomicUsize::new(0),
            counters,
            remote,
            discovery,
            discovery_stats: discovery::Stats::default(),
            told: Mutex::new(HashMap::new()),
        }
    }

    /// The pool `config` asks for: remote members (a fixed list, or
    /// discovered: empty until discovery runs), or the embedded engine.
    pub fn from_config(config: &Config) -> anyhow::Result<MediaPool> {
        let discovery = discovery::Settings::from_config(config)?;
        if config.rtpmanager_addrs.is_empty() && discovery.is_none() {
            return Ok(MediaPool::embedded(embedded_engine(config)?));
        }
        let remote = Remote::from_config(config)?;
        let counters = Arc::new(MediaCounters::default());
        let mut members = Vec::new();
        if let Some(d) = &discovery {
            info!(
                namespace = ?d.namespace,
                service = %d.service,
                ports = ?d.ports,
                token = remote.auth.is_some(),
                tls = remote.tls.is_some(),
                "media anchored by the RTP managers of a Kubernetes Service"
            );
        } else {
            info!(
                managers = ?config.rtpmanager_addrs,
                token = remote.auth.is_some(),
                tls = remote.tls.is_some(),
                "media anchored by external RTP managers"
            );
            for m in &config.rtpmanager_addrs {
                let (name, addr) = parse_member(m).map_err(anyhow::Error::msg)?;
                members.push(Arc::new(remote.member(name, addr, false, &counters)?));
            }
        }
        Ok(MediaPool::with_members(
            members,
            counters,
            Some(remote),
            discovery,
        ))
    }

    pub fn embedded(engine: Engine) -> MediaPool {
        let counters = Arc::new(MediaCounters::default());
        let member = Manager::new(
            "embedded".into(),
            "in-process".into(),
            Client::Local(Service::new(engine)),
            None,
            false,
            &counters,
        );
        MediaPool::with_members(vec![Arc::new(member)], counters, None, None)
    }

    pub fn counters(&self) -> &MediaCounters {
        &self.counters
    }

    /// The members now (a snapshot: discovery may change the pool after).
    pub fn members(&self) -> Arc<[Arc<Manager>]> {
        Arc::clone(&self.members.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Manager>> {
        self.members().iter().find(|m| m.name == name).cloned()
    }

    /// Whether calls have their media anchored: a discovered pool does
    /// even while it is empty (calls then get 503 rather than going
    /// unanchored).
    pub fn anchors(&self) -> bool {
        self.discovery.is_some() || !self.members().is_empty()
    }

    /// `RTPMANAGER_SERVICE`, when the members are discovered.
    pub fn discovery(&self) -> Option<&discovery::Settings> {
        self.discovery.as_ref()
    }

    /// Members to try for a new call, best first: round-robin over the
    /// healthy, non-draining, ready ones.
    pub fn candidates(&self) -> Vec<Arc<Manager>> {
        let members = self.members();
        let n = members.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &members[(start + i) % n])
            .filter(|m| m.takes_new_calls())
            .cloned()
            .collect()
    }

    /// Publishes what changed for `m` since it was last told. `first`:
    /// also when nothing was told of it yet (the health checks say first,
    /// so a new member is not announced up before a check). Members no
    /// longer in the pool are not told (discovery said they went).
    fn tell(&self, m: &Arc<Manager>, hooks: &PoolHooks, first: bool) {
        if !self.members().iter().any(|x| Arc::ptr_eq(x, m)) {
            return;
        }
        let now = m.told();
        let news = {
            let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
            let before = told.get(&m.name).copied();
            if before.is_none() && !first {
                return;
            }
            told.insert(m.name.clone(), now);
            changes(before, now)
        };
        for c in news {
            (hooks.changed)(m, c);
        }
    }

    /// Health checks every [`HEALTH_EVERY`] until `stop` (the members of
    /// the moment, [`HEALTH_CONCURRENCY`] at once); `hooks.lost` hears the
    /// name of each member that just became lost, `hooks.changed` each
    /// member that came up (its first passed check, or back after failing
    /// or draining), went down (a failed check) or stopped taking calls.
    pub fn spawn_health_checks(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
        hooks: Arc<PoolHooks>,
    ) -> tokio::task::JoinHandle<()> {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let remote: Vec<Arc<Manager>> = pool
                    .members()
                    .iter()
                    .filter(|m| !m.is_local())
                    .cloned()
                    .collect();
                let mut checks = futures_util::stream::iter(remote)
                    .map(|m| async move {
                        let lost = m.check().await;
                        (m, lost)
                    })
                    .buffer_unordered(HEALTH_CONCURRENCY);
                while let Some((m, lost)) = checks.next().await {
                    if lost {
                        (hooks.lost)(&m.name);
                    }
                    pool.tell(&m, &hooks, true);
                }
            }
        })
    }
}

/// The in-process engine: RTP on the SIP bind addresses.
fn embedded_engine(config: &Config) -> anyhow::Result<Engine> {
    let mut bind: Vec<IpAddr> = Vec::new();
    for b in &config.bind {
        if !bind.iter().any(|x| x.is_ipv6() == b.is_ipv6()) {
            bind.push(*b);
        }
    }
    let addresses: Vec<RtpAddress> =
        match switchboard_rtpmanager::config::rtp_addresses(&bind, &config.rtp_advertise_addr) {
            Ok(a) => a,
            // a wildcard BIND on a host without a route: loopback still
            // works for phones on this host, so start and say so
            Err(e) if config.rtp_advertise_addr.is_empty() => {
                warn!("{e}; advertising loopback in SDP until RTP_ADVERTISE_ADDR is set");
                let loopback: Vec<IpAddr> = bind
                    .iter()
                    .map(|b| {
                        if b.is_ipv6() {
                            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                        } else {
                            IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
                        }
                    })
                    .collect();
                switchboard_rtpmanager::config::rtp_addresses(&bind, &loopback)
                    .map_err(anyhow::Error::msg)?
            }
            Err(e) => return Err(anyhow::Error::msg(e)),
        };
    info!(
        advertise = ?addresses.iter().map(|a| a.advertise).collect::<Vec<_>>(),
        ports = %format!("{}-{}", config.rtp_port_min, config.rtp_port_max),
        "media anchored by the embedded RTP engine"
    );
    let engine = Engine::new(EngineConfig {
        addresses,
        port_min: config.rtp_port_min,
        port_max: config.rtp_port_max,
        audio_path: config.audio_path.clone(),
        record_path: config
            .record_path
            .clone()
            .unwrap_or_else(|| config.data_dir.join("recordings")),
        rtp_timeout: Duration::from_secs(config.rtp_timeout),
        rtp_hold_timeout: Duration::from_secs(config.rtp_hold_timeout),
        rtcp_interval: switchboard_rtpmanager::engine::RTCP_INTERVAL,
        source_policy: config.rtp_learn_from,
    })?;
    Ok(engine)
}

/// `switchboard.rtpmanagers.{name}.{up,down,draining}`.
pub fn publish_change(events: &switchboard_events::EventBus, m: &Manager, change: ManagerChange) {
    use switchboard_events::{Event, RtpManagerEvent, RtpManagerVerb};
    let verb = match change {
        ManagerChange::Up => RtpManagerVerb::Up,
        ManagerChange::Down => RtpManagerVerb::Down,
        ManagerChange::Draining => RtpManagerVerb::Draining,
    };
    events.publish(Event::rtpmanager(
        verb,
        RtpManagerEvent {
            name: m.name.clone(),
            address: m.addr.clone(),
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_events_tell() {
        use ManagerChange::{Down, Draining, Up};
        let t = |healthy, open| Told { healthy, open };
        for (before, now, want) in [
            // first word: up once checked; draining when it takes no calls
            (None, t(true, true), vec![Up]),
            (None, t(false, true), vec![]),
            (None, t(true, false), vec![Up, Draining]),
            (None, t(false, false), vec![Draining]),
            (Some(t(true, true)), t(true, true), vec![]),
            (Some(t(true, true)), t(false, true), vec![Down]),
            (Some(t(false, true)), t(true, true), vec![Up]),
            // drained, not ready or terminating: draining; back: up
            (Some(t(true, true)), t(true, false), vec![Draining]),
            (Some(t(true, false)), t(true, true), vec![Up]),
            (Some(t(true, false)), t(true, false), vec![]),
            (Some(t(true, true)), t(false, false), vec![Down, Draining]),
            (Some(t(false, false)), t(true, true), vec![Up]),
            // open again but unreachable: nothing until a check passes
            (Some(t(false, false)), t(false, true), vec![]),
        ] {
            assert_eq!(changes(before, now), want, "{before:?} -> {now:?}");
        }
    }
}
