//! SIP over TCP: accepting and opening connections, framing what they
//! carry, and the bounds that keep a hostile peer from holding them.
//!
//! Every bound here is one a peer could otherwise grow: connections in
//! total and per [`Source`] (checked at accept), the time an accepted
//! connection may stay without speaking SIP, the time one message may take
//! to arrive once it has started (slowloris), the time an outbound connect
//! may take, the writer queue of each connection, and the messages waiting
//! for a connect in progress (one connect per destination: concurrent
//! sends to a destination with no connection queue behind the first).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use switchboard_sip::framing::{self, Frame, FrameError, Framer, PING, PONG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

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
    remote: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    /// The source an accepted connection counts against; `None` for the
    /// ones we opened.
    source: Option<Source>,
}

/// Connections by id, the newest connection to each remote address (so
/// requests to a phone reuse the connection it registered over), inbound
/// connections per source, and the messages waiting for each connect in
/// progress.
#[derive(Default)]
pub(super) struct ConnTable {
    by_id: HashMap<u64, Conn>,
    by_remote: HashMap<SocketAddr, u64>,
    per_source: HashMap<Source, usize>,
    connecting: HashMap<SocketAddr, Vec<Bytes>>,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The peer: it counts against the caps and must prove it speaks SIP.
    Accepted,
    /// We did, to this destination (the messages queued for it go first).
    Opened(SocketAddr),
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
enum Standing {
    /// Accepted and no SIP seen yet: closed at this instant unless a
    /// well-formed message arrives first.
    New { until: Instant },
    /// Sent SIP, or we opened it: closed after the long idle timeout.
    Proven,
}

/// Why a connection's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    PeerClosed,
    Framing(FrameError),
    /// A message did not complete within the message timeout.
    Slow,
    /// Never sent SIP within the new-connection timeout.
    IdleNew,
    Idle,
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

    pub(super) fn send_tcp(self: &Arc<Self>, target: &Target, bytes: Bytes) {
        let Ok(mut table) = self.conns.lock() else {
            return;
        };
        let conn = target
            .conn
            .and_then(|id| table.by_id.get(&id))
            .or_else(|| {
                table
                    .by_remote
                    .get(&target.remote)
                    .and_then(|id| table.by_id.get(id))
            })
            .map(|c| c.tx.clone());
        if let Some(tx) = conn {
            drop(table);
            if tx.try_send(bytes).is_err() {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(%target, "TCP connection queue full or closed; message dropped");
            }
            return;
        }
        let remote = target.remote;
        // One connect per destination: later sends wait behind the first.
        if let Some(queue) = table.connecting.get_mut(&remote) {
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
            warn!(%remote, "too many TCP connects in progress; message dropped");
            return;
        }
        table.connecting.insert(remote, vec![bytes]);
        drop(table);
        tokio::spawn(self.clone().connect(remote));
    }

    /// Opens a connection to `remote` for the messages queued in
    /// `connecting`, or drops them when the connect fails or times out.
    async fn connect(self: Arc<Self>, remote: SocketAddr) {
        let timeout = self.config.connect_timeout;
        let failure = match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
            Ok(Ok(stream)) => match self.adopt(stream, Origin::Opened(remote)) {
                Ok(()) => return,
                Err(_) => None,
            },
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => {
                self.stats.connect_timeouts.fetch_add(1, Ordering::Relaxed);
                Some(format!("no answer within {timeout:?}"))
            }
        };
        self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        let dropped = self
            .conns
            .lock()
            .ok()
            .and_then(|mut t| t.connecting.remove(&remote))
            .map_or(0, |q| q.len());
        self.stats
            .send_errors
            .fetch_add(dropped as u64, Ordering::Relaxed);
        debug!(%remote, cause = failure.as_deref().unwrap_or("closed at once"), dropped, "TCP connect failed");
    }

    /// Registers a connected stream (refusing an accepted one over a cap)
    /// and starts its reader and writer.
    fn adopt(self: &Arc<Self>, stream: TcpStream, origin: Origin) -> Result<(), Refusal> {
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
                    remote,
                    local,
                    tx: tx.clone(),
                    source,
                },
            );
            table.by_remote.insert(remote, id);
            id
        };
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let standing = match origin {
            Origin::Accepted if !self.config.idle_new.is_zero() => Standing::New {
                until: Instant::now() + self.config.idle_new,
            },
            _ => Standing::Proven,
        };
        let (read, write) = stream.into_split();
        let this = self.clone();
        tokio::spawn(async move {
            let target = Target {
                transport: TransportKind::Tcp,
                local,
                remote,
                conn: Some(id),
            };
            let receiver = this.receiver.clone();
            let reader = stream_reader(&this, read, target, &*receiver, &tx, standing);
            let close = tokio::select! {
                close = reader => Some(close),
                _ = stream_writer(write, rx) => None,
                _ = this.shutdown.cancelled() => None,
            };
            this.forget(id);
            this.count_close(close, &target);
        });
        Ok(())
    }

    fn count_close(&self, close: Option<Close>, target: &Target) {
        let s = &self.stats;
        let counter = match close {
            Some(Close::Framing(e)) => {
                warn!(remote = %target.remote, cause = %e, "closing TCP connection: unframeable stream");
                &s.framing_errors
            }
            Some(Close::Slow) => {
                debug!(remote = %target.remote, "closing TCP connection: message not completed in time");
                &s.closed_slow
            }
            Some(Close::IdleNew) => {
                debug!(remote = %target.remote, "closing TCP connection: no SIP from a new connection");
                &s.closed_idle_new
            }
            Some(Close::Idle) => &s.closed_idle,
            Some(Close::PeerClosed) | None => {
                debug!(remote = %target.remote, "TCP connection closed");
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn forget(&self, id: u64) {
        if let Ok(mut table) = self.conns.lock()
            && let Some(conn) = table.by_id.remove(&id)
        {
            if table.by_remote.get(&conn.remote) == Some(&id) {
                table.by_remote.remove(&conn.remote);
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

pub(super) async fn accept_loop(transports: Arc<Transports>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = transports.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => match transports.adopt(stream, Origin::Accepted) {
                Ok(()) => {}
                Err(Refusal::Global) => {
                    transports
                        .stats
                        .refused_global
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(%remote, "TCP connection refused: connection limit reached");
                }
                Err(Refusal::PerSource) => {
                    transports
                        .stats
                        .refused_per_source
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(source = %Source::of(remote.ip()), "TCP connection refused: per-source limit reached");
                }
                Err(Refusal::Gone) => {}
            },
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
async fn stream_reader(
    transports: &Transports,
    mut read: OwnedReadHalf,
    target: Target,
    receiver: &dyn Receive,
    writer: &mpsc::Sender<Bytes>,
    mut standing: Standing,
) -> Close {
    let config = &transports.config;
    let stats = &transports.stats;
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
                    stats.tcp_in.fetch_add(1, Ordering::Relaxed);
                    if receiver.receive(msg, target) == Received::Sip {
                        standing = Standing::Proven;
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

async fn stream_writer(mut write: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}
