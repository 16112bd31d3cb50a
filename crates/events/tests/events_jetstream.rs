//! The event bus against the shared NATS server (127.0.0.1:4222): events
//! land on their subjects, in the stream, with the documented payload.
//! Each test uses its own subject prefix and stream, deleted at the end.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard_events::{
    CallEvent, CallVerb, Event, EventBus, EventBusOptions, Health, Leg, RegistrationEvent,
    RegistrationVerb, RtpManagerEvent, RtpManagerVerb, SessionEvent, SessionVerb, Side,
};

use common::*;

fn opts(prefix: &str, stream: &str) -> EventBusOptions {
    EventBusOptions {
        prefix: prefix.to_owned(),
        stream_name: stream.to_owned(),
        max_bytes: 16 << 20,
        ack_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn four_events() -> Vec<Event> {
    vec![
        Event::call(
            CallVerb::Answered,
            CallEvent {
                call_uuid: "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f".into(),
                legs: vec![
                    Leg {
                        sip_call_id: "a84b4c76e66710@pc33".into(),
                        side: Side::A,
                    },
                    Leg {
                        sip_call_id: "b-1".into(),
                        side: Side::B,
                    },
                ],
                caller: Some("1001".into()),
                callee: Some("1002".into()),
                ..Default::default()
            },
        ),
        Event::registration(
            RegistrationVerb::Registered,
            RegistrationEvent {
                aor: "sip:alice@example.com".into(),
                contact: "<sip:alice@192.0.2.4:5062>".into(),
                expires: 3600,
                ..Default::default()
            },
        ),
        Event::session(
            SessionVerb::Dtmf,
            SessionEvent {
                session_id: "s-17".into(),
                digit: Some("5".into()),
                ..Default::default()
            },
        ),
        Event::rtpmanager(
            RtpManagerVerb::Down,
            RtpManagerEvent {
                name: "rtpmanager-1".into(),
                address: "127.0.0.1:9091".into(),
            },
        ),
    ]
}

#[tokio::test]
async fn events_arrive_on_their_subjects_with_their_payloads() {
    let prefix = format!("{}.switchboard", unique("ev"));
    let stream = unique("EVENTS");
    let _cleanup = DeleteStreams(vec![stream.clone()]);
    let client = shared_client().await;
    let mut sub = client.subscribe(format!("{prefix}.>")).await.unwrap();
    client.flush().await.unwrap();

    let spool = TempDir::new("evspool");
    let nats = connected(SHARED_NATS, "sig-0").await;
    let bus =
        EventBus::jetstream_with("sig-0", nats, spool.path(), opts(&prefix, &stream)).unwrap();
    let mut local = bus.subscribe();
    for e in four_events() {
        bus.publish(e);
    }
    bus.flush().await;

    let mut got = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("event not received on NATS")
            .unwrap();
        let json: Value = serde_json::from_slice(&m.payload).unwrap();
        got.push((m.subject.to_string(), json));
    }
    let subjects: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("{prefix}.calls.5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f.answered"),
            format!("{prefix}.registrations.sip:alice@example%2Ecom.registered"),
            format!("{prefix}.sessions.s-17.dtmf"),
            format!("{prefix}.rtpmanagers.rtpmanager-1.down"),
        ]
    );
    let now = switchboard_store::now_ms();
    for (_, json) in &got {
        assert_eq!(json["version"], 1);
        assert_eq!(json["node"], "sig-0");
        let ts = json["ts"].as_i64().unwrap();
        assert!((now - 60_000..=now).contains(&ts), "ts {ts} is about now");
    }
    let call = &got[0].1;
    assert_eq!(call["type"], "call.answered");
    assert_eq!(call["call_uuid"], "5f0c2b9e-7d1a-4c3e-9f00-1a2b3c4d5e6f");
    assert_eq!(call["legs"][0]["sip_call_id"], "a84b4c76e66710@pc33");
    assert_eq!(call["legs"][0]["side"], "a");
    assert_eq!(call["legs"][1]["side"], "b");
    assert_eq!(call["caller"], "1001");
    let reg = &got[1].1;
    assert_eq!(reg["type"], "registration.registered");
    assert_eq!(reg["aor"], "sip:alice@example.com");
    assert_eq!(reg["contact"], "<sip:alice@192.0.2.4:5062>");
    assert_eq!(reg["expires"], 3600);
    let dtmf = &got[2].1;
    assert_eq!(dtmf["type"], "session.dtmf");
    assert_eq!(dtmf["session_id"], "s-17");
    assert_eq!(dtmf["digit"], "5");
    let rtpm = &got[3].1;
    assert_eq!(rtpm["type"], "rtpmanager.down");
    assert_eq!(rtpm["name"], "rtpmanager-1");
    assert_eq!(rtpm["address"], "127.0.0.1:9091");

    // JetStream holds them, acked, in the stream the bus created
    let js = async_nats::jetstream::new(client.clone());
    let mut s = js.get_stream(&stream).await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 4);
    assert_eq!(
        info.config.subjects,
        [
            format!("{prefix}.calls.>"),
            format!("{prefix}.registrations.>"),
            format!("{prefix}.sessions.>"),
            format!("{prefix}.rtpmanagers.>"),
        ]
    );
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    let first = s.get_raw_message(1).await.unwrap();
    assert!(
        first
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .is_some_and(|id| id.as_str().starts_with("sig-0-")),
        "events carry a Nats-Msg-Id"
    );

    // local subscribers saw the same events, stamped with the node
    for want in four_events() {
        let e = local.recv().await.unwrap();
        assert_eq!(e.node, "sig-0");
        assert_eq!(e.kind, want.kind);
    }

    let stats = bus.stats();
    assert_eq!(stats.published, 4);
    assert_eq!(stats.spooled, 0);
    assert_eq!(stats.dropped, 0);
    assert!(stats.connected);
    assert_eq!(bus.health(), Health::Ok);
    assert!(!spool.path().join("events-spool.jsonl").exists());
    bus.close().await;
}

