//! RTP managers found on Kubernetes: `RTPMANAGER_SERVICE=<namespace>/<service>`
//! (or `<service>` in signaling's own namespace).
//!
//! Signaling lists the Service's EndpointSlices (`discovery.k8s.io/v1`,
//! label selector `kubernetes.io/service-name=<service>`, in that one
//! namespace), then watches them from the list's `resourceVersion`. A
//! watch that ends (the server's timeout, a closed connection, silence
//! longer than the timeout) is resumed where it ended (the last event's or
//! bookmark's version). A watch answered `410 Gone` makes it list again;
//! any other failure lists again after a back-off ([`BACKOFF_MIN`]
//! doubling up to [`BACKOFF_MAX`], reset by the next event). A watch that
//! ended without an event, and a 410 on a version just listed, wait that
//! back-off too, so a failing API server is not asked in a tight loop.
//! Every restart counts in
//! `switchboard_rtpmanager_discovery_watch_restarts_total`.
//!
//! The only API calls are `list` and `watch` on `endpointslices` (group
//! `discovery.k8s.io`) in that namespace: a Role with those two verbs is
//! all signaling needs. The client is configured from `KUBECONFIG` (one
//! file, its current context) when set, else from the pod's service account
//! (`KUBERNETES_SERVICE_HOST`/`_PORT` and the token and CA files).
//!
//! What the endpoints make of the pool ([`desired`], a pure function of the
//! slices):
//! - every endpoint is one member, named after its pod (`targetRef.name`,
//!   else `hostname`), reached at its first address (dual-stack: a Service
//!   has one slice per address family, and an endpoint may list several
//!   addresses; the first address of its first listing in the order IPv4,
//!   IPv6, FQDN slices, then slice name, is used, so the address does not
//!   flip between families);
//! - its gRPC port ([`PortMode`]): with `RTPMANAGER_PORTS=ordinal` (the
//!   default, for managers on `hostNetwork`, where every pod of the
//!   StatefulSet serves on 9090 + its ordinal on its node's address) the
//!   slice's port plus the ordinal of the pod (the `-N` at the end of its
//!   name; an endpoint without one is left out with a warning); with
//!   `slice` (managers on the pod network, one address each) the slice's
//!   port as it is. The slice's port is the one named `grpc`, else its only
//!   one; a slice with none (a headless Service without ports) or with
//!   several and none named `grpc` gives `RTPMANAGER_GRPC_PORT`;
//! - `conditions.ready` (absent counts as true) makes a member that takes
//!   new calls; not ready, or `conditions.terminating`, a member that keeps
//!   its calls and its health checks but takes no new calls. (The Service
//!   must not set `publishNotReadyAddresses`, which makes every endpoint
//!   look ready.) A pod listed in several slices has the most available of
//!   its states: the stale listing of a pod the controller is moving
//!   between slices does not stop it;
//! - an endpoint no slice lists any longer leaves the pool, and is treated
//!   as a manager that stopped answering: its pod was deleted or is no
//!   longer selected, so the calls still on it move to another member
//!   (bridged calls, by re-INVITE) or end with a CDR saying "RTP Manager
//!   Lost". A member whose address changes is the same: the old one is
//!   lost, a new one joins.
//!
//! The pool holds at most [`MAX_MEMBERS`]: endpoints beyond it are left
//! out (a warning, and `switchboard_rtpmanager_discovery_endpoints_skipped`
//! with `reason="over_cap"`), members already in the pool first, then by
//! ordinal and name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{EndpointState, Manager, MediaPool, PoolHooks};
use crate::Config;

/// Most members a discovered pool holds.
pub const MAX_MEMBERS: usize = 256;

