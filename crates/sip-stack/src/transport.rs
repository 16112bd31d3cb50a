//! SIP over UDP and TCP on the same port, and TLS, WebSocket and secure
//! WebSocket (RFC 7118) on ports of their own, on every configured address.
//!
//! The transport layer only moves bytes: datagrams and framed stream messages
//! go up to a [`Receive`] implementation (the endpoint) together with the
//! [`Target`] they came from; [`Transports::send`] takes bytes and a target
//! and never blocks the caller. Parsing, transactions and everything above
//! live elsewhere so this layer stays small; the stream side (connections,
//! framing, and the bounds on what a peer can hold), TCP, TLS and
//! WebSocket alike, is in `stream`, what TLS adds (certificates,
//! verification) in [`tls`], and the WebSocket upgrade and messages in
//! [`ws`]. A stream connection that carried SIP is reported when it
//! closes ([`CloseReports`]), so state learnt on it can go with it.
//!
//! Why one socket per address: `BIND=0.0.0.0,::` must give IPv4 and IPv6 on
//! the same port, so IPv6 sockets are opened `IPV6_V6ONLY` and the kernel's
//! dual-stack mapping (which would make the second bind fail) is never used.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use crate::source::Source;
use crate::target::{Target, TransportKind};

mod stream;
pub mod tls;
pub mod ws;

use stream::Handshake;
use tls::{TlsPeers, TlsSetup};
use ws::WsSetup;

/// Largest SIP message accepted on any transport. UDP cannot carry more, and
/// on streams a bigger Content-Length is an attack or a bug.
pub const MAX_MESSAGE: usize = 65_535;

/// RFC 3261 §18.1.1: a request larger than this (path MTU unknown) must go
/// over a congestion-controlled transport.
pub const UDP_REQUEST_LIMIT: usize = 1300;

/// Datagrams one UDP socket holds back while its send buffer is full;
/// beyond that they are dropped (and counted), as the network would.
const UDP_SEND_QUEUE: usize = 4096;

/// What a receiver made of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A well-formed SIP request or response: a stream connection that
    /// delivers one has shown it speaks SIP.
    Sip,
    /// Anything else (unparseable, or dropped unread by a limit).
    NotSip,
}

/// What the transports hand received messages to.
pub trait Receive: Send + Sync + 'static {
    /// One complete SIP message (or garbage) from `from`. Called on the
    /// receiving task: implementations must not block.
    fn receive(&self, bytes: Bytes, from: Target) -> Received;
}

/// Settings for [`Transports::bind`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Local addresses; UDP and TCP (and TLS with a listener) are opened
    /// on each.
    pub addrs: Vec<IpAddr>,
    /// Port for every address (0 picks a free one per address, for tests).
    pub port: u16,
    /// Most simultaneous stream connections, TCP and TLS together; more are
    /// refused at accept.
    pub max_connections: usize,
    /// Most simultaneous inbound stream connections (TCP and TLS together)
    /// from one [`Source`] (an IPv4 address, an IPv6 /64); 0: no
    /// per-source cap.
    pub max_per_source: usize,
    /// A TCP or TLS connection that has sent SIP, or that we opened, is
    /// closed after this long without traffic.
    pub idle_timeout: Duration,
    /// An accepted TCP or TLS connection that has not sent a well-formed SIP
    /// message this long after it was accepted is closed (keep-alive pings
    /// do not extend it). Zero: such connections get `idle_timeout` too.
    pub idle_new: Duration,
    /// Once the first byte of a message has arrived, the whole message must
    /// arrive within this (a slowloris is closed). Zero: no deadline.
    pub message_timeout: Duration,
    /// How long an outbound TCP connect may take before the messages
    /// queued for it are dropped.
    pub connect_timeout: Duration,
    /// How long a TLS handshake may take, inbound or outbound; a
    /// connection that has not finished it by then is closed.
    pub handshake_timeout: Duration,
    /// TLS: a listener and the client side; `None`: no TLS (sends over TLS
    /// are dropped and counted).
    pub tls: Option<TlsSetup>,
    /// SIP over WebSocket listeners (WSS needs `tls` with a listener: it
    /// serves that certificate); `None`: no WebSocket.
    pub ws: Option<WsSetup>,
    /// Where closed stream flows are reported; `None`: nowhere.
    pub closes: Option<CloseReports>,
}

