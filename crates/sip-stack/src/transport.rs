//! SIP over UDP and TCP on the same port, on every configured address.
//!
//! The transport layer only moves bytes: datagrams and framed stream messages
//! go up to a [`Receive`] implementation (the endpoint) together with the
//! [`Target`] they came from; [`Transports::send`] takes bytes and a target
//! and never blocks the caller. Parsing, transactions and everything above
//! live elsewhere so this file stays small.
//!
//! Why one socket per address: `BIND=0.0.0.0,::` must give IPv4 and IPv6 on
//! the same port, so IPv6 sockets are opened `IPV6_V6ONLY` and the kernel's
//! dual-stack mapping (which would make the second bind fail) is never used.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::target::{Target, TransportKind};
use switchboard_sip::framing::{self, Frame, FrameError};

/// Largest SIP message accepted on any transport. UDP cannot carry more, and
/// on streams a bigger Content-Length is an attack or a bug.
pub const MAX_MESSAGE: usize = 65_535;

/// RFC 3261 §18.1.1: a request larger than this (path MTU unknown) must go
/// over a congestion-controlled transport.
pub const UDP_REQUEST_LIMIT: usize = 1300;

/// Queue depth of one stream connection's writer. A peer that stops reading
/// fills it and then loses messages instead of growing our memory.
const CONN_QUEUE: usize = 256;

/// What the transports hand received messages to.
pub trait Receive: Send + Sync + 'static {
    /// One complete SIP message (or garbage) from `from`. Called on the
    /// receiving task: implementations must not block.
    fn receive(&self, bytes: Bytes, from: Target);
}

/// Settings for [`Transports::bind`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Local addresses; UDP and TCP are opened on each.
    pub addrs: Vec<IpAddr>,
    /// Port for every address (0 picks a free one per address, for tests).
    pub port: u16,
    /// Most simultaneous TCP connections; more are refused at accept.
    pub max_connections: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port: 5060,
            max_connections: 10_000,
            // Longer than the longest registration interval we grant, so a
            // phone registered over TCP stays reachable between refreshes.
            idle_timeout: Duration::from_secs(3900),
        }
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub udp_in: AtomicU64,
    pub tcp_in: AtomicU64,
    pub out: AtomicU64,
    pub send_errors: AtomicU64,
    pub framing_errors: AtomicU64,
    pub connections: AtomicU64,
}

/// A live stream connection: where to queue bytes for its writer task.
#[derive(Debug, Clone)]
struct Conn {
    remote: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
}

/// The bound sockets and live connections of one endpoint.
pub struct Transports {
    udp: Vec<Arc<UdpSocket>>,
    /// `udp[i]`'s local address, read once: a `getsockname` per send
    /// showed up in profiles.
    udp_addrs: Vec<SocketAddr>,
    tcp_local: Vec<SocketAddr>,
    conns: Mutex<ConnTable>,
    next_conn: AtomicU64,
    config: TransportConfig,
    pub stats: TransportStats,
    shutdown: CancellationToken,
    /// Where messages from every connection go, outbound ones included:
    /// responses to our requests come back on the connection we opened.
    receiver: Arc<dyn Receive>,
}

/// Connections by id, and the newest connection to each remote address so
/// requests to a phone reuse the connection it registered over.
#[derive(Default)]
struct ConnTable {
    by_id: HashMap<u64, Conn>,
    by_remote: HashMap<SocketAddr, u64>,
}

