//! Bindings by the stream connection they were learnt on, so that the
//! bindings of a connection that closed are found at once, without a scan
//! of the table.
//!
//! The index holds, for each live connection id, the AORs with at least
//! one binding whose flow is that connection; every change to an AOR's
//! bindings updates it under the AOR's shard lock (shard first, index
//! second, always), so it never names a connection no binding uses and
//! never misses one. UDP bindings (no connection) are not in it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_sip_stack::target::{Target, TransportKind};

use super::{Binding, Location, PersistOp};

/// AORs by the connections their bindings arrived on.
#[derive(Debug, Default)]
pub(super) struct FlowIndex {
    by_conn: Mutex<HashMap<u64, Vec<Box<str>>>>,
}

/// The connections `bindings` were learnt on, sorted, each once.
pub(super) fn conns_of(bindings: &[Binding]) -> Vec<u64> {
    let mut conns: Vec<u64> = bindings.iter().filter_map(|b| b.received.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    conns
}

impl FlowIndex {
    /// `aor`'s bindings were on the connections `before` and are now on
    /// `after` (both as [`conns_of`] gives them).
    pub(super) fn update(&self, aor: &str, before: &[u64], after: &[u64]) {
        if before == after {
            return;
        }
        let Ok(mut by_conn) = self.by_conn.lock() else {
            return;
        };
        for conn in before.iter().filter(|c| !after.contains(c)) {
            if let Some(aors) = by_conn.get_mut(conn) {
                aors.retain(|a| **a != *aor);
                if aors.is_empty() {
                    by_conn.remove(conn);
                }
            }
        }
        for conn in after.iter().filter(|c| !before.contains(c)) {
            by_conn.entry(*conn).or_default().push(aor.into());
        }
    }

    /// The AORs with bindings on `conn`.
    fn aors(&self, conn: u64) -> Vec<Box<str>> {
        self.by_conn
            .lock()
            .ok()
            .and_then(|m| m.get(&conn).cloned())
            .unwrap_or_default()
    }

    /// Connections with bindings on them.
    pub(super) fn len(&self) -> usize {
        self.by_conn.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Bindings removed because their connection closed, per transport.
#[derive(Debug, Default)]
pub struct FlowClosedCounts {
    tcp: AtomicU64,
    tls: AtomicU64,
    ws: AtomicU64,
    wss: AtomicU64,
}

impl FlowClosedCounts {
    fn counter(&self, kind: TransportKind) -> Option<&AtomicU64> {
        match kind {
            TransportKind::Tcp => Some(&self.tcp),
            TransportKind::Tls => Some(&self.tls),
            TransportKind::Ws => Some(&self.ws),
            TransportKind::Wss => Some(&self.wss),
            TransportKind::Udp => None,
        }
    }

    /// The count for `kind` (0 for UDP, which has no connections).
    pub fn get(&self, kind: TransportKind) -> u64 {
        self.counter(kind).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The bindings of one AOR a closed connection took with it.
#[derive(Debug, Clone)]
pub struct FlowRemoved {
    pub aor: String,
    pub user_id: i64,
    pub account_id: i64,
    pub bindings: Vec<Binding>,
}

impl Location {
    /// Removes every live binding learnt on the connection `flow` names,
    /// as an unregistration of each would (queued for the store too), and
    /// returns them by AOR. A binding refreshed over another connection
    /// since is not the closed flow's and stays; one already expired is
    /// left to the sweep that reports expiries.
    pub fn remove_flow(&self, flow: &Target, now_ms: i64) -> Vec<FlowRemoved> {
        let Some(conn) = flow.conn else {
            return Vec::new();
        };
        let on_flow =
            |b: &Binding| b.received.conn == Some(conn) && b.received.transport == flow.transport;
        let mut out = Vec::new();
        for aor in self.flows.aors(conn) {
            let Ok(mut shard) = self.shard(&aor).lock() else {
                continue;
            };
            let Some(record) = shard.get_mut(&aor) else {
                continue;
            };
            let before = conns_of(&record.bindings);
            let (gone, kept): (Vec<Binding>, Vec<Binding>) = record
                .bindings
                .drain(..)
                .partition(|b| on_flow(b) && b.expires_at_ms > now_ms);
            record.bindings = kept;
            self.flows
                .update(&aor, &before, &conns_of(&record.bindings));
            let (user_id, account_id) = (record.user_id, record.account_id);
            if record.bindings.is_empty() {
                shard.remove(&aor);
            }
            drop(shard);
            if gone.is_empty() {
                continue;
            }
            for b in &gone {
                self.queue(PersistOp::Delete {
                    aor: aor.to_string(),
                    contact: b.contact.to_string(),
                });
            }
            if let Some(c) = self.stats.flow_closed.counter(flow.transport) {
                c.fetch_add(gone.len() as u64, Ordering::Relaxed);
            }
            out.push(FlowRemoved {
                aor: aor.into(),
                user_id,
                account_id,
                bindings: gone,
            });
        }
        out
    }

    /// Connections the table holds bindings of (for tests and checks).
    pub fn flows_indexed(&self) -> usize {
        self.flows.len()
    }
}