/// Where the transports report a stream flow that has closed, for whoever
/// keeps state learnt on it (a registrar's bindings).
///
/// A connection is reported once, when it has ended for any reason (the
/// peer closed it, a limit or deadline closed it, its writer failed), if
/// it was of one of `kinds` and delivered at least one well-formed SIP
/// message (nothing can have been learnt on another). Connections ended
/// by shutdown are not reported. The report is the flow as its messages
/// named it (`conn` set).
#[derive(Debug, Clone)]
pub struct CloseReports {
    /// Bounded: a report that does not fit is dropped (counted in
    /// [`TransportStats::close_reports_dropped`]) and the closing
    /// connection never waits.
    pub tx: mpsc::Sender<Target>,
    /// The transports whose connections are reported.
    pub kinds: Vec<TransportKind>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port: 5060,
            max_connections: 10_000,
            // one office behind one NAT address still fits
            max_per_source: 256,
            // Longer than the longest registration interval we grant, so a
            // phone registered over TCP stays reachable between refreshes.
            idle_timeout: Duration::from_secs(3900),
            idle_new: Duration::from_secs(20),
            message_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            tls: None,
            ws: None,
            closes: None,
        }
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub udp_in: AtomicU64,
    pub tcp_in: AtomicU64,
    /// Messages received over TLS.
    pub tls_in: AtomicU64,
    pub out: AtomicU64,
    pub send_errors: AtomicU64,
    /// Stream connections closed because their bytes could not be framed.
    pub framing_errors: AtomicU64,
    /// Stream connections adopted so far (accepted and opened).
    pub connections: AtomicU64,
    /// Inbound connections refused at the global cap.
    pub refused_global: AtomicU64,
    /// Inbound connections refused at the per-source cap.
    pub refused_per_source: AtomicU64,
    /// Connections closed because a message did not complete in time.
    pub closed_slow: AtomicU64,
    /// Accepted connections closed for sending no SIP in time.
    pub closed_idle_new: AtomicU64,
    /// Connections closed after the long idle timeout.
    pub closed_idle: AtomicU64,
    /// TLS handshakes that failed (inbound and outbound: a certificate
    /// refused, a peer not speaking TLS).
    pub tls_handshake_failures: AtomicU64,
    /// TLS connections closed because the handshake did not finish in time.
    pub tls_handshake_timeouts: AtomicU64,
    /// RFC 5626 pings answered with a pong.
    pub pings: AtomicU64,
    /// Messages received over WebSocket, and over secure WebSocket.
    pub ws_in: AtomicU64,
    pub wss_in: AtomicU64,
    /// Connections upgraded to WebSocket, plain and secure.
    pub ws_upgraded: AtomicU64,
    pub wss_upgraded: AtomicU64,
    /// WebSocket upgrades refused (403) for their `Origin`.
    pub ws_refused_origin: AtomicU64,
    /// WebSocket upgrades refused (400) for not offering subprotocol `sip`.
    pub ws_refused_subprotocol: AtomicU64,
    /// Upgrade requests that were not WebSocket upgrades (or not HTTP).
    pub ws_refused_other: AtomicU64,
    /// Connections closed because the upgrade did not finish in time.
    pub ws_upgrade_timeouts: AtomicU64,
    /// Connections closed for a WebSocket message larger than MAX_MESSAGE.
    pub ws_oversize: AtomicU64,
    /// Messages dropped because their WebSocket connection was gone.
    pub ws_unreachable: AtomicU64,
    /// Outbound connects that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Of those, the ones that timed out.
    pub connect_timeouts: AtomicU64,
    /// Messages dropped because too many connects were pending, or the
    /// queue of a pending connect was full.
    pub connect_queue_drops: AtomicU64,
    /// Datagrams queued because the socket buffer was full.
    pub udp_queued: AtomicU64,
    /// Datagrams dropped because that queue was full too.
    pub udp_queue_drops: AtomicU64,
    /// Closed flows reported to [`TransportConfig::closes`].
    pub close_reports: AtomicU64,
    /// Closed flows not reported because the receiver's queue was full
    /// (or it was gone).
    pub close_reports_dropped: AtomicU64,
}

/// One datagram waiting for its socket to drain.
type Datagram = (Bytes, SocketAddr);

