//! The endpoint: transports below, transactions in the middle, a
//! transaction user ([`Core`]) above.
//!
//! Received bytes are parsed here; a message that does not parse is
//! answered with 400 when the headers for a response survive, otherwise
//! dropped and counted (never a panic, never a stuck task). Requests get
//! their top Via stamped with `received`/`rport` (RFC 3261 §18.2.1,
//! RFC 3581) and are matched to server transactions, so retransmissions are
//! absorbed before the core sees them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use switchboard_sip::message::{self, Message, Request, Response, Via};
use switchboard_sip::request::ack_for_failure;
use switchboard_sip::response::{ResponseBuilder, response};
use tracing::{debug, trace};

use crate::edge::{Edge, Relay};
use crate::flood::{Rate, RateLimiter, Verdict};
use crate::merge::{MERGE_CAPACITY, MergeGuard};
use crate::target::{Target, TransportKind};
use crate::transaction::{
    ClientTx, Incoming, ServerTx, TimerConfig, TransactionKey, TransactionLayer, Transmit,
    has_magic_cookie,
};
use crate::transport::{Receive, Received, Transports};

/// What [`Core::screen`] decided about a request before any transaction
/// exists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Start the server transaction and call [`Core::on_request`].
    Accept,
    /// Send this response (status code, bytes) and create no transaction:
    /// a retransmission of the request is screened again. Build it with
    /// the endpoint's stateless To tag so the ACK for it is absorbed.
    Reply(u16, Bytes),
    /// Say nothing and create no transaction.
    Drop,
}

/// The transaction user: what the application (registrar, B2BUA) implements.
pub trait Core: Send + Sync + 'static {
    /// A new request inside its server transaction. Respond through `tx`;
    /// dropping `tx` without a final response leaves the peer to time out.
    fn on_request(&self, req: Request, tx: ServerTx, from: Target);

    /// A request that would start a server transaction (not an ACK, not a
    /// retransmission of a live transaction, within the limits) before the
    /// transaction exists, and so before an INVITE's 100 Trying: the place
    /// for stateless answers such as a digest challenge to a request
    /// without credentials. `stateless_tag` is the To tag such a reply must
    /// carry (`response(req, ..).to_tag(stateless_tag)`): the endpoint then
    /// absorbs the ACK a client sends for a non-2xx reply to INVITE.
    /// Runs on the receive task: must not block.
    fn screen(&self, _req: &Request, _from: &Target, _stateless_tag: &str) -> Screen {
        Screen::Accept
    }

    /// An ACK for a 2xx: it belongs to the dialog, not to a transaction.
    fn on_ack(&self, _req: Request, _from: Target) {}

    /// A response that matched no client transaction (RFC 3261 §17.1.3:
    /// passed to the core, which a B2BUA may use for 2xx retransmissions).
    fn on_stray_response(&self, _resp: Response, _from: Target) {}

    /// A request or response that did not parse: `answered` says whether a
    /// 400 was sent. For metrics.
    fn on_malformed(&self, _from: Target, _answered: bool) {}

    /// A retransmission the transaction layer absorbed. For metrics.
    fn on_retransmission(&self) {}

    /// A response the endpoint sent on its own, outside any transaction
    /// (503 at a limit, 482 for a merged request). For metrics.
    fn on_stateless_reply(&self, _code: u16) {}
}

/// Sends through the transports once they exist. The transaction layer is
/// built before the sockets are bound (they need the endpoint to deliver
/// to), so it holds this indirection.
#[derive(Default)]
pub struct Wire {
    transports: OnceLock<Arc<Transports>>,
}

impl Wire {
    pub fn set(&self, t: Arc<Transports>) {
        let _ = self.transports.set(t);
    }

    pub fn transports(&self) -> Option<&Arc<Transports>> {
        self.transports.get()
    }
}

