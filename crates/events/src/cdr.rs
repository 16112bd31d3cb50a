//! The CDR stream: call detail records on their way from the signaling
//! replicas to the database, through JetStream.
//!
//! Each replica's CDR writer publishes its CDRs with
//! [`CdrStream::publish_batch`] to `{prefix}.cdr.raw` (`switchboard.cdr.raw`)
//! and learns whether JetStream stored them all; if not, it spools them and
//! retries in order as it does for the database. One durable pull consumer,
//! shared by every replica ([`spawn_cdr_consumer`](crate::spawn_cdr_consumer)),
//! writes them to the store and acks after the commit.
//!
//! Exactly once: each CDR is published with its `call_id` as
//! `Nats-Msg-Id`, so a retried publish within the stream's duplicate
//! window is dropped by JetStream; past the window, or when an ack is lost
//! after a commit and the CDR is delivered again, the store's insert is
//! idempotent on `call_id`.
//!
//! The stream (`SWITCHBOARD_CDR`, file storage) uses work-queue retention:
//! a CDR leaves it once stored and acked, so it only ever holds CDRs not yet
//! in the database, and with discard-new a full stream refuses publishes
//! (the writers spool) rather than dropping unstored CDRs. Work-queue
//! retention allows one consumer per subject: all replicas use the same
//! durable name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use switchboard_store::Cdr;
use tracing::{info, warn};

use crate::nats::Nats;
use crate::subject::{DEFAULT_ROOT, escape_token, valid_root};

/// Settings of the CDR stream and its consumers; [`Default`] gives
/// production values.
#[derive(Debug, Clone)]
pub struct CdrStreamOptions {
    /// Subject root: CDRs go to `{prefix}.cdr.raw`.
    pub prefix: String,
    /// The stream holding CDRs not yet stored.
    pub stream_name: String,
    /// How long an unstored CDR may wait in the stream.
    pub max_age: Duration,
    /// Stream size bound; past it publishes fail (the writers spool).
    pub max_bytes: i64,
    /// Window in which JetStream drops a CDR published again (same
    /// `call_id`) as a duplicate.
    pub duplicate_window: Duration,
    /// How long [`CdrStream::publish_batch`] may wait for all acks.
    pub ack_timeout: Duration,
    /// CDRs a consumer fetches per batch at most.
    pub fetch_batch: usize,
    /// How long a consumer's fetch waits for CDRs to arrive.
    pub fetch_expiry: Duration,
    /// How long a delivered CDR may stay unacked before JetStream delivers
    /// it again (to any replica): the retry interval while the store fails.
    pub ack_wait: Duration,
    /// CDRs delivered and not yet acked, over all replicas, at most.
    pub max_ack_pending: i64,
    /// How long one store write may take before it counts as failed.
    pub store_timeout: Duration,
}

impl Default for CdrStreamOptions {
    fn default() -> Self {
        CdrStreamOptions {
            prefix: DEFAULT_ROOT.to_owned(),
            stream_name: "SWITCHBOARD_CDR".to_owned(),
            max_age: Duration::from_secs(14 * 24 * 3600),
            max_bytes: 8 << 30,
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(5),
            fetch_batch: 512,
            fetch_expiry: Duration::from_millis(500),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 8192,
            store_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the CDR stream's publisher and consumers.
#[derive(Debug, Default)]
pub(crate) struct CdrCounters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_duplicates: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) store_duplicates: AtomicU64,
    pub(crate) store_failures: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) ack_failures: AtomicU64,
}

/// A snapshot of the CDR stream counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CdrStreamStats {
    /// CDRs JetStream acked (new ones).
    pub published: u64,
    /// CDRs JetStream acked as duplicates of one it already had.
    pub publish_duplicates: u64,
    /// `publish_batch` calls that failed.
    pub publish_failures: u64,
    /// CDRs the consumers of this replica stored (new rows).
    pub stored: u64,
    /// CDRs delivered again that the store already had.
    pub store_duplicates: u64,
    /// Store writes that failed (the batch is delivered again later).
    pub store_failures: u64,
    /// Messages on the CDR subject that are not a CDR, terminated.
    pub malformed: u64,
    /// Acks that could not be sent (the CDR comes again; stored once).
    pub ack_failures: u64,
}

/// The JetStream CDR stream of one replica. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CdrStream {
    pub(crate) inner: Arc<CdrInner>,
}

#[derive(Debug)]
pub(crate) struct CdrInner {
    pub(crate) nats: Nats,
    pub(crate) js: jetstream::Context,
    pub(crate) subject: String,
    pub(crate) stream: stream::Config,
    pub(crate) opts: CdrStreamOptions,
    /// The stream was created or updated since start (or since JetStream
    /// said it is missing).
    pub(crate) stream_ready: AtomicBool,
    pub(crate) counters: CdrCounters,
}

impl CdrStream {
    /// Connects to `nats_urls` (a `NATS_URL` value) in the background.
    ///
    /// # Errors
    /// A malformed `NATS_URL` or invalid subject prefix; an unreachable
    /// server is not an error (publishes fail until it answers).
    pub async fn connect(
        nats_urls: &str,
        client_name: &str,
        opts: CdrStreamOptions,
    ) -> Result<CdrStream, String> {
        let nats = Nats::connect(nats_urls, client_name).await?;
        CdrStream::with_nats(nats, opts)
    }