/// The Service label that makes the calls of a terminating manager move.
///
/// A manager whose endpoint turns terminating takes no new calls and,
/// by default, its calls finish where they are (for as long as the
/// manager keeps serving: its pod's termination grace period). With
/// `switchboard.dev/terminating-calls: move` on the Service, signaling
/// moves its bridged calls to other managers (by re-INVITE on both legs,
/// as an aggressive drain through the API does) the moment the endpoint
/// turns terminating, or the moment the label appears on a manager
/// already terminating. It is read from the EndpointSlices' labels: the
/// EndpointSlice controller copies a Service's labels onto its slices
/// (annotations are not copied), so signaling needs no access to
/// Services. Calls that are not bridged (a prompt, an IVR, a call still
/// ringing) and a call that cannot move at that moment (an offer in
/// flight, no other manager) stay where they are; the move is not asked
/// again for the same termination.
pub const MOVE_LABEL: &str = "switchboard.dev/terminating-calls";
/// The value of [`MOVE_LABEL`] that moves calls.
pub const MOVE_VALUE: &str = "move";
/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// First wait before listing again after a failure; doubled each time.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the API server keeps one watch open (`timeoutSeconds`).
const WATCH_SECONDS: u32 = 290;
/// A watch silent for longer is taken as a dead connection (the server
/// ends it at [`WATCH_SECONDS`] and sends bookmarks meanwhile).
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 30);
/// A list, or the answer to a watch request (its headers), that takes
/// longer has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a discovered manager's gRPC port is found (`RTPMANAGER_PORTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PortMode {
    /// The slice's port plus the pod's ordinal (managers on hostNetwork).
    Ordinal,
    /// The slice's port as it is (managers on the pod network).
    Slice,
}

/// Where the ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub mode: PortMode,
    /// `RTPMANAGER_GRPC_PORT`: for slices that list no usable port.
    pub default: u16,
}

/// `RTPMANAGER_SERVICE` and the settings that go with it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: the client's own namespace (in a pod: the service
    /// account's; with KUBECONFIG: the context's).
    pub namespace: Option<String>,
    pub service: String,
    pub ports: Ports,
    pub kubeconfig: Option<PathBuf>,
}

/// A DNS label as Kubernetes names namespaces and Services with.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `namespace/service` or `service`.
pub fn parse_service(s: &str) -> Result<(Option<String>, String), String> {
    let (ns, svc) = match s.trim().split_once('/') {
        Some((ns, svc)) => (Some(ns), svc),
        None => (None, s.trim()),
    };
    if let Some(ns) = ns
        && !dns_label(ns)
    {
        return Err(format!("{s:?}: {ns:?} is not a namespace name"));
    }
    if !dns_label(svc) {
        return Err(format!(
            "{s:?}: expected <namespace>/<service> (lowercase letters, digits, '-')"
        ));
    }
    Ok((ns.map(str::to_owned), svc.to_owned()))
}

impl Settings {
    /// `None` without RTPMANAGER_SERVICE.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Settings>> {
        let Some(s) = &config.rtpmanager_service else {
            return Ok(None);
        };
        let (namespace, service) =
            parse_service(s).map_err(|e| anyhow::anyhow!("RTPMANAGER_SERVICE: {e}"))?;
        Ok(Some(Settings {
            namespace,
            service,
            ports: Ports {
                mode: config.rtpmanager_ports,
                default: config.rtpmanager_grpc_port,
            },
            kubeconfig: config.kubeconfig.clone(),
        }))
    }
}

/// Why an endpoint is not a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// `RTPMANAGER_PORTS=ordinal` and its pod name ends in no `-N`.
    NoOrdinal,
    /// It lists no address.
    NoAddress,
    /// Its port would be above 65535.
    BadPort,
    /// The pool is full ([`MAX_MEMBERS`]).
    OverCap,
}

impl Skip {
    pub const ALL: [Skip; 4] = [
        Skip::NoOrdinal,
        Skip::NoAddress,
        Skip::BadPort,
        Skip::OverCap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoOrdinal => "no_ordinal",
            Skip::NoAddress => "no_address",
            Skip::BadPort => "bad_port",
            Skip::OverCap => "over_cap",
        }
    }
}

/// One member as the endpoints describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `host:port` (`[v6]:port`).
    pub addr: String,
    pub state: EndpointState,
    /// A slice listing it carries [`MOVE_LABEL`]` = move`.
    pub move_calls: bool,
    /// Its pod's ordinal, if its name ends in one.
    pub ordinal: Option<u32>,
}

/// The members the slices ask for, by name, and the endpoints left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub members: BTreeMap<String, Wanted>,
    /// (pod name or address, why), in the order met.
    pub skipped: Vec<(String, Skip)>,
}

