//! The location service: where each address-of-record can be reached.
//!
//! Bindings live in memory, sharded by AOR, because a registrar at tens of
//! thousands of REGISTERs a second cannot wait on a database per request
//! (Kamailio's usrloc makes the same choice). Every change is also queued to
//! a write-behind flusher ([`spawn_persister`]) that writes batches to the
//! store, coalescing repeated refreshes of one binding; at start-up the
//! table is restored from the store, so registrations survive a restart. A
//! database that is down only delays the flush: the pending set is kept
//! (bounded by the number of distinct bindings) and retried.
//!
//! Bindings learnt on a stream connection are indexed by it ([`flows`]),
//! so the ones a closed connection leaves unreachable are removed at once
//! ([`Location::remove_flow`]).
//!
//! All functions take `now_ms` (unix milliseconds) so the rules are tested
//! without a clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use switchboard_sip_stack::target::{Target, TransportKind};
use switchboard_store::Registration;
use tokio::sync::mpsc;
use tracing::warn;

mod flows;
pub mod page;
mod persist;
pub use flows::{FlowClosedCounts, FlowRemoved};
pub use persist::{restore_from, spawn_persister};

const SHARDS: usize = 64;

/// One contact of an AOR.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The Contact URI exactly as the phone sent it inside `<>`.
    pub contact: Box<str>,
    pub expires_at_ms: i64,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub q: Option<f32>,
    /// The flow the REGISTER arrived on: requests to this phone go there,
    /// not to the (often private) host in the Contact URI.
    pub received: Target,
    pub user_agent: Option<Arc<str>>,
    /// RFC 5626 `+sip.instance`: when present, a binding is identified by
    /// instance and reg-id instead of by URI, so a phone that changed port
    /// replaces its old binding instead of adding one.
    pub instance: Option<Box<str>>,
    pub reg_id: Option<u32>,
    /// RFC 3327 Path headers, as received, comma-joined.
    pub path: Option<Box<str>>,
    pub updated_ms: i64,
    /// The expiry the store holds for this binding (see [`Location::update`]
    /// on refreshes that are not written).
    pub stored_until_ms: i64,
}

impl Binding {
    fn same_binding(&self, other: &NewBinding) -> bool {
        match (&self.instance, &other.instance) {
            (Some(a), Some(b)) => a == b && self.reg_id == other.reg_id,
            _ => contacts_equal(&self.contact, &other.contact),
        }
    }

    /// Seconds left, as written in a 200 OK's Contact `expires` parameter.
    pub fn expires_in(&self, now_ms: i64) -> u32 {
        let left = (self.expires_at_ms - now_ms).max(0);
        u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX)
    }
}

/// Whether `new` differs from `old` only in what a restart can do without:
/// expiry, Call-ID, CSeq and refresh time.
fn refresh_only(old: &Binding, new: &Binding) -> bool {
    old.contact == new.contact
        && old.received == new.received
        && old.q == new.q
        && old.user_agent == new.user_agent
        && old.instance == new.instance
        && old.reg_id == new.reg_id
        && old.path == new.path
}

/// RFC 3261 §19.1.4 compares URIs component-wise; the practical core is a
/// case-insensitive scheme and host with exact user. Phones re-send the same
/// Contact text on refresh, so this errs only on exotic re-spellings.
fn contacts_equal(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A contact from a REGISTER, after expiry was decided.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub contact: Box<str>,
    /// 0 removes the binding.
    pub expires: u32,
    pub q: Option<f32>,
    pub instance: Option<Box<str>>,
    pub reg_id: Option<u32>,
}

/// What a REGISTER asks of the location service (RFC 3261 §10.3 steps 6–8).
#[derive(Debug, Clone)]
pub struct Update {
    pub aor: String,
    pub user_id: i64,
    pub account_id: i64,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub received: Target,
    pub user_agent: Option<Arc<str>>,
    pub path: Option<Box<str>>,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub enum Change {
    /// Query: no Contact header, return the current bindings.
    Fetch,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    Set(Vec<NewBinding>),
}

/// What an update left: the AOR's bindings, and the contacts it removed.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub bindings: Vec<Binding>,
    pub removed: Vec<String>,
    /// Contacts the REGISTER bound, and whether each is new (not a refresh).
    pub bound: Vec<(Box<str>, bool)>,
}

/// What [`Location::apply`] changed on a record: the changes for the
/// store, and the contacts bound (whether each is new).
type Changed = (Vec<PersistOp>, Vec<(Box<str>, bool)>);

