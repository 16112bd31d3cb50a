//! A SIP phone the test drives message by message over its own UDP
//! socket: for what sipp cannot script (holding a request unanswered,
//! withholding an ACK and counting retransmissions, answering twice as a
//! forking proxy would). It speaks through the project's own pure layers
//! (message parser, digest, dialog), so what goes on the wire is built the
//! way a phone builds it, and everything that comes back is parsed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchboard_sip::digest::{Challenge, respond};
use switchboard_sip::message::{Message, Method, Request, Response, parse};
use switchboard_sip::request::ack_for_failure;
use switchboard_sip::response::response;
use switchboard_sip_stack::dialog::Dialog;
use switchboard_sip_stack::target::{Target, TransportKind};
use tokio::net::UdpSocket;

/// An SDP offer or answer with media on `port` of `ip`.
pub fn sdp(ip: IpAddr, port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=phone {v} {v} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
        v = rand::random::<u16>()
    )
}

pub struct SipPhone {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl SipPhone {
    pub async fn bind(ip: IpAddr, server: SocketAddr) -> Self {
        Self {
            sock: UdpSocket::bind((ip, 0)).await.expect("bind SIP phone"),
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    /// The flow a dialog of this phone uses.
    pub fn flow(&self) -> Target {
        Target {
            transport: TransportKind::Udp,
            local: self.addr(),
            remote: self.server,
            conn: None,
        }
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .await
            .expect("send SIP");
    }

    /// The next message, or `None` after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Ok(m) = parse(&buf[..n]) {
                return Some(m);
            }
        }
    }