impl Transmit for Wire {
    fn transmit(&self, target: &Target, bytes: Bytes) {
        if let Some(t) = self.transports.get() {
            t.send(target, bytes);
        }
    }
}

/// Bounds on what requests may start; [`Limits::default`] has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per source (IPv4 address, IPv6 /64) that may start a
    /// transaction; `None`: unlimited.
    pub rate: Option<Rate>,
    /// Most live server transactions (retired ones included); 0: no cap.
    pub max_transactions: usize,
}

/// Sources the rate limiter tracks at most (about 100 bytes each).
const RATE_SOURCES: usize = 65_536;

/// Retry-After of a 503 for a source over its rate: a token is back
/// within a second at any rate of one per second or more.
const RATE_RETRY_AFTER: &str = "1";

/// Retry-After of a 503 at the transaction cap: transactions end within
/// 64·T1 (32 s); most sooner.
const OVERLOAD_RETRY_AFTER: &str = "5";

/// Counters of the endpoint itself.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub malformed_answered: AtomicU64,
    pub malformed_dropped: AtomicU64,
    pub retransmissions_absorbed: AtomicU64,
    /// INVITEs answered 482 as merged requests (RFC 3261 §8.2.2.2).
    pub merged_rejected: AtomicU64,
    /// Requests over their source's rate answered 503.
    pub rate_refused: AtomicU64,
    /// Requests over twice their source's rate, dropped unanswered.
    pub rate_dropped: AtomicU64,
    /// Requests answered 503 because the transaction cap was reached.
    pub overload_refused: AtomicU64,
    /// Requests the core answered or dropped in [`Core::screen`].
    pub screened: AtomicU64,
    /// ACKs for our stateless non-2xx replies, absorbed.
    pub stateless_acks: AtomicU64,
    /// Messages relayed for another replica (see [`crate::edge`]).
    pub edge_forwarded: AtomicU64,
    /// Messages for the edge dropped: a forged token or branch.
    pub edge_dropped: AtomicU64,
}

pub struct Endpoint {
    pub layer: Arc<TransactionLayer>,
    pub wire: Arc<Wire>,
    core: Arc<dyn Core>,
    pub stats: EndpointStats,
    merged: MergeGuard,
    limiter: Option<RateLimiter>,
    max_transactions: usize,
    stateless_tag: String,
    edge: OnceLock<Edge>,
}

impl Endpoint {
    /// An endpoint without limits (a client, a test peer).
    pub fn new(core: Arc<dyn Core>, timers: TimerConfig) -> Arc<Self> {
        Self::with_limits(core, timers, Limits::default())
    }

    /// An endpoint that refuses requests beyond `limits`.
    pub fn with_limits(core: Arc<dyn Core>, timers: TimerConfig, limits: Limits) -> Arc<Self> {
        let wire = Arc::new(Wire::default());
        let layer = Arc::new(TransactionLayer::new(timers, wire.clone()));
        Arc::new(Self {
            layer,
            wire,
            core,
            stats: EndpointStats::default(),
            merged: MergeGuard::new(timers.t1 * 64, MERGE_CAPACITY),
            limiter: limits.rate.map(|r| RateLimiter::new(r, RATE_SOURCES)),
            max_transactions: limits.max_transactions,
            stateless_tag: format!("sl-{:016x}", rand::random::<u64>()),
            edge: OnceLock::new(),
        })
    }

    /// Makes this endpoint the edge for other replicas' requests to the
    /// phones it holds flows of (once; later calls are ignored).
    pub fn set_edge(&self, edge: Edge) {
        let _ = self.edge.set(edge);
    }

    /// The edge, when this endpoint is one.
    pub fn edge(&self) -> Option<&Edge> {
        self.edge.get()
    }

