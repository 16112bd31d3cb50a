//! The tokio runtime that drives the sans-IO transaction machines.
//!
//! [`TransactionLayer`] keeps every live transaction in a table sharded over
//! 16 `std::sync::Mutex<HashMap>`s by key hash. Events (requests, responses,
//! TU responses, timers) lock one shard, step the machine, interpret its
//! [`Output`]s, unlock, and only then hand bytes to [`Transmit`] — so no lock
//! is ever held across an `.await` or across a call into the transport, and
//! a `Transmit` implementation may call back into the layer.
//!
//! # Timers
//!
//! The deadlines live in the table entries; one queue per layer (a binary
//! heap of `(deadline, entry id, key)`) says when to look at which entry,
//! and one driver task sleeps until the earliest queued deadline. An entry
//! is queued again only when its earliest deadline moves earlier than what
//! is queued for it, so absorbing duplicates costs nothing, and a queue
//! item that outlived its entry (terminated, or re-armed later) is simply
//! skipped when it comes up: there is no cancellation bookkeeping. The
//! driver is spawned on the first timer and exits when the layer is
//! dropped.
//!
//! An earlier design gave every transaction with a pending timer its own
//! task. At registrar rates that is two spawns per registration (Timer J
//! keeps each REGISTER's answer for 32 s over UDP), and every spawn woke
//! the other runtime worker: the profile was dominated by context
//! switches. The shared queue costs one wake-up per deadline that is
//! actually due.
//!
//! # Completed non-INVITE server transactions
//!
//! Over UDP a non-INVITE server transaction spends almost all its life in
//! Completed, waiting 64·T1 (32 s) only to resend its final response to a
//! retransmitted request. A registrar at 20,000 REGISTERs/s keeps over a
//! million of them. So on entering Completed such a transaction is retired
//! from the table into a lean cache of `key → (response, target)` that
//! expires in FIFO order (Timer J is the same for all): no timer-queue item,
//! no machine, no TU channel — about half the memory, and retiring and
//! expiring cost a push and a pop.
//!
//! Cost per live transaction (64-bit): the table entry, about 350 bytes
//! with its key, plus the key's string (branch and sent-by) and the last
//! message kept for retransmission — a refcounted [`Bytes`] usually shared
//! with the transport, never more than one message. While a timer is
//! pending, add one queue item (40 bytes and a key clone).
//!
//! # Leaks
//!
//! Every state that has no timer pending waits on the TU (a server
//! transaction before its final response, an INVITE client transaction in
//! Proceeding). When the TU drops its handle in such a state the layer
//! starts a guard of 64·T1 and then forgets the transaction silently, so a
//! buggy or crashed TU cannot leak entries. While the handle is alive the TU
//! is responsible (e.g. it must CANCEL an INVITE that rings forever).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::client_invite::ClientInvite;
use super::client_non_invite::ClientNonInvite;
use super::key::TransactionKey;
use super::output::Output;
use super::server_invite::ServerInvite;
use super::server_non_invite::{ServerNonInvite, ServerNonInviteState};
use super::timers::{Timer, TimerConfig};
use crate::target::Target;

/// How the layer puts bytes on the wire; implemented by the transport layer.
pub trait Transmit: Send + Sync + 'static {
    /// Send `bytes` to `target`. Fire-and-forget and must never block: it is
    /// called from timer tasks and from the TU's calls. Failures are
    /// reported back, if at all, through
    /// [`TransactionLayer::on_transport_error`].
    fn transmit(&self, target: &Target, bytes: Bytes);
}

/// What a client transaction tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response the TU must see (provisionals, the first final), with the
    /// bytes given to [`TransactionLayer::on_response`].
    Response(u16, Bytes),
    /// Timer B or F fired: no final response came.
    Timeout,
    /// The transport reported a failure for this transaction.
    TransportError,
}

/// What a server transaction tells its TU; only failures, since the TU
/// drives the happy path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// Timer H fired: the ACK for our 300-699 never came.
    Timeout,
    /// The transport reported a failure for this transaction.
    TransportError,
}

