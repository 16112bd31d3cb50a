//! The hop one replica makes for another: a phone is reachable only through
//! the replica it registered on (its NAT binding, its TCP connection), so a
//! replica with a call for it routes the request through that replica, as
//! an RFC 3327 Path / RFC 5626 §5.3 edge proxy does.
//!
//! The calling replica puts a Route header naming the phone's replica in
//! front of its request: `<sip:EDGE;lr;sb-flow=TOKEN>`. The token names the
//! phone's flow (transport and address as the edge saw them) and the
//! calling replica's own address, and carries a MAC keyed by the cluster's
//! shared secret, so only replicas can mint one: the edge is no open relay.
//! The edge forwards statelessly (RFC 3261 §16.11):
//! * a request that arrives *from* the token's flow (the phone's BYE,
//!   ACK, re-INVITE) goes to the calling replica named in the token,
//!   whatever its Request-URI says;
//! * any other request goes down the flow to the phone;
//! * dialog-creating requests get the same URI as Record-Route, so both
//!   ends' in-dialog requests take the same path; going down a TCP or TLS
//!   flow they get two (RFC 5658 double record-routing): on top the one
//!   the phone reaches us by — our address with `transport=tcp`/`tls` (the
//!   TLS listener's port), so it sends on the connection it registered
//!   over — then the replicas' one; a request naming both has both
//!   removed;
//! * responses carrying our Via (its branch holds a MAC of the next hop)
//!   lose it and go to the next Via.
//!
//! Everything here is pure: [`Edge::request`] and [`Edge::response`] take a
//! parsed message and say what to send where.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use switchboard_sip::digest::hmac_sha256;
use switchboard_sip::message::{self, NameAddr, Request, Response, Via};

use crate::dialog::{advertised, host_port};
use crate::target::{Target, TransportKind};

/// The Route URI parameter carrying a flow token.
pub const FLOW_PARAM: &str = "sb-flow";
/// Branch prefix of the Via the edge adds (RFC 3261 magic cookie first).
const BRANCH_PREFIX: &str = "z9hG4bK-sbe-";
/// Bytes of MAC in a token, and in the edge's branch.
const MAC_LEN: usize = 12;
/// Max-Forwards of a request that had none.
const DEFAULT_MAX_FORWARDS: u32 = 70;

/// Where a phone is and who asked to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowToken {
    /// The phone's flow as the edge replica holds it.
    pub transport: TransportKind,
    pub flow: SocketAddr,
    /// The replica that routes through the edge (reached over UDP).
    pub peer: SocketAddr,
}

/// The key tokens and branches are signed with (derived from the cluster
/// secret: the same on every replica).
#[derive(Clone)]
pub struct EdgeKey([u8; 32]);

impl std::fmt::Debug for EdgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeKey(..)")
    }
}

impl EdgeKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// HMAC-SHA-256 (RFC 2104) of `parts`, truncated.
    fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let full = hmac_sha256(&self.0, &parts.concat());
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The token for `t`: hex of the encoded flow and peer, then the MAC.
    pub fn mint(&self, t: &FlowToken) -> String {
        let mut raw = encode(t);
        let mac = self.mac(&[b"flow", &raw]);
        raw.extend_from_slice(&mac);
        hex(&raw)
    }

    /// The flow a token names, if this cluster minted it.
    pub fn open(&self, token: &str) -> Option<FlowToken> {
        let raw = unhex(token)?;
        let (body, mac) = raw.split_at(raw.len().checked_sub(MAC_LEN)?);
        if !constant_time_eq(&self.mac(&[b"flow", body]), mac) {
            return None;
        }
        decode(body)
    }

    /// The Route header value that sends a request through `edge` to the
    /// phone on `t`'s flow.
    pub fn route(&self, edge: SocketAddr, t: &FlowToken) -> String {
        format!("<sip:{edge};lr;{FLOW_PARAM}={}>", self.mint(t))
    }

    /// Our Via's branch for a request whose top Via branch was `incoming`
    /// and whose responses go back to `back`: deterministic (a
    /// retransmission, the CANCEL and the ACK for a failure get the same
    /// one) and checkable on the response.
    fn branch(&self, incoming: &str, back: &Target) -> String {
        let next = format!("{}:{}", back.transport, back.remote);
        let mac = self.mac(&[b"branch", incoming.as_bytes(), b"\0", next.as_bytes()]);
        format!("{BRANCH_PREFIX}{}", hex(&mac))
    }
}

