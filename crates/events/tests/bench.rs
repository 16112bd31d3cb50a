//! Throughput figures on loopback against the shared NATS server; ignored
//! by default (they print, they assert no timing). Run with
//! `cargo test -p switchboard-events --release --test bench -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use switchboard_events::{
    CdrStream, CdrStreamOptions, Event, EventBus, EventBusOptions, RegistrationEvent,
    RegistrationVerb, spawn_cdr_consumer,
};
use switchboard_store::{Cdr, Store};
use tokio_util::sync::CancellationToken;

use common::*;

const CDRS: usize = 20_000;
const BATCH: usize = 512;
const EVENTS: usize = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints throughput figures"]
async fn cdr_publish_and_consume_throughput() {
    let prefix = format!("{}.switchboard", unique("bench"));
    let stream = unique("BENCHCDR");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let opts = CdrStreamOptions {
        prefix,
        stream_name: stream,
        max_bytes: 256 << 20,
        ..Default::default()
    };
    let cdrs = CdrStream::with_nats(connected(SHARED_NATS, "bench").await, opts).unwrap();
    cdrs.publish_batch(&[cdr("warm-up")]).await.unwrap(); // stream set up
    let db_dir = TempDir::new("benchdb");
    let stores = [
        (
            "SQLite in memory",
            Store::open_sqlite_memory().await.unwrap(),
        ),
        (
            "SQLite file (WAL)",
            Store::open_sqlite(db_dir.path()).await.unwrap(),
        ),
    ];
    for (round, (label, store)) in stores.into_iter().enumerate() {
        // the consumer of the previous round took everything: each round
        // publishes its own CDRs (new ids, so JetStream does not drop them
        // as duplicates)
        let all: Vec<Cdr> = (0..CDRS)
            .map(|i| cdr(&format!("bench-{round}-{i:06}")))
            .collect();
        let started = Instant::now();
        for chunk in all.chunks(BATCH) {
            cdrs.publish_batch(chunk).await.unwrap();
        }
        let publish = started.elapsed();
        println!(
            "publish_batch: {CDRS} CDRs in batches of {BATCH}, all acked: {publish:.2?} = {:.0} CDRs/s",
            CDRS as f64 / publish.as_secs_f64()
        );

        let before = cdrs.stats().stored;
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let h = spawn_cdr_consumer(&cdrs, store.clone(), "bench-writer", shutdown.clone());
        let want = CDRS as u64 + u64::from(round == 0); // + the warm-up CDR
        let deadline = started + Duration::from_secs(120);
        while cdrs.stats().stored - before < want {
            assert!(
                Instant::now() < deadline,
                "consumer too slow: {:?}",
                cdrs.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        println!(
            "consumer -> {label}: {want} CDRs stored and acked: {took:.2?} = {:.0} CDRs/s",
            want as f64 / took.as_secs_f64()
        );
        shutdown.cancel();
        h.await.unwrap();
        assert_eq!(all_cdrs(&store).await.len() as u64, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints throughput figures"]
async fn event_bus_throughput() {
    let prefix = format!("{}.switchboard", unique("bench"));
    let stream = unique("BENCHEV");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let spool = TempDir::new("benchspool");
    let bus = EventBus::jetstream_with(
        "bench",
        connected(SHARED_NATS, "bench").await,
        spool.path(),
        EventBusOptions {
            prefix,
            stream_name: stream,
            max_bytes: 256 << 20,
            queue_capacity: EVENTS,
            ..Default::default()
        },
    )
    .unwrap();
    let event = Event::registration(
        RegistrationVerb::Refreshed,
        RegistrationEvent {
            aor: "sip:alice@example.com".into(),
            contact: "<sip:alice@192.0.2.4:5062;transport=udp>".into(),
            expires: 3600,
            source: Some("udp:192.0.2.4:5062".into()),
            user_agent: Some("bench/1.0".into()),
        },
    );
    bus.publish(event.clone());
    bus.flush().await;

    let started = Instant::now();
    for _ in 0..EVENTS {
        bus.publish(event.clone());
    }
    let enqueue = started.elapsed();
    bus.flush().await;
    let took = started.elapsed();
    let s = bus.stats();
    assert_eq!(s.published, EVENTS as u64 + 1, "{s:?}");
    println!(
        "event bus: {EVENTS} events, publish() {:.0} ns each; all acked by JetStream in {took:.2?} = {:.0} events/s",
        enqueue.as_nanos() as f64 / EVENTS as f64,
        EVENTS as f64 / took.as_secs_f64()
    );
    bus.close().await;
}