/// What [`TransactionLayer::on_request`] made of a request.
#[derive(Debug)]
pub enum Incoming {
    /// A new transaction: pass the request to the TU, which answers through
    /// the handle.
    New(ServerTx),
    /// A retransmission, absorbed; the last response was resent if the
    /// state calls for it.
    Retransmission,
    /// The ACK for a 300-699 we sent; absorbed by the transaction.
    AckForCompleted,
    /// An ACK that acknowledges a 2xx (no transaction, or one in RFC 6026
    /// Accepted): pass it to the TU / dialog layer.
    AckFor2xx,
}

/// The four kinds of transaction, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

impl TransactionKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// A counter per [`TransactionKind`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindCounts {
    pub client_invite: u64,
    pub client_non_invite: u64,
    pub server_invite: u64,
    pub server_non_invite: u64,
}

impl KindCounts {
    /// The counter for `kind`.
    pub fn get(&self, kind: TransactionKind) -> u64 {
        match kind {
            TransactionKind::ClientInvite => self.client_invite,
            TransactionKind::ClientNonInvite => self.client_non_invite,
            TransactionKind::ServerInvite => self.server_invite,
            TransactionKind::ServerNonInvite => self.server_non_invite,
        }
    }

    fn from_atomics(counters: &[AtomicU64; 4]) -> Self {
        let get = |kind: TransactionKind| counters[kind.index()].load(Ordering::Relaxed);
        Self {
            client_invite: get(TransactionKind::ClientInvite),
            client_non_invite: get(TransactionKind::ClientNonInvite),
            server_invite: get(TransactionKind::ServerInvite),
            server_non_invite: get(TransactionKind::ServerNonInvite),
        }
    }
}

/// A point-in-time copy of the layer's counters (all monotonic).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub created: KindCounts,
    pub terminated: KindCounts,
    /// Messages sent again: timer A/E/G retransmissions and responses or
    /// ACKs resent because a duplicate came in.
    pub retransmissions_sent: u64,
    /// Duplicate (or late) messages absorbed instead of reaching the TU.
    pub retransmissions_absorbed: u64,
    /// Timers B, F and H that fired.
    pub timeouts: u64,
    pub transport_errors: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
}

#[derive(Default)]
struct Metrics {
    created: [AtomicU64; 4],
    terminated: [AtomicU64; 4],
    retransmissions_sent: AtomicU64,
    retransmissions_absorbed: AtomicU64,
    timeouts: AtomicU64,
    transport_errors: AtomicU64,
    stray_responses: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

const SHARDS: usize = 16;

/// Room in a client transaction's event queue. The last slot is kept for
/// the final response or failure, so a TU that stops reading loses
/// provisionals only, and memory stays bounded.
const CLIENT_QUEUE: usize = 8;

/// Padded so shards sitting side by side do not share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<HashMap<TransactionKey, Entry>>);

/// The RFC 3261 §17 transaction layer: matches messages to transactions,
/// retransmits, and runs the timers. Cheap to clone (one `Arc`).
///
/// Must be used from within a tokio runtime (timer tasks are spawned on the
/// current one).
#[derive(Clone)]
pub struct TransactionLayer {
    inner: Arc<Inner>,
}

struct Inner {
    shards: [Shard; SHARDS],
    hasher: std::collections::hash_map::RandomState,
    config: TimerConfig,
    transmit: Arc<dyn Transmit>,
    metrics: Metrics,
    /// Source of entry ids, so a handle never acts on a later transaction
    /// that happens to reuse its key.
    next_id: AtomicU64,
    /// When to look at which entry; see the module docs.
    queue: Mutex<BinaryHeap<Reverse<Queued>>>,
    /// Retired Completed non-INVITE server transactions (UDP), sharded like
    /// the table, and their expiry order.
    retired: [Mutex<HashMap<TransactionKey, Retired>>; SHARDS],
    retired_order: Mutex<VecDeque<(Instant, TransactionKey)>>,
    /// Entries in `retired`, kept beside it so counting them takes no lock.
    retired_len: AtomicUsize,
    /// Wakes the driver when the earliest deadline moves earlier (and when
    /// the layer is dropped, so the driver exits).
    wake: Arc<Notify>,
    driver_started: AtomicBool,
}

/// Granularity of retired-transaction expiry (see `expire_retired`).
const RETIRE_BATCH: std::time::Duration = std::time::Duration::from_millis(250);

/// How often the driver gives back unused table capacity.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a response is a 401 or 407 challenge.
fn is_challenge(response: &[u8]) -> bool {
    matches!(response.get(8..12), Some(b"401 " | b"407 "))
}

/// A Completed non-INVITE server transaction kept only to answer
/// retransmissions (see the module docs).
struct Retired {
    response: Bytes,
    target: Target,
    until: Instant,
}

/// One timer-queue item: look at entry `id` under `key` at `at`. Ordered
/// by `(at, id)`; ids are unique per entry, so the key need not take part.
#[derive(Debug)]
struct Queued {
    at: Instant,
    id: u64,
    key: TransactionKey,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

#[expect(
    clippy::enum_variant_names,
    reason = "the variants are the four RFC 3261 machines"
)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine {
    fn kind(&self) -> TransactionKind {
        match self {
            Machine::ClientInvite(_) => TransactionKind::ClientInvite,
            Machine::ClientNonInvite(_) => TransactionKind::ClientNonInvite,
            Machine::ServerInvite(_) => TransactionKind::ServerInvite,
            Machine::ServerNonInvite(_) => TransactionKind::ServerNonInvite,
        }
    }

    fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        match self {
            Machine::ClientInvite(m) => m.on_timer(timer),
            Machine::ClientNonInvite(m) => m.on_timer(timer),
            Machine::ServerInvite(m) => m.on_timer(timer),
            Machine::ServerNonInvite(m) => m.on_timer(timer),
        }
    }

