//! [`EventBus`]: where a replica's components report what happens.
//!
//! Two flavours behind one handle:
//! * [`EventBus::in_process`], the embedded default: events reach local
//!   subscribers ([`EventBus::subscribe`]) and nothing else.
//! * [`EventBus::jetstream`]: events also go to the JetStream stream
//!   `SWITCHBOARD_EVENTS`, through a bounded queue drained by one publisher
//!   task (see `publisher.rs`), with a bounded disk spool while NATS is
//!   unreachable.
//!
//! [`EventBus::publish`] never waits: it is called from the SIP hot path.
//! When the queue is full the event is dropped and counted; local
//! subscribers that fall behind lose the oldest events (tokio broadcast).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::event::Event;
use crate::nats::{Health, Nats};
use crate::publisher::{Msg, Publisher};
use crate::spool::Spool;
use crate::subject::{DEFAULT_ROOT, valid_root};

/// File name of the event spool under the spool directory.
pub const EVENT_SPOOL_FILE: &str = "events-spool.jsonl";

/// Settings of a JetStream event bus; [`Default`] gives production values.
#[derive(Debug, Clone)]
pub struct EventBusOptions {
    /// Subject root: events go to `{prefix}.calls.…` etc. Tests use a
    /// unique one (e.g. `t1a2b.switchboard`) on a shared server.
    pub prefix: String,
    /// The stream capturing `{prefix}.{calls,registrations,sessions,rtpmanagers}.>`.
    pub stream_name: String,
    /// How long the stream keeps events.
    pub max_age: Duration,
    /// Stream size bound; the oldest events go first.
    pub max_bytes: i64,
    /// Window in which JetStream drops a re-published event (same
    /// message id) as a duplicate.
    pub duplicate_window: Duration,
    /// Events waiting for the publisher task; more are dropped and counted.
    pub queue_capacity: usize,
    /// Events buffered per local subscriber before it lags.
    pub local_capacity: usize,
    /// Spool bound in events.
    pub spool_max_records: usize,
    /// Spool bound in bytes of file.
    pub spool_max_bytes: u64,
    /// How long a batch of publishes may wait for JetStream's acks.
    pub ack_timeout: Duration,
}

impl Default for EventBusOptions {
    fn default() -> Self {
        EventBusOptions {
            prefix: DEFAULT_ROOT.to_owned(),
            stream_name: "SWITCHBOARD_EVENTS".to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(120),
            queue_capacity: 8192,
            local_capacity: 1024,
            spool_max_records: 100_000,
            spool_max_bytes: 64 << 20,
            ack_timeout: Duration::from_secs(3),
        }
    }
}

/// Counters behind [`EventBus::stats`].
#[derive(Debug, Default)]
pub(crate) struct BusStats {
    pub(crate) published: AtomicU64,
    pub(crate) spooled: AtomicU64,
    pub(crate) spool_len: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) spool_dropped: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
}

/// A snapshot of the bus counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventBusStats {
    /// Events acked by JetStream (in-process: handed to local subscribers).
    pub published: u64,
    /// Events written to the spool (each counted once, when spooled).
    pub spooled: u64,
    /// Events in the spool now.
    pub spool_len: u64,
    /// Events waiting in the queue now.
    pub queue_len: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events dropped because the spool was full (or unreadable at start).
    pub spool_dropped: u64,
    /// Publish attempts that failed (timeouts, missing stream, …).
    pub publish_failures: u64,
    /// Whether the NATS connection is up (in-process: always true).
    pub connected: bool,
}

/// The handle components publish events through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    local: broadcast::Sender<Event>,
    stats: Arc<BusStats>,
    jetstream: Option<JetStreamSide>,
}