/// The `N` of a name ending in `-N`.
fn ordinal(name: &str) -> Option<u32> {
    let (_, n) = name.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The slice's gRPC port: the one named `grpc`, else its only one.
fn slice_port(slice: &EndpointSlice) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let valid = |p: &k8s_openapi::api::discovery::v1::EndpointPort| {
        p.port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
    };
    if let Some(p) = ports.iter().find(|p| p.name.as_deref() == Some("grpc")) {
        return valid(p);
    }
    match ports {
        [only] => valid(only),
        _ => None,
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

fn state_of(e: &SliceEndpoint) -> EndpointState {
    let c = e.conditions.as_ref();
    if c.and_then(|c| c.terminating).unwrap_or(false) {
        EndpointState::Terminating
    } else if c.and_then(|c| c.ready).unwrap_or(true) {
        EndpointState::Ready
    } else {
        EndpointState::NotReady
    }
}

/// IPv4 slices first, then IPv6, then the rest.
fn family_rank(address_type: &str) -> u8 {
    match address_type {
        "IPv4" => 0,
        "IPv6" => 1,
        _ => 2,
    }
}

/// The members `slices` ask for (see the module's documentation).
pub fn desired<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>, ports: Ports) -> Desired {
    let mut slices: Vec<&EndpointSlice> = slices.into_iter().collect();
    slices.sort_by(|a, b| {
        (family_rank(&a.address_type), &a.metadata.name)
            .cmp(&(family_rank(&b.address_type), &b.metadata.name))
    });
    let mut out = Desired::default();
    for slice in slices {
        let base = slice_port(slice).unwrap_or(ports.default);
        let move_calls = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MOVE_LABEL))
            .is_some_and(|v| v == MOVE_VALUE);
        for e in &slice.endpoints {
            let pod = e
                .target_ref
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .or(e.hostname.as_deref())
                .filter(|n| !n.is_empty());
            let Some(address) = e.addresses.first() else {
                out.skipped
                    .push((pod.unwrap_or("?").to_owned(), Skip::NoAddress));
                continue;
            };
            let n = pod.and_then(ordinal);
            let port = match ports.mode {
                PortMode::Slice => base,
                PortMode::Ordinal => {
                    let Some(n) = n else {
                        out.skipped
                            .push((pod.unwrap_or(address).to_owned(), Skip::NoOrdinal));
                        continue;
                    };
                    match u16::try_from(u32::from(base) + n) {
                        Ok(p) => p,
                        Err(_) => {
                            out.skipped
                                .push((pod.unwrap_or(address).to_owned(), Skip::BadPort));
                            continue;
                        }
                    }
                }
            };
            let addr = join_host_port(address, port);
            let name = pod.map_or_else(|| addr.clone(), str::to_owned);
            let state = state_of(e);
            out.members
                .entry(name)
                .and_modify(|w| {
                    w.state = w.state.min(state);
                    w.move_calls |= move_calls;
                })
                .or_insert(Wanted {
                    addr,
                    state,
                    move_calls,
                    ordinal: n,
                });
        }
    }
    out
}

/// How the pool goes from its members to the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Members that stay at the same address (their state is updated).
    pub keep: Vec<String>,
    /// Members whose address changed: the old one is lost, a new one joins.
    pub replace: Vec<String>,
    /// New members.
    pub add: Vec<String>,
    /// Members no slice lists any longer.
    pub remove: Vec<String>,
    /// Wanted but left out: the pool is full.
    pub over_cap: Vec<String>,
}

/// The changes from `current` (name, address) to `desired`, at most `cap`
/// members: those already in the pool first, then the new ones by ordinal
/// and name.
pub fn plan(current: &[(&str, &str)], desired: &Desired, cap: usize) -> Plan {
    let mut p = Plan::default();
    for (name, addr) in current {
        match desired.members.get(*name) {
            Some(w) if w.addr == *addr => p.keep.push((*name).to_owned()),
            Some(_) => p.replace.push((*name).to_owned()),
            None => p.remove.push((*name).to_owned()),
        }
    }
    let present: BTreeSet<&str> = current.iter().map(|(n, _)| *n).collect();
    let mut new: Vec<(&String, &Wanted)> = desired
        .members
        .iter()
        .filter(|(n, _)| !present.contains(n.as_str()))
        .collect();
    new.sort_by_key(|(n, w)| (w.ordinal.unwrap_or(u32::MAX), *n));
    let mut room = cap.saturating_sub(p.keep.len() + p.replace.len());
    for (name, _) in new {
        if room == 0 {
            p.over_cap.push(name.clone());
        } else {
            room -= 1;
            p.add.push(name.clone());
        }
    }
    p
}