    fn on_transport_error(&mut self) -> Vec<Output> {
        match self {
            Machine::ClientInvite(m) => m.on_transport_error(),
            Machine::ClientNonInvite(m) => m.on_transport_error(),
            Machine::ServerInvite(m) => m.on_transport_error(),
            Machine::ServerNonInvite(m) => m.on_transport_error(),
        }
    }
}

/// Where a machine's notifications for the TU go.
enum Listener {
    Client(mpsc::Sender<ClientEvent>),
    Server(oneshot::Sender<ServerEvent>),
    /// The handle is gone (or the one-shot was used).
    Gone,
}

/// Timers a machine can have pending at once (A+B, E+F, G+H).
const TIMER_SLOTS: usize = 2;

struct Entry {
    id: u64,
    machine: Machine,
    target: Target,
    timers: [Option<(Timer, Instant)>; TIMER_SLOTS],
    /// Removal deadline once the handle is dropped with no timer pending.
    guard: Option<Instant>,
    handle_dropped: bool,
    listener: Listener,
    /// The earliest deadline this entry has in the timer queue, if any.
    queued: Option<Instant>,
}

impl Entry {
    fn new(id: u64, machine: Machine, target: Target, listener: Listener) -> Self {
        Self {
            id,
            machine,
            target,
            timers: [None; TIMER_SLOTS],
            guard: None,
            handle_dropped: false,
            listener,
            queued: None,
        }
    }

    fn start(&mut self, timer: Timer, at: Instant) {
        let slot = self
            .timers
            .iter()
            .position(|s| matches!(s, Some((t, _)) if *t == timer))
            .or_else(|| self.timers.iter().position(Option::is_none));
        match slot {
            Some(i) => self.timers[i] = Some((timer, at)),
            None => warn!(?timer, "no free timer slot; timer dropped"),
        }
    }

    fn stop(&mut self, timer: Timer) {
        for slot in &mut self.timers {
            if matches!(slot, Some((t, _)) if *t == timer) {
                *slot = None;
            }
        }
    }

    fn has_timers(&self) -> bool {
        self.timers.iter().any(Option::is_some)
    }

    /// Arms the guard iff the TU is gone and no machine timer bounds the
    /// transaction's life; a machine timer always does, so it disarms it.
    fn update_guard(&mut self, now: Instant, config: &TimerConfig) {
        if self.handle_dropped && !self.has_timers() {
            self.guard.get_or_insert(now + config.timeout());
        } else {
            self.guard = None;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .map(|&(_, at)| at)
            .chain(self.guard)
            .min()
    }

    /// The earliest machine timer due at `now`, disarmed.
    fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let slot = self
            .timers
            .iter_mut()
            .filter(|s| matches!(s, Some((_, at)) if *at <= now))
            .min_by_key(|s| s.map(|(_, at)| at))?;
        slot.take().map(|(timer, _)| timer)
    }

