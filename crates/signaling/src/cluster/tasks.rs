//! The background work of a replica in a cluster: heartbeats, reaping dead
//! replicas, expiring shared bindings, re-publishing after a Redis outage,
//! and obeying the other replicas' commands.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_cluster::{Command, ReplicaInfo, Shared, SharedBinding};
use switchboard_events::{Event, RegistrationEvent, RegistrationVerb};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{DEAD_AFTER, HEARTBEAT};
use crate::Node;
use crate::location::to_registration;
use crate::registrar::Now;

/// Expired shared bindings claimed per sweep at most.
const EXPIRE_BATCH: usize = 1000;

/// Starts the cluster tasks (none without Redis).
pub fn spawn(
    node: Arc<Node>,
    api_addr: SocketAddr,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let Some(shared) = node.cluster.shared.clone() else {
        return Vec::new();
    };
    let (feed, failures_rx) = mpsc::channel(FAILURE_QUEUE);
    node.auth.limiter.set_feed(feed);
    vec![
        tokio::spawn(heartbeat(
            node.clone(),
            shared.clone(),
            api_addr,
            shutdown.clone(),
        )),
        tokio::spawn(republish(node.clone(), shared.clone(), shutdown.clone())),
        tokio::spawn(failures(
            node.clone(),
            shared.clone(),
            failures_rx,
            shutdown.clone(),
        )),
        tokio::spawn(commands(node, shared, shutdown)),
    ]
}

/// Failed authentications waiting to be counted in Redis; beyond it they
/// count locally only (the local limit still applies).
const FAILURE_QUEUE: usize = 4096;

/// The limiter key of a source (an IPv4 address, an IPv6 /64).
fn source_key(ip: IpAddr) -> String {
    format!("src:{ip}")
}

fn source_of(key: &str) -> Option<IpAddr> {
    key.strip_prefix("src:")?.parse().ok()
}

/// Counts each failing source across the replicas; the failure that takes
/// a source over AUTH_FAIL_LIMIT blocks it on every replica at once.
async fn failures(
    node: Arc<Node>,
    shared: Shared,
    mut rx: mpsc::Receiver<IpAddr>,
    shutdown: CancellationToken,
) {
    let limits = *node.auth.limiter.limits();
    let window = limits.window.as_secs().max(1);
    let block = limits.block.as_secs().max(1);
    loop {
        let ip = tokio::select! {
            ip = rx.recv() => match ip { Some(ip) => ip, None => return },
            _ = shutdown.cancelled() => return,
        };
        let key = source_key(ip);
        let count = match shared.record_auth_failure(&key, window).await {
            Ok(n) => n,
            Err(e) => {
                debug!(cause = %e, "failure not counted in Redis");
                continue;
            }
        };
        if count > u64::from(limits.source_limit) && count <= u64::from(limits.source_limit) + 1 {
            warn!(source = %ip, failures = count, "source blocked: too many failed authentications across the replicas");
            node.auth
                .limiter
                .block_source(ip, limits.block, Instant::now());
            let _ = shared.block(&key, block).await;
            let cmd = Command::BlockSource { key, secs: block };
            if let Err(e) = shared.broadcast(&cmd).await {
                debug!(cause = %e, "block not broadcast");
            }
        }
    }
}

/// Every [`HEARTBEAT`]: say we are alive, learn who else is, reap the dead
/// and claim expired shared bindings.
async fn heartbeat(
    node: Arc<Node>,
    shared: Shared,
    api_addr: SocketAddr,
    shutdown: CancellationToken,
) {
    let started_ms = Now::current().unix_ms;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Now::current().unix_ms;
        let sip_addr = node
            .cluster
            .addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let info = ReplicaInfo {
            id: node.cluster.replica.clone(),
            sip_addr,
            api_addr: api_addr.to_string(),
            started_ms,
            registrations: node.location.counts().1 as u64,
            calls: node.calls.live_count() as u64,
        };
        if let Err(e) = shared.heartbeat(&info, now).await {
            debug!(cause = %e, "heartbeat not written");
            continue;
        }
        match shared.replicas().await {
            Ok(list) => {
                let peers: HashMap<String, SocketAddr> = list
                    .into_iter()
                    .filter(|r| r.alive && r.info.id != node.cluster.replica)
                    .filter_map(|r| Some((r.info.id, r.info.sip_addr.parse().ok()?)))
                    .collect();
                node.cluster.set_peers(peers);
            }
            Err(e) => debug!(cause = %e, "replica list not read"),
        }
        match shared.reap_dead(now, DEAD_AFTER.as_millis() as i64).await {
            Ok(dead) => {
                for r in dead {
                    warn!(replica = %r, "replica stopped heartbeating: its calls leave the list, its phones are reached directly");
                }
            }
            Err(e) => debug!(cause = %e, "reaping not done"),
        }
        match shared.claim_expired(now, EXPIRE_BATCH).await {
            Ok(gone) => {
                for b in gone {
                    info!(aor = %b.reg.aor, contact = %b.reg.contact, replica = %b.replica, "shared registration expired");
                    node.events.publish(Event::registration(
                        RegistrationVerb::Expired,
                        RegistrationEvent {
                            aor: b.reg.aor.clone(),
                            contact: b.reg.contact.clone(),
                            expires: 0,
                            source: Some(b.reg.received.clone()),
                            user_agent: b.reg.user_agent.clone(),
                        },
                    ));
                }
            }
            Err(e) => debug!(cause = %e, "shared expiry not swept"),
        }
    }
}

/// After every (re)connection Redis may have restarted empty: write this
/// node's bindings again.
async fn republish(node: Arc<Node>, shared: Shared, shutdown: CancellationToken) {
    let mut generation = shared.generation();
    loop {
        tokio::select! {
            changed = generation.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let now = Now::current().unix_ms;
        let mut n = 0u64;
        for (aor, user_id, account_id, bindings) in node.location.records(now) {
            let shared_bindings: Vec<SharedBinding> = bindings
                .iter()
                .map(|b| SharedBinding {
                    replica: node.cluster.replica.clone(),
                    reg: to_registration(&aor, user_id, account_id, b),
                })
                .collect();
            if shared.put_bindings(&aor, &shared_bindings).await.is_err() {
                break;
            }
            n += shared_bindings.len() as u64;
        }
        node.cluster
            .stats
            .republished
            .fetch_add(n, Ordering::Relaxed);
        info!(bindings = n, "bindings re-published to Redis");
    }
}

/// What the other replicas ask of this one.
async fn commands(node: Arc<Node>, shared: Shared, shutdown: CancellationToken) {
    let mut rx = shared.subscribe();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.cancelled() => return,
        };
        match msg.command {
            Command::Hangup { call_id } => {
                let found = node.calls.hangup(&call_id);
                info!(call = %call_id, from = %msg.from, found, "hangup asked by another replica");
            }
            Command::BlockSource { key, secs } => match source_of(&key) {
                Some(ip) => {
                    info!(source = %ip, secs, from = %msg.from, "source blocked by the failures all replicas saw");
                    node.auth
                        .limiter
                        .block_source(ip, Duration::from_secs(secs), Instant::now());
                }
                None => debug!(%key, "block for an unknown key kind ignored"),
            },
            Command::UnblockSource { .. } | Command::BindingsChanged { .. } => {}
            Command::ConfigChanged => node.config_changed.notify_one(),
        }
    }
}
