//! SIP over stream transports (TCP, and TLS on top of TCP; WebSocket
//! connections are adopted and bounded here too, their upgrade and
//! messages are in [`super::ws`]): accepting and opening connections,
//! framing what they carry, and the bounds that keep a hostile peer from
//! holding them.
//!
//! Every bound here is one a peer could otherwise grow: connections in
//! total and per [`Source`] (checked at accept, before any TLS handshake),
//! the time a TLS handshake may take, the time an accepted connection may
//! stay without speaking SIP, the time one message may take to arrive once
//! it has started (slowloris), the time an outbound connect may take, the
//! writer queue of each connection, and the messages waiting for a connect
//! in progress (one connect per destination and transport: concurrent
//! sends to a destination with no connection queue behind the first).
//!
//! The reader and writer are generic over the byte stream, so a TLS
//! connection gets exactly the TCP framing, deadlines and pongs once its
//! handshake is done.
//!
//! We never open a WebSocket connection (a browser cannot accept one): a
//! message for a WS or WSS flow whose connection is gone is dropped and
//! counted, and [`Transports::can_reach`] tells callers so beforehand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use switchboard_sip::framing::{self, Frame, FrameError, Framer, PING, PONG};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::ws::{Origins, Refused};
use super::{MAX_MESSAGE, Receive, Received, Source, Transports};
use crate::target::{Target, TransportKind};

/// Queue depth of one stream connection's writer. A peer that stops reading
/// fills it and then loses messages instead of growing our memory. The
/// same bound applies to messages waiting for a connect in progress.
const CONN_QUEUE: usize = 256;

/// Most outbound connects in progress at once (each lasts at most the
/// connect timeout); sends needing one more are dropped and counted.
const MAX_CONNECTING: usize = 1024;

/// A live stream connection: where to queue bytes for its writer task.
#[derive(Debug, Clone)]
struct Conn {
    kind: TransportKind,
    remote: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    /// The source an accepted connection counts against; `None` for the
    /// ones we opened.
    source: Option<Source>,
    /// The destination its peer named with a Via `alias` (RFC 5923).
    alias: Option<Dest>,
}

/// A stream destination: the transport and the remote address.
type Dest = (TransportKind, SocketAddr);

/// Connections by id, the newest connection to each remote address and
/// transport (so requests to a phone reuse the connection it registered
/// over), the connections standing for another address by RFC 5923
/// aliases, inbound connections per source, and the messages waiting for
/// each connect in progress.
#[derive(Default)]
pub(super) struct ConnTable {
    by_id: HashMap<u64, Conn>,
    by_remote: HashMap<Dest, u64>,
    aliases: HashMap<Dest, u64>,
    per_source: HashMap<Source, usize>,
    connecting: HashMap<Dest, Vec<Bytes>>,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The peer: it counts against the caps and must prove it speaks SIP.
    Accepted,
    /// We did, to this destination (the messages queued for it go first).
    Opened(Dest),
}

/// What runs on a new TCP connection before SIP does.
pub(super) enum Handshake {
    /// Nothing: plain TCP.
    None,
    /// A TLS server handshake (accepted connections).
    Accept(TlsAcceptor),
    /// A TLS client handshake with this name (connections we open).
    Connect(TlsConnector, ServerName<'static>),
    /// A WebSocket upgrade (accepted connections), after a TLS server
    /// handshake for WSS.
    WebSocket {
        tls: Option<TlsAcceptor>,
        origins: Arc<Origins>,
    },
}

/// Why an accepted connection was not adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Global,
    PerSource,
    Gone,
}

/// How far a connection's peer is trusted, which decides its idle timeout.
#[derive(Debug, Clone, Copy)]
pub(super) enum Standing {
    /// Accepted and no SIP seen yet: closed at this instant unless a
    /// well-formed message arrives first.
    New { until: Instant },
    /// Sent SIP, or we opened it: closed after the long idle timeout.
    Proven,
}