/// The bound sockets and live connections of one endpoint.
pub struct Transports {
    udp: Vec<Arc<UdpSocket>>,
    /// `udp[i]`'s local address, read once: a `getsockname` per send
    /// showed up in profiles.
    udp_addrs: Vec<SocketAddr>,
    /// `udp[i]`'s queue for datagrams that would block, drained by one
    /// task per socket.
    udp_queues: Vec<mpsc::Sender<Datagram>>,
    tcp_local: Vec<SocketAddr>,
    /// The TLS listening addresses (empty without a TLS listener).
    tls_local: Vec<SocketAddr>,
    /// The WebSocket and secure WebSocket listening addresses.
    ws_local: Vec<SocketAddr>,
    wss_local: Vec<SocketAddr>,
    /// Outbound TLS settings per destination, when someone set them.
    tls_peers: RwLock<Option<TlsPeers>>,
    conns: Mutex<stream::ConnTable>,
    next_conn: AtomicU64,
    config: TransportConfig,
    pub stats: TransportStats,
    shutdown: CancellationToken,
    /// Where messages from every connection go, outbound ones included:
    /// responses to our requests come back on the connection we opened.
    receiver: Arc<dyn Receive>,
}

impl Transports {
    /// Opens UDP and TCP (and TLS when configured with a listener) on every
    /// address and starts the receive loops.
    ///
    /// # Errors
    /// Any bind failure (port taken, address not local) stops start-up.
    pub async fn bind(
        config: TransportConfig,
        receiver: Arc<dyn Receive>,
        shutdown: CancellationToken,
    ) -> io::Result<Arc<Self>> {
        // Port 0 (tests): the first socket picks a free port and every
        // other address and TCP reuse it, so one number describes the
        // endpoint as it does in production. The number the kernel picked
        // for UDP may be taken for TCP (an outgoing connection's ephemeral
        // port): then the kernel is asked again.
        let mut attempt = 0;
        let tls_port = config
            .tls
            .as_ref()
            .and_then(|t| t.listen.as_ref())
            .map(|(port, _)| *port);
        let (udp, listeners, tls_listeners) = loop {
            match bind_all(&config.addrs, config.port, tls_port) {
                Err(e)
                    if config.port == 0 && e.kind() == io::ErrorKind::AddrInUse && attempt < 20 =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let tcp_local = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let tls_local = tls_listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let acceptor = config
            .tls
            .as_ref()
            .and_then(|t| t.listen.as_ref())
            .map(|(_, server)| tokio_rustls::TlsAcceptor::from(server.clone()));
        let ws = config.ws.clone().unwrap_or_default();
        if ws.wss_port.is_some() && acceptor.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "secure WebSocket needs the TLS listener's certificate",
            ));
        }
        let ws_listeners = bind_listeners(&config.addrs, ws.ws_port, TransportKind::Ws)?;
        let wss_listeners = bind_listeners(&config.addrs, ws.wss_port, TransportKind::Wss)?;
        let addrs_of = |ls: &[TcpListener]| {
            ls.iter()
                .map(|l| l.local_addr())
                .collect::<io::Result<Vec<_>>>()
        };
        let (ws_local, wss_local) = (addrs_of(&ws_listeners)?, addrs_of(&wss_listeners)?);
        let udp_addrs = udp
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let (udp_queues, queue_rxs): (Vec<_>, Vec<_>) =
            udp.iter().map(|_| mpsc::channel(UDP_SEND_QUEUE)).unzip();
        let transports = Arc::new(Self {
            udp,
            udp_addrs,
            udp_queues,
            tcp_local,
            tls_local,
            ws_local,
            wss_local,
            tls_peers: RwLock::new(None),
            conns: Mutex::new(stream::ConnTable::default()),
            next_conn: AtomicU64::new(1),
            config,
            stats: TransportStats::default(),
            shutdown: shutdown.clone(),
            receiver: receiver.clone(),
        });
        // One receive loop per socket, handling each datagram inline. (One
        // loop per runtime worker on the same socket was measured too: no
        // higher ceiling on two cores, and more CPU per message at low rates,
        // since every datagram woke both loops.)
        for (socket, rx) in transports.udp.iter().zip(queue_rxs) {
            tokio::spawn(udp_loop(
                transports.clone(),
                socket.clone(),
                receiver.clone(),
            ));
            tokio::spawn(udp_drain(transports.clone(), socket.clone(), rx));
        }
        for listener in listeners {
            tokio::spawn(stream::accept_loop(
                transports.clone(),
                listener,
                TransportKind::Tcp,
                || Handshake::None,
            ));
        }
        for listener in tls_listeners {
            let acceptor = acceptor.clone();
            tokio::spawn(stream::accept_loop(
                transports.clone(),
                listener,
                TransportKind::Tls,
                move || match &acceptor {
                    Some(a) => Handshake::Accept(a.clone()),
                    None => Handshake::None,
                },
            ));
        }
        let websockets = ws_listeners
            .into_iter()
            .map(|l| (l, TransportKind::Ws, None))
            .chain(
                wss_listeners
                    .into_iter()
                    .map(|l| (l, TransportKind::Wss, acceptor.clone())),
            );
        for (listener, kind, tls) in websockets {
            let origins = ws.origins.clone();
            tokio::spawn(stream::accept_loop(
                transports.clone(),
                listener,
                kind,
                move || Handshake::WebSocket {
                    tls: tls.clone(),
                    origins: origins.clone(),
                },
            ));
        }
        Ok(transports)
    }

    /// The UDP addresses actually bound (with the real port when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The TCP listening addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_local
    }

    /// The TLS listening addresses (empty without a TLS listener).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_local
    }

    /// The WebSocket listening addresses (empty without `WsSetup::ws_port`).
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws_local
    }

    /// The secure WebSocket listening addresses (empty without
    /// `WsSetup::wss_port`).
    pub fn wss_addrs(&self) -> &[SocketAddr] {
        &self.wss_local
    }

    /// Sets how outbound TLS connections are checked per destination
    /// (asked at each connect).
    pub fn set_tls_peers(&self, peers: TlsPeers) {
        match self.tls_peers.write() {
            Ok(mut p) => *p = Some(peers),
            Err(poisoned) => *poisoned.into_inner() = Some(peers),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// A local address to send from towards `remote` (same family), used
    /// when a request starts a new flow.
    pub fn local_for(&self, remote: &SocketAddr) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }

    /// The local address to write in Via and Contact for a new flow to
    /// `remote` over `kind`: for TLS, WS and WSS that listener's address
    /// of that family (the UDP address when there is no listener:
    /// responses come back on the connection anyway), else the UDP/TCP
    /// address.
    pub fn local_for_kind(&self, remote: &SocketAddr, kind: TransportKind) -> Option<SocketAddr> {
        let listeners = match kind {
            TransportKind::Tls => &self.tls_local,
            TransportKind::Ws => &self.ws_local,
            TransportKind::Wss => &self.wss_local,
            TransportKind::Udp | TransportKind::Tcp => return self.local_for(remote),
        };
        listeners
            .iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .copied()
            .or_else(|| self.local_for(remote))
    }

    /// Sends `bytes` on the flow `target` names. Never waits: UDP is written
    /// at once (or queued to the socket's drain task if its buffer is
    /// full); streams queue to their writer, and a new TCP or TLS
    /// connection is opened in the background when none exists (a
    /// WebSocket one never is: without its connection the message is
    /// dropped).
    pub fn send(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        self.stats.out.fetch_add(1, Ordering::Relaxed);
        match target.transport {
            TransportKind::Udp => self.send_udp(target, bytes),
            _ => self.send_stream(target, bytes),
        }
    }

    fn send_udp(&self, target: &Target, bytes: Bytes) {
        let index = self
            .udp_addrs
            .iter()
            .position(|a| *a == target.local)
            .or_else(|| {
                self.udp_addrs
                    .iter()
                    .position(|a| a.is_ipv4() == target.remote.is_ipv4())
            });
        let Some(index) = index else {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%target, "no UDP socket for this address family");
            return;
        };
        match self.udp[index].try_send_to(&bytes, target.remote) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The socket buffer is full: one bounded queue per socket,
                // drained by one task, instead of a task per datagram.
                hold_back(&self.udp_queues[index], (bytes, target.remote), &self.stats);
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(remote = %target.remote, cause = %e, "UDP send failed");
            }
        }
    }
}