    fn tell_client(&mut self, event: ClientEvent, provisional: bool) {
        if let Listener::Client(tx) = &self.listener {
            if provisional && tx.capacity() <= 1 {
                debug!("TU not reading; provisional response dropped");
                return;
            }
            // Full or closed: the TU is not listening any more.
            let _ = tx.try_send(event);
        }
    }

    fn tell_server(&mut self, event: ServerEvent) {
        if let Listener::Server(_) = self.listener
            && let Listener::Server(tx) = std::mem::replace(&mut self.listener, Listener::Gone)
        {
            let _ = tx.send(event);
        }
    }
}

/// What one step did, beyond what was applied to the entry.
#[derive(Default)]
struct Effects {
    sends: Vec<Bytes>,
    target: Option<Target>,
    terminated: bool,
    ack_to_tu: bool,
}

impl TransactionLayer {
    /// A layer with the given timer values, sending through `transmit`.
    pub fn new(config: TimerConfig, transmit: Arc<dyn Transmit>) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| Shard::default()),
                hasher: Default::default(),
                config,
                transmit,
                metrics: Metrics::default(),
                next_id: AtomicU64::new(1),
                queue: Mutex::new(BinaryHeap::new()),
                retired: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                retired_order: Mutex::new(VecDeque::new()),
                retired_len: AtomicUsize::new(0),
                wake: Arc::new(Notify::new()),
                driver_started: AtomicBool::new(false),
            }),
        }
    }

    /// The timer values in use.
    pub fn config(&self) -> TimerConfig {
        self.inner.config
    }

    /// A request arrived from `target`, keyed by the caller
    /// ([`TransactionKey::server`] or [`TransactionKey::legacy`]):
    /// [`TransactionLayer::match_request`], then, for a request that
    /// matched nothing, [`TransactionLayer::create_server`].
    ///
    /// `is_invite` says which machine a new transaction gets and must agree
    /// with the key; `is_ack` marks an ACK, which never creates a
    /// transaction. `trying` builds the 100 Trying to send at once for a new
    /// INVITE; it is not called for retransmissions or other methods.
    pub fn on_request(
        &self,
        key: TransactionKey,
        is_invite: bool,
        is_ack: bool,
        target: Target,
        trying: impl FnOnce() -> Option<Bytes>,
    ) -> Incoming {
        match self.match_request(&key, is_ack) {
            Some(incoming) => incoming,
            None => self.create_server(key, is_invite, target, trying),
        }
    }

    /// Matches a request to a live server transaction (or a retired one
    /// that still answers retransmissions): `Some` for a retransmission,
    /// handled (the last response resent as the state requires), and for
    /// every ACK; `None` when the request would start a new transaction.
    pub fn match_request(&self, key: &TransactionKey, is_ack: bool) -> Option<Incoming> {
        let inner = &self.inner;
        let map = inner.lock(key);
        if map.contains_key(key) {
            return Some(inner.existing(map, key, is_ack));
        }
        if is_ack {
            return Some(Incoming::AckFor2xx);
        }
        let shard = inner.shard_index(key);
        let resend = inner.retired[shard]
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|r| (r.response.clone(), r.target)));
        let (bytes, to) = resend?;
        drop(map);
        bump(&inner.metrics.retransmissions_absorbed);
        bump(&inner.metrics.retransmissions_sent);
        inner.transmit.transmit(&to, bytes);
        Some(Incoming::Retransmission)
    }

    /// Starts a server transaction for a request (not an ACK) that
    /// [`TransactionLayer::match_request`] found no transaction for. If one
    /// was created meanwhile (the same request arriving twice at once), the
    /// request is that transaction's retransmission.
    pub fn create_server(
        &self,
        key: TransactionKey,
        is_invite: bool,
        target: Target,
        trying: impl FnOnce() -> Option<Bytes>,
    ) -> Incoming {
        let inner = &self.inner;
        let now = Instant::now();
        let mut map = inner.lock(&key);
        if map.contains_key(&key) {
            return inner.existing(map, &key, false);
        }
        let (machine, outputs, listener, events) = if is_invite {
            let (m, out) = ServerInvite::new(inner.config, target.transport, trying());
            let (tx, rx) = oneshot::channel();
            (Machine::ServerInvite(m), out, Listener::Server(tx), rx)
        } else {
            let (m, out) = ServerNonInvite::new(inner.config, target.transport);
            let (tx, rx) = oneshot::channel();
            (Machine::ServerNonInvite(m), out, Listener::Server(tx), rx)
        };
        let id = inner.insert(&mut map, key.clone(), machine, target, listener);
        let fx = inner.step(&mut map, &key, outputs, None, now);
        drop(map);
        inner.flush(fx);
        Incoming::New(ServerTx {
            inner: Arc::clone(inner),
            key,
            id,
            events: Some(events),
        })
    }

    /// Live server transactions: in the table, and retired ones still
    /// answering retransmissions (what a cap on server state counts).
    pub fn server_live(&self) -> usize {
        let m = &self.inner.metrics;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let created = load(&m.created[TransactionKind::ServerInvite.index()])
            + load(&m.created[TransactionKind::ServerNonInvite.index()]);
        let terminated = load(&m.terminated[TransactionKind::ServerInvite.index()])
            + load(&m.terminated[TransactionKind::ServerNonInvite.index()]);
        let table = usize::try_from(created.saturating_sub(terminated)).unwrap_or(usize::MAX);
        table.saturating_add(self.inner.retired_len.load(Ordering::Relaxed))
    }

    /// Start a client transaction: send `bytes` (the request) to `target`
    /// and retransmit/time out as RFC 3261 requires.
    ///
    /// `key` is [`TransactionKey::client`] of the branch in our top Via. If a
    /// transaction with that key is already live (a reused branch: a TU
    /// bug) nothing is sent and the handle reports
    /// [`ClientEvent::TransportError`] at once.
    pub fn send_request(
        &self,
        key: TransactionKey,
        is_invite: bool,
        target: Target,
        bytes: Bytes,
    ) -> ClientTx {
        let inner = &self.inner;
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let now = Instant::now();
        let mut map = inner.lock(&key);
        if map.contains_key(&key) {
            drop(map);
            warn!(?key, "client transaction key already in use");
            bump(&inner.metrics.transport_errors);
            let _ = tx.try_send(ClientEvent::TransportError);
            return ClientTx {
                inner: Arc::clone(inner),
                key,
                id: 0,
                events: rx,
            };
        }
        let (machine, outputs) = if is_invite {
            let (m, out) = ClientInvite::new(inner.config, target.transport, bytes);
            (Machine::ClientInvite(m), out)
        } else {
            let (m, out) = ClientNonInvite::new(inner.config, target.transport, bytes);
            (Machine::ClientNonInvite(m), out)
        };
        let id = inner.insert(&mut map, key.clone(), machine, target, Listener::Client(tx));
        let fx = inner.step(&mut map, &key, outputs, None, now);
        drop(map);
        inner.flush(fx);
        ClientTx {
            inner: Arc::clone(inner),
            key,
            id,
            events: rx,
        }
    }

    /// A response arrived, keyed by [`TransactionKey::client`] of its top
    /// Via branch and CSeq method. `ack` builds, from the INVITE's bytes,
    /// the ACK to send if this is the first 300-699 to an INVITE (the
    /// caller can parse messages; the layer cannot).
    ///
    /// Returns false for a stray response (no transaction): the caller
    /// passes a stray 2xx to INVITE on to the dialog layer, which owns
    /// 2xx retransmissions and the ACK for them.
    pub fn on_response(
        &self,
        key: &TransactionKey,
        code: u16,
        bytes: Bytes,
        ack: impl FnOnce(&Bytes) -> Bytes,
    ) -> bool {
        let found = self
            .inner
            .with_entry(key, None, Some(&bytes), |machine| match machine {
                Machine::ClientInvite(m) => m.on_response(code, ack),
                Machine::ClientNonInvite(m) => m.on_response(code),
                Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => Vec::new(),
            });
        if !found {
            bump(&self.inner.metrics.stray_responses);
        }
        found
    }

    /// The transport failed to deliver for the transaction `key` (e.g. its
    /// stream connection broke). Returns false if no such transaction.
    pub fn on_transport_error(&self, key: &TransactionKey) -> bool {
        self.inner
            .with_entry(key, None, None, Machine::on_transport_error)
    }

    /// Whether a transaction with this key is live (e.g. to answer a CANCEL
    /// with 481 when [`TransactionKey::cancelled_invite`] is not).
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.inner.lock(key).contains_key(key)
    }

    /// How many transactions are live.
    pub fn live(&self) -> usize {
        let table: usize = self.inner.shards.iter().map(|s| lock(s).len()).sum();
        let retired: usize = self
            .inner
            .retired
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        table + retired
    }

    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let m = &self.inner.metrics;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            created: KindCounts::from_atomics(&m.created),
            terminated: KindCounts::from_atomics(&m.terminated),
            retransmissions_sent: load(&m.retransmissions_sent),
            retransmissions_absorbed: load(&m.retransmissions_absorbed),
            timeouts: load(&m.timeouts),
            transport_errors: load(&m.transport_errors),
            stray_responses: load(&m.stray_responses),
        }
    }
}

