//! The durable pull consumer that drains the CDR stream into the store.
//!
//! Every replica runs one, all on the same durable name, so JetStream
//! shares the CDRs among them. A consumer fetches a batch (up to
//! `fetch_batch`, waiting at most `fetch_expiry`), writes it with one
//! [`Store::insert_cdrs`] transaction and acks each message only after the
//! commit. If the store fails, the batch is nak'd with the consumer's
//! back-off as delay (never acked): JetStream delivers it again after that
//! delay (or after `ack_wait` if the nak is lost), to whichever replica
//! asks first, and the consumer backs off. A CDR stored but whose ack was lost comes again and
//! is kept once (the insert is idempotent on `call_id`).
//!
//! A message that is not a CDR (bad JSON, empty `call_id`) is logged,
//! counted and terminated (`+TERM`), so it is never delivered again and
//! never blocks the CDRs behind it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use switchboard_store::{Cdr, Error as StoreError, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cdr::CdrStream;

/// First wait after a failure; doubles per failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// Longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How often a consumer waiting for NATS checks the connection.
const RECONNECT_POLL: Duration = Duration::from_millis(200);

/// Starts a consumer of the CDR stream writing to `store`, until
/// `shutdown` is cancelled (CDRs fetched but not yet stored then are
/// delivered again later, to another replica or the next run).
///
/// `durable_name` is the consumer's name on the stream, the same for every
/// replica (e.g. `cdr-writer`); a name JetStream cannot take (empty, or
/// with `.`, `*`, `>` or whitespace) makes the task log an error and end.
pub fn spawn_cdr_consumer(
    cdrs: &CdrStream,
    store: Store,
    durable_name: &str,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let worker = Worker {
        cdrs: cdrs.clone(),
        store,
        durable: durable_name.to_owned(),
        backoff: MIN_BACKOFF,
    };
    tokio::spawn(worker.run(shutdown))
}

