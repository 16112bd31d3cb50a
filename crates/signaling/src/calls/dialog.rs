//! One side of a call as a SIP dialog (RFC 3261 §12): what we need to send
//! requests inside it and to answer on it. Pure: builds bytes, sends nothing.

use switchboard_sip::message::{NameAddr, Request, Response};
use switchboard_sip::request::{RequestBuilder, new_branch};
use switchboard_sip_stack::target::{Target, TransportKind};

/// The methods a leg accepts, for `Allow` on INVITEs and answers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, REGISTER";

/// `host:port` as written in a Via sent-by or a URI (IPv6 in brackets).
pub fn host_port(addr: &std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => a.to_string(),
        std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

pub fn transport_name(t: TransportKind) -> &'static str {
    t.via_token()
}

/// The address to write in Via and Contact for a flow: the socket's own,
/// or, for a socket bound to a wildcard (`0.0.0.0`, `::`), the address the
/// kernel would send from towards the peer (a connected UDP socket is asked;
/// nothing is sent). That answer is cached per peer address: a call writes
/// it into several headers of every request, and asking costs four system
/// calls.
pub fn advertised(target: &Target) -> std::net::SocketAddr {
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::{Mutex, OnceLock};
    /// Entries before the cache starts over (peers are phones and trunks).
    const MAX: usize = 4096;
    static ROUTES: OnceLock<Mutex<HashMap<IpAddr, IpAddr>>> = OnceLock::new();

    let local = target.local;
    if !local.ip().is_unspecified() {
        return local;
    }
    let peer = target.remote.ip();
    let routes = ROUTES.get_or_init(Mutex::default);
    if let Some(ip) = routes.lock().ok().and_then(|m| m.get(&peer).copied()) {
        return SocketAddr::new(ip, local.port());
    }
    let any: SocketAddr = if local.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(ip) = std::net::UdpSocket::bind(any).and_then(|s| {
        s.connect(target.remote)?;
        s.local_addr().map(|a| a.ip())
    }) else {
        return local;
    };
    if let Ok(mut m) = routes.lock() {
        if m.len() >= MAX {
            m.clear();
        }
        m.insert(peer, ip);
    }
    SocketAddr::new(ip, local.port())
}

/// Our Contact on the flow `target`.
pub fn our_contact(target: &Target) -> String {
    let t = match target.transport {
        TransportKind::Udp => "",
        TransportKind::Tcp => ";transport=tcp",
        TransportKind::Tls => ";transport=tls",
    };
    format!("<sip:switchboard@{}{t}>", host_port(&advertised(target)))
}

/// A dialog as one side of the B2BUA sees it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our From/To header value, with our tag.
    pub local: String,
    /// Theirs, with their tag (once known).
    pub remote: String,
    /// Where in-dialog requests go (their Contact URI).
    pub remote_target: String,
    /// Route headers for in-dialog requests, in order.
    pub route_set: Vec<String>,
    /// Our CSeq for the next request.
    pub local_cseq: u32,
    /// The flow requests and responses travel on.
    pub flow: Target,
}