/// Discovery's figures, for /metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lists and watches started again after the first list.
    pub watch_restarts: AtomicU64,
    /// Endpoints left out now, by [`Skip`] (indexed `skip as usize`, the
    /// order of `Skip::ALL`).
    pub skipped: [AtomicU64; 4],
}

impl MediaPool {
    /// Discovery's figures.
    pub fn discovery_stats(&self) -> &Stats {
        &self.discovery_stats
    }

    /// Makes the pool what `desired` asks for: members join (built as
    /// configured ones are), leave (lost: their calls move or end) and
    /// change state; the changes are published, and the calls of a member
    /// that turns terminating move when its Service asks for it.
    pub fn apply_discovered(&self, desired: &Desired, hooks: &PoolHooks) {
        let Some(remote) = &self.remote else {
            return;
        };
        let members = self.members();
        let current: Vec<(&str, &str)> = members
            .iter()
            .map(|m| (m.name.as_str(), m.addr.as_str()))
            .collect();
        let plan = plan(&current, desired, MAX_MEMBERS);
        let mut next: Vec<Arc<Manager>> = Vec::with_capacity(plan.keep.len() + plan.add.len());
        let mut kept: Vec<(Arc<Manager>, EndpointState)> = Vec::new();
        let mut gone: Vec<Arc<Manager>> = Vec::new();
        for m in members.iter() {
            if plan.keep.contains(&m.name) {
                kept.push((Arc::clone(m), m.endpoint_state()));
                next.push(Arc::clone(m));
            } else {
                gone.push(Arc::clone(m));
            }
        }
        for name in plan.replace.iter().chain(&plan.add) {
            let Some(w) = desired.members.get(name) else {
                continue;
            };
            match remote.member(name.clone(), w.addr.clone(), true, &self.counters) {
                Ok(m) => {
                    info!(manager = %name, address = %w.addr, state = w.state.as_str(), "RTP manager joins the pool");
                    m.moving.store(
                        w.state == EndpointState::Terminating && w.move_calls,
                        Ordering::Relaxed,
                    );
                    next.push(Arc::new(m));
                }
                Err(e) => {
                    warn!(manager = %name, address = %w.addr, cause = %e, "RTP manager left out")
                }
            }
        }
        // the states are set before the new list is seen, so that no new
        // call goes to a member that is not ready
        for m in &next {
            if let Some(w) = desired.members.get(&m.name) {
                m.endpoint.store(w.state.as_u8(), Ordering::Relaxed);
            }
        }
        next.sort_by(|a, b| {
            let key = |m: &Manager| {
                let ordinal = desired.members.get(&m.name).and_then(|w| w.ordinal);
                (ordinal.unwrap_or(u32::MAX), m.name.clone())
            };
            key(a).cmp(&key(b))
        });
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = next.into();

        for m in gone {
            info!(manager = %m.name, address = %m.addr, "RTP manager leaves the pool; its calls move or end");
            let was_told = self
                .told
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&m.name)
                .is_some();
            if was_told {
                (hooks.changed)(&m, super::ManagerChange::Down);
            }
            (hooks.lost)(&m.name);
        }
        for (m, before) in kept {
            let Some(w) = desired.members.get(&m.name) else {
                continue;
            };
            if before != w.state {
                info!(manager = %m.name, from = before.as_str(), to = w.state.as_str(), "RTP manager endpoint changed");
            }
            self.tell(&m, hooks, false);
            let moving = w.state == EndpointState::Terminating && w.move_calls;
            if moving && !m.moving.swap(true, Ordering::Relaxed) {
                info!(manager = %m.name, "RTP manager terminating; its Service asks for its calls to move");
                (hooks.migrate)(&m.name);
            } else if !moving {
                m.moving.store(false, Ordering::Relaxed);
            }
        }

