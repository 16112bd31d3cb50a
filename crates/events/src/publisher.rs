//! The task that moves events from the bus queue to JetStream.
//!
//! One task per bus, so events reach the stream in the order they were
//! published. It takes what has queued up (up to [`BATCH`]), publishes the
//! batch pipelined (all publishes sent, then the acks awaited in order),
//! and counts an event published only once JetStream acked it. Each event
//! carries a `Nats-Msg-Id` fixed when the task first sees it, so an event
//! sent again after an ack was lost is dropped by JetStream as a duplicate.
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

/// Events published per pipelined batch at most.
const BATCH: usize = 256;

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
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Event(event) => batch.push(self.record(*event)),
                    Msg::Flush(done) => flushes.push(done),
                }
                if batch.len() < BATCH {
                    next = rx.try_recv().ok();
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

    /// Publishes `records` pipelined; returns how many, from the first,
    /// JetStream acked. Later ones count as failed even if acked: they are
    /// sent again and dropped as duplicates, so the order holds.
    async fn publish(&mut self, records: &[Record]) -> usize {
        if !self.stream_ready && !self.ensure_stream().await {
            return 0;
        }
        // send them all, then collect the acks (which arrive meanwhile)
        let mut acks = Vec::with_capacity(records.len());
        let mut send_error = None;
        for r in records {
            let publish = PublishMessage::build()
                .payload(Bytes::from(r.event.to_json()))
                .message_id(&r.id);
            match self
                .js
                .send_publish(r.event.subject(&self.prefix), publish)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    send_error = Some(e);
                    break;
                }
            }
        }
        let mut acked = 0;
        let mut error = send_error;
        if error.is_none() {
            for ack in acks {
                match ack.await {
                    Ok(_) => acked += 1,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        self.stats
            .published
            .fetch_add(acked as u64, Ordering::Relaxed);
        match error {
            None => {
                self.backoff = MIN_BACKOFF;
                self.set_problem(None);
            }
            Some(e) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                if e.kind() == PublishErrorKind::StreamNotFound {
                    // the server lost the stream (a new server): recreate it
                    self.stream_ready = false;
                }
                warn!(cause = %e, acked, of = records.len(), "events not published to JetStream; spooled");
                self.set_problem(Some(format!("event publish failed: {e}")));
            }
        }
        acked
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