/// Why the update was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// Same Call-ID with a CSeq not higher than the stored one: an old or
    /// reordered request (§10.3 step 7).
    OutOfOrder,
}

#[derive(Debug, Default)]
struct AorRecord {
    user_id: i64,
    account_id: i64,
    bindings: Vec<Binding>,
}

/// Changes for the write-behind flusher.
#[derive(Debug)]
pub enum PersistOp {
    Upsert(Registration),
    Delete { aor: String, contact: String },
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct LocationStats {
    pub expired: AtomicU64,
    pub persist_failures: AtomicU64,
    pub persisted: AtomicU64,
    /// Changes not queued for the store because its queue was full.
    pub persist_dropped: AtomicU64,
    /// Bindings removed because the connection they came on closed.
    pub flow_closed: FlowClosedCounts,
}

/// Changes waiting for the persister (a few seconds of a registrar's peak).
pub const PERSIST_QUEUE: usize = 65_536;

/// The sharded location table.
pub struct Location {
    shards: Vec<Mutex<HashMap<Box<str>, AorRecord>>>,
    hasher: RandomState,
    max_contacts: usize,
    persist: Option<mpsc::Sender<PersistOp>>,
    /// Distinct User-Agent strings, shared by every binding that sent one:
    /// a site has a handful of phone models and thousands of bindings.
    user_agents: Mutex<std::collections::HashSet<Arc<str>>>,
    /// AORs by the stream connections their bindings came on.
    flows: flows::FlowIndex,
    pub stats: LocationStats,
}

/// Beyond this many distinct User-Agents new ones are not interned (a
/// client inventing one per request must not grow the set).
const MAX_INTERNED_USER_AGENTS: usize = 4096;

/// A snapshot of one AOR for the API.
#[derive(Debug, Clone, Serialize)]
pub struct AorView {
    pub aor: String,
    pub user_id: i64,
    pub account_id: i64,
    pub contacts: Vec<ContactView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    pub contact: String,
    pub expires_in: u32,
    pub expires_at_ms: i64,
    pub received: String,
    pub user_agent: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub q: Option<f32>,
    pub instance: Option<String>,
}

impl Location {
    /// A table that queues every change to `persist` (None: memory only).
    pub fn new(max_contacts: usize, persist: Option<mpsc::Sender<PersistOp>>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            max_contacts: max_contacts.max(1),
            persist,
            user_agents: Mutex::default(),
            flows: flows::FlowIndex::default(),
            stats: LocationStats::default(),
        }
    }

    /// The shared copy of a User-Agent string.
    pub fn intern_user_agent(&self, ua: &str) -> Arc<str> {
        let Ok(mut set) = self.user_agents.lock() else {
            return Arc::from(ua);
        };
        if let Some(known) = set.get(ua) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(ua);
        if set.len() < MAX_INTERNED_USER_AGENTS {
            set.insert(Arc::clone(&new));
        }
        new
    }

    fn shard(&self, aor: &str) -> &Mutex<HashMap<Box<str>, AorRecord>> {
        let i = (self.hasher.hash_one(aor) as usize) % SHARDS;
        &self.shards[i]
    }