/// Why a connection's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    PeerClosed,
    Framing(FrameError),
    /// A message did not complete within the message timeout.
    Slow,
    /// Never sent SIP within the new-connection timeout.
    IdleNew,
    Idle,
    /// The TLS handshake failed (a bad certificate, a client speaking
    /// something else).
    HandshakeFailed,
    /// The TLS handshake did not finish within its deadline.
    HandshakeTimeout,
    /// The WebSocket upgrade was refused (an HTTP error was sent, or the
    /// request was no upgrade).
    WsRefused(Refused),
    /// The WebSocket upgrade did not finish within the handshake deadline.
    UpgradeTimeout,
    /// A WebSocket message or frame larger than [`MAX_MESSAGE`].
    TooBig,
    /// A WebSocket protocol violation (unmasked frame, bad opcode, text
    /// that is not UTF-8).
    WsProtocol,
}

impl Transports {
    /// Live stream connections.
    pub fn connection_count(&self) -> usize {
        self.conns.lock().map(|t| t.by_id.len()).unwrap_or(0)
    }

    /// Outbound connects in progress.
    pub fn connects_pending(&self) -> usize {
        self.conns.lock().map(|t| t.connecting.len()).unwrap_or(0)
    }

    /// The remote and local address of a live connection, if it still exists.
    pub fn connection(&self, id: u64) -> Option<(SocketAddr, SocketAddr)> {
        let table = self.conns.lock().ok()?;
        table.by_id.get(&id).map(|c| (c.remote, c.local))
    }

    /// Whether a message for `target` can go anywhere: always, except on a
    /// WS or WSS flow whose connection (the one it names, or any to its
    /// address) is gone, since we never open one.
    pub fn can_reach(&self, target: &Target) -> bool {
        if !target.transport.is_websocket() {
            return true;
        }
        let Ok(table) = self.conns.lock() else {
            return false;
        };
        target
            .conn
            .and_then(|id| table.by_id.get(&id))
            .is_some_and(|c| c.kind == target.transport)
            || table
                .by_remote
                .contains_key(&(target.transport, target.remote))
    }

    /// Makes the connection `conn` (one its peer opened) the way to `alias`
    /// over its transport for as long as it lives (RFC 5923): the peer
    /// put `alias` in the Via of a request it sent on it. A later alias
    /// from the same connection replaces the earlier; a connection to the
    /// address itself still comes first ([`Transports::send_stream`]).
    pub fn add_alias(&self, conn: u64, alias: SocketAddr) {
        let Ok(mut table) = self.conns.lock() else {
            return;
        };
        let Some(c) = table.by_id.get_mut(&conn) else {
            return;
        };
        let dest = (c.kind, alias);
        if c.source.is_none() || c.kind.is_websocket() || c.alias == Some(dest) {
            return;
        }
        let old = c.alias.replace(dest);
        if let Some(old) = old
            && table.aliases.get(&old) == Some(&conn)
        {
            table.aliases.remove(&old);
        }
        table.aliases.insert(dest, conn);
        debug!(conn, %alias, "connection alias");
    }

    /// Sends on a stream flow: on the connection `target` names, else the
    /// newest one to its address over its transport, else one aliased to
    /// that address (RFC 5923), else a new one (never for WebSocket
    /// flows).
    pub(super) fn send_stream(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        let dest = (target.transport, target.remote);
        let Ok(mut table) = self.conns.lock() else {
            return;
        };
        let conn = target
            .conn
            .and_then(|id| table.by_id.get(&id))
            .or_else(|| {
                table
                    .by_remote
                    .get(&dest)
                    .or_else(|| table.aliases.get(&dest))
                    .and_then(|id| table.by_id.get(id))
            })
            .map(|c| c.tx.clone());
        if let Some(tx) = conn {
            drop(table);
            if tx.try_send(bytes).is_err() {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(%target, "connection queue full or closed; message dropped");
            }
            return;
        }
        if target.transport.is_websocket() {
            drop(table);
            self.stats.ws_unreachable.fetch_add(1, Ordering::Relaxed);
            debug!(%target, "WebSocket connection gone; message dropped");
            return;
        }
        if target.transport == TransportKind::Tls && self.config.tls.is_none() {
            drop(table);
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%target, "TLS is not configured; message dropped");
            return;
        }
        let remote = target.remote;
        // One connect per destination: later sends wait behind the first.
        if let Some(queue) = table.connecting.get_mut(&dest) {
            if queue.len() < CONN_QUEUE {
                queue.push(bytes);
            } else {
                self.stats
                    .connect_queue_drops
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if table.connecting.len() >= MAX_CONNECTING {
            drop(table);
            self.stats
                .connect_queue_drops
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "too many connects in progress; message dropped");
            return;
        }
        table.connecting.insert(dest, vec![bytes]);
        drop(table);
        tokio::spawn(self.clone().connect(dest));
    }