fn encode(t: &FlowToken) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.push(match t.transport {
        TransportKind::Udp => b'u',
        TransportKind::Tcp => b't',
        TransportKind::Tls => b's',
        TransportKind::Ws => b'w',
        TransportKind::Wss => b'W',
    });
    for addr in [t.flow, t.peer] {
        match addr {
            SocketAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                out.push(6);
                out.extend_from_slice(&a.ip().octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
    out
}

fn decode(raw: &[u8]) -> Option<FlowToken> {
    let (&kind, mut rest) = raw.split_first()?;
    let transport = match kind {
        b'u' => TransportKind::Udp,
        b't' => TransportKind::Tcp,
        b's' => TransportKind::Tls,
        b'w' => TransportKind::Ws,
        b'W' => TransportKind::Wss,
        _ => return None,
    };
    let mut addrs = [None, None];
    for slot in &mut addrs {
        let (&family, tail) = rest.split_first()?;
        let len = match family {
            4 => 4,
            6 => 16,
            _ => return None,
        };
        let ip_bytes = tail.get(..len)?;
        let port = u16::from_be_bytes([*tail.get(len)?, *tail.get(len + 1)?]);
        let ip = if len == 4 {
            std::net::IpAddr::from(<[u8; 4]>::try_from(ip_bytes).ok()?)
        } else {
            std::net::IpAddr::from(<[u8; 16]>::try_from(ip_bytes).ok()?)
        };
        *slot = Some(SocketAddr::new(ip, port));
        rest = &tail[len + 2..];
    }
    if !rest.is_empty() {
        return None;
    }
    Some(FlowToken {
        transport,
        flow: addrs[0]?,
        peer: addrs[1]?,
    })
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Hex text back to bytes; `None` for odd lengths, other characters, or
/// more than a token can hold.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() > 256 {
        return None;
    }
    hex::decode(s).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What to do with a message that reached the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Not the edge's: the endpoint handles it as usual.
    Pass,
    /// Send these bytes on this flow, and nothing else.
    Forward(Target, Bytes),
    /// Answer the sender with these bytes (483 Too Many Hops).
    Reply(Bytes),
    /// Drop it (a forged or malformed token, a response we cannot route).
    Drop(&'static str),
}

/// The edge of one replica.
#[derive(Debug, Clone)]
pub struct Edge {
    key: EdgeKey,
    /// This replica's TLS, WS and WSS listening ports, once bound (for the
    /// Record-Route phones on those reach us by).
    tls_port: Arc<OnceLock<u16>>,
    ws_port: Arc<OnceLock<u16>>,
    wss_port: Arc<OnceLock<u16>>,
}

impl Edge {
    pub fn new(key: EdgeKey) -> Self {
        Self {
            key,
            tls_port: Arc::new(OnceLock::new()),
            ws_port: Arc::new(OnceLock::new()),
            wss_port: Arc::new(OnceLock::new()),
        }
    }

    pub fn key(&self) -> &EdgeKey {
        &self.key
    }

    /// Tells the edge its TLS port (set once, after the listener is bound).
    pub fn set_tls_port(&self, port: u16) {
        let _ = self.tls_port.set(port);
    }

    /// Tells the edge its WebSocket (`Ws`) or secure WebSocket (`Wss`)
    /// port (set once, after the listener is bound).
    pub fn set_ws_port(&self, kind: TransportKind, port: u16) {
        let slot = match kind {
            TransportKind::Ws => &self.ws_port,
            TransportKind::Wss => &self.wss_port,
            _ => return,
        };
        let _ = slot.set(port);
    }

    /// The Record-Route a phone on the stream flow `phone` reaches us by,
    /// for a request that came from `from` (the other replica, over UDP to
    /// our SIP port, which TCP shares); `None` for a UDP flow, or TLS, WS
    /// or WSS without a listener.
    fn phone_route(&self, phone: &Target, from: &Target, token: &str) -> Option<String> {
        let port = match phone.transport {
            TransportKind::Udp => return None,
            TransportKind::Tcp => from.local.port(),
            TransportKind::Tls => *self.tls_port.get()?,
            TransportKind::Ws => *self.ws_port.get()?,
            TransportKind::Wss => *self.wss_port.get()?,
        };
        let param = phone.transport.uri_param();
        let ours = Target {
            local: SocketAddr::new(from.local.ip(), port),
            ..*phone
        };
        Some(format!(
            "<sip:{};transport={param};lr;{FLOW_PARAM}={token}>",
            host_port(&advertised(&ours))
        ))
    }

    /// A request as parsed (its top Via not yet stamped), from `from`.
    pub fn request(&self, req: &Request, from: &Target) -> Relay {
        let routes = req.header_values("Route");
        let Some(first) = routes.first() else {
            return Relay::Pass;
        };
        let Ok(top) = NameAddr::parse(first) else {
            return Relay::Pass;
        };
        let Ok(uri) = top.parsed_uri() else {
            return Relay::Pass;
        };
        let Some(token) = uri.param(FLOW_PARAM) else {
            return Relay::Pass;
        };
        let Some((raw, tok)) = token.and_then(|t| Some((t, self.key.open(t)?))) else {
            return Relay::Drop("flow token not minted by this cluster");
        };
        let hops = req.max_forwards.unwrap_or(DEFAULT_MAX_FORWARDS);
        if hops == 0 {
            return Relay::Reply(Bytes::from(
                switchboard_sip::response::response(req, 483, "Too Many Hops").build(),
            ));
        }
        let from_phone = from.transport == tok.transport && from.remote == tok.flow;
        let (transport, remote) = if from_phone {
            (TransportKind::Udp, tok.peer)
        } else {
            (tok.transport, tok.flow)
        };
        let next = Target {
            transport,
            local: unspecified(&remote),
            remote,
            conn: None,
        };
        let mut vias = req.vias.clone();
        let Some(top_via) = vias.first_mut() else {
            return Relay::Drop("no Via");
        };
        // Responses go back to the packet's source (and, on a stream, its
        // connection) whether or not the sender asked with `rport`.
        top_via.rport = Some(None);
        crate::endpoint::stamp_via(top_via, &from.remote);
        let Some(back) = via_target(top_via) else {
            return Relay::Drop("Via transport not UDP, TCP, TLS, WS or WSS");
        };
        let branch = self
            .key
            .branch(top_via.branch.as_deref().unwrap_or(&top_via.raw), &back);
        let our_via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            next.transport.via_token(),
            advertised(&next)
        );
        let record_route = (req.to.tag().is_none()
            && matches!(req.method.as_str(), "INVITE" | "SUBSCRIBE" | "REFER"))
        .then_some(*first);
        let phone_route = record_route
            .filter(|_| !from_phone)
            .and_then(|_| self.phone_route(&next, from, raw));
        // the second of a double Record-Route is ours too: both go
        let mut rest = &routes[1..];
        if rest.first().is_some_and(|r| carries_token(r, raw)) {
            rest = &rest[1..];
        }
        let mut out = Vec::with_capacity(256 + req.body.len() + 512);
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", req.method, req.uri).as_bytes());
        push(&mut out, "Via", &our_via);
        for v in &vias {
            push(&mut out, "Via", &v.raw);
        }
        if !rest.is_empty() {
            push(&mut out, "Route", &rest.join(", "));
        }
        if let Some(rr) = &phone_route {
            push(&mut out, "Record-Route", rr);
        }
        if let Some(rr) = record_route {
            push(&mut out, "Record-Route", rr);
        }
        push(&mut out, "Max-Forwards", &(hops - 1).to_string());
        copy_rest(&mut out, &req.headers, &["Via", "Route", "Max-Forwards"]);
        finish(&mut out, &req.body);
        Relay::Forward(next, Bytes::from(out))
    }

    /// A response; `Pass` unless its top Via is one this edge added.
    pub fn response(&self, resp: &Response) -> Relay {
        let Some(ours) = resp.vias.first() else {
            return Relay::Pass;
        };
        let Some(branch) = ours.branch.as_deref() else {
            return Relay::Pass;
        };
        if !branch.starts_with(BRANCH_PREFIX) {
            return Relay::Pass;
        }
        let Some(next_via) = resp.vias.get(1) else {
            return Relay::Drop("edge response without a second Via");
        };
        let Some(next) = via_target(next_via) else {
            return Relay::Drop("edge response: next Via not an address");
        };
        let incoming = next_via.branch.as_deref().unwrap_or(&next_via.raw);
        // The branch is ours only if it names this very next hop: a forged
        // response cannot be bounced to an address of the sender's choice.
        if self.key.branch(incoming, &next) != branch {
            return Relay::Drop("edge response with a branch we did not make");
        }
        let mut out = Vec::with_capacity(256 + resp.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", resp.code, resp.reason).as_bytes());
        for v in &resp.vias[1..] {
            push(&mut out, "Via", &v.raw);
        }
        copy_rest(&mut out, &resp.headers, &["Via"]);
        finish(&mut out, &resp.body);
        Relay::Forward(next, Bytes::from(out))
    }
}

/// Where a response to this Via goes: `received`/`rport` when the previous
/// hop stamped them, else the sent-by (an IP address: names are not
/// resolved here).
fn via_target(v: &Via) -> Option<Target> {
    let transport = TransportKind::from_token(&v.transport)?;
    let host = v.received.as_deref().unwrap_or(&v.host);
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = match v.rport {
        Some(Some(p)) => p,
        _ => v.port.unwrap_or(5060),
    };
    let remote = SocketAddr::new(ip, port);
    Some(Target {
        transport,
        local: unspecified(&remote),
        remote,
        conn: None,
    })
}

/// Whether a Route value carries exactly this flow token.
fn carries_token(route: &str, token: &str) -> bool {
    NameAddr::parse(route)
        .ok()
        .and_then(|n| n.parsed_uri().ok())
        .is_some_and(|u| u.param(FLOW_PARAM) == Some(Some(token)))
}

fn unspecified(remote: &SocketAddr) -> SocketAddr {
    if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

fn push(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn copy_rest(out: &mut Vec<u8>, headers: &message::rsip::Headers, skip: &[&str]) {
    for (name, value) in headers.iter().map(message::header_parts) {
        if name.eq_ignore_ascii_case("Content-Length")
            || skip.iter().any(|s| name.eq_ignore_ascii_case(s))
        {
            continue;
        }
        push(out, name, value);
    }
}

fn finish(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