impl fmt::Debug for TransactionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionLayer")
            .field("config", &self.inner.config)
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<TransactionKey, Entry>> {
    // A panic while holding a shard lock leaves a consistent map (entries
    // are replaced whole), so poisoning is ignored.
    shard.0.lock().unwrap_or_else(PoisonError::into_inner)
}

type Table = HashMap<TransactionKey, Entry>;

/// The TU's handle on a server transaction.
///
/// Dropping it before a final response was sent sends nothing: the
/// transaction keeps absorbing retransmissions (resending the last
/// provisional) for 64·T1 and is then forgotten, so a buggy TU cannot leak
/// memory. After a final response, dropping it changes nothing.
pub struct ServerTx {
    inner: Arc<Inner>,
    key: TransactionKey,
    id: u64,
    events: Option<oneshot::Receiver<ServerEvent>>,
}

impl ServerTx {
    /// The transaction's key.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// Send a response (status `code`, serialized as `bytes`) to the
    /// request's source. The transaction keeps it for retransmission as its
    /// state requires and starts Timers G/H/L/J; it discards responses its
    /// state forbids (e.g. a second final). Returns false if the transaction
    /// is already gone (terminated, timed out, transport error, or — a
    /// non-INVITE over UDP — answered and retired until Timer J).
    pub fn respond(&self, code: u16, bytes: Bytes) -> bool {
        self.inner
            .with_entry(&self.key, Some(self.id), None, |machine| match machine {
                Machine::ServerInvite(m) => m.respond(code, bytes),
                Machine::ServerNonInvite(m) => m.respond(code, bytes),
                Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => Vec::new(),
            })
    }