impl Transports {
    /// Opens UDP and TCP on every address and starts the receive loops.
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
        let (udp, listeners) = loop {
            match bind_all(&config.addrs, config.port) {
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
        let udp_addrs = udp
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let transports = Arc::new(Self {
            udp,
            udp_addrs,
            tcp_local,
            conns: Mutex::new(ConnTable::default()),
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
        for socket in &transports.udp {
            tokio::spawn(udp_loop(
                transports.clone(),
                socket.clone(),
                receiver.clone(),
            ));
        }
        for listener in listeners {
            tokio::spawn(accept_loop(transports.clone(), listener, receiver.clone()));
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

    /// Live stream connections.
    pub fn connection_count(&self) -> usize {
        self.conns.lock().map(|t| t.by_id.len()).unwrap_or(0)
    }

    /// A local address to send from towards `remote` (same family), used
    /// when a request starts a new flow.
    pub fn local_for(&self, remote: &SocketAddr) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }

    /// Sends `bytes` on the flow `target` names. Never waits: UDP is written
    /// at once (or on a spawned task if the socket buffer is full); streams
    /// queue to their writer, and a new TCP connection is opened in the
    /// background when none exists.
    pub fn send(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        self.stats.out.fetch_add(1, Ordering::Relaxed);
        match target.transport {
            TransportKind::Udp => self.send_udp(target, bytes),
            TransportKind::Tcp => self.send_tcp(target, bytes),
            TransportKind::Tls => {
                // TLS arrives with its own issue; until then say so loudly.
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%target, "TLS transport is not enabled");
            }
        }
    }

    fn send_udp(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        let socket = self
            .udp
            .iter()
            .zip(&self.udp_addrs)
            .find(|(_, a)| **a == target.local)
            .or_else(|| {
                self.udp
                    .iter()
                    .zip(&self.udp_addrs)
                    .find(|(_, a)| a.is_ipv4() == target.remote.is_ipv4())
            })
            .map(|(s, _)| s);
        let Some(socket) = socket else {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%target, "no UDP socket for this address family");
            return;
        };
        match socket.try_send_to(&bytes, target.remote) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let socket = socket.clone();
                let remote = target.remote;
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = socket.send_to(&bytes, remote).await {
                        this.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        debug!(%remote, cause = %e, "UDP send failed");
                    }
                });
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(remote = %target.remote, cause = %e, "UDP send failed");
            }
        }
    }

    fn send_tcp(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        let conn = {
            let Ok(table) = self.conns.lock() else { return };
            target
                .conn
                .and_then(|id| table.by_id.get(&id))
                .or_else(|| {
                    table
                        .by_remote
                        .get(&target.remote)
                        .and_then(|id| table.by_id.get(id))
                })
                .map(|c| c.tx.clone())
        };
        match conn {
            Some(tx) => {
                if tx.try_send(bytes).is_err() {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(%target, "TCP connection queue full or closed; message dropped");
                }
            }
            None => {
                let this = self.clone();
                let remote = target.remote;
                tokio::spawn(async move {
                    match TcpStream::connect(remote).await {
                        Ok(stream) => {
                            let receiver = this.receiver.clone();
                            let tx = this.clone().adopt(stream, Some(receiver));
                            if let Some(tx) = tx {
                                let _ = tx.send(bytes).await;
                            }
                        }
                        Err(e) => {
                            this.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            debug!(%remote, cause = %e, "TCP connect failed");
                        }
                    }
                });
            }
        }
    }

    /// Registers a connected stream, starts its reader (if a receiver is
    /// given) and writer, and returns the writer queue.
    fn adopt(
        self: Arc<Self>,
        stream: TcpStream,
        receiver: Option<Arc<dyn Receive>>,
    ) -> Option<mpsc::Sender<Bytes>> {
        let remote = stream.peer_addr().ok()?;
        let local = stream.local_addr().ok()?;
        let _ = stream.set_nodelay(true);
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        {
            let mut table = self.conns.lock().ok()?;
            table.by_id.insert(
                id,
                Conn {
                    remote,
                    local,
                    tx: tx.clone(),
                },
            );
            table.by_remote.insert(remote, id);
        }
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (read, write) = stream.into_split();
        let this = self.clone();
        tokio::spawn(async move {
            let target = Target {
                transport: TransportKind::Tcp,
                local,
                remote,
                conn: Some(id),
            };
            let reader = async {
                match receiver {
                    Some(r) => stream_reader(&this, read, target, r).await,
                    // Outbound connection without a receiver: still drain it
                    // so the peer's responses do not block its writer.
                    None => stream_reader(&this, read, target, this.null_receiver()).await,
                }
            };
            tokio::select! {
                _ = reader => {}
                _ = stream_writer(write, rx) => {}
                _ = this.shutdown.cancelled() => {}
            }
            this.forget(id, remote);
            debug!(%remote, conn = id, "TCP connection closed");
        });
        Some(tx)
    }

    fn null_receiver(&self) -> Arc<dyn Receive> {
        struct Null;
        impl Receive for Null {
            fn receive(&self, _: Bytes, _: Target) {}
        }
        Arc::new(Null)
    }

    fn forget(&self, id: u64, remote: SocketAddr) {
        if let Ok(mut table) = self.conns.lock() {
            table.by_id.remove(&id);
            if table.by_remote.get(&remote) == Some(&id) {
                table.by_remote.remove(&remote);
            }
        }
    }

    /// The remote and local address of a live connection, if it still exists.
    pub fn connection(&self, id: u64) -> Option<(SocketAddr, SocketAddr)> {
        let table = self.conns.lock().ok()?;
        table.by_id.get(&id).map(|c| (c.remote, c.local))
    }
}

/// UDP and TCP on `port` on every address (`0`: the port the first UDP
/// socket gets).
fn bind_all(
    addrs: &[std::net::IpAddr],
    mut port: u16,
) -> io::Result<(Vec<Arc<UdpSocket>>, Vec<TcpListener>)> {
    let mut udp = Vec::new();
    let mut listeners = Vec::new();
    for ip in addrs {
        let udp_socket = bind_udp(SocketAddr::new(*ip, port))?;
        port = udp_socket.local_addr()?.port();
        let listener = bind_tcp(SocketAddr::new(*ip, port))?;
        info!(udp = %udp_socket.local_addr()?, tcp = %listener.local_addr()?, "SIP transport listening");
        udp.push(Arc::new(udp_socket));
        listeners.push(listener);
    }
    Ok((udp, listeners))
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

async fn accept_loop(
    transports: Arc<Transports>,
    listener: TcpListener,
    receiver: Arc<dyn Receive>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = transports.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                if transports.connection_count() >= transports.config.max_connections {
                    warn!(%remote, "TCP connection refused: connection limit reached");
                    drop(stream);
                    continue;
                }
                transports.clone().adopt(stream, Some(receiver.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(cause = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads a byte stream, frames SIP messages by Content-Length and hands
/// each one up. Returns when the peer closes, on a framing error (the
/// stream cannot be resynchronised) or after the idle timeout.
async fn stream_reader(
    transports: &Transports,
    mut read: tokio::net::tcp::OwnedReadHalf,
    target: Target,
    receiver: Arc<dyn Receive>,
) {
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        // Drain every complete message already buffered.
        loop {
            match framing::check(&buf, MAX_MESSAGE) {
                Ok(Some(Frame::KeepAlive(n))) => {
                    let _ = buf.split_to(n);
                }
                Ok(Some(Frame::Message(n))) => {
                    let msg = buf.split_to(n).freeze();
                    transports.stats.tcp_in.fetch_add(1, Ordering::Relaxed);
                    receiver.receive(msg, target);
                }
                Ok(None) => break,
                Err(e) => {
                    transports
                        .stats
                        .framing_errors
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(remote = %target.remote, cause = ?e, "closing TCP connection: unframeable stream");
                    let _: FrameError = e;
                    return;
                }
            }
        }
        let read_result =
            tokio::time::timeout(transports.config.idle_timeout, read.read_buf(&mut buf)).await;
        match read_result {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

async fn stream_writer(mut write: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}
