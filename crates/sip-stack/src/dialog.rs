//! SIP dialogs (RFC 3261 §12): the state a UA keeps to send requests inside
//! a call and to recognise the requests that belong to it. Pure: builds
//! bytes and answers questions, sends nothing.
//!
//! A dialog is identified by the Call-ID and both tags (§12). A request
//! whose Call-ID matches but whose tags do not belongs to no dialog of
//! ours: a Call-ID alone proves nothing (anyone who saw or guessed it could
//! otherwise end or redirect the call), so [`Dialog::accept`] checks both
//! tags and the CSeq order before the request may touch the call.

use std::net::SocketAddr;

use switchboard_sip::message::{Method, NameAddr, Request, Response, Uri};
use switchboard_sip::request::{RequestBuilder, new_branch};

use crate::target::{Target, TransportKind};

/// Why an in-dialog request is refused (the status to answer with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// §12.2.2: no dialog with these tags: 481.
    NoDialog,
    /// §12.2.2: a CSeq lower than the last one from that side: 500.
    OutOfOrder,
}

impl Refusal {
    pub fn code(self) -> u16 {
        match self {
            Refusal::NoDialog => 481,
            Refusal::OutOfOrder => 500,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoDialog => "Call/Transaction Does Not Exist",
            Refusal::OutOfOrder => "CSeq Out Of Order",
        }
    }
}

/// A request built inside a dialog: its bytes, the branch of its Via (the
/// client transaction key) and the CSeq it took.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub branch: String,
    pub cseq: u32,
}

/// One dialog, as either side sees it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our tag: the To tag of our answers when we are the UAS, the From tag
    /// of our requests when we are the UAC.
    pub local_tag: String,
    /// Theirs; `None` while a UAC dialog has no tagged answer yet.
    pub remote_tag: Option<String>,
    /// Our From/To header value, with our tag.
    pub local: String,
    /// Theirs (with their tag once known).
    pub remote: String,
    /// The CSeq of our next request.
    pub local_cseq: u32,
    /// The last CSeq seen from the far end (`None`: no request from it yet).
    pub remote_cseq: Option<u32>,
    /// Route headers for our requests, in order (§12.1.1, §12.1.2).
    pub route_set: Vec<String>,
    /// Their Contact URI: the Request-URI of our requests.
    pub remote_target: String,
    /// A `sips:` dialog over TLS (§12.1.1): its requests must stay on TLS.
    pub secure: bool,
    /// The flow our requests and answers use when the route set does not
    /// name a first hop: where their messages come from (NAT-friendly).
    pub flow: Target,
}

impl Dialog {
    /// The caller's side, from its INVITE (we are the UAS); `local_tag`
    /// goes into our answers' To.
    pub fn uas(invite: &Request, local_tag: &str, flow: Target) -> Self {
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
            local_tag: local_tag.to_owned(),
            remote_tag: invite.from.tag().map(str::to_owned),
            local: format!("{to};tag={local_tag}"),
            remote: from,
            remote_target,
            route_set: invite
                .header_values("Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local_cseq: 1,
            remote_cseq: Some(invite.cseq),
            secure: invite.uri.scheme.eq_ignore_ascii_case("sips") && flow.transport.is_secure(),
            flow,
        }
    }

    /// Our side of an INVITE we send (we are the UAC): `local` is our From
    /// value with `local_tag` in it, `remote` the To value, `request_uri`
    /// where the INVITE goes, `route_set` any preloaded Route (a binding's
    /// Path, RFC 3327). The INVITE takes CSeq 1.
    pub fn uac(
        call_id: &str,
        local_tag: &str,
        local: &str,
        remote: &str,
        request_uri: &str,
        route_set: Vec<String>,
        flow: Target,
    ) -> Self {
        Self {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: None,
            local: local.to_owned(),
            remote: remote.to_owned(),
            local_cseq: 1,
            remote_cseq: None,
            route_set,
            remote_target: request_uri.to_owned(),
            secure: request_uri.starts_with("sips:") && flow.transport.is_secure(),
            flow,
        }
    }

    /// The INVITE that starts a UAC dialog (or retries it with
    /// credentials): the next CSeq, our Contact, the preloaded route set;
    /// `extra` may set Max-Forwards.
    pub fn invite(&mut self, body: Option<(&str, &[u8])>, extra: &[(&str, &str)]) -> Outgoing {
        self.request(&Method::Invite, body, extra)
    }