#[tokio::test]
async fn the_in_process_bus_reaches_local_subscribers_only() {
    let bus = EventBus::in_process("solo");
    let mut a = bus.subscribe();
    let mut b = bus.subscribe();
    let events = four_events();
    for e in events.clone() {
        bus.publish(e);
    }
    for want in &events {
        for rx in [&mut a, &mut b] {
            let got = rx.recv().await.unwrap();
            assert_eq!(got.node, "solo");
            assert_eq!(&got.kind, &want.kind);
        }
    }
    assert_eq!(bus.health(), Health::Ok);
    assert_eq!(bus.stats().published, 4);
    assert!(bus.nats().is_none());
    bus.flush().await;
    bus.close().await;
}

#[tokio::test]
async fn an_unreachable_server_at_start_is_degraded_and_events_are_spooled() {
    let port = free_port(); // nothing listens there
    let spool = TempDir::new("evdown");
    let bus = EventBus::jetstream(
        "sig-1",
        &format!("nats://127.0.0.1:{port}"),
        spool.path(),
        opts("down.switchboard", "NEVER_CREATED"),
    )
    .await
    .expect("an unreachable NATS must not stop start-up");
    match bus.health() {
        Health::Degraded(why) => assert!(why.contains("NATS"), "{why}"),
        Health::Ok => panic!("health must be degraded without NATS"),
    }
    for e in four_events() {
        bus.publish(e);
    }
    bus.flush().await;
    let stats = bus.stats();
    assert_eq!(stats.spooled, 4);
    assert_eq!(stats.spool_len, 4);
    assert_eq!(stats.published, 0);
    assert!(!stats.connected);
    let path = spool.path().join("events-spool.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event"]["type"], "call.answered");
    assert_eq!(lines[3]["event"]["type"], "rtpmanager.down");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the spool is private");
    }
    bus.close().await;
    // events published after close are dropped and counted
    bus.publish(four_events().remove(0));
    assert_eq!(bus.stats().dropped, 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let port = free_port();
    let spool = TempDir::new("evfull");
    let bus = EventBus::jetstream(
        "sig-2",
        &format!("nats://127.0.0.1:{port}"),
        spool.path(),
        EventBusOptions {
            queue_capacity: 4,
            spool_max_records: 10,
            ..opts("full.switchboard", "NEVER_CREATED")
        },
    )
    .await
    .unwrap();
    // a burst with no await in between: the publisher task (same
    // single-threaded runtime) cannot run, the queue holds 4
    let started = std::time::Instant::now();
    for _ in 0..25 {
        for e in four_events() {
            bus.publish(e);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "publish never waits"
    );
    bus.flush().await;
    let s = bus.stats();
    assert_eq!((s.dropped, s.spooled, s.spool_len), (96, 4, 4), "{s:?}");
    // with the task keeping up, the spool fills to its bound, then drops
    for _ in 0..10 {
        for e in four_events() {
            bus.publish(e);
        }
        bus.flush().await;
    }
    let s = bus.stats();
    assert_eq!(s.dropped, 96, "{s:?}");
    assert_eq!(s.spooled, 10, "{s:?}");
    assert_eq!(s.spool_len, 10, "the spool stops at its bound: {s:?}");
    assert_eq!(s.spool_dropped, 34, "{s:?}");
    bus.close().await;
}

#[tokio::test]
async fn a_malformed_nats_url_is_a_config_error_naming_the_variable() {
    let spool = TempDir::new("evbadurl");
    let err = EventBus::jetstream(
        "n",
        "http://nats:4222",
        spool.path(),
        EventBusOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("NATS_URL: "), "{err}");
    let err = switchboard_events::CdrStream::connect(
        "nats://a:4222,,",
        "n",
        switchboard_events::CdrStreamOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("NATS_URL: "), "{err}");
}
