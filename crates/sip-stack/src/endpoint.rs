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

use bytes::Bytes;
use switchboard_sip::message::{self, Message, Request, Response, Via};
use switchboard_sip::request::ack_for_failure;
use switchboard_sip::response::response;
use tracing::{debug, trace};

use crate::merge::MergeGuard;
use crate::target::{Target, TransportKind};
use crate::transaction::{
    ClientTx, Incoming, ServerTx, TimerConfig, TransactionKey, TransactionLayer, Transmit,
    has_magic_cookie,
};
use crate::transport::{Receive, Transports};

/// The transaction user: what the application (registrar, B2BUA) implements.
pub trait Core: Send + Sync + 'static {
    /// A new request inside its server transaction. Respond through `tx`;
    /// dropping `tx` without a final response leaves the peer to time out.
    fn on_request(&self, req: Request, tx: ServerTx, from: Target);

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

/// Counters of the endpoint itself.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub malformed_answered: AtomicU64,
    pub malformed_dropped: AtomicU64,
    pub retransmissions_absorbed: AtomicU64,
}

pub struct Endpoint {
    pub layer: Arc<TransactionLayer>,
    pub wire: Arc<Wire>,
    core: Arc<dyn Core>,
    pub stats: EndpointStats,
    merged: MergeGuard,
    merged_rejected: AtomicU64,
}

impl Endpoint {
    pub fn new(core: Arc<dyn Core>, timers: TimerConfig) -> Arc<Self> {
        let wire = Arc::new(Wire::default());
        let layer = Arc::new(TransactionLayer::new(timers, wire.clone()));
        Arc::new(Self {
            layer,
            wire,
            core,
            stats: EndpointStats::default(),
            merged: MergeGuard::new(timers.t1 * 64),
            merged_rejected: AtomicU64::new(0),
        })
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

    fn on_request(&self, mut req: Request, from: Target) {
        stamp_via(&mut req.vias[0], &from.remote);
        let key = server_key(&req, from.transport);
        let method = req.method.to_string();
        let is_ack = method == "ACK";
        let is_invite = method == "INVITE";
        if is_invite
            && req.to.tag().is_none()
            && let Some(reply) = self.merged.check(&req, &key)
        {
            self.merged_rejected.fetch_add(1, Ordering::Relaxed);
            self.wire.transmit(&from, reply);
            return;
        }
        let trying = || is_invite.then(|| Bytes::from(response(&req, 100, "Trying").build()));
        match self.layer.on_request(key, is_invite, is_ack, from, trying) {
            Incoming::New(tx) => self.core.on_request(req, tx, from),
            Incoming::AckFor2xx => self.core.on_ack(req, from),
            Incoming::Retransmission | Incoming::AckForCompleted => {
                self.stats
                    .retransmissions_absorbed
                    .fetch_add(1, Ordering::Relaxed);
                self.core.on_retransmission();
            }
        }
    }

    /// INVITEs answered 482 as merged requests (RFC 3261 §8.2.2.2).
    pub fn merged_rejected(&self) -> u64 {
        self.merged_rejected.load(Ordering::Relaxed)
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

impl Receive for Endpoint {
    fn receive(&self, bytes: Bytes, from: Target) {
        match message::parse(&bytes) {
            Ok(Message::Request(req)) => {
                trace!(call_id = %req.call_id, method = %req.method, %from, "request");
                if req.vias.is_empty() {
                    self.malformed(from, false);
                    return;
                }
                self.on_request(req, from);
            }
            Ok(Message::Response(resp)) => self.on_response(resp, bytes, from),
            Err(e) => {
                debug!(%from, reason = %e.reason, "malformed message");
                match e.bad_request {
                    Some(reply) => {
                        self.wire.transmit(&from, Bytes::from(reply));
                        self.malformed(from, true);
                    }
                    None => self.malformed(from, false),
                }
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