    fn queue(&self, op: PersistOp) {
        if let Some(tx) = &self.persist
            && tx.try_send(op).is_err()
        {
            // the persister drains this every 50 ms into a set with one
            // entry per binding; it fills only while a write stalls at a
            // registrar's peak rate, and the binding then waits for the
            // phone's next refresh to reach the store
            self.stats.persist_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies a REGISTER atomically and returns the AOR's bindings after it.
    ///
    /// # Errors
    /// [`UpdateError::OutOfOrder`] leaves the table untouched.
    pub fn update(&self, u: &Update, now_ms: i64) -> Result<Vec<Binding>, UpdateError> {
        self.apply(u, now_ms).map(|a| a.bindings)
    }

    /// [`Location::update`], also naming the contacts it removed (for the
    /// copy other replicas read).
    ///
    /// # Errors
    /// [`UpdateError::OutOfOrder`] leaves the table untouched.
    pub fn apply(&self, u: &Update, now_ms: i64) -> Result<Applied, UpdateError> {
        let Ok(mut shard) = self.shard(&u.aor).lock() else {
            return Ok(Applied::default());
        };
        let record = shard.entry(u.aor.as_str().into()).or_default();
        let before = flows::conns_of(&record.bindings);
        let changed = self.change(record, u, now_ms);
        self.flows
            .update(&u.aor, &before, &flows::conns_of(&record.bindings));
        let (ops, bound) = changed?;
        let bindings = record.bindings.clone();
        if record.bindings.is_empty() {
            shard.remove(u.aor.as_str());
        }
        drop(shard);
        let mut removed = Vec::new();
        for op in ops {
            if let PersistOp::Delete { contact, .. } = &op {
                removed.push(contact.clone());
            }
            self.queue(op);
        }
        Ok(Applied {
            bindings,
            removed,
            bound,
        })
    }

    /// What [`Location::apply`] would do to the table now, without doing
    /// it: the same rules run on a copy of the AOR's record (a cluster
    /// shares a change before committing it, see `service.rs`).
    ///
    /// # Errors
    /// [`UpdateError::OutOfOrder`], as [`Location::apply`] would.
    pub fn plan(&self, u: &Update, now_ms: i64) -> Result<Applied, UpdateError> {
        let mut record = {
            let Ok(shard) = self.shard(&u.aor).lock() else {
                return Ok(Applied::default());
            };
            shard
                .get(u.aor.as_str())
                .map(|r| AorRecord {
                    user_id: r.user_id,
                    account_id: r.account_id,
                    bindings: r.bindings.clone(),
                })
                .unwrap_or_default()
        };
        let (ops, bound) = self.change(&mut record, u, now_ms)?;
        let removed = ops
            .into_iter()
            .filter_map(|op| match op {
                PersistOp::Delete { contact, .. } => Some(contact),
                _ => None,
            })
            .collect();
        Ok(Applied {
            bindings: record.bindings,
            removed,
            bound,
        })
    }

    /// The body of [`Location::apply`] on the AOR's record: the changes
    /// for the store and the contacts bound.
    fn change(
        &self,
        record: &mut AorRecord,
        u: &Update,
        now_ms: i64,
    ) -> Result<Changed, UpdateError> {
        record.user_id = u.user_id;
        record.account_id = u.account_id;
        record.bindings.retain(|b| b.expires_at_ms > now_ms);
        let mut ops = Vec::new();
        let mut bound = Vec::new();
        match &u.change {
            Change::Fetch => {}
            Change::RemoveAll => {
                // §10.3 step 6: each binding with the same Call-ID must have
                // a lower CSeq, or the request is aborted.
                if record
                    .bindings
                    .iter()
                    .any(|b| *b.call_id == *u.call_id && b.cseq >= u.cseq)
                {
                    return Err(UpdateError::OutOfOrder);
                }
                for b in record.bindings.drain(..) {
                    ops.push(PersistOp::Delete {
                        aor: u.aor.clone(),
                        contact: b.contact.into(),
                    });
                }
            }
            Change::Set(new) => {
                // Check every contact first so a refused request changes nothing.
                for n in new {
                    if let Some(b) = record.bindings.iter().find(|b| b.same_binding(n))
                        && *b.call_id == *u.call_id
                        && b.cseq >= u.cseq
                    {
                        return Err(UpdateError::OutOfOrder);
                    }
                }
                for n in new {
                    let pos = record.bindings.iter().position(|b| b.same_binding(n));
                    if n.expires == 0 {
                        if let Some(i) = pos {
                            let b = record.bindings.remove(i);
                            ops.push(PersistOp::Delete {
                                aor: u.aor.clone(),
                                contact: b.contact.into(),
                            });
                        }
                        continue;
                    }
                    bound.push((n.contact.clone(), pos.is_none()));
                    let expires_at_ms = now_ms + i64::from(n.expires) * 1000;
                    let mut write = true;
                    let binding = Binding {
                        contact: n.contact.clone(),
                        expires_at_ms,
                        call_id: u.call_id.clone(),
                        cseq: u.cseq,
                        q: n.q,
                        received: u.received,
                        user_agent: u.user_agent.clone(),
                        instance: n.instance.clone(),
                        reg_id: n.reg_id,
                        path: u.path.clone(),
                        updated_ms: now_ms,
                        stored_until_ms: expires_at_ms,
                    };
                    match pos {
                        Some(i) => {
                            let old = std::mem::replace(&mut record.bindings[i], binding);
                            if !contacts_equal(&old.contact, &n.contact) {
                                ops.push(PersistOp::Delete {
                                    aor: u.aor.clone(),
                                    contact: old.contact.into(),
                                });
                            } else if refresh_only(&old, &record.bindings[i])
                                && old.stored_until_ms - now_ms >= i64::from(n.expires) * 500
                            {
                                // A refresh that changes nothing a restart
                                // needs, while the stored expiry is still at
                                // least half an interval away: not written.
                                // After a restart the binding lives until
                                // that stored expiry, and a phone refreshing
                                // this often is back well before it.
                                record.bindings[i].stored_until_ms = old.stored_until_ms;
                                write = false;
                            }
                        }
                        None => {
                            if record.bindings.len() >= self.max_contacts {
                                // Replace the binding refreshed longest ago:
                                // a rebooting phone behind NAT leaves stale
                                // bindings behind, and refusing the new one
                                // would cut off the phone that is alive.
                                if let Some((i, _)) = record
                                    .bindings
                                    .iter()
                                    .enumerate()
                                    .min_by_key(|(_, b)| b.updated_ms)
                                {
                                    let old = record.bindings.remove(i);
                                    ops.push(PersistOp::Delete {
                                        aor: u.aor.clone(),
                                        contact: old.contact.into(),
                                    });
                                }
                            }
                            record.bindings.reserve_exact(1);
                            record.bindings.push(binding);
                        }
                    }
                    if let Some(b) = record.bindings.iter().find(|b| b.same_binding(n))
                        && write
                    {
                        ops.push(PersistOp::Upsert(to_registration(
                            &u.aor,
                            record.user_id,
                            record.account_id,
                            b,
                        )));
                    }
                }
            }
        }
        Ok((ops, bound))
    }

    /// The live bindings of an AOR.
    pub fn lookup(&self, aor: &str, now_ms: i64) -> Vec<Binding> {
        let Ok(shard) = self.shard(aor).lock() else {
            return Vec::new();
        };
        shard
            .get(aor)
            .map(|r| {
                r.bindings
                    .iter()
                    .filter(|b| b.expires_at_ms > now_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes an AOR with all its bindings; false if it had none.
    pub fn remove_aor(&self, aor: &str) -> bool {
        let removed = self.shard(aor).lock().ok().and_then(|mut s| {
            let r = s.remove(aor)?;
            self.flows.update(aor, &flows::conns_of(&r.bindings), &[]);
            Some(r)
        });
        match removed {
            Some(r) => {
                for b in r.bindings {
                    self.queue(PersistOp::Delete {
                        aor: aor.to_string(),
                        contact: b.contact.into(),
                    });
                }
                true
            }
            None => false,
        }
    }

    /// Drops expired bindings; returns the (aor, contact) pairs removed.
    pub fn expire(&self, now_ms: i64) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for shard in &self.shards {
            let Ok(mut s) = shard.lock() else { continue };
            s.retain(|aor, r| {
                let before = flows::conns_of(&r.bindings);
                r.bindings.retain(|b| {
                    let keep = b.expires_at_ms > now_ms;
                    if !keep {
                        gone.push((aor.to_string(), b.contact.to_string()));
                    }
                    keep
                });
                self.flows
                    .update(aor, &before, &flows::conns_of(&r.bindings));
                !r.bindings.is_empty()
            });
        }
        self.stats
            .expired
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        for (aor, contact) in &gone {
            self.queue(PersistOp::Delete {
                aor: aor.clone(),
                contact: contact.clone(),
            });
        }
        gone
    }

    /// Number of AORs and of contacts.
    pub fn counts(&self) -> (usize, usize) {
        let mut aors = 0;
        let mut contacts = 0;
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                aors += s.len();
                contacts += s.values().map(|r| r.bindings.len()).sum::<usize>();
            }
        }
        (aors, contacts)
    }

    /// Every AOR, sorted, for the API.
    pub fn snapshot(&self, now_ms: i64) -> Vec<AorView> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                for (aor, r) in s.iter() {
                    out.push(view(aor, r, now_ms));
                }
            }
        }
        out.sort_by(|a, b| a.aor.cmp(&b.aor));
        out
    }