    /// The CDR stream over an existing connection (shared with the
    /// [`EventBus`](crate::EventBus)).
    ///
    /// # Errors
    /// An invalid subject prefix.
    pub fn with_nats(nats: Nats, opts: CdrStreamOptions) -> Result<CdrStream, String> {
        if !valid_root(&opts.prefix) {
            return Err(format!("CDR subject prefix {:?} is invalid", opts.prefix));
        }
        let subject = format!("{}.cdr.raw", opts.prefix);
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.ack_timeout)
            .build(nats.client().clone());
        let stream = stream::Config {
            name: opts.stream_name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            max_age: opts.max_age,
            max_bytes: opts.max_bytes,
            duplicate_window: opts.duplicate_window,
            description: Some("Switchboard CDRs not yet stored in the database".into()),
            ..Default::default()
        };
        Ok(CdrStream {
            inner: Arc::new(CdrInner {
                nats,
                js,
                subject,
                stream,
                opts,
                stream_ready: AtomicBool::new(false),
                counters: CdrCounters::default(),
            }),
        })
    }

    /// The subject CDRs are published on.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream.name
    }

    /// The connection.
    pub fn nats(&self) -> &Nats {
        &self.inner.nats
    }

    /// Creates the stream, or updates it to these options.
    ///
    /// # Errors
    /// JetStream refused or did not answer.
    pub async fn ensure_stream(&self) -> Result<(), String> {
        match self
            .inner
            .js
            .create_or_update_stream(self.inner.stream.clone())
            .await
        {
            Ok(info) => {
                if !self.inner.stream_ready.swap(true, Ordering::Relaxed) {
                    info!(stream = %info.config.name, subject = %self.inner.subject, "CDR stream ready");
                }
                Ok(())
            }
            Err(e) => Err(format!("CDR stream {}: {e}", self.inner.stream.name)),
        }
    }

    /// Publishes CDRs (JSON, message id = `call_id`) and waits until
    /// JetStream acked every one, for at most the ack timeout.
    ///
    /// # Errors
    /// NATS is unreachable (at once, without waiting), the stream cannot be
    /// set up, a publish or ack failed, or the acks took too long. Some CDRs
    /// may be in the stream all the same: publishing the batch again is
    /// safe.
    pub async fn publish_batch(&self, cdrs: &[Cdr]) -> Result<(), String> {
        let result = self.try_publish_batch(cdrs).await;
        if result.is_err() {
            self.inner
                .counters
                .publish_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_publish_batch(&self, cdrs: &[Cdr]) -> Result<(), String> {
        if cdrs.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        if !inner.nats.is_connected() {
            return Err(format!("NATS unreachable: {}", inner.nats.health()));
        }
        if !inner.stream_ready.load(Ordering::Relaxed) {
            self.ensure_stream().await?;
        }
        let work = async {
            let mut acks = Vec::with_capacity(cdrs.len());
            for cdr in cdrs {
                let payload = serde_json::to_vec(cdr).map_err(|e| format!("CDR encoding: {e}"))?;
                // a UUID stays as it is; escaping keeps any other id a
                // valid header value (no CR/LF, no spaces)
                let publish = PublishMessage::build()
                    .payload(Bytes::from(payload))
                    .message_id(escape_token(&cdr.call_id));
                let ack = inner
                    .js
                    .send_publish(inner.subject.clone(), publish)
                    .await
                    .map_err(|e| format!("CDR publish: {e}"))?;
                acks.push(ack);
            }
            let mut duplicates = 0u64;
            for ack in acks {
                match ack.await {
                    Ok(ack) => duplicates += u64::from(ack.duplicate),
                    Err(e) => {
                        if e.kind() == PublishErrorKind::StreamNotFound {
                            inner.stream_ready.store(false, Ordering::Relaxed);
                        }
                        return Err(format!("CDR publish not acked: {e}"));
                    }
                }
            }
            Ok(duplicates)
        };
        // the acks run concurrently; this bounds the whole batch
        let outcome = match tokio::time::timeout(inner.opts.ack_timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "CDR publish: acks not received within {:?}",
                inner.opts.ack_timeout
            )),
        };
        let duplicates = outcome
            .inspect_err(|e| warn!(cdrs = cdrs.len(), cause = %e, "CDR batch not published"))?;
        let c = &inner.counters;
        c.published
            .fetch_add(cdrs.len() as u64 - duplicates, Ordering::Relaxed);
        c.publish_duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        Ok(())
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> CdrStreamStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CdrStreamStats {
            published: load(&c.published),
            publish_duplicates: load(&c.publish_duplicates),
            publish_failures: load(&c.publish_failures),
            stored: load(&c.stored),
            store_duplicates: load(&c.store_duplicates),
            store_failures: load(&c.store_failures),
            malformed: load(&c.malformed),
            ack_failures: load(&c.ack_failures),
        }
    }
}