    /// A UAC dialog learns the far end from a response that establishes it
    /// (a tagged 1xx or the 2xx, §12.1.2): their tag, their Contact, and the
    /// Record-Route list reversed as route set. The 2xx recomputes what an
    /// early dialog had (§13.2.2.4).
    pub fn establish(&mut self, resp: &Response) {
        if let Some(to) = resp.header("To") {
            self.remote = to.to_owned();
        }
        self.remote_tag = resp.to.tag().map(str::to_owned);
        if let Some(uri) = first_contact_uri(resp.header("Contact")) {
            self.remote_target = uri;
        }
        let mut rr: Vec<String> = resp
            .header_values("Record-Route")
            .into_iter()
            .map(str::to_owned)
            .collect();
        rr.reverse();
        self.route_set = rr;
    }

    /// The dialog a 2xx with another To tag than ours creates (a forking
    /// proxy's second answer, §13.2.2.4): the same local side, their tag.
    pub fn fork_for(&self, resp: &Response) -> Self {
        let mut d = self.clone();
        d.establish(resp);
        d
    }

    /// Whether `req` carries this dialog's identifiers: Call-ID, our tag in
    /// To and theirs in From.
    pub fn matches(&self, req: &Request) -> bool {
        req.call_id == self.call_id
            && req.to.tag() == Some(self.local_tag.as_str())
            && req.from.tag() == self.remote_tag.as_deref()
    }

    /// Admits an in-dialog request from the far end (§12.2.2): the tags
    /// must match, and a CSeq lower than the last one is out of order. ACK
    /// and CANCEL repeat the INVITE's CSeq and move nothing. A target
    /// refresh (re-INVITE, UPDATE) replaces the remote target with its
    /// Contact.
    pub fn accept(&mut self, req: &Request) -> Result<(), Refusal> {
        if !self.matches(req) {
            return Err(Refusal::NoDialog);
        }
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if self.remote_cseq.is_some_and(|last| req.cseq < last) {
            return Err(Refusal::OutOfOrder);
        }
        self.remote_cseq = Some(req.cseq);
        if matches!(req.method, Method::Invite | Method::Update)
            && let Some(uri) = first_contact_uri(req.header("Contact"))
        {
            self.remote_target = uri;
        }
        Ok(())
    }

    /// The remote target of a 2xx to our target refresh (§12.2.1.2).
    pub fn refreshed(&mut self, resp: &Response) {
        if let Some(uri) = first_contact_uri(resp.header("Contact")) {
            self.remote_target = uri;
        }
    }

    /// A new request inside the dialog; takes the next CSeq.
    pub fn request(
        &mut self,
        method: &Method,
        body: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
    ) -> Outgoing {
        let cseq = self.local_cseq;
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.build(method, cseq, body, extra)
    }

    /// The ACK for a 2xx to our INVITE with `cseq` (§13.2.2.4): a new
    /// transaction (new branch), sent end-to-end on the dialog.
    pub fn ack(&self, cseq: u32, body: Option<(&str, &[u8])>) -> Vec<u8> {
        self.build(&Method::Ack, cseq, body, &[]).bytes
    }

    /// Where our requests go: the first hop of the route set when it is an
    /// IP address (a loose router), otherwise the dialog's flow. Their
    /// Request-URI is always the remote target.
    pub fn destination(&self) -> Target {
        let first_hop = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .and_then(|n| Uri::parse(&n.uri).ok())
            .and_then(|u| uri_addr(&u));
        match first_hop {
            Some(addr)
                if addr != self.flow.remote && addr.is_ipv4() == self.flow.local.is_ipv4() =>
            {
                Target {
                    remote: addr,
                    conn: None,
                    ..self.flow
                }
            }
            _ => self.flow,
        }
    }

    fn build(
        &self,
        method: &Method,
        cseq: u32,
        body: Option<(&str, &[u8])>,
        extra: &[(&str, &str)],
    ) -> Outgoing {
        let branch = new_branch();
        let to = self.destination();
        let name = method.as_str();
        let is = |n: &str| n.eq_ignore_ascii_case("Max-Forwards");
        let max_forwards = extra.iter().find(|(n, _)| is(n)).map_or("70", |(_, v)| *v);
        let mut b = RequestBuilder::new(name, &self.remote_target)
            .via(
                to.transport.via_token(),
                &host_port(&advertised(&to)),
                &branch,
            )
            .header("Max-Forwards", max_forwards);
        for r in &self.route_set {
            b = b.header("Route", r);
        }
        b = b
            .header("From", &self.local)
            .header("To", &self.remote)
            .header("Call-ID", &self.call_id)
            .header("CSeq", &format!("{cseq} {name}"));
        if !matches!(method, Method::Ack | Method::Bye | Method::Cancel) {
            b = b.header("Contact", &our_contact(&to));
        }
        for (n, v) in extra.iter().filter(|(n, _)| !is(n)) {
            b = b.header(n, v);
        }
        if let Some((ct, bytes)) = body {
            b = b.body(ct, bytes.to_vec());
        }
        Outgoing {
            bytes: b.build(),
            branch,
            cseq,
        }
    }
}

