//! The task that moves events from the bus queue to JetStream.
//!
//! One task per bus, so events reach the stream in the order they were
//! published. It takes what has queued up, waiting up to [`LINGER`] for
//! more (up to [`BATCH`]), and publishes the batch with one acknowledgement:
//! every event but the last goes out as a plain publish on the stream's
//! subject (JetStream stores it; no reply), the last one as a JetStream
//! publish whose ack is awaited. The connection keeps their order, so the
//! last ack says the batch reached the stream; only then are the events
//! counted published. Acking per batch rather than per event took the
//! NATS server's CPU per event from about 44 to 24 µs (measured at a fixed
//! rate with `bench/cluster.sh`'s set-up; the README has the figures).
//!
//! Each event carries a `Nats-Msg-Id` fixed when the task first sees it:
//! a batch whose ack did not come (timeout, error, or a reconnection while
//! it was being sent, when earlier events may have died with the old
//! connection) is sent again as a whole, and JetStream drops the events it
//! already has as duplicates. What this gives up against an ack per event:
//! an event JetStream refused on its own while it accepted a later one of
//! the same batch (on a single server, nothing the stream settings here
//! refuse; on a clustered JetStream, a leader change in the middle of a
//! batch) is not noticed. CDRs, which must never be lost, keep an ack each
//! (`cdr.rs`).
//!
//! While NATS is unreachable, or publishing fails, events go to the spool,
//! and every later event queues behind them there: the spool is published
//! from its head first, then live events again. Whether NATS is back is a
//! free check of the client's connection state, made every
//! [`RECONNECT_POLL`]; after a failed publish attempt the wait doubles up
//! to [`MAX_BACKOFF`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::bus::{BusStats, EventBusOptions};
use crate::event::Event;
use crate::nats::Nats;
use crate::spool::{Record, Spool};
use crate::subject::{Family, escape_token};

/// Events published per batch (one acknowledgement) at most.
const BATCH: usize = 256;

/// How long a batch waits for more events after its first: events reach
/// the stream at most this much later, and under load a batch carries
/// many events rather than a few.
const LINGER: Duration = Duration::from_millis(2);

/// How often a spool waiting for NATS checks the connection.
const RECONNECT_POLL: Duration = Duration::from_millis(200);

/// First wait after a failed publish attempt; doubles per failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// Longest wait between publish attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long one drain of the spool may run before queued events get a
/// turn (they are spooled behind it, keeping the order).
const DRAIN_SLICE: Duration = Duration::from_secs(1);

/// What the bus handles send the task.
pub(crate) enum Msg {
    Event(Box<Event>),
    /// Answered once everything sent before is published or spooled.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Publisher {
    nats: Nats,
    js: jetstream::Context,
    prefix: String,
    stream: stream::Config,
    spool: Spool,
    stats: Arc<BusStats>,
    problem: Arc<Mutex<Option<String>>>,
    /// The stream was created or updated on this connection.
    stream_ready: bool,
    /// Bound on sending a batch and on waiting for its ack.
    ack_timeout: Duration,
    /// Message ids are `{id_prefix}-{seq}`.
    id_prefix: String,
    seq: u64,
    backoff: Duration,
    retry_at: Instant,
}