    /// Applies the edge's decision; whether the message was the edge's.
    fn relayed(&self, relay: Relay, from: &Target) -> bool {
        match relay {
            Relay::Pass => return false,
            Relay::Forward(to, bytes) => {
                self.stats.edge_forwarded.fetch_add(1, Ordering::Relaxed);
                self.wire.transmit(&to, bytes);
            }
            Relay::Reply(bytes) => {
                self.stats.edge_forwarded.fetch_add(1, Ordering::Relaxed);
                self.wire.transmit(from, bytes);
            }
            Relay::Drop(why) => {
                self.stats.edge_dropped.fetch_add(1, Ordering::Relaxed);
                debug!(%from, why, "edge message dropped");
            }
        }
        true
    }

    /// Sends a request in a new client transaction.
    pub fn send_request(
        &self,
        key: TransactionKey,
        is_invite: bool,
        target: Target,
        bytes: Bytes,
    ) -> ClientTx {
        self.layer.send_request(key, is_invite, target, bytes)
    }

    /// Sends bytes outside any transaction (a 2xx ACK, a stateless reply).
    pub fn send_raw(&self, target: &Target, bytes: Bytes) {
        self.wire.transmit(target, bytes);
    }

    /// The To tag of every stateless reply of this endpoint; an ACK that
    /// matches no transaction and carries it is absorbed.
    pub fn stateless_tag(&self) -> &str {
        &self.stateless_tag
    }