    /// The next request of `method` and the address it came from (other
    /// messages in between are dropped); panics after 5 s.
    pub async fn request_from(&self, method: Method) -> (Request, SocketAddr) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("no {method} within 5 s"))
                    .expect("receive");
            if let Ok(Message::Request(r)) = parse(&buf[..n])
                && r.method == method
            {
                return (r, from);
            }
        }
    }

    /// The next request of `method` (other messages in between are
    /// dropped); panics after 5 s.
    pub async fn request(&self, method: Method) -> Request {
        loop {
            match self.recv(Duration::from_secs(5)).await {
                Some(Message::Request(r)) if r.method == method => return r,
                Some(_) => {}
                None => panic!("no {method:?} within 5 s"),
            }
        }
    }

    /// The next request of `method` within `wait` (other messages in
    /// between are dropped); panics after it.
    pub async fn request_within(&self, method: Method, wait: Duration) -> Request {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(Message::Request(r)) if r.method == method => return r,
                Some(_) => {}
                None => panic!("no {method:?} within {wait:?}"),
            }
        }
    }

    /// The next final response to a request of `method`; panics after 5 s.
    pub async fn final_response(&self, method: Method) -> Response {
        loop {
            match self.recv(Duration::from_secs(5)).await {
                Some(Message::Response(r)) if r.cseq_method == method && r.code >= 200 => {
                    return r;
                }
                Some(_) => {}
                None => panic!("no final response to {method:?} within 5 s"),
            }
        }
    }

    /// Answers `req` with `code` (our `tag` in To when given) and an
    /// optional SDP body.
    pub async fn answer(&self, req: &Request, code: u16, tag: Option<&str>, body: Option<&str>) {
        let mut b = response(req, code, switchboard_sip::reason_phrase(code));
        if let Some(t) = tag {
            b = b.to_tag(t);
        }
        // RFC 3261 §12.1.1: a UAS copies Record-Route into its dialog's
        // responses, as every phone does
        if (101..300).contains(&code) {
            for rr in req.header_values("Record-Route") {
                b = b.header("Record-Route", rr);
            }
        }
        if (200..300).contains(&code) {
            b = b.header("Contact", &format!("<sip:phone@{}>", self.addr()));
            b = b.header("Allow", "INVITE, ACK, BYE, CANCEL, INFO, UPDATE");
        }
        if let Some(sdp) = body {
            b = b.body("application/sdp", sdp.as_bytes().to_vec());
        }
        self.send(&b.build()).await;
    }

    /// Sends an INVITE from `d` as `user`, answers the 407 with `password`,
    /// and returns the final response to the INVITE with credentials and
    /// its CSeq.
    pub async fn invite(
        &self,
        d: &mut Dialog,
        user: &str,
        password: &str,
        offer: &str,
        extra: &[(&str, &str)],
    ) -> (Response, u32) {
        let cseq = self.start_invite(d, user, password, offer, extra).await;
        (self.final_response(Method::Invite).await, cseq)
    }

    /// [`SipPhone::invite`] up to sending the INVITE with credentials, not
    /// waiting for its answer; returns its CSeq.
    pub async fn start_invite(
        &self,
        d: &mut Dialog,
        user: &str,
        password: &str,
        offer: &str,
        extra: &[(&str, &str)],
    ) -> u32 {
        let body = Some(("application/sdp", offer.as_bytes()));
        let first = d.invite(body, extra);
        self.send(&first.bytes).await;
        let challenge = self.final_response(Method::Invite).await;
        assert_eq!(challenge.code, 407, "{challenge:?}");
        if let Ok(Message::Request(inv)) = parse(&first.bytes) {
            let to = challenge.header("To").unwrap_or_default().to_owned();
            self.send(&ack_for_failure(&inv, &to)).await;
        }
        let ch = challenge
            .header_lines("Proxy-Authenticate")
            .into_iter()
            .find_map(|v| Challenge::parse(v).ok())
            .expect("a digest challenge");
        let uri = d.remote_target.clone();
        let creds = respond(&ch, "INVITE", &uri, user, password, "0a4f113b", 1);
        let auth = creds.to_header_value();
        let mut with_auth: Vec<(&str, &str)> = extra.to_vec();
        with_auth.push(("Proxy-Authorization", &auth));
        let second = d.invite(body, &with_auth);
        self.send(&second.bytes).await;
        second.cseq
    }

    /// A dialog of ours calling `to` (as `user`).
    pub fn dialog_to(&self, user: &str, to: &str) -> Dialog {
        let host = self.server;
        let tag = format!("{:x}", rand::random::<u64>());
        Dialog::uac(
            &format!("{:x}@test", rand::random::<u128>()),
            &tag,
            &format!("<sip:{user}@{}>;tag={tag}", host.ip()),
            &format!("<sip:{to}@{}>", host.ip()),
            &format!("sip:{to}@{host}"),
            Vec::new(),
            self.flow(),
        )
    }

    /// Places a call to `to` as `user`, answering the 407 with `password`;
    /// returns the dialog once the 2xx is ACKed, with the 2xx.
    pub async fn call(
        &self,
        user: &str,
        password: &str,
        to: &str,
        offer: &str,
        extra: &[(&str, &str)],
    ) -> (Dialog, Response) {
        let mut d = self.dialog_to(user, to);
        let (ok, cseq) = self.invite(&mut d, user, password, offer, extra).await;
        assert!((200..300).contains(&ok.code), "call answered: {ok:?}");
        d.establish(&ok);
        self.send(&d.ack(cseq, None)).await;
        (d, ok)
    }

    /// Registers `user` (answering the 401) with extra headers, e.g. Path.
    pub async fn register(&self, user: &str, password: &str, extra: &[(&str, &str)]) -> Response {
        let host = self.server;
        let call_id = format!("{:x}@test", rand::random::<u128>());
        let mut cseq = 1;
        let mut auth: Option<String> = None;
        loop {
            let mut b = switchboard_sip::request::RequestBuilder::new(
                "REGISTER",
                &format!("sip:{}", host.ip()),
            )
            .via(
                "UDP",
                &self.addr().to_string(),
                &switchboard_sip::request::new_branch(),
            )
            .header("Max-Forwards", "70")
            .header("From", &format!("<sip:{user}@switchboard>;tag=r{cseq}"))
            .header("To", &format!("<sip:{user}@switchboard>"))
            .header("Call-ID", &call_id)
            .header("CSeq", &format!("{cseq} REGISTER"))
            .header("Contact", &format!("<sip:{user}@{}>", self.addr()))
            .header("Expires", "300");
            for (n, v) in extra {
                b = b.header(n, v);
            }
            if let Some(a) = &auth {
                b = b.header("Authorization", a);
            }
            self.send(&b.build()).await;
            let r = self.final_response(Method::Register).await;
            if r.code != 401 || auth.is_some() {
                return r;
            }
            let ch = r
                .header_lines("WWW-Authenticate")
                .into_iter()
                .find_map(|v| Challenge::parse(v).ok())
                .expect("a digest challenge");
            let uri = format!("sip:{}", host.ip());
            auth =
                Some(respond(&ch, "REGISTER", &uri, user, password, "1b2c", 1).to_header_value());
            cseq += 1;
        }
    }
}
