//! An endpoint on loopback with a small transaction user, and raw-socket
//! helpers for the tests that attack it.

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard_sip::message::Request;
use switchboard_sip::response::response;
use switchboard_sip_stack::endpoint::{Core, Endpoint, Limits, Screen};
use switchboard_sip_stack::target::Target;
use switchboard_sip_stack::transaction::{ServerTx, TimerConfig};
use switchboard_sip_stack::transport::{TransportConfig, Transports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Answers OPTIONS (and anything but INVITE) 200 with the body length it
/// got; holds INVITEs unanswered; counts ACKs; with `challenge`, screens
/// INVITEs without Proxy-Authorization with a stateless 407.
#[derive(Default)]
pub struct TestCore {
    pub held: Mutex<Vec<ServerTx>>,
    pub acks: AtomicUsize,
    pub challenge: bool,
}

impl Core for TestCore {
    fn on_request(&self, req: Request, tx: ServerTx, _from: Target) {
        if req.method.to_string() == "INVITE" {
            self.held.lock().unwrap().push(tx);
            return;
        }
        let b = response(&req, 200, "OK")
            .header("X-Body-Length", &req.body.len().to_string())
            .build();
        tx.respond(200, Bytes::from(b));
    }

    fn screen(&self, req: &Request, _from: &Target, stateless_tag: &str) -> Screen {
        if self.challenge
            && req.method.to_string() == "INVITE"
            && req.header("Proxy-Authorization").is_none()
        {
            let b = response(req, 407, "Proxy Authentication Required")
                .to_tag(stateless_tag)
                .header("Proxy-Authenticate", "Digest realm=\"test\", nonce=\"n\"")
                .build();
            return Screen::Reply(407, Bytes::from(b));
        }
        Screen::Accept
    }

    fn on_ack(&self, _req: Request, _from: Target) {
        self.acks.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Server {
    pub endpoint: Arc<Endpoint>,
    pub transports: Arc<Transports>,
    pub core: Arc<TestCore>,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An endpoint on 127.0.0.1 (ephemeral port) with these settings.
pub async fn start(config: TransportConfig, limits: Limits, core: TestCore) -> Server {
    let core = Arc::new(core);
    let endpoint = Endpoint::with_limits(core.clone(), TimerConfig::default(), limits);
    let shutdown = CancellationToken::new();
    let transports = Transports::bind(
        TransportConfig {
            addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port: 0,
            ..config
        },
        endpoint.clone(),
        shutdown.clone(),
    )
    .await
    .expect("bind");
    endpoint.wire.set(transports.clone());
    let addr = transports.tcp_addrs()[0];
    Server {
        endpoint,
        transports,
        core,
        addr,
        shutdown,
    }
}

/// A request with a fresh branch; `transport` is the Via token.
pub fn request(method: &str, transport: &str, call_id: &str, cseq: u32, body: &str) -> String {
    let branch = format!("z9hG4bK-{}", rand::random::<u64>());
    format!(
        "{method} sip:svc@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5999;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:attacker@127.0.0.1>;tag=a{cseq}\r\n\
         To: <sip:svc@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The ACK for a non-2xx final response to `invite` (same branch, the
/// response's To).
pub fn ack_for(invite: &str, response: &str) -> String {
    let line = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(str::to_owned)
            .expect("header")
    };
    let cseq = line(invite, "CSeq:")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    format!(
        "ACK sip:svc@127.0.0.1 SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\n{}\r\n{}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        line(invite, "Via:"),
        line(invite, "From:"),
        line(response, "To:"),
        line(invite, "Call-ID:"),
    )
}

/// A header's value in a message, if present.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a response.
pub fn code(msg: &str) -> u16 {
    msg.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A TCP connection to `server` from `local_ip`.
pub async fn connect_from(local_ip: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((local_ip, 0)))
        .expect("bind local");
    let stream = socket.connect(server).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one SIP message (head and Content-Length body) from a stream.
pub async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let len: usize = header(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                return Some(msg);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a request on a stream and returns the first response to it.
pub async fn ask(stream: &mut TcpStream, req: &str) -> Option<String> {
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    read_message(stream, &mut buf).await
}

/// Whether the server closed `stream` within `within` (EOF or reset),
/// reading and discarding anything it sends meanwhile.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A UDP socket on `ip` (ephemeral port).
pub async fn udp_from(ip: [u8; 4]) -> UdpSocket {
    UdpSocket::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind udp")
}

/// Every datagram that arrives on `socket` within `window`.
pub async fn collect(socket: &UdpSocket, window: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        out.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    out
}

/// Polls `f` until it holds or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