    /// A response to `req` carrying the stateless To tag, for a reply sent
    /// outside any transaction with [`Endpoint::send_raw`].
    pub fn stateless_response<'a>(
        &'a self,
        req: &'a Request,
        code: u16,
        reason: &'a str,
    ) -> ResponseBuilder<'a> {
        response(req, code, reason).to_tag(&self.stateless_tag)
    }

    /// The rate limiter's table: sources tracked and evicted at capacity.
    pub fn rate_sources(&self) -> Option<(usize, u64)> {
        self.limiter.as_ref().map(|l| (l.tracked(), l.evictions()))
    }

    /// The merged-request guard: INVITEs remembered, and evicted early at
    /// its capacity.
    pub fn merge_guard(&self) -> (usize, u64) {
        (
            self.merged.len(),
            self.merged.evictions.load(Ordering::Relaxed),
        )
    }

    fn reply(&self, req: &Request, from: &Target, code: u16, reason: &str, retry: Option<&str>) {
        let mut b = self.stateless_response(req, code, reason);
        if let Some(seconds) = retry {
            b = b.header("Retry-After", seconds);
        }
        self.wire.transmit(from, Bytes::from(b.build()));
        self.core.on_stateless_reply(code);
    }

    fn on_request(&self, mut req: Request, from: Target) {
        if let (Some(conn), Some(alias)) = (from.conn, crate::alias::via_alias(&req.vias[0], &from))
            && let Some(t) = self.wire.transports()
        {
            t.add_alias(conn, alias);
        }
        stamp_via(&mut req.vias[0], &from.remote);
        let key = server_key(&req, from.transport);
        let method = req.method.to_string();
        if method == "ACK" {
            return self.on_ack(req, &key, from);
        }
        if let Some(incoming) = self.layer.match_request(&key, false) {
            return self.absorbed(incoming);
        }
        // A request that would start a transaction: the limits, cheapest
        // first, then the core's screen, then the merge guard.
        if let Some(limiter) = &self.limiter {
            match limiter.check(from.remote.ip(), Instant::now()) {
                Verdict::Admit => {}
                Verdict::Refuse => {
                    self.stats.rate_refused.fetch_add(1, Ordering::Relaxed);
                    return self.reply(
                        &req,
                        &from,
                        503,
                        "Service Unavailable",
                        Some(RATE_RETRY_AFTER),
                    );
                }
                Verdict::Drop => {
                    self.stats.rate_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if self.max_transactions > 0 && self.layer.server_live() >= self.max_transactions {
            self.stats.overload_refused.fetch_add(1, Ordering::Relaxed);
            return self.reply(
                &req,
                &from,
                503,
                "Service Unavailable",
                Some(OVERLOAD_RETRY_AFTER),
            );
        }
        match self.core.screen(&req, &from, &self.stateless_tag) {
            Screen::Accept => {}
            Screen::Reply(_, bytes) => {
                self.stats.screened.fetch_add(1, Ordering::Relaxed);
                return self.wire.transmit(&from, bytes);
            }
            Screen::Drop => {
                self.stats.screened.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let is_invite = method == "INVITE";
        if is_invite && req.to.tag().is_none() && self.merged.is_merged(&req, &key) {
            self.stats.merged_rejected.fetch_add(1, Ordering::Relaxed);
            return self.reply(&req, &from, 482, "Loop Detected", None);
        }
        let trying = || is_invite.then(|| Bytes::from(response(&req, 100, "Trying").build()));
        match self.layer.create_server(key, is_invite, from, trying) {
            Incoming::New(tx) => self.core.on_request(req, tx, from),
            other => self.absorbed(other),
        }
    }

    fn on_ack(&self, req: Request, key: &TransactionKey, from: Target) {
        match self.layer.match_request(key, true) {
            Some(Incoming::AckFor2xx) | None => {
                if req.to.tag() == Some(self.stateless_tag.as_str()) {
                    // the ACK for a stateless non-2xx reply to an INVITE
                    self.stats.stateless_acks.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.core.on_ack(req, from);
                }
            }
            Some(other) => self.absorbed(other),
        }
    }

    fn absorbed(&self, incoming: Incoming) {
        match incoming {
            Incoming::Retransmission | Incoming::AckForCompleted => {
                self.stats
                    .retransmissions_absorbed
                    .fetch_add(1, Ordering::Relaxed);
                self.core.on_retransmission();
            }
            // not produced for these calls
            Incoming::New(_) | Incoming::AckFor2xx => {}
        }
    }

    /// INVITEs answered 482 as merged requests (RFC 3261 §8.2.2.2).
    pub fn merged_rejected(&self) -> u64 {
        self.stats.merged_rejected.load(Ordering::Relaxed)
    }

    fn on_response(&self, resp: Response, bytes: Bytes, from: Target) {
        let Some(via) = resp.vias.first() else {
            return;
        };
        let Some(branch) = via.branch.as_deref() else {
            self.core.on_stray_response(resp, from);
            return;
        };
        let method = resp.cseq_method.to_string();
        let key = TransactionKey::client(branch, &method);
        let to = resp.header("To").unwrap_or_default();
        let ack = |invite: &Bytes| match message::parse(invite) {
            Ok(Message::Request(inv)) => Bytes::from(ack_for_failure(&inv, to)),
            _ => Bytes::new(),
        };
        if !self.layer.on_response(&key, resp.code, bytes, ack) {
            self.core.on_stray_response(resp, from);
        }
    }
}

/// Whether a message may start a transaction: a request other than ACK.
/// Responses and ACKs never do and are never refused by a limit (an ACK
/// for a 2xx belongs to a call that already passed them). Looks only at
/// the first bytes of the start line, so it runs before parsing.
fn may_start_transaction(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let line = &bytes[start..];
    !(line.starts_with(b"SIP/") || line.starts_with(b"ACK "))
}

impl Receive for Endpoint {
    fn receive(&self, bytes: Bytes, from: Target) -> Received {
        // A source far over its rate: its requests are dropped before the
        // cost of parsing them.
        if let Some(limiter) = &self.limiter
            && limiter.is_flooding(from.remote.ip(), Instant::now())
            && may_start_transaction(&bytes)
        {
            self.stats.rate_dropped.fetch_add(1, Ordering::Relaxed);
            return Received::NotSip;
        }
        match message::parse(&bytes) {
            Ok(Message::Request(req)) => {
                trace!(call_id = %req.call_id, method = %req.method, %from, "request");
                if req.vias.is_empty() {
                    self.malformed(from, false);
                    return Received::NotSip;
                }
                if let Some(edge) = self.edge.get()
                    && self.relayed(edge.request(&req, &from), &from)
                {
                    return Received::Sip;
                }
                self.on_request(req, from);
                Received::Sip
            }
            Ok(Message::Response(resp)) => {
                if let Some(edge) = self.edge.get()
                    && self.relayed(edge.response(&resp), &from)
                {
                    return Received::Sip;
                }
                self.on_response(resp, bytes, from);
                Received::Sip
            }
            Err(e) => {
                debug!(%from, reason = %e.reason, "malformed message");
                match e.bad_request {
                    Some(reply) => {
                        self.wire.transmit(&from, Bytes::from(reply));
                        self.malformed(from, true);
                    }
                    None => self.malformed(from, false),
                }
                Received::NotSip
            }
        }
    }
}

impl Endpoint {
    fn malformed(&self, from: Target, answered: bool) {
        let counter = if answered {
            &self.stats.malformed_answered
        } else {
            &self.stats.malformed_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.core.on_malformed(from, answered);
    }
}

#[cfg(test)]
#[test]
fn what_may_start_a_transaction() {
    for (bytes, want) in [
        (&b"INVITE sip:a SIP/2.0\r\n"[..], true),
        (b"\r\nREGISTER sip:a SIP/2.0\r\n", true),
        (b"ACK sip:a SIP/2.0\r\n", false),
        (b"ACKX sip:a SIP/2.0\r\n", true),
        (b"SIP/2.0 200 OK\r\n", false),
        (b"", true),
    ] {
        assert_eq!(may_start_transaction(bytes), want, "{bytes:?}");
    }
}

/// RFC 3261 §17.2.3 matching key of a request.
pub fn server_key(req: &Request, transport: TransportKind) -> TransactionKey {
    let via = &req.vias[0];
    match via.branch.as_deref() {
        Some(b) if has_magic_cookie(b) => {
            TransactionKey::server(b, &via.host, via.port, transport, &req.method.to_string())
        }
        _ => TransactionKey::legacy(
            &req.uri.to_string(),
            req.from.tag().unwrap_or(""),
            &req.call_id,
            req.cseq,
            &req.cseq_method.to_string(),
            &via.raw,
            req.to.tag().unwrap_or(""),
        ),
    }
}

/// Adds `received` when the sent-by host is not the packet's source and
/// fills a bare `rport` with the source port (RFC 3581 §4), rewriting the
/// raw value that responses copy.
///
/// Responses always go back to the packet's source address and port
/// (symmetric signaling), whether or not the phone asked with `rport`: a
/// phone behind NAT is only reachable there, and every softphone we know
/// listens on the port it sends from. This trades RFC 3261 §18.2.2's
/// "Via port without rport" for working through NAT, as Kamailio's
/// `force_rport()` does.
pub fn stamp_via(via: &mut Via, source: &SocketAddr) {
    let ip = source.ip().to_string();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let needs_received = host != ip;
    let wants_rport = matches!(via.rport, Some(None));
    if !needs_received && !wants_rport {
        return;
    }
    let mut raw = String::with_capacity(via.raw.len() + 40);
    for (i, part) in via.raw.split(';').enumerate() {
        let name = part.split('=').next().unwrap_or("").trim();
        if i > 0 && (name.eq_ignore_ascii_case("rport") || name.eq_ignore_ascii_case("received")) {
            continue;
        }
        if i > 0 {
            raw.push(';');
        }
        raw.push_str(part);
    }
    if needs_received || wants_rport {
        raw.push_str(";received=");
        raw.push_str(&ip);
        via.received = Some(ip);
    }
    if wants_rport {
        raw.push_str(";rport=");
        raw.push_str(&source.port().to_string());
        via.rport = Some(Some(source.port()));
    } else if let Some(Some(p)) = via.rport {
        raw.push_str(";rport=");
        raw.push_str(&p.to_string());
    }
    via.raw = raw;
}
