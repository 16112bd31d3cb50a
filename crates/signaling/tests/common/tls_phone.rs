//! A SIP phone on one stream connection for the tests: TLS here (a test
//! CA and certificates made with rcgen), plain TCP, or a WebSocket
//! ([`super::ws_phone`]), kept open as a phone behind NAT keeps it, with
//! the same message-by-message driving as [`super::phone`]: everything
//! sent is built by the project's pure layers (dialog, digest),
//! everything received is parsed.

#![allow(clippy::unwrap_used)] // test code may unwrap

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_sip::digest::{Challenge, respond};
use switchboard_sip::message::{Message, Method, Request, Response, parse};
use switchboard_sip::request::ack_for_failure;
use switchboard_sip::response::response;
use switchboard_sip_stack::dialog::Dialog;
use switchboard_sip_stack::target::{Target, TransportKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type Ca = CertifiedIssuer<'static, KeyPair>;

pub fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`, written as `<stem>.pem` and
/// `<stem>.key` in `dir`; returns the certificate (DER).
pub fn leaf(dir: &Path, stem: &str, names: &[&str], ca: &Ca) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    // written next to the final names and renamed, as cert-manager's
    // Secret volume swaps files: a reader never sees half a file
    let (pem, key_pem) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(dir.join("tmp.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tmp.pem"), cert.pem()).unwrap();
    std::fs::rename(dir.join("tmp.key"), key_pem).unwrap();
    std::fs::rename(dir.join("tmp.pem"), pem).unwrap();
    cert.der().clone()
}

#[allow(deprecated)] // ring lacks only post-quantum key exchange
pub fn client_config(trust: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to `server` trusting `trust`, checked for the
/// server's IP address.
pub async fn tls_connect(server: SocketAddr, trust: &Ca) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server).await?;
    let name = ServerName::IpAddress(server.ip().into());
    TlsConnector::from(client_config(trust))
        .connect(name, tcp)
        .await
}

/// Where a phone's messages go: a byte stream (TLS) or one WebSocket
/// message each.
pub enum Out {
    Bytes(Box<dyn AsyncWrite + Unpin + Send>),
    Ws(super::ws_phone::WsSink),
}

/// The phone of [`TlsPhone::connect`] (and of `ws_phone`'s constructors).
pub type TlsPhone = StreamPhone;

pub struct StreamPhone {
    out: Mutex<Out>,
    incoming: Mutex<mpsc::Receiver<Message>>,
    local: SocketAddr,
    pub server: SocketAddr,
    /// The certificate the server presented (empty over plain WebSocket).
    pub server_cert: CertificateDer<'static>,
    /// TLS, WS or WSS: the Via token and Contact `transport` it writes.
    pub kind: TransportKind,
    /// The host it writes in its REGISTER's Via and in Contacts: its
    /// address over TLS, a `.invalid` name over WebSocket as browsers'
    /// SIP stacks (JsSIP) do.
    pub host: String,
}

impl StreamPhone {
    /// A phone on a connection made elsewhere (`ws_phone`).
    pub fn from_parts(
        out: Out,
        incoming: mpsc::Receiver<Message>,
        local: SocketAddr,
        server: SocketAddr,
        kind: TransportKind,
        host: String,
    ) -> Self {
        Self {
            out: Mutex::new(out),
            incoming: Mutex::new(incoming),
            local,
            server,
            server_cert: CertificateDer::from(Vec::new()),
            kind,
            host,
        }
    }

    /// Connects to the server's TLS address, trusting `trust`.
    pub async fn connect(server: SocketAddr, trust: &Ca) -> Self {
        let stream = tls_connect(server, trust).await.expect("TLS handshake");
        let local = stream.get_ref().0.local_addr().unwrap();
        let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (read, write) = tokio::io::split(stream);
        let rx = read_messages(read);
        Self {
            out: Mutex::new(Out::Bytes(Box::new(write))),
            incoming: Mutex::new(rx),
            local,
            server,
            server_cert,
            kind: TransportKind::Tls,
            host: local.to_string(),
        }
    }

    /// A phone on a plain TCP connection to `server` (SIP's UDP/TCP port).
    pub async fn tcp(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).await.expect("TCP connect");
        let local = stream.local_addr().unwrap();
        let (read, write) = stream.into_split();
        Self {
            out: Mutex::new(Out::Bytes(Box::new(write))),
            incoming: Mutex::new(read_messages(read)),
            local,
            server,
            server_cert: CertificateDer::from(Vec::new()),
            kind: TransportKind::Tcp,
            host: local.to_string(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    /// The flow a dialog of this phone uses.
    pub fn flow(&self) -> Target {
        Target {
            transport: self.kind,
            local: self.local,
            remote: self.server,
            conn: None,
        }
    }

    pub async fn send(&self, bytes: &[u8]) {
        match &mut *self.out.lock().await {
            Out::Bytes(w) => {
                w.write_all(bytes).await.expect("send SIP over TLS");
                w.flush().await.expect("flush");
            }
            Out::Ws(sink) => super::ws_phone::send(sink, bytes).await,
        }
    }

    /// Closes the connection as a phone going away does (a WebSocket
    /// close, a TLS close_notify).
    pub async fn close(&self) {
        match &mut *self.out.lock().await {
            Out::Bytes(w) => {
                let _ = w.shutdown().await;
            }
            Out::Ws(sink) => {
                let _ = futures_util::SinkExt::close(sink).await;
            }
        }
    }

    /// A Contact URI of this phone for `user` (`transport=` its kind).
    pub fn contact(&self, user: &str) -> String {
        format!(
            "<sip:{user}@{};transport={}>",
            self.host,
            self.kind.uri_param()
        )
    }

    /// The next message, or `None` after `wait` (or when the connection closed).
    pub async fn recv(&self, wait: Duration) -> Option<Message> {
        let mut rx = self.incoming.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok()?
    }

    /// The next request of `method`; panics after 5 s.
    pub async fn request(&self, method: Method) -> Request {
        loop {
            match self.recv(Duration::from_secs(5)).await {
                Some(Message::Request(r)) if r.method == method => return r,
                Some(_) => {}
                None => panic!("no {method:?} within 5 s"),
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

    /// Answers `req` with `code` (our `tag` in To) and an optional SDP body.
    pub async fn answer(&self, req: &Request, code: u16, tag: Option<&str>, body: Option<&str>) {
        let mut b = response(req, code, switchboard_sip::reason_phrase(code));
        if let Some(t) = tag {
            b = b.to_tag(t);
        }
        // RFC 3261 §12.1.1: a UAS copies Record-Route into its dialog's
        // responses
        if (101..300).contains(&code) {
            for rr in req.header_values("Record-Route") {
                b = b.header("Record-Route", rr);
            }
        }
        if (200..300).contains(&code) {
            b = b.header("Contact", &self.contact("phone"));
        }
        if let Some(sdp) = body {
            b = b.body("application/sdp", sdp.as_bytes().to_vec());
        }
        self.send(&b.build()).await;
    }

    /// Registers `user` over this connection (answering the 401); the
    /// Contact asks for this phone's transport.
    pub async fn register(&self, user: &str, password: &str) -> Response {
        self.register_contact(user, password, &self.contact(user))
            .await
    }

    /// [`StreamPhone::register`] with this Contact header value.
    pub async fn register_contact(&self, user: &str, password: &str, contact: &str) -> Response {
        let host = self.server;
        let call_id = format!("{:x}@tls-test", rand::random::<u128>());
        let mut cseq = 1;
        let mut auth: Option<String> = None;
        loop {
            let mut b = switchboard_sip::request::RequestBuilder::new(
                "REGISTER",
                &format!("sip:{}", host.ip()),
            )
            .via(
                self.kind.via_token(),
                &self.host,
                &switchboard_sip::request::new_branch(),
            )
            .header("Max-Forwards", "70")
            .header("From", &format!("<sip:{user}@switchboard>;tag=r{cseq}"))
            .header("To", &format!("<sip:{user}@switchboard>"))
            .header("Call-ID", &call_id)
            .header("CSeq", &format!("{cseq} REGISTER"))
            .header("Contact", contact)
            .header("Expires", "300");
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

    /// A dialog of ours calling `to` (as `user`) with this Request-URI
    /// scheme (`sip` or `sips`).
    pub fn dialog_to(&self, user: &str, to: &str, scheme: &str) -> Dialog {
        let host = self.server;
        let tag = format!("{:x}", rand::random::<u64>());
        Dialog::uac(
            &format!("{:x}@tls-test", rand::random::<u128>()),
            &tag,
            &format!("<{scheme}:{user}@{}>;tag={tag}", host.ip()),
            &format!("<{scheme}:{to}@{}>", host.ip()),
            &format!("{scheme}:{to}@{host}"),
            Vec::new(),
            self.flow(),
        )
    }

    /// Places a call from `d` as `user` (answering the 407 with
    /// `password`); returns the final response and the INVITE's CSeq.
    pub async fn invite(
        &self,
        d: &mut Dialog,
        user: &str,
        password: &str,
        offer: &str,
    ) -> (Response, u32) {
        let body = Some(("application/sdp", offer.as_bytes()));
        let first = d.invite(body, &[]);
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
        let second = d.invite(body, &[("Proxy-Authorization", &auth)]);
        self.send(&second.bytes).await;
        (self.final_response(Method::Invite).await, second.cseq)
    }
}

/// Each SIP message framed off `read` (pongs and keep-alive CRLFs between
/// messages skipped); ends when the connection does.
fn read_messages<R: AsyncRead + Unpin + Send + 'static>(mut read: R) -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16384];
        loop {
            while buf.starts_with(b"\r\n") {
                buf.drain(..2);
            }
            if let Some(n) = frame(&buf) {
                let bytes: Vec<u8> = buf.drain(..n).collect();
                if let Ok(m) = parse(&bytes)
                    && tx.send(m).await.is_err()
                {
                    return;
                }
                continue;
            }
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    rx
}

/// The length of the complete SIP message at the front of `buf`, if any.
fn frame(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("Content-Length") || n == "l")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    (buf.len() >= end + 4 + len).then_some(end + 4 + len)
}