/// The address of a URI whose host is an IP literal (no DNS here); without
/// a port, 5061 for `sips:` and `transport=tls` (RFC 3263 §4.2), else 5060.
pub fn uri_addr(u: &Uri) -> Option<SocketAddr> {
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    let tls = u.scheme.eq_ignore_ascii_case("sips")
        || u.param("transport")
            .flatten()
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    let port = u.port.unwrap_or(if tls { 5061 } else { 5060 });
    Some(SocketAddr::new(ip, port))
}

/// `host:port` as written in a Via sent-by or a URI (IPv6 in brackets).
pub fn host_port(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The address to write in Via and Contact for a flow: the socket's own,
/// or, for a socket bound to a wildcard (`0.0.0.0`, `::`), the address the
/// kernel would send from towards the peer (a connected UDP socket is asked;
/// nothing is sent). That answer is cached per peer address: a call writes
/// it into several headers of every request, and asking costs four system
/// calls.
pub fn advertised(target: &Target) -> SocketAddr {
    use std::collections::HashMap;
    use std::net::IpAddr;
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

/// Our Contact on the flow `target` (`transport=` for all but UDP).
pub fn our_contact(target: &Target) -> String {
    let (sep, t) = match target.transport {
        TransportKind::Udp => ("", ""),
        other => (";transport=", other.uri_param()),
    };
    format!(
        "<sip:switchboard@{}{sep}{t}>",
        host_port(&advertised(target))
    )
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

    fn req(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn resp(raw: &str) -> Response {
        match parse(raw.as_bytes()) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
        Record-Route: <sip:127.0.0.9;lr>\r\n\
        From: \"A\" <sip:1001@127.0.0.1>;tag=ta\r\n\
        To: <sip:1002@127.0.0.1>\r\n\
        Call-ID: ca\r\n\
        CSeq: 5 INVITE\r\n\
        Contact: <sip:1001@127.0.0.1:5070>;expires=60\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn in_dialog(method: &str, from_tag: &str, to_tag: &str, cseq: u32) -> Request {
        req(&format!(
            "{method} sip:switchboard@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}{method}\r\n\
             From: <sip:1001@127.0.0.1>;tag={from_tag}\r\n\
             To: <sip:1002@127.0.0.1>;tag={to_tag}\r\n\
             Call-ID: ca\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:1001@127.0.0.1:5099>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn uas_dialog_answers_back_to_the_caller() {
        let mut d = Dialog::uas(&req(INVITE), "ours", flow());
        let bye = d.request(&Method::Bye, None, &[]);
        let bye = req(std::str::from_utf8(&bye.bytes).unwrap());
        assert_eq!(bye.uri.to_string(), "sip:1001@127.0.0.1:5070");
        assert_eq!(bye.from.tag(), Some("ours"));
        assert_eq!(bye.to.tag(), Some("ta"));
        assert_eq!(bye.call_id, "ca");
        assert_eq!(bye.cseq, 1);
        assert_eq!(bye.header("Route"), Some("<sip:127.0.0.9;lr>"));
        assert!(bye.header("Contact").is_none(), "BYE carries no Contact");
        assert_eq!(d.local_cseq, 2);
        assert_eq!(d.remote_cseq, Some(5));
        // the first Record-Route hop is where requests go
        assert_eq!(
            d.destination().remote,
            "127.0.0.9:5060".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn in_dialog_requests_need_both_tags_and_cseq_order() {
        let mut d = Dialog::uas(&req(INVITE), "ours", flow());
        // (method, From tag, To tag, CSeq) → outcome, in order
        type Case<'a> = (&'a str, &'a str, &'a str, u32, Result<(), Refusal>);
        let table: [Case; 9] = [
            ("BYE", "ta", "wrong", 6, Err(Refusal::NoDialog)),
            ("BYE", "tx", "ours", 6, Err(Refusal::NoDialog)),
            ("INFO", "ta", "ours", 6, Ok(())),
            ("INFO", "ta", "ours", 4, Err(Refusal::OutOfOrder)),
            // equal is not lower (§12.2.2 refuses only lower)
            ("INFO", "ta", "ours", 6, Ok(())),
            ("ACK", "ta", "ours", 5, Ok(())),
            ("CANCEL", "ta", "ours", 5, Ok(())),
            ("INVITE", "ta", "ours", 7, Ok(())),
            ("BYE", "ta", "ours", 8, Ok(())),
        ];
        for (method, ft, tt, cseq, want) in table {
            let r = in_dialog(method, ft, tt, cseq);
            assert_eq!(d.accept(&r), want, "{method} {ft}/{tt} {cseq}");
        }
        assert_eq!(d.remote_cseq, Some(8));
        // the re-INVITE refreshed the target
        assert_eq!(d.remote_target, "sip:1001@127.0.0.1:5099");
    }

    #[test]
    fn uac_dialog_is_established_by_the_answer() {
        let mut d = Dialog::uac(
            "cb",
            "lt",
            "<sip:1001@127.0.0.1>;tag=lt",
            "<sip:1002@127.0.0.1>",
            "sip:bob@127.0.0.1:5070",
            vec!["<sip:127.0.0.3:5080;lr>".into()],
            flow(),
        );
        let inv = d.invite(Some(("application/sdp", b"v=0\r\n")), &[]);
        assert_eq!(inv.cseq, 1);
        let parsed = req(std::str::from_utf8(&inv.bytes).unwrap());
        assert_eq!(parsed.header("Route"), Some("<sip:127.0.0.3:5080;lr>"));
        assert!(parsed.header("Contact").is_some());
        assert_eq!(
            d.destination().remote,
            "127.0.0.3:5080".parse::<SocketAddr>().unwrap(),
            "a preloaded route (Path) is the first hop"
        );
        let ok = resp(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             Record-Route: <sip:127.0.0.4;lr>\r\n\
             Record-Route: <sip:127.0.0.5;lr>\r\n\
             From: <sip:1001@127.0.0.1>;tag=lt\r\n\
             To: <sip:1002@127.0.0.1>;tag=rt\r\n\
             Call-ID: cb\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:bob@127.0.0.1:5071>\r\n\
             Content-Length: 0\r\n\r\n",
        );
        d.establish(&ok);
        assert_eq!(d.remote_tag.as_deref(), Some("rt"));
        assert_eq!(d.remote_target, "sip:bob@127.0.0.1:5071");
        assert_eq!(
            d.route_set,
            vec!["<sip:127.0.0.5;lr>", "<sip:127.0.0.4;lr>"],
            "§12.1.2: Record-Route reversed"
        );
        let ack = req(std::str::from_utf8(&d.ack(1, None)).unwrap());
        assert_eq!(ack.to.tag(), Some("rt"));
        assert_eq!(ack.cseq, 1);
        assert_eq!(ack.method, Method::Ack);
        // a second 2xx from another branch of a forking proxy: its own dialog
        let other = resp(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:1001@127.0.0.1>;tag=lt\r\n\
             To: <sip:1002@127.0.0.1>;tag=rt2\r\n\
             Call-ID: cb\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:bob@127.0.0.1:5072>\r\n\
             Content-Length: 0\r\n\r\n",
        );
        let mut second = d.fork_for(&other);
        assert_eq!(second.remote_tag.as_deref(), Some("rt2"));
        let bye = second.request(&Method::Bye, None, &[]);
        let bye = req(std::str::from_utf8(&bye.bytes).unwrap());
        assert_eq!(bye.to.tag(), Some("rt2"));
        assert_eq!(bye.uri.to_string(), "sip:bob@127.0.0.1:5072");
        assert_eq!(
            d.remote_tag.as_deref(),
            Some("rt"),
            "the first is untouched"
        );
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
    fn uri_addresses_default_to_the_port_of_their_transport() {
        for (uri, want) in [
            ("sip:a@192.0.2.1", Some("192.0.2.1:5060")),
            ("sip:a@192.0.2.1;transport=tcp", Some("192.0.2.1:5060")),
            ("sips:a@192.0.2.1", Some("192.0.2.1:5061")),
            ("sip:a@192.0.2.1;transport=TLS", Some("192.0.2.1:5061")),
            ("sip:a@192.0.2.1:5080;transport=tls", Some("192.0.2.1:5080")),
            ("sip:a@[2001:db8::1]", Some("[2001:db8::1]:5060")),
            ("sip:a@example.com", None),
        ] {
            let u = Uri::parse(uri).unwrap();
            assert_eq!(uri_addr(&u), want.map(|w| w.parse().unwrap()), "{uri}");
        }
    }
}