/// The sockets of [`bind_all`]: UDP, TCP listeners, TLS listeners.
type Bound = (Vec<Arc<UdpSocket>>, Vec<TcpListener>, Vec<TcpListener>);

/// UDP and TCP on `port` on every address (`0`: the port the first UDP
/// socket gets), and TLS on `tls_port` when given (`0`: the port the first
/// TLS listener gets).
fn bind_all(
    addrs: &[std::net::IpAddr],
    mut port: u16,
    mut tls_port: Option<u16>,
) -> io::Result<Bound> {
    let mut udp = Vec::new();
    let mut listeners = Vec::new();
    let mut tls = Vec::new();
    for ip in addrs {
        let udp_socket = bind_udp(SocketAddr::new(*ip, port))?;
        port = udp_socket.local_addr()?.port();
        let listener = bind_tcp(SocketAddr::new(*ip, port))?;
        info!(udp = %udp_socket.local_addr()?, tcp = %listener.local_addr()?, "SIP transport listening");
        udp.push(Arc::new(udp_socket));
        listeners.push(listener);
        if let Some(p) = tls_port {
            let listener = bind_tcp(SocketAddr::new(*ip, p))?;
            let local = listener.local_addr()?;
            info!(tls = %local, "SIP over TLS listening");
            tls_port = Some(local.port());
            tls.push(listener);
        }
    }
    Ok((udp, listeners, tls))
}