    /// Every AOR with its live bindings (for re-publishing them).
    pub fn records(&self, now_ms: i64) -> Vec<(String, i64, i64, Vec<Binding>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                for (aor, r) in s.iter() {
                    let live: Vec<Binding> = r
                        .bindings
                        .iter()
                        .filter(|b| b.expires_at_ms > now_ms)
                        .cloned()
                        .collect();
                    if !live.is_empty() {
                        out.push((aor.to_string(), r.user_id, r.account_id, live));
                    }
                }
            }
        }
        out
    }

    /// One AOR for the API.
    pub fn view(&self, aor: &str, now_ms: i64) -> Option<AorView> {
        let shard = self.shard(aor).lock().ok()?;
        shard.get(aor).map(|r| view(aor, r, now_ms))
    }

    /// A binding as a stored (or shared) registration describes it; `None`
    /// when its `received` names no flow.
    pub fn binding_from(&self, r: &Registration) -> Option<Binding> {
        Some(Binding {
            contact: r.contact.as_str().into(),
            expires_at_ms: r.expires_at,
            call_id: r.call_id.as_str().into(),
            cseq: u32::try_from(r.cseq).unwrap_or(0),
            q: r.q.map(|q| q as f32),
            received: parse_received(&r.received)?,
            user_agent: r.user_agent.as_deref().map(|ua| self.intern_user_agent(ua)),
            instance: r.instance_id.as_deref().map(Box::from),
            reg_id: r.reg_id.and_then(|v| u32::try_from(v).ok()),
            path: r.path.as_deref().map(Box::from),
            updated_ms: r.updated_at,
            stored_until_ms: r.expires_at,
        })
    }

    /// Restores bindings loaded from the store (start-up), without queueing
    /// them to be written back. Bindings learnt on a connection of a kind
    /// in `closed_with_process` (the `UNREGISTER_ON_CLOSE` kinds) are not
    /// restored: their connection ended with the process that held it, as
    /// a closed connection would have removed them. Returns how many were
    /// restored and the (AOR, contact) keys of those left out, for the
    /// store to forget.
    pub fn restore(
        &self,
        regs: Vec<Registration>,
        now_ms: i64,
        closed_with_process: &[TransportKind],
    ) -> (usize, Vec<(String, String)>) {
        let mut n = 0;
        let mut dropped = Vec::new();
        for r in regs {
            if r.expires_at <= now_ms {
                continue;
            }
            let Some(binding) = self.binding_from(&r) else {
                warn!(aor = %r.aor, received = %r.received, "stored registration has an unreadable source; skipped");
                continue;
            };
            if closed_with_process.contains(&binding.received.transport) {
                dropped.push((r.aor, r.contact));
                continue;
            }
            let Ok(mut shard) = self.shard(&r.aor).lock() else {
                continue;
            };
            let record = shard.entry(r.aor.as_str().into()).or_default();
            record.user_id = r.user_id.unwrap_or_default();
            record.account_id = r.account_id;
            record.bindings.reserve_exact(1);
            record.bindings.push(binding);
            n += 1;
        }
        (n, dropped)
    }
}