    /// The TLS client handshake for a connection to `remote`: its
    /// configuration and name from the destination's settings.
    fn client_handshake(&self, remote: SocketAddr) -> Result<Handshake, String> {
        let Some(tls) = &self.config.tls else {
            return Err("TLS is not configured".into());
        };
        let peer = self
            .tls_peers
            .read()
            .ok()
            .and_then(|p| p.as_ref().and_then(|f| f(remote)))
            .unwrap_or_default();
        let (config, name) = tls
            .client
            .for_peer(remote, &peer)
            .map_err(|e| e.to_string())?;
        Ok(Handshake::Connect(TlsConnector::from(config), name))
    }

    /// Opens a connection to `dest` for the messages queued in
    /// `connecting`, or drops them when the connect fails or times out.
    async fn connect(self: Arc<Self>, dest: Dest) {
        let (kind, remote) = dest;
        let timeout = self.config.connect_timeout;
        let handshake = match kind {
            TransportKind::Tls => self.client_handshake(remote),
            _ => Ok(Handshake::None),
        };
        let failure = match handshake {
            Err(e) => Some(e),
            Ok(handshake) => {
                match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
                    Ok(Ok(stream)) => {
                        match self.adopt(stream, kind, Origin::Opened(dest), handshake) {
                            Ok(()) => return,
                            Err(_) => None,
                        }
                    }
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => {
                        self.stats.connect_timeouts.fetch_add(1, Ordering::Relaxed);
                        Some(format!("no answer within {timeout:?}"))
                    }
                }
            }
        };
        self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        let dropped = self
            .conns
            .lock()
            .ok()
            .and_then(|mut t| t.connecting.remove(&dest))
            .map_or(0, |q| q.len());
        self.stats
            .send_errors
            .fetch_add(dropped as u64, Ordering::Relaxed);
        debug!(%remote, transport = %kind, cause = failure.as_deref().unwrap_or("closed at once"), dropped, "connect failed");
    }

    /// Registers a connected stream (refusing an accepted one over a cap)
    /// and starts its task: the handshake if any, then reader and writer.
    fn adopt(
        self: &Arc<Self>,
        stream: TcpStream,
        kind: TransportKind,
        origin: Origin,
        handshake: Handshake,
    ) -> Result<(), Refusal> {
        let remote = stream.peer_addr().map_err(|_| Refusal::Gone)?;
        let local = stream.local_addr().map_err(|_| Refusal::Gone)?;
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let id = {
            let mut table = self.conns.lock().map_err(|_| Refusal::Gone)?;
            let source = match origin {
                Origin::Accepted => {
                    let source = Source::of(remote.ip());
                    if table.by_id.len() >= self.config.max_connections {
                        return Err(Refusal::Global);
                    }
                    let count = table.per_source.get(&source).copied().unwrap_or(0);
                    if self.config.max_per_source > 0 && count >= self.config.max_per_source {
                        return Err(Refusal::PerSource);
                    }
                    table.per_source.insert(source, count + 1);
                    Some(source)
                }
                Origin::Opened(dest) => {
                    // Under the table lock, so no send overtakes them.
                    for bytes in table.connecting.remove(&dest).unwrap_or_default() {
                        if tx.try_send(bytes).is_err() {
                            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None
                }
            };
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            table.by_id.insert(
                id,
                Conn {
                    kind,
                    remote,
                    local,
                    tx: tx.clone(),
                    source,
                    alias: None,
                },
            );
            table.by_remote.insert((kind, remote), id);
            id
        };
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let standing = match origin {
            Origin::Accepted if !self.config.idle_new.is_zero() => Standing::New {
                until: Instant::now() + self.config.idle_new,
            },
            _ => Standing::Proven,
        };
        let this = self.clone();
        let outbound = matches!(origin, Origin::Opened(_));
        tokio::spawn(async move {
            let target = Target {
                transport: kind,
                local,
                remote,
                conn: Some(id),
            };
            let spoke_sip = Arc::new(AtomicBool::new(false));
            let conn = Connection {
                target,
                tx,
                standing,
                outbound,
                spoke_sip: spoke_sip.clone(),
            };
            let close = tokio::select! {
                close = this.run(stream, handshake, conn, rx) => close,
                _ = this.shutdown.cancelled() => None,
            };
            this.forget(id);
            this.count_close(close, &target);
            if !this.shutdown.is_cancelled() && spoke_sip.load(Ordering::Relaxed) {
                this.report_close(target);
            }
        });
        Ok(())
    }

    /// A connection's life after adoption: the TLS handshake (under its
    /// deadline) when there is one, the WebSocket upgrade for WS and WSS,
    /// then reader and writer until either stops.
    async fn run(
        &self,
        stream: TcpStream,
        handshake: Handshake,
        conn: Connection,
        rx: mpsc::Receiver<Bytes>,
    ) -> Option<Close> {
        let deadline = self.config.handshake_timeout;
        match handshake {
            Handshake::None => {
                let (read, write) = stream.into_split();
                self.serve(read, write, conn, rx).await
            }
            Handshake::Accept(acceptor) => {
                match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let (read, write) = tokio::io::split(tls);
                        self.serve(read, write, conn, rx).await
                    }
                    Ok(Err(e)) => Some(self.handshake_failed(&conn, &rx, &e.to_string())),
                    Err(_) => Some(Close::HandshakeTimeout),
                }
            }
            Handshake::WebSocket { tls: None, origins } => {
                self.serve_ws(stream, &origins, conn, rx).await
            }
            Handshake::WebSocket {
                tls: Some(acceptor),
                origins,
            } => match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => self.serve_ws(tls, &origins, conn, rx).await,
                Ok(Err(e)) => Some(self.handshake_failed(&conn, &rx, &e.to_string())),
                Err(_) => Some(Close::HandshakeTimeout),
            },
            Handshake::Connect(connector, name) => {
                match tokio::time::timeout(deadline, connector.connect(name, stream)).await {
                    Ok(Ok(tls)) => {
                        let (read, write) = tokio::io::split(tls);
                        self.serve(read, write, conn, rx).await
                    }
                    Ok(Err(e)) => Some(self.handshake_failed(&conn, &rx, &e.to_string())),
                    Err(_) => {
                        self.handshake_failed(&conn, &rx, "timed out");
                        Some(Close::HandshakeTimeout)
                    }
                }
            }
        }
    }

    /// Logs a failed handshake; on a connection we opened the messages
    /// waiting for it are lost, as with a failed connect.
    fn handshake_failed(
        &self,
        conn: &Connection,
        rx: &mpsc::Receiver<Bytes>,
        cause: &str,
    ) -> Close {
        let remote = conn.target.remote;
        if conn.outbound {
            self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            let dropped = rx.len();
            self.stats
                .send_errors
                .fetch_add(dropped as u64, Ordering::Relaxed);
            warn!(%remote, cause, dropped, "outbound TLS handshake failed");
        } else {
            debug!(%remote, cause, "inbound TLS handshake failed");
        }
        Close::HandshakeFailed
    }

    /// Reader and writer of an established connection.
    async fn serve<R, W>(
        &self,
        read: R,
        write: W,
        conn: Connection,
        rx: mpsc::Receiver<Bytes>,
    ) -> Option<Close>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let receiver = self.receiver.clone();
        let reader = stream_reader(self, read, &conn, &*receiver);
        tokio::select! {
            close = reader => Some(close),
            _ = stream_writer(write, rx) => None,
        }
    }

    fn count_close(&self, close: Option<Close>, target: &Target) {
        let s = &self.stats;
        let (remote, kind) = (target.remote, target.transport);
        let counter = match close {
            Some(Close::Framing(e)) => {
                warn!(%remote, transport = %kind, cause = %e, "closing connection: unframeable stream");
                &s.framing_errors
            }
            Some(Close::Slow) => {
                debug!(%remote, transport = %kind, "closing connection: message not completed in time");
                &s.closed_slow
            }
            Some(Close::IdleNew) => {
                debug!(%remote, transport = %kind, "closing connection: no SIP from a new connection");
                &s.closed_idle_new
            }
            Some(Close::Idle) => &s.closed_idle,
            Some(Close::HandshakeFailed) => &s.tls_handshake_failures,
            Some(Close::HandshakeTimeout) => {
                debug!(%remote, "closing connection: TLS handshake not completed in time");
                &s.tls_handshake_timeouts
            }
            Some(Close::WsRefused(why)) => match why {
                Refused::Origin => &s.ws_refused_origin,
                Refused::Subprotocol => &s.ws_refused_subprotocol,
                Refused::NotWebSocket => &s.ws_refused_other,
            },
            Some(Close::UpgradeTimeout) => {
                debug!(%remote, transport = %kind, "closing connection: WebSocket upgrade not completed in time");
                &s.ws_upgrade_timeouts
            }
            Some(Close::TooBig) => {
                debug!(%remote, transport = %kind, "closing connection: WebSocket message too large");
                &s.ws_oversize
            }
            Some(Close::WsProtocol) => &s.framing_errors,
            Some(Close::PeerClosed) | None => {
                debug!(%remote, transport = %kind, "connection closed");
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Tells [`super::TransportConfig::closes`] that `flow` (a
    /// connection that carried SIP) has closed, if its transport is one
    /// asked for; never waits.
    fn report_close(&self, flow: Target) {
        let Some(reports) = &self.config.closes else {
            return;
        };
        if !reports.kinds.contains(&flow.transport) {
            return;
        }
        let counter = match reports.tx.try_send(flow) {
            Ok(()) => &self.stats.close_reports,
            Err(_) => {
                debug!(%flow, "closed flow not reported: the queue is full");
                &self.stats.close_reports_dropped
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn forget(&self, id: u64) {
        if let Ok(mut table) = self.conns.lock()
            && let Some(conn) = table.by_id.remove(&id)
        {
            let dest = (conn.kind, conn.remote);
            if table.by_remote.get(&dest) == Some(&id) {
                table.by_remote.remove(&dest);
            }
            if let Some(alias) = conn.alias
                && table.aliases.get(&alias) == Some(&id)
            {
                table.aliases.remove(&alias);
            }
            if let Some(source) = conn.source
                && let Some(n) = table.per_source.get_mut(&source)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    table.per_source.remove(&source);
                }
            }
        }
    }
}

/// A connection's flow and what its reader needs.
pub(super) struct Connection {
    pub(super) target: Target,
    /// Its writer's queue (pongs go there).
    tx: mpsc::Sender<Bytes>,
    pub(super) standing: Standing,
    /// We opened it.
    outbound: bool,
    /// Set once it has delivered a well-formed SIP message (its close is
    /// reported then, see [`super::CloseReports`]).
    pub(super) spoke_sip: Arc<AtomicBool>,
}

/// Accepts `kind` connections on a TCP listener; each one starts with
/// what `handshake` makes (a TLS handshake, a WebSocket upgrade).
pub(super) async fn accept_loop(
    transports: Arc<Transports>,
    listener: TcpListener,
    kind: TransportKind,
    handshake: impl Fn() -> Handshake,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = transports.shutdown.cancelled() => return,
        };
        let handshake = handshake();
        match accepted {
            Ok((stream, remote)) => {
                match transports.adopt(stream, kind, Origin::Accepted, handshake) {
                    Ok(()) => {}
                    Err(Refusal::Global) => {
                        transports
                            .stats
                            .refused_global
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(%remote, transport = %kind, "connection refused: connection limit reached");
                    }
                    Err(Refusal::PerSource) => {
                        transports
                            .stats
                            .refused_per_source
                            .fetch_add(1, Ordering::Relaxed);
                        debug!(source = %Source::of(remote.ip()), transport = %kind, "connection refused: per-source limit reached");
                    }
                    Err(Refusal::Gone) => {}
                }
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(cause = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads a byte stream, frames SIP messages by Content-Length, hands each
/// one up and answers keep-alive pings. Returns when the peer closes, on a
/// framing error (the stream cannot be resynchronised), or when a deadline
/// passes: the message timeout once a message has started, the
/// new-connection timeout until the peer has sent SIP, the idle timeout
/// after.
async fn stream_reader<R: AsyncRead + Unpin>(
    transports: &Transports,
    mut read: R,
    conn: &Connection,
    receiver: &dyn Receive,
) -> Close {
    let (target, writer, mut standing) = (conn.target, &conn.tx, conn.standing);
    let config = &transports.config;
    let stats = &transports.stats;
    let messages_in = match target.transport {
        TransportKind::Tls => &stats.tls_in,
        _ => &stats.tcp_in,
    };
    let mut buf = BytesMut::with_capacity(8192);
    let mut framer = Framer::default();
    // When the first byte of the message at the front arrived.
    let mut message_since: Option<Instant> = None;
    loop {
        // Drain every complete frame already buffered.
        loop {
            match framer.check(&buf, MAX_MESSAGE) {
                Ok(Some(Frame::Ping)) => {
                    let _ = buf.split_to(PING.len());
                    stats.pings.fetch_add(1, Ordering::Relaxed);
                    if writer.try_send(Bytes::from_static(PONG)).is_err() {
                        stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(Frame::KeepAlive(n))) => {
                    let _ = buf.split_to(n);
                }
                Ok(Some(Frame::Message(n))) => {
                    let msg = buf.split_to(n).freeze();
                    message_since = None;
                    messages_in.fetch_add(1, Ordering::Relaxed);
                    if receiver.receive(msg, target) == Received::Sip {
                        standing = Standing::Proven;
                        conn.spoke_sip.store(true, Ordering::Relaxed);
                    }
                }
                Ok(None) => break,
                Err(e) => return Close::Framing(e),
            }
        }
        let now = Instant::now();
        if framing::holds_message(&buf) {
            message_since.get_or_insert(now);
        } else {
            message_since = None;
        }
        let idle_deadline = match standing {
            Standing::New { until } => until,
            Standing::Proven => now + config.idle_timeout,
        };
        let slow_deadline = message_since
            .filter(|_| !config.message_timeout.is_zero())
            .map(|since| since + config.message_timeout);
        let deadline = slow_deadline.map_or(idle_deadline, |d| d.min(idle_deadline));
        match tokio::time::timeout_at(deadline, read.read_buf(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Close::PeerClosed,
            Ok(Ok(_)) => {}
            Err(_) if slow_deadline.is_some_and(|d| d <= idle_deadline) => return Close::Slow,
            Err(_) => {
                return match standing {
                    Standing::New { .. } => Close::IdleNew,
                    Standing::Proven => Close::Idle,
                };
            }
        }
    }
}

async fn stream_writer<W: AsyncWrite + Unpin>(mut write: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
        // a TLS stream holds what it was given until flushed; on TCP this
        // costs nothing
        if write.flush().await.is_err() {
            return;
        }
    }
}