        let mut skipped = [0u64; 4];
        for (_, why) in &desired.skipped {
            skipped[*why as usize] += 1;
        }
        skipped[Skip::OverCap as usize] = plan.over_cap.len() as u64;
        for (slot, n) in self.discovery_stats.skipped.iter().zip(skipped) {
            slot.store(n, Ordering::Relaxed);
        }
    }
}

/// The Service's EndpointSlices, through the Kubernetes API.
pub struct Watch {
    api: Api<EndpointSlice>,
    selector: String,
    namespace: String,
    service: String,
    ports: Ports,
}

/// A client for `settings`: KUBECONFIG's current context, else the pod's
/// service account.
///
/// # Errors
/// A message naming the setting at fault (no service account outside a
/// pod, an unreadable kubeconfig).
pub async fn connect(settings: &Settings) -> anyhow::Result<Watch> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("KUBECONFIG: {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("KUBECONFIG: {}: {e}", path.display()))?
        }
        None => kube::Config::incluster().map_err(|e| {
            anyhow::anyhow!(
                "RTPMANAGER_SERVICE: no in-cluster Kubernetes configuration ({e}); \
                 outside a pod set KUBECONFIG"
            )
        })?,
    };
    let namespace = settings
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("RTPMANAGER_SERVICE: Kubernetes client: {e}"))?;
    Ok(Watch {
        api: Api::namespaced(client, &namespace),
        selector: format!("{SERVICE_NAME_LABEL}={}", settings.service),
        namespace,
        service: settings.service.clone(),
        ports: settings.ports,
    })
}

/// Waits between attempts after failures.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    /// Waits, then doubles the next wait; false when `stop` came first.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let d = self.0;
        self.0 = self.0.saturating_mul(2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = stop.cancelled() => false,
        }
    }
}

/// How one watch ended.
enum End {
    /// The server closed it (its timeout), or it went silent: resume.
    Closed { any: bool },
    /// 410 Gone: the version is too old; list again.
    Gone { any: bool },
    /// Anything else: list again after a back-off.
    Failed(String),
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

/// The slices of the moment, and what was last said of them.
struct Slices {
    by_name: BTreeMap<String, EndpointSlice>,
    ports: Ports,
    /// Endpoints left out, as last warned about.
    skipped: Vec<(String, Skip)>,
    /// Endpoints left out of a full pool, as last warned about.
    over_cap: u64,
}

impl Slices {
    fn apply(&mut self, pool: &MediaPool, hooks: &PoolHooks) {
        let d = desired(self.by_name.values(), self.ports);
        if d.skipped != self.skipped {
            for (who, why) in d.skipped.iter().filter(|s| !self.skipped.contains(s)) {
                warn!(endpoint = %who, reason = why.as_str(), "RTP manager endpoint left out");
            }
            self.skipped = d.skipped.clone();
        }
        pool.apply_discovered(&d, hooks);
        let over = pool.discovery_stats.skipped[Skip::OverCap as usize].load(Ordering::Relaxed);
        if over != self.over_cap && over > 0 {
            warn!(
                left_out = over,
                max = MAX_MEMBERS,
                "more RTP manager endpoints than the pool holds"
            );
        }
        self.over_cap = over;
    }
}

/// Lists and watches until `stop`, keeping `pool` in step.
pub fn spawn(
    pool: Arc<MediaPool>,
    watch: Watch,
    stop: CancellationToken,
    hooks: Arc<PoolHooks>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        info!(namespace = %watch.namespace, service = %watch.service, "watching the RTP managers' EndpointSlices");
        run(&pool, &watch, &stop, &hooks).await;
    })
}