fn view(aor: &str, r: &AorRecord, now_ms: i64) -> AorView {
    AorView {
        aor: aor.to_string(),
        user_id: r.user_id,
        account_id: r.account_id,
        contacts: r
            .bindings
            .iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .map(|b| ContactView {
                contact: b.contact.to_string(),
                expires_in: b.expires_in(now_ms),
                expires_at_ms: b.expires_at_ms,
                received: format_received(&b.received),
                user_agent: b.user_agent.as_deref().map(str::to_string),
                call_id: b.call_id.to_string(),
                cseq: b.cseq,
                q: b.q,
                instance: b.instance.as_deref().map(str::to_string),
            })
            .collect(),
    }
}

/// `udp:127.0.0.1:5062` / `tcp:[::1]:5062` / `wss:…`: the flow a binding
/// was learnt on.
pub fn format_received(t: &Target) -> String {
    format!(
        "{}:{}",
        t.transport.via_token().to_ascii_lowercase(),
        t.remote
    )
}

/// Inverse of [`format_received`]. The local address is not stored: after a
/// restart the transport picks a socket of the right family.
pub fn parse_received(s: &str) -> Option<Target> {
    let (proto, addr) = s.split_once(':')?;
    let transport = TransportKind::from_token(proto)?;
    let remote: SocketAddr = addr.parse().ok()?;
    let unspecified = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    Some(Target {
        transport,
        local: unspecified,
        remote,
        conn: None,
    })
}

pub(crate) fn to_registration(
    aor: &str,
    user_id: i64,
    account_id: i64,
    b: &Binding,
) -> Registration {
    Registration {
        aor: aor.to_string(),
        contact: b.contact.to_string(),
        account_id,
        user_id: Some(user_id),
        received: format_received(&b.received),
        instance_id: b.instance.as_deref().map(str::to_string),
        reg_id: b.reg_id.map(i64::from),
        path: b.path.as_deref().map(str::to_string),
        user_agent: b.user_agent.as_deref().map(str::to_string),
        call_id: b.call_id.to_string(),
        cseq: i64::from(b.cseq),
        q: b.q.map(f64::from),
        expires_at: b.expires_at_ms,
        updated_at: b.updated_ms,
    }
}

#[cfg(test)]
mod tests;
