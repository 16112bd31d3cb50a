//! Several replicas, one platform: what this node shares with the others
//! through Redis, and how it reaches the phones they hold.
//!
//! * Bindings: every REGISTER's change is written to Redis before its 200
//!   goes out ([`Cluster::publish`]), so any replica finds the phone at
//!   once; lookups read Redis ([`Cluster::locate`]) and fall back to this
//!   node's own table while Redis is away. Each binding names the replica
//!   the phone registered through; a call for it from another replica goes
//!   through that replica's edge ([`switchboard_sip_stack::edge`]) while
//!   its heartbeat lives, and straight to the phone's address once it died.
//! * Replicas: each heartbeats every [`HEARTBEAT`] with its SIP address
//!   and counts; a dead one is reaped (its calls and call slots removed)
//!   by one survivor ([`tasks`]).
//! * Commands: a hangup asked of another replica's call, a source blocked
//!   for failed authentication, travel over Redis pub/sub.
//!
//! Without `REDIS_ADDR` none of this runs: [`Cluster::off`] answers every
//! lookup from the local table, as a node of its own always did.

pub mod calls;
pub mod start;
pub mod sync;
pub mod tasks;
pub mod trunks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use switchboard_cluster::{Health, Shared, SharedBinding};
use switchboard_sip_stack::edge::{EdgeKey, FlowToken};
use switchboard_sip_stack::target::{Target, TransportKind};
use tracing::{debug, info, warn};

use crate::dialplan::Dialplan;
use crate::location::{Binding, Location, to_registration};
use crate::registrar::BindingChange;

/// How often a replica says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica silent this long is dead: its phones are reached directly and
/// its calls leave the list.
pub const DEAD_AFTER: Duration = Duration::from_secs(10);
/// How long a REGISTER's 200 waits for Redis at most (then it goes out and
/// the change is counted as not shared).
pub const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Binding changes written to Redis.
    pub published: AtomicU64,
    /// Binding changes Redis did not take (down, slow).
    pub publish_failures: AtomicU64,
    /// Lookups answered from the local table because Redis failed.
    pub lookup_fallbacks: AtomicU64,
    /// Calls sent through another replica's edge.
    pub via_edge: AtomicU64,
    /// Bindings re-published after Redis came back.
    pub republished: AtomicU64,
}

/// A binding found for a call, and how to reach it from here.
#[derive(Debug, Clone)]
pub struct Located {
    pub binding: Binding,
    /// The flow the first request goes on (the phone's, or the edge's).
    pub flow: Target,
    /// Route set of the first request: the binding's Path, behind our
    /// edge hop when it goes through another replica.
    pub path: Vec<String>,
}

/// This node's membership of the platform.
pub struct Cluster {
    /// This replica's id (NODE_NAME or the host name).
    pub replica: String,
    /// Redis, when REDIS_ADDR is set.
    pub shared: Option<Shared>,
    /// Where other replicas reach our SIP (CLUSTER_ADDR, or found at bind).
    addr: OnceLock<SocketAddr>,
    edge_key: Option<EdgeKey>,
    /// Live replicas' SIP addresses, refreshed by the heartbeat task.
    peers: RwLock<HashMap<String, SocketAddr>>,
    pub stats: ClusterStats,
}

impl Cluster {
    /// A node of its own.
    pub fn off(replica: String) -> Self {
        Self::new(replica, None, None)
    }

    pub fn new(replica: String, shared: Option<Shared>, edge_key: Option<[u8; 32]>) -> Self {
        Self {
            replica,
            shared,
            addr: OnceLock::new(),
            edge_key: edge_key.map(EdgeKey::new),
            peers: RwLock::new(HashMap::new()),
            stats: ClusterStats::default(),
        }
    }

