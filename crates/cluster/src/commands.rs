//! Commands between replicas over Redis pub/sub.
//!
//! Each replica listens on `cmd:all` and `cmd:to:{replica}`. Payloads are
//! JSON envelopes `{"from": replica, "cmd": {"type": …}}`; anything else
//! (or a command type this version does not know) is logged, counted and
//! skipped. Delivery is best effort, as pub/sub is: a command sent while a
//! replica is disconnected is lost, so anything that must outlive an outage
//! (a block) is also stored in a key.
//!
//! The subscriber task keeps its own connection (pub/sub takes a connection
//! over), pings it every [`PING_EVERY`], and reconnects and resubscribes
//! with back-off whenever it fails, until the receiver is dropped.

use std::time::Duration;

use redis::aio::PubSubSink;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Shared;
use crate::error::{Error, Result};
use crate::stats::Stats;

/// Largest accepted payload; a command is a few hundred bytes.
const MAX_PAYLOAD: usize = 64 * 1024;
/// Liveness check of an idle subscription.
const PING_EVERY: Duration = Duration::from_secs(2);
/// Back-off bounds between resubscription attempts.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Something one replica asks of another (or of all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// End a call this replica owns.
    Hangup {
        /// Our UUID of the call.
        call_id: String,
    },
    /// Refuse requests from `key` (a source address, a user) for `secs`.
    BlockSource {
        /// The limiter key.
        key: String,
        /// How long.
        secs: u64,
    },
    /// Lift a block early.
    UnblockSource {
        /// The limiter key.
        key: String,
    },
    /// Accounts, users, routes or the dialplan changed: reload.
    ConfigChanged,
    /// The bindings of `aor` changed on another replica: drop cached ones.
    BindingsChanged {
        /// The address of record.
        aor: String,
    },
}

/// A command as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sending replica.
    pub from: String,
    /// What it asks.
    #[serde(rename = "cmd")]
    pub command: Command,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    from: &'a str,
    cmd: &'a Command,
}

impl Shared {
    fn envelope(&self, cmd: &Command) -> Result<String> {
        serde_json::to_string(&EnvelopeOut {
            from: self.replica().as_str(),
            cmd,
        })
        .map_err(|e| self.stats().failed(Error::Invalid(format!("command: {e}"))))
    }

    /// `(channel, payload)` broadcasting `cmd`.
    pub(crate) fn envelope_all(&self, cmd: &Command) -> Result<(String, String)> {
        Ok((self.keys().channel_all(), self.envelope(cmd)?))
    }

    async fn publish(&self, channel: String, payload: String) -> Result<u64> {
        let n = self
            .conn()
            .run(redis::cmd("PUBLISH").arg(channel).arg(payload))
            .await?;
        self.stats().published();
        Ok(n)
    }

    /// Sends `cmd` to one replica; returns how many subscribers got it (0
    /// when that replica is not listening).
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn send(&self, replica: &str, cmd: &Command) -> Result<u64> {
        self.part("replica", replica)?;
        let payload = self.envelope(cmd)?;
        self.publish(self.keys().channel_to(replica), payload).await
    }

    /// Sends `cmd` to every replica; the sender's own subscriber skips it.
    /// Returns how many subscribers got it.
    ///
    /// # Errors
    ///
    /// The connection errors of every operation.
    pub async fn broadcast(&self, cmd: &Command) -> Result<u64> {
        let (channel, payload) = self.envelope_all(cmd)?;
        self.publish(channel, payload).await
    }

    /// Commands for this replica: those sent to it, and broadcasts from
    /// other replicas. The subscription survives Redis restarts (it
    /// resubscribes); it ends when the receiver or the last [`Shared`]
    /// handle is dropped. A full queue drops (and counts) new commands.
    pub fn subscribe(&self) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(self.inner.opts.command_queue.max(1));
        let sub = Subscriber {
            client: self.conn().client().clone(),
            channels: [
                self.keys().channel_all(),
                self.keys().channel_to(self.replica().as_str()),
            ],
            me: self.replica().as_str().to_owned(),
            stats: self.inner.stats.clone(),
            op_timeout: self.conn().op_timeout,
            connect_timeout: self.conn().connect_timeout,
            stop: self.inner.stop.child_token(),
            tx,
        };
        tokio::spawn(sub.run());
        rx
    }
}

struct Subscriber {
    client: redis::Client,
    /// `[cmd:all, cmd:to:{me}]`.
    channels: [String; 2],
    me: String,
    stats: std::sync::Arc<Stats>,
    op_timeout: Duration,
    connect_timeout: Duration,
    stop: CancellationToken,
    tx: mpsc::Sender<Message>,
}

/// Why a subscription ended.
enum End {
    /// Receiver or handle dropped: stop for good.
    Stop,
    /// Connection failed: resubscribe.
    Lost(String),
}

impl Subscriber {
    async fn run(self) {
        let mut backoff = RETRY_MIN;
        loop {
            match self.session().await {
                End::Stop => return,
                End::Lost(why) => {
                    debug!(cause = %why, "command subscription lost; resubscribing");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// One connection's life: subscribe, then deliver until it fails.
    async fn session(&self) -> End {
        let connect = tokio::time::timeout(self.connect_timeout, self.client.get_async_pubsub());
        let pubsub = tokio::select! {
            () = self.stop.cancelled() => return End::Stop,
            () = self.tx.closed() => return End::Stop,
            r = connect => match r {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return End::Lost(e.to_string()),
                Err(_) => return End::Lost("connect timed out".into()),
            },
        };
        let (mut sink, mut stream) = pubsub.split();
        match tokio::time::timeout(self.op_timeout, sink.subscribe(&self.channels[..])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return End::Lost(e.to_string()),
            Err(_) => return End::Lost("subscribe timed out".into()),
        }
        self.stats.subscribed(true);
        let end = self.deliver(&mut sink, &mut stream).await;
        self.stats.subscribed(false);
        end
    }

    async fn deliver(&self, sink: &mut PubSubSink, stream: &mut redis::aio::PubSubStream) -> End {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return End::Stop,
                () = self.tx.closed() => return End::Stop,
                msg = stream.next() => match msg {
                    Some(msg) => self.handle(&msg),
                    None => return End::Lost("connection closed".into()),
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(self.op_timeout, sink.ping::<redis::Value>());
                    match pong.await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return End::Lost(e.to_string()),
                        Err(_) => return End::Lost("ping timed out".into()),
                    }
                }
            }
        }
    }

    fn handle(&self, msg: &redis::Msg) {
        let payload = msg.get_payload_bytes();
        let parsed = if payload.len() > MAX_PAYLOAD {
            Err(format!("payload of {} bytes", payload.len()))
        } else {
            serde_json::from_slice::<Message>(payload).map_err(|e| e.to_string())
        };
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed();
                warn!(channel = %msg.get_channel_name(), cause = %e, "skipping a malformed command");
                return;
            }
        };
        if m.from == self.me && msg.get_channel_name() == self.channels[0] {
            return;
        }
        match self.tx.try_send(m) {
            Ok(()) => self.stats.received(),
            Err(_) => {
                self.stats.dropped();
                warn!("command queue full; dropping a command");
            }
        }
    }
}