async fn run(pool: &MediaPool, watch: &Watch, stop: &CancellationToken, hooks: &PoolHooks) {
    let mut slices = Slices {
        by_name: BTreeMap::new(),
        ports: watch.ports,
        skipped: Vec::new(),
        over_cap: 0,
    };
    let mut backoff = Backoff::new();
    // the version to watch from; None: list first
    let mut version: Option<String> = None;
    let mut first = true;
    let restart = || {
        pool.discovery_stats
            .watch_restarts
            .fetch_add(1, Ordering::Relaxed)
    };
    loop {
        if stop.is_cancelled() {
            return;
        }
        // whether `from` comes from a list just made (not a resumed watch)
        let listed = version.is_none();
        let from = match version.take() {
            Some(v) => v,
            None => {
                if !first {
                    restart();
                }
                first = false;
                let lp = ListParams::default().labels(&watch.selector);
                let listed = tokio::select! {
                    r = tokio::time::timeout(REQUEST_TIMEOUT, watch.api.list(&lp)) => r,
                    _ = stop.cancelled() => return,
                };
                match listed {
                    Ok(Ok(list)) => {
                        slices.by_name = list
                            .items
                            .into_iter()
                            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
                            .collect();
                        debug!(slices = slices.by_name.len(), "EndpointSlices listed");
                        slices.apply(pool, hooks);
                        list.metadata.resource_version.unwrap_or_default()
                    }
                    Ok(Err(e)) => {
                        warn!(cause = %e, "cannot list the RTP managers' EndpointSlices");
                        if !backoff.wait(stop).await {
                            return;
                        }
                        continue;
                    }
                    Err(_) => {
                        warn!("listing the RTP managers' EndpointSlices timed out");
                        if !backoff.wait(stop).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let wp = WatchParams::default()
            .labels(&watch.selector)
            .timeout(WATCH_SECONDS);
        let opened = tokio::select! {
            r = tokio::time::timeout(REQUEST_TIMEOUT, watch.api.watch(&wp, &from)) => r,
            _ = stop.cancelled() => return,
        };
        let end = match opened {
            Err(_) => End::Failed("no answer to the watch request".into()),
            Ok(Err(e)) if is_gone(&e) => End::Gone { any: false },
            Ok(Err(e)) => End::Failed(e.to_string()),
            Ok(Ok(stream)) => {
                let mut stream = std::pin::pin!(stream);
                let mut at = from;
                let mut any = false;
                let end = loop {
                    let next = tokio::select! {
                        n = tokio::time::timeout(WATCH_IDLE, stream.next()) => n,
                        _ = stop.cancelled() => return,
                    };
                    let event = match next {
                        Err(_) | Ok(None) => break End::Closed { any },
                        Ok(Some(Err(e))) if is_gone(&e) => break End::Gone { any },
                        Ok(Some(Err(e))) => break End::Failed(e.to_string()),
                        Ok(Some(Ok(event))) => event,
                    };
                    any = true;
                    backoff.reset();
                    match event {
                        WatchEvent::Added(s) | WatchEvent::Modified(s) => {
                            if let Some(v) = &s.metadata.resource_version {
                                at.clone_from(v);
                            }
                            if let Some(name) = s.metadata.name.clone() {
                                slices.by_name.insert(name, s);
                                slices.apply(pool, hooks);
                            }
                        }
                        WatchEvent::Deleted(s) => {
                            if let Some(v) = &s.metadata.resource_version {
                                at.clone_from(v);
                            }
                            if let Some(name) = &s.metadata.name {
                                slices.by_name.remove(name);
                                slices.apply(pool, hooks);
                            }
                        }
                        WatchEvent::Bookmark(b) => at = b.metadata.resource_version,
                        WatchEvent::Error(s) if s.code == 410 => break End::Gone { any },
                        WatchEvent::Error(s) => {
                            break End::Failed(format!("{} ({})", s.message, s.code));
                        }
                    }
                };
                if let End::Closed { .. } = end {
                    version = Some(at);
                }
                end
            }
        };
        match end {
            End::Closed { any } => {
                restart();
                debug!("EndpointSlice watch ended; resuming");
                // a server that ends every watch at once is not asked
                // again in a tight loop
                if !any && !backoff.wait(stop).await {
                    return;
                }
            }
            End::Gone { any } => {
                debug!("EndpointSlice watch expired (410 Gone); listing again");
                // gone at once from a version just listed: the server is
                // not asked again in a tight loop
                if listed && !any && !backoff.wait(stop).await {
                    return;
                }
            }
            End::Failed(cause) => {
                warn!(%cause, "EndpointSlice watch failed; listing again");
                if !backoff.wait(stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