impl Publisher {
    pub(crate) fn new(
        node: &str,
        nats: Nats,
        opts: &EventBusOptions,
        spool: Spool,
        stats: Arc<BusStats>,
        problem: Arc<Mutex<Option<String>>>,
    ) -> Publisher {
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.ack_timeout)
            .build(nats.client().clone());
        let stream = stream::Config {
            name: opts.stream_name.clone(),
            subjects: Family::ALL
                .iter()
                .map(|f| f.wildcard(&opts.prefix))
                .collect(),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: opts.max_age,
            max_bytes: opts.max_bytes,
            duplicate_window: opts.duplicate_window,
            description: Some(
                "Switchboard events (calls, registrations, sessions, RTP managers)".into(),
            ),
            ..Default::default()
        };
        Publisher {
            nats,
            js,
            prefix: opts.prefix.clone(),
            stream,
            spool,
            stats,
            problem,
            stream_ready: false,
            ack_timeout: opts.ack_timeout,
            id_prefix: format!("{}-{:x}", escape_token(node), run_nonce()),
            seq: 0,
            backoff: MIN_BACKOFF,
            retry_at: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Msg>, shutdown: CancellationToken) {
        loop {
            let msg = if self.spool.is_empty() {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    m = rx.recv() => m,
                }
            } else {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(self.retry_at) => {
                        self.drain().await;
                        continue;
                    }
                    m = rx.recv() => m,
                }
            };
            let Some(first) = msg else {
                break;
            };
            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let until = Instant::now() + LINGER;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Event(event) => batch.push(self.record(*event)),
                    Msg::Flush(done) => flushes.push(done),
                }
                if batch.len() < BATCH {
                    next = match rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(_) => tokio::time::timeout_at(until, rx.recv())
                            .await
                            .ok()
                            .flatten(),
                    };
                }
            }
            self.handle(batch).await;
            for done in flushes {
                let _ = done.send(());
            }
        }
        // shutting down: what is queued is published (bounded by the ack
        // timeout) or spooled for the next run
        rx.close();
        let mut rest = Vec::new();
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Event(event) => rest.push(self.record(*event)),
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        for chunk in rest.chunks(BATCH) {
            self.handle(chunk.to_vec()).await;
        }
        if !self.spool.is_empty() && self.nats.is_connected() {
            self.drain().await;
        }
        self.spool.persist();
        if !self.spool.is_empty() {
            info!(
                events = self.spool.len(),
                "event publisher stopped; spooled events wait for the next run"
            );
        }
    }

    fn record(&mut self, event: Event) -> Record {
        self.seq += 1;
        Record {
            id: format!("{}-{}", self.id_prefix, self.seq),
            event,
        }
    }

    /// Publishes live events, or spools them behind a non-empty spool or
    /// while NATS is down.
    async fn handle(&mut self, batch: Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if !self.spool.is_empty() {
            for r in batch {
                self.spool.push(r);
            }
            return;
        }
        if !self.nats.is_connected() {
            self.set_problem(Some("NATS unreachable; events spooled".to_owned()));
            for r in batch {
                self.spool.push(r);
            }
            self.retry_at = Instant::now() + RECONNECT_POLL;
            return;
        }
        let acked = self.publish(&batch).await;
        if acked < batch.len() {
            for r in batch.into_iter().skip(acked) {
                self.spool.push(r);
            }
            self.schedule_retry();
        }
    }

    /// Publishes the spool from its head until it is empty, a publish
    /// fails, or [`DRAIN_SLICE`] has passed.
    async fn drain(&mut self) {
        if !self.nats.is_connected() {
            self.retry_at = Instant::now() + RECONNECT_POLL;
            return;
        }
        let started = Instant::now();
        let mut published = 0usize;
        let mut failed = false;
        while !self.spool.is_empty() && started.elapsed() < DRAIN_SLICE {
            let head = self.spool.head(BATCH);
            let acked = self.publish(&head).await;
            self.spool.pop_front(acked);
            published += acked;
            if acked < head.len() {
                failed = true;
                break;
            }
        }
        if published > 0 {
            info!(
                published,
                left = self.spool.len(),
                "spooled events published"
            );
        }
        if failed {
            self.schedule_retry();
            self.spool.persist();
        } else if self.spool.is_empty() {
            self.spool.persist();
        } else {
            // more to go: live events get a turn, then the drain goes on
            self.retry_at = Instant::now();
        }
    }

    fn schedule_retry(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Publishes `records` as one batch (see the module comment); returns
    /// how many JetStream took: all of them, or none (the batch is sent
    /// again, and what already arrived is dropped as a duplicate).
    async fn publish(&mut self, records: &[Record]) -> usize {
        let Some((last, rest)) = records.split_last() else {
            return 0;
        };
        if !self.stream_ready && !self.ensure_stream().await {
            return 0;
        }
        let client = self.nats.client().clone();
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        let prefix = &self.prefix;
        let send_rest = async {
            for r in rest {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, r.id.as_str());
                client
                    .publish_with_headers(
                        r.event.subject(prefix),
                        headers,
                        Bytes::from(r.event.to_json()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        // the client's queue can only fill while the connection is down
        let mut error = match tokio::time::timeout(self.ack_timeout, send_rest).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("timed out sending the batch".to_owned()),
        };
        if error.is_none() {
            let publish = PublishMessage::build()
                .payload(Bytes::from(last.event.to_json()))
                .message_id(&last.id);
            let acked = match self
                .js
                .send_publish(last.event.subject(&self.prefix), publish)
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(_) if client.statistics().connects.load(Ordering::Relaxed) == connects => {}
                Ok(_) => error = Some("NATS reconnected while the batch was sent".to_owned()),
                Err(e) => {
                    if e.kind() == PublishErrorKind::StreamNotFound {
                        // the server lost the stream (a new server): recreate it
                        self.stream_ready = false;
                    }
                    error = Some(e.to_string());
                }
            }
        }
        match error {
            None => {
                self.stats
                    .published
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.backoff = MIN_BACKOFF;
                self.set_problem(None);
                records.len()
            }
            Some(e) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                warn!(cause = %e, events = records.len(), "events not published to JetStream; spooled");
                self.set_problem(Some(format!("event publish failed: {e}")));
                0
            }
        }
    }

    /// Creates or updates the stream; `false` (and a problem noted) if that
    /// failed.
    async fn ensure_stream(&mut self) -> bool {
        match self.js.create_or_update_stream(self.stream.clone()).await {
            Ok(info) => {
                info!(stream = %info.config.name, subjects = ?info.config.subjects, "event stream ready");
                self.stream_ready = true;
                true
            }
            Err(e) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                warn!(stream = %self.stream.name, cause = %e, "event stream not created; events spooled");
                self.set_problem(Some(format!("event stream {}: {e}", self.stream.name)));
                false
            }
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.problem.lock() {
            *p = problem;
        }
    }
}

/// A value telling this run's message ids from a previous run's, whose
/// sequence also started at 1.
fn run_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(40)
}