/// What only a JetStream bus has.
#[derive(Debug)]
struct JetStreamSide {
    nats: Nats,
    tx: mpsc::Sender<Msg>,
    queue_capacity: usize,
    /// Last publish or stream problem, `None` once publishing works.
    problem: Arc<Mutex<Option<String>>>,
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl EventBus {
    /// The embedded default: local subscribers only.
    pub fn in_process(node: &str) -> EventBus {
        let stats = Arc::new(BusStats::default());
        EventBus::build(node, EventBusOptions::default().local_capacity, stats, None)
    }

    /// Connects to `nats_urls` (a `NATS_URL` value) and publishes to
    /// JetStream, spooling under `spool_dir` while NATS is unreachable.
    ///
    /// An unreachable server is not an error: the bus starts degraded and
    /// catches up when NATS answers. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// A malformed `NATS_URL`, an invalid subject prefix, or a spool
    /// directory that cannot be created.
    pub async fn jetstream(
        node: &str,
        nats_urls: &str,
        spool_dir: &Path,
        opts: EventBusOptions,
    ) -> Result<EventBus, String> {
        let nats = Nats::connect(nats_urls, node).await?;
        EventBus::jetstream_with(node, nats, spool_dir, opts)
    }

    /// As [`EventBus::jetstream`], on an existing connection (shared with a
    /// [`CdrStream`](crate::CdrStream)).
    ///
    /// # Errors
    /// An invalid subject prefix or a spool directory that cannot be created.
    pub fn jetstream_with(
        node: &str,
        nats: Nats,
        spool_dir: &Path,
        opts: EventBusOptions,
    ) -> Result<EventBus, String> {
        if !valid_root(&opts.prefix) {
            return Err(format!("event subject prefix {:?} is invalid", opts.prefix));
        }
        std::fs::create_dir_all(spool_dir)
            .map_err(|e| format!("spool directory {}: {e}", spool_dir.display()))?;
        let stats = Arc::new(BusStats::default());
        let spool = Spool::open(
            spool_dir.join(EVENT_SPOOL_FILE),
            opts.spool_max_records,
            opts.spool_max_bytes,
            Arc::clone(&stats),
        );
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let problem = Arc::new(Mutex::new(None));
        let shutdown = CancellationToken::new();
        let publisher = Publisher::new(
            node,
            nats.clone(),
            &opts,
            spool,
            Arc::clone(&stats),
            Arc::clone(&problem),
        );
        let task = tokio::spawn(publisher.run(rx, shutdown.clone()));
        let side = JetStreamSide {
            nats,
            tx,
            queue_capacity: opts.queue_capacity.max(1),
            problem,
            shutdown,
            task: Mutex::new(Some(task)),
        };
        Ok(EventBus::build(
            node,
            opts.local_capacity,
            stats,
            Some(side),
        ))
    }

    fn build(
        node: &str,
        local_capacity: usize,
        stats: Arc<BusStats>,
        jetstream: Option<JetStreamSide>,
    ) -> EventBus {
        let (local, _) = broadcast::channel(local_capacity.max(1));
        EventBus {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                local,
                stats,
                jetstream,
            }),
        }
    }

    /// The replica id stamped on every event.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Publishes an event: stamps this node, hands it to local subscribers
    /// and queues it for JetStream. Never waits; if the queue is full the
    /// event is dropped and counted.
    pub fn publish(&self, mut event: Event) {
        event.node.clone_from(&self.inner.node);
        let stats = &self.inner.stats;
        let Some(js) = &self.inner.jetstream else {
            // a send error only means nobody listens
            let _ = self.inner.local.send(event);
            stats.published.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.inner.local.receiver_count() > 0 {
            let _ = self.inner.local.send(event.clone());
        }
        if js.tx.try_send(Msg::Event(Box::new(event))).is_err() {
            let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(
                    dropped,
                    "event queue full (or bus closed); events are being dropped"
                );
            }
        }
    }

    /// A receiver of the events published on this replica from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.local.subscribe()
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> EventBusStats {
        let s = &self.inner.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (connected, queue_len) = match &self.inner.jetstream {
            None => (true, 0),
            Some(js) => (
                js.nats.is_connected(),
                (js.queue_capacity - js.tx.capacity()) as u64,
            ),
        };
        EventBusStats {
            published: load(&s.published),
            spooled: load(&s.spooled),
            spool_len: load(&s.spool_len),
            queue_len,
            dropped: load(&s.dropped),
            spool_dropped: load(&s.spool_dropped),
            publish_failures: load(&s.publish_failures),
            connected,
        }
    }

    /// For the health endpoint: `ok`, or `degraded: <reason>` while NATS
    /// is unreachable or publishing fails.
    pub fn health(&self) -> Health {
        let Some(js) = &self.inner.jetstream else {
            return Health::Ok;
        };
        let nats = js.nats.health();
        if !nats.is_ok() {
            return nats;
        }
        match js.problem.lock().ok().and_then(|p| p.clone()) {
            Some(problem) => Health::Degraded(problem),
            None => Health::Ok,
        }
    }

    /// The NATS connection of a JetStream bus.
    pub fn nats(&self) -> Option<&Nats> {
        self.inner.jetstream.as_ref().map(|js| &js.nats)
    }

    /// Returns once every event published before is acked by JetStream or
    /// spooled (at once for an in-process bus).
    pub async fn flush(&self) {
        let Some(js) = &self.inner.jetstream else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if js.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops the publisher: queued events are published if NATS is up (for
    /// at most the ack timeout), else spooled for the next run. Events
    /// published afterwards are dropped and counted.
    pub async fn close(&self) {
        let Some(js) = &self.inner.jetstream else {
            return;
        };
        js.shutdown.cancel();
        let task = js.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && let Err(e) = task.await
        {
            warn!(cause = %e, "event publisher task failed");
        }
    }
}