/// A listener on `port` of every address (`0`: the port the first one
/// gets); none without a port.
fn bind_listeners(
    addrs: &[IpAddr],
    port: Option<u16>,
    kind: TransportKind,
) -> io::Result<Vec<TcpListener>> {
    let Some(mut port) = port else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(addrs.len());
    for ip in addrs {
        let listener = bind_tcp(SocketAddr::new(*ip, port))?;
        let local = listener.local_addr()?;
        info!(transport = %kind, addr = %local, "SIP over WebSocket listening");
        port = local.port();
        out.push(listener);
    }
    Ok(out)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Bursts of REGISTERs arrive faster than one task drains them at peak;
    // a larger buffer turns loss into latency. The kernel caps the value.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn udp_loop(transports: Arc<Transports>, socket: Arc<UdpSocket>, receiver: Arc<dyn Receive>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    // One zeroed buffer for the life of the loop; each datagram is copied
    // out at its own length. (Receiving into a fresh slice of a BytesMut
    // meant zero-filling 64 KB per datagram and faulting in new pages every
    // few hundred: that was most of the receive path's CPU.)
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = transports.shutdown.cancelled() => return,
        };
        match received {
            Ok((len, remote)) => {
                let bytes = Bytes::copy_from_slice(&buf[..len]);
                transports.stats.udp_in.fetch_add(1, Ordering::Relaxed);
                // RFC 5626 keepalives over UDP are a bare CRLF(CRLF): no message.
                if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                let from = Target {
                    transport: TransportKind::Udp,
                    local,
                    remote,
                    conn: None,
                };
                receiver.receive(bytes, from);
            }
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on
                // Linux as ECONNREFUSED; it is not a reason to stop serving.
                debug!(cause = %e, "UDP receive error");
            }
        }
    }
}

/// Queues a datagram its socket could not take at once, or drops it
/// (counted) when the queue is full.
fn hold_back(queue: &mpsc::Sender<Datagram>, datagram: Datagram, stats: &TransportStats) {
    let remote = datagram.1;
    match queue.try_send(datagram) {
        Ok(()) => {
            stats.udp_queued.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            stats.udp_queue_drops.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, "UDP send queue full; datagram dropped");
        }
    }
}

/// Sends the datagrams [`Transports::send_udp`] could not write at once,
/// waiting for the socket as long as it takes.
async fn udp_drain(
    transports: Arc<Transports>,
    socket: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<Datagram>,
) {
    loop {
        let next = tokio::select! {
            d = queue.recv() => d,
            _ = transports.shutdown.cancelled() => return,
        };
        let Some((bytes, remote)) = next else { return };
        if let Err(e) = socket.send_to(&bytes, remote).await {
            transports.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, cause = %e, "UDP send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // On loopback a UDP send never blocks (the kernel releases the
    // datagram from the sender's buffer as it loops it back), so the
    // would-block path is tested here, on the queue itself.
    #[test]
    fn datagrams_that_would_block_are_queued_then_dropped() {
        let stats = TransportStats::default();
        let (queue, mut rx) = mpsc::channel(2);
        let to = SocketAddr::from(([127, 0, 0, 1], 5060));
        for i in 0..5u8 {
            hold_back(&queue, (Bytes::from(vec![i]), to), &stats);
        }
        assert_eq!(stats.udp_queued.load(Ordering::Relaxed), 2);
        assert_eq!(stats.udp_queue_drops.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_recv().map(|d| d.0), Ok(Bytes::from(vec![0])));
        assert_eq!(rx.try_recv().map(|d| d.0), Ok(Bytes::from(vec![1])));
        assert!(rx.try_recv().is_err());
    }
}