struct Worker {
    cdrs: CdrStream,
    store: Store,
    durable: String,
    backoff: Duration,
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        if !valid_consumer_name(&self.durable) {
            error!(durable = %self.durable, "CDR consumer name invalid; CDRs are not consumed by this replica");
            return;
        }
        let mut consumer: Option<PullConsumer> = None;
        while !shutdown.is_cancelled() {
            if !self.cdrs.nats().is_connected() {
                if sleep_or_cancel(RECONNECT_POLL, &shutdown).await {
                    break;
                }
                continue;
            }
            let current = match &consumer {
                Some(c) => c,
                None => match self.open_consumer().await {
                    Ok(c) => consumer.insert(c),
                    Err(e) => {
                        warn!(durable = %self.durable, cause = %e, "CDR consumer not ready");
                        if self.fail_wait(&shutdown).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            let messages = match self.fetch(current).await {
                Ok(messages) => messages,
                Err(e) => {
                    // the consumer or the stream may be gone: set up anew
                    warn!(durable = %self.durable, cause = %e, "CDR fetch failed");
                    consumer = None;
                    self.cdrs.inner.stream_ready.store(false, Ordering::Relaxed);
                    if self.fail_wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            if !self.process(messages).await && self.fail_wait(&shutdown).await {
                break;
            }
        }
        debug!(durable = %self.durable, "CDR consumer stopped");
    }

    /// Sleeps the back-off and doubles it; `true` if shutdown came first.
    async fn fail_wait(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        sleep_or_cancel(wait, shutdown).await
    }

    async fn open_consumer(&self) -> Result<PullConsumer, String> {
        let inner = &self.cdrs.inner;
        self.cdrs.ensure_stream().await?;
        let stream = inner
            .js
            .get_stream(&inner.stream.name)
            .await
            .map_err(|e| format!("CDR stream {}: {e}", inner.stream.name))?;
        let config = consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            description: Some("Switchboard CDR writer (shared by the replicas)".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: inner.opts.ack_wait,
            // never give up on a CDR: it is retried until the store takes it
            max_deliver: -1,
            filter_subject: inner.subject.clone(),
            max_ack_pending: inner.opts.max_ack_pending,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&self.durable, config)
            .await
            .map_err(|e| format!("CDR consumer {}: {e}", self.durable))?;
        info!(durable = %self.durable, stream = %inner.stream.name, "CDR consumer ready");
        Ok(consumer)
    }

    /// One pull: what arrives within the fetch expiry, up to a batch.
    async fn fetch(&self, consumer: &PullConsumer) -> Result<Vec<Message>, String> {
        let opts = &self.cdrs.inner.opts;
        let mut batch = consumer
            .batch()
            .max_messages(opts.fetch_batch.max(1))
            .expires(opts.fetch_expiry)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => messages.push(m),
                // what came before is processed; the error shows again
                Err(e) if !messages.is_empty() => {
                    debug!(cause = %e, "CDR fetch ended early");
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(messages)
    }

    /// Stores a batch and acks it; `false` if the store failed (nothing of
    /// it acked).
    async fn process(&mut self, messages: Vec<Message>) -> bool {
        let counters = &self.cdrs.inner.counters;
        let mut cdrs = Vec::with_capacity(messages.len());
        let mut delivered = Vec::with_capacity(messages.len());
        for m in messages {
            match decode(&m.payload) {
                Ok(cdr) => {
                    cdrs.push(cdr);
                    delivered.push(m);
                }
                Err(e) => self.terminate(&m, &e).await,
            }
        }
        if cdrs.is_empty() {
            return true;
        }
        let timeout = self.cdrs.inner.opts.store_timeout;
        let outcome = tokio::time::timeout(timeout, self.store.insert_cdrs(&cdrs)).await;
        match outcome {
            Ok(Ok(new)) => {
                counters.stored.fetch_add(new, Ordering::Relaxed);
                counters.store_duplicates.fetch_add(
                    cdrs.len() as u64 - new.min(cdrs.len() as u64),
                    Ordering::Relaxed,
                );
                self.ack_all(&delivered).await;
                self.backoff = MIN_BACKOFF;
                true
            }
            // one CDR the store rejects must not hold back the others
            Ok(Err(StoreError::Invalid(why))) => {
                warn!(cause = %why, "CDR batch rejected; storing one by one");
                self.one_by_one(cdrs, delivered).await
            }
            Ok(Err(e)) => {
                self.nak_all(&delivered).await;
                self.store_failed(cdrs.len(), &e.to_string())
            }
            Err(_) => {
                self.nak_all(&delivered).await;
                self.store_failed(cdrs.len(), &format!("no answer within {timeout:?}"))
            }
        }
    }

    /// Asks JetStream to deliver these again after the current back-off
    /// rather than after `ack_wait`: once the store answers again, the CDRs
    /// land within one back-off step.
    async fn nak_all(&self, messages: &[Message]) {
        for m in messages {
            if let Err(e) = m.ack_with(AckKind::Nak(Some(self.backoff))).await {
                debug!(cause = %e, "CDR nak not sent; it comes again after ack_wait");
            }
        }
    }

    async fn one_by_one(&mut self, cdrs: Vec<Cdr>, delivered: Vec<Message>) -> bool {
        let counters = &self.cdrs.inner.counters;
        let timeout = self.cdrs.inner.opts.store_timeout;
        for (cdr, m) in cdrs.iter().zip(&delivered) {
            match tokio::time::timeout(timeout, self.store.insert_cdr(cdr)).await {
                Ok(Ok(new)) => {
                    let counter = if new {
                        &counters.stored
                    } else {
                        &counters.store_duplicates
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.ack_all(std::slice::from_ref(m)).await;
                }
                Ok(Err(StoreError::Invalid(why))) => self.terminate(m, &why).await,
                Ok(Err(e)) => return self.store_failed(1, &e.to_string()),
                Err(_) => return self.store_failed(1, &format!("no answer within {timeout:?}")),
            }
        }
        self.backoff = MIN_BACKOFF;
        true
    }

    fn store_failed(&self, cdrs: usize, cause: &str) -> bool {
        self.cdrs
            .inner
            .counters
            .store_failures
            .fetch_add(1, Ordering::Relaxed);
        warn!(
            cdrs,
            cause,
            retry_in = ?self.backoff,
            "CDRs not stored; not acked, JetStream delivers them again after the back-off"
        );
        false
    }

    async fn ack_all(&self, messages: &[Message]) {
        for m in messages {
            if let Err(e) = m.ack().await {
                self.cdrs
                    .inner
                    .counters
                    .ack_failures
                    .fetch_add(1, Ordering::Relaxed);
                debug!(cause = %e, "CDR ack not sent; it will be delivered again and kept once");
            }
        }
    }

    /// Drops a message that is not a storable CDR for good.
    async fn terminate(&self, m: &Message, why: &str) {
        let counters = &self.cdrs.inner.counters;
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        error!(subject = %m.subject, stream_seq = seq, bytes = m.payload.len(), cause = why, "malformed message on the CDR subject; terminated");
        if let Err(e) = m.ack_with(AckKind::Term).await {
            counters.ack_failures.fetch_add(1, Ordering::Relaxed);
            debug!(cause = %e, "CDR term not sent");
        }
    }
}

/// A CDR from a message payload; one with an empty `call_id` cannot be
/// stored and is refused here.
fn decode(payload: &[u8]) -> Result<Cdr, String> {
    let cdr: Cdr = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if cdr.call_id.is_empty() {
        return Err("empty call_id".to_owned());
    }
    Ok(cdr)
}

/// Whether JetStream accepts `name` as a consumer name.
fn valid_consumer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b > 0x20 && b < 0x7F && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
}

/// Sleeps; `true` if `shutdown` was cancelled first.
async fn sleep_or_cancel(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names() {
        for ok in ["cdr-writer", "CDR_WRITER", "a"] {
            assert!(valid_consumer_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a*", "a>", "a b", "a\tb", "é"] {
            assert!(!valid_consumer_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn decode_refuses_what_cannot_be_stored() {
        assert!(decode(b"not json").is_err());
        assert!(decode(b"{}").is_err());
        assert!(decode(b"[1,2]").is_err());
        let mut v: serde_json::Value = serde_json::from_str(
            r#"{"id":0,"call_id":"c-1","account_id":null,"caller":"1001","callee":"1002",
               "caller_name":null,"source":"udp:127.0.0.1:5062","invite_at":1,"ring_at":null,
               "answer_at":null,"end_at":null,"ring_ms":null,"talk_ms":null,
               "disposition":"answered","hangup_code":null,"hangup_reason":null,
               "hangup_side":null,"route_id":null,"node":null,"rtp_sent":null,
               "rtp_received":null,"rtp_lost":null,"jitter_ms":null,"mos":null,
               "rtpmanager":null,"created_at":0,"unknown_field":true}"#,
        )
        .unwrap();
        let cdr = decode(v.to_string().as_bytes()).unwrap();
        assert_eq!(cdr.call_id, "c-1");
        v["call_id"] = "".into();
        assert_eq!(
            decode(v.to_string().as_bytes()).unwrap_err(),
            "empty call_id"
        );
    }
}