    /// Sets the address other replicas reach us on (once).
    pub fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }

    pub fn edge_key(&self) -> Option<&EdgeKey> {
        self.edge_key.as_ref()
    }

    /// Redis, when it is configured and answering.
    fn live_shared(&self) -> Option<&Shared> {
        self.shared.as_ref().filter(|s| s.health() == Health::Ok)
    }

    /// `ok`, `degraded: why` or `off`, for the health endpoint.
    pub fn redis_health(&self) -> Result<&'static str, String> {
        match &self.shared {
            None => Ok("off"),
            Some(s) => match s.health() {
                Health::Ok => Ok("ok"),
                Health::Degraded(why) => Err(why),
            },
        }
    }

    pub(crate) fn set_peers(&self, peers: HashMap<String, SocketAddr>) {
        if let Ok(mut p) = self.peers.write() {
            *p = peers;
        }
    }

    /// Live replicas (other than us) and their SIP addresses.
    pub fn peers(&self) -> HashMap<String, SocketAddr> {
        self.peers.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Whether this replica publishes the facts every replica observes
    /// alike (an RTP manager going down): the live replica with the
    /// smallest id does, so each is published once (twice at most while
    /// the replicas' views of each other differ, for one heartbeat).
    pub fn speaks_for_all(&self) -> bool {
        self.peers
            .read()
            .map(|p| p.keys().all(|id| *id > self.replica))
            .unwrap_or(true)
    }

    /// The cluster's part of `/metrics` (nothing without Redis).
    pub fn render_metrics(&self, out: &mut String) {
        let Some(shared) = &self.shared else { return };
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "switchboard_cluster_bindings_published_total",
                "Binding changes written to Redis.",
                c(&self.stats.published),
            ),
            (
                "switchboard_cluster_bindings_publish_failures_total",
                "Binding changes Redis did not take in time.",
                c(&self.stats.publish_failures),
            ),
            (
                "switchboard_cluster_lookup_fallbacks_total",
                "Lookups answered from this node's table because Redis failed.",
                c(&self.stats.lookup_fallbacks),
            ),
            (
                "switchboard_cluster_via_edge_total",
                "Calls sent through another replica's edge.",
                c(&self.stats.via_edge),
            ),
            (
                "switchboard_cluster_republished_total",
                "Bindings re-published after Redis came back.",
                c(&self.stats.republished),
            ),
        ] {
            crate::metrics::metric(out, name, "counter", help, v);
        }
        crate::metrics::metric(
            out,
            "switchboard_cluster_peers",
            "gauge",
            "Live replicas this one routes through.",
            self.peers().len(),
        );
        shared.stats().render(out);
    }

    fn peer(&self, replica: &str) -> Option<SocketAddr> {
        self.peers.read().ok()?.get(replica).copied()
    }

    /// Writes a REGISTER's change where the other replicas look. Bounded
    /// by [`PUBLISH_WAIT`]; a failure is counted and left to the
    /// re-publication that follows Redis' return.
    pub async fn publish(&self, change: &BindingChange) {
        let Some(shared) = &self.shared else { return };
        let bindings = self.shared_bindings(change);
        let removed: Vec<&str> = change.removed.iter().map(String::as_str).collect();
        let work = async {
            if !removed.is_empty() {
                shared.remove_bindings(&change.aor, &removed).await?;
            }
            if !bindings.is_empty() {
                shared.put_bindings(&change.aor, &bindings).await?;
            }
            Ok::<(), switchboard_cluster::Error>(())
        };
        match tokio::time::timeout(PUBLISH_WAIT, work).await {
            Ok(Ok(())) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                debug!(aor = %change.aor, cause = %e, "binding change not shared");
            }
            Err(_) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                debug!(aor = %change.aor, "binding change not shared in time");
            }
        }
    }

    /// A change's bindings as this replica shares them.
    fn shared_bindings(&self, change: &BindingChange) -> Vec<SharedBinding> {
        change
            .bindings
            .iter()
            .map(|b| SharedBinding {
                replica: self.replica.clone(),
                reg: to_registration(&change.aor, change.user_id, change.account_id, b),
            })
            .collect()
    }

    /// Shares a planned REGISTER change behind the shared nonce-count guard,
    /// in one Redis round trip: false when the nonce count was seen before
    /// (a replay: nothing shared, the REGISTER gets a new challenge); true
    /// when it was fresh and the change is shared, or when Redis could not
    /// tell (then, as with the separate guard, this replica's own guard
    /// has checked the nonce, and the failure is counted as a change not
    /// shared).
    pub async fn share_guarded(
        &self,
        change: &BindingChange,
        nonce: &str,
        nc: u32,
        nonce_ttl_secs: u64,
    ) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let bindings = self.shared_bindings(change);
        let removed: Vec<&str> = change.removed.iter().map(String::as_str).collect();
        let work =
            shared.guarded_change(nonce, nc, nonce_ttl_secs, &change.aor, &removed, &bindings);
        match tokio::time::timeout(PUBLISH_WAIT, work).await {
            Ok(Ok(fresh)) => {
                if fresh {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                }
                fresh
            }
            Ok(Err(e)) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                debug!(aor = %change.aor, cause = %e, "binding change not shared");
                true
            }
            Err(_) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                debug!(aor = %change.aor, "binding change not shared in time");
                true
            }
        }
    }

    /// Where the phones of `aor` are, and how to reach each from here.
    pub async fn locate(&self, location: &Location, aor: &str, now_ms: i64) -> Vec<Located> {
        let local = location.lookup(aor, now_ms);
        let Some(shared) = self.live_shared() else {
            return local.into_iter().map(direct).collect();
        };
        let shared_bindings = match shared.lookup(aor, now_ms).await {
            Ok(b) => b,
            Err(e) => {
                self.stats.lookup_fallbacks.fetch_add(1, Ordering::Relaxed);
                debug!(%aor, cause = %e, "shared lookup failed; local bindings only");
                return local.into_iter().map(direct).collect();
            }
        };
        let mut out = Vec::with_capacity(shared_bindings.len());
        for sb in shared_bindings {
            // Our own: the local binding knows the live connection.
            if sb.replica == self.replica
                && let Some(b) = local.iter().find(|b| *b.contact == sb.reg.contact)
            {
                out.push(direct(b.clone()));
                continue;
            }
            let Some(binding) = location.binding_from(&sb.reg) else {
                continue;
            };
            match self.through_edge(&sb.replica, &binding) {
                Some(l) => {
                    self.stats.via_edge.fetch_add(1, Ordering::Relaxed);
                    out.push(l);
                }
                None => out.push(direct(binding)),
            }
        }
        // Bindings made while Redis was away are not there yet.
        for b in local {
            if !out.iter().any(|l| l.binding.contact == b.contact) {
                out.push(direct(b));
            }
        }
        out
    }

    /// The route through `replica`'s edge to a phone it holds, while that
    /// replica is alive and we can sign for it.
    fn through_edge(&self, replica: &str, b: &Binding) -> Option<Located> {
        if replica == self.replica {
            return None;
        }
        let edge = self.peer(replica)?;
        let key = self.edge_key.as_ref()?;
        let me = self.addr()?;
        let token = FlowToken {
            transport: b.received.transport,
            flow: b.received.remote,
            peer: me,
        };
        let mut path = vec![key.route(edge, &token)];
        if let Some(p) = &b.path {
            path.extend(switchboard_sip::message::split_header_values(p));
        }
        let unspecified = if edge.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        Some(Located {
            binding: b.clone(),
            flow: Target {
                transport: TransportKind::Udp,
                local: unspecified,
                remote: edge,
                conn: None,
            },
            path,
        })
    }
}

fn direct(b: Binding) -> Located {
    Located {
        flow: b.received,
        path: b
            .path
            .as_deref()
            .map(switchboard_sip::message::split_header_values)
            .unwrap_or_default(),
        binding: b,
    }
}

/// With a shared database the dialplan is its newest version; the first
/// replica to start on an empty table writes DIALPLAN_PATH's plan there.
pub async fn dialplan_from_store(store: &switchboard_store::Store, file: Dialplan) -> Dialplan {
    match store.latest_dialplan().await {
        Ok(Some((version, text))) => match Dialplan::parse(&text) {
            Ok(d) => {
                info!(version, "dialplan loaded from the database");
                d
            }
            Err(e) => {
                warn!(version, cause = %e, "stored dialplan not understood; using DIALPLAN_PATH");
                file
            }
        },
        Ok(None) => {
            match serde_json::to_string(&file.file) {
                Ok(text) => {
                    if let Err(e) = store.save_dialplan(&text).await {
                        warn!(cause = %e, "dialplan not written to the database");
                    }
                }
                Err(e) => warn!(cause = %e, "dialplan not serialized"),
            }
            file
        }
        Err(e) => {
            warn!(cause = %e, "database not answering; using DIALPLAN_PATH until it does");
            file
        }
    }
}
