//! The CDR stream against the shared NATS server (127.0.0.1:4222) and an
//! in-memory SQLite store: publish with acks, the shared durable consumer,
//! exactly-once storage, malformed messages, a failing store. Each test
//! uses its own subject prefix and stream, deleted at the end.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use switchboard_events::{CdrStream, CdrStreamOptions, spawn_cdr_consumer};
use switchboard_store::{Cdr, Store};
use tokio_util::sync::CancellationToken;

use common::*;

fn opts(prefix: &str, stream: &str) -> CdrStreamOptions {
    CdrStreamOptions {
        prefix: prefix.to_owned(),
        stream_name: stream.to_owned(),
        max_bytes: 64 << 20,
        fetch_expiry: Duration::from_millis(200),
        ack_wait: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A CDR stream on its own connection (as one replica has).
async fn replica(name: &str, opts: &CdrStreamOptions) -> CdrStream {
    CdrStream::with_nats(connected(SHARED_NATS, name).await, opts.clone()).unwrap()
}

/// Waits until the store holds `n` CDRs.
async fn wait_for_rows(store: &Store, n: usize, within: Duration) -> Vec<Cdr> {
    let deadline = Instant::now() + within;
    loop {
        let rows = all_cdrs(store).await;
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {n} CDRs stored",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The durable consumer's (pending, ack pending, redelivered) counts;
/// `u64::MAX`s until the consumer exists.
async fn consumer_counts(
    client: &async_nats::Client,
    stream: &str,
    durable: &str,
) -> (u64, usize, usize) {
    let js = jetstream::new(client.clone());
    let s = js.get_stream(stream).await.unwrap();
    match s.consumer_info(durable).await {
        Ok(info) => (info.num_pending, info.num_ack_pending, info.num_redelivered),
        Err(_) => (u64::MAX, usize::MAX, 0),
    }
}

fn ids(rows: &[Cdr]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|c| c.call_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cdrs_from_two_publishers_are_stored_once_by_two_consumers() {
    let prefix = format!("{}.switchboard", unique("cdr"));
    let stream = unique("CDR");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let o = opts(&prefix, &stream);
    let client = shared_client().await;
    let store = Store::open_sqlite_memory().await.unwrap();
    let shutdown = CancellationToken::new();

    let (pub_a, pub_b) = (replica("pub-a", &o).await, replica("pub-b", &o).await);
    let (con_a, con_b) = (replica("con-a", &o).await, replica("con-b", &o).await);
    let ha = spawn_cdr_consumer(&con_a, store.clone(), "cdr-writer", shutdown.clone());
    let hb = spawn_cdr_consumer(&con_b, store.clone(), "cdr-writer", shutdown.clone());

    let cdrs: Vec<Cdr> = (0..200).map(|i| cdr(&format!("call-{i:03}"))).collect();
    let (ra, rb) = tokio::join!(
        async {
            for chunk in cdrs[..100].chunks(25) {
                pub_a.publish_batch(chunk).await?;
            }
            Ok::<_, String>(())
        },
        async {
            for chunk in cdrs[100..].chunks(25) {
                pub_b.publish_batch(chunk).await?;
            }
            // a writer retrying a batch JetStream already has
            pub_b.publish_batch(&cdrs[..25]).await
        }
    );
    ra.unwrap();
    rb.unwrap();
    let (sa, sb) = (pub_a.stats(), pub_b.stats());
    assert_eq!(sa.published + sb.published, 200);
    assert_eq!(
        sb.publish_duplicates, 25,
        "JetStream dropped the retried batch"
    );

    let rows = wait_for_rows(&store, 200, Duration::from_secs(20)).await;
    // nothing more arrives late
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows_after = all_cdrs(&store).await;
    assert_eq!(rows_after.len(), 200);
    let want: Vec<String> = ids(&cdrs);
    assert_eq!(ids(&rows), want, "each CDR stored exactly once");
    let unique_ids: HashSet<&str> = rows.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(unique_ids.len(), 200);
    let stored = rows.iter().find(|c| c.call_id == "call-042").unwrap();
    assert_eq!(stored.caller, "1001");
    assert_eq!(stored.talk_ms, Some(60_000));
    assert_eq!(stored.mos, Some(4.3));

    let (ca, cb) = (con_a.stats(), con_b.stats());
    assert_eq!(ca.stored + cb.stored, 200, "{ca:?} {cb:?}");
    assert_eq!(ca.malformed + cb.malformed, 0);
    // everything acked: the work queue is empty
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (pending, ack_pending, _) = consumer_counts(&client, &stream, "cdr-writer").await;
        if pending == 0 && ack_pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, ack pending {ack_pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "consumer a stored {}, consumer b stored {}",
        ca.stored, cb.stored
    );

    shutdown.cancel();
    ha.await.unwrap();
    hb.await.unwrap();
}

#[tokio::test]
async fn a_cdr_delivered_twice_is_stored_once() {
    let prefix = format!("{}.switchboard", unique("dup"));
    let stream = unique("CDRDUP");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let o = opts(&prefix, &stream);
    let client = shared_client().await;
    let store = Store::open_sqlite_memory().await.unwrap();
    let cdrs = replica("dup", &o).await;

    let one = cdr("dup-1");
    cdrs.publish_batch(std::slice::from_ref(&one))
        .await
        .unwrap();
    cdrs.publish_batch(std::slice::from_ref(&one))
        .await
        .unwrap();
    assert_eq!(cdrs.stats().published, 1);
    assert_eq!(cdrs.stats().publish_duplicates, 1);
    // past JetStream's duplicate window (no message id here) the store's
    // idempotence keeps it once
    let js = jetstream::new(client.clone());
    js.publish(
        cdrs.subject().to_owned(),
        serde_json::to_vec(&one).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish(
        cdrs.subject().to_owned(),
        serde_json::to_vec(&cdr("dup-2")).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let shutdown = CancellationToken::new();
    let h = spawn_cdr_consumer(&cdrs, store.clone(), "cdr-writer", shutdown.clone());
    let rows = wait_for_rows(&store, 2, Duration::from_secs(10)).await;
    assert_eq!(ids(&rows), ["dup-1", "dup-2"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cdrs.stats().stored + cdrs.stats().store_duplicates < 3 {
        assert!(Instant::now() < deadline, "{:?}", cdrs.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cdrs.stats().stored, 2);
    assert_eq!(cdrs.stats().store_duplicates, 1);
    assert_eq!(all_cdrs(&store).await.len(), 2);
    shutdown.cancel();
    h.await.unwrap();
}

#[tokio::test]
async fn a_malformed_message_is_skipped_and_the_next_cdr_stored() {
    let prefix = format!("{}.switchboard", unique("bad"));
    let stream = unique("CDRBAD");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let o = opts(&prefix, &stream);
    let client = shared_client().await;
    let store = Store::open_sqlite_memory().await.unwrap();
    let cdrs = replica("bad", &o).await;
    cdrs.ensure_stream().await.unwrap();
    let js = jetstream::new(client.clone());
    for payload in [
        b"definitely not json".to_vec(),
        br#"{"call_id":"half a cdr"}"#.to_vec(),
        serde_json::to_vec(&cdr("")).unwrap(), // a CDR no store can keep
    ] {
        js.publish(cdrs.subject().to_owned(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    cdrs.publish_batch(&[cdr("good-1")]).await.unwrap();

    let shutdown = CancellationToken::new();
    let h = spawn_cdr_consumer(&cdrs, store.clone(), "cdr-writer", shutdown.clone());
    let rows = wait_for_rows(&store, 1, Duration::from_secs(10)).await;
    assert_eq!(ids(&rows), ["good-1"]);
    assert_eq!(cdrs.stats().malformed, 3);
    // terminated, not left pending or delivered again
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (pending, ack_pending, redelivered) =
            consumer_counts(&client, &stream, "cdr-writer").await;
        if pending == 0 && ack_pending == 0 {
            assert_eq!(redelivered, 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, ack pending {ack_pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    h.await.unwrap();
}

#[tokio::test]
async fn while_the_store_is_down_cdrs_stay_unacked_then_are_stored_once() {
    let prefix = format!("{}.switchboard", unique("sdown"));
    let stream = unique("CDRSDOWN");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let o = CdrStreamOptions {
        ack_wait: Duration::from_secs(1),
        ..opts(&prefix, &stream)
    };
    let client = shared_client().await;
    let (store, flaky) = FlakyStore::new(true).await;
    let cdrs = replica("sdown", &o).await;
    let batch: Vec<Cdr> = (0..10).map(|i| cdr(&format!("sd-{i}"))).collect();
    cdrs.publish_batch(&batch).await.unwrap();

    let shutdown = CancellationToken::new();
    let h = spawn_cdr_consumer(&cdrs, store.clone(), "cdr-writer", shutdown.clone());
    // the first delivery fails, then JetStream delivers again after ack_wait
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ack_pending, redelivered) = consumer_counts(&client, &stream, "cdr-writer").await;
        if flaky.failed_writes.load(Ordering::SeqCst) >= 2 && redelivered > 0 {
            assert!(ack_pending > 0, "nothing was acked while the store failed");
            break;
        }
        assert!(Instant::now() < deadline, "no redelivery seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(all_cdrs(&store).await.is_empty());
    assert!(cdrs.stats().store_failures >= 2);
    assert_eq!(cdrs.stats().stored, 0);

    flaky.failing.store(false, Ordering::SeqCst);
    let rows = wait_for_rows(&store, 10, Duration::from_secs(15)).await;
    assert_eq!(ids(&rows), ids(&batch));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all_cdrs(&store).await.len(), 10, "stored once");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (pending, ack_pending, _) = consumer_counts(&client, &stream, "cdr-writer").await;
        if pending == 0 && ack_pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, ack pending {ack_pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    h.await.unwrap();
}