    /// Waits for a failure (Timer H, transport error). `None` once the
    /// transaction ended without one, or after a failure was returned.
    pub async fn next_event(&mut self) -> Option<ServerEvent> {
        let rx = self.events.as_mut()?;
        let event = rx.await.ok();
        self.events = None;
        event
    }
}

impl Drop for ServerTx {
    fn drop(&mut self) {
        self.inner.release(&self.key, self.id);
    }
}

impl fmt::Debug for ServerTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTx")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The TU's handle on a client transaction.
///
/// Dropping it does not stop the transaction: retransmissions, the ACK for
/// a 300-699 and the timers run to the end (an INVITE left in Proceeding is
/// forgotten 64·T1 later); events are discarded.
pub struct ClientTx {
    inner: Arc<Inner>,
    key: TransactionKey,
    id: u64,
    events: mpsc::Receiver<ClientEvent>,
}

impl ClientTx {
    /// The transaction's key.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The next thing the TU must know: responses in order, then `Timeout`
    /// or `TransportError` on failure. `None` once the transaction has
    /// ended and every event was read. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }
}

impl Drop for ClientTx {
    fn drop(&mut self) {
        self.inner.release(&self.key, self.id);
    }
}

impl fmt::Debug for ClientTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTx")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

mod inner;

#[cfg(test)]
mod tests;