impl Dialog {
    /// The caller's side, from its INVITE (we are the UAS): `to_tag` is ours.
    pub fn uas(invite: &Request, to_tag: &str, flow: Target) -> Self {
        let to = invite
            .header("To")
            .map_or_else(|| invite.to.to_string(), str::to_owned);
        let from = invite
            .header("From")
            .map_or_else(|| invite.from.to_string(), str::to_owned);
        let remote_target =
            first_contact_uri(invite.header("Contact")).unwrap_or_else(|| invite.from.uri.clone());
        Self {
            call_id: invite.call_id.clone(),
            local: format!("{to};tag={to_tag}"),
            remote: from,
            remote_target,
            route_set: invite
                .header_values("Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local_cseq: 1,
            flow,
        }
    }

    /// The callee's side once its answer (1xx with tag or 2xx) arrived.
    pub fn uac_confirm(&mut self, resp: &Response) {
        if let Some(to) = resp.header("To") {
            self.remote = to.to_owned();
        }
        if let Some(uri) = first_contact_uri(resp.header("Contact")) {
            self.remote_target = uri;
        }
        // §12.1.2: the route set is the Record-Route list reversed.
        let mut rr: Vec<String> = resp
            .header_values("Record-Route")
            .into_iter()
            .map(str::to_owned)
            .collect();
        rr.reverse();
        self.route_set = rr;
    }

    /// A new request inside the dialog; returns it and its branch.
    pub fn request(
        &mut self,
        method: &str,
        body: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
    ) -> (Vec<u8>, String) {
        let cseq = if method == "ACK" {
            self.local_cseq.saturating_sub(1).max(1)
        } else {
            let c = self.local_cseq;
            self.local_cseq = self.local_cseq.saturating_add(1);
            c
        };
        self.request_with_cseq(method, cseq, body, extra)
    }

    /// The ACK for a 2xx to the INVITE with `cseq` (§13.2.2.4): a new
    /// transaction (new branch), sent end-to-end on the dialog.
    pub fn ack(&self, cseq: u32, body: Option<(&str, &[u8])>) -> Vec<u8> {
        self.request_with_cseq("ACK", cseq, body, &[]).0
    }

    fn request_with_cseq(
        &self,
        method: &str,
        cseq: u32,
        body: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
    ) -> (Vec<u8>, String) {
        let branch = new_branch();
        let mut b = RequestBuilder::new(method, &self.remote_target)
            .via(
                transport_name(self.flow.transport),
                &host_port(&advertised(&self.flow)),
                &branch,
            )
            .header("Max-Forwards", "70");
        for r in &self.route_set {
            b = b.header("Route", r);
        }
        b = b
            .header("From", &self.local)
            .header("To", &self.remote)
            .header("Call-ID", &self.call_id)
            .header("CSeq", &format!("{cseq} {method}"));
        if method != "ACK" && method != "BYE" {
            b = b.header("Contact", &our_contact(&self.flow));
        }
        for (n, v) in extra {
            b = b.header(n, v);
        }
        if let Some((ct, bytes)) = body {
            b = b.body(ct, bytes.to_vec());
        }
        (b.build(), branch)
    }
}

/// The credentials header answering the digest challenge of a 401/407
/// `resp` for `method` on `uri`: `(header name, value)`, or `None` when the
/// response carries no challenge we can answer.
pub fn answer_challenge(
    resp: &Response,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Option<(&'static str, String)> {
    let (challenge_header, auth_header) = if resp.code == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    let challenge = resp
        .header_lines(challenge_header)
        .into_iter()
        .find_map(|v| switchboard_sip::digest::Challenge::parse(v).ok())?;
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let creds =
        switchboard_sip::digest::respond(&challenge, method, uri, user, password, &cnonce, 1);
    Some((auth_header, creds.to_header_value()))
}

/// The URI inside the first Contact of a header value.
pub fn first_contact_uri(contact: Option<&str>) -> Option<String> {
    let first = contact?.split(',').next()?.trim();
    NameAddr::parse(first).ok().map(|n| n.uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sip::message::{Message, parse};

    fn flow() -> Target {
        Target {
            transport: TransportKind::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5070".parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn wildcard_sockets_advertise_the_route_source() {
        let mut t = flow();
        assert_eq!(advertised(&t), t.local, "a specific address is used as is");
        t.local = "0.0.0.0:5060".parse().unwrap();
        // towards a loopback peer the kernel sends from 127.0.0.1
        assert_eq!(advertised(&t), "127.0.0.1:5060".parse().unwrap());
        // and the cached answer keeps the socket's own port
        t.local = "0.0.0.0:5099".parse().unwrap();
        assert_eq!(advertised(&t), "127.0.0.1:5099".parse().unwrap());
    }

    #[test]
    fn uas_dialog_answers_back_to_the_caller() {
        let raw = "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
            Record-Route: <sip:127.0.0.9;lr>\r\n\
            From: \"A\" <sip:1001@127.0.0.1>;tag=ta\r\n\
            To: <sip:1002@127.0.0.1>\r\n\
            Call-ID: ca\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:1001@127.0.0.1:5070>;expires=60\r\n\
            Max-Forwards: 70\r\n\
            Content-Length: 0\r\n\r\n";
        let Ok(Message::Request(inv)) = parse(raw.as_bytes()) else {
            panic!()
        };
        let mut d = Dialog::uas(&inv, "ours", flow());
        let (bye, branch) = d.request("BYE", None, &[]);
        let Ok(Message::Request(bye)) = parse(&bye) else {
            panic!()
        };
        assert_eq!(bye.uri.to_string(), "sip:1001@127.0.0.1:5070");
        assert_eq!(bye.from.tag(), Some("ours"));
        assert_eq!(bye.to.tag(), Some("ta"));
        assert_eq!(bye.call_id, "ca");
        assert_eq!(bye.cseq, 1);
        assert_eq!(bye.vias[0].branch.as_deref(), Some(branch.as_str()));
        assert_eq!(bye.header("Route"), Some("<sip:127.0.0.9;lr>"));
        assert_eq!(d.local_cseq, 2);
    }
}
